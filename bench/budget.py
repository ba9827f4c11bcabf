"""Hardware-aware rank selection: accuracy against the latency budget.

For each budget (cycles per inference on the configured array; 0 = none) the network is trained
with the budget steering rank pruning, quantized, exported, elaborated and run on Verilator, so
the table shows the cycles the RTL itself counted next to the budget and the accuracy bought.

    python bench/budget.py [--quick] [--budgets 0,1000,900,850] [--images 100] [--out DIR]

Prints a table; the last line is one JSON object with the rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge3u.config import ConfigError, load_config
from edge3u.flow import flow_run
from edge3u.train.budget import check_budget


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, help="default: the Fashion-MNIST config")
    parser.add_argument("--budgets", default="0,1000,900,850")
    parser.add_argument("--images", type=int, default=100, help="test images on Verilator")
    parser.add_argument("--quick", action="store_true", help="quick training and QAT")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-budget"))
    args = parser.parse_args()
    base = load_config(args.config) if args.config else load_config()
    configs = {int(b): base.replace(hardware={"latency_budget_cycles": int(b),
                                              "latency_budget_us": 0.0})
               for b in args.budgets.split(",")}
    try:  # a budget below the network's floor fails before any run
        for config in configs.values():
            check_budget(config)
    except ConfigError as error:
        print(f"bench/budget.py: {error}", file=sys.stderr)
        return 2
    rows = []
    for budget, config in configs.items():
        run = args.out / f"budget-{budget}{'-quick' if args.quick else ''}"
        report = flow_run(config, run, quick=args.quick, images=args.images, place=False,
                          progress=False, skip=("dense", "synth"))
        rows.append({"budget_cycles": budget or None, "rtl_cycles": report["rtl_cycles"],
                     "model_cycles": report["model_cycles"], "accuracy": report["accuracy"],
                     "float_tt_acc": report["float_tt_acc"], "ranks": report["ranks"],
                     "mismatches": report["mismatches"],
                     "met": not budget or report["rtl_cycles"] <= budget})
        r = rows[-1]
        print(f"budget {budget or 'none':>5}: RTL {r['rtl_cycles']} cycles, integer accuracy "
              f"{100 * r['accuracy']:.2f} %, ranks {json.dumps(r['ranks'])}", file=sys.stderr)
    print(f"{'budget':>8} {'RTL cycles':>10} {'met':>4} {'int acc %':>9} {'TT acc %':>8}  ranks")
    for r in rows:
        print(f"{r['budget_cycles'] or 'none':>8} {r['rtl_cycles']:>10} "
              f"{'yes' if r['met'] else 'NO':>4} {100 * r['accuracy']:>9.2f} "
              f"{100 * r['float_tt_acc']:>8.2f}  {json.dumps(r['ranks'])}")
    print(json.dumps({"rows": rows, "all_met": all(r["met"] for r in rows),
                      "mismatches": sum(r["mismatches"] for r in rows)}))
    return 0 if all(r["met"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
