"""Tests for edge3u.models.tt: TT-matrix contraction orders, stage costs, matvec, TT-SVD."""

import itertools
import math
import re

import numpy as np
import pytest
import tensorly as tl
import torch
from tensorly.tt_matrix import tt_matrix_to_matrix

from edge3u.models.tt import (
    Stage, check_order, choose_order, right_to_left, stages, tt_macs, tt_matvec, tt_ranks,
    tt_svd, tt_to_dense, valid_orders,
)

FC1_N = (4, 7, 4, 7)
FC1_M = (4, 4, 8, 4)

# (in_modes n, out_modes m, ranks): d = 1..5, non-square, uneven modes (including 1),
# non-uniform ranks.
CASES = [
    ((5,), (3,), (1, 1)),
    ((3, 5), (4, 2), (1, 3, 1)),
    ((2, 3, 4), (5, 1, 3), (1, 4, 2, 1)),
    (FC1_N, FC1_M, (1, 3, 5, 2, 1)),
    ((2, 3, 2, 3, 2), (3, 2, 2, 1, 4), (1, 2, 5, 3, 4, 1)),
]
CASE_IDS = [f"d{len(c[0])}" for c in CASES]


def random_cores(n, m, ranks, *, seed=0, dtype=torch.float64, integer=False):
    gen = torch.Generator().manual_seed(seed)
    cores = []
    for k in range(len(n)):
        shape = (ranks[k], n[k], m[k], ranks[k + 1])
        if integer:
            cores.append(torch.randint(-3, 4, shape, generator=gen, dtype=torch.int64))
        else:
            cores.append(torch.randn(shape, generator=gen, dtype=dtype))
    return cores


def random_x(n_total, batch, *, seed=1, dtype=torch.float64, integer=False):
    gen = torch.Generator().manual_seed(seed)
    shape = (n_total,) if batch is None else (batch, n_total)
    if integer:
        return torch.randint(-5, 6, shape, generator=gen, dtype=torch.int64)
    return torch.randn(shape, generator=gen, dtype=dtype)


def is_valid_order(order):
    """Independent definition: every prefix is a set of consecutive integers."""
    return all(max(order[:i]) - min(order[:i]) + 1 == i for i in range(1, len(order) + 1))


# --------------------------------------------------------------------------- orders

@pytest.mark.parametrize("d", range(1, 8))
def test_valid_orders(d):
    orders = valid_orders(d)
    assert len(orders) == 2 ** (d - 1) == len(set(orders))
    assert orders[0] == right_to_left(d) == tuple(range(d - 1, -1, -1))
    assert orders[-1] == tuple(range(d))
    assert valid_orders(d) == orders  # deterministic
    for order in orders:
        assert check_order(order, d) == order
    if d <= 6:
        brute = {p for p in itertools.permutations(range(d)) if is_valid_order(p)}
        assert set(orders) == brute


@pytest.mark.parametrize("d", range(1, 6))
def test_check_order_accepts_exactly_the_valid_permutations(d):
    for perm in itertools.permutations(range(d)):
        if is_valid_order(perm):
            assert check_order(perm, d) == perm
        else:
            with pytest.raises(ValueError, match=re.escape(repr(perm))):
                check_order(perm, d)


def test_check_order_normalises():
    assert check_order([2, 1, 0], 3) == (2, 1, 0)
    assert check_order(np.array([1, 0, 2]), 3) == (1, 0, 2)
    assert all(type(k) is int for k in check_order(np.array([1, 0, 2]), 3))


@pytest.mark.parametrize("order", [(0, 2, 1), (2, 0, 1), (0, 1), (0, 0, 1), (0, 1, 3), (1, 0, 2, 3)])
def test_check_order_rejects(order):
    with pytest.raises(ValueError, match=re.escape(repr(order))) as info:
        check_order(order, 3)
    assert "(2, 1, 0)" in str(info.value)  # says what is valid


@pytest.mark.parametrize("d", [0, -1, 2.0])
def test_bad_number_of_cores(d):
    with pytest.raises(ValueError, match=re.escape(repr(d))):
        valid_orders(d)


# --------------------------------------------------------------------------- stage costs

@pytest.mark.parametrize("r, total", [(2, 39_040), (4, 135_424), (8, 500_224)])
def test_fc1_known_macs(r, total):
    ranks = (1, r, r, r, 1)
    assert tt_macs(FC1_N, FC1_M, ranks) == total
    assert tt_macs(FC1_N, FC1_M, ranks, (3, 2, 1, 0)) == total
    st = stages(FC1_N, FC1_M, ranks)
    assert [s.macs for s in st] == [3136 * r, 3584 * r * r, 3584 * r * r, 2048 * r]
    assert st == [
        Stage(3, 112, 7, 4 * r, "first"),
        Stage(2, 112, 4 * r, 8 * r, "left"),
        Stage(1, 128, 7 * r, 4 * r, "left"),
        Stage(0, 128, 4 * r, 4, "left"),
    ]
    assert [s.out_size for s in st] == [448 * r, 896 * r, 512 * r, 512]
    # left-to-right, by the mirror-image formula: 6720 r + 6720 r^2
    ltr = stages(FC1_N, FC1_M, ranks, (0, 1, 2, 3))
    assert [s.contracted for s in ltr] == ["first", "right", "right", "right"]
    assert sum(s.macs for s in ltr) == 6720 * r + 6720 * r * r


