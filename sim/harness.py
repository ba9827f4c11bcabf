"""Simulation harnesses: HDL-side image source and result sink around ``edge3u_top``, so a
simulator runs free for a whole batch of images instead of waking Python every cycle."""

from amaranth import Cat, Module, Signal, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from edge3u.rtl.program import Program
from edge3u.rtl.top import Top

__all__ = ["Harness", "MultiHarness", "LFSR_TAPS"]

#: A maximal-length 16-bit Fibonacci LFSR (x^16 + x^14 + x^13 + x^11 + 1).
LFSR_TAPS = (15, 13, 12, 10)


def _lfsr(m: Module, seed: int, name: str) -> Signal:
    state = Signal(16, init=seed or 1, name=name)
    feedback = state[LFSR_TAPS[0]] ^ state[LFSR_TAPS[1]] ^ state[LFSR_TAPS[2]] ^ state[LFSR_TAPS[3]]
    m.d.sync += state.eq(Cat(feedback, state[:15]))
    return state


class Harness(wiring.Component):
    """``edge3u_top`` fed from an image buffer and drained into a result buffer.

    The host writes up to ``depth`` images (``load_*``: one whole image per write), sets
    ``count`` and pulses ``go``; the harness streams them through the accelerator and raises
    ``finished`` when all results are in. ``gap_256`` / ``stall_256`` (0–255) are the chances in
    256 that the input ``valid`` is held low or the output ``ready`` is held low in a cycle
    (pseudo-random, from ``seed``): handshake stress without host work. ``multiplier`` is how
    the PEs multiply (:class:`~edge3u.rtl.top.Top`).
    """

    def __init__(self, program: Program, rows: int, cols: int, *, depth: int, gap_256: int = 0,
                 stall_256: int = 0, seed: int = 1, multiplier: str = "lut"):
        if not 0 <= gap_256 < 256 or not 0 <= stall_256 < 256:
            raise ValueError(f"gap_256 and stall_256 must be in 0 .. 255, not {gap_256}, "
                             f"{stall_256}")
        self.program, self.rows, self.cols, self.depth = program, rows, cols, depth
        self.gap_256, self.stall_256, self.seed = gap_256, stall_256, seed
        self.multiplier = multiplier
        self.pixels = len(program.input_table)
        p = program
        super().__init__({
            "load_addr": In(range(max(2, depth))),
            "load_data": In(unsigned(self.pixels * p.input_bits)),
            "load_en": In(1), "count": In(range(depth + 1)), "go": In(1), "finished": Out(1),
            "read_addr": In(range(max(2, depth))), "read_cls": Out(range(max(2, p.classes))),
            "read_logits": Out(data.ArrayLayout(data.signed(p.acc_bits), p.classes)),
            "read_cycles": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.program
        top = m.submodules.top = Top(p, self.rows, self.cols, self.multiplier)
        bits = p.input_bits
        images = m.submodules.images = memory.Memory(
            shape=unsigned(self.pixels * bits), depth=max(2, self.depth), init=[])
        result_layout = data.StructLayout({
            "cls": range(max(2, p.classes)),
            "logits": data.ArrayLayout(data.signed(p.acc_bits), p.classes), "cycles": 32})
        results = m.submodules.results = memory.Memory(shape=result_layout,
                                                       depth=max(2, self.depth),
                                                       init=[])
        load = images.write_port()
        m.d.comb += [load.addr.eq(self.load_addr), load.data.eq(self.load_data),
                     load.en.eq(self.load_en)]
        fetch = images.read_port(domain="comb")
        store = results.write_port()
        readout = results.read_port(domain="comb")
        m.d.comb += [readout.addr.eq(self.read_addr), self.read_cls.eq(readout.data.cls),
                     self.read_logits.eq(readout.data.logits),
                     self.read_cycles.eq(readout.data.cycles)]

        running = Signal()
        image = Signal(range(self.depth + 1))   # image being streamed in
        pixel = Signal(range(self.pixels + 1))
        shift = Signal(unsigned(self.pixels * bits))
        loaded = Signal()
        done_count = Signal(range(self.depth + 1))
        gap = _lfsr(m, self.seed, "gap_lfsr")
        stall = _lfsr(m, self.seed * 7 + 3, "stall_lfsr")
        m.d.comb += fetch.addr.eq(image)
        m.d.comb += top.start.eq(running)

        with m.If(self.go):
            m.d.sync += [running.eq(self.count != 0), image.eq(0), pixel.eq(0), loaded.eq(0),
                         done_count.eq(0), self.finished.eq(self.count == 0)]
        with m.Elif(running):
            with m.If(~loaded & (image < self.count)):
                m.d.sync += [shift.eq(fetch.data), loaded.eq(1), pixel.eq(0)]
            with m.If(loaded):
                m.d.comb += [top.i_pixels.valid.eq(gap[:8] >= self.gap_256),
                             top.i_pixels.payload.eq(shift[:bits])]
                with m.If(top.i_pixels.valid & top.i_pixels.ready):
                    m.d.sync += [shift.eq(shift >> bits), pixel.eq(pixel + 1)]
                    with m.If(pixel == self.pixels - 1):
                        m.d.sync += [loaded.eq(0), image.eq(image + 1)]
            m.d.comb += top.o_result.ready.eq(stall[:8] >= self.stall_256)
            with m.If(top.o_result.valid & top.o_result.ready):
                m.d.comb += [store.addr.eq(done_count), store.en.eq(1),
                             store.data.cls.eq(top.o_result.payload.cls),
                             store.data.logits.eq(top.o_result.payload.logits),
                             store.data.cycles.eq(top.cycles)]
                m.d.sync += done_count.eq(done_count + 1)
                with m.If(done_count + 1 == self.count):
                    m.d.sync += [running.eq(0), self.finished.eq(1)]
        return m


class MultiHarness(wiring.Component):
    """Several harnesses (different networks and arrays) in one design, so one Verilator build
    checks many configurations. Ports of harness ``i`` are prefixed ``h{i}_``; ``finished`` is
    high when every harness has finished."""

    def __init__(self, harnesses):
        self.harnesses = list(harnesses)
        members = {"go": In(1), "finished": Out(1)}
        for i, h in enumerate(self.harnesses):
            for name, member in h.signature.members.items():
                if name not in ("go", "finished"):
                    members[f"h{i}_{name}"] = member
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        finished = []
        for i, h in enumerate(self.harnesses):
            m.submodules[f"h{i}"] = h
            for name, member in h.signature.members.items():
                if name in ("go", "finished"):
                    continue
                outer = getattr(self, f"h{i}_{name}")
                if member.flow == wiring.In:
                    m.d.comb += getattr(h, name).eq(outer)
                else:
                    m.d.comb += outer.eq(getattr(h, name))
            m.d.comb += h.go.eq(self.go)
            finished.append(h.finished)
        all_done = finished[0]
        for f in finished[1:]:
            all_done = all_done & f
        m.d.comb += self.finished.eq(all_done)
        return m
