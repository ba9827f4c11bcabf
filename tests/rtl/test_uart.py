"""The UART against the 8N1 frame written out by hand: start bit, data LSB first, stop bit."""

import random

import pytest
from amaranth import Module
from amaranth.sim import Simulator

from edge3u.rtl.uart import UARTReceiver, UARTTransmitter
from simulate import run


def frame(byte: int, stop: int = 1) -> list[int]:
    return [0] + [(byte >> k) & 1 for k in range(8)] + [stop]


def simulate(dut, bench, monitor):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_process(monitor)
    sim.run()


@pytest.mark.parametrize("divisor", [4, 7])
def test_transmitter_sends_each_bit_for_divisor_cycles(divisor):
    tx = UARTTransmitter(divisor)
    sent = [0xA5, 0x00, 0xFF]
    line = []

    async def bench(ctx):
        for byte in sent:
            ctx.set(tx.i_data.payload, byte)
            ctx.set(tx.i_data.valid, 1)
            await ctx.tick().until(tx.i_data.ready)
            ctx.set(tx.i_data.valid, 0)
        await ctx.tick().repeat(12 * divisor)

    async def monitor(ctx):
        async for _, _, bit in ctx.tick().sample(tx.tx):
            line.append(bit)

    simulate(tx, bench, monitor)
    want = [bit for byte in sent for bit in frame(byte)]
    start = line.index(0)
    assert all(line[:start])  # idle high before the first start bit
    assert line[start:start + len(want) * divisor] == [b for b in want for _ in range(divisor)]
    assert all(line[start + len(want) * divisor:])  # and after the last stop bit


def drive(ctx, rx_port, bits, divisor):
    async def go():
        for bit in bits:
            ctx.set(rx_port, bit)
            await ctx.tick().repeat(divisor)
    return go()


@pytest.mark.parametrize("divisor", [4, 9])
def test_receiver_reads_frames_and_drops_a_framing_error(divisor):
    rx = UARTReceiver(divisor)
    rnd = random.Random(divisor)
    sent = [rnd.randrange(256) for _ in range(6)]
    got, errors = [], []

    async def bench(ctx):
        ctx.set(rx.rx, 1)
        await ctx.tick().repeat(3)
        for k, byte in enumerate(sent):
            await drive(ctx, rx.rx, frame(byte), divisor)
            if k == 2:  # a frame with a low stop bit, then the line idles again
                await drive(ctx, rx.rx, frame(0x3C, stop=0) + [1, 1], divisor)
        await ctx.tick().repeat(4 * divisor)

    async def monitor(ctx):
        ctx.set(rx.o_data.ready, 1)
        async for _, _, valid, data, error in ctx.tick().sample(
                rx.o_data.valid, rx.o_data.payload, rx.error):
            if valid:
                got.append(data)
            if error:
                errors.append(len(got))

    simulate(rx, bench, monitor)
    assert got == sent
    assert errors == [3]


def test_transmitter_to_receiver_loopback():
    m = Module()
    tx = m.submodules.tx = UARTTransmitter(5)
    rx = m.submodules.rx = UARTReceiver(5)
    m.d.comb += rx.rx.eq(tx.tx)
    sent = list(range(0, 256, 17))
    got = []

    async def bench(ctx):
        ctx.set(rx.o_data.ready, 1)
        for byte in sent:
            ctx.set(tx.i_data.payload, byte)
            ctx.set(tx.i_data.valid, 1)
            await ctx.tick().until(tx.i_data.ready)
            ctx.set(tx.i_data.valid, 0)
            data, = await ctx.tick().sample(rx.o_data.payload).until(rx.o_data.valid)
            got.append(data)

    run(m, bench)
    assert got == sent


@pytest.mark.parametrize("divisor", [3, 0, 4.5])
def test_divisor_below_four_is_refused(divisor):
    with pytest.raises(ValueError, match=f"UART divisor .* not {divisor}"):
        UARTTransmitter(divisor)
