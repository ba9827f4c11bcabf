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
        for _ in range(5):  # heads are the front elements, before each step
            heads.append([ctx.get(lanes.heads[0]), ctx.get(lanes.heads[1])])
            await ctx.tick()

    run(lanes, bench)
    assert heads == [[1, 5], [-2, 6], [3, 6], [-4, 6], [-4, 6]]
