"""``y = acc*s + b`` and its requantisation in float arithmetic that never rounds.

The int64 path (``FixedType.quantize_mantissa``) is the definition the simulator falls back to. This
path exists for speed: small networks spend most of their time converting between float BLAS
results and int64, and in the five or six int64 passes of the requantisation. Here the GEMM's
float output is requantised in four float passes and stays float (an exact integer "carrier")
for the next layer's GEMM.

Why it is exact
---------------
Let ``sh = product_frac - out.frac`` (0 <= sh <= 62) and ``c`` the rounding offset of the
mode (below). The plan computes ``v = acc * S + B`` with ``S = s * 2**-sh`` and
``B = (b + c) * 2**-sh`` in a float type with a ``p``-bit significand (24 or 53), then rounds
``v`` to an integer. ``S`` and ``B`` are exact (integers below 2**p times a power of two well
inside the exponent range). The plan is only made when
``2**(wa-1) * max|s| + max|b| + 2**sh < 2**p`` (``wa`` = the accumulator width, which bounds
``|acc|`` by ``Model.check``), so the exact product ``acc*s*2**-sh`` and the exact sum
``(acc*s + b + c) * 2**-sh`` are each an integer below 2**p times a power of two: both are
representable, so IEEE arithmetic (correctly rounded) returns them unchanged. Rounding ``v``
with floor/rint/trunc is then exact, and so is the clip to the output range (integers below
2**p). Rounding offsets: AP_TRN floor(v), c = 0; AP_RND floor, c = 2**(sh-1) (ties up);
AP_RND_MIN_INF floor, c = 2**(sh-1) - 1 (ties down); AP_RND_CONV rint (ties to even),
c = 0; AP_TRN_ZERO trunc, c = 0. AP_RND_ZERO / AP_RND_INF need a sign-dependent offset and
the wrapping overflow modes need bit operations: those layers use the int64 path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..fixed import FixedType

_ROUND = {
    # mode: (offset as a function of h = 2**(sh-1), rounding function)
    "AP_TRN": (lambda h: 0, np.floor),
    "AP_RND": (lambda h: h, np.floor),
    "AP_RND_MIN_INF": (lambda h: h - 1, np.floor),
    "AP_RND_CONV": (lambda h: 0, np.rint),
    "AP_TRN_ZERO": (lambda h: 0, np.trunc),
}
_OVERFLOW = ("AP_SAT", "AP_SAT_SYM", "AP_SAT_ZERO")
_PRECISION = ((np.float32, 24), (np.float64, 53))


def carrier_dtype(t: FixedType):
    """The narrowest dtype that holds every mantissa of ``t`` exactly (float32, float64, int64)."""
    for dtype, p in _PRECISION:
        if t.width <= p:
            return dtype
    return np.int64


@dataclass(frozen=True)
class FloatRequant:
    """A compiled float requantisation of one weighted layer (see the module docstring)."""

    dtype: type             # float32 or float64: the post-processing precision
    scale: np.ndarray       # s * 2**-sh, per output channel
    offset: np.ndarray      # (b + c) * 2**-sh
    rounding: object        # np.floor / np.rint / np.trunc, or None when sh == 0
    lo: float
    hi: float
    zero_on_overflow: bool  # AP_SAT_ZERO
    out_dtype: type         # the carrier of the output type

    @classmethod
    def plan(cls, acc_width: int, scale: np.ndarray, bias: np.ndarray, sh: int,
             t: FixedType) -> "FloatRequant | None":
        """The plan for ``t.quantize_mantissa(acc*scale + bias, frac)``, sh = frac - t.frac,
        or None when the float path cannot be proven exact or does not cover the modes."""
        if t.kind != "fixed" or not 0 <= sh <= 62 or t.overflow not in _OVERFLOW:
            return None
        if sh and t.rounding not in _ROUND:
            return None
        h = (1 << (sh - 1)) if sh else 0
        c = _ROUND[t.rounding][0](h) if sh else 0
        smax = max((abs(int(v)) for v in scale), default=0)
        bmax = max((abs(int(v)) for v in bias), default=0)
        bound = (1 << (acc_width - 1)) * smax + bmax + (1 << sh)
        for dtype, p in _PRECISION:
            if bound < (1 << p):
                break
        else:
            return None
        lo, hi = t.overflow_range()
        # beyond 2**p the clip cannot trigger (|v| < 2**p); keep the bounds exact floats
        lo, hi = max(lo, -(1 << p)), min(hi, 1 << p)
        step = np.ldexp(1.0, -sh)
        return cls(dtype=dtype,
                   scale=(np.asarray(scale, dtype=np.float64) * step).astype(dtype),
                   offset=((np.asarray(bias, dtype=np.int64) + c).astype(np.float64) * step).astype(dtype),
                   rounding=_ROUND[t.rounding][1] if sh else None,
                   lo=float(lo), hi=float(hi), zero_on_overflow=t.overflow == "AP_SAT_ZERO",
                   out_dtype=carrier_dtype(t))

    def __call__(self, acc: np.ndarray, overwrite: bool = False) -> np.ndarray:
        """Exact integer accumulators (float or int64, shape (..., n_out)) -> output mantissas
        in ``out_dtype``. ``overwrite``: ``acc`` is scratch (the kernel's own GEMM output) and
        may be reused for the result, which saves an allocation and a pass per step."""
        if overwrite and acc.dtype == self.dtype:
            v = acc
            v *= self.scale
        else:
            v = np.multiply(acc, self.scale, dtype=self.dtype)
        v += self.offset
        if self.rounding is not None:
            self.rounding(v, out=v)
        if self.zero_on_overflow:
            v[(v < self.lo) | (v > self.hi)] = 0
            return v.astype(self.out_dtype, copy=False)
        if self.out_dtype == self.dtype:
            return np.clip(v, self.lo, self.hi, out=v)
        if np.dtype(self.out_dtype).kind == "f":
            return np.clip(v, self.lo, self.hi, out=np.empty(v.shape, self.out_dtype))
        return np.clip(v, self.lo, self.hi, out=v).astype(self.out_dtype)
