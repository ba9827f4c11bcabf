"""The contents of every on-chip memory of the accelerator, and a transaction-level model that
runs them.

:func:`build_layout` turns an integer network (``models/golden.py``, usually loaded from the ROM
images of ``edge3u export``) and its :class:`~edge3u.models.schedule.Schedule` into:

* per stage and tile phase, one weight word per inner cycle: the signed core code each PE
  multiplies by (0 for idle PEs);
* per stage, the write table: for each drained granule, the row address in the next buffer and
  the lane block it fills — the reshape between stages;
* per layer-end stage, the bias of every granule lane; per stage, the requantizer;
* the input table: where each pixel of the image goes in the first buffer;
* the logits permutation (granule lane -> class).

:func:`execute` runs those tables exactly as the hardware does (tiles, lanes, granules) with
integer arithmetic; it equals :func:`edge3u.models.golden.int_forward` bit for bit, which the
tests check, and it is the model the RTL is compared with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from edge3u.models.golden import IntNetwork, Requant
from edge3u.models.schedule import Schedule, StageMap

__all__ = ["StageTables", "Layout", "build_layout", "execute", "digits", "flat"]


def digits(index: int, modes, sizes) -> dict:
    """Mixed-radix digits of a row-major flat ``index`` over ``modes``."""
    out = {}
    for mode in reversed(modes):
        index, out[mode] = divmod(index, sizes[mode])
    return out


def flat(values: dict, modes, sizes) -> int:
    """Row-major flat index over ``modes`` of the digits in ``values`` (missing modes are 0)."""
    index = 0
    for mode in modes:
        index = index * sizes[mode] + values.get(mode, 0)
    return index


@dataclass(frozen=True)
class StageTables:
    """The memory contents one stage uses (see the module docstring)."""
    weights: np.ndarray      # (phases, inner, pes) int64 signed codes
    lane_of_pe: np.ndarray   # (pes,) activation lane feeding each PE, -1 for idle PEs
    write_addr: np.ndarray   # (granules,) row address in the next buffer
    write_block: np.ndarray  # (granules,) lane block (x_hi) in that row
    bias: np.ndarray | None  # (granules, g) int64, layer-end stages only
    requant: Requant | None  # None: the logits are kept
    signed_input: bool       # the rows read hold signed codes (between stages)
    input_bits: int          # bits per lane of the rows read


@dataclass(frozen=True)
class Layout:
    schedule: Schedule
    stages: tuple
    input_addr: np.ndarray    # (pixels,) row of the first buffer for each pixel
    input_lane: np.ndarray    # (pixels,) lane in that row
    logit_class: np.ndarray   # (classes,) class of each logits lane
    buffer_rows: tuple        # rows of buffers (input, A, B)
    buffer_lanes: tuple       # lanes of buffers (input, A, B)
    activation_bits: int
    input_bits: int


def _pe_outputs(sm: StageMap, tile):
    """For each PE of a tile: (granule, lane in granule, row, col, activation lane) or None."""
    rg0, groups, phase = tile
    g, nrp = sm.granule, sm.size(sm.rp)
    out = []
    for p in range(sm.pes):
        w, e = divmod(p, g)
        x_lo_i, rq = divmod(e, nrp)
        if sm.whole_groups:
            rg_off, mq = divmod(w, sm.n_mp)
        else:
            rg_off, mq = 0, phase * sm.q + w
        if rg_off >= groups:
            out.append(None)
            continue
        row = (rg0 + rg_off) * sm.x_lo + x_lo_i
        col = mq * nrp + rq
        out.append((w, e, row, col, rg_off * sm.x_lo + x_lo_i))
    return out


def _stage_weight(sm: StageMap, core: np.ndarray) -> np.ndarray:
    """The stage's GEMM matrix ``W[inner lane, col]`` from the core."""
    sizes = sm.sizes
    w = np.zeros((sm.n_inner, sm.n_cols), dtype=np.int64)
    for i in range(sm.n_inner):
        di = digits(i, sm.inner, sizes)
        for c in range(sm.n_cols):
            d = {**di, **digits(c, sm.cols, sizes)}
            w[i, c] = core[tuple(flat(d, axis, sizes) for axis in sm.core_axes)]
    return w


def _next_row(sm: StageMap, nxt: StageMap | None, row: int, col: int):
    """Where output ``(row, col)`` of a stage goes: (next row address, lane)."""
    sizes = sm.sizes
    d = {**digits(row, sm.U + sm.X, sizes), **digits(col, sm.cols, sizes)}
    lane = flat(d, sm.X + sm.rp, sizes)
    if nxt is None:
        return 0, lane
    return flat(d, nxt.U + nxt.X, sizes), lane


