"""A slice of a ROM that lives beside its user, read through its own copy of the address.

One address register that drives every block RAM of a wide ROM spans the chip: on the default
design's ECP5 build it was the critical path (15 ns of wire). Each slice instead registers the
address in a :class:`~edge3u.rtl.replica.Replica` of its own, placed beside the slice, so the
long wire is the one into that copy and has a whole cycle (two, with two levels).
"""

from amaranth import Module
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from edge3u.rtl.replica import REPLICA_PREFIX, Replica

__all__ = ["LocalRom"]


class LocalRom(wiring.Component):
    """``data`` is ``init[addr]``, ``latency`` cycles after ``addr``.

    Parameters
    ----------
    shape : shape-like
        One word.
    init : list of int
        The words (at least one).
    block : bool
        ``True``: the words are read synchronously after the address registers (a block RAM,
        one cycle more). ``False``: they are looked up combinationally from them (logic for
        a shallow ROM).
    address_registers : int
        Levels of the address's copy. With two, place and route can put the first halfway,
        and a wire across the chip has two cycles.

    Members
    -------
    addr : In(range(len(init)))
    data : Out(shape)
    """

    def __init__(self, shape, init, *, block: bool, address_registers: int = 1):
        if not init:
            raise ValueError("a ROM slice needs at least one word")
        self._shape, self._init, self.block = shape, list(init), block
        self._levels = address_registers
        self.latency = address_registers + (1 if block else 0)
        super().__init__({"addr": In(range(max(2, len(self._init)))), "data": Out(shape)})

    def elaborate(self, platform):
        m = Module()
        # a shallow ROM read combinationally is logic: yosys would otherwise fold the register
        # after it into a block RAM, whose slow read would then feed the user directly
        attrs = None if self.block else {"rom_style": "logic"}
        rom = m.submodules.rom = memory.Memory(shape=self._shape, depth=max(2, len(self._init)),
                                               init=self._init, attrs=attrs)
        addr = m.submodules[REPLICA_PREFIX] = Replica({"addr": self.addr.shape()}, self._levels)
        port = rom.read_port(domain="sync" if self.block else "comb")
        m.d.comb += [addr.inp.addr.eq(self.addr), port.addr.eq(addr.out.addr),
                     self.data.eq(port.data)]
        return m
