"""The ECP5 PLL (``EHXPLLL``): divider search and the primitive, for a board clock above the
oscillator's."""


from dataclasses import dataclass

from amaranth import Module, Signal
from amaranth.hdl import Instance
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PllParams", "ecp5_pll_params", "ECP5PLL"]

# ECP5 family data sheet limits (the ones Project Trellis' ecppll uses).
PFD_MHZ = (3.125, 400.0)
VCO_MHZ = (400.0, 800.0)
INPUT_DIV_MAX, FEEDBACK_DIV_MAX, OUTPUT_DIV_MAX = 128, 80, 128


@dataclass(frozen=True)
class PllParams:
    input_div: int
    feedback_div: int
    output_div: int
    in_mhz: float

    @property
    def vco_mhz(self) -> float:
        return self.in_mhz / self.input_div * self.feedback_div * self.output_div

    @property
    def out_mhz(self) -> float:
        return self.in_mhz / self.input_div * self.feedback_div


def ecp5_pll_params(in_mhz: float, out_mhz: float, *, tolerance: float = 0.005) -> PllParams:
    """Dividers giving ``out_mhz`` from ``in_mhz`` on the primary output (feedback from it):
    the closest frequency, then the VCO closest to 600 MHz (as Trellis' ``ecppll`` picks); a ValueError if none is within ``tolerance`` (relative)."""
    best, best_error = None, float("inf")
    for input_div in range(1, INPUT_DIV_MAX + 1):
        pfd = in_mhz / input_div
        if not PFD_MHZ[0] <= pfd <= PFD_MHZ[1]:
            continue
        for feedback_div in range(1, FEEDBACK_DIV_MAX + 1):
            for output_div in range(1, OUTPUT_DIV_MAX + 1):
                vco = pfd * feedback_div * output_div
                if not VCO_MHZ[0] <= vco <= VCO_MHZ[1]:
                    continue
                error = abs(pfd * feedback_div - out_mhz)
                if error < best_error or (error == best_error
                                          and abs(vco - 600) < abs(best.vco_mhz - 600)):
                    best, best_error = PllParams(input_div, feedback_div, output_div,
                                                 in_mhz), error
    if best is None or best_error > tolerance * out_mhz:
        near = f" (nearest {best.out_mhz:.3f} MHz)" if best else ""
        raise ValueError(f"the ECP5 PLL cannot make {out_mhz} MHz from {in_mhz} MHz{near}")
    return best


class ECP5PLL(wiring.Component):
    """``EHXPLLL`` with feedback from its primary output, phase 0.

    Members
    -------
    clk_in : In(1)
    clk_out : Out(1)
    locked : Out(1)
    """

    clk_in: In(1)
    clk_out: Out(1)
    locked: Out(1)

    def __init__(self, params: PllParams):
        self.params = params
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        p = self.params
        clkop = Signal()
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{p.in_mhz:g}", a_FREQUENCY_PIN_CLKOP=f"{p.out_mhz:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=p.input_div, p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p.output_div,
            p_CLKOP_CPHASE=p.output_div // 2, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
            p_CLKFB_DIV=p.feedback_div,
            i_RST=0, i_STDBY=0, i_CLKI=self.clk_in, o_CLKOP=clkop, i_CLKFB=clkop,
            i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
            i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=self.locked)
        m.d.comb += self.clk_out.eq(clkop)
        return m
