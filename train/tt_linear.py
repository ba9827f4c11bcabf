"""``TTLinear``: a linear layer whose weight is a tensor-train matrix, with rank pruning.

The module holds the cores and a bias; the arithmetic is :func:`edge3u.models.tt.tt_matvec`.
``W = scale * TT(cores)``: the cores keep a fixed spread (standard deviation ``core_std`` at
initialisation) that suits an 8-bit fixed-point format, and the constant ``scale`` brings the
product to the size a linear layer needs (it is folded into requantization in hardware).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn

from edge3u.config import LayerConfig
from edge3u.models import tt

__all__ = ["TTLinear"]


class TTLinear(nn.Module):
    """``y = scale * TT(cores) x + bias`` for ``x`` of shape ``(batch, prod(in_modes))``.

    Parameters
    ----------
    in_modes, out_modes : sequence of int
        The factorisations ``n_k`` of the input size and ``m_k`` of the output size.
    ranks : sequence of int
        ``(1, r_1, ..., r_{d-1}, 1)``.
    core_std : float
        Standard deviation of the cores at initialisation.
    gain : float
        Standard deviation of ``W``'s entries is ``gain / sqrt(in_features)``.
    generator : torch.Generator, optional
        Source of the initial values.
    """

    def __init__(self, in_modes: Sequence[int], out_modes: Sequence[int], ranks: Sequence[int],
                 *, core_std: float = 0.5, gain: float = math.sqrt(2.0), bias: bool = True,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.in_modes, self.out_modes = tuple(in_modes), tuple(out_modes)
        ranks = tuple(ranks)
        if len(ranks) != len(self.in_modes) + 1 or ranks[0] != 1 or ranks[-1] != 1:
            raise ValueError(f"ranks must be (1, r_1, ..., r_{{d-1}}, 1) with d = "
                             f"{len(self.in_modes)} cores, not {ranks}")
        self.cores = nn.ParameterList(
            nn.Parameter(torch.randn(ranks[k], n, m, ranks[k + 1], generator=generator) * core_std)
            for k, (n, m) in enumerate(zip(self.in_modes, self.out_modes)))
        paths = math.prod(ranks)  # the entries of W are sums over prod(ranks) core products
        target = gain / math.sqrt(self.in_features)
        self.scale = target / math.sqrt(paths * core_std ** (2 * self.d))
        self.bias = nn.Parameter(torch.zeros(self.out_features)) if bias else None
        self.between: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.order = self.choose_order()

    @classmethod
    def from_config(cls, layer: LayerConfig, **kwargs) -> "TTLinear":
        return cls(layer.in_modes, layer.out_modes, layer.max_ranks, **kwargs)

    @classmethod
    def from_dense(cls, linear: nn.Linear, in_modes: Sequence[int], out_modes: Sequence[int],
                   max_rank: int, *, core_std: float = 0.5) -> "TTLinear":
        """TT-SVD initialisation from a trained ``nn.Linear`` (ranks capped at ``max_rank``).

        The cores are rescaled so each has standard deviation ``core_std`` (what the 8-bit
        training format suits) and the product of the rescalings goes into ``scale``.
        """
        cores = tt.tt_svd(linear.weight.detach(), in_modes, out_modes, max_rank)
        layer = cls(in_modes, out_modes, tt.tt_ranks(cores), core_std=core_std,
                    bias=linear.bias is not None)
        scale = 1.0
        with torch.no_grad():
            for k, core in enumerate(cores):
                std = float(core.std()) if core.numel() > 1 else float(core.abs().max())
                factor = core_std / std if std > 0 else 1.0
                layer.cores[k] = nn.Parameter(core * factor)
                scale /= factor
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
        layer.scale = scale
        return layer

    @property
    def d(self) -> int:
        return len(self.in_modes)

    @property
    def in_features(self) -> int:
        return math.prod(self.in_modes)

    @property
    def out_features(self) -> int:
        return math.prod(self.out_modes)

    @property
    def ranks(self) -> tuple[int, ...]:
        return tt.tt_ranks(list(self.cores))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``self.order`` is the order low-precision training (a ``between`` hook) contracts in;
        without a hook the order only changes the rounding, and the fastest one is taken."""
        if self.between is not None:
            y = tt.tt_matvec(x, list(self.cores), self.order, between=self.between) * self.scale
            return y if self.bias is None else y + self.bias
        y = tt.tt_matvec(x, list(self.cores), "fastest")
        return y * self.scale if self.bias is None else torch.add(self.bias, y, alpha=self.scale)

    def dense_weight(self) -> torch.Tensor:
        """``W`` as an ``(out_features, in_features)`` matrix (for checks and baselines)."""
        return tt.tt_to_dense(list(self.cores)) * self.scale

    def choose_order(self) -> tt.Order:
        """The order that keeps the least for the backward pass (then the fewest MACs).

        Training memory is dominated by the stage inputs autograd keeps, one per stage, so
        training contracts in the order whose stage inputs add up to the least
        (:func:`models.tt.training_order`).
        """
        return tt.training_order(self.in_modes, self.out_modes, self.ranks)

    def macs(self) -> int:
        """Multiply-accumulates of one input vector in the current order."""
        return tt.tt_macs(self.in_modes, self.out_modes, self.ranks, self.order)

    @torch.no_grad()
    def prune(self, keep: Sequence[torch.Tensor]) -> None:
        """Shrink the cores to the kept rank slices (one index tensor per inner bond).

        The cores really get smaller (new, smaller parameters); the contraction order is chosen
        again for the new ranks. ``scale`` is unchanged, so the layer's function only loses the
        dropped slices' contribution.
        """
        from edge3u.train.rank_prior import prune_cores

        pruned = prune_cores(list(self.cores), keep)
        for k, core in enumerate(pruned):
            self.cores[k] = nn.Parameter(core)
        self.order = self.choose_order()

    def extra_repr(self) -> str:
        return (f"in_modes={list(self.in_modes)}, out_modes={list(self.out_modes)}, "
                f"ranks={list(self.ranks)}, order={list(self.order)}")
