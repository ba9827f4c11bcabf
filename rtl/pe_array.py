"""The PE array: ``rows × cols`` PEs fed from activation lanes and a weight word, and the drain
register that takes their finished sums out one granule at a time."""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from edge3u.rtl.delay import delayed
from edge3u.rtl.pe import PE
from edge3u.rtl.replica import REPLICA_PREFIX, Replica

__all__ = ["PEArray"]


class PEArray(wiring.Component):
    """``rows * cols`` output-stationary PEs.

    Each stage maps every PE to one output of the stage's tile: PE ``p`` multiplies the head of
    activation lane ``routes[stage][p]`` (``-1``: idle) by code ``p`` of the weight word. When a
    tile's sums are finished (``result``) they are copied into the drain register; every
    ``advance`` then shifts it down by the stage's granule size, so ``granule`` always presents
    the next granule's sums. ``writes``, given with the ``first`` that ends a tile, says how
    many granules it drains: from the cycle after ``result`` the drain shifts on by one granule
    per cycle until that many have been presented. Every PE row counts them down itself, so no
    drain control comes from outside the row, and each PE takes a copy of the row's count.
    Positions that no busy PE's sum passes in a stage hold instead of shifting: the drain's
    multiplexers only have the paths some stage uses.

    Every input is registered twice on the way in (``latency``), and ``heads`` three times
    (``head_latency``: a copy per PE row, two deep, then routed to the PE), so heads given a
    cycle before the weights they multiply meet them at the PE; the controls are copied per
    PE row in :class:`Replica` modules, so no control net spans the array. ``result`` and
    ``granule`` are therefore two cycles later than they would be without the input
    registers. The controls reach each PE through a tree of copies, a row's then the PE's
    own; the stage three registers deep (it changes at least four cycles before the first
    operands of its stage reach the PEs' routing).

    Parameters
    ----------
    rows, cols : int
        Array shape; PE ``p = row * cols + col``.
    act_bits, weight_bits, acc_bits : int
        Signed widths (the accumulator width is the network's worst case).
    lanes : int
        Activation lanes.
    lane_bits : tuple of int, optional
        Signed width of each lane's values (``heads`` are sign extended to ``act_bits``); a PE
        multiplies at the width of the widest lane it is routed to. Default: ``act_bits``.
    routes : list of tuple
        Per stage, the lane of every PE.
    granules : list of int
        Per stage, the granule size (outputs drained per ``advance``).
    multiplier : "lut" or "dsp"
        How each PE's product is written (:class:`~edge3u.rtl.pe.PE`).
    max_writes : int
        The most granules one tile drains.

    Members
    -------
    heads : In(ArrayLayout(signed(act_bits), lanes))
    weights : In(ArrayLayout(signed(weight_bits), rows * cols))
    stage : In(range(len(routes)))
    valid, first : In(1)
        As for :class:`~edge3u.rtl.pe.PE`, common to all PEs.
    writes : In(range(max_writes + 1))
        With a ``first``: the granules of the tile it ends.
    result : Out(1)
        The drain register is being loaded with finished sums this cycle.
    granule : Out(ArrayLayout(signed(acc_bits), max(granules)))
    """

    def __init__(self, rows: int, cols: int, *, act_bits: int, weight_bits: int, acc_bits: int,
                 lanes: int, routes, granules, multiplier: str = "lut", lane_bits=None,
                 max_writes: int = 1):
        for name, value in (("rows", rows), ("cols", cols), ("lanes", lanes)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"PE array {name} must be a positive integer, not {value!r}")
        pes = rows * cols
        if len(routes) != len(granules) or not routes:
            raise ValueError(f"PE array needs one route and one granule size per stage, not "
                             f"{len(routes)} and {len(granules)}")
        for s, (route, g) in enumerate(zip(routes, granules)):
            if len(route) != pes:
                raise ValueError(f"stage {s} routes {len(route)} PEs, the array has {pes}")
            if any(not -1 <= lane < lanes for lane in route):
                raise ValueError(f"stage {s} routes a PE to a lane outside 0 .. {lanes - 1}")
            if not 1 <= g <= pes:
                raise ValueError(f"stage {s} granule {g} must be in 1 .. {pes}")
        lane_bits = tuple(lane_bits) if lane_bits is not None else (act_bits,) * lanes
        if len(lane_bits) != lanes or any(not 2 <= b <= act_bits for b in lane_bits):
            raise ValueError(f"PE array lane widths must be one integer in 2 .. {act_bits} per "
                             f"lane ({lanes} lanes), not {lane_bits!r}")
        self._lane_bits = lane_bits
        self.rows, self.cols, self.pes = rows, cols, pes
        self._bits = (act_bits, weight_bits, acc_bits)
        self.multiplier = multiplier
        self._routes, self._granules = [tuple(r) for r in routes], list(granules)
        super().__init__({
            "heads": In(data.ArrayLayout(signed(act_bits), lanes)),
            "weights": In(data.ArrayLayout(signed(weight_bits), pes)),
            "stage": In(range(max(2, len(routes)))),
            "valid": In(1), "first": In(1), "writes": In(range(max(2, max_writes + 1))),
            "result": Out(1),
            "granule": Out(data.ArrayLayout(signed(acc_bits), max(granules))),
        })

    latency = 2
    """Cycles every input but ``heads`` spends in the array's input registers before it
    reaches a PE: one beside its source (a block RAM's output is slow), one beside the PE."""

    head_latency = 3
    """Cycles ``heads`` spend in the array: the PE row's copy, two deep, then the PE's
    routing register."""

    def elaborate(self, platform):
        m = Module()
        act_bits, weight_bits, acc_bits = self._bits
        # each PE multiplies at the width of the widest lane it is ever routed to
        pe_bits = [max([self._lane_bits[route[p]] for route in self._routes if route[p] >= 0]
                       or [2]) for p in range(self.pes)]
        pes = [PE(bits, weight_bits, acc_bits, self.multiplier) for bits in pe_bits]
        # Registered copies of the controls, a tree of them, so no control net spans the
        # array or even a row: per PE row the operand flags and the writes that come with a
        # first (one deep) and the stage (two deep), and from those per PE the flags, the
        # stage and the drain's shift (one deep more).
        row_ops, row_stage, advance_ahead = [], [], []
        for r in range(self.rows):
            ops = m.submodules[f"{REPLICA_PREFIX}{r}_operands"] = Replica(
                {"valid": 1, "first": 1, "writes": self.writes.shape()})
            st = m.submodules[f"{REPLICA_PREFIX}{r}_stage"] = Replica(
                {"stage": self.stage.shape()}, depth=2)
            m.d.comb += [ops.inp.valid.eq(self.valid), ops.inp.first.eq(self.first),
                         ops.inp.writes.eq(self.writes), st.inp.stage.eq(self.stage)]
            row_ops.append(ops.out)
            row_stage.append(st.out.stage)
            advance_ahead.append(self._drain_count(m, r, ops.out.first, ops.out.writes))
        # Every PE row takes its own copy of the heads of the lanes its PEs read, two
        # registers deep, so a head crosses the chip to a row in two cycles.
        row_heads = []
        for r in range(self.rows):
            used = sorted({route[p] for route in self._routes
                           for p in range(r * self.cols, (r + 1) * self.cols) if route[p] >= 0})
            if not used:
                row_heads.append({})
                continue
            width = max(pe_bits[r * self.cols:(r + 1) * self.cols])
            heads = m.submodules[f"{REPLICA_PREFIX}{r}_heads"] = Replica(
                {f"lane{lane}": signed(width) for lane in used}, depth=self.head_latency - 1)
            m.d.comb += [heads.inp[f"lane{lane}"].eq(self.heads[lane][:width].as_signed())
                         for lane in used]
            row_heads.append(heads.out)
        drain = [Signal(signed(acc_bits), name=f"drain{p}") for p in range(self.pes)]
        ctl = []
        for p, pe in enumerate(pes):
            r = p // self.cols
            own = m.submodules[f"{REPLICA_PREFIX}_pe{p}"] = Replica(
                {"valid": 1, "first": 1, "stage": self.stage.shape(), "advance": 1})
            m.d.comb += [own.inp.valid.eq(row_ops[r].valid), own.inp.first.eq(row_ops[r].first),
                         own.inp.stage.eq(row_stage[r]), own.inp.advance.eq(advance_ahead[r])]
            ctl.append(own.out)
            m.submodules[f"pe{p}"] = pe
            # weights: a register beside the ROM, then one beside the PE
            w = delayed(m, self.weights[p], self.latency, f"w{p}_", reset_less=True)
            m.d.comb += [pe.w.eq(w), pe.valid.eq(own.out.valid), pe.first.eq(own.out.first)]
            by_lane = {}
            for s, route in enumerate(self._routes):
                by_lane.setdefault(route[p], []).append(s)
            if list(by_lane) == [-1]:
                continue
            routed = Signal(signed(pe_bits[p]), name=f"a{p}_0")  # the row's copy, routed
            with m.Switch(own.out.stage):
                for lane, stages in by_lane.items():
                    if lane >= 0:
                        with m.Case(*stages):
                            m.d.sync += routed.eq(row_heads[r][f"lane{lane}"][:pe_bits[p]]
                                                  .as_signed())
            m.d.comb += pe.a.eq(routed)
        m.d.comb += self.result.eq(pes[0].result)
        # A stage's granules leave from the front, so position p only ever presents a sum
        # that started at or below the stage's last busy PE: it shifts in p + g only where
        # that is still one, and holds elsewhere (what it holds is never read).
        last_busy = [max((q for q, lane in enumerate(route) if lane >= 0), default=-1)
                     for route in self._routes]
        for p, pe in enumerate(pes):
            by_size = {}
            for s, g in enumerate(self._granules):
                if p + g <= last_busy[s]:
                    by_size.setdefault(g, []).append(s)
            with m.If(pe.result):  # every PE's tile ends in the same cycle
                m.d.sync += drain[p].eq(pe.acc)
            with m.Elif(ctl[p].advance):
                with m.Switch(ctl[p].stage):
                    for g, stages in by_size.items():
                        with m.Case(*stages):
                            m.d.sync += drain[p].eq(drain[p + g])
        m.d.comb += [self.granule[e].eq(drain[e]) for e in range(len(self.granule))]
        return m

    def _drain_count(self, m, row, first, writes):
        """Row ``row``'s count of the granules left to drain, kept a cycle ahead of the
        drain: ``first`` and ``writes`` as the row's operand copy has them, a cycle before
        its PEs do. The result is high two cycles before the drain shifts (each PE's copy
        of it adds one)."""
        # the tile's result a cycle ahead: the PE's first copy, then its own delay, less one
        result = delayed(m, first, PE.latency - 1, f"result_ahead{row}_")
        writes = delayed(m, writes, PE.latency - 1, f"writes{row}_")
        left = Signal.like(writes, name=f"left{row}")
        left_next = Signal.like(writes, name=f"left_next{row}")
        advance = Signal(name=f"advance{row}")
        m.d.comb += left_next.eq(Mux(result, writes, Mux(left != 0, left - 1, 0)))
        m.d.sync += [left.eq(left_next), advance.eq(left_next != 0)]
        return advance
