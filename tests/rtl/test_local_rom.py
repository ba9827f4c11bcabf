import numpy as np
import pytest
from amaranth import signed, unsigned

from edge3u.rtl.local_rom import LocalRom
from simulate import run


@pytest.mark.parametrize("block", [True, False])
@pytest.mark.parametrize("levels", [1, 2])
def test_every_word_comes_its_latency_after_its_address(block, levels):
    rng = np.random.default_rng(int(block) + 2 * levels)
    words = [int(v) for v in rng.integers(-(1 << 9), 1 << 9, 37)]
    rom = LocalRom(signed(10), words, block=block, address_registers=levels)
    addresses = [int(a) for a in rng.integers(0, len(words), 60)] + [0, len(words) - 1]
    seen = []

    async def bench(ctx):
        for addr in addresses + [0] * rom.latency:
            ctx.set(rom.addr, addr)
            await ctx.tick()
            seen.append(ctx.get(rom.data))

    run(rom, bench)
    assert rom.latency == levels + block
    assert seen[rom.latency - 1:rom.latency - 1 + len(addresses)] == [words[a] for a in addresses]


def test_a_rom_slice_needs_words():
    with pytest.raises(ValueError, match="a ROM slice needs at least one word"):
        LocalRom(unsigned(4), [], block=True)
