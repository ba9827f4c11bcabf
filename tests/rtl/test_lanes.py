import pytest

from edge3u.rtl.lanes import ActivationLanes
from simulate import run


def test_rows_load_swap_in_and_step_out_one_element_per_cycle():
    lanes = ActivationLanes(6, (4, 2))
    heads = []

    async def bench(ctx):
        for lane, row in enumerate(([1, -2, 3, -4], [5, 6, 0, 0])):
            ctx.set(lanes.row_lane, lane); ctx.set(lanes.row_en, 1)
            for e, v in enumerate(row):
                ctx.set(lanes.row[e], v)
            if lane == 1:
                ctx.set(lanes.swap, 1)  # the second row arrives in the swap cycle
            await ctx.tick()
        ctx.set(lanes.row_en, 0); ctx.set(lanes.swap, 0); ctx.set(lanes.step, 1)
        for _ in range(ActivationLanes.latency):  # every input takes effect this much later
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
        for lane, row in enumerate(([-20, 31], [-4, 5])):
            ctx.set(lanes.row_lane, lane); ctx.set(lanes.row_en, 1); ctx.set(lanes.swap, lane)
            for e, v in enumerate(row):
                ctx.set(lanes.row[e], v)
            await ctx.tick()
        ctx.set(lanes.row_en, 0); ctx.set(lanes.swap, 0); ctx.set(lanes.step, 1)
        for _ in range(ActivationLanes.latency):  # every input takes effect this much later
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
        ctx.set(lanes.row_en, 1); ctx.set(lanes.swap, 1)
        for e, v in enumerate([-30, -8, 9]):
            ctx.set(lanes.row[e], v)
        await ctx.tick()
        ctx.set(lanes.row_en, 0); ctx.set(lanes.swap, 0); ctx.set(lanes.step, 1)
        for _ in range(ActivationLanes.latency):  # every input takes effect this much later
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
