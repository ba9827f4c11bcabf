"""``edge3u_top``: the accelerator behind a pixel stream in and a result stream out."""

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from edge3u.rtl.accelerator import Accelerator
from edge3u.rtl.delay import delayed
from edge3u.rtl.program import Program

__all__ = ["Top", "result_layout"]


def result_layout(program: Program) -> data.StructLayout:
    """Payload of the result stream: the class and every logit."""
    return data.StructLayout({
        "cls": range(max(2, program.classes)),
        "logits": data.ArrayLayout(data.signed(program.acc_bits), program.classes),
    })


class Top(wiring.Component):
    """The top module.

    After ``start`` (a pulse, or held high to run image after image) the core accepts one image
    on ``i_pixels`` (one pixel per beat, in the row-major order of the input), computes, and
    offers the class and logits on ``o_result``; ``done`` pulses when the result is taken.
    ``cycles`` holds the compute cycles of the last inference (the cycles the core is busy,
    from its start two cycles after the last pixel to the result), which
    :meth:`Schedule.cycles` predicts exactly.

    Members
    -------
    start : In(1)
    busy : Out(1)
    done : Out(1)
    cycles : Out(32)
    i_pixels : In(stream.Signature(input_bits))
    o_result : Out(stream.Signature(result_layout(program)))
    """

    def __init__(self, program: Program, rows: int, cols: int, multiplier: str = "lut"):
        self.program, self.rows, self.cols, self.multiplier = program, rows, cols, multiplier
        super().__init__({
            "start": In(1), "busy": Out(1), "done": Out(1), "cycles": Out(32),
            "i_pixels": In(stream.Signature(unsigned(program.input_bits))),
            "o_result": Out(stream.Signature(result_layout(program))),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.program
        core = m.submodules.core = Accelerator(p, self.rows, self.cols, self.multiplier)
        pixels = len(p.input_table)
        table_layout = data.StructLayout({"row": unsigned(p.input_row_bits),
                                          "lane": unsigned(p.input_lane_bits)})
        table = m.submodules.input_table = memory.Memory(
            shape=table_layout, depth=pixels,
            init=[{"row": r, "lane": lane} for r, lane in p.input_table])
        # Read one pixel ahead: the entry of the pixel being accepted is already registered.
        # (A comb port and a register: yosys' ABC9 in YoWASP 0.70 fails on the ECP5
        # mapping of a registered ROM port.) The entry then takes one more register, which
        # synthesis folds into the table's block RAM, and the pixel and its enable one each
        # to stay in step with it.
        ahead = table.read_port(domain="comb")
        where = Signal(table_layout, reset_less=True)
        m.d.sync += where.eq(ahead.data)
        index = Signal(range(pixels + 1))
        idle, load, run, offer = range(4)
        state = Signal(range(4))
        accept = Signal()
        m.d.comb += accept.eq((state == load) & self.i_pixels.valid)
        m.d.comb += ahead.addr.eq(Mux(state == load, Mux(accept, index + 1, index), 0))
        counter = Signal(32)
        m.d.comb += self.busy.eq(state != idle)
        m.d.sync += self.done.eq(0)
        where_d = delayed(m, where, 1, "where_d", reset_less=True)
        m.d.comb += [core.load_addr.eq(where_d.row), core.load_lane.eq(where_d.lane),
                     core.load_data.eq(delayed(m, self.i_pixels.payload, 1, "pixel_d",
                                               reset_less=True)),
                     core.load_en.eq(delayed(m, accept, 1, "accept_d"))]
        # the last pixel reaches the input buffer two edges after it is accepted (this
        # register and the core's write-port register): the core starts after that
        go = Signal()
        m.d.comb += core.start.eq(delayed(m, go, 2, "go"))
        m.d.comb += [self.o_result.payload.cls.eq(core.cls),
                     self.o_result.payload.logits.eq(core.logits)]
        last = Signal()  # index == pixels - 1, kept as a register beside the count
        with m.Switch(state):
            with m.Case(idle):
                with m.If(self.start):
                    m.d.sync += [state.eq(load), index.eq(0), last.eq(pixels == 1)]
            with m.Case(load):
                m.d.comb += self.i_pixels.ready.eq(1)
                with m.If(self.i_pixels.valid):
                    m.d.sync += [index.eq(index + 1), last.eq(index == pixels - 2)]
                    with m.If(last):
                        m.d.sync += [state.eq(run), counter.eq(0)]
                        m.d.comb += go.eq(1)
            with m.Case(run):
                with m.If(core.busy):
                    m.d.sync += counter.eq(counter + 1)
                with m.If(core.done):
                    m.d.sync += [state.eq(offer), self.cycles.eq(counter)]
            with m.Case(offer):
                m.d.comb += self.o_result.valid.eq(1)
                with m.If(self.o_result.ready):
                    m.d.sync += [self.done.eq(1), state.eq(idle)]
                    with m.If(self.start):
                        m.d.sync += [state.eq(load), index.eq(0)]
        return m
