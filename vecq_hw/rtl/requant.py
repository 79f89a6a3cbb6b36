"""The ONE requantisation of the arithmetic contract, composed exactly from da4ml operations.

da4ml's own ``quantize`` knows two roundings (TRN, RND) and three overflows (WRAP, SAT,
SAT_SYM), and its WRAP from a signed value into a much wider unsigned type is not a modular
wrap (``-4`` -> ``ap_ufixed<8,8>`` gives 4, where ap_types gives 252). So we use only the
operations whose meaning is plain: add a constant, floor onto a grid (a bit slice), keep one
bit, pick by sign (``msb_mux``), max/min, and build every ap_types mode from them.

Values are da4ml's real values; ``y`` is a multiple of ``u = 2**-frac`` and the target grid is
``q = 2**-t.frac``. With ``sh = frac - t.frac > 0`` bits dropped, ap_types' rounding is
``floor((m + c) / 2**sh)`` on the mantissa m = y / u, with ``h = 2**(sh-1)`` and

==============  ======================  (the same table as ``FixedType._round_shift``)
AP_TRN          c = 0
AP_RND          c = h
AP_RND_MIN_INF  c = h - 1
AP_RND_ZERO     c = h - [m >= 0]
AP_RND_INF      c = h - [m < 0]
AP_RND_CONV     c = h - 1 + bit_sh(m)   (the lowest kept bit: ties go to even)
AP_TRN_ZERO     c = [m < 0] (2**sh - 1)
==============  ======================

Every c is below 2**sh, so when y already lies on the grid the floor gives y back: the
formulas hold whatever finer grid da4ml tracks. Overflow then acts on the rounded value r:
WRAP (N = 0) slices bits (with the signed-to-unsigned case composed by hand), SAT/SAT_SYM
clamp with max/min, SAT_ZERO picks 0 by the sign of ``r - (hi + q)`` and ``r - lo``.
AP_WRAP with saturation bits N > 0 and AP_WRAP_SM are refused (``unsupported``).
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
from da4ml.trace import FixedVariable

from ..errors import VecQError
from ..fixed import FixedType

SUPPORTED_ROUNDING = ("AP_TRN", "AP_RND", "AP_RND_MIN_INF", "AP_RND_ZERO", "AP_RND_INF", "AP_RND_CONV",
                      "AP_TRN_ZERO")
SUPPORTED_OVERFLOW = ("AP_WRAP", "AP_SAT", "AP_SAT_SYM", "AP_SAT_ZERO")
#: constants and grids must stay inside what da4ml's constant handling resolves (``_const_f``
#: searches 2**-32 .. 2**32) and what its int64 interpreter holds
MAX_FRAC = 30


class RtlUnsupported(VecQError):
    """A model the RTL path cannot build exactly (a mode, a size, a kind): exit 2."""


def unsupported(t: FixedType) -> str | None:
    """Why ``t`` cannot be a requantisation target here, or None."""
    if t.rounding not in SUPPORTED_ROUNDING:
        return f"rounding {t.rounding} is not supported"
    if t.overflow not in SUPPORTED_OVERFLOW:
        return f"overflow {t.overflow} is not supported by the RTL path (no exact composition)"
    if t.overflow == "AP_WRAP" and t.sat_bits:
        return f"AP_WRAP with {t.sat_bits} saturation bits is not supported by the RTL path"
    if t.kind != "fixed":
        return f"{t}: ap_int targets of a requantisation are not supported"
    if abs(t.frac) > MAX_FRAC:
        return f"{t}: {t.frac} fractional bits, beyond the {MAX_FRAC} the RTL path resolves"
    return None


def const(value: float, hwconf) -> FixedVariable:
    return FixedVariable.from_const(Decimal(value), hwconf)


def add_const(v: FixedVariable, c: Decimal) -> FixedVariable:
    return v if c == 0 else v + c


def floor_to(v: FixedVariable, frac: int) -> FixedVariable:
    """floor(v / 2**-frac) * 2**-frac, without any wrap (the width covers v's range)."""
    k, i, _ = v.kif
    # one integer bit above both v's range and the grid step: floor(v) >= v - q stays inside,
    # and the width stays positive (da4ml turns a quantize to <= 0 bits into the constant 0)
    return v.quantize(k, max(i, -frac) + 1, frac, "WRAP", "TRN")


def max_const(v: FixedVariable, c: Decimal) -> FixedVariable:
    """max(v, c) as relu(v - c) + c.

    Not da4ml's ``max_of(c)``: that muxes a constant operand, and da4ml stores a constant
    on a grid no finer than 2**-32 of its signal's scale factor, which drifts by the scales'
    exponents layer after layer; once it passes 2**32 the mux shifts the constant wrongly.
    Constant *additions* carry their own grid and stay exact."""
    if v.low >= c:
        return v
    if v.high <= c:
        return const(c, v.hwconf)
    return add_const(add_const(v, -c).relu(), c)


def min_const(v: FixedVariable, c: Decimal) -> FixedVariable:
    """min(v, c) = c - relu(c - v) (see max_const)."""
    if v.high <= c:
        return v
    if v.low >= c:
        return const(c, v.hwconf)
    return add_const(-(add_const(-v, c).relu()), c)


def max_var(a: FixedVariable, b: FixedVariable) -> FixedVariable:
    """max(a, b) for max pooling: constants go through max_const."""
    if a.low == a.high and b.low == b.high:
        return const(max(a.low, b.low), a.hwconf)
    if a.low == a.high:
        return max_const(b, a.low)
    if b.low == b.high:
        return max_const(a, b.low)
    return a.max_of(b)


def by_sign(v: FixedVariable, if_neg: FixedVariable, if_pos: FixedVariable) -> FixedVariable:
    """``if_neg`` where v < 0, else ``if_pos``."""
    if v.low >= 0:
        return if_pos
    if v.high < 0:
        return if_neg
    return v.msb_mux(if_neg, if_pos)


def round_to(y: FixedVariable, frac: int, t: FixedType) -> FixedVariable:
    """ap_types rounding of y (a multiple of 2**-frac) onto t's grid; no overflow step."""
    sh = frac - t.frac
    if sh <= 0:
        return y
    u = Decimal(2) ** -frac
    q = Decimal(2) ** -t.frac
    h = q / 2
    mode = t.rounding
    if mode == "AP_TRN":
        z = y
    elif mode == "AP_RND":
        z = add_const(y, h)
    elif mode == "AP_RND_MIN_INF":
        z = add_const(y, h - u)
    elif mode == "AP_RND_ZERO":
        z = by_sign(y, add_const(y, h), add_const(y, h - u))
    elif mode == "AP_RND_INF":
        z = by_sign(y, add_const(y, h - u), add_const(y, h))
    elif mode == "AP_TRN_ZERO":
        z = by_sign(y, add_const(y, q - u), y)
    elif mode == "AP_RND_CONV":
        # the kept LSB of y: y mod 2q, floored to q, is 0 or q; scaled onto u it is the +1
        bit = y.quantize(0, 1 - t.frac, t.frac, "WRAP", "TRN")
        z = add_const(y, h - u)
        if not (bit.low == bit.high == 0):
            z = z + bit * (u / q)
    else:  # pragma: no cover - refused by unsupported()
        raise AssertionError(mode)
    return floor_to(z, t.frac)


def overflow(r: FixedVariable, t: FixedType) -> FixedVariable:
    """ap_types overflow handling of r (already on t's grid) into t."""
    q = Decimal(2) ** -t.frac
    lo_m, hi_m = t.overflow_range()
    lo, hi = Decimal(lo_m) * q, Decimal(hi_m) * q
    if r.low >= lo and r.high <= hi:
        return r
    o = t.overflow
    if o in ("AP_SAT", "AP_SAT_SYM"):
        if r.low < lo:
            r = max_const(r, lo)
        if r.high > hi:
            r = min_const(r, hi)
        return r
    if o == "AP_SAT_ZERO":
        if r.low > hi or r.high < lo:
            return const(0, r.hwconf)
        zero = const(0, r.hwconf)
        if r.high > hi:
            key = r - (hi + q)  # negative exactly when r <= hi
            qint = (float(min(r.low, 0)), float(max(hi, 0)), float(min(r.step, q)))
            r = key.msb_mux(r, zero, qint=qint)
        if r.low < lo:
            key = r - lo  # negative exactly when r < lo
            qint = (float(min(lo, 0)), float(max(r.high, 0)), float(min(r.step, q)))
            r = key.msb_mux(zero, r, qint=qint)
        return r
    # AP_WRAP, N = 0: keep the low bits
    if t.signed:
        return r.quantize(1, t.integer - 1, t.frac, "WRAP", "TRN")
    top = Decimal(2) ** t.integer
    if r.low >= 0:
        return r.quantize(0, t.integer, t.frac, "WRAP", "TRN")
    if r.low < -top or r.high >= top:
        # signed wrap into [-2**I, 2**I): the low I+1 integer bits, two's complement
        r = r.quantize(1, t.integer, t.frac, "WRAP", "TRN")
    if r.low >= 0:
        return r
    # now r in [-2**I, 2**I): mod 2**I adds 2**I to the negative ones
    return r.msb_mux(r + top, r, qint=(0.0, float(top - q), float(min(r.step, q))))


def requantize(y: FixedVariable, frac: int, t: FixedType, where: str) -> FixedVariable:
    """``t.quantize_mantissa(y, frac)`` as da4ml operations; refuses what it cannot compose."""
    why = unsupported(t)
    if why:
        raise RtlUnsupported(f"{where}: {why}")
    if y.low == y.high:  # a constant: computed here, by the simulator's own definition
        m = int(y.low * (Decimal(2) ** frac))
        r = int(t.quantize_mantissa(np.array([m], dtype=np.int64), frac)[0])
        return const(Decimal(r) * Decimal(2) ** -t.frac, y.hwconf)
    return overflow(round_to(y, frac, t), t)
