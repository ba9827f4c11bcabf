"""``edge3u elaborate``: the run's ROM images as Verilog (top ``edge3u_top``), ``$readmemh``
files and a summary of cycles, MACs and memory, all in ``RUN/rtl/``; the Verilog is linted with
Verilator (``-Wall``, waivers in ``rtl/lint.vlt``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from amaranth.back import verilog

from edge3u.config import Config, load_config
from edge3u.models.golden import IntNetwork
from edge3u.models.rom import hex_lines, load_rom
from edge3u.models.schedule import Schedule, ScheduleError, schedule_network
from edge3u.rtl.program import Program, build_program, pack
from edge3u.rtl.top import Top
from edge3u.runs import CONFIG, RunError, atomic_write, write_json
from edge3u.tools import verilator_bin, verilator_env

__all__ = ["RTL_DIR", "TOP", "LINT_WAIVERS", "fit", "build_design", "summary", "lint",
           "elaborate_run", "hex_files"]

RTL_DIR = "rtl"
TOP = "edge3u_top"
LINT_WAIVERS = Path(__file__).with_name("lint.vlt")


def fit(net: IntNetwork, config: Config) -> Schedule:
    """The schedule of ``net`` on the configured array, or a clear error if it does not fit."""
    try:
        return schedule_network(net, config.hardware)
    except ScheduleError as error:
        raise RunError(f"the network does not fit the [hardware] of the config: {error}") from None


def build_design(net: IntNetwork, config: Config) -> tuple[Top, Program, Schedule]:
    """The top module for ``net`` on the configured array (parameters checked first)."""
    hw = config.hardware
    sched = fit(net, config)
    program = build_program(net, sched)
    top = Top(program, hw.pe_rows, hw.pe_cols, hw.pe_multipliers)
    return top, program, sched


def hex_files(program: Program) -> dict[str, str]:
    """Every ROM of the design as ``$readmemh`` text (one word per line, element 0 in the low
    bits of a word). Layouts: ``docs/hardware.md``."""
    p = program
    tile_fields = [("stage", p.stage_count + 1), ("reads", max(t.reads for t in p.tiles) + 1),
                   ("first_row", max(t.first_row for t in p.tiles) + 1),
                   ("writes", max(t.writes for t in p.tiles) + 1),
                   ("weight_base", len(p.weight_words)),
                   ("window_last", max(t.window_last for t in p.tiles) + 1)]
    widths = [max(1, (n - 1).bit_length()) for _, n in tile_fields]
    tiles = []
    for t in p.tiles:
        word, shift = 0, 0
        for (name, _), bits in zip(tile_fields, widths):
            word |= getattr(t, name) << shift
            shift += bits
        tiles.append(word)
    return {
        "weights.hex": hex_lines([pack(w, p.weight_bits) for w in p.weight_words],
                            p.pes * p.weight_bits),
        "write_table.hex": hex_lines([r | b << p.row_bits for r, b in p.write_table],
                                p.row_bits + p.block_bits),
        "bias.hex": hex_lines([pack(b, p.acc_bits) for b in p.bias_words],
                         p.requant_lanes * p.acc_bits),
        "tiles.hex": hex_lines(tiles, sum(widths)),
        "input_table.hex": hex_lines([r | lane << p.input_row_bits for r, lane in p.input_table],
                                p.input_row_bits + p.input_lane_bits),
    }


def summary(program: Program, config: Config) -> dict:
    """Cycles, bound, per-stage MACs, cycles and utilisation, memory bits — before synthesis."""
    sched = program.schedule
    pes = sched.pes
    stages = []
    for j, sm in enumerate(sched.stages):
        cycles = sm.cycles()
        stages.append({
            "layer": config.layers[sm.layer].name, "stage": sm.stage, "core": sm.core,
            "gemm": [sm.rows, sm.n_inner, sm.n_cols], "macs": sm.macs, "cycles": cycles,
            "bound_cycles": sm.bound(pes), "pes_used": sm.pes, "granule": sm.granule,
            "tiles": len(sm.tiles()), "utilisation": sm.macs / (cycles * pes)})
    cycles = sched.cycles()
    dense_macs = sum(layer.in_features * layer.out_features for layer in config.layers)
    return {
        "top": TOP, "pe_rows": config.hardware.pe_rows, "pe_cols": config.hardware.pe_cols,
        "pes": pes, "requant_lanes": program.requant_lanes, "macs": sched.macs,
        "model_cycles": cycles, "bound_cycles": sched.bound(),
        "cycles_over_bound": cycles / sched.bound(),
        "dense_cycles_same_pes": -(-dense_macs // pes),
        "clock_mhz": config.hardware.clock_mhz,
        "latency_us": cycles / config.hardware.clock_mhz,
        "utilisation": sched.macs / (cycles * pes),
        "orders": {config.layers[i].name: list(o) for i, o in enumerate(sched.orders)},
        "acc_bits": program.acc_bits, "weight_bits": program.weight_bits,
        "activation_bits": program.activation_bits,
        "memory_bits": program.memory_bits(),
        "memory_bits_total": sum(program.memory_bits().values()),
        "stages": stages,
    }


def lint(verilog_path: Path) -> list[str]:
    """Verilator ``--lint-only -Wall`` with the waivers of ``rtl/lint.vlt``; returns the
    warnings (empty: clean)."""
    result = subprocess.run(
        [verilator_bin(), "--lint-only", "-Wall", str(LINT_WAIVERS), str(verilog_path),
         "--top-module", TOP],
        capture_output=True, text=True, env=verilator_env())
    return [line for line in result.stderr.splitlines() if line.startswith("%")]


def elaborate_run(run: str | Path, *, check_lint: bool = True) -> dict:
    """Write ``RUN/rtl/`` from ``RUN/rom/``; returns the summary (also ``RUN/rtl/summary.json``)."""
    run = Path(run)
    if not (run / CONFIG).exists():
        raise RunError(f"{run / CONFIG} does not exist: run `edge3u train --run {run}` first")
    config = load_config(run / CONFIG)
    from edge3u.train.export import ROM_DIR

    net, _ = load_rom(run / ROM_DIR, config)
    top, program, _ = build_design(net, config)
    out = run / RTL_DIR
    out.mkdir(parents=True, exist_ok=True)
    text = verilog.convert(top, name=TOP, emit_src=False)
    verilog_path = out / f"{TOP}.v"
    atomic_write(verilog_path, lambda f: f.write(text))
    for name, content in hex_files(program).items():
        atomic_write(out / name, lambda f, c=content: f.write(c))
    figures = summary(program, config)
    figures["verilog"] = str(verilog_path)
    if check_lint:
        warnings = lint(verilog_path)
        figures["lint_warnings"] = len(warnings)
        if warnings:
            (out / "lint.log").write_text("\n".join(warnings) + "\n")
    write_json(out / "summary.json", figures)
    return figures
