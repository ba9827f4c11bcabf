"""The class of the largest logit, by a tree of registered pairwise comparisons."""

from amaranth import Const, Mux, Signal, signed

from edge3u.models.schedule import argmax_cycles

__all__ = ["argmax_tree", "argmax_cycles"]


def argmax_tree(m, logits, acc_bits: int):
    """The index of the largest of ``logits`` (the lowest index on ties), one register level
    per comparison level; the last level is combinational, so the index is valid
    ``argmax_cycles(len(logits)) - 1`` cycles after the logits are. Each comparison is the
    sign of one subtraction: a carry chain, no more logic."""
    classes = len(logits)
    index_shape = range(max(2, classes))
    level = [(value, Const(c, index_shape)) for c, value in enumerate(logits)]
    depth = 0
    while len(level) > 1:
        depth += 1
        last = len(level) <= 2
        nxt = []
        for j in range(0, len(level), 2):
            if j + 1 == len(level):
                value, index = level[j]
            else:
                (lv, li), (rv, ri) = level[j], level[j + 1]
                right = (lv - rv)[-1]  # rv > lv; the left (lower index) wins ties
                value, index = Mux(right, rv, lv), Mux(right, ri, li)
            if not last:
                v = Signal(signed(acc_bits), name=f"argmax{depth}_{j // 2}_value")
                i = Signal(index_shape, name=f"argmax{depth}_{j // 2}_index")
                m.d.sync += [v.eq(value), i.eq(index)]
                value, index = v, i
            nxt.append((value, index))
        level = nxt
    return level[0][1]
