"""A value some cycles later: a chain of registers (the pipelines share this one helper)."""

from amaranth import Signal

__all__ = ["delayed"]


def delayed(m, value, cycles: int, name: str):
    """``value`` ``cycles`` cycles later, through registers named ``name1``, ``name2``, …
    (``value`` itself for 0 cycles)."""
    for d in range(cycles):
        reg = Signal.like(value, name=f"{name}{d + 1}")
        m.d.sync += reg.eq(value)
        value = reg
    return value
