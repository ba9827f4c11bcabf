"""The ``edge3u`` command line: one subcommand per pipeline step, all on one run directory.

Every subcommand works on ``--run DIR``: ``train`` creates it from ``--config`` (default: the
Fashion-MNIST config), later steps read what earlier ones wrote there. ``--quick`` shortens
whatever trains; ``--json`` makes the last line of output one JSON object of the figures.
Bad input is reported as ``edge3u: error: ...`` with exit status 2 before any work starts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge3u.board_link import BoardError
from edge3u.cli_fpga import COMMANDS as FPGA_COMMANDS
from edge3u.cli_fpga import add_fpga_commands
from edge3u.config import ConfigError, load_config
from edge3u.rtl.protocol import ProtocolError
from edge3u.data import DataError
from edge3u.models.rom import RomError
from edge3u.runs import RunError
from edge3u.sim.runner import SimError
from edge3u.tools import ToolError

__all__ = ["main", "build_parser"]

EXIT_USAGE = 2


def _common(parser: argparse.ArgumentParser, *, run_required: bool = True) -> None:
    parser.add_argument("--run", type=Path, required=run_required, metavar="DIR",
                        help="run directory: created by train, read and extended by later steps")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object of the figures as the last line")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge3u", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="rank-adaptive low-precision training of the TT network")
    _common(train)
    train.add_argument("--config", type=Path, metavar="FILE",
                       help="configuration (.toml); default: the Fashion-MNIST config")
    train.add_argument("--quick", action="store_true", help="few epochs on a subset, for a look")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --run from its last checkpoint")
    train.add_argument("--data", metavar="DIR",
                       help="folder of the Fashion-MNIST IDX files (default: data.path, "
                            "$EDGE3U_FASHION_MNIST, /usr/share/datasets/fashion-mnist)")
    train.add_argument("--quiet", action="store_true", help="no progress output")

    quantize = sub.add_parser("quantize", help="quantization-aware fine-tuning to 1-4 bit cores")
    _common(quantize)
    quantize.add_argument("--method", help="ul2q (default from the config), uniform or lsq")
    quantize.add_argument("--weight-bits", type=_weight_bits, metavar="{1,2,3,4,ternary}")
    quantize.add_argument("--act-bits", type=int, metavar="{2..8}")
    quantize.add_argument("--epochs", type=int, help="QAT epochs (default quant.epochs)")
    quantize.add_argument("--quick", action="store_true", help="one epoch on a subset")
    quantize.add_argument("--data", metavar="DIR", help="folder of the Fashion-MNIST IDX files")
    quantize.add_argument("--quiet", action="store_true", help="no progress output")

    export = sub.add_parser("export", help="write the weight ROM images and manifest to RUN/rom")
    _common(export)

    elaborate = sub.add_parser("elaborate", help="Verilog, $readmemh ROM files and the cycle "
                                                 "summary of the accelerator in RUN/rtl")
    _common(elaborate)
    elaborate.add_argument("--no-lint", action="store_true",
                           help="skip the Verilator lint of the generated Verilog")
    simulate = sub.add_parser("simulate", help="run test images through the RTL on Verilator, "
                                               "checked against the golden model")
    _common(simulate)
    simulate.add_argument("--images", type=int, default=100, metavar="N",
                          help="first N Fashion-MNIST test images (default 100; 10000: all)")
    simulate.add_argument("--waves", action="store_true", help="write an FST trace to RUN/sim")
    simulate.add_argument("--data", metavar="DIR", help="folder of the Fashion-MNIST IDX files")
    add_fpga_commands(sub, _common)
    flow = sub.add_parser("flow", help="train, quantize, export, elaborate, simulate and "
                                       "synthesize in one go; unchanged steps are kept")
    _common(flow, run_required=False)
    flow.add_argument("--config", type=Path, metavar="FILE",
                      help="configuration (.toml); default: the run's, else Fashion-MNIST")
    flow.add_argument("--quick", action="store_true", help="quick training and QAT, 200 images")
    flow.add_argument("--images", type=int, metavar="N",
                      help="test images simulated on Verilator (default 1000, --quick 200)")
    flow.add_argument("--target", default="ecp5", help="synthesis target (default ecp5)")
    flow.add_argument("--place", action="store_true",
                      help="also place and route (ECP5: post-route Fmax); for the default "
                           "design this takes more than an hour on 2 cores")
    flow.add_argument("--data", metavar="DIR", help="folder of the Fashion-MNIST IDX files")
    flow.add_argument("--quiet", action="store_true", help="no progress output")
    sweep = sub.add_parser("sweep", help="design-space sweep: PE arrays x bit-widths x latency "
                                         "budgets, with the Pareto front")
    _common(sweep, run_required=False)
    sweep.add_argument("--config", type=Path, metavar="FILE",
                       help="base configuration (default: the Fashion-MNIST config)")
    sweep.add_argument("--grid", nargs="+", required=True, metavar="AXIS=V1,V2",
                       help="axes: pe=4x4,8x4  weight_bits=2,ternary  act_bits=4,8  "
                            "budget=0,900 (cycles)")
    sweep.add_argument("--jobs", type=int, default=2, help="points run in parallel (default 2)")
    sweep.add_argument("--target", default="ecp5", help="synthesis target (default ecp5)")
    sweep.add_argument("--data", metavar="DIR", help="folder of the Fashion-MNIST IDX files")
    sweep.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def _weight_bits(text: str):
    return text if text == "ternary" else int(text)


def _print_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def _print_train(summary: dict) -> None:
    memory, dense = summary["memory"], summary["dense_memory"]
    rows = [("test accuracy", f"{100 * summary['test_accuracy']:.2f} %"),
            ("ranks", json.dumps(summary["ranks"])),
            ("parameters", f"{summary['parameters']:,}")]
    for key in ("params", "grads", "optimizer", "activations", "other", "total"):
        rows.append((f"memory {key}", f"{memory[key]:,} B (dense FP32 {dense[key]:,} B)"))
    rows.append(("memory reduction", f"{summary['memory_reduction']:.1f}x"))
    _print_rows(rows)


def _figures(summary: dict) -> dict:
    return {key: summary[key] for key in ("test_accuracy", "ranks", "parameters",
                                          "memory_reduction", "epochs_done", "seconds")} | {
        "tt_train_bytes": summary["memory"]["total"],
        "dense_train_bytes": summary["dense_memory"]["total"]}


def _train(args) -> int:
    from edge3u.train.run import train_run

    config = load_config(args.config) if args.config else None
    summary = train_run(config, args.run, quick=args.quick, resume=args.resume,
                        data_path=args.data, progress=not args.quiet)
    _print_train(summary)
    if args.json:
        print(json.dumps(_figures(summary)))
    return 0


def _quantize(args) -> int:
    from edge3u.train.quantize_run import quantize_run

    figures = quantize_run(args.run, method=args.method, weight_bits=args.weight_bits,
                           activation_bits=args.act_bits, epochs=args.epochs, quick=args.quick,
                           data_path=args.data, progress=not args.quiet)
    _print_rows([
        ("method", f"{figures['method']}, weights {figures['weight_bits']} bits, activations "
                   f"{figures['activation_bits']} bits, {figures['epochs']} QAT epochs"),
        ("float TT accuracy", f"{100 * figures['float_tt_accuracy']:.2f} %"),
        ("fake-quant accuracy", f"{100 * figures['fake_quant_accuracy']:.2f} %"),
        ("integer accuracy", f"{100 * figures['int_accuracy']:.2f} %"),
        ("int/fake agreement", f"{100 * figures['int_vs_fake_agreement']:.2f} %")])
    if args.json:
        print(json.dumps(figures))
    return 0


def _export(args) -> int:
    from edge3u.train.export import ROM_DIR, export_run

    manifest = export_run(args.run)
    files = sum(len(layer["cores"]) + 2 for layer in manifest["layers"])  # + bias, requant
    bits, rom_dir = manifest["rom_bits"], Path(args.run) / ROM_DIR
    print(f"wrote {files} ROM images and manifest.json to {rom_dir}: "
          f"{bits:,} bits of weights, bias and requantization tables")
    if args.json:
        print(json.dumps({"rom_dir": str(rom_dir), "rom_bits": bits,
                          "layers": [layer["name"] for layer in manifest["layers"]]}))
    return 0


def _elaborate(args) -> int:
    from edge3u.rtl.elaborate import RTL_DIR, elaborate_run

    figures = elaborate_run(args.run, check_lint=not args.no_lint)
    _print_rows([(f"{s['layer']} stage {s['stage']} (core {s['core']})",
                  f"GEMM {s['gemm'][0]}x{s['gemm'][1]}x{s['gemm'][2]}: {s['macs']:,} MACs, "
                  f"{s['cycles']} cycles (bound {s['bound_cycles']}), "
                  f"{100 * s['utilisation']:.0f} % of the PEs") for s in figures["stages"]])
    _print_rows([
        ("PE array", f"{figures['pe_rows']} x {figures['pe_cols']} = {figures['pes']} PEs"),
        ("cycles per inference", f"{figures['model_cycles']:,} (bound {figures['bound_cycles']:,},"
                                 f" dense layers {figures['dense_cycles_same_pes']:,})"),
        ("latency", f"{figures['latency_us']:.2f} us at {figures['clock_mhz']:g} MHz"),
        ("on-chip memory", f"{figures['memory_bits_total']:,} bits"),
        ("lint", "skipped" if args.no_lint else
         "verilator -Wall clean" if not figures["lint_warnings"]
         else f"{figures['lint_warnings']} warnings, see {Path(args.run) / RTL_DIR / 'lint.log'}"),
        ("written", str(Path(args.run) / RTL_DIR))])
    if args.json:
        print(json.dumps(figures))
    return 1 if figures.get("lint_warnings") else 0


def _simulate(args) -> int:
    from edge3u.sim.simulate_run import simulate_run

    figures = simulate_run(args.run, images=args.images, waves=args.waves, data_path=args.data)
    _print_rows([
        ("images", f"{figures['images']:,}"),
        ("mismatches", f"{figures['mismatches']}"),
        ("RTL accuracy", f"{100 * figures['rtl_accuracy']:.2f} %"),
        ("golden accuracy", f"{100 * figures['golden_accuracy']:.2f} %"),
        ("cycles per image", f"{figures['cycles_per_image']:,}"),
        ("speed", f"{figures['images_per_s']:.0f} images/s on Verilator "
                  f"(build {figures['build_seconds']:.0f} s)"),
        *([("waves", figures["waves"])] if "waves" in figures else [])])
    if args.json:
        print(json.dumps(figures))
    return 1 if figures["mismatches"] else 0


def _flow(args) -> int:
    from edge3u.flow import REPORT_KEYS, flow_run

    config = load_config(args.config) if args.config else None
    run = args.run or Path("runs") / (((args.config.stem if args.config else "fashion_mnist"))
                                      + ("-quick" if args.quick else ""))
    report = flow_run(config, run, quick=args.quick, images=args.images, target=args.target,
                      place=args.place, data_path=args.data, progress=not args.quiet)
    fmax = report["fmax_mhz"]
    _print_rows([
        ("integer model accuracy", f"{100 * report['accuracy']:.2f} % (dense FP32 "
                                   f"{100 * report['dense_acc']:.2f} %)"),
        ("memory reduction", f"{report['memory_reduction']:.1f}x, ranks "
                             f"{json.dumps(report['ranks'])}"),
        ("cycles per inference", f"{report['rtl_cycles']} on the RTL (bound "
                                 f"{report['bound_cycles']:,})"),
        ("RTL vs golden model", f"{report['mismatches']} mismatches in "
                                f"{report['simulated_images']:,} images"),
        (report["target"], f"{report['luts']:,} LUTs, Fmax "
                           + (f"{fmax:.1f} MHz, {report['latency_us']:.2f} us" if fmax
                              else "not placed and routed (--place)")),
        ("report", str(Path(run) / "report.md"))])
    if args.json:
        print(json.dumps({k: report[k] for k in REPORT_KEYS} | report))
    return 0


def _sweep(args) -> int:
    from edge3u.sweep import parse_grid, sweep_run

    config = load_config(args.config) if args.config else load_config()
    out = args.run or Path("runs") / f"sweep-{args.config.stem if args.config else 'fashion_mnist'}"
    summary = sweep_run(config, parse_grid(args.grid), out, jobs=args.jobs, target=args.target,
                        data_path=args.data, progress=not args.quiet)
    print((Path(out) / "sweep.md").read_text())
    if args.json:
        print(json.dumps(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return {"train": _train, "quantize": _quantize, "export": _export,
                "elaborate": _elaborate, "simulate": _simulate, "flow": _flow, "sweep": _sweep,
                **FPGA_COMMANDS}[args.command](args)
    except (ConfigError, DataError, RunError, RomError, ToolError, ProtocolError,
            BoardError) as error:
        print(f"edge3u: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except SimError as error:  # the RTL and the golden model disagree, or the build failed
        print(f"edge3u: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("edge3u: interrupted; the last checkpoint is kept (resume with --resume)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
