import math

import torch

from edge3u.train.tt_linear import TTLinear


def layer(ranks=(1, 3, 4, 1), seed=0):
    return TTLinear((2, 3, 4), (3, 2, 2), ranks, generator=torch.Generator().manual_seed(seed))


def test_forward_is_the_dense_layer():
    tt = layer()
    x = torch.randn(5, 24)
    dense = torch.nn.functional.linear(x, tt.dense_weight(), tt.bias)
    assert torch.allclose(tt(x), dense, atol=1e-5)
    assert tt.dense_weight().shape == (12, 24)


def test_float_and_low_precision_paths_have_the_dense_gradients():
    """Without a hook the layer contracts in the fastest order, with one in ``layer.order``;
    both give the gradients of the dense layer (the hook here is the identity)."""
    for between in (None, lambda h: h):
        tt = layer()
        tt.between = between
        x = torch.randn(5, 24)
        v = torch.randn(5, 12)
        (tt(x) * v).sum().backward()
        params = [*tt.cores, tt.bias]
        got = [p.grad.clone() for p in params]
        for p in params:
            p.grad = None
        (torch.nn.functional.linear(x, tt.dense_weight(), tt.bias) * v).sum().backward()
        for g, p in zip(got, params):
            assert torch.allclose(g, p.grad, atol=1e-5)


def test_initial_weight_scale():
    tt = TTLinear((4, 7, 4, 7), (4, 4, 8, 4), (1, 8, 8, 8, 1),
                  generator=torch.Generator().manual_seed(0))
    std = float(tt.dense_weight().detach().std())
    assert abs(std - math.sqrt(2 / 784)) / math.sqrt(2 / 784) < 0.25


def test_prune_shrinks_cores_and_keeps_the_function():
    tt = layer()
    with torch.no_grad():
        tt.cores[0][..., 2] = 0  # bond 1, slice 2 unused
        tt.cores[1][..., 0] = 0  # bond 2, slice 0 unused
        tt.cores[2][0] = 0
    x = torch.randn(7, 24)
    before, params = tt(x), sum(p.numel() for p in tt.parameters())
    tt.prune([torch.tensor([0, 1]), torch.tensor([1, 2, 3])])
    assert tt.ranks == (1, 2, 3, 1)
    assert sum(p.numel() for p in tt.parameters()) < params
    assert torch.allclose(tt(x), before, atol=1e-6)


def test_training_order_keeps_the_least():
    tt = TTLinear((4, 7, 4, 7), (4, 4, 8, 4), (1, 6, 6, 6, 1))
    assert tt.order == (3, 2, 1, 0)  # right-to-left keeps 784 + 448r + 896r + 512r


def test_from_dense_recovers_a_tt_matrix():
    source = layer(ranks=(1, 2, 3, 1), seed=3)
    dense = torch.nn.Linear(24, 12)
    with torch.no_grad():
        dense.weight.copy_(source.dense_weight())
    tt = TTLinear.from_dense(dense, (2, 3, 4), (3, 2, 2), max_rank=3)
    x = torch.randn(4, 24)
    assert torch.allclose(tt(x), dense(x), atol=1e-4)
    assert max(tt.ranks) <= 3
    assert all(abs(float(c.detach().std()) - 0.5) < 1e-4 for c in tt.cores)
