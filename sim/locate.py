"""Find where the RTL first departs from the golden model for one image: the layer, the stage
and the element. Replays the image through the accelerator in the Amaranth simulator, takes a
snapshot of the buffer each stage wrote, and compares it with the golden model's stage output
element by element."""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator

from edge3u.models.golden import IntNetwork
from edge3u.models.schedule import Schedule
from edge3u.rtl.accelerator import Accelerator
from edge3u.rtl.layout import buffer_of_stage, execute, golden_index
from edge3u.rtl.program import build_program

__all__ = ["first_departure"]

_PROLOGUE, _ARGMAX = 1, 4


def _snapshots(program, rows, cols, pixels):
    dut = Accelerator(program, rows, cols)
    snaps = []

    async def bench(ctx):
        for f, (row, lane) in enumerate(program.input_table):
            ctx.set(dut.load_addr, row)
            ctx.set(dut.load_lane, lane)
            ctx.set(dut.load_data, int(pixels[f]))
            ctx.set(dut.load_en, 1)
            await ctx.tick()
        ctx.set(dut.load_en, 0)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        buffers = dut.memories["buffers"]
        while True:
            await ctx.tick()
            state, count = ctx.get(dut.probes["state"]), ctx.get(dut.probes["count"])
            if (state == _PROLOGUE and count == 0) or state == _ARGMAX:
                snaps.append({b: [ctx.get(buffers[b].data[i]) for i in range(buffers[b].depth)]
                              for b in (1, 2)})
            if state == _ARGMAX:
                break
        await ctx.tick().until(dut.done)
        snaps.append([ctx.get(dut.logits[c]) for c in range(program.classes)])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return snaps


def first_departure(net: IntNetwork, schedule: Schedule, rows: int, cols: int,
                    pixels, *, hardware: IntNetwork | None = None) -> str | None:
    """A sentence naming the first element where the RTL differs from the golden model for
    this image, or None when the Amaranth simulation agrees everywhere. ``hardware`` builds the
    RTL from another network (default ``net``), e.g. ROM images that do not match the model."""
    program = build_program(hardware or net, schedule)
    pixels = np.asarray(pixels, dtype=np.int64)
    trace = []
    execute(program.layout if hardware is None else build_program(net, schedule).layout,
            pixels, trace=trace)
    snaps = _snapshots(program, rows, cols, pixels)
    bits = program.activation_bits
    for j, (sm, written) in enumerate(zip(schedule.stages, trace)):
        where = f"layer {net.layers[sm.layer].name!r} stage {sm.stage} (core {sm.core})"
        if sm.final:
            for c, value in sorted(written.items()):
                got = snaps[-1][c[1]]
                if got != value:
                    return f"{where}: logit {c[1]}: RTL {got}, golden {value}"
            continue
        snap = snaps[j][buffer_of_stage(j)[1]]
        for (row, lane), value in sorted(written.items()):
            got = snap[row] >> (lane * bits) & ((1 << bits) - 1)
            if got != value & ((1 << bits) - 1):
                element = golden_index(schedule, j, row, lane)
                return (f"{where}: element {element} of the golden stage output (buffer row "
                        f"{row}, lane {lane}): RTL code {got}, golden {value}")
    return None
