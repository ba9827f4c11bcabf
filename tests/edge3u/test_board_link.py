"""The host driver over a real serial device (a pseudo-terminal), whose far end is the board
top's UART pins in the Amaranth simulator: identify, inferences equal to the golden model, the
cycle counter, and a clear error for an image the design cannot take."""

import os
import select
import threading

import pytest
import torch
from amaranth import ClockDomain, ClockSignal, Module
from amaranth.sim import Simulator

from edge3u.board_link import BoardError, BoardLink
from edge3u.models import golden
from edge3u.models.random_network import random_design
from edge3u.rtl import protocol
from edge3u.rtl.board import BoardTop
from edge3u.rtl.program import build_program

DIVISOR = 4


def serve(top, master: int, stop: threading.Event):
    """Simulate ``top``, shifting bytes from the pty's master end into ``uart_rx`` and bytes
    from ``uart_tx`` back, until ``stop`` is set."""
    m = Module()
    m.domains.board = ClockDomain("board")
    m.submodules.top = top
    m.d.comb += top.clk.eq(ClockSignal("board"))

    async def receive(ctx):
        ctx.set(top.uart_rx, 1)
        while not stop.is_set():
            if not select.select([master], [], [], 0.001)[0]:
                await ctx.tick("board").repeat(16)
                continue
            for byte in os.read(master, 4096):
                for bit in [0] + [(byte >> k) & 1 for k in range(8)] + [1]:
                    ctx.set(top.uart_rx, bit)
                    await ctx.tick("board").repeat(DIVISOR)

    async def transmit(ctx):
        while not stop.is_set():
            if ctx.get(top.uart_tx):  # idle: wait for a start bit
                await ctx.tick("board")
                continue
            await ctx.tick("board").repeat(DIVISOR + DIVISOR // 2)
            byte = 0
            for k in range(8):
                byte |= ctx.get(top.uart_tx) << k
                await ctx.tick("board").repeat(DIVISOR)
            os.write(master, bytes([byte]))

    sim = Simulator(m)
    sim.add_clock(1e-8, domain="board")
    sim.add_testbench(receive)
    sim.add_testbench(transmit)
    sim.run()


@pytest.fixture
def board_on_a_pty():
    net, sched, rows, cols = random_design(5)
    top = BoardTop(build_program(net, sched), rows, cols, divisor=DIVISOR)
    master, slave = os.openpty()
    stop = threading.Event()
    server = threading.Thread(target=serve, args=(top, master, stop))
    server.start()
    try:
        yield net, sched, os.ttyname(slave)
    finally:
        stop.set()
        server.join()
        os.close(master)
        os.close(slave)


def test_host_driver_gets_the_golden_answers(board_on_a_pty):
    net, sched, port = board_on_a_pty
    with BoardLink(port, timeout=60) as link:
        images = torch.randint(0, 256, (3, link.identity.pixels),
                               generator=torch.Generator().manual_seed(1))
        want = golden.int_forward(images, net)
        for image, row in zip(images, want):
            result = link.infer(image.tolist())
            assert result.logits == row.tolist()
            assert result.cls == int(torch.argmax(row))
            assert result.cycles == sched.cycles()
        assert link.cycles() == sched.cycles()
        with pytest.raises(protocol.ProtocolError, match="pixel 0 is 256; the board takes 8-bit"):
            link.infer([256] * link.identity.pixels)


def test_a_missing_port_is_named():
    with pytest.raises(BoardError, match="cannot open serial port '/dev/edge3u-none'"):
        BoardLink("/dev/edge3u-none")
