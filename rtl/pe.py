"""A processing element: signed low-bit multiply, wide accumulate."""

from amaranth import Const, Module, Mux, Signal, signed
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
        ``"lut"`` writes the product as radix-4 Booth terms (:func:`booth_digits`), logic that
        synthesis keeps in LUTs; ``"dsp"`` writes ``a * w``, which synthesis maps to the
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
        first = Signal(name="first_d")
        m.d.sync += first.eq(self.first)
        m.d.comb += self.result.eq(first)
        keep = Mux(first, 0, self.acc)
        if self.multiplier == "dsp":
            full = self.a * self.w
        else:
            # Each Booth digit selects 0, a or 2a and inverts it when negative; the +1 that
            # completes the negation joins the next addition as its carry-in.
            terms = [(Mux(one, self.a, Mux(two, self.a << 1, 0)) ^ Mux(neg, -1, 0), neg)
                     for one, two, neg in booth_digits(self.w, self._weight_bits)]
            if len(terms) == 1:  # 2-bit codes: the inverted term and its carry go to the adder
                (inverted, neg), = terms
                term = Signal(signed(self._act_bits + 1), name="term")
                carry = Signal(name="carry")
                m.d.sync += [term.eq(Mux(self.valid, inverted, 0)), carry.eq(self.valid & neg),
                             self.acc.eq(keep + term + carry)]
                return m
            full = sum((inverted + neg) << 2 * d for d, (inverted, neg) in enumerate(terms))
        product = Signal(signed(self._act_bits + self._weight_bits), name="product")
        m.d.sync += [product.eq(Mux(self.valid, full, 0)), self.acc.eq(keep + product)]
        return m


def booth_digits(w, bits: int):
    """The radix-4 Booth digits of the signed ``bits``-bit value ``w``, least significant
    first, each as ``(one, two, neg)``: digit ``d`` is ``(-1 if neg else 1) * (1 if one else
    2 if two else 0)`` and ``w = sum(digit_d * 4**d)``. Digit ``d`` reads bits ``2d+1, 2d,
    2d-1`` (bit -1 is 0, bits above the top repeat the sign)."""
    bit = lambda i: w[min(i, bits - 1)] if i >= 0 else Const(0)  # noqa: E731
    out = []
    for d in range((bits + 1) // 2):
        low, mid, high = bit(2 * d - 1), bit(2 * d), bit(2 * d + 1)
        out.append((mid ^ low, (high & ~mid & ~low) | (~high & mid & low), high))
    return out
