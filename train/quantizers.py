"""Ultra-low-bit quantizers for quantization-aware training (QAT) of tensor-train cores.

Weights are quantized per tensor (one scale per TT core) to a :class:`WeightFormat`:

* ``bits`` 1 to 4 — *mid-rise*, symmetric, no zero: the codes are the odd integers
  ``-(2**b - 1), ..., -3, -1, 1, 3, ..., 2**b - 1`` and the value is ``code * scale``;
  the ROM stores the level index ``(code + 2**b - 1) // 2`` in ``b`` bits (1 bit is binary ±1).
* ``"ternary"`` — codes ``-1, 0, 1`` (mid-tread), value ``code * scale``; the ROM stores the
  2-bit two's complement code.

Activations are quantized per tensor to ``bits``-bit mid-tread codes, unsigned after a ReLU
(``0 .. 2**bits - 1``) or signed between TT stages (``-2**(bits-1) .. 2**(bits-1) - 1``).

Every quantizer keeps ``forward()`` — the dequantized value, with a straight-through
estimator — apart from ``to_int()`` — the integer codes and the scale the hardware stores,
with ``codes.to(x.dtype) * scale == forward(x)`` exactly. Three methods, named as in
``quant.method`` of the configuration:

* ``"ul2q"`` — µL2Q (Gong, Hao, Chen et al., IJCNN 2019): the scale is the step of the
  L2-optimal uniform quantizer for a unit Gaussian (:data:`UL2Q_STEP`) times the RMS of the
  weights; activations by a running-max observer.
* ``"uniform"`` — min-max: the outermost level lands on max|w|; activations as for ``"ul2q"``.
* ``"lsq"`` — learned step size (Esser et al., ICLR 2020) for weights and activations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import ndtr
from torch import nn

from edge3u.config import QUANT_METHODS, QUANT_WEIGHT_BITS
from edge3u.train.lowprec import int_range

__all__ = ["WeightFormat", "WEIGHT_FORMATS", "gaussian_mse", "gaussian_optimal_step", "UL2Q_STEP",
           "ul2q_scale", "fake_quantize", "UL2QWeight", "MinMaxWeight", "LSQWeight",
           "MaxObserverActivation", "LSQActivation", "make_weight_quantizer",
           "make_activation_quantizer", "keep_scales_positive", "MIN_LEARNED_SCALE"]

MIN_LEARNED_SCALE = 1e-6
"""The smallest scale a learned step may take: :func:`keep_scales_positive` projects onto it."""


@dataclass(frozen=True)
class WeightFormat:
    """The integer codes of a quantized weight and how a ROM stores them.

    Parameters
    ----------
    bits : int or str
        1, 2, 3 or 4 for ``2**bits`` mid-rise levels (odd codes, no zero), or ``"ternary"``
        for the codes ``-1, 0, 1``.
    """
    bits: int | str

    def __post_init__(self):
        if not any(self.bits == b and type(self.bits) is type(b) for b in QUANT_WEIGHT_BITS):
            valid = ", ".join(map(repr, QUANT_WEIGHT_BITS[:-1])) + f" or {QUANT_WEIGHT_BITS[-1]!r}"
            raise ValueError(f"weight bits must be {valid}, not {self.bits!r}")

    @property
    def ternary(self) -> bool:
        return self.bits == "ternary"

    @property
    def code_max(self) -> int:
        """The largest code; the smallest is ``-code_max``."""
        return 1 if self.ternary else (1 << self.bits) - 1

    @property
    def code_step(self) -> int:
        """The distance between neighbouring codes: 2 for mid-rise, 1 for ternary."""
        return 1 if self.ternary else 2

    @property
    def codes(self) -> tuple[int, ...]:
        """All codes, sorted."""
        return tuple(range(-self.code_max, self.code_max + 1, self.code_step))

    @property
    def storage_bits(self) -> int:
        """Bits a ROM word holds per weight."""
        return 2 if self.ternary else self.bits

    def to_index(self, codes: torch.Tensor) -> torch.Tensor:
        """The ROM words (int32) of integer ``codes``: level index, or two's complement."""
        _check_integer("codes", codes)
        if not bool(torch.isin(codes, torch.tensor(self.codes, device=codes.device)).all()):
            raise ValueError(f"codes outside {self.codes}")
        codes = codes.to(torch.int32)
        return codes & 3 if self.ternary else (codes + self.code_max) // 2

    def from_index(self, indices: torch.Tensor) -> torch.Tensor:
        """The codes (int32) of ROM words ``indices``; the inverse of :meth:`to_index`."""
        _check_integer("indices", indices)
        valid = (indices >= 0) & (indices < (1 << self.storage_bits))
        if self.ternary:
            valid &= indices != 2
        if not bool(valid.all()):
            raise ValueError(f"indices are not ROM words of the {self.bits!r}-bit weight format")
        indices = indices.to(torch.int32)
        return torch.where(indices >= 2, indices - 4, indices) if self.ternary \
            else 2 * indices - self.code_max

    def round_codes(self, x: torch.Tensor) -> torch.Tensor:
        """The nearest code to each element of ``x`` (in units of scale), as ``x``'s dtype.

        Mid-rise rounds to the nearest odd integer, ``2*floor(x/2) + 1``; ternary rounds to the
        nearest integer. Both saturate at ``±code_max``.
        """
        codes = torch.floor(x + 0.5) if self.ternary else 2 * torch.floor(x / 2) + 1
        return torch.clamp(codes, -self.code_max, self.code_max)