def test_dense_and_single_core():
    assert tt_macs((784,), (512,), (1, 1)) == 784 * 512 == 401_408
    assert stages((784,), (512,), (1, 1)) == [Stage(0, 1, 784, 512, "first")]


@pytest.mark.parametrize("n, m, ranks", CASES, ids=CASE_IDS)
def test_stage_structure(n, m, ranks):
    d = len(n)
    for order in valid_orders(d):
        st = stages(n, m, ranks, order)
        assert [s.core for s in st] == list(order)
        assert st[0].contracted == "first" and st[0].inner == n[order[0]]
        lo = hi = order[0]
        for s in st[1:]:
            k = s.core
            if s.contracted == "right":
                assert k == hi + 1 and s.inner == ranks[k] * n[k] and s.cols == m[k] * ranks[k + 1]
                hi = k
            else:
                assert s.contracted == "left"
                assert k == lo - 1 and s.inner == n[k] * ranks[k + 1] and s.cols == ranks[k] * m[k]
                lo = k
        assert st[-1].out_size == math.prod(m)  # the last stage produces y
        assert all(s.macs == s.rows * s.inner * s.cols and s.out_size == s.rows * s.cols
                   for s in st)


def test_stage_rejects_bad_contracted():
    with pytest.raises(ValueError, match="'middle'"):
        Stage(0, 1, 2, 3, "middle")


@pytest.mark.parametrize("args, bad", [
    (((4, 7), (4,), (1, 2, 1)), "(4,)"),
    (((4, 7), (4, 4), (1, 2, 2, 1)), "(1, 2, 2, 1)"),
    (((4, 7), (4, 4), (2, 2, 1)), "(2, 2, 1)"),
    (((4, 0), (4, 4), (1, 2, 1)), "(4, 0)"),
    (((), (), (1,)), "()"),
])
def test_stages_rejects_bad_modes(args, bad):
    with pytest.raises(ValueError, match=re.escape(bad)):
        stages(*args)


def test_stages_rejects_bad_order():
    with pytest.raises(ValueError, match=re.escape("(0, 2, 1, 3)")):
        stages(FC1_N, FC1_M, (1, 2, 2, 2, 1), (0, 2, 1, 3))


# --------------------------------------------------------------------------- choose_order

def peak(n, m, ranks, order):
    return max(s.out_size for s in stages(n, m, ranks, order))


@pytest.mark.parametrize("n, m, ranks", CASES[1:] + [
    (FC1_N, FC1_M, (1, 2, 2, 2, 1)), (FC1_N, FC1_M, (1, 8, 8, 8, 1)),
    ((3, 2, 6, 2), (2, 8, 1, 3), (1, 9, 1, 7, 1)),
], ids=["d2", "d3", "d4", "d5", "fc1r2", "fc1r8", "skewed"])
def test_choose_order_is_brute_force_minimum(n, m, ranks):
    orders = valid_orders(len(n))
    best = min(orders, key=lambda o: (tt_macs(n, m, ranks, o), peak(n, m, ranks, o), orders.index(o)))
    assert choose_order(n, m, ranks) == best
    assert tt_macs(n, m, ranks, best) == min(tt_macs(n, m, ranks, o) for o in orders)


def test_choose_order_fc1():
    assert choose_order(FC1_N, FC1_M, (1, 2, 2, 2, 1)) == (3, 2, 1, 0)  # 39,040 < 40,320
    assert choose_order(FC1_N, FC1_M, (1, 8, 8, 8, 1)) == (0, 1, 2, 3)  # 483,840 < 500,224


def test_choose_order_custom_cost():
    n, m, ranks = FC1_N, FC1_M, (1, 3, 5, 2, 1)
    orders = valid_orders(4)
    worst = max(orders, key=lambda o: tt_macs(n, m, ranks, o))
    assert choose_order(n, m, ranks, cost=lambda st: -sum(s.macs for s in st)) == worst
    # a cost the MAC count disagrees with: the number of "left" stages
    lefts = choose_order(n, m, ranks, cost=lambda st: sum(s.contracted == "left" for s in st))
    assert lefts == (0, 1, 2, 3)
    # constant cost: ties broken by peak out_size, then position in valid_orders()
    tied = choose_order(n, m, ranks, cost=lambda st: 0)
    assert tied == min(orders, key=lambda o: (peak(n, m, ranks, o), orders.index(o)))
    assert choose_order((5,), (3,), (1, 1), cost=lambda st: 0) == (0,)


# --------------------------------------------------------------------------- dense and ranks

@pytest.mark.parametrize("n, m, ranks", CASES, ids=CASE_IDS)
def test_tt_to_dense_matches_tensorly(n, m, ranks):
    cores = random_cores(n, m, ranks)
    w = tt_to_dense(cores)
    assert w.shape == (math.prod(m), math.prod(n))
    with tl.backend_context("numpy"):
        ref = tt_matrix_to_matrix([c.numpy() for c in cores])  # (N, M)
    np.testing.assert_allclose(w.numpy(), ref.T, rtol=1e-12, atol=1e-12)


def test_tt_to_dense_definition():
    n, m, ranks = (2, 3, 2), (3, 1, 2), (1, 2, 3, 1)
    cores = random_cores(n, m, ranks)
    w = tt_to_dense(cores)
    for i in itertools.product(*map(range, m)):
        for j in itertools.product(*map(range, n)):
            prod = cores[0][:, j[0], i[0], :]
            for k in range(1, 3):
                prod = prod @ cores[k][:, j[k], i[k], :]
            row, col = np.ravel_multi_index(i, m), np.ravel_multi_index(j, n)
            assert torch.allclose(w[row, col], prod[0, 0], rtol=1e-12, atol=1e-12)


