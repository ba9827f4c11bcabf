import math

import pytest
import torch
from torch import nn

from edge3u.train.quantizers import (MIN_LEARNED_SCALE, UL2Q_STEP, WEIGHT_FORMATS,
                                     LSQActivation, LSQWeight, MaxObserverActivation,
                                     MinMaxWeight, UL2QWeight, WeightFormat, gaussian_mse,
                                     gaussian_optimal_step, keep_scales_positive,
                                     make_activation_quantizer, make_weight_quantizer,
                                     ul2q_scale)

TERNARY = WeightFormat("ternary")


@pytest.fixture(autouse=True)
def one_thread():
    # the tensors here are tiny: a second thread only adds pool overhead (10x on a busy machine)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def weight_quantizers(fmt, w):
    return [UL2QWeight(fmt), MinMaxWeight(fmt), LSQWeight(fmt, w)]


# -- code sets ------------------------------------------------------------------------------------

def test_code_sets_and_storage():
    assert WeightFormat(1).codes == (-1, 1)
    assert WeightFormat(2).codes == (-3, -1, 1, 3)
    assert WeightFormat(3).codes == (-7, -5, -3, -1, 1, 3, 5, 7)
    assert WeightFormat(4).codes == tuple(range(-15, 16, 2))
    assert TERNARY.codes == (-1, 0, 1)
    assert [f.code_max for f in WEIGHT_FORMATS] == [1, 3, 7, 15, 1]
    assert [f.storage_bits for f in WEIGHT_FORMATS] == [1, 2, 3, 4, 2]


def test_rom_words():
    assert WeightFormat(2).to_index(torch.tensor([-3, -1, 1, 3])).tolist() == [0, 1, 2, 3]
    assert WeightFormat(1).to_index(torch.tensor([-1, 1])).tolist() == [0, 1]
    assert TERNARY.to_index(torch.tensor([-1, 0, 1])).tolist() == [0b11, 0b00, 0b01]
    for fmt in WEIGHT_FORMATS:
        codes = torch.tensor(fmt.codes)
        words = fmt.to_index(codes)
        assert words.dtype == torch.int32
        assert int(words.min()) >= 0 and int(words.max()) < 2 ** fmt.storage_bits
        assert torch.equal(fmt.from_index(words), codes.to(torch.int32))
        if not fmt.ternary:  # every word of a mid-rise ROM is a level
            assert torch.equal(fmt.to_index(fmt.from_index(torch.arange(2 ** fmt.bits))),
                               torch.arange(2 ** fmt.bits, dtype=torch.int32))


def test_rom_words_reject_what_is_not_a_code():
    with pytest.raises(ValueError, match="codes outside"):
        WeightFormat(2).to_index(torch.tensor([0]))
    with pytest.raises(ValueError, match="not ROM words"):
        TERNARY.from_index(torch.tensor([2]))
    with pytest.raises(TypeError, match="integer tensor"):
        WeightFormat(2).to_index(torch.tensor([1.0]))


@pytest.mark.parametrize("bad", [0, 5, 8, True, "2", "binary", 2.0, None])
def test_bad_formats_are_rejected_with_the_value(bad):
    with pytest.raises(ValueError, match=r"weight bits must be 1, 2, 3, 4 or 'ternary', not "
                                         + repr(bad)):
        WeightFormat(bad)


def test_round_codes():
    x = torch.tensor([-9.0, -2.5, -0.1, 0.0, 0.4, 1.9, 2.0, 5.9, 6.1, 40.0])
    assert WeightFormat(3).round_codes(x).tolist() == [-7, -3, -1, 1, 1, 1, 3, 5, 7, 7]
    assert WeightFormat(1).round_codes(x).tolist() == [-1, -1, -1, 1, 1, 1, 1, 1, 1, 1]
    assert TERNARY.round_codes(x).tolist() == [-1, -1, 0, 0, 0, 1, 1, 1, 1, 1]


# -- the L2-optimal step table --------------------------------------------------------------------

