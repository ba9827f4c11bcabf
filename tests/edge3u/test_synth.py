"""Synthesis: the report parsing against known answers, and real yosys/nextpnr runs on a small
accelerator for every target (the ECP5 one placed and routed)."""

import json

import pytest
from amaranth.back import verilog

from edge3u.models.random_network import random_design
from edge3u.rtl.program import build_program
from edge3u.rtl.top import Top
from edge3u.runs import RunError
from edge3u.slow_nets import slow_nets
from edge3u.synth import cell_resources, final_fmax, synthesize, yosys_script

NEXTPNR_LOG = """
Info: Max frequency for clock 'clk': 120.00 MHz (PASS at 100.00 MHz)
Info: Max frequency for clock 'clk': 87.50 MHz (FAIL at 100.00 MHz)
Warning: Max frequency for clock '$glbnet$clk_out': 151.23 MHz (PASS at 150.00 MHz)
"""


def test_the_last_max_frequency_per_clock_is_the_post_route_one():
    assert final_fmax(NEXTPNR_LOG) == {"clk": 87.5, "$glbnet$clk_out": 151.23}


@pytest.mark.parametrize("target, cells, want", [
    ("ecp5", {"LUT4": 100, "CCU2C": 10, "TRELLIS_FF": 50, "DP16KD": 2, "MULT18X18D": 3,
              "TRELLIS_DPR16X4": 1}, {"luts": 122, "ffs": 50, "carry": 10, "brams": 2, "dsps": 3}),
    ("ice40", {"SB_LUT4": 70, "SB_CARRY": 9, "SB_DFFE": 5, "SB_DFFSR": 6, "SB_RAM40_4K": 2,
               "SB_MAC16": 1}, {"luts": 70, "ffs": 11, "carry": 9, "brams": 2, "dsps": 1}),
    ("xilinx", {"LUT2": 5, "LUT6": 7, "RAM32M": 1, "FDRE": 8, "FDSE": 1, "CARRY4": 2,
                "RAMB36E1": 1, "RAMB18E1": 1, "DSP48E1": 4},
     {"luts": 13, "ffs": 9, "carry": 2, "brams": 1.5, "dsps": 4}),
])
def test_resources_from_cell_counts(target, cells, want):
    got = cell_resources(target, cells)
    assert {k: got[k] for k in want} == want


def test_scripts_map_multipliers_as_asked():
    ecp5 = yosys_script("ecp5", "top", "top.v", dsp=False)
    assert "synth_ecp5 -top top -nodsp -run :map_luts" in ecp5 and "abc -lut 4" in ecp5
    assert "check -assert" in ecp5
    assert "-dsp" in yosys_script("ice40", "top", "top.v", dsp=True)
    assert "-nodsp" not in yosys_script("xilinx", "top", "top.v", dsp=True)


@pytest.fixture(scope="module")
def small_verilog(tmp_path_factory):
    # requantizer multiplies in multiplier blocks: in logic the design outgrows the UP5K
    net, sched, rows, cols = random_design(4, requant="dsp")
    path = tmp_path_factory.mktemp("small") / "edge3u_top.v"
    top = Top(build_program(net, sched), rows, cols)
    path.write_text(verilog.convert(top, name="edge3u_top", emit_src=False))
    return path


@pytest.mark.parametrize("target", ["ecp5", "ice40", "xilinx"])
def test_real_synthesis_reports_resources(small_verilog, target):
    out = small_verilog.parent / target
    figures = synthesize(small_verilog, out, target=target, top="edge3u_top", clock_mhz=100,
                         quiet=True)
    assert figures["luts"] > 50 and figures["ffs"] > 50 and figures["fits"]
    if target == "ecp5":  # placed and routed: a post-route clock
        assert 20 < figures["fmax_mhz"] < 500 and (out / "nextpnr.log").is_file()
        assert figures["placed"]["TRELLIS_FF"] == figures["ffs"]
        # a small design: "auto" takes nextpnr's HeAP placer and router1
        assert figures["placer"] == "heap"
        assert "HeAP Placer" in (out / "nextpnr.log").read_text()
    else:
        assert figures["fmax_mhz"] is None
    again = synthesize(small_verilog, out, target=target, top="edge3u_top", clock_mhz=100,
                       quiet=True)
    assert again["reused"] and again["luts"] == figures["luts"]


def test_the_static_placer_places_and_routes_with_router2(small_verilog):
    out = small_verilog.parent / "ecp5-static"
    figures = synthesize(small_verilog, out, target="ecp5", top="edge3u_top", clock_mhz=100,
                         quiet=True, placer="static", seed=2)
    log = (out / "nextpnr.log").read_text()
    assert figures["placer"] == "static" and 20 < figures["fmax_mhz"] < 500
    assert figures["seed"] == 2
    assert "Running Static placer" in log and "Running router2" in log
    # the latest arrival is nextpnr's critical path: one period of its Fmax (less setup),
    # to the 0.01 ns the arrivals are rounded to
    report = json.loads((out / "pnr_report.json").read_text())
    worst = slow_nets(report, 4 * figures["fmax_mhz"])["slowest_nets"][0]["arrival_ns"]
    period = 1000 / figures["fmax_mhz"]
    assert 0.8 * period < worst <= period + 0.005


def test_an_unknown_placer_is_refused_before_yosys_runs(tmp_path):
    with pytest.raises(RunError, match="unknown placer 'annealing'; valid: auto, heap, static"):
        synthesize(tmp_path / "missing.v", tmp_path / "out", target="ecp5", top="edge3u_top",
                   clock_mhz=100, placer="annealing")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("seed", [0, -3, 2**31, 1.5, True, "7"])
def test_a_bad_seed_is_refused_before_yosys_runs(tmp_path, seed):
    with pytest.raises(RunError, match=rf"seed must be an integer in 1 \.\. 2147483647, "
                                       rf"not {seed!r}"):
        synthesize(tmp_path / "missing.v", tmp_path / "out", target="ecp5", top="edge3u_top",
                   clock_mhz=100, seed=seed)
    assert not (tmp_path / "out").exists()
