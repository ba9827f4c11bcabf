"""cocotb bench: batches of images through one or more harnesses (``sim/harness.py``), checked
in order against the integer golden model.

Driver: writes a batch of whole images into each harness's image buffer, then lets the
simulator run free until every harness has finished. Monitor: reads the results back.
Model: :func:`edge3u.models.golden.int_forward` on the same images. Checker: compares class,
logits and the cycle count, in order, and reports the first mismatch.

Inputs come from the JSON file named by ``$EDGE3U_BENCH_SPEC``; the report (figures and the
first mismatch) goes to ``$EDGE3U_BENCH_REPORT``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb
import numpy as np
import torch
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from edge3u.models.golden import int_forward
from edge3u.rtl.program import pack, unpack


class ImageDriver:
    """Loads whole images into a harness's image buffer, one image per cycle."""

    def __init__(self, dut, prefix: str, images: np.ndarray, input_bits: int):
        self.dut, self.prefix, self.images, self.bits = dut, prefix, images, input_bits

    def port(self, name):
        return getattr(self.dut, self.prefix + name)

    def words(self, start: int, count: int):
        for k in range(start, min(start + count, len(self.images))):
            yield k - start, pack(self.images[k].tolist(), self.bits)


class ResultMonitor:
    """Reads the results of a batch back from a harness."""

    def __init__(self, dut, prefix: str, classes: int, acc_bits: int):
        self.dut, self.prefix, self.classes, self.acc_bits = dut, prefix, classes, acc_bits

    async def read(self, count: int):
        out = []
        for k in range(count):
            getattr(self.dut, self.prefix + "read_addr").value = k
            await RisingEdge(self.dut.clk)
            logits = unpack(int(getattr(self.dut, self.prefix + "read_logits").value),
                            self.acc_bits, self.classes)
            out.append((int(getattr(self.dut, self.prefix + "read_cls").value), logits,
                        int(getattr(self.dut, self.prefix + "read_cycles").value)))
        return out


class GoldenModel:
    """The integer golden model of one harness's network."""

    def __init__(self, network_path: str):
        self.network = torch.load(network_path, weights_only=False)

    def predict(self, images: np.ndarray):
        logits = int_forward(torch.tensor(images, dtype=torch.int64), self.network)
        return [(int(torch.argmax(row)), row.tolist()) for row in logits]


class Checker:
    """In-order comparison; keeps the first mismatch."""

    def __init__(self):
        self.first = None
        self.mismatches = 0
        self.images = 0
        self.rtl_correct = 0
        self.golden_correct = 0
        self.cycles = set()

    def check(self, label: str, index: int, got, want, cycles_want: int, truth=None):
        self.images += 1
        cls, logits, cycles = got
        self.cycles.add(cycles)
        if truth is not None:
            self.rtl_correct += int(cls == truth)
            self.golden_correct += int(want[0] == truth)
        problems = []
        if logits != want[1]:
            c = next(i for i, (a, b) in enumerate(zip(logits, want[1])) if a != b)
            problems.append(f"logit {c}: RTL {logits[c]}, golden {want[1][c]}")
        if cls != want[0]:
            problems.append(f"class: RTL {cls}, golden {want[0]}")
        if cycles != cycles_want:
            problems.append(f"cycles: RTL {cycles}, model {cycles_want}")
        if problems:
            self.mismatches += 1
            if self.first is None:
                self.first = {"harness": label, "image": index, "problems": problems,
                              "rtl_logits": logits, "golden_logits": want[1]}


@cocotb.test()
async def batches_equal_the_golden_model(dut):
    spec = json.loads(Path(os.environ["EDGE3U_BENCH_SPEC"]).read_text())
    harnesses = []
    for h in spec["harnesses"]:
        images = np.load(h["images"])
        truth = np.load(h["labels"]) if h.get("labels") else None
        harnesses.append((h, ImageDriver(dut, h["prefix"], images, h["input_bits"]),
                          ResultMonitor(dut, h["prefix"], h["classes"], h["acc_bits"]),
                          GoldenModel(h["network"]), images, truth))
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.go.value = 0
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    checker, started = Checker(), time.perf_counter()
    batches = max(-(-len(x[4]) // x[0]["depth"]) for x in harnesses)
    for b in range(batches):
        counts = []
        for h, driver, *_ in harnesses:
            start = b * h["depth"]
            count = max(0, min(h["depth"], len(driver.images) - start))
            counts.append(count)
            for addr, word in driver.words(start, count):
                driver.port("load_addr").value = addr
                driver.port("load_data").value = word
                driver.port("load_en").value = 1
                await RisingEdge(dut.clk)
            driver.port("load_en").value = 0
            driver.port("count").value = count
        dut.go.value = 1
        await RisingEdge(dut.clk)
        dut.go.value = 0
        await RisingEdge(dut.clk)
        if not int(dut.finished.value):
            await RisingEdge(dut.finished)  # the simulator runs free for the whole batch
        for (h, driver, monitor, model, images, truth), count in zip(harnesses, counts):
            if not count:
                continue
            start = b * h["depth"]
            got = await monitor.read(count)
            want = model.predict(images[start:start + count])
            for k, (g, w) in enumerate(zip(got, want)):
                checker.check(h["label"], h.get("offset", 0) + start + k, g, w, h["cycles"],
                              None if truth is None else int(truth[start + k]))
        dut._log.info("batch %d/%d: %d images, %d mismatches, %.0f s", b + 1, batches,
                      checker.images, checker.mismatches, time.perf_counter() - started)
    seconds = time.perf_counter() - started
    report = {"images": checker.images, "mismatches": checker.mismatches,
              "first_mismatch": checker.first, "seconds": seconds,
              "rtl_correct": checker.rtl_correct, "golden_correct": checker.golden_correct,
              "rtl_cycles": sorted(checker.cycles)}
    if checker.first:
        f = checker.first
        report["failure"] = (f"{checker.mismatches} of {checker.images} images differ; first: "
                             f"{f['harness']} image {f['image']}: " + "; ".join(f["problems"]))
    Path(os.environ["EDGE3U_BENCH_REPORT"]).write_text(json.dumps(report))
    assert checker.mismatches == 0, report["failure"]