# Max (1960) / Hui & Neuhoff: optimal uniform quantizers for N(0, 1)
LITERATURE_STEP = {WeightFormat(1): 1.5958, WeightFormat(2): 0.9957, WeightFormat(3): 0.5860,
                   WeightFormat(4): 0.3352, TERNARY: 1.2240}


@pytest.mark.parametrize("fmt", WEIGHT_FORMATS, ids=str)
def test_step_table_matches_the_literature(fmt):
    assert UL2Q_STEP[fmt] == pytest.approx(LITERATURE_STEP[fmt], abs=5e-4)
    assert gaussian_optimal_step(fmt) == UL2Q_STEP[fmt]
    best = gaussian_mse(fmt, UL2Q_STEP[fmt])
    assert best < gaussian_mse(fmt, 0.95 * UL2Q_STEP[fmt])
    assert best < gaussian_mse(fmt, 1.05 * UL2Q_STEP[fmt])


def test_two_level_optimum_is_the_half_normal_mean():
    assert ul2q_scale(WeightFormat(1)) == pytest.approx(math.sqrt(2 / math.pi), abs=1e-7)
    # levels ±c: MSE = 1 - 2c E|X| + c² = 1 - 2/π at the optimum
    optimum = gaussian_mse(WeightFormat(1), 2 * math.sqrt(2 / math.pi))
    assert optimum == pytest.approx(1 - 2 / math.pi)
    # a step so small the quantizer saturates almost everywhere: MSE -> E[X²] = 1
    assert gaussian_mse(TERNARY, 1e-9) == pytest.approx(1.0)


# -- weight quantizers ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fmt", WEIGHT_FORMATS, ids=str)
def test_codes_times_scale_is_forward_exactly(fmt, dtype):
    w = torch.randn(6, 7, 5, generator=torch.Generator().manual_seed(1), dtype=dtype) * 0.03
    for quantizer in weight_quantizers(fmt, w):
        codes, scale = quantizer.to_int(w)
        assert codes.dtype == torch.int32 and isinstance(scale, float)
        value = quantizer(w)
        assert value.dtype == dtype
        assert torch.equal(codes.to(dtype) * scale, value)
        if dtype == torch.float32:
            assert torch.equal(codes * scale, value)
        assert set(codes.unique().tolist()) <= set(fmt.codes)
        assert torch.equal(fmt.from_index(fmt.to_index(codes)), codes)


def test_scales():
    w = torch.tensor([0.3, -0.6, 0.1, 0.2])
    rms = math.sqrt((0.09 + 0.36 + 0.01 + 0.04) / 4)
    assert UL2QWeight(2).to_int(w)[1] == pytest.approx(UL2Q_STEP[WeightFormat(2)] / 2 * rms)
    assert UL2QWeight("ternary").to_int(w)[1] == pytest.approx(UL2Q_STEP[TERNARY] * rms)
    assert MinMaxWeight(2).to_int(w)[1] == pytest.approx(0.2)
    assert MinMaxWeight(2).to_int(w)[0].tolist() == [1, -3, 1, 1]
    codes, scale = MinMaxWeight("ternary").to_int(w)
    assert codes.tolist() == [1, -1, 0, 0] and scale == pytest.approx(0.6)  # 0.5 rounds half up
    # LSQ init: step = 2 mean|w| / sqrt(positive levels), scale = step / code step
    assert LSQWeight(1, w).scale == pytest.approx(0.3)  # mean|w|: the L1-optimal binary scale
    assert LSQWeight(3, w).scale == pytest.approx(0.3 / 2)
    assert LSQWeight("ternary", w).scale == pytest.approx(0.6)


def test_all_zero_weights_do_not_divide_by_zero():
    for quantizer in [UL2QWeight(2), MinMaxWeight(2)]:
        value = quantizer(torch.zeros(3))
        assert torch.isfinite(value).all() and float(value.abs().max()) < 1e-30


