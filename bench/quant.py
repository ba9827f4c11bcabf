"""Ultra-low-bit quantization on Fashion-MNIST: µL2Q vs min-max uniform vs LSQ, side by side.

Trains the rank-adaptive TT network (or reuses ``--run``), then fine-tunes it with QAT for every
method × weight bits {2, 3, 4, ternary} × activation bits {4, 8} in the same harness, and checks
every point's integer golden model against its fake-quant model. Every point runs the stages
in the accelerator's orders, as ``edge3u quantize`` does. Prints a table; the last line is
one JSON object (keys ``w{bits}a{bits}_{method}_acc``, ``fp32_tt_acc``,
``int_vs_fake_agreement`` = the lowest agreement over all points).

    python bench/quant.py [--quick] [--run RUN]
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
from edge3u.models.schedule import hardware_orders
from edge3u.train.quantize_run import accuracies, qat
from edge3u.train.run import load_model_state, train_run

METHODS = ("ul2q", "uniform", "lsq")
WEIGHT_BITS = (2, 3, 4, "ternary")
ACT_BITS = (4, 8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="quick training and one QAT epoch on a quarter of the data")
    parser.add_argument("--run", type=Path, help="reuse this trained run instead of training")
    parser.add_argument("--epochs", type=int, help="QAT epochs (default quant.epochs)")
    parser.add_argument("--data")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edge3u-quant-") as tmp:
        run = args.run
        if run is None:
            run = Path(tmp) / "run"
            train_run(None, run, quick=args.quick, data_path=args.data, progress=False)
        state = load_model_state(run)
    config = load_config()
    data = load_dataset(config.data.dataset, args.data or config.data.path or None)
    epochs = config.quant.epochs if args.epochs is None else args.epochs
    if args.quick:
        data = data.subset(len(data.y_train) // 4)
        epochs = min(epochs, 1)
    # the stage orders `edge3u quantize` uses: the ones the accelerator runs
    orders = hardware_orders([(layer["name"], layer["cores"]) for layer in state["layers"]],
                             config.hardware)
    figures = {"fp32_tt_acc": state["test_accuracy"], "ranks": {
        layer["name"]: [1, *(c.shape[0] for c in layer["cores"][1:]), 1]
        for layer in state["layers"]}, "qat_epochs": epochs, "points": {}}
    for abits in ACT_BITS:
        for wbits in WEIGHT_BITS:
            for method in METHODS:
                net = qat(state, data, method=method, weight_bits=wbits, activation_bits=abits,
                          epochs=epochs, batch_size=config.train.batch_size,
                          seed=config.train.seed, orders=orders)
                point = accuracies(net, data)
                key = f"w{'t' if wbits == 'ternary' else wbits}a{abits}_{method}"
                figures["points"][key] = point
                figures[f"{key}_acc"] = point["int_accuracy"]
                print(f"{key}: int {100 * point['int_accuracy']:.2f} %, fake "
                      f"{100 * point['fake_quant_accuracy']:.2f} %, agreement "
                      f"{100 * point['int_vs_fake_agreement']:.2f} %", file=sys.stderr)
    figures["int_vs_fake_agreement"] = min(p["int_vs_fake_agreement"]
                                           for p in figures["points"].values())
    figures["seconds"] = round(time.perf_counter() - started, 1)
    print(f"Fashion-MNIST test accuracy (integer model), TT ranks {json.dumps(figures['ranks'])}, "
          f"{epochs} QAT epoch(s); FP32 TT: {100 * figures['fp32_tt_acc']:.2f} %")
    print(f"{'weights':>8}{'acts':>6}" + "".join(f"{m:>10}" for m in METHODS) + f"{'best':>9}")
    for abits in ACT_BITS:
        for wbits in WEIGHT_BITS:
            key = f"w{'t' if wbits == 'ternary' else wbits}a{abits}"
            accs = {m: figures[f"{key}_{m}_acc"] for m in METHODS}
            print(f"{str(wbits):>8}{abits:>6}" + "".join(f"{100 * a:>9.2f}%" for a in accs.values())
                  + f"{max(accs, key=accs.get):>9}")
    print(f"lowest integer/fake-quant agreement: {100 * figures['int_vs_fake_agreement']:.2f} %")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
