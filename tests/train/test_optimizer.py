import torch

from edge3u.train.lowprec import FixedPoint, significant_bits
from edge3u.train.optimizer import LowPrecisionSGD

FMT = FixedPoint(8, 6)


def param(values):
    return torch.nn.Parameter(torch.tensor(values))


def test_parameters_start_on_the_grid():
    p = param([0.1, -0.3, 5.0])
    LowPrecisionSGD([([p], FMT)], lr=0.1)
    assert p.detach().tolist() == [6 / 64, -19 / 64, 127 / 64]


def test_accumulators_hold_grad_bits():
    p = param([0.0, 0.0, 0.0])
    opt = LowPrecisionSGD([([p], FMT)], lr=0.1, grad_bits=8)
    for g in ([1.0, 0.001, -0.3], [0.5, 0.002, 0.1]):
        p.grad = torch.tensor(g)
        opt.accumulate()
        assert p.grad is None
    acc = opt.accumulators[id(p)]
    assert significant_bits(acc) <= 7  # 8-bit block floating point: sign + 7 bits
    assert torch.allclose(acc, torch.tensor([1.5, 0.003, -0.2]), atol=1.5 / 127)
    assert opt.state_bytes() == (3, 0)


def test_plain_sgd_step_with_clipping():
    p = param([1.0, 1.0])
    opt = LowPrecisionSGD([([p], FixedPoint(16, 12))], lr=0.5, grad_clip=1.0, normalize=False)
    p.grad = torch.tensor([3.0, 4.0])  # norm 5 -> clipped to 1
    opt.accumulate()
    assert opt.step(None) == 5.0
    assert torch.allclose(p.detach(), torch.tensor([1 - 0.5 * 0.6, 1 - 0.5 * 0.8]), atol=1e-3)


def test_normalized_step_moves_every_tensor_by_lr():
    small, large = param([0.5, 0.5]), param([0.5, 0.5])
    opt = LowPrecisionSGD([([small, large], FixedPoint(16, 12))], lr=0.25, grad_clip=1e9)
    small.grad, large.grad = torch.tensor([1e-4, -1e-4]), torch.tensor([300.0, -300.0])
    opt.accumulate()
    opt.step(None)
    assert torch.allclose(small.detach(), torch.tensor([0.25, 0.75]), atol=1e-3)
    assert torch.allclose(large.detach(), small.detach())


def test_prior_shrink_is_proximal_and_never_crosses_zero():
    p = param([1.0, -1.0])
    opt = LowPrecisionSGD([([p], FixedPoint(16, 12))], lr=0.1, normalize=False)
    p.grad = torch.zeros(2)
    opt.accumulate()
    opt.step(None, shrink={id(p): torch.tensor([1.0, 1e6])})  # w / lam per element
    # p / (1 + lr * w / lam): a gentle pull, and a huge one that lands at zero, not beyond
    assert torch.allclose(p.detach(), torch.tensor([1 / 1.1, 0.0]), atol=1e-3)


def test_stochastic_update_is_unbiased():
    p = torch.nn.Parameter(torch.zeros(100_000))
    opt = LowPrecisionSGD([([p], FMT)], lr=1.0, normalize=False, grad_clip=1e9)
    p.grad = torch.full((100_000,), -0.25 / 64)  # a quarter of a step
    opt.accumulate()
    opt.step(torch.Generator().manual_seed(0))
    assert abs(float(p.detach().mean()) - 0.25 / 64) < 0.01 / 64
