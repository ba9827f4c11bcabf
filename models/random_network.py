"""Random integer networks of any shape: test vectors for the golden model, the schedule and the
RTL. Values are drawn so that requantized activations use their whole range instead of
saturating or collapsing to zero, which is what makes a bit-exact comparison meaningful."""

from __future__ import annotations

import math

import torch

from edge3u.models import tt
from edge3u.models.golden import IntLayer, IntNetwork, Requant

__all__ = ["random_codes", "random_network"]


def random_codes(shape, weight_bits, generator: torch.Generator) -> torch.Tensor:
    """Core codes: odd integers in ``±(2**b - 1)`` for ``b`` bits, ``-1, 0, 1`` for ternary."""
    if weight_bits == "ternary":
        return torch.randint(-1, 2, shape, generator=generator)
    levels = torch.randint(0, 1 << weight_bits, shape, generator=generator)
    return 2 * levels - ((1 << weight_bits) - 1)


def _requant(inner: int, a_max: int, c_max: int, lo: int, hi: int, g) -> Requant:
    spread = math.sqrt(inner) * max(1, a_max) * max(1, c_max) / 2
    multiplier = int(torch.randint(1 << 14, 1 << 15, (1,), generator=g))
    target = max(1, hi) / 2
    shift = max(1, math.ceil(math.log2(multiplier * spread / target)))
    return Requant(multiplier, shift, lo, hi)


def random_network(layers, *, weight_bits=2, activation_bits=4, input_bits=8,
                   seed: int = 0) -> IntNetwork:
    """A random :class:`IntNetwork`.

    Parameters
    ----------
    layers : list of (in_modes, out_modes, ranks, order)
        Ranks include the end bonds ``(1, ..., 1)``.
    weight_bits : int or "ternary"
    activation_bits : int
        Bits of the codes between stages (signed) and between layers (unsigned, after ReLU).
    seed : int
    """
    g = torch.Generator().manual_seed(seed)
    out, a_max = [], (1 << input_bits) - 1
    c_max = 1 if weight_bits == "ternary" else (1 << weight_bits) - 1
    s_lo, s_hi = -(1 << (activation_bits - 1)), (1 << (activation_bits - 1)) - 1
    u_hi = (1 << activation_bits) - 1
    for li, (n, m, r, order) in enumerate(layers):
        d = len(n)
        cores = [random_codes((r[k], n[k], m[k], r[k + 1]), weight_bits, g) for k in range(d)]
        layer_in_max = a_max
        requants, x_max = [], a_max
        for stage in tt.stages(n, m, r, order)[:-1]:
            requants.append(_requant(stage.inner, x_max, c_max, s_lo, s_hi, g))
            x_max = max(-s_lo, s_hi)
        last_inner = tt.stages(n, m, r, order)[-1].inner
        bias_mag = int(math.sqrt(last_inner) * x_max * c_max / 2)
        bias = torch.randint(-bias_mag, bias_mag + 1, (math.prod(m),), generator=g)
        hidden = li < len(layers) - 1
        out_rq = _requant(last_inner, x_max, c_max, 0, u_hi, g) if hidden else None
        out.append(IntLayer(f"layer{li}", cores, tuple(order), requants, bias, out_rq,
                            layer_in_max))
        a_max = u_hi
    return IntNetwork(out, input_bits)