def test_ul2q_beats_min_max_and_reaches_the_analytic_optimum():
    sigma = 0.05
    gen = torch.Generator().manual_seed(0)
    w = sigma * torch.randn(200_000, generator=gen, dtype=torch.float64)
    for fmt in WEIGHT_FORMATS:
        ul2q = float((UL2QWeight(fmt)(w) - w).square().mean()) / sigma ** 2
        assert ul2q == pytest.approx(gaussian_mse(fmt, UL2Q_STEP[fmt]), rel=0.02)
        min_max = float((MinMaxWeight(fmt)(w) - w).square().mean()) / sigma ** 2
        assert ul2q < min_max
    two_bit = WeightFormat(2)
    assert float((MinMaxWeight(two_bit)(w) - w).square().mean()) > \
        2 * float((UL2QWeight(two_bit)(w) - w).square().mean())


@pytest.mark.parametrize("fmt", WEIGHT_FORMATS, ids=str)
def test_straight_through_inside_the_range_zero_outside(fmt):
    w = torch.cat([torch.linspace(-1, 1, 39, dtype=torch.float64), torch.tensor([-8.0, 8.0])])
    upstream = torch.arange(41, dtype=torch.float64)
    for quantizer in [UL2QWeight(fmt), MinMaxWeight(fmt)]:
        w_ = w.clone().requires_grad_()
        (quantizer(w_) * upstream).sum().backward()
        _, scale = quantizer.to_int(w)
        inside = (w / scale).abs() <= fmt.code_max
        assert torch.equal(w_.grad, torch.where(inside, upstream, 0.0))
        if isinstance(quantizer, UL2QWeight):
            assert not inside[-1] and inside[:39].all()  # the outliers saturate


def lsq_reference(x, scale, g, round_codes, code_min, code_max):
    """LSQ as composed of autograd primitives (Esser et al.'s reference code)."""
    scale = (scale - scale * g).detach() + scale * g
    scaled = torch.clamp(x / scale, code_min, code_max)
    return ((round_codes(scaled) - scaled).detach() + scaled) * scale


def test_lsq_scale_gradient_by_hand():
    fmt = WeightFormat(2)
    w = torch.tensor([0.25, -0.1, 0.9, -2.0], requires_grad=True)
    quantizer = LSQWeight(fmt, w)
    with torch.no_grad():
        quantizer.learned_scale.fill_(0.2)
    upstream = torch.tensor([1.0, 2.0, 3.0, 4.0])
    (quantizer(w) * upstream).sum().backward()
    # w / s = 1.25, -0.5, 4.5, -10 -> codes 1, -1, 3, -3; the last two saturate
    d_value = [1 - 1.25, -1 + 0.5, 3, -3]
    g = 1 / math.sqrt(4 * 3)
    expected = g * sum(u * d for u, d in zip(upstream.tolist(), d_value))
    assert float(quantizer.learned_scale.grad) == pytest.approx(expected, rel=1e-6)
    assert w.grad.tolist() == [1.0, 2.0, 0.0, 0.0]


@pytest.mark.parametrize("fmt", WEIGHT_FORMATS, ids=str)
def test_lsq_weight_matches_the_reference(fmt):
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(5, 8, generator=gen, dtype=torch.float64)
    upstream = torch.randn(5, 8, generator=gen, dtype=torch.float64)
    quantizer = LSQWeight(fmt, w).double()
    w_ = w.clone().requires_grad_()
    (quantizer(w_) * upstream).sum().backward()
    scale = quantizer.learned_scale.detach().clone().requires_grad_()
    w_ref = w.clone().requires_grad_()
    g = 1 / math.sqrt(w.numel() * fmt.code_max)
    ref = lsq_reference(w_ref, scale, g, fmt.round_codes, -fmt.code_max, fmt.code_max)
    (ref * upstream).sum().backward()
    assert torch.allclose(quantizer(w), ref)
    assert float(quantizer.learned_scale.grad) == pytest.approx(float(scale.grad), rel=1e-9)
    assert torch.allclose(w_.grad, w_ref.grad)


