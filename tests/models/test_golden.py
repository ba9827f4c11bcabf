import pytest
import torch

from edge3u.models.golden import (IntLayer, IntNetwork, Requant, int_forward, int_layer_forward,
                                  int_predict, requant_from_scale)
from edge3u.models.tt import tt_to_dense

WIDE = (-(1 << 40), 1 << 40)


def identity():
    return Requant(1 << 14, 14, *WIDE)


def codes(shape, lo=-3, hi=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(lo, hi + 1, shape, generator=g, dtype=torch.int64)


def two_core_layer(rq, order=(1, 0), bias=None, out=None):
    c0, c1 = codes((1, 4, 3, 2), seed=1), codes((2, 5, 2, 1), seed=2)
    bias = torch.zeros(6, dtype=torch.int64) if bias is None else bias
    return IntLayer("fc", [c0, c1], order, [rq], bias, out, in_max=15)


def test_requant_known_answers():
    half = Requant(1 << 14, 15, -8, 7)  # x * 0.5, round half up, saturate to 4-bit signed
    x = torch.tensor([5, -5, 3, -3, 100, -100, 0])
    assert half.apply(x).tolist() == [3, -2, 2, -1, 7, -8, 0]
    relu = Requant(1 << 14, 15, 0, 15)
    assert relu.apply(torch.tensor([-9, 9, 40])).tolist() == [0, 5, 15]


@pytest.mark.parametrize("scale", [0.3, 1e-4, 0.999, 1.0, 3.7, 1 / 1024])
def test_requant_from_scale_is_accurate(scale):
    rq = requant_from_scale(scale, -128, 127)
    assert (1 << 14) <= rq.multiplier < (1 << 15)
    assert abs(rq.scale - scale) <= scale * 2 ** -15


def test_requant_rejects_bad_values():
    with pytest.raises(ValueError, match="multiplier must be in 1 .. 2\\*\\*15 - 1, not 40000"):
        Requant(40000, 3, 0, 1)
    with pytest.raises(ValueError, match="positive finite number, not -1.0"):
        requant_from_scale(-1.0, 0, 1)


@pytest.mark.parametrize("order", [(1, 0), (0, 1)])
def test_exact_without_requant_equals_the_dense_integer_product(order):
    layer = two_core_layer(identity(), order)
    x = codes((7, 20), 0, 15, seed=3)
    dense = tt_to_dense(layer.cores)
    assert torch.equal(int_layer_forward(x, layer), x @ dense.T)


def test_right_to_left_with_requant_matches_a_literal_reference():
    rq = Requant(21000, 19, -8, 7)  # about 0.04, into 4-bit signed
    bias = codes((6,), -50, 50, seed=4)
    layer = two_core_layer(rq, (1, 0), bias=bias, out=Requant(1 << 14, 16, 0, 15))
    x = codes((5, 20), 0, 15, seed=5)
    c0, c1 = layer.cores
    # stage 0 (core 1): contract n1 of x with core 1 -> (b, n0, r1, m1)
    h = torch.einsum("bij,rjm->birm", x.reshape(5, 4, 5), c1[:, :, :, 0])
    h = torch.clamp((h * 21000 + (1 << 18)) >> 19, -8, 7)
    # stage 1 (core 0): contract n0 and r1 -> (b, m0, m1)
    acc = torch.einsum("birm,ikr->bkm", h, c0[0]).reshape(5, 6) + bias
    expected = torch.clamp((acc * (1 << 14) + (1 << 15)) >> 16, 0, 15)
    out, stages = int_layer_forward(x, layer, return_stages=True)
    assert torch.equal(out, expected)
    assert torch.equal(stages[-1], acc)
    assert torch.equal(torch.sort(stages[0].flatten())[0], torch.sort(h.flatten())[0])


def test_accumulator_width_is_the_worst_case():
    layer = two_core_layer(identity(), (1, 0))
    bits = layer.accumulator_bits()
    # stage 0: inner n1 = 5, |x| <= 15, |c1| <= 3 -> 225 -> 9 bits signed
    assert bits[0] == (5 * 15 * int(layer.cores[1].abs().max())).bit_length() + 1
    narrow = IntLayer("fc", layer.cores, (1, 0), [identity()], layer.bias, None, in_max=1)
    with pytest.raises(OverflowError, match="stage 0: accumulator exceeds its"):
        int_layer_forward(torch.full((1, 20), 15, dtype=torch.int64), narrow)


def test_network_predicts_the_argmax_lowest_index_on_ties():
    c0 = torch.zeros((1, 2, 2, 1), dtype=torch.int64)
    c1 = torch.zeros((1, 2, 5, 1), dtype=torch.int64)
    bias = torch.tensor([3, 9, 9, 1, 0, 0, 0, 0, 0, 9], dtype=torch.int64)
    net = IntNetwork([IntLayer("fc", [c0, c1], (1, 0), [identity()], bias, None, in_max=255)])
    assert int_predict(torch.zeros(2, 4, dtype=torch.uint8), net).tolist() == [1, 1]
    with pytest.raises(ValueError, match="8-bit unsigned"):
        int_forward(torch.full((1, 4), 300), net)


def test_layer_validation_names_the_problem():
    c = [codes((1, 4, 3, 2)), codes((2, 5, 2, 1))]
    with pytest.raises(ValueError, match="2 stages need 1 stage requantizers, not 0"):
        IntLayer("fc", c, (1, 0), [], torch.zeros(6, dtype=torch.int64), None, 1)
    with pytest.raises(ValueError, match="bias shape \\(5,\\) is not \\(6,\\)"):
        IntLayer("fc", c, (1, 0), [identity()], torch.zeros(5, dtype=torch.int64), None, 1)
