"""``edge3u_top`` in the Amaranth simulator against the golden model, on random networks and
arrays: the same logits and class for every image, and the cycle count the schedule predicts."""

import pytest
import torch

from edge3u.models import golden
from edge3u.models.random_network import random_design
from edge3u.rtl.program import build_program
from edge3u.rtl.top import Top
from simulate import run


def build(seed, requant="lut"):
    net, sched, rows, cols = random_design(seed, requant)
    return net, sched, Top(build_program(net, sched), rows, cols)


@pytest.mark.parametrize("seed,requant", [(seed, "lut") for seed in range(6)]
                         + [(seed, "dsp") for seed in range(3)])
def test_images_stream_through_and_equal_the_golden_model(seed, requant):
    """With the requantizers' multiplies in blocks (``dsp``) the drain is three cycles
    shorter, and the schedule counts that too."""
    net, sched, top = build(seed, requant)
    pixels = torch.randint(0, 256, (3, len(top.program.input_table)),
                           generator=torch.Generator().manual_seed(seed))
    want = golden.int_forward(pixels, net)
    got = []

    async def bench(ctx):
        ctx.set(top.start, 1)  # held: image after image
        for image in pixels.tolist():
            for k, value in enumerate(image):
                if k % 3 == 1:  # a gap on the input stream
                    ctx.set(top.i_pixels.valid, 0)
                    await ctx.tick()
                ctx.set(top.i_pixels.valid, 1)
                ctx.set(top.i_pixels.payload, value)
                await ctx.tick().until(top.i_pixels.ready)
            ctx.set(top.i_pixels.valid, 0)
            ctx.set(top.o_result.ready, 1)
            await ctx.tick().until(top.o_result.valid)
            got.append((ctx.get(top.o_result.payload.cls),
                        [ctx.get(top.o_result.payload.logits[c]) for c in range(sched.classes)]))
            await ctx.tick()
            got[-1] += (ctx.get(top.cycles),)

    run(top, bench)
    for (cls, logits, cycles), row in zip(got, want):
        assert logits == row.tolist()
        assert cls == int(torch.argmax(row))
        assert cycles == sched.cycles()
