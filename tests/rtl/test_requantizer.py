import pytest
import torch

from edge3u.models.golden import Requant
from edge3u.rtl.requantizer import Requantizer, RequantSpec
from simulate import run


@pytest.mark.parametrize("multiplier", ["lut", "dsp"])
def test_equals_the_golden_requantization_for_every_stage_kind(multiplier):
    g = torch.Generator().manual_seed(0)
    specs = [RequantSpec(23456, 13, -8, 7, False),   # signed, between stages
             RequantSpec(17000, 9, 0, 15, True),     # ReLU at a hidden layer's end, with bias
             RequantSpec(0, 1, 0, 0, True)]          # the logits: accumulator plus bias
    dut = Requantizer(18, 6, specs, multiplier)
    values = torch.randint(-(1 << 15), 1 << 15, (3, 64), generator=g)
    values[:, :2] = torch.tensor([-(1 << 15), (1 << 15) - 1])  # the extremes
    biases = torch.randint(-500, 500, (3, 64), generator=g)
    got = [[], [], []]

    async def bench(ctx):
        for stage in range(3):
            ctx.set(dut.stage, stage); ctx.set(dut.valid, 0)
            await ctx.tick().repeat(dut.stage_setup)  # the stage settles first
            for i in range(64 + dut.latency):
                if i < 64:
                    ctx.set(dut.value, int(values[stage, i])); ctx.set(dut.bias, int(biases[stage, i]))
                ctx.set(dut.valid, int(i < 64))
                await ctx.tick()
                if ctx.get(dut.out_valid):
                    out = dut.logit if stage == 2 else dut.code
                    got[stage].append(ctx.get(out))

    run(dut, bench)
    assert got[0] == Requant(23456, 13, -8, 7).apply(values[0]).tolist()
    assert got[1] == Requant(17000, 9, 0, 15).apply(values[1] + biases[1]).tolist()
    assert got[2] == (values[2] + biases[2]).tolist()


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_rejects_bad_constants():
    with pytest.raises(ValueError, match="shift must be in 1 .. 62, not 0"):
        RequantSpec(100, 0, 0, 1, False)
    with pytest.raises(ValueError, match="does not fit 4-bit codes"):
        Requantizer(16, 4, [RequantSpec(100, 3, 0, 15, False)])
