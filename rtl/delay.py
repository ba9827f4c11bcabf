"""A value some cycles later: a chain of registers (the pipelines share this one helper)."""

from amaranth import Signal

__all__ = ["delayed"]


def delayed(m, value, cycles: int, name: str, *, reset_less: bool = False):
    """``value`` ``cycles`` cycles later, through registers named ``name1``, ``name2``, …
    (``value`` itself for 0 cycles); ``reset_less`` registers keep their value on reset (a
    block RAM's output register has no reset: see edge3u/bram_fold.py)."""
    for d in range(cycles):
        reg = Signal.like(value, name=f"{name}{d + 1}", reset_less=reset_less)
        m.d.sync += reg.eq(value)
        value = reg
    return value
