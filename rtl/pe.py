"""A processing element: signed low-bit multiply, wide accumulate."""

from amaranth import Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from edge3u.rtl.delay import delayed

__all__ = ["PE", "MULTIPLIERS"]

MULTIPLIERS = ("lut", "dsp")


class PE(wiring.Component):
    """Multiply an activation by a core code and accumulate, output stationary.

    Three register stages: the product's terms, the product, then the accumulator. ``first``
    marks the first operand pair of a new sum; three cycles later (``result`` high) ``acc``
    still holds the finished previous sum for one cycle while the new sum starts.

    Parameters
    ----------
    act_bits, weight_bits : int
        Signed widths of the operands.
    acc_bits : int
        Signed accumulator width; the caller derives it from the worst case, so it never wraps.
    multiplier : "lut" or "dsp"
        ``"lut"`` writes the product as radix-4 Booth terms (:func:`booth_digits`), logic that
        synthesis keeps in LUTs: the terms are selected into registers, and then summed, so
        no path has more than one level of selection or two carry chains; ``"dsp"`` writes
        ``a * w`` between registers (the multiplier block's input and output registers).

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

    latency = 3
    """Cycles from an operand pair to its product being in ``acc``."""

    def elaborate(self, platform):
        m = Module()
        first = delayed(m, self.first, self.latency - 1, "first_d")
        m.d.comb += self.result.eq(first)
        keep = Mux(first, 0, self.acc)
        if self.multiplier == "dsp":
            a = delayed(m, Mux(self.valid, self.a, 0), 1, "a_d")
            w = delayed(m, self.w, 1, "w_d")
            product = delayed(m, a * w, 1, "product")
            m.d.sync += self.acc.eq(keep + product)
            return m
        # Each Booth digit selects 0, a or 2a and inverts it when negative; the +1 that
        # completes the negation joins an addition as its carry-in.
        terms = []
        for d, (one, two, neg) in enumerate(booth_digits(self.w, self._weight_bits)):
            inverted = Mux(one, self.a, Mux(two, self.a << 1, 0)) ^ Mux(neg, -1, 0)
            term = Signal(signed(self._act_bits + 1), name=f"term{d}_")
            carry = Signal(name=f"carry{d}_")
            m.d.sync += [term.eq(Mux(self.valid, inverted, 0)), carry.eq(self.valid & neg)]
            terms.append((term, carry))
        if len(terms) == 1:  # 2-bit codes: the inverted term and its carry go to the adder
            (term, carry), = terms
            term, carry = delayed(m, term, 1, "term_d"), delayed(m, carry, 1, "carry_d")
            m.d.sync += self.acc.eq(keep + term + carry)
            return m
        product = Signal(signed(self._act_bits + self._weight_bits), name="product")
        m.d.sync += [product.eq(sum((term + carry) << 2 * d
                                    for d, (term, carry) in enumerate(terms))),
                     self.acc.eq(keep + product)]
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
