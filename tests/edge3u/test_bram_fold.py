"""The block RAM output-register fold on real yosys netlists: a read register moves into its
DP16KD (and nextpnr's timing sees the short clock-to-output), a register that resets or a read
that feeds anything else stays where it is."""

import json

import pytest
from amaranth import Elaboratable, Module, Signal, unsigned
from amaranth.back import verilog
from amaranth.lib import memory

from edge3u.bram_fold import fold_output_registers
from edge3u.synth import synthesize, yosys_script
from edge3u.tools import run_logged, yowasp


class Reads(Elaboratable):
    """A written buffer and a ROM, each read into a register; ``variant`` spoils the fold:
    "reset" gives the buffer's register a reset, "tap" lets logic read the raw read data."""

    def __init__(self, variant=None):
        self.variant = variant
        self.we, self.wa, self.wd, self.ra = Signal(), Signal(8), Signal(36), Signal(9)
        self.out, self.tap = Signal(36), Signal()

    def elaborate(self, platform):
        m = Module()
        m.submodules.buf = buf = memory.Memory(shape=unsigned(36), depth=256, init=[])
        m.submodules.rom = rom = memory.Memory(shape=unsigned(36), depth=512,
                                               init=[i * 0x9E3779B97 % (1 << 36) for i in range(512)])
        w, r, rr = buf.write_port(), buf.read_port(), rom.read_port()
        m.d.comb += [w.en.eq(self.we), w.addr.eq(self.wa), w.data.eq(self.wd),
                     r.addr.eq(self.ra), rr.addr.eq(self.ra)]
        held = Signal(36, reset_less=self.variant != "reset")
        code = Signal(36, reset_less=True)
        m.d.sync += [held.eq(r.data), code.eq(rr.data), self.out.eq(held + code)]
        if self.variant == "tap":
            m.d.sync += self.tap.eq(r.data[3] & r.data[7])
        return m


def synthesized(tmp_path, variant=None) -> dict:
    dut = Reads(variant)
    (tmp_path / "t.v").write_text(verilog.convert(
        dut, name="top", ports=[dut.we, dut.wa, dut.wd, dut.ra, dut.out, dut.tap],
        emit_src=False))
    (tmp_path / "s.ys").write_text(yosys_script("ecp5", "top", "t.v", dsp=True))
    run_logged([yowasp("yosys"), "-q", "-l", "yosys.log", "-s", "s.ys"], tmp_path / "yosys.log",
               cwd=tmp_path, label="yosys", quiet=True, tool_writes_log=True)
    return json.loads((tmp_path / "netlist.json").read_text())


def rams(netlist):
    cells = netlist["modules"]["top"]["cells"].values()
    return sorted((c["parameters"]["REGMODE_A"], c["parameters"]["REGMODE_B"])
                  for c in cells if c["type"] == "DP16KD")


def flip_flops(netlist):
    return sum(c["type"] == "TRELLIS_FF" for c in netlist["modules"]["top"]["cells"].values())


def test_read_registers_move_into_the_block_rams(tmp_path):
    netlist = synthesized(tmp_path)
    ffs = flip_flops(netlist)
    assert rams(netlist) == [("NOREG", "NOREG")] * 2
    assert fold_output_registers(netlist, "top") == {"brams": 2, "ffs": 72}
    assert rams(netlist) == [("OUTREG", "OUTREG")] * 2 and flip_flops(netlist) == ffs - 72
    for cell in netlist["modules"]["top"]["cells"].values():
        if cell["type"] == "DP16KD":
            assert cell["connections"]["OCEA"] == cell["connections"]["OCEB"] == ["1"]
    assert fold_output_registers(netlist, "top") == {"brams": 0, "ffs": 0}  # done once


@pytest.mark.parametrize("variant", ["reset", "tap"])
def test_a_register_that_resets_or_a_read_used_elsewhere_stays(tmp_path, variant):
    netlist = synthesized(tmp_path, variant)
    assert fold_output_registers(netlist, "top") == {"brams": 1, "ffs": 36}  # the ROM only
    assert rams(netlist) == [("NOREG", "NOREG"), ("OUTREG", "OUTREG")]


def test_synthesis_folds_and_nextpnr_times_the_block_ram_register(tmp_path):
    dut = Reads()
    (tmp_path / "t.v").write_text(verilog.convert(
        dut, name="top", ports=[dut.we, dut.wa, dut.wd, dut.ra, dut.out], emit_src=False))
    figures = synthesize(tmp_path / "t.v", tmp_path / "ecp5", target="ecp5", top="top",
                         clock_mhz=200, quiet=True)
    assert figures["bram_output_registers"] == 2
    assert figures["placed"]["TRELLIS_FF"] == figures["ffs"]
    # clock to output of a DP16KD: 5.8 ns without its register, under 1.5 ns with it
    assert figures["fmax_mhz"] > 1000 / 5.8
