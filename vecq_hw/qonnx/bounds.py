"""Worst-case value ranges of a layer's pre-rounding result, and how exactly a float32 ONNX
executor computes the graph ``to_qonnx`` writes for it.

All bounds are per output channel, in Python integers (mantissa units), from the input types'
extreme mantissas: no input the types can hold gets outside them (the accumulator argument of
``ir.accumulator_type``). Every partial sum of terms whose ranges contain 0 stays inside the
bound of the whole sum, so an executor whose values are integers below 2^24 in some unit
computes every partial result exactly in float32, whatever order or blocking it sums in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import ir
from .exact import F32_BITS

#: float32 unit roundoff: one rounding changes a value v by at most |v| * 2^-24
UNIT_ROUNDOFF = 2.0 ** -F32_BITS


@dataclass(frozen=True)
class PreRound:
    """The value y a layer requantises: ``frac`` fractional bits, per-channel mantissa bounds."""

    frac: int
    lo: tuple[int, ...]
    hi: tuple[int, ...]

    @property
    def magnitude(self) -> int:
        return max(max(abs(v) for v in self.lo), max(abs(v) for v in self.hi))


def acc_bounds(layer: ir.Weighted, in_type) -> tuple[list[int], list[int], list[int]]:
    """Per output channel: lowest and highest acc mantissa, and sum_i |d_ij| * max|x| (for the
    float error of an inexact sum)."""
    d = layer.multipliers_by_output()
    pos = np.where(d > 0, d, 0).sum(axis=0)
    neg = np.where(d < 0, d, 0).sum(axis=0)
    xlo, xhi = in_type.min_mantissa, in_type.max_mantissa
    lo = [int(p) * xlo + int(n) * xhi for p, n in zip(pos, neg)]
    hi = [int(p) * xhi + int(n) * xlo for p, n in zip(pos, neg)]
    absum = [int(a) * max(-xlo, xhi) for a in np.abs(d).sum(axis=0)]
    return lo, hi, absum


def weighted_y(layer: ir.Weighted, in_type, bias_units) -> PreRound:
    """y = acc*s + b' in units of 2^-P (P = layer.product_frac), b' = ``bias_units`` (ints)."""
    frac = layer.product_frac(in_type)
    k = frac - in_type.frac - layer.scale_type.frac
    lo, hi, _ = acc_bounds(layer, in_type)
    ylo, yhi = [], []
    for a, c, s, b in zip(lo, hi, layer.scale.tolist(), bias_units):
        ends = (a * s << k, c * s << k)
        ylo.append(min(ends) + b)
        yhi.append(max(ends) + b)
    return PreRound(frac, tuple(ylo), tuple(yhi))


def sum_y(in_types, counts=None) -> PreRound:
    """Sum of values of ``in_types`` (``counts``: how many of each), aligned to the finest grid."""
    frac = max(t.frac for t in in_types)
    counts = counts or [1] * len(in_types)
    lo = sum(n * (t.min_mantissa << (frac - t.frac)) for t, n in zip(in_types, counts))
    hi = sum(n * (t.max_mantissa << (frac - t.frac)) for t, n in zip(in_types, counts))
    return PreRound(frac, (lo,), (hi,))


def cannot_overflow(out_type, y: PreRound) -> bool:
    """Whether no rounding of any y in range leaves out_type's range: then AP_WRAP, AP_SAT_ZERO
    and saturation bits are all the identity, and a saturating Quant writes the layer exactly."""
    sh = y.frac - out_type.frac
    lo, hi = min(y.lo), max(y.hi)
    if sh > 0:
        lo, hi = lo >> sh, -((-hi) >> sh)  # floor and ceiling: any rounding lies between
    else:
        lo, hi = lo << -sh, hi << -sh
    return out_type.min_mantissa <= lo and hi <= out_type.max_mantissa


def f32_error(mag: int, frac: int, out_frac: int, n_roundings: int, inexact_sum: float = 0.0) -> float:
    """Bound, in output LSBs, on how far a float32 evaluation ends from the exact pre-rounding value.

    ``mag`` bounds every intermediate result in units of 2^-``frac`` (the value's own grid). When
    it stays below 2^24 (with room for the rounding offset and the Quant's half-LSB tests) every
    intermediate is an integer float32 holds: nothing rounds, the error is 0. Otherwise each of
    the ``n_roundings`` operations moves its result by at most 2^-24 of its size, plus
    ``inexact_sum`` (units of 2^-frac) from an inexact accumulation. An error below one LSB
    changes a requantised output by at most one LSB, and only where the exact value lies within
    that distance of a rounding boundary."""
    mag = mag + (1 << max(frac - out_frac, 0))
    if mag < (1 << F32_BITS) and inexact_sum == 0.0:
        return 0.0
    err = inexact_sum + n_roundings * UNIT_ROUNDOFF * mag * (1 + 2.0 ** -20)
    return float(err * 2.0 ** (out_frac - frac))


def weighted_f32_error(layer: ir.Weighted, in_type, frac: int, bias_units, n_bias_parts: int) -> float:
    """float32 error bound (output LSBs) of Conv/MatMul -> Mul(s) -> Add(bias parts) -> Quant."""
    lo, hi, absum = acc_bounds(layer, in_type)
    k = frac - in_type.frac - layer.scale_type.frac
    scale = [abs(s) for s in layer.scale.tolist()]
    acc = [max(abs(a), abs(c)) for a, c in zip(lo, hi)]
    mag = max((a * s << k) + abs(b) for a, s, b in zip(acc, scale, bias_units))
    inexact = 0.0
    if max(acc) >= (1 << F32_BITS):  # a sum of n terms moves by at most n * 2^-24 * sum|terms|
        inexact = layer.fan_in() * UNIT_ROUNDOFF * max(a * s for a, s in zip(absum, scale)) * 2.0 ** k
    return f32_error(mag, frac, layer.out_type.frac, n_bias_parts + 1, inexact)
