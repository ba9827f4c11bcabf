"""The board top: ``edge3u_top`` behind a UART that speaks ``rtl/protocol.py``.

Ports are the board's pins, named as in the constraint files of ``constraints/``: ``clk`` (the
oscillator), ``rst`` (a button), ``uart_rx``, ``uart_tx`` and ``led``. The top LED is lit while
the accelerator computes; the others show the low bits of the last class.
"""

from __future__ import annotations

from amaranth import Cat, ClockDomain, ClockSignal, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out

from edge3u.rtl import protocol
from edge3u.rtl.pll import ECP5PLL, PllParams
from edge3u.rtl.program import Program
from edge3u.rtl.top import Top
from edge3u.rtl.uart import UARTReceiver, UARTTransmitter, check_divisor

__all__ = ["BoardTop", "identity_of"]


def identity_of(program: Program) -> protocol.Identity:
    """What the board top answers to ``?``, checked to fit the protocol's fields."""
    pixels = len(program.input_table)
    if program.input_bits > 8:
        raise ValueError(f"the board protocol sends one byte per pixel; the design takes "
                         f"{program.input_bits}-bit pixels (at most 8)")
    if not 1 <= pixels < 1 << 16 or not 1 <= program.classes < 256:
        raise ValueError(f"the board protocol carries up to 65535 pixels and 255 classes, "
                         f"not {pixels} pixels and {program.classes} classes")
    return protocol.Identity(protocol.VERSION, pixels, program.input_bits, program.classes,
                             protocol.logit_bytes(program.acc_bits))


def _word(data: bytes) -> int:
    return int.from_bytes(data, "little")