def test_lsq_saturated_scale_gradient_is_the_finite_difference():
    # every element saturates, so the rounding is constant and the value is ±code_max * s
    fmt = WeightFormat(3)
    w = torch.tensor([5.0, -4.0, 9.0], dtype=torch.float64)
    quantizer = LSQWeight(fmt, w).double()
    with torch.no_grad():
        quantizer.learned_scale.fill_(0.3)
    quantizer(w).sum().backward()

    def loss(s):
        with torch.no_grad():
            quantizer.learned_scale.fill_(s)
            return float(quantizer(w).sum())

    finite_difference = (loss(0.3 + 1e-6) - loss(0.3 - 1e-6)) / 2e-6
    g = 1 / math.sqrt(3 * 7)
    assert float(quantizer.learned_scale.grad) == pytest.approx(g * finite_difference, rel=1e-6)


# -- activation quantizers ------------------------------------------------------------------------

def test_activation_code_ranges_and_bad_bits():
    assert (MaxObserverActivation(4, False).code_min, MaxObserverActivation(4, False).code_max) \
        == (0, 15)
    assert (LSQActivation(4, True).code_min, LSQActivation(4, True).code_max) == (-8, 7)
    with pytest.raises(ValueError, match="activation bits must be an integer from 2 to 8, not 9"):
        MaxObserverActivation(9, False)
    with pytest.raises(ValueError, match="momentum must be a number in \\[0, 1\\), not 1.5"):
        MaxObserverActivation(4, False, momentum=1.5)
    with pytest.raises(RuntimeError, match="pass it a batch first"):
        LSQActivation(4, False).to_int(torch.ones(2))


def test_max_observer_running_max_and_eval_freeze():
    observer = MaxObserverActivation(4, signed=True, momentum=0.5)
    observer(torch.tensor([[1.0, -7.0]]))
    assert bool(observer.calibrated) and float(observer.running_max) == 7.0
    assert observer.scale == pytest.approx(1.0)
    observer(torch.tensor([[3.0, 0.5]]))
    assert float(observer.running_max) == 5.0
    observer.eval()
    observer(torch.tensor([[100.0]]))
    assert float(observer.running_max) == 5.0 and observer.scale == pytest.approx(5 / 7)
    fresh = MaxObserverActivation(4, signed=True).eval()
    fresh(torch.tensor([[2.0]]))  # the first batch calibrates even in eval mode
    assert float(fresh.running_max) == 2.0


def test_unsigned_activations_clamp_negatives_to_zero():
    for quantizer in [MaxObserverActivation(3, False), LSQActivation(3, False)]:
        x = torch.tensor([[-1.0, 0.0, 0.5, 2.0, 7.0]], requires_grad=True)
        y = quantizer(x)
        codes, scale = quantizer.to_int(x)
        assert codes[0, 0] == 0 and float(y[0, 0].detach()) == 0.0
        assert int(codes.min()) >= 0 and int(codes.max()) <= 7
        y.sum().backward()
        assert float(x.grad[0, 0]) == 0.0  # below the range: no gradient
    observer = MaxObserverActivation(3, False)
    observer(torch.tensor([-14.0, 7.0]))
    assert observer.scale == pytest.approx(1.0)  # the negative tail does not widen the scale


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("cls", [MaxObserverActivation, LSQActivation])
def test_activation_codes_times_scale_is_forward_exactly(cls, signed):
    gen = torch.Generator().manual_seed(3)
    quantizer = cls(4, signed)
    for _ in range(3):
        x = torch.randn(16, 12, generator=gen) * 2
        value = quantizer(x)
        codes, scale = quantizer.to_int(x)
        assert torch.equal(codes * scale, value)
        assert int(codes.min()) >= quantizer.code_min and int(codes.max()) <= quantizer.code_max
        assert scale == quantizer.scale


def test_lsq_activation_init_and_gradient():
    quantizer = LSQActivation(3, signed=True)
    x = torch.tensor([[0.5, -1.0, 2.0, 0.1, 0.2, -0.3, 0.4, -60.0]], dtype=torch.float64,
                     requires_grad=True)
    y = quantizer(x)
    assert quantizer.scale == pytest.approx(2 * (64.5 / 8) / math.sqrt(3))  # 2 mean|x| / sqrt(Q_P)
    upstream = torch.tensor([[1.0, -2.0, 0.5, 3.0, 1.0, 1.0, 1.0, 3.0]], dtype=torch.float64)
    (y * upstream).sum().backward()
    scale = quantizer.learned_scale.detach().double().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    ref = lsq_reference(x_ref, scale, 1 / math.sqrt(8 * 3),  # 8 features a sample, Q_P = 3
                        lambda t: torch.clamp(torch.round(t), -4, 3), -4, 3)
    (ref * upstream).sum().backward()
    assert torch.allclose(y, ref)
    assert float(quantizer.learned_scale.grad) == pytest.approx(float(scale.grad), rel=1e-6)
    assert torch.allclose(x.grad, x_ref.grad)
    assert x.grad[0, -1] == 0.0 and x.grad[0, 0] == 1.0


