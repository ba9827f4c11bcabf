"""Move the register after an ECP5 block RAM's read into the block RAM (``REGMODE = OUTREG``).

yosys maps memories to DP16KD cells without their output registers (``REGMODE = NOREG``), and a
DP16KD read then takes 5.8 ns from the clock on the -6 part: a register beside it cannot help,
the wire to that register comes on top. The accelerator registers every block RAM's read data
straight away (a reset-less register, nothing else reading the raw data), so that register can
live inside the block RAM instead, where its clock-to-output is short.

This pass does that on yosys's JSON netlist, before nextpnr. A DP16KD is folded when every
data-out bit it drives feeds exactly one TRELLIS_FF's D input and nothing else, and each such
flip-flop has the clock of the port that reads the bit (port B's for a 36-bit-wide block, which
reads both halves), no clock enable, no set/reset and a zero initial value, and the block's
resets are tied low. Its flip-flops are removed, its
data outputs drive their nets, and both ports become ``OUTREG`` with their output enables tied
high: the data out is then the same value one clock later, which is what the flip-flops gave.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from edge3u.runs import atomic_write

__all__ = ["fold_output_registers", "fold_netlist_file"]

_DATA_OUT = [f"DO{side}{i}" for side in "AB" for i in range(18)]


def _sinks(module: dict) -> dict[int, list[tuple[str, str]]]:
    """Net bit -> every (cell, input port) it reaches."""
    sinks = defaultdict(list)
    for name, cell in module["cells"].items():
        directions = cell.get("port_directions", {})
        for port, bits in cell["connections"].items():
            if directions.get(port, "input") != "output":
                for bit in bits:
                    if isinstance(bit, int):
                        sinks[bit].append((name, port))
    return sinks


def _number(value) -> int:
    """A yosys JSON integer parameter: a string of 32 binary digits (or a number)."""
    return int(value, 2) if isinstance(value, str) else int(value)


def _plain_register(cell: dict, clock) -> bool:
    """A TRELLIS_FF that loads D on every edge of ``clock``, never set or reset, starts at 0."""
    p, c = cell["parameters"], cell["connections"]
    return (cell["type"] == "TRELLIS_FF" and c.get("CLK") == clock
            and p.get("CLKMUX", "CLK") == "CLK"
            and (p.get("CEMUX", "1").strip() == "1" or c.get("CE") == ["1"])
            and c.get("LSR", ["0"]) == ["0"] and p.get("REGSET", "RESET") == "RESET")


def fold_output_registers(netlist: dict, top: str) -> dict[str, int]:
    """Fold the registers after the DP16KD reads of module ``top`` into the block RAMs, in
    place; returns how many block RAMs were folded and how many flip-flops that removed."""
    module = netlist["modules"][top]
    cells = module["cells"]
    sinks = _sinks(module)
    port_bits = {b for port in module["ports"].values() for b in port["bits"]}
    renamed: dict[int, int] = {}
    folded = {"brams": 0, "ffs": 0}
    for ram in [c for c in cells.values() if c["type"] == "DP16KD"]:
        p, c = ram["parameters"], ram["connections"]
        if (p.get("REGMODE_A") != "NOREG" or p.get("REGMODE_B") != "NOREG"
                or p.get("CLKAMUX") != "CLKA" or p.get("CLKBMUX") != "CLKB"
                or c.get("RSTA") != ["0"] or c.get("RSTB") != ["0"]):
            continue
        wide = _number(p.get("DATA_WIDTH_B", 18)) == 36  # port B reads DOA and DOB
        moves = {}  # data-out port -> the flip-flop that registers it
        for port in _DATA_OUT:
            bit = c.get(port, ["x"])[0]
            if not isinstance(bit, int) or (not sinks[bit] and bit not in port_bits):
                continue  # unused output
            reached = sinks[bit]
            clock = c["CLKB"] if wide else c[f"CLK{port[2]}"]
            if (bit in port_bits or len(reached) != 1 or reached[0][1] != "DI"
                    or not _plain_register(cells[reached[0][0]], clock)):
                moves = None
                break
            moves[port] = reached[0][0]
        if not moves:
            continue
        for port, ff in moves.items():
            old, new = c[port][0], cells[ff]["connections"]["Q"][0]
            c[port] = [new]
            renamed[old] = new
            del cells[ff]
        p["REGMODE_A"] = p["REGMODE_B"] = "OUTREG"
        c["OCEA"] = c["OCEB"] = ["1"]
        folded["brams"] += 1
        folded["ffs"] += len(moves)
    for net in module.get("netnames", {}).values():  # old names now name the registered value
        net["bits"] = [renamed.get(b, b) for b in net["bits"]]
    return folded


def fold_netlist_file(path: Path, top: str) -> dict[str, int]:
    """:func:`fold_output_registers` on a yosys JSON file, rewritten atomically."""
    netlist = json.loads(Path(path).read_text())
    folded = fold_output_registers(netlist, top)
    if folded["brams"]:
        atomic_write(path, lambda f: json.dump(netlist, f))
    return folded
