"""The PE array and the requantizer on Verilator, each through its cocotb bench."""

import numpy as np
import pytest

from edge3u.rtl.pe_array import PEArray
from edge3u.rtl.requantizer import Requantizer, RequantSpec
from edge3u.sim.runner import build, run_bench

BENCH = "edge3u.sim.benches.components"


def test_pe_array_gemm_tiles_equal_numpy(sim_root):
    rng = np.random.default_rng(7)
    rows, cols, lanes, inner, g = 3, 5, 4, 6, 5  # 15 PEs, non-powers of two
    route = [(p * 3) % lanes for p in range(rows * cols)]
    array = PEArray(rows, cols, act_bits=9, weight_bits=3, acc_bits=16, lanes=lanes,
                    routes=[route], granules=[g], max_writes=rows * cols // g)
    spec = {"component": "pe_array", "route": route, "granule": g,
            "head_lead": PEArray.head_latency - PEArray.latency,
            "bits": {"act": 9, "weight": 3, "acc": 16},
            "act": rng.integers(-256, 256, (4, inner, lanes)).tolist(),
            "weights": rng.integers(-3, 4, (4, inner, rows * cols)).tolist()}
    report = run_bench(build(array, "edge3u_pe_array", optimize=False, root=sim_root),
                       "edge3u_pe_array", BENCH, spec)
    assert report["tiles"] == 4 and report["mismatches"] == 0


@pytest.mark.parametrize("multiplier", ["lut", "dsp"])
def test_requantizer_equals_the_golden_requant(sim_root, multiplier):
    rng = np.random.default_rng(8)
    specs = [dict(multiplier=23456, shift=13, lo=-8, hi=7, has_bias=False),
             dict(multiplier=17000, shift=9, lo=0, hi=15, has_bias=True),
             dict(multiplier=0, shift=1, lo=0, hi=0, has_bias=True)]
    dut = Requantizer(18, 6, [RequantSpec(**s) for s in specs], multiplier)
    spec = {"component": "requantizer", "specs": specs, "code_bits": 6, "acc_bits": 18,
            "latency": dut.latency, "stage_setup": Requantizer.stage_setup,
            "values": rng.integers(-(1 << 15), 1 << 15, (3, 200)).tolist(),
            "biases": rng.integers(-500, 500, (3, 200)).tolist()}
    report = run_bench(build(dut, "edge3u_requantizer", optimize=False, root=sim_root),
                       "edge3u_requantizer", BENCH, spec)
    assert report["values"] == 600 and report["mismatches"] == 0