def _layer_feature(sm: StageMap, row: int, col: int, out_modes) -> int:
    d = {**digits(row, sm.U + sm.X, sm.sizes), **digits(col, sm.cols, sm.sizes)}
    return flat(d, out_modes, sm.sizes)


def build_layout(net: IntNetwork, schedule: Schedule) -> Layout:
    """All memory contents for ``net`` run by ``schedule`` (see the module docstring)."""
    stages, maps = [], schedule.stages
    sizes = schedule.sizes
    activation_bits = None
    for j, sm in enumerate(maps):
        layer = net.layers[sm.layer]
        nxt = maps[j + 1] if j + 1 < len(maps) else None
        last_of_layer = nxt is None or nxt.layer != sm.layer
        core = layer.cores[sm.core].numpy()
        w = _stage_weight(sm, core)
        tiles = sm.tiles()
        weights = np.zeros((sm.phases, sm.n_inner, sm.pes), dtype=np.int64)
        lane_of_pe = np.full(sm.pes, -1, dtype=np.int64)
        addr, block, bias = [], [], []
        layer_out = tuple(f"L{sm.layer}.m{k}" for k in range(len(layer.cores)))
        layer_out = tuple(m for m in layer_out if sizes[m] > 1)
        for tile in tiles:
            outs = _pe_outputs(sm, tile)
            phase = tile[2]
            granules = {}
            for p, o in enumerate(outs):
                if o is None:
                    continue
                wi, e, row, col, lane = o
                weights[phase, :, p] = w[:, col]
                lane_of_pe[p] = lane  # the same in every tile: fixed per stage
                granules.setdefault(wi, {})[e] = (row, col)
            for wi in sorted(granules):
                cells = granules[wi]
                row0, col0 = cells[0]
                a, lane = _next_row(sm, nxt if not sm.final else None, row0, col0)
                addr.append(a)
                block.append(lane // sm.granule)
                if last_of_layer:
                    bias.append([int(layer.bias[_layer_feature(sm, *cells[e], layer_out)])
                                 for e in range(sm.granule)])
        if last_of_layer:
            requant = layer.out_requant
        else:
            requant = layer.stage_requant[sm.stage]
        first_of_layer = sm.stage == 0
        if j == 0:
            in_signed, in_bits = False, net.input_bits
        elif first_of_layer:
            prev = net.layers[sm.layer - 1].out_requant
            in_signed, in_bits = prev.lo < 0, _code_bits(prev)
        else:
            prev = layer.stage_requant[sm.stage - 1]
            in_signed, in_bits = prev.lo < 0, _code_bits(prev)
        if requant is not None:
            activation_bits = max(activation_bits or 0, _code_bits(requant))
        stages.append(StageTables(weights, lane_of_pe, np.array(addr, dtype=np.int64),
                                  np.array(block, dtype=np.int64),
                                  np.array(bias, dtype=np.int64) if last_of_layer else None,
                                  requant, in_signed, in_bits))
    # input table: pixel -> (row, lane) of the first stage's rows
    first = maps[0]
    n_pixels = math.prod(sizes[m] for m in schedule.input_modes)
    in_addr = np.zeros(n_pixels, dtype=np.int64)
    in_lane = np.zeros(n_pixels, dtype=np.int64)
    for f in range(n_pixels):
        d = digits(f, schedule.input_modes, sizes)
        in_addr[f] = flat(d, first.U + first.X, sizes)
        in_lane[f] = flat(d, first.inner, sizes)
    last = maps[-1]
    logit_class = np.zeros(schedule.classes, dtype=np.int64)
    for lane in range(schedule.classes):
        d = digits(lane, last.X + last.rp, sizes)
        logit_class[lane] = flat(d, schedule.output_modes, sizes)
    rows = [first.rows, 1, 1]
    lanes = [first.n_inner, 1, 1]
    for j, sm in enumerate(maps[1:], start=1):
        buf = 1 + (j - 1) % 2
        rows[buf] = max(rows[buf], sm.rows)
        lanes[buf] = max(lanes[buf], sm.n_inner)
    return Layout(schedule, tuple(stages), in_addr, in_lane, logit_class, tuple(rows),
                  tuple(lanes), activation_bits or 1, net.input_bits)


def _code_bits(rq: Requant) -> int:
    """Bits of the codes a requantizer produces (two's complement when ``lo < 0``)."""
    if rq.lo < 0:
        return max((-rq.lo - 1).bit_length(), rq.hi.bit_length()) + 1
    return max(1, rq.hi.bit_length())


def buffer_of_stage(j: int) -> tuple[int, int]:
    """(buffer read, buffer written) by global stage ``j``: 0 is the input buffer, then the
    activation buffers alternate 1, 2, 1, ...; the last stage writes the logits."""
    read = 0 if j == 0 else 1 + (j - 1) % 2
    return read, 1 + j % 2


def execute(layout: Layout, pixels: np.ndarray, *, trace: list | None = None) -> np.ndarray:
    """Run one image (``(N,)`` pixel codes) through the layout; returns the logits in class
    order. With ``trace`` (a list) appends every stage's output buffer as
    ``{(row, lane): value}`` for mismatch reports."""
    sched = layout.schedule
    buffers = [dict() for _ in range(3)]
    for f, value in enumerate(np.asarray(pixels, dtype=np.int64)):
        buffers[0][(int(layout.input_addr[f]), int(layout.input_lane[f]))] = int(value)
    logits = np.zeros(sched.classes, dtype=np.int64)
    for j, (sm, tab) in enumerate(zip(sched.stages, layout.stages)):
        src, dst = buffer_of_stage(j)
        if not sm.final:
            buffers[dst] = {}
        written = 0
        for tile in sm.tiles():
            rg0, groups, phase = tile
            rows = [(rg0 * sm.x_lo + lane) for lane in range(groups * sm.x_lo)]
            act = np.zeros((max(1, sm.lanes), sm.n_inner), dtype=np.int64)
            for lane, row in enumerate(rows):
                for i in range(sm.n_inner):
                    act[lane, i] = buffers[src][(row, i)]
            outs = _pe_outputs(sm, tile)
            acc = np.zeros(sm.pes, dtype=np.int64)
            for p, o in enumerate(outs):
                if o is not None:
                    acc[p] = int(act[o[4]] @ tab.weights[phase, :, p])
            n_gran = len({o[0] for o in outs if o is not None})
            for w in range(n_gran):
                values = acc[w * sm.granule:(w + 1) * sm.granule]
                if tab.bias is not None:
                    values = values + tab.bias[written]
                if tab.requant is not None:
                    values = tab.requant.apply(torch.from_numpy(values)).numpy()
                base = int(tab.write_block[written]) * sm.granule
                if sm.final:
                    for e, v in enumerate(values):
                        logits[layout.logit_class[base + e]] = v
                else:
                    addr = int(tab.write_addr[written])
                    for e, v in enumerate(values):
                        buffers[dst][(addr, base + e)] = int(v)
                written += 1
        if trace is not None:
            trace.append(dict(buffers[dst]) if not sm.final else {(0, c): int(v)
                                                                   for c, v in enumerate(logits)})
    return logits


def golden_modes(schedule: Schedule, j: int) -> tuple:
    """The modes of global stage ``j``'s output in the golden model's layout
    (``docs/numerics.md``: untouched ``n`` modes, the open bonds and the produced ``m`` modes)."""
    sm = schedule.stages[j]
    layer = [s for s in schedule.stages if s.layer == sm.layer]
    d = len(layer)
    groups = {s.core: s.core_axes[1] for s in layer}
    done = [s.core for s in layer[:sm.stage + 1]]
    a, b = min(done), max(done)
    names = [x for k in range(a) for x in groups[k]]
    names += [f"L{sm.layer}.r{a}", *(f"L{sm.layer}.m{k}" for k in range(a, b + 1)),
              f"L{sm.layer}.r{b + 1}"]
    names += [x for k in range(b + 1, d) for x in groups[k]]
    return tuple(x for x in names if schedule.sizes.get(x, 1) > 1)


def golden_index(schedule: Schedule, j: int, row: int, lane: int) -> int:
    """Where element ``(row, lane)`` written by global stage ``j`` sits in the golden model's
    stage output (for the last stage: the class of logits lane ``lane``)."""
    sizes, sm = schedule.sizes, schedule.stages[j]
    if sm.final:
        return flat(digits(lane, sm.X + sm.rp, sizes), schedule.output_modes, sizes)
    nxt = schedule.stages[j + 1]
    d = {**digits(row, nxt.U + nxt.X, sizes), **digits(lane, nxt.inner, sizes)}
    return flat(d, golden_modes(schedule, j), sizes)
