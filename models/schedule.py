"""How the accelerator maps a TT network onto its pool of processing elements, and the exact
number of cycles that takes — from the shapes alone, before any hardware is built.

The dataflow (``docs/hardware.md`` explains it with pictures in words):

* Every stage is a GEMM ``out[row, col] = sum_i a[row, i] * w[i, col]``. Each row of ``a`` is one
  word of an on-chip buffer: the row's whole inner vector, one lane per inner element.
* A stage's output is cut into *granules*: the outputs that form one contiguous run of lanes of
  one row word of the next stage's buffer. A granule has ``g = x_lo * |rp|`` outputs: ``x_lo``
  consecutive values of the row modes ``X`` that the next stage contracts, times all values of
  the column modes ``rp`` that it contracts too. Writing a granule is one memory write: this is
  the reshape between stages, done by the write address, never by a copy pass.
* A *tile* is ``q`` granules computed at once by ``q * g <= P`` PEs, output stationary: every PE
  owns one output and accumulates it over ``inner`` cycles. While a tile computes, the rows of
  the next tile are read into shadow lane registers and the previous tile is drained (one granule
  per cycle through the requantizers).

Everything the hardware needs per stage (which PE computes which output, which lane feeds it,
where each granule is written) follows from the :class:`StageMap` objects built here, and
:meth:`Schedule.cycles` is the cycle count the RTL's counter reports.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from edge3u.config import mode_groups
from edge3u.models import tt
from edge3u.models.golden import MULTIPLIER_BITS

__all__ = ["ScheduleError", "StageMap", "Schedule", "build_schedule", "choose_orders",
           "hardware_orders", "schedule_network", "network_cycles", "MAC_LATENCY", "DRAIN_LATENCY",
           "ROW_LATENCY", "REQUANT_MULTIPLIERS", "product_stages", "drain_latency",
           "argmax_cycles"]

#: Cycles from a row's read address until the row reaches the lanes' input: the block RAM's
#: read, then the register beside it (a block RAM's output is slow).
ROW_LATENCY = 2
#: Cycles from a tile boundary until the finished tile is in the drain register (the weight
#: ROM slices' three address registers, the weight ROM's read, the PE array's two input
#: registers, the PE's term, product and accumulator registers; the activation lanes' three
#: input registers run beside the first three).
MAC_LATENCY = 9
#: Cycles from the last granule leaving the drain register until its write has reached the
#: buffer with the requantizers' multiplies in logic (the bias address's two copies and the
#: bias ROM's register, bias, the multiply's four adder levels, round and shift, clamp,
#: placement, the write port's register); :func:`drain_latency` for either kind.
DRAIN_LATENCY = 11
#: How the requantizers multiply (``hardware.requant_multipliers``).
REQUANT_MULTIPLIERS = ("lut", "dsp")


def product_stages(requant: str) -> int:
    """Register stages of a requantizer's multiply: one adder level each for the logic
    version's 15 partial products (``"lut"``), or the multiplier block's output register
    (``"dsp"``)."""
    if requant not in REQUANT_MULTIPLIERS:
        raise ValueError(f"requantizer multiplier must be one of "
                         f"{', '.join(REQUANT_MULTIPLIERS)}, not {requant!r}")
    return 1 if requant == "dsp" else (MULTIPLIER_BITS - 1).bit_length()


def drain_latency(requant: str) -> int:
    """:data:`DRAIN_LATENCY` for requantizers whose multiplies are ``requant``."""
    return DRAIN_LATENCY - product_stages("lut") + product_stages(requant)


def argmax_cycles(classes: int) -> int:
    """Cycles to pick the class: one per level of a pairwise comparison tree, at least one."""
    return max(1, (classes - 1).bit_length())


class ScheduleError(ValueError):
    """A network or PE array that the accelerator cannot map, with the value that is wrong."""


@dataclass(frozen=True)
class StageMap:
    """One stage of one layer, as the hardware runs it.

    Mode lists hold atomic mode names (sizes in :attr:`Schedule.sizes`); flat indices are
    row-major over the listed modes.

    Attributes
    ----------
    layer, stage : int
        Layer index and stage index within the layer; ``core`` is the core contracted.
    inner : tuple of str
        The contracted modes in the lane order of the row words this stage reads.
    cols : tuple of str
        The produced column modes, ``mp + rp``.
    U, X : tuple of str
        Row modes: rows are numbered ``u * |X| + x``. ``X`` are the row modes the next stage
        contracts (they become lanes of the next row words).
    mp, rp : tuple of str
        Column modes that become rows (``mp``) or lanes (``rp``) of the next stage.
    x_lo : int
        Granule height: a granule holds ``x_lo`` consecutive ``x`` values times all of ``rp``.
    q : int
        Granules per tile. Either a multiple of ``|mp|`` (whole row groups per tile) or a
        divisor of it (a row group spans ``|mp| / q`` tiles and its rows are read once).
    final : bool
        The network's last stage: it writes the logits, lanes in class order.
    core_axes : tuple of 4 tuples of str
        The modes indexing the core ``(r_k, n_k, m_k, r_{k+1})``; ``n_k`` of a later layer is a
        group of the previous layer's output modes. Size-1 modes are left out.
    drain : int
        The stage's :func:`drain_latency`.
    """

    layer: int
    stage: int
    core: int
    inner: tuple
    cols: tuple
    U: tuple
    X: tuple
    mp: tuple
    rp: tuple
    sizes: dict
    x_lo: int
    q: int
    final: bool
    core_axes: tuple = ()
    drain: int = DRAIN_LATENCY

    def size(self, modes) -> int:
        return math.prod(self.sizes[m] for m in modes)

    @property
    def n_inner(self) -> int:
        return self.size(self.inner)

    @property
    def rows(self) -> int:
        return self.size(self.U) * self.size(self.X)

    @property
    def n_cols(self) -> int:
        return self.size(self.cols)

    @property
    def macs(self) -> int:
        return self.rows * self.n_inner * self.n_cols

    @property
    def granule(self) -> int:
        """Outputs per granule, ``g``."""
        return self.x_lo * self.size(self.rp)

    @property
    def x_hi(self) -> int:
        return self.size(self.X) // self.x_lo

    @property
    def row_groups(self) -> int:
        return self.size(self.U) * self.x_hi

    @property
    def n_mp(self) -> int:
        return self.size(self.mp)

    @property
    def whole_groups(self) -> bool:
        """True when a tile holds whole row groups (``q`` a multiple of ``|mp|``)."""
        return self.q % self.n_mp == 0

    @property
    def groups_per_tile(self) -> int:
        return self.q // self.n_mp if self.whole_groups else 1

    @property
    def phases(self) -> int:
        """Tiles per row group (1 when tiles hold whole row groups)."""
        return 1 if self.whole_groups else self.n_mp // self.q

    @property
    def lanes(self) -> int:
        """Rows a tile reads (activation lane registers in use)."""
        return self.groups_per_tile * self.x_lo

    @property
    def pes(self) -> int:
        """PEs in use, ``q * g``."""
        return self.q * self.granule

    def tiles(self) -> list[tuple[int, int, int]]:
        """Per tile: ``(first row group, row groups, phase)``."""
        if self.whole_groups:
            k = self.groups_per_tile
            return [(t, min(k, self.row_groups - t), 0) for t in range(0, self.row_groups, k)]
        return [(rg, 1, ph) for rg in range(self.row_groups) for ph in range(self.phases)]

    def tile_io(self) -> list[tuple[int, int]]:
        """Per tile: ``(rows read before it, granules written after it)``."""
        out = []
        for rg, groups, phase in self.tiles():
            reads = groups * self.x_lo if phase == 0 else 0
            writes = groups * self.n_mp if self.whole_groups else self.q
            out.append((reads, writes))
        return out

    def windows(self) -> list[int]:
        """Cycles of each tile's window: its inner sums, the next tile's row reads (plus their
        latency) and the previous tile's drain all overlap in it."""
        io = self.tile_io()
        out = []
        for t in range(len(io)):
            nxt = io[t + 1][0] + ROW_LATENCY if t + 1 < len(io) and io[t + 1][0] else 0
            prev = io[t - 1][1] if t else 0
            out.append(max(self.n_inner, nxt, prev))
        return out

    def cycles(self) -> int:
        """Cycles of the stage: prologue read, the tile windows, the final drain."""
        io = self.tile_io()
        return (io[0][0] + ROW_LATENCY + sum(self.windows()) + MAC_LATENCY + io[-1][1]
                + self.drain)

    def bound(self, pes: int) -> int:
        return -(-self.macs // pes)


@dataclass(frozen=True)
class Schedule:
    """All stages of the network in execution order, for an array of ``pes`` PEs whose
    requantizers multiply as ``requant`` says (``"lut"`` or ``"dsp"``)."""
    stages: tuple
    pes: int
    requant_lanes: int
    sizes: dict
    input_modes: tuple
    output_modes: tuple
    orders: tuple
    requant: str = "lut"

    def cycles(self) -> int:
        """Cycles from the last input pixel written to the result on the output stream."""
        return sum(s.cycles() for s in self.stages) + argmax_cycles(self.classes)

    @property
    def classes(self) -> int:
        return math.prod(self.sizes[m] for m in self.output_modes)

    def bound(self) -> int:
        """Sum over stages of ``ceil(MACs / PEs)``: no schedule can be faster."""
        return sum(s.bound(self.pes) for s in self.stages)

    @property
    def macs(self) -> int:
        return sum(s.macs for s in self.stages)


# --------------------------------------------------------------------------- modes of a layer

def _layer_names(li: int, d: int):
    n = [f"L{li}.n{k}" for k in range(d)]
    m = [f"L{li}.m{k}" for k in range(d)]
    r = [f"L{li}.r{k}" for k in range(d + 1)]
    return n, m, r


def _group(prev_modes: list[str], sizes: dict, in_modes, where: str) -> list[list[str]]:
    """Split the previous layer's output modes into consecutive groups of the given sizes."""
    out_sizes = tuple(sizes[m] for m in prev_modes)
    groups = mode_groups(out_sizes, in_modes)
    if groups is None:
        raise ScheduleError(f"{where}: in_modes {tuple(in_modes)} must group the previous "
                            f"layer's out_modes {out_sizes} into consecutive products")
    return [[prev_modes[i] for i in group] for group in groups]


def _stage_sets(core_n: list[list[str]], m, r, order):
    """Per stage (core, inner modes, column modes), the tensor being a set of atomic modes."""
    axes = lambda k: ((r[k],), tuple(core_n[k]), (m[k],), (r[k + 1],))  # noqa: E731
    k = order[0]
    out = [(k, list(core_n[k]), [r[k], m[k], r[k + 1]], axes(k))]
    b = k  # right end of the contracted interval; a core right of it extends it rightwards
    for k in order[1:]:
        if k == b + 1:
            out.append((k, [r[k], *core_n[k]], [m[k], r[k + 1]], axes(k)))
            b = k
        else:
            out.append((k, [*core_n[k], r[k + 1]], [r[k], m[k]], axes(k)))
    return out


def _mapping_options(rows, cols, nxt, sizes, pes, lanes, final):
    size = lambda ms: math.prod(sizes[x] for x in ms)  # noqa: E731
    X = tuple(x for x in nxt if x in rows)
    rp = tuple(x for x in nxt if x in cols)
    U = tuple(x for x in rows if x not in X)
    mp = tuple(x for x in cols if x not in rp)
    nx, nrp, nmp = size(X), size(rp), size(mp)
    for x_lo in ([nx] if final else [d for d in range(1, nx + 1) if nx % d == 0]):
        g = x_lo * nrp
        if g > min(pes, lanes):
            continue
        qs = {k * nmp for k in range(1, pes // (g * nmp) + 1)}
        qs |= {d for d in range(1, nmp) if nmp % d == 0 and d * g <= pes}
        for q in sorted(qs):
            yield dict(U=U, X=X, mp=mp, rp=rp, x_lo=x_lo, q=q)


def _map_layers(layers, orders, pes, lanes, drain, activation_lanes):
    """StageMaps for the given orders, each stage with its fastest mapping that reads at most
    ``activation_lanes`` rows per tile (None: any number)."""
    sizes, stages_sets, input_modes = {}, [], None
    prev_m = None
    for li, (n, m, r) in enumerate(layers):
        d = len(n)
        nn, mm, rr = _layer_names(li, d)
        for name, v in [*zip(mm, m), *zip(rr, r)]:
            sizes[name] = v
        if li == 0:
            for name, v in zip(nn, n):
                sizes[name] = v
            core_n = [[x] for x in nn]
            input_modes = tuple(nn)
        else:
            core_n = _group(prev_m, sizes, n, f"layer {li}")
        sets = _stage_sets(core_n, mm, rr, orders[li])
        stages_sets.append(sets)
        prev_m = mm
    drop = lambda ms: [x for x in ms if sizes[x] > 1]  # noqa: E731
    flat = [(li, si, k, drop(inner), drop(cols), tuple(tuple(drop(a)) for a in axes))
            for li, sets in enumerate(stages_sets)
            for si, (k, inner, cols, axes) in enumerate(sets)]
    output_modes = tuple(drop(prev_m))
    maps, tensor = [], drop(list(input_modes))
    lane_order = None
    for j, (li, si, k, inner, cols, axes) in enumerate(flat):
        rows = [x for x in tensor if x not in inner]
        final = j == len(flat) - 1
        nxt = output_modes if final else flat[j + 1][3]
        inner_order = tuple(inner) if lane_order is None else lane_order
        if sorted(inner_order) != sorted(inner):  # pragma: no cover - internal invariant
            raise AssertionError(f"lane order {inner_order} does not match inner {inner}")
        best = None
        for opt in _mapping_options(rows, cols, nxt, sizes, pes, lanes, final):
            sm = StageMap(li, si, k, inner_order, tuple(opt["mp"]) + tuple(opt["rp"]),
                          sizes=sizes, final=final, core_axes=axes, drain=drain, **opt)
            if activation_lanes is not None and sm.lanes > activation_lanes:
                continue
            key = (sm.cycles(), sm.pes)
            if best is None or key < best[0]:
                best = (key, sm)
        if best is None:
            need = math.prod(sizes[x] for x in cols if x in nxt)
            if final:
                need = math.prod(sizes[x] for x in output_modes)
            raise ScheduleError(
                f"layer {li} stage {si} (core {k}) needs granules of at least {need} outputs, "
                f"more than the {pes} PEs or the {lanes} requantizer lanes"
                + ("" if activation_lanes is None else f", or more rows per tile than the "
                   f"{activation_lanes} activation lanes")
                + ": use a larger array or lower ranks")
        sm = best[1]
        maps.append(sm)
        lane_order = sm.X + sm.rp
        tensor = rows + cols
    return maps, sizes, input_modes, output_modes


def _shapes(network_shapes):
    return [(tuple(n), tuple(m), tuple(r)) for n, m, r in network_shapes]


def build_schedule(network_shapes, orders, pes: int, requant_lanes: int,
                   requant: str = "lut", activation_lanes: int | None = None) -> Schedule:
    """The schedule for fixed stage orders.

    Parameters
    ----------
    network_shapes : list of (in_modes, out_modes, ranks)
        One per layer; ranks include the end bonds ``(1, ..., 1)``.
    orders : list of tuple
        Stage order per layer.
    pes : int
        PEs in the array (``pe_rows * pe_cols``).
    requant_lanes : int
        Requantizers in the drain: the largest granule.
    requant : "lut" or "dsp"
        How the requantizers multiply (:func:`drain_latency`).
    activation_lanes : int, optional
        The most rows a tile may read (activation lane registers); default any number.
    """
    drain = drain_latency(requant)
    shapes = _shapes(network_shapes)
    for li, ((n, m, r), order) in enumerate(zip(shapes, orders)):
        tt.stages(n, m, r, order)  # validates shapes and the order
    if pes < 1 or requant_lanes < 1:
        raise ScheduleError(f"the array needs at least one PE and one requantizer lane, not "
                            f"{pes} PEs and {requant_lanes} lanes")
    maps, sizes, inp, outp = _map_layers(shapes, [tuple(o) for o in orders], pes, requant_lanes,
                                         drain, activation_lanes)
    return Schedule(tuple(maps), pes, requant_lanes, sizes, inp, outp,
                    tuple(tuple(o) for o in orders), requant)


def choose_orders(network_shapes, pes: int, requant_lanes: int,
                  activation_lanes: int | None = None) -> tuple[tuple[int, ...], ...]:
    """The stage orders (one per layer) with the fewest cycles on this array; ties go to fewer
    MACs. Exhaustive over every layer's :func:`models.tt.valid_orders`. (How the requantizers
    multiply adds the same cycles to every stage, so it does not change the choice.)"""
    shapes = _shapes(network_shapes)
    best, error = None, None
    for orders in itertools.product(*(tt.valid_orders(len(n)) for n, _, _ in shapes)):
        try:
            sched = build_schedule(shapes, orders, pes, requant_lanes,
                                   activation_lanes=activation_lanes)
        except ScheduleError as e:
            error = e
            continue
        key = (sched.cycles(), sched.macs)
        if best is None or key < best[0]:
            best = (key, orders)
    if best is None:
        raise error
    return best[1]


def _configured_schedule(network_shapes, orders, hardware) -> Schedule:
    """:func:`build_schedule` on the configured array (``config.hardware``)."""
    return build_schedule(network_shapes, orders, hardware.pe_rows * hardware.pe_cols,
                          hardware.requant_lanes, hardware.requant_multipliers,
                          hardware.activation_lanes)


def _configured_orders(network_shapes, hardware) -> tuple[tuple[int, ...], ...]:
    """The orders :func:`choose_orders` picks, except that each layer in turn keeps its
    :func:`models.tt.training_order` where the network's cycles stay within
    ``hardware.order_slack`` of the fewest: the quantization fine-tunes a network that learnt
    with every stage's output rounded in that order."""
    shapes = _shapes(network_shapes)

    def cycles(orders):
        try:
            return _configured_schedule(shapes, orders, hardware).cycles()
        except ScheduleError:
            return None

    orders = list(choose_orders(shapes, hardware.pe_rows * hardware.pe_cols,
                                hardware.requant_lanes, hardware.activation_lanes))
    limit = cycles(orders) * (1 + hardware.order_slack)
    for li, (n, m, r) in enumerate(shapes):
        trial = orders[:li] + [tt.training_order(n, m, r)] + orders[li + 1:]
        got = cycles(trial)
        if got is not None and got <= limit:
            orders = trial
    return tuple(tuple(o) for o in orders)


def hardware_orders(layers, hardware) -> dict[str, tuple[int, ...]]:
    """The stage order of every layer for the configured array (``config.hardware``), by layer
    name: :func:`choose_orders`' fewest cycles, or the training orders within
    ``hardware.order_slack`` of them. ``layers`` are ``(name, cores)`` pairs (cores of shape
    ``(r, n, m, r)``); the quantization step fixes these orders, so the golden model and the
    hardware share them."""
    shapes = [(tuple(int(c.shape[1]) for c in cores), tuple(int(c.shape[2]) for c in cores),
               tt.tt_ranks(cores)) for _, cores in layers]
    orders = _configured_orders(shapes, hardware)
    return {name: order for (name, _), order in zip(layers, orders)}


def network_cycles(network_shapes, hardware) -> int | None:
    """Cycles per inference of a network of these ``(in_modes, out_modes, ranks)`` on the
    configured array, with the orders the hardware would choose (:func:`hardware_orders`);
    None if it does not fit."""
    try:
        orders = _configured_orders(network_shapes, hardware)
        return _configured_schedule(network_shapes, orders, hardware).cycles()
    except ScheduleError:
        return None


def schedule_network(net, hardware) -> Schedule:
    """The schedule of an integer network (its layers' stage orders) on the configured array."""
    shapes = [(layer.in_modes, layer.out_modes, layer.ranks) for layer in net.layers]
    return _configured_schedule(shapes, [layer.order for layer in net.layers], hardware)
