"""An 8N1 UART: a receiver and a transmitter, ``divisor`` clock cycles per bit."""

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTReceiver", "UARTTransmitter", "check_divisor"]

MIN_DIVISOR = 4


def check_divisor(divisor: int) -> int:
    """``divisor`` (clock cycles per bit) if usable, else a ValueError naming it."""
    if not isinstance(divisor, int) or divisor < MIN_DIVISOR:
        raise ValueError(f"UART divisor (clock cycles per bit) must be an integer >= "
                         f"{MIN_DIVISOR}, not {divisor!r}")
    return divisor


class UARTReceiver(wiring.Component):
    """Samples ``rx`` (synchronised by two flip-flops) in the middle of each bit.

    A byte is offered on ``o_data`` when its stop bit is high; a low stop bit (a framing error,
    or a break) drops the byte and pulses ``error``. A byte not taken before the next one
    completes is overwritten.

    Members
    -------
    rx : In(1)
    o_data : Out(stream.Signature(8))
    error : Out(1)
    """

    rx: In(1)
    o_data: Out(stream.Signature(8))
    error: Out(1)

    def __init__(self, divisor: int):
        self.divisor = check_divisor(divisor)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(self.divisor * 3 // 2 + 1))
        bit = Signal(range(9))
        shift = Signal(8)
        m.d.sync += self.error.eq(0)
        with m.If(self.o_data.ready):
            m.d.sync += self.o_data.valid.eq(0)
        with m.FSM():
            with m.State("idle"):
                with m.If(~rx):  # start bit: wait to the middle of data bit 0
                    m.d.sync += [timer.eq(self.divisor * 3 // 2 - 1), bit.eq(0)]
                    m.next = "data"
            with m.State("data"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(self.divisor - 1), bit.eq(bit + 1),
                                 shift.eq((shift >> 1) | (rx << 7))]
                    with m.If(bit == 7):
                        m.next = "stop"
            with m.State("stop"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    with m.If(rx):
                        m.d.sync += [self.o_data.payload.eq(shift), self.o_data.valid.eq(1)]
                        m.next = "idle"
                    with m.Else():
                        m.d.sync += self.error.eq(1)
                        m.next = "break"
            with m.State("break"):  # wait for the line to go idle again
                with m.If(rx):
                    m.next = "idle"
        return m


class UARTTransmitter(wiring.Component):
    """Sends each byte taken from ``i_data``: a start bit, 8 data bits LSB first, a stop bit.

    Members
    -------
    i_data : In(stream.Signature(8))
    tx : Out(1, init=1)
    """

    i_data: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, divisor: int):
        self.divisor = check_divisor(divisor)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        timer_end = Signal()  # timer == 0, kept as a register beside the count
        bits = Signal(range(11))
        frame = Signal(10, init=0x3FF)  # stop, data[7:0], start — LSB goes out first
        m.d.comb += self.tx.eq(frame[0])
        last = (bits == 0) | ((bits == 1) & timer_end)  # idle, or the stop bit's end
        m.d.comb += self.i_data.ready.eq(last)
        reload = [timer.eq(self.divisor - 1), timer_end.eq(self.divisor == 1)]
        with m.If(last & self.i_data.valid):  # frames go back to back
            m.d.sync += [frame.eq((self.i_data.payload << 1) | (1 << 9)), bits.eq(10), *reload]
        with m.Elif(bits != 0):
            m.d.sync += [timer.eq(timer - 1), timer_end.eq(timer == 1)]
            with m.If(timer_end):
                m.d.sync += [frame.eq((frame >> 1) | (1 << 9)), bits.eq(bits - 1), *reload]
        return m
