"""cocotb benches for single components on Verilator: the PE array GEMM and the requantizer.

Each follows driver -> DUT -> monitor -> checker against a model: numpy for the GEMM,
:class:`edge3u.models.golden.Requant` for the requantizer. The spec (``$EDGE3U_BENCH_SPEC``)
names the component and holds its operands; the report goes to ``$EDGE3U_BENCH_REPORT``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
import numpy as np
import torch
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from edge3u.models.golden import Requant
from edge3u.rtl.program import pack, unpack


def _report(report):
    Path(os.environ["EDGE3U_BENCH_REPORT"]).write_text(json.dumps(report))


async def _reset(dut):
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0


async def _pe_array(dut, spec):
    act = np.array(spec["act"])          # (tiles, inner, lanes)
    weights = np.array(spec["weights"])  # (tiles, inner, pes)
    route, g, bits = spec["route"], spec["granule"], spec["bits"]
    pes = weights.shape[2]
    want = [[int(act[t, :, route[p]] @ weights[t, :, p]) for p in range(pes)]
            for t in range(len(act))]
    got, tile = [], []
    # The array counts its drain down itself; the bench keeps the same count, a cycle ahead
    # of the granule it presents.
    advance = {"now": 0}

    async def monitor():
        ahead = 0
        while len(got) < len(want):
            await RisingEdge(dut.clk)
            if ahead:
                tile.extend(unpack(int(dut.granule.value), bits["acc"], g))
                if len(tile) == pes:
                    got.append(list(tile))
                    tile.clear()
            ahead = advance["now"]

    cocotb.start_soon(monitor())
    dut.stage.value = 0
    # heads are given head_lead cycles before the weights they multiply
    lead, heads = spec["head_lead"], act.reshape(-1, act.shape[2])
    dut.valid.value = dut.first.value = dut.writes.value = 0
    for c in range(lead):
        dut.heads.value = pack(heads[c], bits["act"])
        await RisingEdge(dut.clk)
    draining = 0
    for t in range(len(act) + 1):        # driver: one tile after another, back to back
        for i in range(act.shape[1]):
            last = t == len(act)
            dut.first.value = int(i == 0)
            dut.writes.value = pes // g if i == 0 and t > 0 else 0  # the tile the first ends
            dut.valid.value = int(not last)
            c = t * act.shape[1] + i + lead
            if c < len(heads):
                dut.heads.value = pack(heads[c], bits["act"])
            if not last:
                dut.weights.value = pack(weights[t, i], bits["weight"])
            advance["now"] = int(draining > 0)
            draining -= draining > 0
            await RisingEdge(dut.clk)
            if int(dut.result.value) and t > 0:
                draining = pes // g
    dut.valid.value = 0
    dut.first.value = 0
    while draining:
        advance["now"] = 1
        draining -= 1
        await RisingEdge(dut.clk)
    advance["now"] = 0
    await ClockCycles(dut.clk, 3)
    bad = [t for t, (a, b) in enumerate(zip(got, want)) if a != b]
    return {"tiles": len(want), "mismatches": len(bad) + len(want) - len(got),
            "failure": f"tile {bad[0]}: RTL {got[bad[0]]}, numpy {want[bad[0]]}" if bad else None}


async def _requantizer(dut, spec):
    values, biases, specs = spec["values"], spec["biases"], spec["specs"]
    want, got = [], []
    for s, (vals, bias, rq) in enumerate(zip(values, biases, specs)):
        x = torch.tensor(vals) + (torch.tensor(bias) if rq["has_bias"] else 0)
        want += (Requant(rq["multiplier"], rq["shift"], rq["lo"], rq["hi"]).apply(x).tolist()
                 if rq["multiplier"] else x.tolist())
    code_bits, acc_bits = spec["code_bits"], spec["acc_bits"]
    for s, (vals, bias) in enumerate(zip(values, biases)):
        dut.stage.value = s
        dut.valid.value = 0
        for _ in range(spec["stage_setup"]):  # the stage settles before its first value
            await RisingEdge(dut.clk)
        for i in range(len(vals) + spec["latency"]):  # outputs are seen a cycle late here
            if i < len(vals):
                dut.value.value = vals[i] & ((1 << acc_bits) - 1)
                dut.bias.value = bias[i] & ((1 << acc_bits) - 1)
            dut.valid.value = int(i < len(vals))
            await RisingEdge(dut.clk)
            if int(dut.out_valid.value):
                keep = not specs[s]["multiplier"]
                port, bits = (dut.logit, acc_bits) if keep else (dut.code, code_bits)
                got.append(unpack(int(port.value), bits, 1)[0])
    bad = [i for i, (a, b) in enumerate(zip(got, want)) if a != b]
    return {"values": len(want), "mismatches": len(bad) + abs(len(want) - len(got)),
            "failure": f"value {bad[0]}: RTL {got[bad[0]]}, golden {want[bad[0]]}" if bad
            else None}


@cocotb.test()
async def component_equals_its_model(dut):
    spec = json.loads(Path(os.environ["EDGE3U_BENCH_SPEC"]).read_text())
    await _reset(dut)
    bench = {"pe_array": _pe_array, "requantizer": _requantizer}[spec["component"]]
    report = await bench(dut, spec)
    _report(report)
    assert report["mismatches"] == 0, report["failure"]
