"""The accelerator's static program: every ROM's contents as integers, and the widths derived
from the network's worst case. Built from a :class:`~edge3u.rtl.layout.Layout`; the Amaranth
design initialises its memories from it and ``edge3u elaborate`` writes the same words as
``$readmemh`` files."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from edge3u.models.golden import IntNetwork
from edge3u.models.schedule import Schedule
from edge3u.rtl.layout import Layout, buffer_of_stage, build_layout

__all__ = ["Tile", "StageConsts", "Program", "build_program", "signed_bits", "pack", "unpack"]


def pack(values, bits: int) -> int:
    """Values (two's complement, ``bits`` each) packed into one word, element 0 lowest."""
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & ((1 << bits) - 1)) << (i * bits)
    return word


def unpack(word: int, bits: int, count: int) -> list[int]:
    """The inverse of :func:`pack`: ``count`` two's complement values of ``bits`` each."""
    mask = (1 << bits) - 1
    out = []
    for i in range(count):
        v = word >> (i * bits) & mask
        out.append(v - (1 << bits) if v >> (bits - 1) else v)
    return out


def signed_bits(lo: int, hi: int) -> int:
    """Two's complement width that holds every integer in ``lo .. hi``."""
    return max(1, max(hi.bit_length(), (-lo - 1).bit_length() if lo < 0 else 0) + 1)


@dataclass(frozen=True)
class Tile:
    """One entry of the tile table: what the sequencer does around one tile."""
    stage: int        # global stage index
    reads: int        # rows read into the lane registers before the tile
    first_row: int    # first of those rows (consecutive addresses)
    writes: int       # granules drained after the tile
    weight_base: int  # weight ROM address of the tile's first inner cycle
    window_last: int  # the tile's window is cycles 0 .. window_last (StageMap.windows)
    stage_end: bool = False  # the last tile of its stage
    network_end: bool = False  # the last tile of all


@dataclass(frozen=True)
class StageConsts:
    """Per-stage constants the datapath selects by stage index."""
    inner: int
    src: int                 # buffer read: 0 input, 1/2 activation buffers
    dst: int                 # buffer written: 1/2, or 3 for the logits
    in_bits: int             # bits per lane of the rows read
    in_signed: bool
    granule: int
    x_hi: int                # lane blocks of a written row
    lane_of_pe: tuple        # activation lane feeding each PE (-1 idle)
    multiplier: int          # 0 when the stage keeps the accumulator (logits)
    shift: int
    lo: int
    hi: int
    has_bias: bool
    final: bool


@dataclass(frozen=True)
class Program:
    layout: Layout
    pes: int
    weight_bits: int             # signed width of a core code
    element_bits: int            # signed width of an activation lane element
    acc_bits: int                # signed accumulator width (bias included)
    activation_bits: int         # bits per lane of the activation buffers
    input_bits: int
    requant_lanes: int
    lanes: int                   # activation lane registers
    lane_capacity: tuple         # elements each lane register holds
    lane_bits: tuple             # per lane, the signed width of each element (<= element_bits)
    stages: tuple
    tiles: tuple
    weight_words: list = field(repr=False)   # per address: tuple of P signed codes
    write_table: list = field(repr=False)    # per granule: (row address, lane block)
    bias_words: list = field(repr=False)     # per layer-end granule: tuple of g biases
    input_table: list = field(repr=False)    # per pixel: (row address, lane)
    logit_class: tuple = ()

    @property
    def schedule(self) -> Schedule:
        return self.layout.schedule

    @property
    def classes(self) -> int:
        return len(self.logit_class)

    @property
    def buffer_rows(self) -> tuple:
        return self.layout.buffer_rows

    @property
    def buffer_lanes(self) -> tuple:
        return self.layout.buffer_lanes

    @property
    def stage_count(self) -> int:
        return len(self.stages)

    def memory_bits(self) -> dict:
        """On-chip memory bits, by memory."""
        p = self
        return {
            "weights": len(p.weight_words) * p.pes * p.weight_bits,
            "input_buffer": p.buffer_rows[0] * p.buffer_lanes[0] * p.input_bits,
            "activation_buffers": sum(p.buffer_rows[i] * p.buffer_lanes[i]
                                      for i in (1, 2)) * p.activation_bits,
            "lane_registers": 2 * sum(sum(widths) for widths in p.lane_bits),
            "write_table": len(p.write_table) * (self.row_bits + self.block_bits),
            "bias": len(p.bias_words) * p.requant_lanes * p.acc_bits,
            "input_table": len(p.input_table) * (self.input_row_bits + self.input_lane_bits),
        }

    @property
    def row_bits(self) -> int:
        return max(1, max(self.buffer_rows[1:]) - 1).bit_length()

    @property
    def block_bits(self) -> int:
        return max(1, max(s.x_hi for s in self.stages) - 1).bit_length()

    @property
    def input_row_bits(self) -> int:
        return max(1, self.buffer_rows[0] - 1).bit_length()

    @property
    def input_lane_bits(self) -> int:
        return max(1, self.buffer_lanes[0] - 1).bit_length()


