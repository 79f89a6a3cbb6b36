"""Weight levels: the integer multiplier each k-bit code stands for.

A weighted layer stores k-bit signed codes c in [-2**(k-1), 2**(k-1) - 1] and one table
``levels`` of 2**k integers shared by its output channels; the weight of code c in output
channel j is ``levels[c + 2**(k-1)] * s_j``. The table is data, so a new quantiser whose
values are integers under a per-channel scale needs no change to the integer model, the
simulator or the HLS back end. Two tables have names because the released format (v1)
spelt them as an ``encoding``:

* ``odd``: d = 2c + 1 (VecQ/µL2Q's half-integer grid: (c + 1/2)·α = (2c + 1)·α/2);
* ``int``: d = c.

The HLS back end picks the product from the table's shape (:func:`product_kind`).
"""

from __future__ import annotations

import numpy as np

from ..errors import FormatError
from .arith import code_range

NAMED_LEVELS = ("odd", "int")
#: |level| bound: keeps every product x*d inside the contract's exact widths
MAX_LEVEL = (1 << 15) - 1


def named_levels(name: str, bits: int) -> np.ndarray:
    """The table called ``name`` for k = ``bits``, in code order (code -2**(k-1) first)."""
    lo, hi = code_range(int(bits))
    c = np.arange(lo, hi + 1, dtype=np.int64)
    if name == "odd":
        return 2 * c + 1
    if name == "int":
        return c
    raise FormatError(f"unknown weight encoding '{name}', expected one of {NAMED_LEVELS}")


def levels_name(levels: np.ndarray, bits: int) -> str | None:
    """'odd' or 'int' when the table is that named one, else None."""
    for name in NAMED_LEVELS:
        ref = named_levels(name, bits)
        if levels.shape == ref.shape and np.array_equal(levels, ref):
            return name
    return None


def multipliers(codes: np.ndarray, levels, bits: int | None = None) -> np.ndarray:
    """The integer multipliers d = levels[code] of a code table (int64, same shape).

    ``levels`` is a table (then ``bits`` defaults to log2 of its length) or the name of one
    ('odd': d = 2c + 1, 'int': d = c), which needs no ``bits``.
    """
    c = np.asarray(codes, dtype=np.int64)
    if isinstance(levels, str):
        if levels == "odd":
            return 2 * c + 1
        if levels == "int":
            return c
        raise FormatError(f"unknown weight encoding '{levels}', expected one of {NAMED_LEVELS}")
    table = np.asarray(levels, dtype=np.int64)
    if bits is None:
        bits = int(table.size).bit_length() - 1
    return table[c + (1 << (int(bits) - 1))]


def signed_digits(v: int) -> int:
    """Nonzero digits of v's canonical signed-digit form: the fewest signed powers of two."""
    v, n = abs(int(v)), 0
    while v:
        if v & 1:
            n += 1
            v = v - 1 if (v & 3) == 1 else v + 1  # ...01 -> subtract, ...11 -> add (CSD)
        v >>= 1
    return n


def product_kind(levels: np.ndarray) -> str:
    """How hardware multiplies by any level of the table.

    'addsub': every level is ±1 or 0 (add, subtract or skip); 'shift_add': every level is a
    sum of at most two signed powers of two (two shifted copies of x, one adder);
    'shift_add_n': at most :func:`max_shift_terms` signed powers of two (ESB, issue 14); otherwise
    'multiply' (a multiplier, bound to fabric or DSP as the layer asks).
    """
    mags = {abs(int(v)) for v in np.asarray(levels).reshape(-1)}
    if mags <= {0, 1}:
        return "addsub"
    if max(signed_digits(v) for v in mags) <= 2:
        return "shift_add"
    if shift_add_terms(levels) <= max_shift_terms(np.size(levels)):
        return "shift_add_n"
    return "multiply"


def shift_add_terms(levels: np.ndarray) -> int:
    """The most canonical signed digits of any level: the shifted copies of x a shift-add
    product needs (issue 14: ESB's levels m*2**e, m < 2**(k+1), need at most k + 1)."""
    return max(signed_digits(v) for v in np.asarray(levels).reshape(-1))


def max_shift_terms(n_levels: int) -> int:
    """'shift_add_n' (issue 14) is chosen over a multiplier when every level has at most
    ceil(k/2) signed digits, k = log2(table size): no more adders than the released k-bit
    shift-add over the code bits, and every ESB table (k + 1 significant bits in a b-bit code,
    b >= k + 2) qualifies; a 3-bit table needing 3 digits stays a multiply."""
    k = max(int(n_levels).bit_length() - 1, 1)
    return max(2, (k + 1) // 2)


def level_width(levels: np.ndarray) -> int:
    """Two's-complement width holding every level."""
    m = int(np.max(np.abs(np.asarray(levels, dtype=np.int64)))) if np.size(levels) else 0
    return max(2, (m).bit_length() + 1)