def test_tt_ranks():
    assert tt_ranks(random_cores(*CASES[3])) == (1, 3, 5, 2, 1)
    assert tt_ranks(random_cores(*CASES[0])) == (1, 1)


@pytest.mark.parametrize("shapes, bad", [
    ([(1, 2, 2, 3), (2, 2, 2, 1)], "(1, 2, 2, 3)"),
    ([(2, 2, 2, 1)], "(2, 2, 2, 1)"),
    ([(1, 2, 2, 2), (2, 2, 2, 2)], "(2, 2, 2, 2)"),
    ([(1, 2, 2), (2, 2, 2, 1)], "(1, 2, 2)"),
])
def test_tt_ranks_rejects(shapes, bad):
    cores = [torch.zeros(s) for s in shapes]
    with pytest.raises(ValueError, match=re.escape(bad)):
        tt_ranks(cores)
    with pytest.raises(ValueError, match=re.escape(bad)):
        tt_matvec(torch.zeros(4), cores)


def test_tt_ranks_rejects_empty():
    with pytest.raises(ValueError, match="empty"):
        tt_ranks([])


# --------------------------------------------------------------------------- matvec

@pytest.mark.parametrize("n, m, ranks", CASES, ids=CASE_IDS)
def test_matvec_matches_dense_every_order(n, m, ranks):
    cores = random_cores(n, m, ranks)
    w = tt_to_dense(cores)
    big_m, big_n = w.shape
    xb, xv = random_x(big_n, 6), random_x(big_n, None)
    for order in valid_orders(len(n)):
        y = tt_matvec(xb, cores, order)
        assert y.shape == (6, big_m) and y.dtype == torch.float64 and y.is_contiguous()
        torch.testing.assert_close(y, xb @ w.T, rtol=1e-12, atol=1e-12)
        yv = tt_matvec(xv, cores, order)
        assert yv.shape == (big_m,)
        torch.testing.assert_close(yv, w @ xv, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(tt_matvec(xb, cores), xb @ w.T, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n, m, ranks", CASES, ids=CASE_IDS)
def test_matvec_int64_exact(n, m, ranks):
    cores = random_cores(n, m, ranks, integer=True)
    w = tt_to_dense(cores)
    assert w.dtype == torch.int64
    x = random_x(w.shape[1], 3, integer=True)
    for order in valid_orders(len(n)):
        y = tt_matvec(x, cores, order)
        assert y.dtype == torch.int64
        assert torch.equal(y, x @ w.T)
        assert torch.equal(tt_matvec(x[1], cores, order), w @ x[1])


def test_matvec_fc1_float32_batch128_all_orders_agree():
    cores = random_cores(FC1_N, FC1_M, (1, 8, 8, 8, 1), dtype=torch.float32)
    x = random_x(784, 128, dtype=torch.float32)
    ref = x.double() @ tt_to_dense([c.double() for c in cores]).T
    for order in valid_orders(4):
        y = tt_matvec(x, cores, order)
        assert y.dtype == torch.float32
        torch.testing.assert_close(y.double(), ref, rtol=1e-4, atol=1e-3)


def stage_shape(n, m, ranks, a, b):
    return n[:a] + (ranks[a],) + m[a:b + 1] + (ranks[b + 1],) + n[b + 1:]


@pytest.mark.parametrize("n, m, ranks", CASES, ids=CASE_IDS)
def test_return_stages(n, m, ranks):
    cores = random_cores(n, m, ranks)
    batch = 3
    x = random_x(math.prod(n), batch)
    for order in valid_orders(len(n)):
        y, outs = tt_matvec(x, cores, order, return_stages=True)
        st = stages(n, m, ranks, order)
        assert len(outs) == len(st) == len(n)
        assert [o.numel() for o in outs] == [s.out_size * batch for s in st]
        for i, o in enumerate(outs):
            interval = order[:i + 1]
            assert o.shape == (batch,) + stage_shape(n, m, ranks, min(interval), max(interval))
        torch.testing.assert_close(outs[-1].reshape(batch, -1), y, rtol=0, atol=0)
        yv, outs_v = tt_matvec(x[0], cores, order, return_stages=True)
        assert [o.numel() for o in outs_v] == [s.out_size for s in st]
        torch.testing.assert_close(outs_v[-1].reshape(-1), yv, rtol=0, atol=0)


def test_return_stages_first_stage_values():
    """The first stage's output is x contracted with one core over its n mode only."""
    n, m, ranks = CASES[3]
    cores = random_cores(n, m, ranks)
    x = random_x(math.prod(n), 2)
    _, outs = tt_matvec(x, cores, (1, 2, 0, 3), return_stages=True)
    ref = torch.einsum("bijkl,pjqr->bipqrkl", x.reshape(2, *n), cores[1])
    torch.testing.assert_close(outs[0], ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("order", [(2, 1, 0), (1, 2, 0), (1, 0, 2), (0, 1, 2)])
def test_gradcheck(order):
    n, m, ranks = (2, 3, 2), (3, 2, 2), (1, 2, 3, 1)
    cores = [c.requires_grad_() for c in random_cores(n, m, ranks)]
    x = random_x(12, 2).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, *cores: tt_matvec(x, cores, order), (x, *cores))
    xv = random_x(12, None).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, *cores: tt_matvec(x, cores, order), (xv, *cores))


@pytest.mark.parametrize("n, m, ranks", CASES, ids=CASE_IDS)
def test_core_gradients_match_dense(n, m, ranks):
    cores = [c.requires_grad_() for c in random_cores(n, m, ranks)]
    x = random_x(math.prod(n), 5)
    v = random_x(math.prod(m), 5, seed=7)
    w = tt_to_dense(cores)
    ref = torch.autograd.grad(((x @ w.T) * v).sum(), cores)
    for order in valid_orders(len(n)):
        xg = x.clone().requires_grad_()
        grads = torch.autograd.grad((tt_matvec(xg, cores, order) * v).sum(), [xg, *cores])
        torch.testing.assert_close(grads[0], v @ w.detach(), rtol=1e-10, atol=1e-10)
        for g, r in zip(grads[1:], ref):
            torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10)


