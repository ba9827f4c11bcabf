"""The bit-exact integer golden model: the specification of the accelerator.

Everything here is integer arithmetic on ``int64`` tensors; ``docs/numerics.md`` states the same
rules in prose. A layer is a tensor-train matrix whose ``d`` stages run in the layer's stage
order (the order the hardware runs them). Per stage::

    acc   = GEMM(a_in, C_k)                          exact; fits acc_bits (checked)
    a_out = clamp((acc * m + 2**(s-1)) >> s, lo, hi)   requantization, between stages

After the last stage the bias (already in the accumulator's units) is added; a hidden layer then
requantizes with ReLU (``lo = 0``) to unsigned activations, the last layer keeps the integer
logits and the prediction is their argmax (lowest index on ties).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from edge3u.models import tt

__all__ = ["Requant", "IntLayer", "IntNetwork", "requant_from_scale", "int_layer_forward",
           "int_forward", "int_predict", "MULTIPLIER_BITS"]

MULTIPLIER_BITS = 15


@dataclass(frozen=True)
class Requant:
    """``y = clamp((x * multiplier + 2**(shift-1)) >> shift, lo, hi)``: round half up, saturate.

    ``multiplier`` is an unsigned ``MULTIPLIER_BITS``-bit integer and ``shift >= 1``, so
    ``multiplier / 2**shift`` approximates a positive real scale factor.
    """
    multiplier: int
    shift: int
    lo: int
    hi: int

    def __post_init__(self):
        if not (0 < self.multiplier < (1 << MULTIPLIER_BITS)):
            raise ValueError(f"requant multiplier must be in 1 .. 2**{MULTIPLIER_BITS} - 1, "
                             f"not {self.multiplier}")
        if not (1 <= self.shift <= 62):
            raise ValueError(f"requant shift must be in 1 .. 62, not {self.shift}")
        if self.lo > self.hi:
            raise ValueError(f"requant range lo {self.lo} > hi {self.hi}")

    @property
    def scale(self) -> float:
        return self.multiplier / 2 ** self.shift

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        rounded = (x * self.multiplier + (1 << (self.shift - 1))) >> self.shift
        return torch.clamp(rounded, self.lo, self.hi)


def requant_from_scale(scale: float, lo: int, hi: int) -> Requant:
    """The ``Requant`` whose ``multiplier / 2**shift`` is nearest ``scale`` (> 0), with the
    multiplier normalised to use all ``MULTIPLIER_BITS`` bits."""
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"requant scale must be a positive finite number, not {scale!r}")
    mantissa, exponent = math.frexp(scale)  # scale = mantissa * 2**exponent, 0.5 <= mantissa < 1
    multiplier = round(mantissa * (1 << MULTIPLIER_BITS))
    shift = MULTIPLIER_BITS - exponent
    if multiplier == 1 << MULTIPLIER_BITS:
        multiplier //= 2
        shift -= 1
    if shift < 1:
        raise ValueError(f"requant scale {scale} is too large (needs shift {shift} < 1)")
    return Requant(multiplier, shift, lo, hi)


@dataclass(frozen=True)
class IntLayer:
    """One integer TT layer.

    Parameters
    ----------
    name : str
    cores : list of int64 tensors
        Integer core values ``C_k`` of shape ``(r_{k-1}, n_k, m_k, r_k)`` (the codes, not ROM
        indices).
    order : tuple of int
        Stage order.
    stage_requant : list of Requant
        One per stage but the last, in stage order.
    bias : int64 tensor
        ``(out_features,)``, in the units of the last stage's accumulator.
    out_requant : Requant or None
        Requantization of the layer output (with ``lo = 0`` it is also the ReLU); None keeps the
        integer accumulator (logits).
    in_max : int
        Largest magnitude of the layer's input codes (for the accumulator widths).
    """
    name: str
    cores: list
    order: tuple
    stage_requant: list
    bias: torch.Tensor
    out_requant: Requant | None
    in_max: int
    in_modes: tuple = field(init=False)
    out_modes: tuple = field(init=False)

    def __post_init__(self):
        tt.tt_ranks(self.cores)  # validates that neighbouring cores agree on their bonds
        d = len(self.cores)
        object.__setattr__(self, "order", tt.check_order(tuple(self.order), d))
        object.__setattr__(self, "in_modes", tuple(int(c.shape[1]) for c in self.cores))
        object.__setattr__(self, "out_modes", tuple(int(c.shape[2]) for c in self.cores))
        if len(self.stage_requant) != d - 1:
            raise ValueError(f"layer {self.name!r}: {d} stages need {d - 1} stage requantizers, "
                             f"not {len(self.stage_requant)}")
        if tuple(self.bias.shape) != (math.prod(self.out_modes),):
            raise ValueError(f"layer {self.name!r}: bias shape {tuple(self.bias.shape)} is not "
                             f"({math.prod(self.out_modes)},)")
        for k, core in enumerate(self.cores):
            if core.dtype != torch.int64:
                raise ValueError(f"layer {self.name!r}: core {k} must be int64, not {core.dtype}")

    @property
    def ranks(self) -> tuple[int, ...]:
        return tt.tt_ranks(self.cores)

    def stages(self) -> list[tt.Stage]:
        return tt.stages(self.in_modes, self.out_modes, self.ranks, self.order)

    def accumulator_bits(self) -> list[int]:
        """Signed width that holds every stage's accumulator in the worst case (bias included
        on the last stage)."""
        bits, a_max = [], self.in_max
        for i, (stage, k) in enumerate(zip(self.stages(), self.order)):
            worst = stage.inner * a_max * int(self.cores[k].abs().max())
            if i == len(self.order) - 1:
                worst += int(self.bias.abs().max()) if self.bias.numel() else 0
            else:
                rq = self.stage_requant[i]
                a_max = max(abs(rq.lo), abs(rq.hi))
            bits.append(max(1, worst).bit_length() + 1)
        return bits


@dataclass(frozen=True)
class IntNetwork:
    """The integer network: layers in sequence; the input is ``input_bits``-bit unsigned codes."""
    layers: list
    input_bits: int = 8


def _check_width(acc: torch.Tensor, bits: int, where: str) -> torch.Tensor:
    limit = 1 << (bits - 1)
    if acc.numel() and (int(acc.max()) >= limit or int(acc.min()) < -limit):
        raise OverflowError(f"{where}: accumulator exceeds its {bits}-bit worst-case width")
    return acc


def int_layer_forward(x: torch.Tensor, layer: IntLayer, *, return_stages: bool = False):
    """Integer forward of one layer: ``x`` int64 ``(B, N)`` codes -> output codes (or logits).

    With ``return_stages`` also returns every stage's requantized output (the last one is the
    accumulator plus bias) as ``(B, features)`` int64 tensors, in stage order.
    """
    if x.dtype != torch.int64:
        raise ValueError(f"layer {layer.name!r}: input must be int64 codes, not {x.dtype}")
    widths = layer.accumulator_bits()
    seen = []

    def between(h: torch.Tensor) -> torch.Tensor:
        i = len(seen)
        _check_width(h, widths[i], f"layer {layer.name!r} stage {i}")
        out = layer.stage_requant[i].apply(h)
        seen.append(out.t())
        return out

    acc = tt.tt_matvec(x, layer.cores, layer.order, between=between) + layer.bias
    _check_width(acc, widths[-1], f"layer {layer.name!r} stage {len(widths) - 1}")
    out = acc if layer.out_requant is None else layer.out_requant.apply(acc)
    if return_stages:
        return out, seen + [acc]
    return out


def int_forward(pixels: torch.Tensor, net: IntNetwork, *, return_stages: bool = False):
    """Logits (int64) of pixel codes ``(B, N)``; with ``return_stages`` also per layer the list
    of stage outputs (see :func:`int_layer_forward`) and the layer output."""
    x = pixels.to(torch.int64)
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= 1 << net.input_bits):
        raise ValueError(f"input codes must be {net.input_bits}-bit unsigned, got "
                         f"{int(x.min())} .. {int(x.max())}")
    trace = {}
    for layer in net.layers:
        if return_stages:
            x, stages = int_layer_forward(x, layer, return_stages=True)
            trace[layer.name] = {"stages": stages, "output": x}
        else:
            x = int_layer_forward(x, layer)
    return (x, trace) if return_stages else x


def int_predict(pixels: torch.Tensor, net: IntNetwork) -> torch.Tensor:
    """The class of every image: argmax of the integer logits, lowest index on ties."""
    return torch.argmax(int_forward(pixels, net), dim=1)