WEIGHT_FORMATS = tuple(WeightFormat(bits) for bits in QUANT_WEIGHT_BITS)


def _check_integer(name: str, x: torch.Tensor) -> None:
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, not {x.dtype}")


def _as_format(fmt: WeightFormat | int | str) -> WeightFormat:
    return fmt if isinstance(fmt, WeightFormat) else WeightFormat(fmt)


# -- the L2-optimal step for a unit Gaussian ------------------------------------------------------

def gaussian_mse(fmt: WeightFormat, step: float) -> float:
    """E[(X - Q(X))**2] for X ~ N(0, 1) and the uniform quantizer of ``fmt`` with ``step``.

    The levels are ``code * step / code_step`` (``±step/2, ±3*step/2, ...`` for mid-rise,
    ``0, ±step`` for ternary) and every X goes to the nearest level. Closed form per cell
    ``[a, b]`` with level ``L``:
    ``(Φ(b) - Φ(a)) (1 + L²) + a φ(a) - b φ(b) - 2 L (φ(a) - φ(b))``.
    """
    levels = np.asarray(fmt.codes, dtype=float) * (step / fmt.code_step)
    edges = np.concatenate([[-np.inf], (levels[1:] + levels[:-1]) / 2, [np.inf]])
    finite = np.where(np.isfinite(edges), edges, 0.0)
    pdf = np.where(np.isfinite(edges), np.exp(-finite ** 2 / 2) / math.sqrt(2 * math.pi), 0.0)
    cdf, x_pdf = ndtr(edges), finite * pdf  # x φ(x) -> 0 at ±inf
    mass = cdf[1:] - cdf[:-1]
    return float(np.sum(mass * (1 + levels ** 2) + x_pdf[:-1] - x_pdf[1:]
                        - 2 * levels * (pdf[:-1] - pdf[1:])))


def gaussian_optimal_step(fmt: WeightFormat) -> float:
    """The step (distance between neighbouring levels) minimising :func:`gaussian_mse`."""
    result = minimize_scalar(lambda step: gaussian_mse(fmt, step), bounds=(1e-3, 4.0),
                             method="bounded", options={"xatol": 1e-10})
    return float(result.x)


UL2Q_STEP: dict[WeightFormat, float] = {fmt: gaussian_optimal_step(fmt) for fmt in WEIGHT_FORMATS}


def ul2q_scale(fmt: WeightFormat) -> float:
    """The µL2Q scale (value of one code unit) per unit of σ: ``UL2Q_STEP[fmt] / code_step``."""
    return UL2Q_STEP[fmt] / fmt.code_step


# -- straight-through fake quantization -----------------------------------------------------------