def test_matvec_rejects_bad_x():
    cores = random_cores(*CASES[2])  # N = 24
    with pytest.raises(ValueError, match=re.escape("(2, 10)")):
        tt_matvec(torch.zeros(2, 10, dtype=torch.float64), cores)
    with pytest.raises(ValueError, match=re.escape("(2, 3, 24)")):
        tt_matvec(torch.zeros(2, 3, 24, dtype=torch.float64), cores)
    with pytest.raises(ValueError, match="float32"):
        tt_matvec(torch.zeros(2, 24, dtype=torch.float32), cores)
    with pytest.raises(ValueError, match=re.escape("(0, 2, 1)")):
        tt_matvec(torch.zeros(2, 24, dtype=torch.float64), cores, (0, 2, 1))
    with pytest.raises(TypeError, match="ndarray"):
        tt_matvec(np.zeros((2, 24)), cores)


# --------------------------------------------------------------------------- TT-SVD

def rel_err(w, cores):
    return (torch.linalg.norm(tt_to_dense(cores).double() - w.double())
            / torch.linalg.norm(w.double())).item()


def unfolding_singular_values(w, n, m):
    """Singular values of the d-1 TT unfoldings of W (interleaved modes n0, m0, n1, m1, ...)."""
    d = len(n)
    t = w.double().numpy().T.reshape(n + m)
    t = t.transpose([i for k in range(d) for i in (k, d + k)])
    return [np.linalg.svd(t.reshape(math.prod(n[:k]) * math.prod(m[:k]), -1), compute_uv=False)
            for k in range(1, d)]


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_tt_svd_full_rank(dtype, tol):
    n, m = (2, 3, 4), (3, 2, 2)
    w = torch.randn(12, 24, generator=torch.Generator().manual_seed(3), dtype=dtype)
    cores = tt_svd(w, n, m, max_rank=1000)
    assert all(c.dtype == dtype and not c.requires_grad for c in cores)
    assert [tuple(c.shape[1:3]) for c in cores] == list(zip(n, m))
    assert rel_err(w, cores) < tol


def test_tt_svd_single_core():
    w = torch.randn(5, 7, dtype=torch.float64)
    cores = tt_svd(w, (7,), (5,), max_rank=1)
    assert len(cores) == 1 and cores[0].shape == (1, 7, 5, 1)
    torch.testing.assert_close(tt_to_dense(cores), w)


def test_tt_svd_recovers_exact_tt_rank():
    n, m = (3, 4, 2, 3), (2, 3, 4, 2)
    w = tt_to_dense(random_cores(n, m, (1, 3, 3, 3, 1), seed=5))
    cores = tt_svd(w, n, m, max_rank=3)
    assert max(tt_ranks(cores)) <= 3
    assert rel_err(w, cores) < 1e-5
    # the decomposition is usable by the rest of the module
    x = random_x(math.prod(n), 4)
    torch.testing.assert_close(tt_matvec(x, cores), x @ w.T, rtol=1e-8, atol=1e-8)


