"""Low-precision number formats for on-device training.

Two formats, both stored as small integers on the device:

* :class:`FixedPoint` — ``bits``-bit two's complement (or unsigned) with ``frac_bits`` fractional
  bits: the TT cores live in it and are updated with stochastic rounding.
* block floating point — ``bits``-bit signed mantissas sharing one power-of-two exponent per
  tensor (:func:`bfp_quantize`): the activations and the intermediate results between TT stages
  are stored in it, so what the backward pass keeps is ``bits`` bits an element.

Rounding in the forward pass is round-to-nearest with a straight-through estimator in the
backward pass (:func:`fake_quant`), so gradients flow as if the rounding were the identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["int_range", "FixedPoint", "round_stochastic", "round_nearest", "fake_quant",
           "bfp_exponent", "bfp_round", "bfp_quantize", "significant_bits"]


def int_range(bits: int, signed: bool) -> tuple[int, int]:
    """The codes of a ``bits``-bit integer: two's complement if ``signed``, else unsigned."""
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


@dataclass(frozen=True)
class FixedPoint:
    """A fixed-point format: value = integer code * 2**-frac_bits.

    Parameters
    ----------
    bits : int
        Total bits of a code, sign included when ``signed``.
    frac_bits : int
        Fractional bits: the step between neighbouring values is ``2**-frac_bits``.
    signed : bool
        Two's complement codes ``-2**(bits-1) .. 2**(bits-1)-1`` if true, else ``0 .. 2**bits-1``.
    """
    bits: int
    frac_bits: int
    signed: bool = True

    def __post_init__(self):
        if not (isinstance(self.bits, int) and 1 <= self.bits <= 32):
            raise ValueError(f"FixedPoint bits must be an integer from 1 to 32, not {self.bits!r}")
        if not (isinstance(self.frac_bits, int) and 0 <= self.frac_bits <= 32):
            raise ValueError(f"FixedPoint frac_bits must be an integer from 0 to 32, "
                             f"not {self.frac_bits!r}")

    @property
    def step(self) -> float:
        return 2.0 ** -self.frac_bits

    @property
    def code_min(self) -> int:
        return int_range(self.bits, self.signed)[0]

    @property
    def code_max(self) -> int:
        return int_range(self.bits, self.signed)[1]

    @property
    def min(self) -> float:
        return self.code_min * self.step

    @property
    def max(self) -> float:
        return self.code_max * self.step

    def to_codes(self, x: torch.Tensor) -> torch.Tensor:
        """The integer codes of values already on the grid (as int32)."""
        codes = torch.round(x / self.step)
        if bool(((codes * self.step) != x).any()):
            raise ValueError(f"values are not on the {self} grid")
        return codes.to(torch.int32)


def round_nearest(x: torch.Tensor, fmt: FixedPoint) -> torch.Tensor:
    """Round to the nearest value of ``fmt`` (ties to even) and saturate."""
    return torch.clamp(torch.round(x / fmt.step), fmt.code_min, fmt.code_max) * fmt.step


def round_stochastic(x: torch.Tensor, fmt: FixedPoint,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Round down or up at random, up with probability equal to the distance from below.

    Unbiased: ``E[round_stochastic(x)] == x`` inside the range, which lets updates much smaller
    than the step accumulate over many steps.
    """
    scaled = x / fmt.step
    noise = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return torch.clamp(torch.floor(scaled + noise), fmt.code_min, fmt.code_max) * fmt.step


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, quantized):
        return quantized

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def fake_quant(x: torch.Tensor, fmt: FixedPoint) -> torch.Tensor:
    """``round_nearest`` in the forward pass, the identity in the backward pass.

    Saturation is not masked in the gradient either: the activations' formats are chosen wide
    enough that saturation is rare, and masking would make autograd keep a mask per element.
    """
    return _StraightThrough.apply(x, round_nearest(x.detach(), fmt))


def bfp_exponent(x: torch.Tensor, bits: int, dim: int | None = None) -> torch.Tensor:
    """Shared exponents ``e`` that fit max|x| into ``bits``-bit signed mantissas ``* 2**e``.

    One exponent for the whole tensor (``dim=None``, a 0-d tensor) or one per index of ``dim``
    (shaped to broadcast against ``x``). An all-zero block gets exponent 0.
    """
    mag = x.detach().abs()
    if dim is None:
        peak = mag.max() if mag.numel() else mag.new_zeros(())
    else:
        dims = [i for i in range(x.ndim) if i != dim % x.ndim]
        peak = mag.amax(dim=dims, keepdim=True) if dims else mag
    limit = (1 << (bits - 1)) - 1
    exponent = torch.ceil(torch.log2(peak / limit))
    return torch.where(peak > 0, exponent, torch.zeros_like(exponent))


def bfp_round(x: torch.Tensor, bits: int, dim: int | None = None) -> torch.Tensor:
    """Round to ``bits``-bit block floating point, to nearest (no gradient handling)."""
    step = torch.exp2(bfp_exponent(x, bits, dim))
    limit = (1 << (bits - 1)) - 1
    return torch.clamp(torch.round(x.detach() / step), -limit - 1, limit) * step


def bfp_quantize(x: torch.Tensor, bits: int, dim: int | None = None) -> torch.Tensor:
    """Fake-quantize to ``bits``-bit block floating point: one exponent per index of ``dim``.

    With ``dim`` the batch axis every sample has its own exponent, so the result does not
    depend on which samples share a batch. Round-to-nearest forward, straight-through backward.
    """
    return _StraightThrough.apply(x, bfp_round(x, bits, dim))


def significant_bits(x: torch.Tensor) -> int:
    """The most significant bits any element of ``x`` needs (sign not counted); 64 if not float."""
    if not x.is_floating_point():
        return 64
    mantissa, _ = torch.frexp(x.detach().abs())
    for bits in range(0, 25):
        scaled = mantissa * (1 << bits)
        if bool((scaled == torch.round(scaled)).all()):
            return bits
    return 64
