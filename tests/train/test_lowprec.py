import pytest
import torch

from edge3u.train.lowprec import (FixedPoint, bfp_quantize, bfp_round, fake_quant,
                                  round_nearest, round_stochastic, significant_bits)

Q16 = FixedPoint(8, 6)


def test_fixed_point_range():
    assert (Q16.code_min, Q16.code_max, Q16.step) == (-128, 127, 1 / 64)
    assert (Q16.min, Q16.max) == (-2.0, 127 / 64)
    assert FixedPoint(8, 8, signed=False).max == 255 / 256
    with pytest.raises(ValueError, match="bits must be an integer from 1 to 32, not 0"):
        FixedPoint(0, 0)


def test_round_nearest_saturates_and_lands_on_the_grid():
    x = torch.tensor([0.004, 0.012, -0.0225, 5.0, -5.0])
    q = round_nearest(x, Q16)
    assert q.tolist() == [0.0, 1 / 64, -1 / 64, 127 / 64, -2.0]
    assert Q16.to_codes(q).tolist() == [0, 1, -1, 127, -128]


def test_stochastic_rounding_is_unbiased():
    g = torch.Generator().manual_seed(0)
    x = torch.full((200_000,), 0.3 / 64)  # 0.3 of a step
    q = round_stochastic(x, Q16, g)
    assert set(torch.unique(q).tolist()) == {0.0, 1 / 64}
    assert abs(float(q.mean()) - 0.3 / 64) < 0.01 / 64


def test_fake_quant_passes_the_gradient_straight_through():
    x = torch.tensor([0.1, -0.37, 1.0], requires_grad=True)
    y = fake_quant(x, Q16)
    assert torch.equal(y.detach(), round_nearest(x.detach(), Q16))
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert x.grad.tolist() == [1.0, 2.0, 3.0]


def test_block_floating_point_per_sample():
    x = torch.tensor([[1000.0, 0.002], [-0.5, 0.001]])  # column = sample
    per_column = bfp_round(x, 8, dim=1)
    # each column's largest magnitude keeps 7 significant bits of mantissa
    assert significant_bits(per_column) <= 7
    assert abs(float(per_column[1, 1]) - 0.001) < 1e-5  # a small sample keeps its resolution
    whole = bfp_round(x, 8)
    assert float(whole[1, 1]) == 0.0  # one exponent for the tensor flushes it
    y = torch.tensor([[0.0, 0.0]])
    assert torch.equal(bfp_round(y, 8, dim=1), y)


def test_bfp_quantize_is_straight_through():
    x = torch.randn(5, 3, requires_grad=True)
    bfp_quantize(x, 4, dim=1).sum().backward()
    assert torch.equal(x.grad, torch.ones(5, 3))


def test_significant_bits():
    assert significant_bits(torch.tensor([0.5, 0.75, 3.0])) == 2
    assert significant_bits(torch.tensor([255 / 256])) == 8
    assert significant_bits(torch.randn(100)) > 16
    assert significant_bits(torch.tensor([1, 2])) == 64
