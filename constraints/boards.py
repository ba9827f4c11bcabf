"""The supported boards: device, oscillator, the board top's target clock and pin polarities,
and the constraint file beside this module."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Board", "BOARDS", "board", "constraint_path"]


@dataclass(frozen=True)
class Board:
    name: str
    target: str            # synthesis target: ecp5, ice40 or xilinx
    device: str
    package: str
    oscillator_mhz: float  # the clock on the ``clk`` pin
    clock_mhz: float       # what the design runs at (through a PLL when higher)
    leds: int
    rst_active_low: bool
    led_active_low: bool
    constraints: str       # file name in constraints/

    @property
    def uses_pll(self) -> bool:
        return self.clock_mhz != self.oscillator_mhz


BOARDS = {
    "ulx3s": Board("ulx3s", "ecp5", "LFE5U-85F", "CABGA381", 25.0, 150.0, 8,
                   rst_active_low=False, led_active_low=False, constraints="ulx3s.lpf"),
    "icebreaker": Board("icebreaker", "ice40", "iCE40UP5K", "SG48", 12.0, 12.0, 2,
                        rst_active_low=True, led_active_low=True, constraints="icebreaker.pcf"),
    "arty_a7": Board("arty_a7", "xilinx", "xc7a35ticsg324-1L", "csg324", 100.0, 100.0, 4,
                     rst_active_low=True, led_active_low=False, constraints="arty_a7.xdc"),
}


def board(name: str) -> Board:
    """The board called ``name``, or a ValueError listing the supported ones."""
    try:
        return BOARDS[name]
    except KeyError:
        raise ValueError(f"unknown board {name!r}; supported: {', '.join(BOARDS)}") from None


def constraint_path(b: Board) -> Path:
    return Path(__file__).with_name(b.constraints)