class _FakeQuantize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale, round_codes, code_min, code_max, grad_scale):
        scaled = x / scale
        codes = round_codes(scaled)
        inside = (scaled >= code_min) & (scaled <= code_max)
        if ctx.needs_input_grad[1]:
            ctx.save_for_backward(inside, scaled, codes)
        else:  # a scale without gradient (µL2Q, min-max, observers) needs only the mask
            ctx.save_for_backward(inside)
        ctx.grad_scale = grad_scale
        return codes * scale

    @staticmethod
    def backward(ctx, grad):
        inside, *rest = ctx.saved_tensors
        grad_x = grad * inside if ctx.needs_input_grad[0] else None
        grad_scale = None
        if ctx.needs_input_grad[1]:
            scaled, codes = rest
            d_value = torch.where(inside, codes - scaled, codes)  # LSQ: round(x) - x, or ±bound
            grad_scale = (grad * d_value).sum() * ctx.grad_scale
        return grad_x, grad_scale, None, None, None, None


def fake_quantize(x: torch.Tensor, scale: torch.Tensor,
                  round_codes: Callable[[torch.Tensor], torch.Tensor],
                  code_min: int, code_max: int, grad_scale: float = 1.0) -> torch.Tensor:
    """``round_codes(x / scale) * scale`` with LSQ's straight-through gradients.

    The gradient reaches ``x`` unchanged where ``code_min <= x / scale <= code_max`` and is
    zero outside. If ``scale`` (a 0-d tensor) needs a gradient it gets
    ``grad_scale * sum(grad * d)`` with ``d = code - x / scale`` inside and ``d = code`` (the
    saturated bound) outside: the rounding is treated as the identity (Esser et al., eq. 3).
    """
    return _FakeQuantize.apply(x, scale, round_codes, code_min, code_max, grad_scale)


def _floor(scale: torch.Tensor) -> torch.Tensor:
    # an all-zero tensor must not divide by zero
    return scale.clamp_min(torch.finfo(scale.dtype).tiny)


# -- weights --------------------------------------------------------------------------------------