def test_tt_svd_truncation():
    n, m = (3, 4, 2, 3), (2, 3, 4, 2)
    w = torch.randn(48, 72, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    sigmas = unfolding_singular_values(w, n, m)
    w = w.requires_grad_()  # a trained weight: tt_svd must not care
    errors = []
    for max_rank in (1, 2, 3, 4, 6, 8, 12):
        cores = tt_svd(w, n, m, max_rank)
        ranks = tt_ranks(cores)
        assert ranks[0] == ranks[-1] == 1 and max(ranks[1:-1]) <= max_rank
        err = torch.linalg.norm(tt_to_dense(cores) - w.detach()).item()
        # eps_k: error of the best rank-max_rank approximation of unfolding k. Oseledets (2011),
        # Thm 2.2 and the unfoldings' ranks: max_k eps_k <= ||W - W_TT|| <= sqrt(sum_k eps_k^2)
        eps = [float(np.sqrt(np.sum(s[max_rank:] ** 2))) for s in sigmas]
        assert max(eps) * (1 - 1e-9) <= err <= math.sqrt(sum(e * e for e in eps)) * (1 + 1e-9)
        errors.append(err / torch.linalg.norm(w.detach()).item())
    assert all(a > b for a, b in zip(errors, errors[1:]))


@pytest.mark.parametrize("args, bad", [
    (((4, 7), (4, 4), 2), "(16, 27)"),  # modes disagree with the weight (16, 28)
    (((4, 7), (4,), 2), "(4,)"),
    (((4, 7), (4, 4), 0), "0"),
    (((4, 7), (4, 4), 2.5), "2.5"),
])
def test_tt_svd_rejects(args, bad):
    w = torch.zeros(16, 27)
    if bad != "(16, 27)":
        w = torch.zeros(16, 28)
    with pytest.raises(ValueError, match=re.escape(bad)):
        tt_svd(w, *args)


# --------------------------------------------------------------------------- between

@pytest.mark.parametrize("n, m, ranks", CASES, ids=CASE_IDS)
def test_between_sees_each_intermediate_as_features_by_batch(n, m, ranks):
    cores = random_cores(n, m, ranks)
    batch = 3
    x = random_x(math.prod(n), batch)
    w = tt_to_dense(cores)
    for order in valid_orders(len(n)):
        seen = []

        def record(h):
            seen.append(tuple(h.shape))
            return h

        y, outs = tt_matvec(x, cores, order, return_stages=True, between=record)
        st = stages(n, m, ranks, order)
        assert seen == [(s.out_size, batch) for s in st[:-1]]  # not after the last stage
        torch.testing.assert_close(y, x @ w.T, rtol=1e-12, atol=1e-12)
        # scaling every intermediate by 2 scales y by 2**(d-1); the stages show what was passed on
        y2, outs2 = tt_matvec(x, cores, order, return_stages=True, between=lambda h: 2 * h)
        torch.testing.assert_close(y2, 2.0 ** (len(n) - 1) * y, rtol=1e-12, atol=1e-12)
        for i, (o, o2) in enumerate(zip(outs, outs2)):
            torch.testing.assert_close(o2, 2.0 ** min(i + 1, len(n) - 1) * o, rtol=1e-12, atol=1e-12)


def test_between_columns_are_samples():
    n, m, ranks = CASES[2]
    cores = random_cores(n, m, ranks)
    x = random_x(math.prod(n), 4)

    def drop_sample_2(h):
        return h * torch.tensor([1.0, 1.0, 0.0, 1.0], dtype=h.dtype)

    y = tt_matvec(x, cores, between=drop_sample_2)
    assert torch.equal(y[2], torch.zeros_like(y[2]))
    torch.testing.assert_close(y[[0, 1, 3]], tt_matvec(x[[0, 1, 3]], cores), rtol=1e-12, atol=1e-12)
    seen = []
    tt_matvec(x[0], cores, between=lambda h: seen.append(h.shape) or h)
    assert all(s[1] == 1 for s in seen) and len(seen) == 2


def test_between_gradients_flow():
    n, m, ranks = (2, 3, 2), (3, 2, 2), (1, 2, 3, 1)
    cores = [c.requires_grad_() for c in random_cores(n, m, ranks)]
    x = random_x(12, 2).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x, *cores: tt_matvec(x, cores, (1, 0, 2), between=torch.tanh), (x, *cores))


# --------------------------------------------------------------------------- fast paths
# tt_matvec runs floating-point inputs through hand-written autograd Functions: per stage when
# intermediates go to `between`, else as one fused contraction whose grouping of stages and
# layout a cost model picks. These tests drive every grouping and layout, not only the chosen one.

from edge3u.models import tt as tt_module  # noqa: E402


def groupings(order):
    """Every split of ``order`` into consecutive groups that are intervals of cores."""
    d = len(order)
    for cuts in itertools.product((False, True), repeat=d - 1):
        bounds = [0] + [i + 1 for i, cut in enumerate(cuts) if cut] + [d]
        groups = [order[a:b] for a, b in zip(bounds, bounds[1:])]
        if all(max(g) - min(g) + 1 == len(g) for g in groups):
            yield groups


def fused_plan(shapes, order, groups, lay, batch, two_stage=False):
    n = tuple(s[1] for s in shapes)
    m = tuple(s[2] for s in shapes)
    r = tuple(s[0] for s in shapes) + (1,)
    out, lo, hi = [], None, None
    for g in groups:
        a, b = min(g), max(g)
        out.append(tt_module._Group(shapes, a, b, *tt_module._group_stage(n, m, r, lo, hi, a, b)))
        lo, hi = (a, b) if lo is None else (min(lo, a), max(hi, b))
    return lay, batch, tuple(out), two_stage


def all_fused_plans(shapes, batch):
    """Every grouping of every order in both layouts, and the two-stage plans whose first stage
    takes the right-hand block of cores with the reassociated backward pass."""
    d = len(shapes)
    for order in valid_orders(d):
        for groups in groupings(order):
            for lay in "FL":
                yield order, groups, fused_plan(shapes, order, groups, lay, batch)
            if len(groups) == 2 and max(groups[0]) == d - 1:
                yield order, groups, fused_plan(shapes, order, groups, "F", batch, True)


def test_groupings_are_every_interval_split():
    assert list(groupings((1, 2, 0))) == [[(1, 2, 0)], [(1, 2), (0,)], [(1,), (2,), (0,)]]
    assert list(groupings((1, 0, 2))) == [[(1, 0, 2)], [(1, 0), (2,)], [(1,), (0,), (2,)]]


