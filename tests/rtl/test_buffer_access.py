"""No activation buffer is written while a stage reads it. Synthesis relies on this: it tells
yosys that a read and a write of the same buffer address never meet (``no_rw_check``), so the
block RAM's read data needs no bypass logic and its register can move into the block RAM."""

from collections import Counter

import pytest
import torch

from edge3u.models import schedule
from edge3u.models.random_network import random_design, random_network
from edge3u.rtl.accelerator import Accelerator
from edge3u.rtl.program import build_program
from simulate import run


def watch_inference(net, sched, rows, cols, seed):
    """One inference in the Amaranth simulator: a count of the cycles that read rows, that
    did so while a buffer was written, and that wrote each buffer; and the stages whose source
    buffer was written while they read it."""
    program = build_program(net, sched)
    dut = Accelerator(program, rows, cols)
    pixels = torch.randint(0, 256, (len(program.input_table),),
                           generator=torch.Generator().manual_seed(seed)).tolist()
    seen, clashes = Counter(), []

    def watch(ctx):
        """Count this cycle's reads and writes; note a write into the buffer being read."""
        probes = dut.probes
        written = {b: ctx.get(en) != 0 for b, (_, en) in probes["writes"].items()}
        seen.update(f"write{b}" for b, w in written.items() if w)
        if ctx.get(probes["rd_left"]) != 0:
            stage = ctx.get(probes["stage"])
            seen["read"] += 1
            seen["read while writing"] += any(written.values())
            if written[program.stages[stage].src]:
                clashes.append(stage)

    async def bench(ctx):
        for row, lane in program.input_table:
            ctx.set(dut.load_addr, row)
            ctx.set(dut.load_lane, lane)
            ctx.set(dut.load_data, pixels.pop())
            ctx.set(dut.load_en, 1)
            await ctx.tick()
            watch(ctx)
        ctx.set(dut.load_en, 0)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        while not ctx.get(dut.done):
            watch(ctx)
            await ctx.tick()

    run(dut, bench)
    assert all(seen[f"write{b}"] for b in (0, 1, 2)) and seen["read"] > 0
    return seen, clashes


def test_rows_read_while_the_drain_writes_come_from_the_other_buffer():
    # the default network's shapes at low ranks: its write-bound stages drain a tile while
    # the rows of the tile after next are read
    shapes = [((4, 7, 4, 7), (4, 4, 8, 4), (1, 2, 2, 2, 1)), ((16, 32), (2, 5), (1, 2, 1))]
    rows, cols, lanes = 4, 5, 20
    orders = schedule.choose_orders(shapes, rows * cols, lanes)
    net = random_network([(*s, o) for s, o in zip(shapes, orders)], seed=0)
    sched = schedule.build_schedule(shapes, orders, rows * cols, lanes)
    seen, clashes = watch_inference(net, sched, rows, cols, seed=0)
    assert seen["read while writing"] > 0 and clashes == []


@pytest.mark.parametrize("seed", range(4))
def test_random_designs_never_write_the_buffer_being_read(seed):
    seen, clashes = watch_inference(*random_design(seed), seed=seed)
    assert clashes == []
