import numpy as np
import pytest

from edge3u.rtl.pe_array import PEArray
from simulate import run


@pytest.mark.parametrize("lane_bits", [None, (9, 4, 9, 3)])
def test_gemm_tile_equals_numpy_and_drains_granule_by_granule(lane_bits):
    rng = np.random.default_rng(1)
    rows, cols, lanes, inner, g = 3, 5, 4, 7, 5
    route = [p % lanes for p in range(rows * cols)]
    array = PEArray(rows, cols, act_bits=9, weight_bits=3, acc_bits=16, lanes=lanes,
                    routes=[route, [-1] * (rows * cols)], granules=[g, 1], lane_bits=lane_bits,
                    max_writes=rows * cols // g)
    bits = lane_bits or (9,) * lanes  # each lane's values within its width
    act = np.stack([rng.integers(-(1 << b - 1), 1 << b - 1, inner) for b in bits], axis=1)
    w = rng.integers(-3, 4, (inner, rows * cols))
    want = np.array([act[:, route[p]] @ w[:, p] for p in range(rows * cols)])
    drained = []

    def set_heads(ctx, i):
        for lane in range(lanes):
            ctx.set(array.heads[lane], int(act[i % inner, lane]))

    async def bench(ctx):
        set_heads(ctx, 0)  # heads are given a cycle before the weights they multiply
        await ctx.tick()
        for i in range(inner + 1):  # then one more first marker to finish the tile
            ctx.set(array.first, int(i in (0, inner)))
            ctx.set(array.writes, rows * cols // g if i == inner else 0)  # the tile it ends
            ctx.set(array.valid, int(i < inner))
            set_heads(ctx, i + 1)
            for p in range(rows * cols):
                ctx.set(array.weights[p], int(w[i % inner, p]))
            await ctx.tick()
        ctx.set(array.first, 0); ctx.set(array.valid, 0)
        await ctx.tick().until(array.result)  # returns in the cycle after the load
        for _ in range(rows * cols // g + 2):  # and then the drain holds
            drained.extend(ctx.get(array.granule[e]) for e in range(g))
            await ctx.tick()

    run(array, bench)
    last = want[-g:].tolist()
    assert drained == want.tolist() + last + last


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_rejects_routes_outside_the_lanes():
    with pytest.raises(ValueError, match="stage 0 routes a PE to a lane outside 0 .. 1"):
        PEArray(1, 2, act_bits=9, weight_bits=3, acc_bits=16, lanes=2, routes=[[0, 2]],
                granules=[1])


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_rejects_lane_widths_wider_than_the_operands():
    with pytest.raises(ValueError, match=r"lane widths must be one integer in 2 \.\. 9"):
        PEArray(1, 2, act_bits=9, weight_bits=3, acc_bits=16, lanes=2, routes=[[0, 1]],
                granules=[1], lane_bits=(9, 10))
