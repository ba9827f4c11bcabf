"""Activation lane registers: the rows a tile multiplies, one element per cycle per lane."""

from amaranth import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from edge3u.rtl.delay import delayed
from edge3u.rtl.replica import REPLICA_PREFIX, Replica

__all__ = ["ActivationLanes"]

#: Elements of a lane that share one copy of its controls (a copy drives up to about 150
#: flip-flops' enables: a lane of 112 pixels had been one net of 380).
CONTROL_SPAN = 8
#: Lanes that share one copy of the row register (the row had been one register for all 32
#: lanes of the default design, 10 ns of wire to the farthest).
ROW_COPY_LANES = 4


class ActivationLanes(wiring.Component):
    """Shadow and active registers for every activation lane.

    Rows for the next tile are written into the shadow registers while the current tile
    computes from the active ones. ``swap`` copies shadow to active (a tile boundary); ``step``
    moves every active lane on by one element. ``heads`` is each lane's front element (the PE
    array routes and registers it, in step with the weight ROM's registered read).

    Every input is registered three times first, so all of it takes effect three cycles
    later (``latency``): the row twice for all lanes and then once per ``ROW_COPY_LANES``
    lanes, the controls once per ``ROW_COPY_LANES`` lanes, once per lane and then once per
    span of ``CONTROL_SPAN`` elements of the lane, in a :class:`Replica` each, so no control
    net spans the whole lane array or a long lane.

    Parameters
    ----------
    element_bits : int
        Signed width of one element.
    capacity : tuple of int
        Elements each lane holds (the longest row it ever receives).
    lane_bits : tuple, optional
        Per lane, the signed width of its elements: one integer for all of them or a tuple with
        one per element (widths never grow along a lane, as elements only move to the front).
        Each is the widest value that position ever receives, at most ``element_bits`` (the
        default). ``heads`` are sign extended, so positions that only ever hold narrow codes
        cost only their width.

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
        widths = tuple((b,) * c if isinstance(b, int) else tuple(b)
                       for b, c in zip(lane_bits, capacity))
        if len(lane_bits) != len(capacity) or any(
                len(w) != c or any(not isinstance(b, int) or not 1 <= b <= element_bits for b in w)
                or any(a < b for a, b in zip(w, w[1:])) for w, c in zip(widths, capacity)):
            raise ValueError(f"lane widths must be, per lane ({len(capacity)} lanes), an integer "
                             f"in 1 .. {element_bits} or one per element, never growing along "
                             f"the lane; not {lane_bits!r}")
        self._bits, self._capacity, self._widths = element_bits, capacity, widths
        super().__init__({
            "row": In(data.ArrayLayout(signed(element_bits), max(capacity))),
            "row_lane": In(range(max(2, len(capacity)))), "row_en": In(1),
            "swap": In(1), "step": In(1),
            "heads": Out(data.ArrayLayout(signed(element_bits), len(capacity))),
        })

    latency = 3
    """Cycles from an input to its effect on the registers."""

    def elaborate(self, platform):
        m = Module()
        # the row twice for all lanes, then a copy per group of ROW_COPY_LANES lanes; the
        # controls once per group, once per lane and once per span of the lane
        row_1 = delayed(m, self.row, self.latency - 1, "row_d")
        copies, group_ctl = {}, {}
        for first_lane in range(0, len(self._widths), ROW_COPY_LANES):
            ctl = m.submodules[f"{REPLICA_PREFIX}_ctl{first_lane}"] = Replica(
                {"row_en": 1, "row_lane": self.row_lane.shape(), "swap": 1, "step": 1})
            m.d.comb += [ctl.inp.row_en.eq(self.row_en), ctl.inp.row_lane.eq(self.row_lane),
                         ctl.inp.swap.eq(self.swap), ctl.inp.step.eq(self.step)]
            group = self._widths[first_lane:first_lane + ROW_COPY_LANES]
            width = [max(w[e] for w in group if e < len(w))
                     for e in range(max(len(w) for w in group))]
            copy = m.submodules[f"{REPLICA_PREFIX}_row{first_lane}"] = Replica(
                {f"e{e}": signed(b) for e, b in enumerate(width)})
            m.d.comb += [copy.inp[f"e{e}"].eq(row_1[e][:b].as_signed())
                         for e, b in enumerate(width)]
            for lane in range(first_lane, first_lane + len(group)):
                copies[lane], group_ctl[lane] = copy.out, ctl.out
        for lane, widths in enumerate(self._widths):
            # the lane's copy of its controls, then a copy of that per span of elements
            own = m.submodules[f"{REPLICA_PREFIX}{lane}"] = Replica(
                {"load": 1, "swap": 1, "step": 1})
            g = group_ctl[lane]
            m.d.comb += [own.inp.load.eq(g.row_en & (g.row_lane == lane)),
                         own.inp.swap.eq(g.swap), own.inp.step.eq(g.step)]
            shadow = [Signal(signed(b), name=f"shadow{lane}_{e}") for e, b in enumerate(widths)]
            active = [Signal(signed(b), name=f"active{lane}_{e}") for e, b in enumerate(widths)]
            active.append(None)  # the last element has no next one
            row = [copies[lane][f"e{e}"][:b].as_signed() for e, b in enumerate(widths)]
            for first in range(0, len(widths), CONTROL_SPAN):
                ctl = m.submodules[f"{REPLICA_PREFIX}{lane}_{first}"] = Replica(
                    {"load": 1, "swap": 1, "step": 1})
                m.d.comb += ctl.inp.eq(own.out)
                span = range(first, min(first + CONTROL_SPAN, len(widths)))
                with m.If(ctl.out.load):
                    m.d.sync += [shadow[e].eq(row[e]) for e in span]
                with m.If(ctl.out.swap & ctl.out.load):
                    m.d.sync += [active[e].eq(row[e]) for e in span]
                with m.Elif(ctl.out.swap):
                    m.d.sync += [active[e].eq(shadow[e]) for e in span]
                with m.Elif(ctl.out.step):
                    m.d.sync += [active[e].eq(active[e + 1]) for e in span
                                 if active[e + 1] is not None]
            m.d.comb += self.heads[lane].eq(active[0])
        return m
