"""Low-precision, stateless SGD: fixed-point weights, block-floating-point gradient accumulators.

Each parameter lives on a fixed-point grid (8-bit, or 4-bit, cores; 8-bit biases). Micro-batch
gradients are added into a ``grad_bits``-bit block-floating-point accumulator per parameter (one
shared exponent per tensor, round to nearest after every addition), so gradient memory is
``grad_bits`` bits a weight whatever the micro-batch count. A step clips the accumulated gradient
to a global norm, optionally adds momentum (kept in the same accumulator format) and writes the
update back with stochastic rounding. With ``normalize`` each tensor's gradient is scaled to unit
root-mean-square first (normalized SGD): scale-free like Adam, but with no state to store.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from edge3u.train.lowprec import FixedPoint, bfp_round, round_stochastic

__all__ = ["LowPrecisionSGD"]


class LowPrecisionSGD:
    """SGD over parameter groups that each have a fixed-point format.

    Parameters
    ----------
    groups : sequence of (parameters, FixedPoint)
        The parameters and the grid each group's values are kept on.
    lr : float
    grad_bits : int
        Width of the block-floating-point gradient (and momentum) accumulators.
    momentum : float
    grad_clip : float
        Maximum global L2 norm of the accumulated gradient.
    normalize : bool
        Divide each tensor's (clipped) gradient by its root-mean-square before the step, so
        every core moves by about ``lr`` per element whatever the scale of its gradient. TT
        cores are a product: their gradients differ in scale by orders of magnitude between
        layers and ranks, which plain SGD cannot follow with one learning rate; this keeps the
        optimizer stateless (no Adam moments to store).
    """

    def __init__(self, groups: Sequence[tuple[Sequence[torch.nn.Parameter], FixedPoint]], *,
                 lr: float, grad_bits: int = 16, momentum: float = 0.0, grad_clip: float = 1.0,
                 normalize: bool = True):
        self.groups = [(list(params), fmt) for params, fmt in groups]
        self.lr, self.grad_bits, self.momentum, self.grad_clip = lr, grad_bits, momentum, grad_clip
        self.normalize = normalize
        self.accumulators: dict[int, torch.Tensor] = {}
        self.velocity: dict[int, torch.Tensor] = {}
        self.snap_to_grid(None, stochastic=False)

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return [p for params, _ in self.groups for p in params]

    def replace_parameters(self, groups) -> None:
        """Start over with new parameters (after pruning); accumulators and momentum are dropped."""
        self.groups = [(list(params), fmt) for params, fmt in groups]
        self.accumulators.clear()
        self.velocity.clear()

    @torch.no_grad()
    def snap_to_grid(self, generator, *, stochastic=True) -> None:
        for params, fmt in self.groups:
            for p in params:
                if stochastic:
                    p.copy_(round_stochastic(p, fmt, generator))
                else:
                    p.copy_(torch.clamp(torch.round(p / fmt.step), fmt.code_min,
                                        fmt.code_max) * fmt.step)

    @torch.no_grad()
    def accumulate(self) -> None:
        """Add every parameter's ``.grad`` into its accumulator and clear ``.grad``."""
        for p in self.params:
            if p.grad is None:
                continue
            acc = self.accumulators.get(id(p))
            total = p.grad if acc is None else acc + p.grad
            self.accumulators[id(p)] = bfp_round(total, self.grad_bits)
            p.grad = None

    def grad_norm(self) -> float:
        return math.sqrt(sum(float((a * a).sum()) for a in self.accumulators.values()))

    @torch.no_grad()
    def step(self, generator: torch.Generator | None,
             shrink: dict[int, torch.Tensor] | None = None) -> float:
        """Apply the accumulated gradient; returns its norm before clipping.

        ``shrink`` maps ``id(parameter)`` to the prior's precision times its weight
        (``w / lam``, broadcastable to the parameter): the Gaussian prior's pull is then taken
        as a proximal step, ``p <- p / (1 + rate * w / lam)`` after the gradient step, with the
        same per-tensor rate as the gradient. It never overshoots zero, however small ``lam``
        gets, where an explicit gradient ``w * p / lam`` would.
        """
        norm = self.grad_norm()
        factor = min(1.0, self.grad_clip / (norm + 1e-12))
        shrink = shrink or {}
        for params, fmt in self.groups:
            for p in params:
                grad = self.accumulators.pop(id(p), None)
                if grad is None:
                    continue
                grad = grad * factor
                if self.momentum:
                    v = self.velocity.get(id(p))
                    v = grad if v is None else self.momentum * v + grad
                    grad = self.velocity[id(p)] = bfp_round(v, self.grad_bits)
                rate = self.lr
                if self.normalize:
                    rate = self.lr / (float(grad.pow(2).mean().sqrt()) + 1e-12)
                value = p - rate * grad
                if id(p) in shrink:
                    value = value / (1 + rate * shrink[id(p)])
                p.copy_(round_stochastic(value, fmt, generator))
        return norm

    def state_bytes(self) -> tuple[int, int]:
        """Bytes of (gradient accumulators, optimizer state) on the device."""
        weights = sum(p.numel() for p in self.params)
        grads = math.ceil(weights * self.grad_bits / 8)
        return grads, grads if self.momentum else 0

    def state_dict(self) -> dict:
        return {"lr": self.lr,
                "velocity": [self.velocity.get(id(p)) for p in self.params]}

    def load_state_dict(self, state: dict) -> None:
        self.lr = state["lr"]
        self.velocity = {id(p): v for p, v in zip(self.params, state["velocity"]) if v is not None}
