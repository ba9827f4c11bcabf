"""Hardware-aware rank selection: prune TT ranks until the accelerator meets a latency budget.

The cycle model of ``models/schedule.py`` turns the current ranks into cycles per inference on
the configured array (the same number the RTL counts). While that exceeds the budget, one rank
slice is dropped: of every inner bond's weakest slice (smallest Bayesian scale, the rank prior's
own estimate of how much a slice carries), the one that costs least per cycle saved. Training
goes on with the smaller cores, so later epochs recover what the cut cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from edge3u.models.schedule import network_cycles

__all__ = ["Cut", "shapes_of", "cycles_of", "choose_cut", "fit_budget", "check_budget"]


@dataclass(frozen=True)
class Cut:
    layer: int
    bond: int        # inner bond, 1 .. d-1
    slice: int       # index of the dropped slice in that bond
    cycles_before: int | None
    cycles_after: int | None


def shapes_of(layers, ranks_override: dict | None = None):
    """``(in_modes, out_modes, ranks)`` per layer; ``ranks_override`` maps a layer index to
    other ranks."""
    shapes = []
    for i, layer in enumerate(layers):
        ranks = tuple((ranks_override or {}).get(i, layer.ranks))
        shapes.append((tuple(layer.in_modes), tuple(layer.out_modes), ranks))
    return shapes


def cycles_of(layers, hardware, ranks_override: dict | None = None) -> int | None:
    return network_cycles(shapes_of(layers, ranks_override), hardware)


def choose_cut(layers, scales, hardware) -> Cut | None:
    """The slice to drop next: among every bond's weakest slice, the smallest ``lam**2`` per
    cycle saved (a cut that saves nothing only when no cut saves anything); None when every
    bond is down to rank 1."""
    before = cycles_of(layers, hardware)
    best, best_key = None, None
    for li, (layer, lam) in enumerate(zip(layers, scales)):
        for bond in range(1, len(layer.ranks) - 1):
            if layer.ranks[bond] <= 1:
                continue
            weakest = int(torch.argmin(lam[bond]))
            strength = float(lam[bond][weakest] ** 2)
            ranks = list(layer.ranks)
            ranks[bond] -= 1
            after = cycles_of(layers, hardware, {li: ranks})
            saved = (before or 0) - after if after is not None and before is not None else 0
            key = (0, strength / saved) if saved > 0 else (1, strength)
            if best_key is None or key < best_key:
                best, best_key = Cut(li, bond, weakest, before, after), key
    return best


def fit_budget(model, scales, hardware, budget: int) -> list[Cut]:
    """Drop slices from ``model``'s layers until the cycle model meets ``budget``; returns the
    cuts made (empty when it already does). Raises ValueError if rank 1 everywhere still
    misses it."""
    cuts = []
    while True:
        cycles = cycles_of(model.layers, hardware)
        if cycles is not None and cycles <= budget:
            return cuts
        cut = choose_cut(model.layers, scales, hardware)
        if cut is None:
            raise ValueError(f"the latency budget of {budget} cycles cannot be met on this "
                             f"array: with every rank at 1 the network takes {cycles} cycles")
        layer = model.layers[cut.layer]
        keep = [torch.arange(r) for r in layer.ranks[1:-1]]
        k = keep[cut.bond - 1]
        keep[cut.bond - 1] = k[k != cut.slice]
        layer.prune(keep)
        lam = scales[cut.layer][cut.bond]
        scales[cut.layer][cut.bond] = torch.cat([lam[:cut.slice], lam[cut.slice + 1:]])
        cuts.append(cut)


def check_budget(config) -> int | None:
    """The budget in cycles, after checking up front that the network can meet it at all (every
    rank 1 on the configured array); a ConfigError otherwise."""
    from edge3u.config import ConfigError

    budget = config.hardware.budget_cycles
    if not budget:
        return None
    shapes = [(tuple(layer.in_modes), tuple(layer.out_modes), (1,) * (len(layer.in_modes) + 1))
              for layer in config.layers]
    floor = network_cycles(shapes, config.hardware)
    hw = config.hardware
    if floor is None:
        raise ConfigError(f"the latency budget of {budget} cycles cannot be met: the network "
                          f"does not fit the {hw.pe_rows} x {hw.pe_cols} array at any rank")
    if floor > budget:
        raise ConfigError(f"the latency budget of {budget} cycles cannot be met: with every rank "
                          f"at 1 the network takes {floor} cycles on the "
                          f"{config.hardware.pe_rows} x {config.hardware.pe_cols} array")
    return budget
