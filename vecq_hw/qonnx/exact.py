"""Exact conversions between fixed-point constants and the float32 tensors of an ONNX file.

A fixed-point constant is an integer mantissa m and fractional bits F (value m * 2^-F); so is
every finite float (a float32 is a 24-bit integer times a power of two). Going out, a mantissa
with more than 24 significant bits is split into parts that are each a float32 exactly (their sum
is m); coming in, floats are read as exact Fractions and turned back into (mantissas, F). Python
integers throughout: nothing here rounds.
"""

from __future__ import annotations

import numpy as np

#: significant bits of a float32
F32_BITS = 24
#: float32 normal exponent range: a part must be m * 2^e with 2^-126 <= |value| < 2^128
_F32_MIN_EXP, _F32_MAX_EXP = -126, 127


def significant_bits(m: int) -> int:
    """Bits between the highest and the lowest set bit of |m| (0 for 0)."""
    m = abs(int(m))
    return 0 if m == 0 else m.bit_length() - ((m & -m).bit_length() - 1)


def split_f32(m: int) -> list[int]:
    """|m| cut into pieces of at most 24 significant bits, highest first, each with m's sign."""
    sign, rest, parts = (-1 if m < 0 else 1), abs(int(m)), []
    while rest:
        low = max(rest.bit_length() - F32_BITS, 0)
        top = (rest >> low) << low
        parts.append(sign * top)
        rest -= top
    return parts


def f32_slices(mantissas) -> list[list[int]]:
    """``mantissas`` as a sum of slices whose every value has at most 24 significant bits (a float32
    times a power of two): one slice when every mantissa already fits, more for wider ones."""
    split = [split_f32(int(m)) for m in np.asarray(mantissas).reshape(-1)]
    n = max((len(s) for s in split), default=0)
    return [[s[i] if i < len(s) else 0 for s in split] for i in range(max(n, 1))]


def f32_exact(mantissas, frac: int) -> bool:
    """Whether every value m * 2^-frac is a float32 (24 significant bits, normal exponent range)."""
    for m in mantissas:
        m = abs(int(m))
        if m and (significant_bits(m) > F32_BITS
                  or not _F32_MIN_EXP <= m.bit_length() - 1 - frac <= _F32_MAX_EXP):
            return False
    return True


def trailing_zeros(mantissas) -> int:
    """Trailing zero bits common to every nonzero mantissa (0 when all are zero)."""
    nz = [abs(int(m)) for m in mantissas if m]
    return min(((m & -m).bit_length() - 1 for m in nz), default=0)


def fractions_to_fixed(values) -> tuple[list[int], int]:
    """Exact (mantissas, frac >= 0) of dyadic Fractions (power-of-two denominators)."""
    frac = max((v.denominator.bit_length() - 1 for v in values), default=0)
    return [int(v * (1 << frac)) for v in values], frac
