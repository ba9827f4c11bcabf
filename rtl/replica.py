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

__all__ = ["Replica", "REPLICA_PREFIX"]

#: Submodule names of every replica start with this (the synthesis scripts select on it).
REPLICA_PREFIX = "replica"


class Replica(wiring.Component):
    """``out.<name>`` is ``inp.<name>`` one cycle later.

    Parameters
    ----------
    fields : dict
        Name to shape of every signal copied.

    Members
    -------
    inp : In(StructLayout(fields))
    out : Out(StructLayout(fields))
    """

    def __init__(self, fields: dict):
        if not fields:
            raise ValueError("a replica needs at least one signal to copy")
        layout = data.StructLayout(fields)
        super().__init__({"inp": In(layout), "out": Out(layout)})

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.out.eq(self.inp)
        return m
