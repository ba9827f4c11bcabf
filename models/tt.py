"""Tensor-train matrix (TT-matrix) layers as pure functions.

A TT-matrix layer stores a weight ``W`` of shape ``(M, N)`` (``nn.Linear`` layout,
``y = x @ W.T``) with ``M = prod(m_k)`` and ``N = prod(n_k)``, ``k = 0 .. d-1``, as ``d``
cores ``G_k`` of shape ``(r_{k-1}, n_k, m_k, r_k)``. The ranks tuple is
``(1, r_0, ..., r_{d-2}, 1)`` of length ``d + 1`` (``ranks[k]`` and ``ranks[k + 1]`` are the
bonds of core ``k``) and

    W[(i_0 .. i_{d-1}), (j_0 .. j_{d-1})]
        = G_0[:, j_0, i_0, :] @ G_1[:, j_1, i_1, :] @ ... @ G_{d-1}[:, j_{d-1}, i_{d-1}, :]

with row-major multi-indices (as ``tensor.reshape`` does). The cores use tensorly's TT-matrix
layout with rows ``n`` and columns ``m``, so ``tensorly.tt_matrix.tt_matrix_to_matrix(cores)``
is ``W.T``.

``y = W x`` is computed in ``d`` stages, one core and one GEMM per stage, in a *contraction
order*: a permutation of ``0 .. d-1`` whose every prefix is a contiguous interval of cores.
:func:`stages` describes the GEMMs of an order (for cost models and the hardware),
:func:`tt_matvec` runs them, :func:`choose_order` picks the cheapest order and
:func:`fastest_order` the fastest one for the fused floating-point contraction on the CPU.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np
import torch
from torch.autograd.function import once_differentiable

__all__ = [
    "Order", "Stage", "valid_orders", "check_order", "right_to_left", "stages", "tt_macs",
    "choose_order", "training_order", "fastest_order", "tt_matvec", "tt_to_dense", "tt_ranks",
    "tt_svd",
]

Order = tuple[int, ...]

CONTRACTIONS = ("first", "right", "left")


# --------------------------------------------------------------------------- contraction orders

def _check_d(d) -> int:
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"the number of cores d must be an integer >= 1, not {d!r}")
    return int(d)


def right_to_left(d: int) -> Order:
    """The right-to-left contraction order ``(d-1, ..., 0)``.

    Parameters
    ----------
    d : int
        Number of cores, >= 1.

    Returns
    -------
    Order
    """
    return tuple(range(_check_d(d) - 1, -1, -1))


@lru_cache(maxsize=None)
def _valid_orders(d: int) -> tuple[Order, ...]:
    def peel(a: int, b: int) -> list[Order]:
        # Orders of the interval [a, b]: the core contracted last is one of its two ends.
        if a == b:
            return [(a,)]
        return [o + (a,) for o in peel(a + 1, b)] + [o + (b,) for o in peel(a, b - 1)]

    return tuple(peel(0, d - 1))


def valid_orders(d: int) -> list[Order]:
    """All ``2**(d-1)`` valid contraction orders of ``d`` cores.

    An order is valid when every prefix is a contiguous interval: it starts at any core and
    each step extends the contracted interval by one core to the left or to the right.

    Parameters
    ----------
    d : int
        Number of cores, >= 1.

    Returns
    -------
    list of Order
        Deterministic: right-to-left ``(d-1, ..., 0)`` first, left-to-right ``(0, ..., d-1)``
        last.
    """
    return list(_valid_orders(_check_d(d)))


def check_order(order, d: int) -> Order:
    """Validate a contraction order for ``d`` cores.

    Parameters
    ----------
    order : sequence of int
        Candidate order.
    d : int
        Number of cores, >= 1.

    Returns
    -------
    Order
        ``order`` as a tuple of Python ints.

    Raises
    ------
    ValueError
        If ``order`` is not a permutation of ``0 .. d-1`` whose every prefix is a contiguous
        interval; the message names the order and says what is valid.
    """
    d = _check_d(d)

    def bad(why: str) -> ValueError:
        rule = (f"a valid contraction order of d={d} cores is a permutation of 0..{d - 1} in "
                "which every prefix is a contiguous interval (start at any core, then extend the "
                "contracted interval by one core to the left or right), e.g. right-to-left "
                f"{right_to_left(d)} or left-to-right {tuple(range(d))}")
        if d <= 4:
            rule += f"; the valid orders are {', '.join(map(str, valid_orders(d)))}"
        return ValueError(f"contraction order {order!r} is not valid: {why}; {rule}")

    try:
        result = tuple(operator.index(k) for k in order)
    except TypeError:
        raise bad("it is not a sequence of integers") from None
    if sorted(result) != list(range(d)):
        raise bad(f"it is not a permutation of 0..{d - 1}")
    lo = hi = result[0]
    for k in result[1:]:
        if k == lo - 1:
            lo = k
        elif k == hi + 1:
            hi = k
        else:
            raise bad(f"core {k} does not extend the contracted interval [{lo}, {hi}]")
    return result


@lru_cache(maxsize=1024)
def _check_order_tuple(order: tuple, d: int) -> Order:
    """:func:`check_order` for a tuple, remembered (``tt_matvec`` checks its order every call)."""
    return check_order(order, d)


# --------------------------------------------------------------------------- stage cost model

@dataclass(frozen=True)
class Stage:
    """One stage of a TT-matrix-vector product: a GEMM ``(rows, inner) @ (inner, cols)``.

    Sizes are for batch 1; ``rows`` scales linearly with the batch.

    Attributes
    ----------
    core : int
        Index of the core contracted in this stage.
    rows : int
        Product of all modes of the intermediate not contracted now (untouched ``n_i``,
        already produced ``m_i`` and the open bond on the other side of the interval).
    inner : int
        Contracted size: ``n_k`` (first stage), ``r_{k-1} * n_k`` (right) or ``n_k * r_k`` (left).
    cols : int
        Produced size: ``r_{k-1} * m_k * r_k`` (first), ``m_k * r_k`` (right) or
        ``r_{k-1} * m_k`` (left).
    contracted : str
        ``"first"`` for the first stage, ``"right"`` when the stage extends the contracted
        interval to the right (core ``k = b + 1``), ``"left"`` when it extends it to the left.
    """

    core: int
    rows: int
    inner: int
    cols: int
    contracted: str

    def __post_init__(self):
        if self.contracted not in CONTRACTIONS:
            raise ValueError(f"Stage.contracted must be one of {CONTRACTIONS}, "
                             f"not {self.contracted!r}")

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the stage, ``rows * inner * cols``."""
        return self.rows * self.inner * self.cols

    @property
    def out_size(self) -> int:
        """Number of elements of the stage's output, ``rows * cols``."""
        return self.rows * self.cols


