"""Training memory and accuracy: dense FP32 baseline vs rank-adaptive low-precision TT network.

Both are trained on Fashion-MNIST by the same harness (same data order, same epochs): the dense
784-512-10 network in FP32 with Adam at ``train.batch_size``, the TT network with ``edge3u train``.
Memory is counted the same way for both (edge3u.train.memory): parameters, gradients, optimizer
state and the activations autograd keeps, measured. Prints a table; the last line is one JSON
object with the figures.

    python bench/train_memory.py [--quick] [--config FILE] [--data DIR]
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
from edge3u.runs import write_json
from edge3u.train.dense import train_dense
from edge3u.train.run import train_run

OUT = Path(__file__).parent / "out" / "train_memory.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="train.quick_epochs on train.quick_train_images (about 3 minutes)")
    parser.add_argument("--config", type=Path)
    parser.add_argument("--data", help="folder of the Fashion-MNIST IDX files")
    parser.add_argument("--out", type=Path, default=OUT, help="where the JSON is also written")
    args = parser.parse_args()
    config = load_config(args.config)
    t = config.train
    started = time.perf_counter()
    data = load_dataset(config.data.dataset, args.data or config.data.path or None)
    epochs = t.quick_epochs if args.quick else t.dense_epochs
    if args.quick:
        data = data.subset(t.quick_train_images)
    print(f"dense FP32 baseline: {epochs} epochs on {len(data.y_train):,} images", file=sys.stderr)
    dense = train_dense(config, data, epochs=epochs,
                        progress=lambda e, a: print(f"  epoch {e}: {100 * a:.2f} %", file=sys.stderr))
    with tempfile.TemporaryDirectory(prefix="edge3u-bench-") as run:
        tt = train_run(config, Path(run) / "run", quick=args.quick, data_path=args.data)

    dm, tm = dense["memory"], tt["memory"]
    drop = 100 * (dense["accuracy"] - tt["test_accuracy"])
    print(f"\nFashion-MNIST, {'quick' if args.quick else 'full'} run "
          f"({epochs} dense / {tt['epochs']} TT epochs, {len(data.y_train):,} training images)")
    print(f"{'':<22}{'dense FP32':>14}{'TT low-precision':>18}{'ratio':>9}")
    print(f"{'test accuracy':<22}{100 * dense['accuracy']:>13.2f}%{100 * tt['test_accuracy']:>17.2f}%"
          f"{-drop:>+8.2f}pt")
    print(f"{'parameters':<22}{dense['parameters']:>14,}{tt['parameters']:>18,}"
          f"{dense['parameters'] / tt['parameters']:>8.1f}x")
    for key in ("params", "grads", "optimizer", "activations", "other", "total"):
        ratio = f"{dm[key] / tm[key]:>8.1f}x" if tm[key] else f"{'-':>9}"
        print(f"{key + ' (bytes)':<22}{dm[key]:>14,}{tm[key]:>18,}{ratio}")
    print(f"{'final ranks':<22}{json.dumps(tt['ranks'])}")
    print(f"(TT memory is the peak over the run: the maximum ranks of the first epochs with a "
          f"micro-batch of {t.micro_batch}; after pruning it is {tt['final_memory']['total']:,} B)")
    figures = {
        "dense_acc": dense["accuracy"], "tt_acc": tt["test_accuracy"],
        "acc_drop_pts": round(drop, 3),
        "dense_train_bytes": dm["total"], "tt_train_bytes": tm["total"],
        "memory_reduction": round(dm["total"] / tm["total"], 2),
        "tt_final_train_bytes": tt["final_memory"]["total"],
        "ranks": tt["ranks"], "dense_params": dense["parameters"], "tt_params": tt["parameters"],
        "dense_memory": dm, "tt_memory": tm, "quick": args.quick,
        "epochs": {"dense": epochs, "tt": tt["epochs"]},
        "rank_history": [h["ranks"] for h in tt["history"]],
        "tt_acc_history": [h["test_accuracy"] for h in tt["history"]],
        "dense_acc_history": dense["accuracies"],
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(args.out, figures)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
