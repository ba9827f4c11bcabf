import pytest

from edge3u.rtl.lanes import ActivationLanes
from simulate import run

# a row's elements are given this many cycles after its controls (row_en, row_lane)
ROW_LAG = ActivationLanes.latency - ActivationLanes.row_latency


async def load(ctx, lanes, rows, swaps):
    """Row ``i`` into lane ``i`` (``swaps[i]``: with a swap), each row's elements ``ROW_LAG``
    cycles after its controls; then the controls off and ``step`` on, and the elements of the
    last rows still given."""
    for cycle in range(len(rows) + ROW_LAG):
        if cycle < len(rows):
            ctx.set(lanes.row_lane, cycle); ctx.set(lanes.row_en, 1)
            ctx.set(lanes.swap, swaps[cycle])
        else:
            ctx.set(lanes.row_en, 0); ctx.set(lanes.swap, 0); ctx.set(lanes.step, 1)
        if cycle >= ROW_LAG:
            for e, v in enumerate(rows[cycle - ROW_LAG]):
                ctx.set(lanes.row[e], v)
        if cycle < len(rows) + ROW_LAG - 1:
            await ctx.tick()


def test_rows_load_swap_in_and_step_out_one_element_per_cycle():
    lanes = ActivationLanes(6, (4, 2))
    heads = []

    async def bench(ctx):
        # the second row arrives in the swap cycle
        await load(ctx, lanes, ([1, -2, 3, -4], [5, 6, 0, 0]), swaps=(0, 1))
        for _ in range(ActivationLanes.latency):  # the step takes effect this much later
            await ctx.tick()
        for _ in range(5):  # heads are the front elements, before each step
            heads.append([ctx.get(lanes.heads[0]), ctx.get(lanes.heads[1])])
            await ctx.tick()

    run(lanes, bench)
    assert heads == [[1, 5], [-2, 6], [3, 6], [-4, 6], [-4, 6]]


def test_a_narrow_lane_keeps_only_its_width_and_heads_are_sign_extended():
    lanes = ActivationLanes(6, (2, 2), lane_bits=(6, 3))
    heads = []

    async def bench(ctx):
        await load(ctx, lanes, ([-20, 31], [-4, 5]), swaps=(0, 1))
        for _ in range(ActivationLanes.latency):  # the step takes effect this much later
            await ctx.tick()
        for _ in range(2):
            heads.append([ctx.get(lanes.heads[0]), ctx.get(lanes.heads[1])])
            await ctx.tick()

    run(lanes, bench)
    assert heads == [[-20, -4], [31, -3]]  # 5 does not fit 3 bits: the lane holds 0b101


def test_positions_of_a_lane_can_be_narrower_than_its_head():
    lanes = ActivationLanes(6, (3,), lane_bits=((6, 4, 4),))
    heads = []

    async def bench(ctx):
        await load(ctx, lanes, ([-30, -8, 9],), swaps=(1,))
        for _ in range(ActivationLanes.latency):  # the step takes effect this much later
            await ctx.tick()
        for _ in range(3):
            heads.append(ctx.get(lanes.heads[0]))
            await ctx.tick()

    run(lanes, bench)
    assert heads == [-30, -8, -7]  # 9 does not fit the 4-bit third position


@pytest.mark.parametrize("lane_bits", [(6,), (7, 3), (0, 3), ((6, 3), (3, 4))])
def test_lane_widths_are_checked(lane_bits):
    with pytest.raises(ValueError, match="lane widths"):
        ActivationLanes(6, (2, 2), lane_bits=lane_bits)
