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
:func:`tt_matvec` runs them, :func:`choose_order` picks the cheapest order.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np
import torch

__all__ = [
    "Order", "Stage", "valid_orders", "check_order", "right_to_left", "stages", "tt_macs",
    "choose_order", "tt_matvec", "tt_to_dense", "tt_ranks", "tt_svd",
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
    rule = (f"a valid contraction order of d={d} cores is a permutation of 0..{d - 1} in which "
            "every prefix is a contiguous interval (start at any core, then extend the contracted "
            "interval by one core to the left or right), e.g. right-to-left "
            f"{right_to_left(d)} or left-to-right {tuple(range(d))}")
    if d <= 4:
        rule += f"; the valid orders are {', '.join(map(str, valid_orders(d)))}"

    def bad(why: str) -> ValueError:
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
    cores = list(cores)
    if not cores:
        raise ValueError("a TT-matrix needs at least one core, got an empty sequence")
    shapes = [tuple(c.shape) for c in cores]
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
    return tuple(s[0] for s in shapes) + (1,)


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


def tt_matvec(x: torch.Tensor, cores: Sequence[torch.Tensor], order=None, *,
              return_stages: bool = False,
              between: Callable[[torch.Tensor], torch.Tensor] | None = None):
    """``y = x @ W.T`` for the TT-matrix ``W`` given by ``cores``, without forming ``W``.

    One GEMM (``mm`` or ``bmm``) per core on views of a contiguous intermediate: no permute of
    the intermediate at any stage, one transposing copy of ``x`` at the start and one of ``y``
    at the end. Works with autograd and with any dtype ``torch.matmul`` supports, including
    ``int64`` (exact integer arithmetic).

    Parameters
    ----------
    x : torch.Tensor
        ``(B, N)`` or ``(N,)`` with ``N = prod(n_k)``.
    cores : sequence of torch.Tensor
        Core ``k`` has shape ``(r_{k-1}, n_k, m_k, r_k)``; same dtype and device as ``x``.
    order : sequence of int, optional
        Contraction order (see :func:`valid_orders`); default right-to-left. All orders give
        the same result up to rounding.
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
    ranks = tt_ranks(cores)
    n = tuple(c.shape[1] for c in cores)
    m = tuple(c.shape[2] for c in cores)
    order = right_to_left(len(cores)) if order is None else check_order(order, len(cores))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, not {type(x).__name__}")
    big_n = math.prod(n)
    if x.ndim not in (1, 2) or x.shape[-1] != big_n:
        raise ValueError(f"x has shape {tuple(x.shape)}, but must be (B, N) or (N,) with "
                         f"N = prod(in_modes {n}) = {big_n}")
    for k, c in enumerate(cores):
        if c.dtype != x.dtype or c.device != x.device:
            raise ValueError(f"core {k} is {c.dtype} on {c.device}, but x is {x.dtype} on "
                             f"{x.device}; they must agree")

    vec = x.ndim == 1
    batch = 1 if vec else x.shape[0]
    h = x.reshape(big_n, 1) if vec else x.t()  # (N, B); the first reshape below copies it once
    outs = []
    for k, perm, p, kk, q, c, shape in _plan(n, m, ranks, order):
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