class _WeightQuantizer(nn.Module):
    def __init__(self, fmt: WeightFormat | int | str):
        super().__init__()
        self.fmt = _as_format(fmt)

    def _scale(self, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _grad_scale(self, w: torch.Tensor) -> float:
        return 1.0

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """The dequantized weights, ``code * scale``; straight-through gradient."""
        return fake_quantize(w, self._scale(w), self.fmt.round_codes, -self.fmt.code_max,
                             self.fmt.code_max, self._grad_scale(w))

    @torch.no_grad()
    def scale_for(self, w: torch.Tensor) -> float:
        """The scale (value of one code unit) ``w`` is quantized with."""
        return float(self._scale(w))

    @torch.no_grad()
    def to_int(self, w: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The codes (int32, see :attr:`WeightFormat.codes`) and the scale of ``w``."""
        scale = self._scale(w)
        return self.fmt.round_codes(w / scale).to(torch.int32), float(scale)

    def extra_repr(self) -> str:
        return f"bits={self.fmt.bits!r}"


class UL2QWeight(_WeightQuantizer):
    """µL2Q: ``scale = ul2q_scale(fmt) * σ``, σ the root-mean-square of the weights.

    σ is taken from the current weights at every call and detached. The mean is not
    subtracted: a per-core offset would add a rank-one correction to every TT contraction that
    the hardware would have to compute, and the cores are close to zero-mean anyway.

    Parameters
    ----------
    fmt : WeightFormat, int or str
        The weight format (or its ``bits``).
    """

    def _scale(self, w):
        return _floor(ul2q_scale(self.fmt) * w.detach().square().mean().sqrt())


class MinMaxWeight(_WeightQuantizer):
    """Min-max baseline: the outermost level lands on max|w|, ``scale = max|w| / code_max``.

    For ternary this puts ±1 on max|w| (plain min-max), so most of a bell-shaped core
    rounds to 0.

    Parameters
    ----------
    fmt : WeightFormat, int or str
        The weight format (or its ``bits``).
    """

    def _scale(self, w):
        return _floor(w.detach().abs().max() / self.fmt.code_max)


def _lsq_init(x: torch.Tensor, positive_levels: int, code_step: int) -> float:
    # LSQ: step = 2 mean|x| / sqrt(Q_P), Q_P the number of positive levels; scale = step / code_step
    return 2 * float(x.detach().abs().mean()) / math.sqrt(positive_levels) / code_step


class LSQWeight(_WeightQuantizer):
    """Learned step size: the scale is a parameter trained with the weights.

    Initialised as LSQ's ``step = 2 mean|w| / sqrt(Q_P)`` with ``Q_P`` the number of positive
    levels (``2**(b-1)`` mid-rise, 1 ternary), so ``scale = step / code_step``: for 1 bit that
    is mean|w|, the L1-optimal binary scale. Its gradient is scaled by
    ``1 / sqrt(numel * code_max)``.

    Parameters
    ----------
    fmt : WeightFormat, int or str
        The weight format (or its ``bits``).
    init : Tensor
        The weights the scale starts from.

    Members
    -------
    learned_scale : Parameter
        The 0-d scale.
    """

    def __init__(self, fmt: WeightFormat | int | str, init: torch.Tensor):
        super().__init__(fmt)
        positive = sum(code > 0 for code in self.fmt.codes)
        start = max(_lsq_init(init, positive, self.fmt.code_step), torch.finfo(torch.float32).tiny)
        self.learned_scale = nn.Parameter(torch.tensor(start))

    @property
    def scale(self) -> float:
        return float(self.learned_scale.detach())

    def _scale(self, w):
        return self.learned_scale.to(w.dtype)

    def _grad_scale(self, w):
        return 1 / math.sqrt(w.numel() * self.fmt.code_max)


# -- activations ----------------------------------------------------------------------------------

class _ActivationQuantizer(nn.Module):
    def __init__(self, bits: int, signed: bool):
        super().__init__()
        if not (isinstance(bits, int) and not isinstance(bits, bool) and 2 <= bits <= 8):
            raise ValueError(f"activation bits must be an integer from 2 to 8, not {bits!r}")
        if not isinstance(signed, bool):
            raise ValueError(f"signed must be True or False, not {signed!r}")
        self.bits, self.signed = bits, signed

    @property
    def code_min(self) -> int:
        return int_range(self.bits, self.signed)[0]

    @property
    def code_max(self) -> int:
        return int_range(self.bits, self.signed)[1]

    @property
    def scale(self) -> float:
        """The current scale (value of one code unit)."""
        return float(self._current_scale(torch.float32).detach())

    def set_scale(self, scale: float) -> None:
        """Fix the scale (value of one code unit) to ``scale`` > 0."""
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"an activation scale must be a positive finite number, not {scale!r}")
        self._set_scale(scale)

    def _set_scale(self, scale: float) -> None:
        raise NotImplementedError

    def _round_codes(self, x: torch.Tensor) -> torch.Tensor:
        # round half up, as the hardware's requantization does (docs/numerics.md)
        return torch.clamp(torch.floor(x + 0.5), self.code_min, self.code_max)

    def _observe(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _current_scale(self, dtype: torch.dtype) -> torch.Tensor:
        raise NotImplementedError

    def _grad_scale(self, x: torch.Tensor) -> float:
        return 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The fake-quantized activations, ``code * scale``; straight-through gradient."""
        self._observe(x)
        return fake_quantize(x, self._current_scale(x.dtype), self._round_codes, self.code_min,
                             self.code_max, self._grad_scale(x))

    @torch.no_grad()
    def to_int(self, x: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The codes (int32) and the current scale of ``x``; observes nothing."""
        scale = self._current_scale(x.dtype)
        return self._round_codes(x / scale).to(torch.int32), float(scale)

    def _uncalibrated(self) -> RuntimeError:
        return RuntimeError(f"{type(self).__name__} has no scale yet: pass it a batch first")

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed={self.signed}"


class MaxObserverActivation(_ActivationQuantizer):
    """``scale = running_max / code_max``, the running max an EMA of the batch max.

    The first batch, in either mode, sets the running max; after that training-mode batches
    update it, ``running_max = momentum * running_max + (1 - momentum) * batch_max``, and
    eval mode leaves it frozen. The batch max is max|x| if signed, else max(x, 0).

    Parameters
    ----------
    bits : int
        2 to 8.
    signed : bool
        Two's complement codes if true, else unsigned (negatives clamp to 0).
    momentum : float
        Weight of the old running max, in [0, 1).

    Members
    -------
    running_max : buffer
        The 0-d running max (float32).
    calibrated : buffer
        Whether a batch has set the running max.
    """

    def __init__(self, bits: int, signed: bool, momentum: float = 0.9):
        super().__init__(bits, signed)
        if not (isinstance(momentum, (int, float)) and 0 <= momentum < 1):
            raise ValueError(f"momentum must be a number in [0, 1), not {momentum!r}")
        self.momentum = float(momentum)
        self.register_buffer("running_max", torch.tensor(0.0))
        self.register_buffer("calibrated", torch.tensor(False))

    @torch.no_grad()
    def _observe(self, x):
        batch_max = (x.abs() if self.signed else x.clamp_min(0)).max().float()
        if not bool(self.calibrated):
            self.running_max.copy_(batch_max)
            self.calibrated.fill_(True)
        elif self.training:
            self.running_max.mul_(self.momentum).add_((1 - self.momentum) * batch_max)

    @torch.no_grad()
    def _set_scale(self, scale):
        self.running_max.fill_(scale * self.code_max)
        self.calibrated.fill_(True)

    def _current_scale(self, dtype):
        if not bool(self.calibrated):
            raise self._uncalibrated()
        return _floor(self.running_max / self.code_max).to(dtype)


class LSQActivation(_ActivationQuantizer):
    """Learned step size for activations, initialised from the first batch.

    The first batch sets ``scale = 2 mean|x| / sqrt(code_max)`` (LSQ's init); the scale's
    gradient is scaled by ``1 / sqrt(features * code_max)``, ``features`` the elements of one
    sample (dimension 0 is the batch).

    Parameters
    ----------
    bits : int
        2 to 8.
    signed : bool
        Two's complement codes if true, else unsigned (negatives clamp to 0).

    Members
    -------
    learned_scale : Parameter
        The 0-d scale.
    initialized : buffer
        Whether the first batch has set the scale.
    """

    def __init__(self, bits: int, signed: bool):
        super().__init__(bits, signed)
        self.learned_scale = nn.Parameter(torch.tensor(1.0))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def _observe(self, x):
        if not bool(self.initialized):
            start = 2 * x.abs().mean().float() / math.sqrt(self.code_max)
            self.learned_scale.copy_(_floor(start))
            self.initialized.fill_(True)

    @torch.no_grad()
    def _set_scale(self, scale):
        self.learned_scale.fill_(scale)
        self.initialized.fill_(True)

    def _current_scale(self, dtype):
        if not bool(self.initialized):
            raise self._uncalibrated()
        return self.learned_scale.to(dtype)

    def _grad_scale(self, x):
        features = x[0].numel() if x.ndim >= 2 else x.numel()
        return 1 / math.sqrt(features * self.code_max)


@torch.no_grad()
def keep_scales_positive(module: nn.Module) -> None:
    """Project every learned scale in ``module`` onto ``>= MIN_LEARNED_SCALE``.

    An optimizer step can carry a learned step size (LSQ) through zero, and a scale that is not
    positive has no integer requantization. Call this after every optimizer step: it changes
    no scale at or above the floor, and a clamped scale still gets its LSQ gradient, so it can
    grow again.
    """
    for quantizer in module.modules():
        if isinstance(quantizer, (LSQWeight, LSQActivation)):
            quantizer.learned_scale.clamp_(min=MIN_LEARNED_SCALE)


# -- factories ------------------------------------------------------------------------------------

def _check_method(method: str) -> None:
    if method not in QUANT_METHODS:
        valid = ", ".join(map(repr, QUANT_METHODS))
        raise ValueError(f"quantization method must be one of {valid}, not {method!r}")


def make_weight_quantizer(method: str, fmt: WeightFormat | int | str,
                          init: torch.Tensor | None = None) -> nn.Module:
    """The weight quantizer of ``method``; ``init`` (the weights) is needed by ``"lsq"`` only."""
    _check_method(method)
    if method == "ul2q":
        return UL2QWeight(fmt)
    if method == "uniform":
        return MinMaxWeight(fmt)
    if init is None:
        raise ValueError("the 'lsq' weight quantizer needs init, the weights its scale starts from")
    return LSQWeight(fmt, init)


def make_activation_quantizer(method: str, bits: int, signed: bool) -> nn.Module:
    """The activation quantizer of ``method``: a max observer, or LSQ for ``"lsq"``."""
    _check_method(method)
    return LSQActivation(bits, signed) if method == "lsq" else MaxObserverActivation(bits, signed)
