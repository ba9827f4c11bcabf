"""The memory/accuracy frontier: the TT network trained at several maximum ranks vs the dense baseline.

Training memory is set by the maximum ranks (the first epochs hold every slice), accuracy by the
ranks that survive; this sweep shows the trade-off the default configuration sits on. The dense
FP32 baseline is trained once. Prints a table; the last line is one JSON object.

    python bench/rank_sweep.py [--ranks 3,4,5,6,8,12] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from edge3u.config import load_config
from edge3u.data import load_dataset
from edge3u.train.dense import train_dense
from edge3u.train.run import train_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", default="3,4,5,6,8,12",
                        help="maximum ranks to train, comma-separated")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--config", type=Path)
    parser.add_argument("--data")
    args = parser.parse_args()
    config = load_config(args.config)
    started = time.perf_counter()
    data = load_dataset(config.data.dataset, args.data or config.data.path or None)
    t = config.train
    epochs = t.quick_epochs if args.quick else t.dense_epochs
    if args.quick:
        data = data.subset(t.quick_train_images)
    dense = train_dense(config, data, epochs=epochs)
    print(f"dense FP32: {100 * dense['accuracy']:.2f} %, {dense['memory']['total']:,} B",
          file=sys.stderr)
    rows = []
    for rank in [int(r) for r in args.ranks.split(",")]:
        table = config.to_dict()
        for layer in table["network"]["layers"]:
            layer["max_rank"] = rank
        variant = type(config).from_dict(table)
        with tempfile.TemporaryDirectory(prefix="edge3u-sweep-") as run:
            tt = train_run(variant, Path(run) / "run", quick=args.quick, data_path=args.data,
                           progress=False)
        rows.append({"max_rank": rank, "tt_acc": tt["test_accuracy"],
                     "acc_drop_pts": round(100 * (dense["accuracy"] - tt["test_accuracy"]), 3),
                     "tt_train_bytes": tt["memory"]["total"],
                     "memory_reduction": round(dense["memory"]["total"] / tt["memory"]["total"], 1),
                     "params": tt["parameters"], "ranks": tt["ranks"]})
        print(f"max rank {rank}: {100 * tt['test_accuracy']:.2f} %, "
              f"{rows[-1]['memory_reduction']}x", file=sys.stderr)
    print(f"dense FP32 baseline: {100 * dense['accuracy']:.2f} % test accuracy, "
          f"{dense['memory']['total']:,} B training memory ({epochs} epochs)")
    print(f"{'max rank':>9}{'TT acc %':>10}{'drop pt':>9}{'train bytes':>13}{'reduction':>11}"
          f"{'params':>8}  final ranks")
    for r in rows:
        print(f"{r['max_rank']:>9}{100 * r['tt_acc']:>10.2f}{r['acc_drop_pts']:>9.2f}"
              f"{r['tt_train_bytes']:>13,}{r['memory_reduction']:>10.1f}x{r['params']:>8,}  "
              f"{json.dumps(r['ranks'])}")
    print(json.dumps({"dense_acc": dense["accuracy"], "dense_train_bytes": dense["memory"]["total"],
                      "points": rows, "quick": args.quick,
                      "seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
