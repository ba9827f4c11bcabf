"""Forward+backward time of fc1 (784 -> 512) at batch 128: edge3u's TTLinear, nn.Linear, tltorch.

The TT layers use the ranks the rank-adaptive run ends with (``--ranks``, else the ranks in
``--metrics``, the JSON that ``bench/train_memory.py`` writes, else the config's maximum ranks).
tensorly-torch's ``FactorizedLinear(factorization="blocktt", implementation="factorized")`` is the
same TT-matrix on the same shape and ranks. Prints a table; the last line is one JSON object.

    python bench/tt_speed.py [--ranks 1,5,5,5,1] [--batch 128] [--repeats 200] [--block 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from edge3u.config import load_config
from edge3u.train.tt_linear import TTLinear

DEFAULT_METRICS = Path(__file__).parent / "out" / "train_memory.json"


def time_fwd_bwd(layers: dict[str, torch.nn.Module], x: torch.Tensor,
                 repeats: int, block: int) -> dict[str, float]:
    """Median milliseconds of forward + backward of ``module(x).sum()`` for each layer.

    The layers take turns, ``block`` calls each per round, so a change in the machine's speed
    during the run (another process, the clock) lands on all of them alike. With ``block`` 1
    every call follows another layer's, so it starts with the other layer's data in the caches
    (tensorly-torch's call moves several MB); with a larger block most calls follow one of the
    same layer, as in a training loop, where a layer's neighbours are small.
    """
    for module in layers.values():
        for _ in range(10):
            module(x).sum().backward()
    samples = {name: [] for name in layers}
    for _ in range(repeats):
        for name, module in layers.items():
            for _ in range(block):
                start = time.perf_counter()
                module(x).sum().backward()
                samples[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(times) for name, times in samples.items()}


def tltorch_layer(in_modes, out_modes, ranks):
    import tltorch

    layer = tltorch.FactorizedLinear(in_tensorized_features=tuple(in_modes),
                                     out_tensorized_features=tuple(out_modes),
                                     factorization="blocktt", rank=list(ranks),
                                     implementation="factorized")
    layer.weight.normal_(0, 0.1)
    return layer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", help="fc1 ranks, e.g. 1,5,5,5,1")
    parser.add_argument("--metrics", type=Path, default=DEFAULT_METRICS)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=200, help="rounds")
    parser.add_argument("--block", type=int, default=10,
                        help="calls of one layer in a row per round (1: every call "
                             "follows another layer's)")
    args = parser.parse_args()
    for name in ("batch", "repeats", "block"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, not {getattr(args, name)}")
    fc1 = load_config().layer("fc1")
    if args.ranks:
        ranks, source = tuple(int(r) for r in args.ranks.split(",")), "--ranks"
    elif args.metrics.is_file():
        ranks, source = tuple(json.loads(args.metrics.read_text())["ranks"]["fc1"]), str(args.metrics)
    else:
        ranks, source = fc1.max_ranks, "config max ranks"
    torch.manual_seed(0)
    x = torch.randn(args.batch, fc1.in_features)
    layers = {
        "edge3u TTLinear": TTLinear(fc1.in_modes, fc1.out_modes, ranks),
        "nn.Linear": torch.nn.Linear(fc1.in_features, fc1.out_features),
        "tltorch blocktt": tltorch_layer(fc1.in_modes, fc1.out_modes, ranks),
    }
    times = time_fwd_bwd(layers, x, args.repeats, args.block)
    print(f"fc1 {fc1.in_features}->{fc1.out_features}, batch {args.batch}, ranks {list(ranks)} "
          f"({source}), {torch.get_num_threads()} threads, "
          f"median of {args.repeats} interleaved rounds of {args.block} call(s) per layer")
    print(f"{'layer':<18}{'fwd+bwd ms':>12}{'params':>10}")
    for name, layer in layers.items():
        params = sum(p.numel() for p in layer.parameters())
        print(f"{name:<18}{times[name]:>12.3f}{params:>10,}")
    tt, dense, tl = times["edge3u TTLinear"], times["nn.Linear"], times["tltorch blocktt"]
    print(f"TT vs nn.Linear: {dense / tt:.2f}x faster; TT vs tltorch: {tl / tt:.2f}x faster")
    print(json.dumps({"tt_ms": round(tt, 4), "dense_ms": round(dense, 4),
                      "tltorch_ms": round(tl, 4), "ranks": list(ranks), "batch": args.batch,
                      "block": args.block,
                      "speedup_vs_dense": round(dense / tt, 3),
                      "speedup_vs_tltorch": round(tl / tt, 3)}))


if __name__ == "__main__":
    main()
