"""ECP5 PLL dividers against the answers of Project Trellis' ``ecppll`` (run on these inputs)."""

import pytest

from edge3u.rtl.pll import ecp5_pll_params


@pytest.mark.parametrize("in_mhz, out_mhz, dividers", [
    (25, 150, (1, 6, 4)), (25, 100, (1, 4, 6)), (12, 48, (1, 4, 12)), (100, 175, (4, 7, 3)),
])
def test_dividers_equal_ecppll(in_mhz, out_mhz, dividers):
    p = ecp5_pll_params(in_mhz, out_mhz)
    assert (p.input_div, p.feedback_div, p.output_div) == dividers
    assert p.out_mhz == pytest.approx(out_mhz)
    assert 400 <= p.vco_mhz <= 800


def test_an_unreachable_frequency_is_refused():
    with pytest.raises(ValueError, match="cannot make 1000 MHz from 25 MHz"):
        ecp5_pll_params(25, 1000)
