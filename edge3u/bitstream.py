"""``edge3u build``: the board top (the accelerator behind its UART) for a board, through yosys,
nextpnr-ecp5 with the board's pins, and ecppack, to a bitstream in ``RUN/board/BOARD/``."""

from __future__ import annotations

import time
from pathlib import Path

from amaranth.back import verilog

from edge3u.constraints.boards import board, constraint_path
from edge3u.runs import CONFIG, RunError, atomic_write, write_json
from edge3u.synth import synthesize
from edge3u.tools import run_logged, yowasp

__all__ = ["BOARD_DIR", "BOARD_TOP", "uart_divisor", "board_design", "build_run"]

BOARD_DIR = "board"
BOARD_TOP = "edge3u_board"
BAUD_TOLERANCE = 0.02  # a UART frame tolerates a few per cent; stay well inside


def uart_divisor(clock_mhz: float, baud: int) -> int:
    """Clock cycles per UART bit, or a RunError if ``baud`` is not close enough to a divisor
    of the clock."""
    if not isinstance(baud, int) or baud <= 0:
        raise RunError(f"--baud must be a positive integer, not {baud!r}")
    divisor = round(clock_mhz * 1e6 / baud)
    if divisor < 4 or abs(clock_mhz * 1e6 / divisor - baud) > BAUD_TOLERANCE * baud:
        raise RunError(f"--baud {baud} cannot be made from a {clock_mhz:g} MHz clock within "
                       f"{100 * BAUD_TOLERANCE:g} % (at most {clock_mhz * 1e6 / 4:,.0f} baud)")
    return divisor


def board_design(run: Path, board_name: str, baud: int, clock_mhz: float | None = None):
    """The board top of the run's design for ``board_name``, and the figures it is built
    with (clock, PLL dividers, UART divisor)."""
    from edge3u.config import load_config
    from edge3u.models.rom import load_rom
    from edge3u.rtl.board import BoardTop
    from edge3u.rtl.elaborate import build_design
    from edge3u.rtl.pll import ecp5_pll_params
    from edge3u.train.export import ROM_DIR

    b = board(board_name)
    if not (run / CONFIG).exists():
        raise RunError(f"{run / CONFIG} does not exist: run `edge3u train --run {run}` first")
    config = load_config(run / CONFIG)
    hw = config.hardware
    clock = clock_mhz or (hw.clock_mhz if b.target == "ecp5" else b.oscillator_mhz)
    pll = None
    if clock != b.oscillator_mhz:
        try:
            pll = ecp5_pll_params(b.oscillator_mhz, clock)
        except ValueError as error:
            raise RunError(f"clock {clock:g} MHz: {error}") from None
    divisor = uart_divisor(clock, baud)
    if not (run / ROM_DIR).exists():
        raise RunError(f"{run / ROM_DIR} does not exist: run `edge3u export --run {run}` first")
    net, _ = load_rom(run / ROM_DIR, config)
    _, program, sched = build_design(net, config)
    top = BoardTop(program, hw.pe_rows, hw.pe_cols, divisor=divisor, leds=b.leds,
                   rst_active_low=b.rst_active_low, led_active_low=b.led_active_low, pll=pll,
                   multiplier=hw.pe_multipliers)
    return b, top, {"board": b.name, "clock_mhz": clock, "baud": baud, "uart_divisor": divisor,
                    "pll": None if pll is None else [pll.input_div, pll.feedback_div,
                                                     pll.output_div],
                    "cycles": sched.cycles()}


def build_run(run: str | Path, board_name: str, *, baud: int = 115200,
              clock_mhz: float | None = None, quiet: bool = False) -> dict:
    """Write ``RUN/board/BOARD/``: the board top's Verilog, the synthesis and place-and-route
    logs and timing, and the bitstream; returns the figures (also ``build.json``). The design
    runs at ``clock_mhz`` (default: the config's ``hardware.clock_mhz``), made by the PLL."""
    run = Path(run)
    b = board(board_name)
    if b.target != "ecp5":
        raise RunError(f"bitstreams are built for the ECP5 boards (ulx3s) with the open "
                       f"toolchain; for {b.name} ({b.device}) run `edge3u synth --target "
                       f"{b.target}` and use constraints/{b.constraints} with the vendor tools")
    if clock_mhz is not None and not 1 <= clock_mhz <= 400:
        raise RunError(f"--clock must be in 1 .. 400 MHz, not {clock_mhz:g}")
    b, top, figures = board_design(run, board_name, baud, clock_mhz)
    out = run / BOARD_DIR / b.name
    out.mkdir(parents=True, exist_ok=True)
    text = verilog.convert(top, name=BOARD_TOP, emit_src=False)
    source = out / f"{BOARD_TOP}.v"
    atomic_write(source, lambda f: f.write(text))
    figures |= synthesize(source, out, target="ecp5", top=BOARD_TOP,
                          clock_mhz=figures["clock_mhz"], lpf=constraint_path(b), quiet=quiet)
    bitstream = out / f"{BOARD_TOP}_{b.name}.bit"
    if not (bitstream.exists() and figures.get("reused")):
        started = time.monotonic()
        partial = out / "partial.bit"
        run_logged([yowasp("ecppack"), "--compress", "board.config", partial.name],
                   out / "ecppack.log", cwd=out, label="ecppack", quiet=quiet)
        partial.replace(bitstream)
        figures["pack_seconds"] = round(time.monotonic() - started, 1)
    figures["bitstream"] = str(bitstream)
    figures["bitstream_bytes"] = bitstream.stat().st_size
    figures["latency_us"] = figures["cycles"] / figures["clock_mhz"]  # at the clock it runs
    write_json(out / "build.json", figures)
    return figures
