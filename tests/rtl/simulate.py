"""Run an Amaranth testbench to completion (shared by the rtl tests)."""

from amaranth.sim import Simulator


def run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
