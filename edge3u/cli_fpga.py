"""The FPGA subcommands of ``edge3u``: ``synth``, ``build`` and ``board``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["add_fpga_commands", "COMMANDS"]


def add_fpga_commands(sub, common) -> None:
    from edge3u.constraints.boards import BOARDS
    from edge3u.synth import PLACERS, TARGETS

    synth = sub.add_parser("synth", help="synthesis (yosys) and resource report; ECP5: place "
                                         "and route on the LFE5U-85F and its Fmax")
    common(synth)
    synth.add_argument("--target", required=True, choices=TARGETS)
    synth.add_argument("--no-dsp", action="store_true",
                       help="keep every multiplier in LUTs (the requantizer's included); by "
                            "default they go to the DSP blocks (see hardware.pe_multipliers for "
                            "the PEs')")
    synth.add_argument("--placer", choices=PLACERS, default="auto",
                       help="nextpnr's placer, ECP5: heap (with router1) or static (with "
                            "router2); auto (default) takes static above half the part's LUTs")
    synth.add_argument("--seed", type=int, default=1,
                       help="nextpnr's random seed (default 1): the placement of a large "
                            "design, and with it the Fmax, moves from seed to seed, and some "
                            "seeds do not route (figures in docs/fpga.md)")
    synth.add_argument("--quiet", action="store_true", help="no progress output")

    build = sub.add_parser("build", help="a bitstream of the board top (the accelerator behind "
                                         "a UART) for a board, with its timing report")
    common(build)
    build.add_argument("--board", required=True, choices=list(BOARDS))
    build.add_argument("--baud", type=int, default=115200, help="UART baud rate (default 115200)")
    build.add_argument("--clock", type=float, metavar="MHZ",
                       help="clock of the design, made by the PLL (default hardware.clock_mhz); "
                            "lower it when the timing report misses the target")
    build.add_argument("--quiet", action="store_true", help="no progress output")

    board = sub.add_parser("board", help="send test images to a programmed board over its "
                                         "serial port; answers checked against the golden model")
    common(board)
    board.add_argument("--port", required=True,
                       help="serial port of the board (/dev/ttyUSB0) or a pyserial URL")
    board.add_argument("--baud", type=int, default=115200)
    board.add_argument("--images", type=int, default=100, metavar="N",
                       help="first N test images (default 100)")
    board.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for a reply")
    board.add_argument("--data", metavar="DIR", help="folder of the Fashion-MNIST IDX files")


def _rows(rows):
    from edge3u.cli import _print_rows  # imported when a command runs: cli imports this module

    _print_rows(rows)


def _resources(f: dict, at: str = "Fmax") -> list[tuple[str, str]]:
    rows = [("target", f"{f['target']} ({f['device']}), multipliers in {f['multipliers']}"),
            ("LUTs", f"{f['luts']:,} (carry cells {f['carry']:,})"),
            ("flip-flops", f"{f['ffs']:,}"), ("block RAMs", f"{f['brams']:g}"),
            ("DSP blocks", f"{f['dsps']:,}")]
    if f.get("fmax_mhz"):
        rows.append(("Fmax (post-route)", f"{f['fmax_mhz']:.1f} MHz, target {f['clock_mhz']:g} "
                                          f"MHz: {'met' if f['timing_met'] else 'MISSED'}"))
        rows.append(("latency", f"{f['cycles']:,} cycles = {f['latency_us']:.2f} us at {at}"))
        if f.get("late_endpoints"):
            rows.append(("late endpoints", f"{f['late_endpoints']:,} of {f['endpoints']:,} "
                                           f"arrive after {1000 / f['clock_mhz']:.2f} ns"))
            rows += [(f"  {n['arrival_ns']:.2f} ns", f"{n['net']} ({n['late_endpoints']:,})")
                     for n in f["slowest_nets"][:5]]
    else:
        rows.append(("Fmax", "not placed and routed (ECP5 only)"))
    if f.get("reused"):
        rows.append(("reused", "the Verilog and options are unchanged since the last run"))
    return rows


def _synth(args) -> int:
    from edge3u.synth import SYNTH_DIR, synth_run

    f = synth_run(args.run, args.target, dsp=not args.no_dsp, quiet=args.quiet,
                  placer=args.placer, seed=args.seed)
    _rows(_resources(f) + [("fits the device", "yes" if f["fits"] else "NO"),
                           ("written", str(Path(args.run) / SYNTH_DIR / args.target))])
    if args.json:
        print(json.dumps({k: v for k, v in f.items() if k != "cells"}))
    return 0


def _build(args) -> int:
    from edge3u.bitstream import build_run

    f = build_run(args.run, args.board, baud=args.baud, clock_mhz=args.clock, quiet=args.quiet)
    _rows([("board", f"{f['board']}: design at {f['clock_mhz']:g} MHz"
                     + (f" (PLL dividers {f['pll']})" if f["pll"] else "")
                     + f", UART {f['baud']} baud"), *_resources(f, f"{f['clock_mhz']:g} MHz"),
           ("bitstream", f"{f['bitstream']} ({f['bitstream_bytes']:,} bytes)")])
    if not f["timing_met"]:
        print(f"edge3u: the design does not meet {f['clock_mhz']:g} MHz (Fmax "
              f"{f['fmax_mhz']:.1f} MHz): the bitstream is not safe to use; rebuild with "
              f"--clock {int(f['fmax_mhz'])} or lower", file=sys.stderr)
    if args.json:
        print(json.dumps({k: v for k, v in f.items() if k != "cells"}))
    return 0 if f["timing_met"] else 1


def _board(args) -> int:
    from edge3u.board_link import board_run

    f = board_run(args.run, args.port, images=args.images, baud=args.baud,
                  data_path=args.data, timeout=args.timeout)
    _rows([("images", f"{f['images']:,}"), ("mismatches", str(f["mismatches"])),
           ("board accuracy", f"{100 * f['board_accuracy']:.2f} %"),
           ("cycles per image", f"{f['cycles_per_image']:,}"),
           ("speed", f"{f['images_per_s']:.1f} images/s over the serial port")])
    if args.json:
        print(json.dumps(f))
    return 1 if f["mismatches"] else 0


COMMANDS = {"synth": _synth, "build": _build, "board": _board}
