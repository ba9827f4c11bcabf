"""A processing element: signed low-bit multiply, wide accumulate."""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PE", "MULTIPLIERS"]

MULTIPLIERS = ("lut", "dsp")


class PE(wiring.Component):
    """Multiply an activation by a core code and accumulate, output stationary.

    Two register stages: the product is registered, then added to the accumulator. ``first``
    marks the first operand pair of a new sum; two cycles later (``result`` high) ``acc`` still
    holds the finished previous sum for one cycle while the new sum starts.

    Parameters
    ----------
    act_bits, weight_bits : int
        Signed widths of the operands.
    acc_bits : int
        Signed accumulator width; the caller derives it from the worst case, so it never wraps.
    multiplier : "lut" or "dsp"
        ``"lut"`` writes the product as its ``weight_bits`` shifted partial products (logic
        that synthesis keeps in LUTs); ``"dsp"`` writes ``a * w``, which synthesis maps to the
        target's multiplier blocks where it has them.

    Members
    -------
    a : In(signed(act_bits))
    w : In(signed(weight_bits))
    valid : In(1)
        The operands count; otherwise a zero product is accumulated.
    first : In(1)
        Start a new sum with these operands.
    acc : Out(signed(acc_bits))
    result : Out(1)
        ``acc`` holds a finished sum (the cycle before it is replaced).
    """

    def __init__(self, act_bits: int, weight_bits: int, acc_bits: int, multiplier: str = "lut"):
        if multiplier not in MULTIPLIERS:
            raise ValueError(f"PE multiplier must be one of {', '.join(MULTIPLIERS)}, "
                             f"not {multiplier!r}")
        self.multiplier = multiplier
        for name, value in (("act_bits", act_bits), ("weight_bits", weight_bits),
                            ("acc_bits", acc_bits)):
            if not isinstance(value, int) or value < 2:
                raise ValueError(f"PE {name} must be an integer >= 2, not {value!r}")
        if acc_bits < act_bits + weight_bits - 1:
            raise ValueError(f"PE acc_bits {acc_bits} cannot hold one product of "
                             f"{act_bits}-bit by {weight_bits}-bit operands")
        self._act_bits, self._weight_bits, self._acc_bits = act_bits, weight_bits, acc_bits
        super().__init__({
            "a": In(signed(act_bits)), "w": In(signed(weight_bits)),
            "valid": In(1), "first": In(1),
            "acc": Out(signed(acc_bits)), "result": Out(1),
        })

    @property
    def acc_bits(self) -> int:
        return self._acc_bits

    latency = 2
    """Cycles from an operand pair to its product being in ``acc``."""

    def elaborate(self, platform):
        m = Module()
        product = Signal(signed(self._act_bits + self._weight_bits), name="product")
        first = Signal(name="first_d")
        if self.multiplier == "dsp":
            full = self.a * self.w
        else:  # two's complement: the top bit of w weighs -2**(weight_bits-1)
            top = self._weight_bits - 1
            full = sum(Mux(self.w[k], self.a << k, 0) for k in range(top))
            full = full - Mux(self.w[top], self.a << top, 0)
        m.d.sync += [product.eq(Mux(self.valid, full, 0)), first.eq(self.first)]
        m.d.sync += self.acc.eq(Mux(first, 0, self.acc) + product)
        m.d.comb += self.result.eq(first)
        return m

