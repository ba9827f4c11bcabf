"""The accelerator core: buffers, ROMs, lanes, the PE array, the drain and the sequencer that
walks the tile table. ``docs/hardware.md`` describes the timing; ``models/schedule.py`` counts it.
"""

from types import SimpleNamespace

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from edge3u.models.schedule import MAC_LATENCY, ROW_LATENCY, argmax_cycles, drain_latency
from edge3u.rtl.argmax import argmax_tree
from edge3u.rtl.delay import delayed
from edge3u.rtl.lanes import ActivationLanes
from edge3u.rtl.local_rom import LocalRom
from edge3u.rtl.pe import PE
from edge3u.rtl.pe_array import PEArray
from edge3u.rtl.program import Program, pack
from edge3u.rtl.requantizer import Requantizer, RequantSpec

__all__ = ["Accelerator"]

#: Cycles from the weight address register to the weight word at the array: the ROM slices'
#: three address registers (a wire across the chip gets three cycles), then their read.
WEIGHT_LATENCY = 4


class Accelerator(wiring.Component):
    """Runs one inference on the image in its input buffer.

    Parameters
    ----------
    program : Program
        The ROM contents and widths (:func:`edge3u.rtl.program.build_program`).
    rows, cols : int
        PE array shape; ``rows * cols`` must equal the schedule's PE count.
    multiplier : "lut" or "dsp"
        How the PEs' products are written (:class:`~edge3u.rtl.pe.PE`). The requantizers'
        (:class:`~edge3u.rtl.requantizer.Requantizer`) are the schedule's ``requant``: their
        latency is part of its cycle count.

    Members
    -------
    start : In(1)
        Begin (the input buffer holds the image).
    busy : Out(1)
    done : Out(1)
        One cycle: ``logits`` and ``cls`` are valid (they stay valid until the next start).
    load_addr, load_lane, load_data, load_en : In
        Input buffer write port (one pixel per cycle, written at the next clock edge, so
        ``start`` may come in the cycle after the last pixel).
    logits : Out(ArrayLayout(signed(acc_bits), classes))
    cls : Out(range(classes))

    After elaboration, ``memories`` (the buffers) and ``probes`` (sequencer state, stage, cycle
    counter, the row reader and each buffer's write port) let a simulation look inside
    (``sim/locate.py``, the read/write test).
    """

    def __init__(self, program: Program, rows: int, cols: int, multiplier: str = "lut"):
        self.multiplier, self.requant_multiplier = multiplier, program.schedule.requant
        if rows * cols != program.pes:
            raise ValueError(f"a {rows} x {cols} array has {rows * cols} PEs, the program is "
                             f"scheduled for {program.pes}")
        self.program, self.rows, self.cols = program, rows, cols
        p = program
        super().__init__({
            "start": In(1), "busy": Out(1), "done": Out(1),
            "load_addr": In(range(max(2, p.buffer_rows[0]))),
            "load_lane": In(range(max(2, p.buffer_lanes[0]))),
            "load_data": In(unsigned(p.input_bits)), "load_en": In(1),
            "logits": Out(data.ArrayLayout(signed(p.acc_bits), p.classes)),
            "cls": Out(range(max(2, p.classes))),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.program
        S, P, G, A = p.stage_count, p.pes, p.requant_lanes, p.acc_bits

        # ---------------------------------------------------------------- memories
        buffers = [memory.Memory(shape=unsigned(p.buffer_lanes[0] * p.input_bits),
                                 depth=max(2, p.buffer_rows[0]), init=[])]
        for b in (1, 2):
            buffers.append(memory.Memory(shape=unsigned(p.buffer_lanes[b] * p.activation_bits),
                                         depth=max(2, p.buffer_rows[b]), init=[]))
        # The weight ROM in slices, one per PE row, and the bias ROM in one per requantizer
        # lane, each beside its user with its own copy of the address.
        C = self.cols
        weight_roms = [LocalRom(unsigned(C * p.weight_bits), block=True, address_registers=3,
                                init=[pack(w[r * C:(r + 1) * C], p.weight_bits)
                                      for w in p.weight_words]) for r in range(self.rows)]
        wt_layout = data.StructLayout({"row": unsigned(p.row_bits),
                                       "block": unsigned(p.block_bits)})
        write_table = memory.Memory(shape=wt_layout, depth=max(2, len(p.write_table)),
                                    init=[{"row": r, "block": b} for r, b in p.write_table])
        bias_roms = [LocalRom(signed(A), [b[e] if e < len(b) else 0 for b in p.bias_words]
                              or [0], block=False, address_registers=2) for e in range(G)]
        # The epilogue after a stage's last tile: its writes, then the MAC and drain pipelines
        # empty (counting from 0, as the schedule's cycle model does).
        epilogue_extra = MAC_LATENCY + drain_latency(self.requant_multiplier) - 1
        tile_layout = data.StructLayout({
            "stage": range(S + 1),
            "reads": range(max(t.reads for t in p.tiles) + 1),
            "first_row": range(max(2, max(t.first_row for t in p.tiles) + 1)),
            "writes": range(max(t.writes for t in p.tiles) + 1),
            "weight_base": range(max(2, len(p.weight_words))),
            "window_last": range(max(2, max(t.window_last for t in p.tiles) + 1)),
            # the last cycle of the prologue before the tile and of the epilogue after it
            "prologue_last": range(max(t.reads for t in p.tiles) + ROW_LATENCY),
            "epilogue_last": range(max(t.writes for t in p.tiles) + epilogue_extra + 1),
            "stage_end": 1, "network_end": 1,
        })
        sentinel = {"stage": S, "reads": 0, "first_row": 0, "writes": 0, "weight_base": 0,
                    "window_last": 0, "prologue_last": 0, "epilogue_last": 0, "stage_end": 1,
                    "network_end": 1}
        entries = [{"stage": t.stage, "reads": t.reads, "first_row": t.first_row,
                    "writes": t.writes, "weight_base": t.weight_base,
                    "window_last": t.window_last, "prologue_last": t.reads + ROW_LATENCY - 1,
                    "epilogue_last": t.writes + epilogue_extra, "stage_end": t.stage_end,
                    "network_end": t.network_end} for t in p.tiles]
        entries += [sentinel] * 3
        tiles = memory.Memory(shape=tile_layout, depth=len(entries), init=entries)
        self.memories = {"buffers": buffers}
        for name, mem in (("input_buffer", buffers[0]), ("buffer_a", buffers[1]),
                          ("buffer_b", buffers[2]), ("write_table", write_table),
                          ("tile_table", tiles)):
            m.submodules[name] = mem
        for r, rom in enumerate(weight_roms):
            m.submodules[f"weight_rom{r}"] = rom
        for e, rom in enumerate(bias_roms):
            m.submodules[f"bias_rom{e}"] = rom

        # ---------------------------------------------------------------- datapath
        lanes = m.submodules.lanes = ActivationLanes(p.element_bits, p.lane_capacity,
                                                     p.lane_bits)
        array = m.submodules.array = PEArray(
            self.rows, self.cols, act_bits=p.element_bits, weight_bits=p.weight_bits,
            acc_bits=A, lanes=p.lanes, routes=[s.lane_of_pe for s in p.stages],
            granules=[s.granule for s in p.stages], multiplier=self.multiplier,
            lane_bits=[widths[0] for widths in p.lane_bits],
            max_writes=max(t.writes for t in p.tiles))
        code_bits = p.activation_bits + (0 if all(s.lo < 0 for s in p.stages if s.multiplier)
                                         else 1)
        specs = [RequantSpec(s.multiplier, s.shift, s.lo, s.hi, s.has_bias) for s in p.stages]
        requant = [Requantizer(A, code_bits, specs, self.requant_multiplier) for _ in range(G)]
        for e, rq in enumerate(requant):
            m.submodules[f"requant{e}"] = rq

        # ---------------------------------------------------------------- sequencer state
        # Tiles t, t + 1 and t + 2 in registers; tile t + 3 is read ahead, so no decision
        # waits for a table lookup. The look-ahead index t + 3 is a counter of its own: no
        # adder in front of the table.
        ahead = tiles.read_port(domain="comb")
        t3 = Signal.like(ahead.addr, name="t3")
        m.d.comb += ahead.addr.eq(t3)
        cur_e, nxt_e, nn_e = (Signal(tile_layout, name=n) for n in ("cur_e", "nxt_e", "nn_e"))

        def next_tile():
            m.d.sync += [t3.eq(t3 + 1), cur_e.eq(nxt_e), nxt_e.eq(nn_e), nn_e.eq(ahead.data)]
        stage = cur_e.stage
        # The datapath's copy of the stage, a cycle behind: every use (rows read, granules
        # requantized and written) comes at least a cycle after a stage begins.
        stage_d = delayed(m, stage, 1, "stage_d")
        # ... and a one-hot copy, so a selection by stage (a row's elements, a granule's
        # placement) is one level of logic, with no stage decoder shared across the chip
        stage_hot = delayed(m, (Const(1, S) << stage)[:S], 1, "stage_hot")
        count = Signal(range(max(tile.reads for tile in p.tiles)
                             + max(tile.writes for tile in p.tiles)
                             + max(s.inner for s in p.stages) + p.classes + 16))
        snap_writes = Signal.like(cur_e.writes)
        # Constants of the stage, registered: the stage changes at a stage boundary, and the
        # prologue that follows leaves them a cycle to settle before they are used.
        inner, has_bias = Signal.like(count), Signal()
        with m.Switch(stage):
            for j, s in enumerate(p.stages):
                with m.Case(j):
                    m.d.sync += [inner.eq(s.inner), has_bias.eq(s.has_bias)]

        # reader: rows of the next tile into the shadow lanes
        rd_left = Signal.like(cur_e.reads)
        rd_addr = Signal(range(max(2, *p.buffer_rows)))
        rd_lane = Signal(range(max(2, p.lanes)))
        read_ports = [buf.read_port() for buf in buffers]
        m.d.comb += [rp.addr.eq(rd_addr) for rp in read_ports]
        # The read word goes straight into a register beside the block RAM (ROW_LATENCY),
        # which synthesis folds into the block RAM (edge3u/bram_fold.py). A stage reads only
        # its source buffer and writes only another, so no row is read as it is written.
        words = [Signal.like(rp.data, name=f"row_word{i}", reset_less=True)
                 for i, rp in enumerate(read_ports)]
        m.d.sync += [w.eq(rp.data) for w, rp in zip(words, read_ports)]
        rd_valid = delayed(m, rd_left != 0, ROW_LATENCY, "rd_valid")
        rd_lane_d = delayed(m, rd_lane, ROW_LATENCY, "rd_lane")
        with m.If(rd_left != 0):
            m.d.sync += [rd_left.eq(rd_left - 1), rd_addr.eq(rd_addr + 1), rd_lane.eq(rd_lane + 1)]

        def arm_reader(entry):
            m.d.sync += [rd_left.eq(entry.reads), rd_addr.eq(entry.first_row), rd_lane.eq(0)]

        m.d.comb += [lanes.row_en.eq(rd_valid), lanes.row_lane.eq(rd_lane_d)]
        # the row's elements by stage: one level of logic before the lanes' row register
        elements = [[] for _ in range(max(s.inner for s in p.stages))]
        for j, s in enumerate(p.stages):
            bits, word = s.in_bits, words[s.src]
            for e in range(s.inner):
                raw = word[e * bits:(e + 1) * bits]
                value = raw.as_signed() if s.in_signed else raw
                elements[e].append(Mux(stage_hot[j], value, 0))  # unsigned ones zero-extend
        for e, terms in enumerate(elements):
            total = terms[0]
            for term in terms[1:]:
                total = total | term
            m.d.comb += lanes.row[e].eq(total)

        # compute: the weight word and the operands of the same window cycle reach the array
        # together, WEIGHT_LATENCY cycles behind the window counter
        state_window, state_first = Signal(), Signal()
        weight_addr = Signal.like(weight_roms[0].addr)  # the tile's weight_base + count
        m.d.comb += [rom.addr.eq(weight_addr) for rom in weight_roms]
        valid = delayed(m, state_window & (count < inner), WEIGHT_LATENCY, "valid")
        first = delayed(m, state_first, WEIGHT_LATENCY, "first")
        # the lanes' heads already take ActivationLanes.latency cycles (their input registers),
        # and the array keeps them a cycle longer than the weights (PEArray.head_latency)
        late = WEIGHT_LATENCY - ActivationLanes.latency
        head_late = late - (PEArray.head_latency - PEArray.latency)
        # the granules of the tile a first ends travel with it (snap_writes, below)
        m.d.comb += [array.valid.eq(valid), array.first.eq(first),
                     array.writes.eq(delayed(m, snap_writes, WEIGHT_LATENCY, "array_writes")),
                     array.stage.eq(delayed(m, stage, late, "array_stage")),
                     array.heads.eq(delayed(m, lanes.heads, head_late, "heads"))]
        for pe in range(P):
            word, col = weight_roms[pe // C].data, pe % C
            m.d.comb += array.weights[pe].eq(
                word[col * p.weight_bits:(col + 1) * p.weight_bits].as_signed())

        # drain: one granule per cycle through bias and requantization into the next buffer
        dr_left = Signal.like(snap_writes)
        granule = Signal(range(max(2, len(p.write_table) + 1)))
        bias_index = Signal(range(max(2, len(p.bias_words) + 1)))
        draining = Signal()
        m.d.comb += draining.eq(dr_left != 0)
        # A granule drains every cycle dr_left is non-zero, also in the cycle the next tile's
        # sums arrive (when a tile's writes equal its window length).
        # dr_left_next is what dr_left becomes (the array's rows count the same down).
        dr_left_next = Signal.like(dr_left)
        m.d.comb += dr_left_next.eq(dr_left)
        m.d.sync += dr_left.eq(dr_left_next)
        with m.If(draining):
            m.d.comb += dr_left_next.eq(dr_left - 1)
            m.d.sync += granule.eq(granule + 1)
            with m.If(has_bias):
                m.d.sync += bias_index.eq(bias_index + 1)
        # the writes of a finished tile travel with its first-operand marker to the drain
        writes = delayed(m, snap_writes, WEIGHT_LATENCY + PEArray.latency + PE.latency - 1,
                         "writes")
        with m.If(array.result):
            m.d.comb += dr_left_next.eq(writes)
        wt = write_table.read_port()
        # The granule's sums wait two cycles for their biases: the bias address crosses the
        # chip to each lane's slice through two registers, and the slice is looked up from
        # them into a register; the write table is read a cycle later to match.
        m.d.comb += [wt.addr.eq(delayed(m, granule, 1, "granule_d"))] + [
            rom.addr.eq(bias_index) for rom in bias_roms]
        values = [delayed(m, array.granule[e], 3, f"value{e}_") for e in range(G)]
        drain_valid = delayed(m, draining, 3, "drain")
        for e, (rq, rom) in enumerate(zip(requant, bias_roms)):
            bias = delayed(m, rom.data, 1, f"bias{e}_", reset_less=True)
            m.d.comb += [rq.value.eq(values[e]), rq.bias.eq(bias),
                         rq.stage.eq(stage_d), rq.valid.eq(drain_valid)]
        # the write-table entry a cycle ahead of the codes it places, and then with them
        pre_entry = delayed(m, wt.data, requant[0].latency, "entry", reset_less=True)
        pre_valid = delayed(m, drain_valid, requant[0].latency - 1, "pre_valid")
        out_entry = delayed(m, pre_entry, 1, "out_entry", reset_less=True)
        out_valid = requant[0].out_valid

        # The placed granule is registered before the write port: the placement decodes the
        # stage and lane block, and a memory's write inputs should come from a register.
        write_ports, buffer_writes = {}, {}
        for b in (1, 2):
            wp = buffer_writes[b] = buffers[b].write_port(granularity=p.activation_bits)
            placed = SimpleNamespace(data=Signal.like(wp.data, name=f"placed{b}_data"),
                                     en=Signal.like(wp.en, name=f"placed{b}_en"))
            m.d.sync += [wp.addr.eq(out_entry.row), wp.data.eq(placed.data),
                         wp.en.eq(placed.en)]
            write_ports[b] = placed
        for j, s in enumerate(p.stages):
            if s.final:  # each logit's load, decoded a cycle ahead into a register
                self._place_logits(m, s, p, requant, pre_valid & stage_hot[j], pre_entry.block)
                continue
            with m.If(out_valid & stage_hot[j]):
                self._place(m, s, p, requant, out_entry.block, write_ports)

        # ---------------------------------------------------------------- control
        idle, prologue, win, epilogue, argmax = range(5)
        state = Signal(range(5))
        m.d.comb += [state_window.eq(state == win),
                     state_first.eq(((state == win) | (state == epilogue)) & (count == 0))]
        m.d.comb += [lanes.step.eq(state == win), self.busy.eq(state != idle)]
        self.probes = {"state": state, "stage": stage, "count": count, "rd_left": rd_left,
                       "rd_addr": rd_addr}
        # phase_left counts the cycles of a prologue, window, epilogue or argmax down and
        # phase_end is high in its last: every state change waits on one register.
        phase_left, phase_end = Signal.like(count), Signal()
        winner = argmax_tree(m, [self.logits[c] for c in range(p.classes)], A)
        m.d.sync += self.done.eq(0)

        def enter(next_state, last):
            m.d.sync += [state.eq(next_state), count.eq(0), phase_left.eq(last),
                         phase_end.eq(last == 0)]

        def enter_window(tile, following, prev_writes):
            enter(win, tile.window_last)
            m.d.sync += [snap_writes.eq(prev_writes), weight_addr.eq(tile.weight_base)]
            m.d.comb += lanes.swap.eq(1)
            with m.If(~tile.stage_end):  # the following tile is of this stage: read its rows
                arm_reader(following)

        with m.If(state != idle):  # count the phase down (a state change below overrides)
            m.d.sync += [count.eq(count + 1), phase_left.eq(phase_left - 1),
                         phase_end.eq(phase_left == 1)]
        with m.Switch(state):
            with m.Case(idle):
                with m.If(self.start):
                    enter(prologue, entries[0]["prologue_last"])
                    m.d.sync += [t3.eq(3), granule.eq(0), bias_index.eq(0)]
                    m.d.sync += [reg.eq(tile_layout.const(entries[k]))
                                 for k, reg in enumerate((cur_e, nxt_e, nn_e))]
                    first_tile = p.tiles[0]
                    m.d.sync += [rd_left.eq(first_tile.reads), rd_addr.eq(first_tile.first_row),
                                 rd_lane.eq(0)]
            with m.Case(prologue):
                with m.If(phase_end):
                    enter_window(cur_e, nxt_e, Const(0, 1))
            with m.Case(win):
                m.d.sync += weight_addr.eq(weight_addr + 1)
                with m.If(phase_end):
                    with m.If(~cur_e.stage_end):
                        next_tile()
                        enter_window(nxt_e, nn_e, cur_e.writes)
                    with m.Else():
                        enter(epilogue, cur_e.epilogue_last)
                        m.d.sync += snap_writes.eq(cur_e.writes)
            with m.Case(epilogue):
                with m.If(phase_end):
                    with m.If(cur_e.network_end):
                        enter(argmax, argmax_cycles(p.classes) - 1)
                    with m.Else():
                        enter(prologue, nxt_e.prologue_last)
                        next_tile()
                        arm_reader(nxt_e)
            with m.Case(argmax):  # the comparison tree's levels are registers
                with m.If(phase_end):
                    m.d.sync += [self.cls.eq(winner), state.eq(idle), self.done.eq(1)]

        # loader port into the input buffer
        lw = buffer_writes[0] = buffers[0].write_port(granularity=p.input_bits)
        # registered, as the drain's write ports are: the pixel lands a cycle after it is
        # given, which the start (itself a cycle after the last pixel) leaves time for
        m.d.sync += [lw.addr.eq(self.load_addr),
                     lw.data.eq(Cat(*[self.load_data] * p.buffer_lanes[0])),
                     lw.en.eq((self.load_en << self.load_lane)[:p.buffer_lanes[0]])]
        self.probes["writes"] = {b: (wp.addr, wp.en) for b, wp in buffer_writes.items()}
        return m

    def _place_logits(self, m, s, p, requant, valid_ahead, block_ahead):
        """The final stage's granules into the logit registers: lane ``e`` of block ``b``
        is the logit of class ``logit_class[b * g + e]``."""
        g = s.granule
        for b in range(s.x_hi):
            load = Signal(name=f"logit_load{b}")
            m.d.sync += load.eq(valid_ahead & (block_ahead == b))
            with m.If(load):
                for e in range(g):
                    cls = p.logit_class[b * g + e]
                    m.d.sync += self.logits[cls].eq(requant[e].logit)

    def _place(self, m, s, p, requant, block, write_ports):
        """Write the drained granule: lanes ``block * g .. block * g + g - 1`` of the row."""
        g = s.granule
        wp = write_ports[s.dst]
        bits = p.activation_bits
        with m.Switch(block):
            for b in range(s.x_hi):
                with m.Case(b):
                    for e in range(g):
                        lane = b * g + e
                        m.d.comb += wp.data[lane * bits:(lane + 1) * bits].eq(requant[e].code)
                    m.d.comb += wp.en.eq(((1 << g) - 1) << (b * g))

