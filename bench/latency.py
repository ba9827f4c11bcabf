"""One inference of the default network through the RTL on Verilator: cycles per stage
(model), the RTL's own cycle counter, the bound and the dense equivalent.

    python bench/latency.py [--run RUN] [--config FILE]

With ``--run`` the run's ROM images are used; without, a network of the config's shapes at the
maximum ranks with random codes (latency depends on shapes and ranks, not on values). Last line:
one JSON object with rtl_cycles, model_cycles, bound_cycles, pes, macs, dense_cycles_same_pes.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from edge3u.config import load_config
from edge3u.models import schedule
from edge3u.models.random_network import random_network
from edge3u.models.rom import load_rom
from edge3u.rtl.elaborate import fit, summary
from edge3u.rtl.program import build_program
from edge3u.sim.verify import Case, verify


def network(args, config):
    if args.run:
        from edge3u.train.export import ROM_DIR

        return load_rom(Path(args.run) / ROM_DIR, config)[0], f"ROM images of {args.run}"
    shapes = [(layer.in_modes, layer.out_modes, (1, *layer.max_ranks[1:-1], 1))
              for layer in config.layers]
    hw = config.hardware
    orders = schedule.choose_orders(shapes, hw.pe_rows * hw.pe_cols, hw.requant_lanes,
                                    hw.activation_lanes)
    net = random_network([(*s, o) for s, o in zip(shapes, orders)],
                         weight_bits=config.quant.weight_bits,
                         activation_bits=config.quant.activation_bits)
    return net, "random codes at the maximum ranks"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="run directory with ROM images (edge3u export)")
    parser.add_argument("--config", help="configuration (default: the Fashion-MNIST config)")
    args = parser.parse_args()
    config = load_config(Path(args.run) / "config.json" if args.run else args.config)
    net, source = network(args, config)
    sched = fit(net, config)
    program = build_program(net, sched)
    figures = summary(program, config)
    pixels = np.random.default_rng(0).integers(0, 256, (1, len(program.input_table)),
                                               dtype=np.uint8)
    started = time.perf_counter()
    hw = config.hardware
    report = verify([Case("latency", net, sched, hw.pe_rows, hw.pe_cols, pixels, depth=1,
                          multiplier=hw.pe_multipliers)],
                    name="edge3u_latency", optimize=False)
    print(f"network: {source}; {hw.pe_rows} x {hw.pe_cols} PEs, orders {figures['orders']}")
    print(f"{'stage':24} {'GEMM':>14} {'MACs':>8} {'cycles':>7} {'bound':>6} {'PEs used':>8} "
          f"{'util':>5}")
    for s in figures["stages"]:
        gemm = "x".join(map(str, s["gemm"]))
        print(f"{s['layer'] + ' stage ' + str(s['stage']) + ' core ' + str(s['core']):24} "
              f"{gemm:>14} {s['macs']:>8,} {s['cycles']:>7} {s['bound_cycles']:>6} "
              f"{s['pes_used']:>8} {100 * s['utilisation']:>4.0f}%")
    rtl_cycles = report["rtl_cycles"][0]
    print(f"RTL cycle counter {rtl_cycles}, model {figures['model_cycles']}, bound "
          f"{figures['bound_cycles']} ({figures['cycles_over_bound']:.2f} x), dense layers on "
          f"the same PEs {figures['dense_cycles_same_pes']}; "
          f"{rtl_cycles / hw.clock_mhz:.2f} us at {hw.clock_mhz:g} MHz; "
          f"Verilator build and run {time.perf_counter() - started:.0f} s")
    print(json.dumps({"rtl_cycles": rtl_cycles, "model_cycles": figures["model_cycles"],
                      "bound_cycles": figures["bound_cycles"], "pes": figures["pes"],
                      "macs": figures["macs"],
                      "dense_cycles_same_pes": figures["dense_cycles_same_pes"],
                      "cycles_over_bound": round(figures["cycles_over_bound"], 4),
                      "latency_us": rtl_cycles / hw.clock_mhz, "mismatches": report["mismatches"],
                      "orders": figures["orders"]}))
    return 0 if rtl_cycles == figures["model_cycles"] and not report["mismatches"] else 1


if __name__ == "__main__":
    sys.exit(main())
