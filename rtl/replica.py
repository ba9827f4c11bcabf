"""A local registered copy of control signals, one per region of the array.

A control signal that reaches thousands of registers (a lane's step, a PE row's drain shift) is
slow on an FPGA: the net spans the chip. Each region instead takes its own registered copy. A
synthesis tool merges identical registers, so every copy lives in a module of its own, named
``replica…``; the synthesis scripts keep those modules as hierarchy (``keep_hierarchy``), and
place and route flattens them without merging.
"""

from amaranth import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from edge3u.rtl.delay import delayed

__all__ = ["Replica", "REPLICA_PREFIX"]

#: Submodule names of every replica start with this (the synthesis scripts select on it).
REPLICA_PREFIX = "replica"


class Replica(wiring.Component):
    """``out.<name>`` is ``inp.<name>`` ``depth`` cycles later.

    Parameters
    ----------
    fields : dict
        Name to shape of every signal copied.
    depth : int
        Register levels. With two, place and route can put the first beside the source and
        the last beside the user, and the wire between them has a whole cycle.

    Members
    -------
    inp : In(StructLayout(fields))
    out : Out(StructLayout(fields))
    """

    def __init__(self, fields: dict, depth: int = 1):
        if not fields:
            raise ValueError("a replica needs at least one signal to copy")
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"a replica's depth must be a positive integer, not {depth!r}")
        self.depth = depth
        layout = data.StructLayout(fields)
        super().__init__({"inp": In(layout), "out": Out(layout)})

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.out.eq(delayed(m, self.inp, self.depth - 1, "level"))
        return m
