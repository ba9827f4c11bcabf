"""Training-memory accounting: parameters, gradients, optimizer state and peak activations.

Activations are *measured*, not estimated: the forward and loss run under
``torch.autograd.graph.saved_tensors_hooks`` and every tensor autograd keeps for the backward pass
is recorded (views of one storage counted once). Running at two batch sizes separates what grows
with the batch (activations) from what does not (parameter views autograd also keeps).
Each saved activation is charged at the bits its values really need: a tensor whose values all
fit a ``bits``-bit mantissa (fixed or block floating point) costs ``bits`` bits an element,
anything else its full dtype (4 bytes for float32, 8 for an int64 label). So a low-precision
claim holds only where the forward pass really quantized.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch

from edge3u.train.lowprec import significant_bits

__all__ = ["TrainingMemory", "saved_activation_bits", "activation_bytes_per_sample",
           "stored_bits"]


@dataclass(frozen=True)
class TrainingMemory:
    """Bytes a training step needs; ``total`` is what the reduction ratio compares."""
    params: int
    grads: int
    optimizer: int
    activations: int
    other: int = 0

    @property
    def total(self) -> int:
        return self.params + self.grads + self.optimizer + self.activations + self.other

    def as_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


def stored_bits(t: torch.Tensor, bits: int) -> int:
    """Bits an element of saved tensor ``t`` costs: ``bits`` if every value fits a ``bits``-bit
    (block-)floating-point mantissa, else the dtype's full width.

    A tensor with negative values needs ``bits - 1`` significant bits plus the sign; a
    non-negative one may use all ``bits``.
    """
    if t.is_floating_point() and t.numel():
        budget = bits if bool((t >= 0).all()) else bits - 1
        if significant_bits(t) <= budget:
            return bits
    return t.element_size() * 8


def _distinct_elements(t: torch.Tensor) -> int:
    """Elements a view really addresses: an expanded (stride-0) axis holds one copy, not many."""
    if t.numel() == 0:
        return 0
    span = 1 + sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()) if stride)
    return min(t.numel(), span)


def saved_activation_bits(step: Callable[[], torch.Tensor], bits: int) -> dict[int, int]:
    """Run ``step`` (forward + loss) and tally what autograd saves: ``{bits: elements}``.

    A saved tensor is charged ``bits`` if its values fit a ``bits``-bit block-floating-point
    grid, else its dtype's full width. Views of one storage are counted once, at the size of
    the largest (a slice of a larger input costs what the slice holds).
    """
    seen: dict[int, tuple[int, int]] = {}

    def pack(t: torch.Tensor):
        # views of one storage (reshapes, transposes) are one buffer: keep the largest view
        key = t.untyped_storage().data_ptr()
        elements = _distinct_elements(t)
        if key not in seen or seen[key][1] < elements:
            seen[key] = (stored_bits(t, bits), elements)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    tally: dict[int, int] = {}
    for width, elements in seen.values():
        tally[width] = tally.get(width, 0) + elements
    return tally


def activation_bytes_per_sample(run: Callable[[int], torch.Tensor], bits: int) -> float:
    """Bytes of saved activations per sample; ``run(batch)`` is forward + loss on ``batch`` samples.

    Measured as half the difference between batch 4 and batch 2, so parameter views autograd
    keeps (which do not grow with the batch) are not charged as activations, and both runs take
    the same (batched) code path.
    """
    two = saved_activation_bits(lambda: run(2), bits)
    four = saved_activation_bits(lambda: run(4), bits)
    total = 0.0
    for width in set(two) | set(four):
        total += (four.get(width, 0) - two.get(width, 0)) * width / 8
    return total / 2