@pytest.mark.parametrize("n, m, ranks", CASES, ids=CASE_IDS)
def test_fused_every_grouping_and_layout_matches_dense(n, m, ranks):
    """Values and all gradients of every fused plan equal those through the dense weight."""
    cores = [c.requires_grad_() for c in random_cores(n, m, ranks)]
    shapes = tuple(tuple(c.shape) for c in cores)
    batch = 3
    x = random_x(math.prod(n), batch).requires_grad_()
    v = random_x(math.prod(m), batch, seed=7)
    w = tt_to_dense(cores)
    ref = torch.autograd.grad(((x @ w.T) * v).sum(), [x, *cores])
    count = 0
    for order, groups, plan in all_fused_plans(shapes, batch):
        if len(n) == 5 and order not in ((4, 3, 2, 1, 0), (0, 1, 2, 3, 4), (2, 1, 3, 0, 4)):
            continue  # d = 5: both ends and one from the middle keep it quick
        y = tt_module._TTFused.apply(x, plan, *cores)
        assert y.shape == (batch, math.prod(m)) and y.is_contiguous()
        grads = torch.autograd.grad((y * v).sum(), [x, *cores])
        for got, want in zip(grads, ref):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
        count += 1
    assert count >= 2 ** (len(n) - 1)


@pytest.mark.parametrize("n, m, ranks", CASES, ids=CASE_IDS)
def test_fused_core_gradients_without_input_gradient(n, m, ranks):
    """As above with an ``x`` that needs no gradient, the case of a network's first layer (and
    the one the two-stage backward pass serves)."""
    cores = [c.requires_grad_() for c in random_cores(n, m, ranks)]
    shapes = tuple(tuple(c.shape) for c in cores)
    x = random_x(math.prod(n), 3)
    v = random_x(math.prod(m), 3, seed=7)
    ref = torch.autograd.grad(((x @ tt_to_dense(cores).T) * v).sum(), cores)
    two_stage = 0
    for order, groups, plan in all_fused_plans(shapes, 3):
        grads = torch.autograd.grad((tt_module._TTFused.apply(x, plan, *cores) * v).sum(), cores)
        for got, want in zip(grads, ref):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
        two_stage += plan[3]
    assert two_stage == 2 ** (len(n) - 1) - 1  # a right-hand block first, its orders, the rest