def _int_tuple(name: str, values, lo: int = 1) -> tuple[int, ...]:
    try:
        out = tuple(operator.index(v) for v in values)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of integers >= {lo}, not {values!r}") from None
    if any(v < lo for v in out):
        raise ValueError(f"{name} must be integers >= {lo}, not {values!r}")
    return out


def _check_modes(in_modes, out_modes, ranks) -> tuple[tuple[int, ...], ...]:
    n = _int_tuple("in_modes", in_modes)
    m = _int_tuple("out_modes", out_modes)
    r = _int_tuple("ranks", ranks)
    if not n:
        raise ValueError(f"in_modes must have at least one mode, not {in_modes!r}")
    if len(m) != len(n):
        raise ValueError(f"in_modes {n} and out_modes {m} must have the same length")
    if len(r) != len(n) + 1 or r[0] != 1 or r[-1] != 1:
        raise ValueError(f"ranks {r} must be (1, r_1, ..., r_{{d-1}}, 1) of length d+1 = "
                         f"{len(n) + 1} for {len(n)} cores")
    return n, m, r


@lru_cache(maxsize=1024)
def _stages(n: tuple, m: tuple, r: tuple, order: Order) -> tuple[Stage, ...]:
    # r[k] and r[k + 1] are the bonds of core k (r_{k-1} and r_k in the module's notation).
    prod = math.prod
    k = order[0]
    out = [Stage(k, prod(n) // n[k], n[k], r[k] * m[k] * r[k + 1], "first")]
    a = b = k
    for k in order[1:]:
        if k == b + 1:
            rows = prod(n[:a]) * r[a] * prod(m[a:b + 1]) * prod(n[k + 1:])
            out.append(Stage(k, rows, r[k] * n[k], m[k] * r[k + 1], "right"))
            b = k
        else:
            rows = prod(n[:k]) * prod(m[a:b + 1]) * r[b + 1] * prod(n[b + 1:])
            out.append(Stage(k, rows, n[k] * r[k + 1], r[k] * m[k], "left"))
            a = k
    return tuple(out)


def stages(in_modes, out_modes, ranks, order=None) -> list[Stage]:
    """The GEMM stages of a TT-matrix-vector product, for batch 1.

    Parameters
    ----------
    in_modes : sequence of int
        ``(n_0, ..., n_{d-1})``, ``N = prod(in_modes)``.
    out_modes : sequence of int
        ``(m_0, ..., m_{d-1})``, ``M = prod(out_modes)``.
    ranks : sequence of int
        ``(1, r_1, ..., r_{d-1}, 1)``, length ``d + 1``.
    order : sequence of int, optional
        Contraction order (see :func:`valid_orders`); default right-to-left.

    Returns
    -------
    list of Stage
        One per core, in contraction order.
    """
    n, m, r = _check_modes(in_modes, out_modes, ranks)
    order = right_to_left(len(n)) if order is None else check_order(order, len(n))
    return list(_stages(n, m, r, order))


def tt_macs(in_modes, out_modes, ranks, order=None) -> int:
    """Multiply-accumulates of one TT-matrix-vector product (batch 1).

    Parameters are those of :func:`stages`.

    Returns
    -------
    int
        Sum of the stages' ``macs``.
    """
    return sum(s.macs for s in stages(in_modes, out_modes, ranks, order))


def choose_order(in_modes, out_modes, ranks,
                 cost: Callable[[list[Stage]], float] | None = None) -> Order:
    """The contraction order of least cost, by exhaustive search over :func:`valid_orders`.

    Parameters
    ----------
    in_modes, out_modes, ranks
        As for :func:`stages`.
    cost : callable, optional
        ``cost(list_of_stages) -> number``; default total MACs. Ties are broken by the smaller
        peak ``out_size``, then by position in ``valid_orders(d)``.

    Returns
    -------
    Order
    """
    n, m, r = _check_modes(in_modes, out_modes, ranks)
    if cost is None:
        cost = lambda st: sum(s.macs for s in st)  # noqa: E731
    best = None
    for i, order in enumerate(_valid_orders(len(n))):
        st = list(_stages(n, m, r, order))
        key = (cost(st), max(s.out_size for s in st), i)
        if best is None or key < best[0]:
            best = (key, order)
    return best[1]


_fewest_macs_order = lru_cache(maxsize=1024)(choose_order)


def _kept_then_macs(stages: list[Stage]) -> tuple[int, int]:
    return (sum(s.rows * s.inner for s in stages), sum(s.macs for s in stages))


def training_order(in_modes, out_modes, ranks) -> Order:
    """The order a TT layer trains in: the one that keeps the least for the backward pass
    (the stage inputs autograd keeps, one per stage, add up to the least), then the fewest
    MACs. Low-precision training quantizes every stage's output in this order."""
    return choose_order(in_modes, out_modes, ranks, cost=_kept_then_macs)


# --------------------------------------------------------------------------- cores

def tt_ranks(cores) -> tuple[int, ...]:
    """The ranks ``(1, r_1, ..., r_{d-1}, 1)`` of a list of TT-matrix cores.

    Parameters
    ----------
    cores : sequence of torch.Tensor
        Core ``k`` has shape ``(r_{k-1}, n_k, m_k, r_k)``.

    Returns
    -------
    tuple of int

    Raises
    ------
    ValueError
        If there are no cores, a core is not 4-D, neighbouring cores' bonds disagree or an end
        bond is not 1.
    """
    return _shape_info(tuple(tuple(c.shape) for c in cores))[0]


@lru_cache(maxsize=1024)
def _shape_info(shapes: tuple) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """``(ranks, in_modes, out_modes)`` of cores of these shapes, checked as in :func:`tt_ranks`."""
    if not shapes:
        raise ValueError("a TT-matrix needs at least one core, got an empty sequence")
    for k, s in enumerate(shapes):
        if len(s) != 4:
            raise ValueError(f"core {k} has shape {s}; TT-matrix cores must be 4-D "
                             "(r_{k-1}, n_k, m_k, r_k)")
    if shapes[0][0] != 1 or shapes[-1][3] != 1:
        raise ValueError(f"the end ranks must be 1, but core 0 has shape {shapes[0]} and core "
                         f"{len(shapes) - 1} has shape {shapes[-1]}")
    for k in range(len(shapes) - 1):
        if shapes[k][3] != shapes[k + 1][0]:
            raise ValueError(f"core {k} of shape {shapes[k]} and core {k + 1} of shape "
                             f"{shapes[k + 1]} disagree on their bond: {shapes[k][3]} != "
                             f"{shapes[k + 1][0]}")
    return (tuple(s[0] for s in shapes) + (1,), tuple(s[1] for s in shapes),
            tuple(s[2] for s in shapes))


def tt_to_dense(cores) -> torch.Tensor:
    """Reconstruct the dense weight ``W`` of shape ``(M, N)`` (``nn.Linear`` layout).

    Parameters
    ----------
    cores : sequence of torch.Tensor
        Core ``k`` has shape ``(r_{k-1}, n_k, m_k, r_k)``.

    Returns
    -------
    torch.Tensor
        ``W`` with ``W[(i_0..i_{d-1}), (j_0..j_{d-1})] = prod_k G_k[:, j_k, i_k, :]``;
        differentiable w.r.t. the cores.
    """
    cores = list(cores)
    tt_ranks(cores)
    res = cores[0][0].permute(1, 0, 2)  # (M_acc, N_acc, r)
    for g in cores[1:]:
        ma, na, _ = res.shape
        res = torch.einsum("abr,rnms->ambns", res, g).reshape(ma * g.shape[2], na * g.shape[1],
                                                              g.shape[3])
    return res[..., 0]


# --------------------------------------------------------------------------- matvec

@lru_cache(maxsize=1024)
def _plan(n: tuple, m: tuple, r: tuple, order: Order):
    """Per stage: (core, core permutation, P, K, Q, C, intermediate shape).

    The intermediate ``h`` is kept contiguous in its natural axis layout with the batch last:
    after contracting the interval [a, b] it is
    ``(n_0..n_{a-1}, r[a], m_a..m_b, r[b+1], n_{b+1}..n_{d-1}, B)``. Every stage views ``h`` as
    ``(P, K, Q * B)`` with the contracted axes K in the middle and writes ``(P, C, Q * B)``, where
    the produced axes C take their place, so no stage ever permutes the intermediate.
    """
    prod = math.prod
    steps = []
    k = order[0]
    a = b = k
    # first: K = (n_k), C = (r[k], m_k, r[k+1])
    steps.append((k, (0, 2, 3, 1), prod(n[:k]), n[k], prod(n[k + 1:]), r[k] * m[k] * r[k + 1]))
    for k in order[1:]:
        if k == b + 1:  # right: K = (r[k], n_k), C = (m_k, r[k+1])
            steps.append((k, (2, 3, 0, 1), prod(n[:a]) * r[a] * prod(m[a:k]), r[k] * n[k],
                          prod(n[k + 1:]), m[k] * r[k + 1]))
            b = k
        else:  # left: K = (n_k, r[k+1]), C = (r[k], m_k)
            steps.append((k, (0, 2, 1, 3), prod(n[:k]), n[k] * r[k + 1],
                          prod(m[k + 1:b + 1]) * r[b + 1] * prod(n[b + 1:]), r[k] * m[k]))
            a = k
    plan = []
    a = b = order[0]
    for step in steps:
        k = step[0]
        a, b = min(a, k), max(b, k)
        shape = n[:a] + (r[a],) + m[a:b + 1] + (r[b + 1],) + n[b + 1:]
        plan.append(step + (shape,))
    return tuple(plan)


# The GEMMs of one stage. A stage contracts the axes K of the intermediate with the matrix
# ``g`` (C, K) of its core (merged core, for a fused stage) and puts the axes C in their place.
# Two layouts of the intermediate:
#   "L" (batch last):  (P, K, Q * B) -> (P, C, Q * B), a (features, B) matrix as `between`
#                      sees it. One GEMM with a wide right operand, batched over P if P > 1.
#   "F" (batch first): (B * P, K, Q) -> (B * P, C, Q), the layout of x and y. One
#                      (B * P, K) @ (K, C) GEMM if Q == 1, else batched over B * P.
# The core gradient is a GEMM with a long reduction; MKL is several times faster at it when
# the result has at least as many rows as columns, so it is computed transposed when C < K.

def _outer_sum(a, b, nb, rows_a, rows_b):
    """``sum_i a_i @ b_i.T`` over ``nb`` matrices a_i (rows_a, w) and b_i (rows_b, w)."""
    if rows_a < rows_b:
        return _outer_sum(b, a, nb, rows_b, rows_a).t()
    if nb == 1:
        return torch.mm(a.reshape(rows_a, -1), b.reshape(rows_b, -1).t())
    return torch.bmm(a, b.transpose(1, 2)).sum(0)


def _stage_forward(h, g, lay, p, kk, q, batch):
    """Returns the stage input as the view the GEMM reads, and the stage output."""
    if lay == "F":
        if q == 1:
            h = h.reshape(batch * p, kk)
            return h, torch.mm(h, g.t())
        h = h.reshape(batch * p, kk, q)
        return h, torch.bmm(g.expand(batch * p, g.shape[0], kk), h)
    if p == 1:
        h = h.reshape(kk, q * batch)
        return h, torch.mm(g, h)
    h = h.reshape(p, kk, q * batch)
    return h, torch.bmm(g.expand(p, g.shape[0], kk), h)


def _stage_backward(h, g, go, lay, p, kk, q, batch, need_h, need_g):
    """Gradients ``(dh, dg)`` of one stage from ``go``, that of its output (same layout)."""
    c = g.shape[0]
    dh = dg = None
    if lay == "F" and q == 1:
        go = go.reshape(batch * p, c)
        if need_h:
            dh = torch.mm(go, g)
        if need_g:
            dg = torch.mm(h.t(), go).t()
        return dh, dg
    nb, w = (batch * p, q) if lay == "F" else (p, q * batch)
    go = go.reshape(c, w) if nb == 1 else go.reshape(nb, c, w)
    if need_g:  # first: its temporary (nb, C, K) is freed before dh is allocated
        dg = _outer_sum(go, h, nb, c, kk)
    if need_h:
        dh = torch.mm(g.t(), go) if nb == 1 else torch.bmm(g.t().expand(nb, kk, c), go)
    return dh, dg


def _perm_inverse(perm):
    return tuple(sorted(range(len(perm)), key=perm.__getitem__))


class _TTStage(torch.autograd.Function):
    """One stage in layout "L", for contractions that hand intermediates to ``between``.

    ``h`` is the stage input as a ``(features, B)`` matrix, or ``x`` as ``(B, N)`` for the first
    stage; the output is the next ``(features, B)`` matrix, or ``y`` as ``(B, M)`` for the last.
    Autograd keeps the stage input and the core.
    """

    @staticmethod
    def forward(ctx, h, core, step, batch, first, last):
        k, perm, p, kk, q, c, _ = step
        g = core.permute(perm).reshape(c, kk)
        ctx.in_shape = h.shape
        hv, out = _stage_forward(h.t() if first else h, g, "L", p, kk, q, batch)
        ctx.save_for_backward(hv, core, g)
        ctx.step, ctx.batch, ctx.first, ctx.last = step, batch, first, last
        out = out.view(p * c * q, batch)
        return out.t().contiguous() if last else out

    @staticmethod
    @once_differentiable
    def backward(ctx, go):
        h, core, g = ctx.saved_tensors
        k, perm, p, kk, q, c, _ = ctx.step
        batch = ctx.batch
        if ctx.last:
            go = go.t()
        dh, dg = _stage_backward(h, g, go, "L", p, kk, q, batch, ctx.needs_input_grad[0],
                                 ctx.needs_input_grad[1])
        if dh is not None:
            dh = dh.reshape(p * kk * q, batch)
            dh = dh.t() if ctx.first else dh.reshape(ctx.in_shape)
        if dg is not None:
            dg = dg.reshape([core.shape[i] for i in perm]).permute(_perm_inverse(perm))
        return dh, dg, None, None, None, None


# Fused contraction: with nothing to hand to `between`, consecutive stages may run as one GEMM
# with the merged core of their cores (tiny next to the intermediates), and the batch may come
# first. A cost model (below) picks the grouping and the layout; :func:`_fused_plan` also
# precomputes every shape the merges need.

class _Group:
    """A fused stage: the merged core of cores a..b and the stage's GEMM sizes.

    ``steps`` are the pair merges, ``(rows, s, cols, split, merged)``: the partial merge viewed as
    ``(rows, s)`` times the next core viewed as ``(s, cols)``, split into the six axes
    ``(p, N, M, n, m, t)``; ``merged`` is the 4-D shape of the partial merge (``None`` for the
    last pair, which goes straight to the stage matrix through the permutation ``six``).
    """

    __slots__ = ("a", "b", "perm", "p", "kk", "q", "c", "steps", "six", "six_shape",
                 "six_inverse", "core_perm_shape", "perm_inverse", "gathers", "n_partial")

    def __init__(self, shapes, a, b, perm, p, kk, q, c):
        self.a, self.b, self.perm, self.p, self.kk, self.q, self.c = a, b, perm, p, kk, q, c
        self.perm_inverse = _perm_inverse(perm)
        self.core_perm_shape = tuple(shapes[a][i] for i in perm)
        self.steps = []
        pr, big_n, big_m, s = shapes[a]
        for j in range(a + 1, b + 1):
            _, n, m, t = shapes[j]
            split = (pr, big_n, big_m, n, m, t)
            merged = (pr, big_n * n, big_m * m, t) if j < b else None
            self.steps.append((pr * big_n * big_m, s, n * m * t, split, merged))
            big_n, big_m, s = big_n * n, big_m * m, t
        if b > a:
            axes = ((0,), (1, 3), (2, 4), (5,))  # merged-core axis -> axes of the split
            self.six = sum((axes[i] for i in perm), ())
            self.six_shape = tuple(self.steps[-1][3][i] for i in self.six)
            self.six_inverse = _perm_inverse(self.six)
        self.gathers = {}
        self.n_partial = 2 if len(self.steps) == 1 else len(self.steps)  # see matrix()

    def _gather(self, device):
        """Flat indices that permute the product of a pair of cores into the stage matrix, and
        back (one gather instead of a view, a permute and a copy: these tensors are tiny, so the
        number of operations is what costs)."""
        idx = self.gathers.get(device)
        if idx is None:
            rows, _, cols, split, _ = self.steps[0]
            with torch.inference_mode(False):  # kept across calls: not an inference tensor
                fwd = torch.arange(rows * cols, device=device).view(split).permute(self.six)
                fwd = fwd.reshape(-1)
                idx = self.gathers[device] = (fwd, torch.argsort(fwd))
        return idx

    def matrix(self, cores):
        """The stage matrix (C, K) and the partial merges (for the backward pass)."""
        core = cores[self.a]
        if not self.steps:
            return core.permute(self.perm).reshape(self.c, self.kk), []
        if len(self.steps) == 1:  # a pair of cores: the common case
            rows, s, cols, _, _ = self.steps[0]
            left, right = core.reshape(rows, s), cores[self.b].reshape(s, cols)
            g = torch.take(torch.mm(left, right), self._gather(core.device)[0])
            return g.view(self.c, self.kk), [left, right]
        partial = [core]
        for (rows, s, cols, split, merged), nxt in zip(self.steps, cores[self.a + 1:]):
            prod = torch.mm(partial[-1].reshape(rows, s), nxt.reshape(s, cols)).view(split)
            if merged is None:
                return prod.permute(self.six).reshape(self.c, self.kk), partial
            partial.append(prod.permute(0, 1, 3, 2, 4, 5).reshape(merged))

    def matrix_backward(self, cores, partial, dg, grads):
        """Put into ``grads`` the gradients of cores a..b from that of the stage matrix."""
        a = self.a
        if not self.steps:
            grads[a] = dg.reshape(self.core_perm_shape).permute(self.perm_inverse)
            return
        if len(self.steps) == 1:
            rows, s, cols, _, _ = self.steps[0]
            left, right = partial
            dt = torch.take(dg, self._gather(dg.device)[1]).view(rows, cols)
            grads[self.b] = torch.mm(left.t(), dt).view(cores[self.b].shape)
            grads[a] = torch.mm(dt, right.t()).view(cores[a].shape)
            return
        dt = dg.reshape(self.six_shape).permute(self.six_inverse)
        for j in range(len(self.steps) - 1, -1, -1):
            rows, s, cols, split, _ = self.steps[j]
            dt = dt.reshape(rows, cols)
            left, core = partial[j], cores[a + j + 1]
            grads[a + j + 1] = torch.mm(left.reshape(rows, s).t(), dt).view(core.shape)
            da = torch.mm(dt, core.reshape(s, cols).t())
            if j:
                prev = self.steps[j - 1][3]
                dt = da.view(prev[0], prev[1], prev[3], prev[2], prev[4], prev[5]).permute(
                    0, 1, 3, 2, 4, 5)
            else:
                grads[a] = da.view(cores[a].shape)


class _TTFused(torch.autograd.Function):
    """The whole contraction as planned by :func:`_fused_plan`.

    ``fplan`` is ``(layout, batch, groups, two_stage)``. Autograd keeps the input of every stage
    run (``x`` and the intermediates between fused stages), the stage matrices, the cores and
    the partial merges; only the stage inputs grow with the batch.
    """

    @staticmethod
    def forward(ctx, x, fplan, *cores):
        lay, batch, groups, _ = fplan
        saved, partials, mats = [], [], []
        for grp in groups:
            g, partial = grp.matrix(cores)
            mats.append(g)
            partials.append(partial)
        h = x if lay == "F" else x.t()
        for grp, g in zip(groups, mats):
            hv, h = _stage_forward(h, g, lay, grp.p, grp.kk, grp.q, batch)
            saved += (hv, g)
        y = h.view(batch, -1) if lay == "F" else h.view(-1, batch).t().contiguous()
        ctx.save_for_backward(*saved, *cores, *(t for part in partials for t in part))
        ctx.fplan = fplan
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        lay, batch, groups, two_stage = ctx.fplan
        saved = ctx.saved_tensors
        s, d = len(groups), len(ctx.needs_input_grad) - 2
        cores = saved[2 * s:2 * s + d]
        rest = 2 * s + d
        need_core = ctx.needs_input_grad[2:]
        need_g = [any(need_core[grp.a:grp.b + 1]) for grp in groups]
        need_dx = ctx.needs_input_grad[0]
        go = gy.contiguous() if lay == "F" else gy.t().contiguous()
        if two_stage and not need_dx:
            dgs = _two_stage_backward(groups, batch, saved, go, need_g)
        else:
            dgs = _stagewise_backward(lay, batch, groups, saved, go, need_g, need_dx)
            if need_dx:
                dgs, dx = dgs
        grads = [None] * d
        for i, grp in enumerate(groups):
            if need_g[i]:
                start = rest + sum(gr.n_partial for gr in groups[:i])
                grp.matrix_backward(cores, saved[start:start + grp.n_partial], dgs[i], grads)
        if not need_dx:
            dx = None
        return (dx, None, *(g if need else None for g, need in zip(grads, need_core)))


def _stagewise_backward(lay, batch, groups, saved, go, need_g, need_dx):
    """The stage matrices' gradients (and ``dx`` if ``need_dx``), stage by stage backwards.

    In layout F this runs over chunks of the batch, so that the gradient of an intermediate is
    still in cache when the next stage reads it and the gradient of a whole intermediate is
    never allocated; the matrices' gradients add up over the chunks.
    """
    s = len(groups)
    dgs = [None] * s
    chunk = _backward_chunk(groups, batch) if lay == "F" else batch
    dxs = []
    for b0 in range(0, batch, chunk):
        bc = min(chunk, batch - b0)
        goc = go if bc == batch else go[b0:b0 + bc]
        for i in range(s - 1, -1, -1):
            grp = groups[i]
            h = saved[2 * i]
            if bc != batch:
                h = h[b0 * grp.p:(b0 + bc) * grp.p]
            goc, dg = _stage_backward(h, saved[2 * i + 1], goc, lay, grp.p, grp.kk, grp.q, bc,
                                      i > 0 or need_dx, need_g[i])
            if dg is not None:
                dgs[i] = dg if dgs[i] is None else dgs[i].add_(dg)
        if need_dx:
            dxs.append(goc)
    if not need_dx:
        return dgs
    if lay == "F":
        dx = (dxs[0] if len(dxs) == 1 else torch.cat(dxs)).reshape(batch, -1)
    else:
        dx = dxs[0].reshape(-1, batch).t()
    return dgs, dx


def _two_stage_backward(groups, batch, saved, go, need_g):
    """Core gradients of a two-stage layout-F contraction whose first stage takes the right block
    of inputs, when ``x`` needs no gradient.

    With ``x`` as (B, N_l, N_r), the first stage's matrix A ((r, M_r), N_r), the second's
    C (M_l, (N_l, r)) and the intermediate h = x A^T of shape (B, N_l, r, M_r), ``y = C h``.
    The gradient of C is ``sum_b go_b h_b^T``. That of A is ``sum_b x_b^T (C^T go_b)`` by the
    chain rule, which would form the gradient of h, as large as h; associated as
    ``sum_b (C' x_b)^T go_b`` (``C'`` is C with r moved next to M_l) it needs (B, M_l, r, N_r)
    instead and, for TT ranks, fewer multiply-accumulates.
    """
    first, second = groups
    n_left, n_right, m_left, m_right = first.p, first.kk, second.c, second.q
    rank = second.kk // n_left
    x, a_mat, h, c_mat = saved[:4]
    go3 = go.view(batch, m_left, m_right)
    dgs = [None, None]
    if need_g[1]:
        dgs[1] = _outer_sum(go3, h, batch, m_left, second.kk)
    if need_g[0]:
        c_perm = c_mat.view(m_left, n_left, rank).transpose(1, 2).reshape(m_left * rank, n_left)
        cx = torch.bmm(c_perm.expand(batch, m_left * rank, n_left),
                       x.view(batch, n_left, n_right))  # (B, M_l, r, N_r)
        da = torch.mm(cx.view(batch * m_left, rank * n_right).t(), go.view(batch * m_left, m_right))
        dgs[0] = da.view(rank, n_right, m_right).transpose(1, 2).reshape(first.c, n_right)
    return dgs


_CHUNK_ELEMENTS = 1 << 18  # elements of a stage's input and output per chunk, about 1 MB


def _backward_chunk(groups, batch: int) -> int:
    """Samples per chunk of the layout-F backward pass: a power of two, at least 8, that keeps
    every stage's input and output gradients within ``_CHUNK_ELEMENTS``."""
    per_sample = max(grp.p * (grp.kk + grp.c) * grp.q for grp in groups)
    chunk = 8
    while chunk * 2 * per_sample <= _CHUNK_ELEMENTS:
        chunk *= 2
    return batch if 2 * chunk > batch else chunk


# Cost model of the fused contraction, in nanoseconds on one core. Only the ranking of the
# candidates matters. The constants were fitted to measured forward + backward times of every
# grouping and layout of several layers (fc1 and fc2 of the default config, a 3-core layer;
# batch 8 to 512) on a 2-core AVX-512 Xeon with MKL: the GEMMs of a TT layer are short and thin,
# so moving operands and the fixed cost of each kernel call weigh as much as the arithmetic.
_PEAK = 40.0     # multiply-accumulates per ns of a well-shaped GEMM
_BW = 3.5        # elements per ns through the caches
_ITEM = 10.0     # per matrix of a batched GEMM
_CALL = 7000.0   # per kernel call, with the Python around it
_TRANSPOSE = 6   # a transposing copy moves an element this many times


def _gemm_ns(nb, rows, inner, cols):
    """``nb`` GEMMs (rows, inner) @ (inner, cols) into a row-major result."""
    eff = cols / (16 * math.ceil(cols / 16)) * inner / (inner + 6)
    macs = nb * rows * inner * cols
    traffic = nb * (rows * inner + inner * cols + rows * cols)
    return max(macs / (_PEAK * eff), traffic / _BW) + nb * _ITEM + _CALL


def _stage_ns(lay, p, kk, q, c, batch, need_h, train):
    """Forward (and, if ``train``, backward) time of one stage."""
    if lay == "F" and q == 1:
        rows = batch * p
        t = _gemm_ns(1, rows, kk, c)
        if train:
            t += _gemm_ns(1, kk, rows, c) + (_gemm_ns(1, rows, c, kk) if need_h else 0)
        return t + _CALL
    nb, w = (batch * p, q) if lay == "F" else (p, q * batch)
    t = _gemm_ns(nb, c, kk, w)
    if train:
        t += _gemm_ns(nb, max(c, kk), w, min(c, kk))
        if nb > 1:
            t += nb * c * kk / _BW + _CALL
        if need_h:
            t += _gemm_ns(nb, kk, c, w)
    return t + _CALL


def _merge_ns(shapes, train):
    """Time to merge cores of these shapes (and to split the gradient again)."""
    t = 0.0
    p, big_n, big_m, _ = shapes[0]
    for s, n, m, r in shapes[1:]:
        size = p * big_n * big_m * n * m * r
        t += (size * s / _PEAK + 2 * size / _BW + 2 * _CALL) * (3 if train else 1)
        big_n, big_m = big_n * n, big_m * m
    return t


def _group_stage(n, m, r, lo, hi, a, b):
    """(perm, P, K, Q, C) of the stage that contracts the merged cores [a, b] after [lo, hi]
    (``lo is None`` for the first stage); as :func:`_plan` for the coarser TT."""
    prod = math.prod
    gn, gm = prod(n[a:b + 1]), prod(m[a:b + 1])
    if lo is None:
        return (0, 2, 3, 1), prod(n[:a]), gn, prod(n[b + 1:]), r[a] * gm * r[b + 1]
    if a == hi + 1:
        return ((2, 3, 0, 1), prod(n[:lo]) * r[lo] * prod(m[lo:hi + 1]), r[a] * gn,
                prod(n[b + 1:]), gm * r[b + 1])
    return ((0, 2, 1, 3), prod(n[:a]), gn * r[b + 1],
            prod(m[lo:hi + 1]) * r[hi + 1] * prod(n[hi + 1:]), r[a] * gm)


def _plan_batch(batch: int) -> int:
    """The batch size fused contractions are planned for: ``batch`` rounded up to a power of two,
    at least 64. Every batch up to 64 gets the same plan, so what autograd keeps per sample is the
    same at batch 2 as at batch 4 (which is how ``edge3u.train.memory`` measures it)."""
    return max(64, 1 << (batch - 1).bit_length())


def _fused_plan(shapes: tuple, order: Order, batch: int, need_dx: bool, train: bool):
    """The cheapest ``(layout, groups, two_stage)`` for :class:`_TTFused` at this batch size,
    by the cost model above."""
    return _costed_fused_plan(shapes, order, batch, need_dx, train)[1:]


@lru_cache(maxsize=1024)
def fastest_order(shapes: tuple, batch: int, need_dx: bool, train: bool) -> Order:
    """The contraction order whose fused plan the cost model above finds fastest for cores of
    these ``shapes`` at this batch size (``need_dx``: the input needs a gradient; ``train``: a
    backward pass follows). For floating-point layers without a ``between`` hook, where the
    order changes nothing but the rounding and the time."""
    batch = _plan_batch(batch)
    return min(valid_orders(len(shapes)),
               key=lambda o: _costed_fused_plan(shapes, o, batch, need_dx, train)[0])


@lru_cache(maxsize=1024)
def _costed_fused_plan(shapes: tuple, order: Order, batch: int, need_dx: bool, train: bool):
    """``(cost, layout, groups, two_stage)``: the cheapest plan for :class:`_TTFused` at this
    batch size, by the cost model above, with its cost.

    A dynamic programme over the contraction order: each stage contracts the next group of
    consecutive entries of ``order`` that form an interval of cores, with the merged core of
    that group. A stage is ``(a, b, perm, P, K, Q, C)``, ``[a, b]`` being its cores.
    """
    d = len(shapes)
    n = tuple(s[1] for s in shapes)
    m = tuple(s[2] for s in shapes)
    r = tuple(s[0] for s in shapes) + (1,)
    best = None
    for lay in ("L", "F"):
        cost = [0.0] + [math.inf] * d
        back = [0] * (d + 1)
        for j in range(d):
            lo, hi = (min(order[:j]), max(order[:j])) if j else (None, None)
            for i in range(j + 1, d + 1):
                group = order[j:i]
                a, b = min(group), max(group)
                if b - a + 1 != len(group):
                    continue
                _, p, kk, q, c = _group_stage(n, m, r, lo, hi, a, b)
                t = (cost[j] + _stage_ns(lay, p, kk, q, c, batch, need_dx or j > 0, train)
                     + _merge_ns(shapes[a:b + 1], train))
                if lay == "L" and j == 0 and q > 1 and batch > 1:  # x is transposed once
                    t += _TRANSPOSE * math.prod(n) * batch / _BW + _CALL
                if t < cost[i]:
                    cost[i], back[i] = t, j
        total = cost[d]
        if lay == "L" and batch > 1:  # y (and its gradient) are transposed once
            total += (2 if train else 1) * (_TRANSPOSE * math.prod(m) * batch / _BW + _CALL)
        if best is None or total < best[0]:
            best = (total, lay, back)
    _, lay, back = best
    cuts = [d]
    while cuts[-1]:
        cuts.append(back[cuts[-1]])
    cuts.reverse()
    two_stage = False
    if train and not need_dx:
        # Two stages, the first contracting a right-hand block of cores, and a backward pass
        # that never forms the gradient of the intermediate (see _TTFused._two_stage_backward).
        for j in range(1, d):
            if sorted(order[:j]) != list(range(d - j, d)):
                continue
            _, n_left, n_right, _, c_a = _group_stage(n, m, r, None, None, d - j, d - 1)
            _, _, _, m_right, m_left = _group_stage(n, m, r, d - j, d - 1, 0, d - j - 1)
            t = (_two_stage_ns(n_left, n_right, m_left, m_right, r[d - j], batch)
                 + _merge_ns(shapes[:d - j], True) + _merge_ns(shapes[d - j:], True))
            if t < best[0]:
                best, lay, cuts, two_stage = (t,), "F", [0, j, d], True
    stages_ = []
    lo = hi = None
    for j, i in zip(cuts, cuts[1:]):
        a, b = min(order[j:i]), max(order[j:i])
        stages_.append(_Group(shapes, a, b, *_group_stage(n, m, r, lo, hi, a, b)))
        lo, hi = (a, b) if lo is None else (min(lo, a), max(hi, b))
    return best[0], lay, tuple(stages_), two_stage


def _two_stage_ns(n_left, n_right, m_left, m_right, rank, batch):
    """Forward and backward time of a two-stage contraction run with ``_two_stage_backward``:
    the first stage maps the right block of inputs (``n_right``) to ``rank * m_right``, the
    second the left block and the bond (``n_left * rank``) to ``m_left``."""
    k_left = n_left * rank
    return (_gemm_ns(1, batch * n_left, n_right, rank * m_right)      # forward
            + _gemm_ns(batch, m_left, k_left, m_right)
            + _gemm_ns(batch, k_left, m_right, m_left)                # second core's gradient
            + batch * k_left * m_left / _BW
            + _gemm_ns(batch, m_left * rank, n_left, n_right)         # first core's gradient
            + _gemm_ns(1, rank * n_right, batch * m_left, m_right)
            + 8 * _CALL)


def tt_matvec(x: torch.Tensor, cores: Sequence[torch.Tensor], order=None, *,
              return_stages: bool = False,
              between: Callable[[torch.Tensor], torch.Tensor] | None = None):
    """``y = x @ W.T`` for the TT-matrix ``W`` given by ``cores``, without forming ``W``.

    Three ways of running the stages, all giving the same result up to rounding:

    * floating point with ``between``: one GEMM per core in contraction order, each stage an
      autograd Function with a hand-written backward pass (two GEMMs) that keeps only the
      stage's input and core for it;
    * floating point without ``between`` or ``return_stages``: one autograd Function for the
      whole product. Consecutive stages of ``order`` may be fused into one GEMM on the merged
      core of their cores (tiny next to the intermediates), the batch may be laid out first or
      last, and the backward pass may run over chunks of the batch or associate the products
      differently, whichever a cost model of the GEMMs finds fastest for these shapes, this
      batch size and what needs gradients. Autograd keeps the inputs of the stages actually
      run (a subset of those of the per-stage contraction, the same for every batch up to 64)
      and the cores;
    * integer dtypes, or ``return_stages``: plain differentiable tensor operations, one GEMM per
      core; ``int64`` is exact integer arithmetic.

    The Functions' backward passes are not differentiable again (no double backward).

    Parameters
    ----------
    x : torch.Tensor
        ``(B, N)`` or ``(N,)`` with ``N = prod(n_k)``.
    cores : sequence of torch.Tensor
        Core ``k`` has shape ``(r_{k-1}, n_k, m_k, r_k)``; same dtype and device as ``x``.
    order : sequence of int or "fastest", optional
        Contraction order (see :func:`valid_orders`); default right-to-left. All orders give
        the same result up to rounding. ``"fastest"``: the order whose fused plan the cost
        model finds fastest (:func:`fastest_order`) when the whole product is one Function,
        else the order with the fewest MACs.
    return_stages : bool, default False
        Also return the intermediate after each stage.
    between : callable, optional
        Applied to the intermediate after every stage but the last, given as a
        ``(features, B)`` matrix (one column per sample) and returning one of the same shape:
        this is where low-precision training quantizes what the next stage reads.

    Returns
    -------
    y : torch.Tensor
        ``(B, M)`` or ``(M,)`` with ``M = prod(m_k)``, contiguous.
    intermediates : list of torch.Tensor
        Only if ``return_stages``. The output of each stage, in contraction order. After
        contracting the interval of cores ``[a, b]`` it has shape
        ``(B, n_0, .., n_{a-1}, r_{a-1}, m_a, .., m_b, r_b, n_{b+1}, .., n_{d-1})`` (no ``B``
        axis for a 1-D ``x``), keeping the end bonds ``r_{-1} = r_{d-1} = 1`` as size-1 axes;
        ``numel == stages(...)[i].out_size * B``. These are views, not copies.
    """
    cores = list(cores)
    shapes = tuple(tuple(c.shape) for c in cores)
    ranks, n, m = _shape_info(shapes)
    d = len(cores)
    fastest = isinstance(order, str)
    if fastest and order != "fastest":
        raise ValueError(f'contraction order {order!r} is not valid: give a sequence of core '
                         f'indices (see valid_orders({d})) or "fastest"')
    if order is None or fastest:
        order = _fewest_macs_order(n, m, ranks) if fastest else right_to_left(d)
    elif type(order) is tuple and all(type(k) is int for k in order):
        order = _check_order_tuple(order, d)
    else:
        order = check_order(order, d)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, not {type(x).__name__}")
    big_n = math.prod(n)
    if x.ndim not in (1, 2) or x.shape[-1] != big_n:
        raise ValueError(f"x has shape {tuple(x.shape)}, but must be (B, N) or (N,) with "
                         f"N = prod(in_modes {n}) = {big_n}")
    dtype, device = x.dtype, x.device
    for k, c in enumerate(cores):
        if c.dtype != dtype or c.device != device:
            raise ValueError(f"core {k} is {c.dtype} on {c.device}, but x is {x.dtype} on "
                             f"{x.device}; they must agree")

    vec = x.ndim == 1
    batch = 1 if vec else x.shape[0]
    if return_stages or not x.is_floating_point() or batch == 0:
        return _matvec_reference(x, cores, _plan(n, m, ranks, order), order, return_stages,
                                 between)
    x2 = x.reshape(1, big_n) if vec else x
    if between is None:
        train = torch.is_grad_enabled() and (x.requires_grad or any(c.requires_grad for c in cores))
        if fastest:
            order = fastest_order(shapes, batch, x.requires_grad, train)
        lay, groups, two_stage = _fused_plan(shapes, order, _plan_batch(batch), x.requires_grad,
                                             train)
        y = _TTFused.apply(x2, (lay, batch, groups, two_stage), *cores)
    else:
        plan = _plan(n, m, ranks, order)
        h = x2
        for i, step in enumerate(plan):
            last = i == len(plan) - 1
            h = _TTStage.apply(h, cores[step[0]], step, batch, i == 0, last)
            if not last:
                h = between(h)
        y = h
    return y.reshape(math.prod(m)) if vec else y


def _matvec_reference(x, cores, plan, order, return_stages, between):
    """:func:`tt_matvec` with plain differentiable tensor operations (any dtype, exact ints)."""
    vec = x.ndim == 1
    batch = 1 if vec else x.shape[0]
    h = x.reshape(-1, 1) if vec else x.t()  # (N, B); the first reshape below copies it once
    outs = []
    for k, perm, p, kk, q, c, shape in plan:
        g = cores[k].permute(perm).reshape(c, kk)  # (C, K), a copy of a small core
        qb = q * batch
        if p == 1:
            h = g @ h.reshape(kk, qb)
        elif qb == 1:
            h = h.reshape(p, kk) @ g.t()
        else:
            h = torch.bmm(g.expand(p, c, kk), h.reshape(p, kk, qb))
        if between is not None and k != order[-1]:
            h = between(h.reshape(-1, batch)).reshape(h.shape)
        if return_stages:
            outs.append(h.reshape(shape) if vec else h.reshape(shape + (batch,)).movedim(-1, 0))
    y = h.reshape(-1) if vec else h.reshape(-1, batch).t().contiguous()
    return (y, outs) if return_stages else y


# --------------------------------------------------------------------------- TT-SVD

def tt_svd(weight: torch.Tensor, in_modes, out_modes, max_rank: int) -> list[torch.Tensor]:
    """TT-SVD of a dense weight into TT-matrix cores (initialisation from a trained layer).

    Uses ``tensorly.decomposition.tensor_train_matrix`` on the numpy backend in float64.

    Parameters
    ----------
    weight : torch.Tensor
        ``(M, N)`` in ``nn.Linear`` layout, ``M = prod(out_modes)``, ``N = prod(in_modes)``.
    in_modes, out_modes : sequence of int
        ``(n_0, ..., n_{d-1})`` and ``(m_0, ..., m_{d-1})``.
    max_rank : int
        Cap on every inner rank (ranks are also capped by what the unfoldings allow).

    Returns
    -------
    list of torch.Tensor
        Cores ``(r_{k-1}, n_k, m_k, r_k)`` on ``weight``'s device, in ``weight``'s dtype if it
        is floating point, else the default dtype; detached from any graph.
    """
    import tensorly as tl
    from tensorly.decomposition import tensor_train_matrix

    n = _int_tuple("in_modes", in_modes)
    m = _int_tuple("out_modes", out_modes)
    if not n or len(n) != len(m):
        raise ValueError(f"in_modes {in_modes!r} and out_modes {out_modes!r} must be non-empty "
                         "and of the same length")
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise ValueError(f"max_rank must be an integer >= 1, not {max_rank!r}")
    expected = (math.prod(m), math.prod(n))
    if weight.ndim != 2 or tuple(weight.shape) != expected:
        raise ValueError(f"weight has shape {tuple(weight.shape)}, but out_modes {m} and "
                         f"in_modes {n} need (prod(out_modes), prod(in_modes)) = {expected}")
    d = len(n)
    tensor = weight.detach().cpu().to(torch.float64).numpy().T.reshape(n + m)
    with tl.backend_context("numpy"):
        factors = tensor_train_matrix(tensor, rank=[1] + [int(max_rank)] * (d - 1) + [1])
    dtype = weight.dtype if weight.is_floating_point() else torch.get_default_dtype()
    return [torch.as_tensor(np.ascontiguousarray(f), dtype=dtype, device=weight.device)
            for f in factors]
