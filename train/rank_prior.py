"""Bayesian rank adaptation for TT cores (Hawkins & Zhang): a Gaussian prior per rank slice.

Every inner bond ``b`` (between cores ``b-1`` and ``b``) has a scale vector ``lam[b]`` of
length ``r_b``: the entries of core ``b-1`` whose right bond index is ``j`` are
``N(0, lam[b][j])`` (a variance), and so are the entries of the last core whose left bond index is
``j`` when ``b`` is the last bond. A hyper-prior on the scale (log-uniform, or half-Cauchy with
scale ``eta``) is maximised in closed form each step (the EM update), with
``M = sum of mu**2 (+ sigma**2) over the slice`` and ``D`` the number of entries in it::

    log-uniform:  lam = M / (D + 1)
    half-Cauchy:  lam = (M - eta**2 D + sqrt(M**2 + (2D + 8) eta**2 M + eta**4 D**2)) / (2D + 4)

A slice whose ``lam**2`` falls below the threshold carries nothing: the bond's rank is the number
of ``lam**2`` above it, and pruning removes the other slices from both neighbouring cores.
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["em_scales", "neg_log_prior", "core_precisions", "bond_ranks", "keep_indices",
           "prune_cores"]


def _slices(cores: Sequence[torch.Tensor], bond: int) -> list[torch.Tensor]:
    """The entries governed by ``lam[bond]``, each as a (rank index, rest of the slice) matrix."""
    left = cores[bond - 1]
    out = [left.reshape(-1, left.shape[-1]).T]
    if bond == len(cores) - 1:
        last = cores[bond]
        out.append(last.reshape(last.shape[0], -1))
    return out


def _sum_squares(cores: Sequence[torch.Tensor], bond: int) -> tuple[torch.Tensor, int]:
    total, count = None, 0
    for flat in _slices(cores, bond):
        squares = (flat.detach() ** 2).sum(dim=1)
        total = squares if total is None else total + squares
        count += flat.shape[1]
    return total, count


def em_scales(cores: Sequence[torch.Tensor], prior: str = "half_cauchy",
              eta: float = 1.0) -> list[torch.Tensor]:
    """The closed-form (EM) update of every inner bond's scale vector; index 0 is unused (None).

    Returns a list ``lam`` of length ``d`` with ``lam[b]`` for bonds ``b = 1 .. d-1``.
    """
    lam: list[torch.Tensor | None] = [None]
    for bond in range(1, len(cores)):
        m, d = _sum_squares(cores, bond)
        if prior == "log_uniform":
            lam.append(m / (d + 1))
        elif prior == "half_cauchy":
            e2 = eta * eta
            root = torch.sqrt(m * m + (2 * d + 8) * e2 * m + e2 * e2 * d * d)
            lam.append((m - e2 * d + root) / (2 * d + 4))
        else:
            raise ValueError(f"prior must be 'half_cauchy' or 'log_uniform', not {prior!r}")
    return lam


def neg_log_prior(cores: Sequence[torch.Tensor], lam: Sequence[torch.Tensor | None],
                  floor: float = 1e-8) -> torch.Tensor:
    """``-log p(cores | lam)`` up to a constant: the KL term the training loss adds.

    Sum over slices of ``M / (2 lam) + D/2 log lam`` (``lam`` floored to keep it finite).
    """
    total = cores[0].new_zeros(())
    for bond in range(1, len(cores)):
        scale = torch.clamp(lam[bond], min=floor)
        for flat in _slices(cores, bond):
            total = total + ((flat ** 2).sum(dim=1) / (2 * scale)).sum()
            total = total + 0.5 * flat.shape[1] * torch.log(scale).sum()
    return total


def core_precisions(cores: Sequence[torch.Tensor], lam: Sequence[torch.Tensor | None],
                    floor: float = 1e-12) -> list[torch.Tensor | None]:
    """Per core, ``1 / lam`` of the bond that governs it, shaped to broadcast against the core.

    Core ``k < d-1`` is governed by its right bond ``k+1`` and the last core by its left bond
    (``d-1``), exactly the slices :func:`em_scales` sums over. ``None`` for a single core.
    """
    d = len(cores)
    if d == 1:
        return [None]
    out = []
    for k in range(d - 1):
        out.append((1 / torch.clamp(lam[k + 1], min=floor)).reshape(1, 1, 1, -1))
    out.append((1 / torch.clamp(lam[d - 1], min=floor)).reshape(-1, 1, 1, 1))
    return out


def keep_indices(lam: Sequence[torch.Tensor | None], threshold: float) -> list[torch.Tensor]:
    """Per inner bond, the slice indices whose ``lam**2`` exceeds ``threshold`` (at least one)."""
    keep = []
    for scale in lam[1:]:
        idx = torch.nonzero(scale ** 2 > threshold).flatten()
        if idx.numel() == 0:
            idx = torch.argmax(scale).reshape(1)
        keep.append(idx)
    return keep


def bond_ranks(lam: Sequence[torch.Tensor | None], threshold: float) -> tuple[int, ...]:
    """The TT ranks ``(1, r_1, ..., r_{d-1}, 1)`` that the scales support."""
    return (1, *(int(k.numel()) for k in keep_indices(lam, threshold)), 1)


def prune_cores(cores: Sequence[torch.Tensor], keep: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Remove the dropped rank slices from both cores around every inner bond."""
    if len(keep) != len(cores) - 1:
        raise ValueError(f"keep needs one index list per inner bond ({len(cores) - 1}), "
                         f"not {len(keep)}")
    out = [c.detach().clone() for c in cores]
    for bond, idx in enumerate(keep, start=1):
        out[bond - 1] = out[bond - 1].index_select(3, idx)
        out[bond] = out[bond].index_select(0, idx)
    return out