@pytest.mark.parametrize("batch", [37, 64])
def test_fused_backward_in_chunks_of_the_batch(monkeypatch, batch):
    """The layout-F backward pass runs over chunks of the batch (the last one partial)."""
    monkeypatch.setattr(tt_module, "_CHUNK_ELEMENTS", 1 << 9)
    n, m, ranks = CASES[3]
    cores = [c.requires_grad_() for c in random_cores(n, m, ranks)]
    shapes = tuple(tuple(c.shape) for c in cores)
    x = random_x(math.prod(n), batch).requires_grad_()
    v = random_x(math.prod(m), batch, seed=7)
    w = tt_to_dense(cores)
    ref = torch.autograd.grad(((x @ w.T) * v).sum(), [x, *cores])
    for groups in ([(3,), (2,), (1,), (0,)], [(3, 2), (1, 0)], [(3,), (2, 1), (0,)]):
        plan = fused_plan(shapes, (3, 2, 1, 0), groups, "F", batch)
        assert tt_module._backward_chunk(plan[2], batch) < batch
        grads = torch.autograd.grad((tt_module._TTFused.apply(x, plan, *cores) * v).sum(),
                                    [x, *cores])
        for got, want in zip(grads, ref):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_two_stage_backward_only_for_cores_that_need_it():
    n, m, ranks = CASES[3]
    cores = random_cores(n, m, ranks)
    shapes = tuple(tuple(c.shape) for c in cores)
    plan = fused_plan(shapes, (3, 2, 1, 0), [(3, 2), (1, 0)], "F", 4, True)
    x = random_x(math.prod(n), 4)
    for k in range(4):
        cs = [c.clone().requires_grad_(j == k) for j, c in enumerate(cores)]
        (g,) = torch.autograd.grad(tt_module._TTFused.apply(x, plan, *cs).square().sum(), [cs[k]])
        cr = [c.clone().requires_grad_(j == k) for j, c in enumerate(cores)]
        (want,) = torch.autograd.grad((x @ tt_to_dense(cr).T).square().sum(), [cr[k]])
        torch.testing.assert_close(g, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("n, m, ranks", [
    ((3, 2), (2, 3), (1, 2, 1)),
    ((2, 3, 2), (3, 2, 2), (1, 2, 3, 1)),
    ((2, 1, 3, 2), (1, 2, 2, 3), (1, 2, 3, 2, 1)),
], ids=["d2", "d3", "d4"])
def test_fused_gradcheck_every_grouping_and_layout(n, m, ranks):
    cores = [c.requires_grad_() for c in random_cores(n, m, ranks)]
    shapes = tuple(tuple(c.shape) for c in cores)
    x = random_x(math.prod(n), 2).requires_grad_()
    for order, groups, plan in all_fused_plans(shapes, 2):
        assert torch.autograd.gradcheck(
            lambda x, *cores: tt_module._TTFused.apply(x, plan, *cores), (x, *cores))
        if plan[3]:  # the two-stage backward pass runs only when x needs no gradient
            assert torch.autograd.gradcheck(
                lambda *cores: tt_module._TTFused.apply(x.detach(), plan, *cores), cores)


def test_fused_grads_only_for_what_needs_them():
    n, m, ranks = CASES[3]
    cores = random_cores(n, m, ranks)
    cores[1].requires_grad_()
    x = random_x(math.prod(n), 4)
    y = tt_matvec(x, cores, (3, 2, 1, 0))
    y.sum().backward()
    assert x.grad is None and cores[0].grad is None and cores[1].grad is not None
    w = tt_to_dense([c.detach() if k != 1 else c for k, c in enumerate(cores)])
    (g,) = torch.autograd.grad((x @ w.T).sum(), [cores[1]])
    torch.testing.assert_close(cores[1].grad, g, rtol=1e-10, atol=1e-10)
    xg = x.clone().requires_grad_()
    (gx,) = torch.autograd.grad(tt_matvec(xg, [c.detach() for c in cores]).sum(), [xg])
    torch.testing.assert_close(gx, torch.ones(4, math.prod(m), dtype=x.dtype) @ w.detach(),
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("batch", [1, 2, 8, 128, 512])
@pytest.mark.parametrize("r", [1, 3, 5, 8, 16])
def test_fused_plan_is_a_valid_grouping(batch, r):
    ranks = (1, r, r, r, 1)
    shapes = tuple((ranks[k], FC1_N[k], FC1_M[k], ranks[k + 1]) for k in range(4))
    for order in valid_orders(4):
        for need_dx in (False, True):
            for train in (False, True):
                lay, plan, two_stage = tt_module._fused_plan(shapes, order, batch, need_dx,
                                                             train)
                assert lay in "FL"
                if two_stage:
                    assert lay == "F" and train and not need_dx and len(plan) == 2
                    assert plan[0].b == 3 and plan[1].a == 0
                # the groups are the next runs of consecutive entries of the order, covering it
                i = 0
                for g in plan:
                    size = g.b - g.a + 1
                    assert set(order[i:i + size]) == set(range(g.a, g.b + 1))
                    i += size
                assert i == 4


def test_fused_plan_fuses_fc1_at_training_batch():
    """At batch 128 the cost model merges fc1's cores pairwise (one intermediate, not three)."""
    for r in (3, 4, 5, 6):
        ranks = (1, r, r, r, 1)
        shapes = tuple((ranks[k], FC1_N[k], FC1_M[k], ranks[k + 1]) for k in range(4))
        _, plan, two_stage = tt_module._fused_plan(shapes, (3, 2, 1, 0), 128, False, True)
        assert [(g.a, g.b) for g in plan] == [(2, 3), (0, 1)] and two_stage


@pytest.mark.parametrize("n, m, ranks", CASES, ids=CASE_IDS)
def test_between_path_custom_backward_matches_reference(n, m, ranks):
    """The per-stage Functions give the values and gradients of plain autograd, for a
    differentiable `between` that treats columns (samples) differently."""
    cores = [c.requires_grad_() for c in random_cores(n, m, ranks)]
    batch = 3
    x = random_x(math.prod(n), batch).requires_grad_()
    v = random_x(math.prod(m), batch, seed=7)
    scale = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)

    def between(h):
        assert h.shape[1] == batch
        return torch.tanh(h) * scale

    for order in valid_orders(len(n)):
        plan = tt_module._plan(n, m, ranks, order)
        want = tt_module._matvec_reference(x, cores, plan, order, False, between)
        got = tt_matvec(x, cores, order, between=between)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        ref = torch.autograd.grad((want * v).sum(), [x, *cores])
        grads = torch.autograd.grad((got * v).sum(), [x, *cores])
        for a, b in zip(grads, ref):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("order", [(2, 1, 0), (1, 2, 0), (1, 0, 2), (0, 1, 2)])
def test_between_path_gradcheck(order):
    n, m, ranks = (2, 3, 2), (3, 2, 2), (1, 2, 3, 1)
    cores = [c.requires_grad_() for c in random_cores(n, m, ranks)]
    x = random_x(12, 3).requires_grad_()
    weights = torch.tensor([0.5, 1.0, -2.0], dtype=torch.float64)

    def between(h):
        return torch.sin(h) * weights[:h.shape[1]] + h * h

    assert torch.autograd.gradcheck(
        lambda x, *cores: tt_matvec(x, cores, order, between=between), (x, *cores))
    assert torch.autograd.gradcheck(
        lambda x, *cores: tt_matvec(x, cores, order, between=between), (x[0], *cores))


def test_between_output_may_be_a_transposed_view():
    """`between` may hand back a (features, B) view of a (B, features) tensor (as QAT does)."""
    n, m, ranks = CASES[3]
    cores = [c.requires_grad_() for c in random_cores(n, m, ranks)]
    x = random_x(math.prod(n), 5).requires_grad_()
    y1 = tt_matvec(x, cores, between=lambda h: (2 * h.t()).contiguous().t())
    y2 = tt_matvec(x, cores, between=lambda h: 2 * h)
    torch.testing.assert_close(y1, y2, rtol=1e-12, atol=1e-12)
    g1 = torch.autograd.grad(y1.sum(), [x, *cores])
    g2 = torch.autograd.grad(y2.sum(), [x, *cores])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def saved_elements(step):
    """Elements of what autograd keeps during ``step()``, views of one storage counted once."""
    seen = {}

    def pack(t):
        key = t.untyped_storage().data_ptr()
        seen[key] = max(seen.get(key, 0), t.untyped_storage().nbytes() // t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(seen.values())


@pytest.mark.parametrize("n, m, ranks", CASES[1:], ids=CASE_IDS[1:])
def test_autograd_keeps_only_stage_inputs(n, m, ranks):
    """Per sample, the per-stage path keeps exactly the stage inputs; the fused path keeps the
    inputs of the stages it runs, a subset of those."""
    cores = [c.requires_grad_() for c in random_cores(n, m, ranks)]
    for order in valid_orders(len(n)):
        st = stages(n, m, ranks, order)
        inputs = [math.prod(n)] + [s.out_size for s in st[:-1]]

        def per_sample(**kw):
            two, four = (saved_elements(lambda b=b: tt_matvec(random_x(math.prod(n), b), cores,
                                                              order, **kw))
                         for b in (2, 4))
            return (four - two) / 2

        assert per_sample(between=lambda h: h) == sum(inputs)
        fused = per_sample()
        _, plan, _ = tt_module._fused_plan(tuple(tuple(c.shape) for c in cores), order,
                                           tt_module._plan_batch(4), False, True)
        assert tt_module._plan_batch(2) == tt_module._plan_batch(4)
        ran, i = [], 0
        for g in plan:
            ran.append(inputs[i])
            i += g.b - g.a + 1
        assert fused == sum(ran) <= sum(inputs)


def test_fast_paths_float32_fc1_batch128_match_reference():
    cores = [c.requires_grad_() for c in random_cores(FC1_N, FC1_M, (1, 5, 5, 5, 1),
                                                       dtype=torch.float32)]
    x = random_x(784, 128, dtype=torch.float32)
    plan = tt_module._plan(FC1_N, FC1_M, (1, 5, 5, 5, 1), (3, 2, 1, 0))
    want = tt_module._matvec_reference(x, cores, plan, (3, 2, 1, 0), False, None)
    ref = torch.autograd.grad(want.square().sum(), cores)
    for kw in ({}, {"between": lambda h: h}):
        got = tt_matvec(x, cores, (3, 2, 1, 0), **kw)
        scale = float(want.detach().abs().max())
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * scale)
        for a, b in zip(torch.autograd.grad(got.square().sum(), cores), ref):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3 * float(b.abs().max()))


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_fast_paths_without_grad(context):
    n, m, ranks = CASES[3]
    cores = random_cores(n, m, ranks)
    x = random_x(math.prod(n), 4)
    w = tt_to_dense(cores)
    with context():
        for kw in ({}, {"between": lambda h: h}):
            y = tt_matvec(x, cores, **kw)
            assert not y.requires_grad
            torch.testing.assert_close(y, x @ w.T, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(tt_matvec(x[1], cores, **kw), w @ x[1],
                                       rtol=1e-12, atol=1e-12)
    # what a plan remembers from a call without gradients serves one with them
    cores = [c.requires_grad_() for c in cores]
    (g,) = torch.autograd.grad(tt_matvec(x, cores).sum(), [cores[2]])
    (want,) = torch.autograd.grad((x @ tt_to_dense(cores).T).sum(), [cores[2]])
    torch.testing.assert_close(g, want, rtol=1e-10, atol=1e-10)


def test_fast_paths_reject_double_backward():
    n, m, ranks = CASES[2]
    cores = [c.requires_grad_() for c in random_cores(n, m, ranks)]
    x = random_x(math.prod(n), 2).requires_grad_()
    for kw in ({}, {"between": lambda h: h}):
        (gx,) = torch.autograd.grad(tt_matvec(x, cores, **kw).square().sum(), [x],
                                    create_graph=True)
        with pytest.raises(RuntimeError):
            gx.sum().backward()


@pytest.mark.parametrize("n, m, ranks", CASES, ids=CASE_IDS)
def test_fastest_order_is_the_same_product(n, m, ranks):
    """``order="fastest"`` on every path: fused (with and without gradients), `between` and
    exact integers all give ``x @ W.T``."""
    cores = [c.requires_grad_() for c in random_cores(n, m, ranks)]
    w = tt_to_dense([c.detach() for c in cores])
    x = random_x(math.prod(n), 5).requires_grad_()
    y = tt_matvec(x, cores, "fastest")
    torch.testing.assert_close(y, x.detach() @ w.T, rtol=1e-10, atol=1e-10)
    v = random_x(math.prod(m), 5, seed=3)
    grads = torch.autograd.grad((y * v).sum(), [x, *cores])
    dense = torch.autograd.grad((x @ tt_to_dense(cores).T * v).sum(), [x, *cores])
    for got, want in zip(grads, dense):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(tt_matvec(x.detach(), cores, "fastest", between=lambda h: h),
                               x.detach() @ w.T, rtol=1e-10, atol=1e-10)
    with torch.no_grad():
        torch.testing.assert_close(tt_matvec(x, cores, "fastest"), x @ w.T, rtol=1e-10,
                                   atol=1e-10)
    ci = random_cores(n, m, ranks, integer=True)
    xi = random_x(math.prod(n), 3, integer=True)
    assert torch.equal(tt_matvec(xi, ci, "fastest"), xi @ tt_to_dense(ci).T)


def test_fastest_order_of_fc1_contracts_from_the_left():
    """Known answer of the cost model: fc1 at rank 5 and batch 128 is fastest from the left (its
    intermediate, 16 r 28 values a sample, is half of the right-to-left one, 28 r 32), and the
    chosen order has the least modelled time of all valid orders."""
    ranks = (1, 5, 5, 5, 1)
    shapes = tuple((ranks[k], FC1_N[k], FC1_M[k], ranks[k + 1]) for k in range(4))
    order = tt_module.fastest_order(shapes, 128, False, True)
    assert order in ((0, 1, 2, 3), (1, 0, 2, 3))
    costs = {o: tt_module._costed_fused_plan(shapes, o, 128, False, True)[0]
             for o in valid_orders(4)}
    assert costs[order] == min(costs.values()) < costs[(3, 2, 1, 0)]


def test_an_order_string_other_than_fastest_is_refused():
    n, m, ranks = CASES[3]
    with pytest.raises(ValueError, match=r"'fast' is not valid.*\"fastest\""):
        tt_matvec(random_x(math.prod(n), 2), random_cores(n, m, ranks), "fast")