class BoardTop(wiring.Component):
    """The accelerator, a UART, a reset synchroniser and (ECP5) a PLL, on the board's pins.

    Parameters
    ----------
    program : Program
    rows, cols : int
        The PE array.
    divisor : int
        Clock cycles per UART bit (clock frequency / baud rate).
    leds : int
    rst_active_low, led_active_low : bool
        Polarity of the board's reset button and LEDs.
    pll : PllParams or None
        ECP5 only: run the design from a PLL on ``clk`` (else from ``clk`` itself).
    multiplier : "lut" or "dsp"
        How the PEs' products are written (:class:`~edge3u.rtl.pe.PE`); the requantizers' are
        the program's schedule's ``requant``.
    """

    def __init__(self, program: Program, rows: int, cols: int, *, divisor: int, leds: int = 8,
                 rst_active_low: bool = False, led_active_low: bool = False,
                 pll: PllParams | None = None, multiplier: str = "lut"):
        if leds < 1:
            raise ValueError(f"a board top needs at least 1 LED, not {leds}")
        self.identity = identity_of(program)
        self.program, self.rows, self.cols, self.multiplier = program, rows, cols, multiplier
        self.divisor = check_divisor(divisor)
        self.rst_active_low, self.led_active_low, self.pll = rst_active_low, led_active_low, pll
        super().__init__({"clk": In(1), "rst": In(1), "uart_rx": In(1), "uart_tx": Out(1),
                          "led": Out(leds)})

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync", local=True)
        locked = Const(1)
        if self.pll is None:
            m.d.comb += ClockSignal("sync").eq(self.clk)
        else:
            pll = m.submodules.pll = ECP5PLL(self.pll)
            m.d.comb += [pll.clk_in.eq(self.clk), ClockSignal("sync").eq(pll.clk_out)]
            locked = pll.locked
        pressed = ~self.rst if self.rst_active_low else self.rst
        m.submodules.reset = ResetSynchronizer(pressed | ~locked, domain="sync")

        core = m.submodules.core = Top(self.program, self.rows, self.cols, self.multiplier)
        rx = m.submodules.rx = UARTReceiver(self.divisor)
        tx = m.submodules.tx = UARTTransmitter(self.divisor)
        m.d.comb += [rx.rx.eq(self.uart_rx), self.uart_tx.eq(tx.tx)]

        ident = self.identity
        width = ident.logit_bytes * 8
        logits = [Signal(signed(width), name=f"logit{c}") for c in range(ident.classes)]
        m.d.comb += [wide.eq(core.o_result.payload.logits[c]) for c, wide in enumerate(logits)]
        length = max(protocol.result_length(ident), protocol.IDENTITY_LENGTH)
        reply = Signal(8 * length)
        left = Signal(range(length + 1))
        cls = Signal(8)

        # One byte waits in a slot for the transmitter, so the wide reply register is never
        # enabled by the transmitter's timing logic.
        slot, slot_full = Signal(8), Signal()
        m.d.comb += [tx.i_data.valid.eq(slot_full), tx.i_data.payload.eq(slot)]
        with m.If(tx.i_data.ready & slot_full):
            m.d.sync += slot_full.eq(0)

        m.d.sync += core.start.eq(0)
        # The wide reply register only ever loads the staged reply (in state "load") or moves
        # on a byte: its input is one level of logic. The staged reply follows the kind of
        # reply, every cycle, through a one-hot register of it, so each staged bit is an OR of
        # one-hot bits and values held in registers; the kind is decoded as the command byte
        # is registered, and set to "result" as an inference's result arrives.
        staged, staged_left = Signal.like(reply), Signal.like(left)
        command = Signal(8)
        identify, infer, cycles, error, result = range(5)
        kind = Signal(range(5))
        hot = Signal(5)
        m.d.sync += hot.eq(1 << kind)
        choices = {identify: (Const(_word(protocol.identity_reply(ident)), len(staged)),
                              protocol.IDENTITY_LENGTH),
                   cycles: (_bytes(protocol.CYCLES, core.cycles), protocol.CYCLES_LENGTH),
                   # the result stays in the core until its next start
                   result: (_bytes(protocol.RESULT, cls, *logits, core.cycles),
                            protocol.result_length(ident)),
                   error: (_bytes(protocol.ERROR, command), 2)}
        words = [Mux(hot[k], word, 0) for k, (word, _) in choices.items()]
        lengths = [Mux(hot[k], n, 0) for k, (_, n) in choices.items()]
        m.d.sync += [staged.eq(_any(words)), staged_left.eq(_any(lengths))]
        with m.FSM():
            with m.State("command"):
                m.d.comb += rx.o_data.ready.eq(1)
                with m.If(rx.o_data.valid):
                    byte = rx.o_data.payload
                    m.d.sync += [command.eq(byte),
                                 kind.eq(Mux(byte == ord(protocol.IDENTIFY), identify,
                                             Mux(byte == ord(protocol.INFER), infer,
                                                 Mux(byte == ord(protocol.CYCLES), cycles,
                                                     error))))]
                    m.next = "decode"
            with m.State("decode"):
                with m.If(kind == infer):
                    m.d.sync += core.start.eq(1)
                    m.next = "infer"
                with m.Else():
                    m.next = "settle"
            with m.State("infer"):
                m.d.comb += [core.i_pixels.valid.eq(rx.o_data.valid),
                             core.i_pixels.payload.eq(rx.o_data.payload),
                             rx.o_data.ready.eq(core.i_pixels.ready),
                             core.o_result.ready.eq(1)]
                with m.If(core.o_result.valid):
                    m.d.sync += [cls.eq(core.o_result.payload.cls), kind.eq(result)]
                    m.next = "settle"
            with m.State("settle"):  # the one-hot kind follows the kind in this cycle
                m.next = "stage"
            with m.State("stage"):  # the staged reply follows the one-hot kind
                m.next = "load"
            with m.State("load"):
                m.d.sync += [reply.eq(staged), left.eq(staged_left)]
                m.next = "reply"
            with m.State("reply"):  # the reply moves on a byte whenever the slot is free
                with m.If(~slot_full):
                    m.d.sync += [slot.eq(reply[:8]), slot_full.eq(1),
                                 reply.eq(reply >> 8), left.eq(left - 1)]
                    with m.If(left == 1):
                        m.next = "command"

        leds = Signal(len(self.led))
        m.d.comb += leds.eq(cls | (core.busy << (len(self.led) - 1)))
        m.d.comb += self.led.eq(~leds if self.led_active_low else leds)
        return m


def _bytes(head: bytes, *values):
    """``head`` then each value zero-extended to whole bytes (signed values are already)."""
    parts = [Const(_word(head), 8 * len(head))]
    for value in values:
        parts.append(value)
        if len(value) % 8:
            parts.append(Const(0, 8 - len(value) % 8))
    return Cat(*parts)


def _any(values):
    """The OR of ``values`` (each zero unless chosen)."""
    total = values[0]
    for value in values[1:]:
        total = total | value
    return total
