import pytest
import torch

from edge3u.models.tt import tt_matvec, tt_to_dense
from edge3u.train import rank_prior


def cores(ranks, n=(3, 4, 2), m=(2, 3, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(ranks[k], n[k], m[k], ranks[k + 1], generator=g, dtype=torch.float64)
            for k in range(len(n))]


def test_em_matches_the_closed_forms():
    cs = cores((1, 3, 2, 1))
    # bond 1: core 0's right slices; D = r0 * n0 * m0 = 1 * 3 * 2
    m = (cs[0] ** 2).sum(dim=(0, 1, 2))
    d = 6
    assert torch.allclose(rank_prior.em_scales(cs, "log_uniform")[1], m / (d + 1))
    eta = 0.7
    expected = (m - eta**2 * d + torch.sqrt(m**2 + (2 * d + 8) * eta**2 * m + eta**4 * d**2)) / (2 * d + 4)
    assert torch.allclose(rank_prior.em_scales(cs, "half_cauchy", eta)[1], expected)
    # the last bond also governs the last core's left slices
    m2 = (cs[1] ** 2).sum(dim=(0, 1, 2)) + (cs[2] ** 2).sum(dim=(1, 2, 3))
    d2 = 3 * 4 * 3 + 2 * 4
    assert torch.allclose(rank_prior.em_scales(cs, "log_uniform")[2], m2 / (d2 + 1))


def test_em_update_maximises_the_posterior():
    # the closed form is the maximiser of -neg_log_prior(lam) + log hyperprior(lam)
    cs = cores((1, 2, 1), n=(3, 4), m=(2, 2))
    lam = rank_prior.em_scales(cs, "log_uniform")

    def objective(scale):
        lam_ = [None, scale]
        # log-uniform on the standard deviation: p(lam) ∝ 1/sqrt(lam) in the variance
        return -rank_prior.neg_log_prior(cs, lam_) - 0.5 * torch.log(scale).sum()

    best = objective(lam[1])
    for factor in (0.9, 1.1):
        assert objective(lam[1] * factor) < best


def test_zero_slices_get_zero_scale_and_are_pruned():
    cs = cores((1, 4, 3, 1))
    cs[0][..., 1] = 0
    cs[1][1] = 0  # slice 1 of bond 1 carries nothing
    cs[1][..., 2] = 0
    cs[2][2] = 0  # slice 2 of bond 2 carries nothing
    lam = rank_prior.em_scales(cs, "half_cauchy")
    assert lam[1][1] == 0 and lam[2][2] == 0
    assert rank_prior.bond_ranks(lam, 1e-4) == (1, 3, 2, 1)
    keep = rank_prior.keep_indices(lam, 1e-4)
    pruned = rank_prior.prune_cores(cs, keep)
    assert [tuple(c.shape) for c in pruned] == [(1, 3, 2, 3), (3, 4, 3, 2), (2, 2, 4, 1)]
    assert sum(c.numel() for c in pruned) < sum(c.numel() for c in cs)
    x = torch.randn(5, 24, dtype=torch.float64)
    assert torch.allclose(tt_matvec(x, pruned), tt_matvec(x, cs))
    assert torch.allclose(tt_to_dense(pruned), tt_to_dense(cs))


def test_a_bond_keeps_at_least_one_slice():
    lam = [None, torch.tensor([1e-9, 2e-9])]
    assert rank_prior.bond_ranks(lam, 1e-4) == (1, 1, 1)


def test_prior_gradient_pulls_small_slices_harder():
    cs = [c.requires_grad_() for c in cores((1, 2, 1), n=(3, 4), m=(2, 2))]
    lam = [None, torch.tensor([1.0, 0.01], dtype=torch.float64)]
    rank_prior.neg_log_prior(cs, lam).backward()
    ratio = cs[0].grad[..., 1] / cs[0].detach()[..., 1]
    assert torch.allclose(ratio, torch.full_like(ratio, 100.0))


def test_prune_checks_the_bond_count():
    with pytest.raises(ValueError, match="one index list per inner bond \\(2\\), not 1"):
        rank_prior.prune_cores(cores((1, 2, 2, 1)), [torch.tensor([0])])
