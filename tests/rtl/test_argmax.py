import numpy as np
import pytest
from amaranth import ClockDomain, Module, Signal, signed

from edge3u.rtl.argmax import argmax_cycles, argmax_tree
from simulate import run


@pytest.mark.parametrize("classes", [1, 2, 3, 5, 10, 17])
def test_the_tree_picks_the_first_largest_after_its_cycles(classes):
    rng = np.random.default_rng(classes)
    vectors = [rng.integers(-2000, 2000, classes) for _ in range(20)]
    vectors += [np.full(classes, -7), rng.integers(-2, 2, classes)]  # ties: the lowest index
    vectors += [np.array([-(1 << 13)] * (classes - 1) + [(1 << 13) - 1])]  # the extremes
    m = Module()
    m.domains.sync = ClockDomain()  # one or two classes need no register
    logits = [Signal(signed(14), name=f"logit{c}") for c in range(classes)]
    winner = Signal(range(max(2, classes)))
    m.d.comb += winner.eq(argmax_tree(m, logits, 14))
    got = []

    async def bench(ctx):
        for vector in vectors:
            for signal, value in zip(logits, vector):
                ctx.set(signal, int(value))
            for _ in range(argmax_cycles(classes) - 1):
                await ctx.tick()
            got.append(ctx.get(winner))

    run(m, bench)
    assert got == [int(np.argmax(v)) for v in vectors]
