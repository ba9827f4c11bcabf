"""Read the pins and the clock of a constraint file: ``.lpf`` (Lattice ECP5, nextpnr-ecp5),
``.pcf`` (iCE40, nextpnr-ice40) or ``.xdc`` (Xilinx). Only the statements the board files use
are understood; anything else is an error naming the line, so a typo cannot pass unseen."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Constraints", "ConstraintError", "parse"]


class ConstraintError(ValueError):
    """A constraint file line that does not parse."""


@dataclass
class Constraints:
    pins: dict[str, str] = field(default_factory=dict)    # port bit -> site
    clocks: dict[str, float] = field(default_factory=dict)  # port -> MHz


def _statements(text: str, comment: str, end: str | None):
    buffer, first = "", None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split(comment, 1)[0].strip()
        if not line:
            continue
        if end is None:
            yield number, line
            continue
        first = first or number
        buffer += " " + line
        while end in buffer:
            statement, buffer = buffer.split(end, 1)
            yield first, statement.strip()
            first = number if buffer.strip() else None
    if buffer.strip():
        raise ConstraintError(f"line {first}: statement not ended by {end!r}: {buffer.strip()}")


def _lpf(text: str) -> Constraints:
    out = Constraints()
    for number, s in _statements(text, "#", ";"):
        if m := re.fullmatch(r'LOCATE\s+COMP\s+"([^"]+)"\s+SITE\s+"(\w+)"', s):
            out.pins[m[1]] = m[2]
        elif m := re.fullmatch(r'FREQUENCY\s+PORT\s+"([^"]+)"\s+([\d.]+)\s+MHZ', s):
            out.clocks[m[1]] = float(m[2])
        elif not re.fullmatch(r'IOBUF\s+PORT\s+"[^"]+"(\s+\w+=\w+)+', s):
            raise ConstraintError(f"line {number}: not an LPF statement this parser knows: {s}")
    return out


def _pcf(text: str) -> Constraints:
    out = Constraints()
    for number, s in _statements(text, "#", None):
        words = shlex.split(s)
        if words[0] == "set_io":
            args = [w for w in words[1:] if w != "-nowarn"]
            while args and args[0] == "-pullup":
                args = args[2:]
            if len(args) != 2 or not args[1].isdigit():
                raise ConstraintError(f"line {number}: set_io needs a port and a pin: {s}")
            out.pins[args[0]] = args[1]
        elif words[0] == "set_frequency" and len(words) == 3:
            out.clocks[words[1]] = float(words[2])
        else:
            raise ConstraintError(f"line {number}: not a PCF statement this parser knows: {s}")
    return out


def _xdc(text: str) -> Constraints:
    out = Constraints()
    port = r"\[get_ports\s+\{?([\w\[\]]+)\}?\]"
    for number, s in _statements(text, "#", None):
        if m := re.fullmatch(r"set_property\s+-dict\s+\{PACKAGE_PIN\s+(\w+)\s+IOSTANDARD\s+\w+\}"
                             r"\s+" + port, s):
            out.pins[m[2]] = m[1]
        elif m := re.fullmatch(r"create_clock(?:\s+-name\s+\w+)?\s+-period\s+([\d.]+)"
                               r"(\s+-waveform\s+\{[\d. ]+\})?\s+" + port, s):
            out.clocks[m[3]] = 1000.0 / float(m[1])
        else:
            raise ConstraintError(f"line {number}: not an XDC statement this parser knows: {s}")
    return out


_PARSERS = {".lpf": _lpf, ".pcf": _pcf, ".xdc": _xdc}


def parse(path: str | Path) -> Constraints:
    """The pins and clocks of ``path`` (by its suffix)."""
    path = Path(path)
    if path.suffix not in _PARSERS:
        raise ConstraintError(f"{path}: unknown constraint format {path.suffix!r}; "
                              f"known: {', '.join(_PARSERS)}")
    return _PARSERS[path.suffix](path.read_text())
