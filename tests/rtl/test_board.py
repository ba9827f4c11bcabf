"""The board top in the Amaranth simulator, spoken to bit by bit on its UART pins with the
host's protocol code: identify, an inference equal to the golden model, the cycle counter and
an unknown command."""

import pytest
import torch
from amaranth import ClockDomain, ClockSignal, Module
from amaranth.sim import Simulator

from edge3u.models import golden
from edge3u.models.random_network import random_design
from edge3u.rtl import protocol
from edge3u.rtl.board import BoardTop
from edge3u.rtl.program import build_program

DIVISOR = 4


def board(seed, **options):
    net, sched, rows, cols = random_design(seed)
    return net, sched, BoardTop(build_program(net, sched), rows, cols, divisor=DIVISOR,
                                **options)


def run(top, bench):
    """Simulate ``top`` with a clock on its ``clk`` pin (the board top has its own domain);
    the bench ticks with ``ctx.tick("board")``."""
    m = Module()
    m.domains.board = ClockDomain("board")
    m.submodules.top = top
    m.d.comb += top.clk.eq(ClockSignal("board"))
    sim = Simulator(m)
    sim.add_clock(1e-8, domain="board")
    sim.add_testbench(bench)
    sim.run()


def exchange(top, requests, reply_lengths):
    """Send each request on ``uart_rx`` bit by bit and collect its reply from ``uart_tx``."""
    replies = []

    async def bench(ctx):
        ctx.set(top.uart_rx, 1)
        await ctx.tick("board").repeat(8)  # the reset synchroniser lets go
        for request, length in zip(requests, reply_lengths):
            for byte in request:
                for bit in [0] + [(byte >> k) & 1 for k in range(8)] + [1]:
                    ctx.set(top.uart_rx, bit)
                    await ctx.tick("board").repeat(DIVISOR)
            reply = bytearray()
            while len(reply) < length:
                await ctx.tick("board").until(~top.uart_tx)  # start bit
                await ctx.tick("board").repeat(DIVISOR + DIVISOR // 2)
                byte = 0
                for k in range(8):
                    byte |= ctx.get(top.uart_tx) << k
                    await ctx.tick("board").repeat(DIVISOR)
                assert ctx.get(top.uart_tx) == 1, "stop bit"
                reply.append(byte)
            replies.append(bytes(reply))

    run(top, bench)
    return replies


@pytest.mark.parametrize("seed", [0, 3])
def test_board_answers_like_the_golden_model(seed):
    net, sched, top = board(seed)
    ident = top.identity
    image = torch.randint(0, 256, (ident.pixels,), generator=torch.Generator().manual_seed(seed))
    want = golden.int_forward(image[None], net)[0]
    requests = [protocol.IDENTIFY, protocol.infer_request(image.tolist(), ident),
                protocol.CYCLES, b"x"]
    replies = exchange(top, requests, [protocol.IDENTITY_LENGTH, protocol.result_length(ident),
                                       protocol.CYCLES_LENGTH, 2])
    assert protocol.parse_identity(replies[0]) == ident
    result = protocol.parse_result(replies[1], ident)
    assert result.logits == want.tolist()
    assert result.cls == int(torch.argmax(want))
    assert result.cycles == sched.cycles()
    assert protocol.parse_cycles(replies[2]) == sched.cycles()
    assert replies[3] == b"Ex"


def test_leds_show_busy_and_polarity():
    _, _, top = board(1, leds=2, led_active_low=True)
    seen = []

    async def bench(ctx):
        await ctx.tick("board").repeat(8)
        seen.append(ctx.get(top.led))

    run(top, bench)
    assert seen == [0b11]  # idle, class 0, both LEDs off (active low)


def test_pixels_wider_than_a_byte_are_refused():
    net, sched, rows, cols = random_design(0, input_bits=9)
    with pytest.raises(ValueError, match="9-bit pixels"):
        BoardTop(build_program(net, sched), rows, cols, divisor=DIVISOR)
