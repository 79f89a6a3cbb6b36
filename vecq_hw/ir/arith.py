"""Integer widths of the arithmetic contract: code ranges and exact accumulator bounds."""

from __future__ import annotations

import numpy as np

from ..fixed import FixedType

#: The largest mantissa width the simulator's int64 arithmetic may produce anywhere.
MAX_EXACT_WIDTH = 62


def code_range(bits: int) -> tuple[int, int]:
    """Inclusive range of a signed k-bit code."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def signed_width_for(lo: int, hi: int) -> int:
    """Smallest two's-complement width holding every integer in [lo, hi]."""
    w = 1
    while not (-(1 << (w - 1)) <= lo and hi <= (1 << (w - 1)) - 1):
        w += 1
    return w


def accumulator_type(in_type: FixedType, d: np.ndarray) -> FixedType:
    """Exact accumulator for sum_i x_i * d_ij, from the worst case over all output channels.

    ``d`` has the fan-in on every axis but the last (output channels). The bound uses the
    input type's extreme mantissas, so no input the type can hold overflows it.
    """
    d = np.asarray(d, dtype=np.int64).reshape(-1, d.shape[-1])
    pos = np.where(d > 0, d, 0).sum(axis=0)
    neg = np.where(d < 0, d, 0).sum(axis=0)
    lo_x, hi_x = in_type.min_mantissa, in_type.max_mantissa
    hi = int(np.max(pos * hi_x + neg * lo_x)) if d.size else 0
    lo = int(np.min(pos * lo_x + neg * hi_x)) if d.size else 0
    width = signed_width_for(min(lo, 0), max(hi, 0))
    return FixedType(width=width, integer=width - in_type.frac, signed=True)


def aligned_sum_type(in_types, count: int | None = None) -> FixedType:
    """Exact type of the sum of values of ``in_types`` (or ``count`` values of one type).

    Every operand is brought to the largest fractional width (a left shift, exact); the sum
    of n values then needs at most ceil(log2 n) more integer bits than the widest operand.
    """
    in_types = list(in_types)
    frac = max(t.frac for t in in_types)
    n = len(in_types) if count is None else count
    lo = sum(t.min_mantissa << (frac - t.frac) for t in in_types) * (n // len(in_types))
    hi = sum(t.max_mantissa << (frac - t.frac) for t in in_types) * (n // len(in_types))
    width = signed_width_for(min(lo, 0), max(hi, 0))
    return FixedType(width=width, integer=width - frac, signed=True)
