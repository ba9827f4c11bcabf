"""Every board's constraint file parses, constrains exactly the pins the board top's Verilog
has (each on its own site), and sets the clock the board's oscillator runs at."""

import re

import pytest
from amaranth.back import verilog

from edge3u.constraints.boards import BOARDS, board, constraint_path
from edge3u.constraints.parse import ConstraintError, parse
from edge3u.models.random_network import random_design
from edge3u.rtl.board import BoardTop
from edge3u.rtl.pll import ecp5_pll_params
from edge3u.rtl.program import build_program


def verilog_ports(b):
    """The port bits of the board top's Verilog, as a toolchain names them."""
    net, sched, rows, cols = random_design(0)
    pll = ecp5_pll_params(b.oscillator_mhz, b.clock_mhz) if b.uses_pll else None
    top = BoardTop(build_program(net, sched), rows, cols, divisor=8, leds=b.leds,
                   rst_active_low=b.rst_active_low, led_active_low=b.led_active_low, pll=pll)
    text = verilog.convert(top, name="edge3u_board", emit_src=False)
    module = text[text.index("module edge3u_board("):]
    names = set(re.findall(r"\w+", module[len("module edge3u_board("):module.index(");")]))
    bits = set()
    for high, name in re.findall(r"(?:input|output)\s+(?:wire\s+|reg\s+)?"
                                 r"(?:\[(\d+):0\]\s+)?(\w+);", module):
        if name in names:
            bits |= {name} if not high else {f"{name}[{k}]" for k in range(int(high) + 1)}
    return bits


@pytest.mark.parametrize("name", list(BOARDS))
def test_every_port_of_the_board_top_is_constrained(name):
    b = BOARDS[name]
    found = parse(constraint_path(b))
    assert set(found.pins) == verilog_ports(b)
    assert len(set(found.pins.values())) == len(found.pins), "two ports on one site"


@pytest.mark.parametrize("name", list(BOARDS))
def test_the_clock_is_constrained_to_the_oscillator(name):
    b = BOARDS[name]
    assert parse(constraint_path(b)).clocks == {"clk": pytest.approx(b.oscillator_mhz)}


def test_the_ulx3s_reaches_its_target_clock_through_the_pll():
    b = BOARDS["ulx3s"]
    assert b.uses_pll
    assert ecp5_pll_params(b.oscillator_mhz, b.clock_mhz).out_mhz == pytest.approx(150)


@pytest.mark.parametrize("suffix, text, line", [
    (".lpf", 'LOCATE COMP "clk" SITE "G2";\nLOCATE COMP "rst" SIT "R1";\n', 2),
    (".lpf", 'LOCATE COMP "clk" SITE "G2"\n', 1),
    (".pcf", "set_io clk 35\nset_io rst\n", 2),
    (".xdc", "create_clock -period 10 [get_ports clk]\nset_property foo\n", 2),
])
def test_a_bad_line_is_named(tmp_path, suffix, text, line):
    path = tmp_path / f"bad{suffix}"
    path.write_text(text)
    with pytest.raises(ConstraintError, match=f"line {line}"):
        parse(path)


def test_unknown_board_lists_the_supported_ones():
    with pytest.raises(ValueError, match="unknown board 'de10'; supported: ulx3s, icebreaker"):
        board("de10")
