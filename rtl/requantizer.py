"""One lane of the drain: bias, integer multiplier, round-half-up shift and clamp, pipelined."""

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from edge3u.models.golden import MULTIPLIER_BITS
from edge3u.models.schedule import product_stages
from edge3u.rtl.delay import delayed
from edge3u.rtl.replica import REPLICA_PREFIX, Replica

__all__ = ["Requantizer", "RequantSpec"]


class RequantSpec:
    """The constants of one stage: ``code = clamp((acc + bias) * multiplier + 2**(shift-1) >>
    shift, lo, hi)``; ``multiplier == 0`` keeps ``acc + bias`` (the logits)."""

    def __init__(self, multiplier: int, shift: int, lo: int, hi: int, has_bias: bool):
        if not 0 <= multiplier < (1 << MULTIPLIER_BITS):
            raise ValueError(f"requant multiplier must be in 0 .. 2**{MULTIPLIER_BITS} - 1, "
                             f"not {multiplier}")
        if not 1 <= shift <= 62:
            raise ValueError(f"requant shift must be in 1 .. 62, not {shift}")
        if lo > hi:
            raise ValueError(f"requant range lo {lo} > hi {hi}")
        self.multiplier, self.shift, self.lo, self.hi = multiplier, shift, lo, hi
        self.has_bias = has_bias


