"""cocotb bench: the board top spoken to bit by bit on its UART pins, as a host would.

Driver: shifts each request byte onto ``uart_rx`` (start bit, 8 data bits LSB first, stop bit),
``divisor`` clock cycles per bit. Monitor: samples ``uart_tx`` in the middle of each bit and
rebuilds the reply bytes. Requests and replies are made and parsed by ``rtl/protocol.py``,
the host driver's own code. Model: the integer golden model; checker: class, logits and the
cycle counter of every image, then the identify and cycle-counter replies.

Inputs come from ``$EDGE3U_BENCH_SPEC``; the report goes to ``$EDGE3U_BENCH_REPORT``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
import numpy as np
import torch
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge

from edge3u.models.golden import int_forward
from edge3u.rtl import protocol


class UartDriver:
    def __init__(self, dut, divisor: int):
        self.dut, self.divisor = dut, divisor

    async def send(self, data: bytes):
        for byte in data:
            for bit in [0] + [(byte >> k) & 1 for k in range(8)] + [1]:
                self.dut.uart_rx.value = bit
                await ClockCycles(self.dut.clk, self.divisor)


class UartMonitor:
    def __init__(self, dut, divisor: int):
        self.dut, self.divisor = dut, divisor

    async def receive(self, length: int) -> bytes:
        out = bytearray()
        for _ in range(length):
            await FallingEdge(self.dut.uart_tx)  # start bit
            await ClockCycles(self.dut.clk, self.divisor + self.divisor // 2)
            byte = 0
            for k in range(8):
                byte |= int(self.dut.uart_tx.value) << k
                await ClockCycles(self.dut.clk, self.divisor)
            assert int(self.dut.uart_tx.value) == 1, f"byte {len(out)}: stop bit low"
            out.append(byte)
        return bytes(out)


async def ask(driver, monitor, request: bytes, length: int) -> bytes:
    reply = cocotb.start_soon(monitor.receive(length))
    await driver.send(request)
    return await reply


@cocotb.test()
async def uart_answers_equal_the_golden_model(dut):
    spec = json.loads(Path(os.environ["EDGE3U_BENCH_SPEC"]).read_text())
    images = np.load(spec["images"])
    network = torch.load(spec["network"], weights_only=False)
    want = int_forward(torch.tensor(images, dtype=torch.int64), network)
    driver, monitor = UartDriver(dut, spec["divisor"]), UartMonitor(dut, spec["divisor"])
    Clock(dut.clk, 10, unit="ns").start()
    dut.uart_rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 4)

    identity = protocol.parse_identity(await ask(driver, monitor, protocol.IDENTIFY,
                                                 protocol.IDENTITY_LENGTH))
    problems = []
    if identity != protocol.Identity(**spec["identity"]):
        problems.append(f"identity: board {identity}, expected {spec['identity']}")
    for k, (image, row) in enumerate(zip(images, want)):
        reply = await ask(driver, monitor, protocol.infer_request(image.tolist(), identity),
                          protocol.result_length(identity))
        result = protocol.parse_result(reply, identity)
        expect = (int(torch.argmax(row)), row.tolist(), spec["cycles"])
        if (result.cls, result.logits, result.cycles) != expect:
            problems.append(f"image {k}: board {result}, golden {expect}")
    cycles = protocol.parse_cycles(await ask(driver, monitor, protocol.CYCLES,
                                             protocol.CYCLES_LENGTH))
    if cycles != spec["cycles"]:
        problems.append(f"cycle counter: board {cycles}, model {spec['cycles']}")
    report = {"images": len(images), "problems": problems}
    if problems:
        report["failure"] = "; ".join(problems[:3])
    Path(os.environ["EDGE3U_BENCH_REPORT"]).write_text(json.dumps(report))
    assert not problems, report["failure"]
