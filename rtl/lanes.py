"""Activation lane registers: the rows a tile multiplies, one element per cycle per lane."""

from amaranth import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ActivationLanes"]


class ActivationLanes(wiring.Component):
    """Shadow and active registers for every activation lane.

    Rows for the next tile are written into the shadow registers while the current tile
    computes from the active ones. ``swap`` copies shadow to active (a tile boundary); ``step``
    moves every active lane on by one element. ``heads`` is each lane's front element (the PE
    array routes and registers it, in step with the weight ROM's registered read).

    Parameters
    ----------
    element_bits : int
        Signed width of one element.
    capacity : tuple of int
        Elements each lane holds (the longest row it ever receives).
    lane_bits : tuple of int, optional
        Signed width each lane stores (the widest element it ever receives, at most
        ``element_bits``); by default ``element_bits`` for every lane. ``heads`` are sign
        extended, so a lane that only ever holds narrow codes costs only their width.

    Members
    -------
    row : In(ArrayLayout(signed(element_bits), max(capacity)))
    row_lane : In(range(lanes))
    row_en : In(1)
    swap, step : In(1)
    heads : Out(ArrayLayout(signed(element_bits), lanes))
    """

    def __init__(self, element_bits: int, capacity, lane_bits=None):
        capacity = tuple(capacity)
        if not capacity or any(not isinstance(c, int) or c < 1 for c in capacity):
            raise ValueError(f"lane capacities must be positive integers, not {capacity!r}")
        lane_bits = tuple(lane_bits) if lane_bits is not None else (element_bits,) * len(capacity)
        if len(lane_bits) != len(capacity) or any(
                not isinstance(b, int) or not 1 <= b <= element_bits for b in lane_bits):
            raise ValueError(f"lane widths must be one integer in 1 .. {element_bits} per lane "
                             f"({len(capacity)} lanes), not {lane_bits!r}")
        self._bits, self._capacity, self._lane_bits = element_bits, capacity, lane_bits
        super().__init__({
            "row": In(data.ArrayLayout(signed(element_bits), max(capacity))),
            "row_lane": In(range(max(2, len(capacity)))), "row_en": In(1),
            "swap": In(1), "step": In(1),
            "heads": Out(data.ArrayLayout(signed(element_bits), len(capacity))),
        })

    def elaborate(self, platform):
        m = Module()
        for lane, (cap, bits) in enumerate(zip(self._capacity, self._lane_bits)):
            shadow = [Signal(signed(bits), name=f"shadow{lane}_{e}") for e in range(cap)]
            active = [Signal(signed(bits), name=f"active{lane}_{e}") for e in range(cap)]
            row = [self.row[e][:bits].as_signed() for e in range(cap)]
            with m.If(self.row_en & (self.row_lane == lane)):
                m.d.sync += [s.eq(v) for s, v in zip(shadow, row)]
            with m.If(self.swap & self.row_en & (self.row_lane == lane)):
                m.d.sync += [a.eq(v) for a, v in zip(active, row)]
            with m.Elif(self.swap):
                m.d.sync += [a.eq(s) for a, s in zip(active, shadow)]
            with m.Elif(self.step):
                m.d.sync += [a.eq(b) for a, b in zip(active, active[1:])]
            m.d.comb += self.heads[lane].eq(active[0])
        return m