class Requantizer(wiring.Component):
    """``docs/numerics.md``'s requantization, pipelined (``latency`` register stages).

    Parameters
    ----------
    acc_bits : int
        Signed width of the accumulator and the bias (the bias is included in the worst case).
    code_bits : int
        Signed width of the output codes.
    specs : list of RequantSpec
        One per stage; ``stage`` selects.
    multiplier : "lut" or "dsp"
        ``"dsp"`` writes the product as ``*``, which synthesis puts in a multiplier block, into
        one register (three cycles less ``latency``); ``"lut"`` as shifted partial products
        summed in a tree, one level per register stage. On ECP5 the combinational MULT18X18D
        alone takes 3.9 ns, which with the wires to and from the block keeps a design below
        140 MHz; the logic version has no such floor.

    Members
    -------
    value, bias : In(signed(acc_bits))
    stage : In(range(len(specs)))
        Selects the stage's constants; steady ``stage_setup`` cycles before its first value.
    valid : In(1)
    code : Out(signed(code_bits))
        The requantized code, ``latency`` cycles after the input.
    logit : Out(signed(acc_bits))
        ``value + bias`` delayed to line up with ``code``.
    out_valid : Out(1)
    """

    stage_setup = 1
    """Cycles ``stage`` must hold its value before the first value of that stage."""

    def __init__(self, acc_bits: int, code_bits: int, specs, multiplier: str = "lut"):
        self.product_stages = product_stages(multiplier)  # refuses an unknown multiplier
        self.multiplier = multiplier
        #: Cycles from an input to its code: the bias, the multiply, the round, the clamp.
        self.latency = self.product_stages + 3
        if not specs:
            raise ValueError("a requantizer needs at least one stage spec")
        self._acc_bits, self._code_bits, self._specs = acc_bits, code_bits, list(specs)
        for spec in self._specs:
            if spec.multiplier and not (-(1 << (code_bits - 1)) <= spec.lo
                                        and spec.hi < (1 << (code_bits - 1))):
                raise ValueError(f"requant range {spec.lo} .. {spec.hi} does not fit "
                                 f"{code_bits}-bit codes")
        super().__init__({
            "value": In(signed(acc_bits)), "bias": In(signed(acc_bits)),
            "stage": In(range(max(2, len(self._specs)))), "valid": In(1),
            "code": Out(signed(code_bits)), "logit": Out(signed(acc_bits)), "out_valid": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        acc_bits = self._acc_bits
        prod_bits = acc_bits + MULTIPLIER_BITS + 1
        biased = Signal(signed(acc_bits))
        valid1 = Signal()
        # The stage comes in through a registered copy of this lane's own (a replica: yosys
        # would otherwise merge every lane's stage register into one and share the logic that
        # decodes it across the chip), and the stage's multiplier is decoded from that copy
        # into a replica beside the multiply.
        pin = m.submodules[f"{REPLICA_PREFIX}_stage"] = Replica({"stage": self.stage.shape()})
        own = m.submodules[REPLICA_PREFIX] = Replica({"multiplier": unsigned(MULTIPLIER_BITS)})
        m.d.comb += pin.inp.stage.eq(self.stage)
        stage1, multiplier = pin.out.stage, own.out.multiplier
        with m.Switch(stage1):
            for i, spec in enumerate(self._specs):
                with m.Case(i):
                    addend = self.bias if spec.has_bias else 0
                    m.d.sync += biased.eq(self.value + addend)
                    m.d.comb += own.inp.multiplier.eq(spec.multiplier)
        m.d.sync += valid1.eq(self.valid)

        # Stages 2 to 5: the multiply, one adder level per stage. In logic ("lut"): pairs of
        # shifted partial products, then pairs of pairs, until one sum is left. With a
        # multiplier block ("dsp"), stage 2 alone: the block into a register that only the
        # rounding add and the clamp tests read. The stage's logit, stage number and valid
        # flag travel alongside.
        levels = [[Mux(multiplier[k], biased << k, 0) for k in range(MULTIPLIER_BITS)]]
        if self.multiplier == "dsp":
            levels = [[biased * multiplier]]
        logit, stage_n, valid_n = biased, stage1, valid1
        stages = [stage1]  # the stage number at each level
        for d in range(self.product_stages):
            terms = levels[-1]
            sums = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                    for i in range(0, len(terms), 2)] if d or self.multiplier == "lut" else terms
            regs = [Signal(signed(min(len(v), prod_bits)), name=f"product{d + 2}_{i}")
                    for i, v in enumerate(sums)]
            m.d.sync += [r.eq(v) for r, v in zip(regs, sums)]
            levels.append(regs)
            logit, stage_n, valid_n = (delayed(m, x, 1, f"{n}{d + 2}_") for x, n in
                                       ((logit, "logit"), (stage_n, "stage"), (valid_n, "valid")))
            stages.append(stage_n)
        assert len(levels[-1]) == 1, "the multiply must end in one sum"
        product = levels[-1][0]
        # The rounding and clamp constants of the stage, registered beside the product. The
        # clamp tests compare the product with constants:
        # floor((x + h) / 2**s) < lo  <=>  x < lo * 2**s - h.
        half, below, above = (Signal(signed(prod_bits + 1), name=n)
                              for n in ("half", "below", "above"))
        with m.Switch(stages[-2]):
            for i, spec in enumerate(self._specs):
                with m.Case(i):
                    h = 1 << (spec.shift - 1)
                    m.d.sync += [half.eq(h), below.eq((spec.lo << spec.shift) - h),
                                 above.eq(((spec.hi + 1) << spec.shift) - h)]

        # Stage 6 (3 with a block): the rounding add and the two clamp tests, side by side.
        total = Signal(signed(prod_bits + 1), name="total")
        under, over = Signal(), Signal()
        stage6 = Signal.like(self.stage, name="stage6")
        logit6 = Signal(signed(acc_bits))
        valid6 = Signal()
        # each test is the sign of one subtraction: the carry chain's last bit, no more logic
        m.d.sync += [total.eq(product + half), under.eq((product - below)[-1]),
                     over.eq(~(product - above)[-1]),
                     stage6.eq(stage_n), logit6.eq(logit), valid6.eq(valid_n)]

        # Stage 7 (4 with a block): the shift and the clamp.
        with m.Switch(stage6):
            for i, spec in enumerate(self._specs):
                with m.Case(i):
                    if not spec.multiplier:
                        m.d.sync += self.code.eq(0)
                        continue
                    m.d.sync += self.code.eq(Mux(under, spec.lo, Mux(over, spec.hi,
                                                                    total >> spec.shift)))
        m.d.sync += [self.logit.eq(logit6), self.out_valid.eq(valid6)]
        return m