def _stage_tiles(sm, stage_index: int, weight_base: int) -> list[Tile]:
    out = []
    for (rg, groups, phase), (reads, writes), window in zip(sm.tiles(), sm.tile_io(),
                                                            sm.windows()):
        out.append(Tile(stage_index, reads, rg * sm.x_lo, writes, weight_base + phase * sm.n_inner,
                        window - 1))
    return out


def build_program(net: IntNetwork, schedule: Schedule) -> Program:
    """Everything the RTL's memories hold, for ``net`` run by ``schedule``."""
    layout = build_layout(net, schedule)
    P = schedule.pes
    weight_words, tiles, stages, write_table, bias_words = [], [], [], [], []
    for j, (sm, tab) in enumerate(zip(schedule.stages, layout.stages)):
        base = len(weight_words)
        for phase in range(tab.weights.shape[0]):
            for i in range(tab.weights.shape[1]):
                weight_words.append(tuple(int(v) for v in tab.weights[phase, i]) +
                                    (0,) * (P - sm.pes))
        stage_tiles = _stage_tiles(sm, j, base)
        stage_tiles[-1] = replace(stage_tiles[-1], stage_end=True,
                                              network_end=j == len(schedule.stages) - 1)
        tiles.extend(stage_tiles)
        write_table.extend(zip(tab.write_addr.tolist(), tab.write_block.tolist()))
        if tab.bias is not None:
            bias_words.extend(tuple(int(v) for v in row) for row in tab.bias)
        src, dst = buffer_of_stage(j)
        rq = tab.requant
        stages.append(StageConsts(
            inner=sm.n_inner, src=src, dst=3 if sm.final else dst, in_bits=tab.input_bits,
            in_signed=tab.signed_input, granule=sm.granule, x_hi=sm.x_hi,
            lane_of_pe=tuple(int(v) for v in tab.lane_of_pe) + (-1,) * (P - sm.pes),
            multiplier=rq.multiplier if rq else 0, shift=rq.shift if rq else 1,
            lo=rq.lo if rq else 0, hi=rq.hi if rq else 0, has_bias=tab.bias is not None,
            final=sm.final))
    codes = [abs(c) for word in weight_words for c in word] or [1]
    weight_bits = signed_bits(-max(codes), max(codes))
    element_bits = max([signed_bits(0, (1 << net.input_bits) - 1),
                        *(signed_bits(s.lo, s.hi) for s in stages if s.multiplier)])
    # what each stage's elements need as signed lane values
    stage_bits = [s.in_bits + (0 if s.in_signed else 1) for s in stages]
    # the worst-case sum, and never narrower than one product of the operand widths
    acc_bits = max(max(max(layer.accumulator_bits()) for layer in net.layers),
                   element_bits + weight_bits - 1)
    lanes = max(sm.lanes for sm in schedule.stages)
    capacity = tuple(max([sm.n_inner for sm in schedule.stages if sm.lanes > lane] or [1])
                     for lane in range(lanes))
    # every lane position as wide as the widest value a stage ever puts there
    lane_bits = tuple(tuple(max([b for sm, b in zip(schedule.stages, stage_bits)
                                 if sm.lanes > lane and sm.n_inner > e] or [2])
                            for e in range(cap)) for lane, cap in enumerate(capacity))
    return Program(
        layout=layout, pes=P, weight_bits=weight_bits, element_bits=element_bits,
        acc_bits=acc_bits, activation_bits=layout.activation_bits, input_bits=net.input_bits,
        requant_lanes=max(sm.granule for sm in schedule.stages), lanes=lanes,
        lane_capacity=capacity, lane_bits=lane_bits, stages=tuple(stages), tiles=tuple(tiles),
        weight_words=weight_words, write_table=write_table, bias_words=bias_words,
        input_table=list(zip(layout.input_addr.tolist(), layout.input_lane.tolist())),
        logit_class=tuple(int(c) for c in layout.logit_class))