def test_a_step_through_zero_is_projected_back_and_can_grow_again():
    net = nn.ModuleList([LSQActivation(4, signed=False), LSQWeight(2, torch.ones(8)),
                         MaxObserverActivation(4, signed=False)])
    x = torch.linspace(0, 3, 16).reshape(2, 8)
    net[0](x), net[2](x)
    before = net[2].scale
    optimizer = torch.optim.SGD(net.parameters(), lr=1.0)
    for quantizer in net[:2]:
        quantizer.learned_scale.grad = quantizer.learned_scale.detach() + 1.0  # overshoots zero
    optimizer.step()
    assert all(float(q.learned_scale.detach()) < 0 for q in net[:2])
    keep_scales_positive(net)
    assert [q.scale for q in net[:2]] == [pytest.approx(MIN_LEARNED_SCALE)] * 2
    assert net[2].scale == before  # observers have no learned scale
    # saturated at the floor, the LSQ gradient on the scale points back up
    optimizer.zero_grad()
    (net[0](x) - x).square().sum().backward()
    assert float(net[0].learned_scale.grad) < 0
    keep_scales_positive(net)  # the floor itself is left as it is
    assert net[0].scale == pytest.approx(MIN_LEARNED_SCALE)


# -- factories ------------------------------------------------------------------------------------

def test_factories():
    w = torch.randn(4, 4)
    assert isinstance(make_weight_quantizer("ul2q", WeightFormat(2)), UL2QWeight)
    assert isinstance(make_weight_quantizer("uniform", 3), MinMaxWeight)
    assert isinstance(make_weight_quantizer("lsq", "ternary", w), LSQWeight)
    assert isinstance(make_activation_quantizer("ul2q", 4, False), MaxObserverActivation)
    assert isinstance(make_activation_quantizer("uniform", 4, True), MaxObserverActivation)
    assert isinstance(make_activation_quantizer("lsq", 4, False), LSQActivation)
    message = "method must be one of 'ul2q', 'uniform', 'lsq', not 'pact'"
    with pytest.raises(ValueError, match=message):
        make_weight_quantizer("pact", 2, w)
    with pytest.raises(ValueError, match=message):
        make_activation_quantizer("pact", 4, False)
    with pytest.raises(ValueError, match="needs init"):
        make_weight_quantizer("lsq", 2)


# -- a tiny QAT run -------------------------------------------------------------------------------

class QuantLinear(nn.Linear):
    def __init__(self, n_in, n_out):
        super().__init__(n_in, n_out)
        self.weight_quantizer = UL2QWeight(2)

    def forward(self, x):
        return nn.functional.linear(x, self.weight_quantizer(self.weight), self.bias)


def test_tiny_qat_run_trains():
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    y = (x @ torch.randn(8) > 0).long()
    model = nn.Sequential(QuantLinear(8, 16), nn.ReLU(), LSQActivation(4, signed=False),
                          QuantLinear(16, 2))
    losses = []
    # plain gradient descent: the first torch.optim optimizer imports torch._dynamo (seconds)
    for _ in range(100):
        loss = nn.functional.cross_entropy(model(x), y)
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for parameter in model.parameters():
                parameter -= 0.5 * parameter.grad
        losses.append(float(loss.detach()))
    assert model[2].learned_scale.grad is not None
    assert sum(losses[-5:]) / 5 < 0.3 * losses[0]
    accuracy = float((model(x).argmax(1) == y).float().mean())
    assert accuracy > 0.9
