"""Random integer networks of any shape: test vectors for the golden model, the schedule and the
RTL. Values are drawn so that requantized activations use their whole range instead of
saturating or collapsing to zero, which is what makes a bit-exact comparison meaningful."""

from __future__ import annotations

import math

import torch

from edge3u.models import tt
from edge3u.models.golden import IntLayer, IntNetwork, Requant

__all__ = ["random_codes", "random_network", "random_case", "random_design"]


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


def _factor(n: int, k: int, rnd) -> list[int]:
    out, m, p = [1] * k, n, 2
    while m > 1:
        while m % p == 0:
            out[rnd.randrange(k)] *= p
            m //= p
        p += 1
    return out


def random_case(seed: int):
    """A random, schedulable accelerator configuration for verification: 1–3 layers of 2–4
    cores with random non-square modes and ranks 1–4, a PE array of 1–4 × 2–9 PEs, weight bits
    1–4 or ternary, activation bits 2–8. Returns ``(layers, rows, cols, requant_lanes,
    weight_bits, activation_bits)`` with ``layers`` as for :func:`random_network` (orders chosen
    for the array by :func:`edge3u.models.schedule.choose_orders`). The same seed gives the
    same case."""
    import random

    from edge3u.models import schedule

    rnd = random.Random(seed)
    while True:
        n_layers = rnd.choice([1, 2, 2, 3])
        feats = [rnd.choice([12, 16, 18, 24, 30, 36])]
        feats += [rnd.choice([4, 6, 8, 9, 10, 12]) for _ in range(n_layers)]
        shapes, prev_m = [], None
        for li in range(n_layers):
            if li == 0:
                d = rnd.choice([2, 3, 4])
                n = _factor(feats[0], d, rnd)
            else:
                cuts = sorted(rnd.sample(range(1, len(prev_m)), rnd.randint(1, len(prev_m) - 1)))
                n, start = [], 0
                for cut in cuts + [len(prev_m)]:
                    n.append(math.prod(prev_m[start:cut]))
                    start = cut
                d = len(n)
            m = _factor(feats[li + 1], d, rnd)
            r = [1] + [rnd.randint(1, 4) for _ in range(d - 1)] + [1]
            shapes.append((tuple(n), tuple(m), tuple(r)))
            prev_m = list(m)
        rows, cols = rnd.randint(1, 4), rnd.randint(2, 9)
        lanes = rnd.randint(max(4, feats[-1]), 16)
        weight_bits = rnd.choice([1, 2, 3, 4, "ternary"])
        activation_bits = rnd.randint(2, 8)
        try:
            orders = schedule.choose_orders(shapes, rows * cols, lanes)
        except schedule.ScheduleError:
            continue
        layers = [(*s, o) for s, o in zip(shapes, orders)]
        return layers, rows, cols, lanes, weight_bits, activation_bits


def random_design(seed: int, requant: str = "lut", **options):
    """:func:`random_case` ``seed`` as a network and its schedule (for requantizers that
    multiply as ``requant`` says): ``(net, schedule, rows, cols)``; ``options`` go to
    :func:`random_network` (e.g. ``input_bits``)."""
    from edge3u.models import schedule

    layers, rows, cols, lanes, wb, ab = random_case(seed)
    net = random_network(layers, weight_bits=wb, activation_bits=ab, seed=seed, **options)
    sched = schedule.build_schedule([layer[:3] for layer in layers],
                                    [layer[3] for layer in layers], rows * cols, lanes, requant)
    return net, sched, rows, cols
