import numpy as np
import pytest

from edge3u.rtl.pe import PE
from simulate import run


def test_accumulates_sums_and_presents_each_when_the_next_starts():
    rng = np.random.default_rng(0)
    pe = PE(9, 3, 16)
    sums = [rng.integers(-256, 256, n) for n in (5, 1, 7)]
    weights = [rng.integers(-3, 4, len(s)) for s in sums]
    seen = []

    async def bench(ctx):
        for a, w in zip(sums, weights):
            for i, (x, y) in enumerate(zip(a, w)):
                ctx.set(pe.a, int(x)); ctx.set(pe.w, int(y))
                ctx.set(pe.valid, 1); ctx.set(pe.first, int(i == 0))
                await ctx.tick()
                if ctx.get(pe.result):
                    seen.append(ctx.get(pe.acc))
            ctx.set(pe.valid, 0)
            ctx.set(pe.first, 0)
            for _ in range(2):  # idle cycles accumulate nothing
                await ctx.tick()
                if ctx.get(pe.result):
                    seen.append(ctx.get(pe.acc))
        ctx.set(pe.first, 1)
        for _ in range(3):
            await ctx.tick()
            if ctx.get(pe.result):
                seen.append(ctx.get(pe.acc))
            ctx.set(pe.first, 0)

    run(pe, bench)
    assert seen[1:] == [int(a @ w) for a, w in zip(sums, weights)]


def test_rejects_an_accumulator_narrower_than_a_product():
    with pytest.raises(ValueError, match="cannot hold one product"):
        PE(9, 3, 8)


@pytest.mark.parametrize("multiplier", ["lut", "dsp"])
@pytest.mark.parametrize("act_bits, weight_bits", [(2, 2), (4, 2), (9, 2), (5, 3), (8, 4), (3, 5)])
def test_every_product_is_exact(multiplier, act_bits, weight_bits):
    pe = PE(act_bits, weight_bits, act_bits + weight_bits, multiplier)
    pairs = [(a, w) for a in range(-(1 << act_bits - 1), 1 << act_bits - 1)
             for w in range(-(1 << weight_bits - 1), 1 << weight_bits - 1)]
    seen = []

    async def bench(ctx):
        ctx.set(pe.valid, 1)
        ctx.set(pe.first, 1)  # every pair is a sum of its own
        for a, w in pairs + [(0, 0)] * 2:
            ctx.set(pe.a, a)
            ctx.set(pe.w, w)
            await ctx.tick()
            seen.append(ctx.get(pe.acc))

    run(pe, bench)
    assert seen[2:2 + len(pairs)] == [a * w for a, w in pairs]  # latency: 3 ticks


def test_rejects_an_unknown_multiplier_style():
    with pytest.raises(ValueError, match="PE multiplier must be one of lut, dsp, not 'dsp48'"):
        PE(4, 2, 8, "dsp48")
