"""vecq_hw.fixed's conversion from floats, on torch tensors (for QAT).

``quantize_tensor(x, t)`` equals ``t.quantize(x.numpy())`` element for element, using
only torch ops (float64 for the scaling, int64 for the bit work), so it runs inside
autograd and torch.compile.  Types up to 24 bits wide: a float32 activation cannot
hold a wider mantissa exactly.
"""

from __future__ import annotations

import torch

from .errors import FixedTypeError
from .fixed import FixedType, round_increment

MAX_TORCH_WIDTH = 24
_TINY = 2.0 ** -1074            # stands in for products that underflowed to zero


def _check(t: FixedType) -> FixedType:
    t = FixedType.parse(t)
    if t.width > MAX_TORCH_WIDTH:
        raise FixedTypeError(f"{t}: the torch path supports widths up to {MAX_TORCH_WIDTH} "
                             "(float32 cannot hold more bits exactly); use vecq_hw.fixed on "
                             "float64 numpy arrays instead")
    return t


def _wrap(v: torch.Tensor, t: FixedType) -> torch.Tensor:
    v = v & ((1 << t.width) - 1)
    if t.signed:
        v = v - ((v >> (t.width - 1)) << t.width)
    return v


def quantize_mantissa_tensor(x: torch.Tensor, t: FixedType) -> torch.Tensor:
    """Float tensor -> int64 mantissas of ``t`` (FixedType.from_float on torch)."""
    t = _check(t)
    xd = x.detach().to(torch.float64)
    if not torch.compiler.is_compiling() and not bool(torch.isfinite(xd).all()):
        raise FixedTypeError(f"{t}: cannot convert NaN or infinity to fixed point")
    # Beyond 2**(I+2) a value is out of range anyway; reduce it exactly (fmod) so the
    # low bits the wrap modes keep survive the scaling without float overflow.
    big = xd.abs() >= 2.0 ** (t.integer + 2)
    xr = torch.where(big, torch.fmod(xd, 2.0 ** (t.integer + 2)), xd)
    y = xr * 2.0 ** t.frac                                 # exact: power-of-two scaling
    y = torch.where((y == 0) & (xr != 0), torch.copysign(torch.full_like(y, _TINY), xr), y)
    fl = torch.floor(y)
    d = y - fl                                             # exact, or right in its flags
    qb = d >= 0.5
    sticky = torch.where(qb, d > 0.5, d > 0)
    neg = xd < 0
    fl = fl.to(torch.int64)
    if t.kind == "int":                                    # C-like: truncate toward zero
        r = _wrap(fl + (neg & (qb | sticky)), t)
        return torch.where(neg & (xd > -0.5), _wrap(torch.ones_like(r), t), r)  # header quirk

    inc = round_increment(t.rounding, qb, sticky, neg, (fl & 1) == 1)
    r = fl + inc.to(torch.int64)

    (lo, hi), w, n = t.overflow_range(), t.width, t.sat_bits    # AP_SAT_SYM: see there
    over = (big & ~neg) | (~big & (r > hi))
    under = (big & neg) | (~big & (r < lo))
    v = _wrap(r, t)
    o = t.overflow
    if o == "AP_WRAP" and n == 0:
        return v
    if o in ("AP_SAT", "AP_SAT_SYM"):
        return torch.where(over, hi, torch.where(under, lo, v))
    if o == "AP_SAT_ZERO":
        return torch.where(over | under, 0, v)
    # same bit surgery as vecq_hw.fixed, on the W-bit word
    u = v & ((1 << w) - 1)
    msb = 1 << (w - 1)
    sign = torch.where(under, msb, 0)
    top = ((1 << max(n - 1, 0)) - 1) << (w - n) if n else 0
    notop = torch.where(under, 0, top)
    if o == "AP_WRAP":
        adj = u | (((1 << n) - 1) << (w - n)) if not t.signed else (u & ~(msb | top)) | sign | notop
    else:  # AP_WRAP_SM
        ro = u & msb
        if n == 0:
            ld = torch.where(((fl >> w) & 1) == 1, msb, 0)     # bit above the target, pre-rounding
            adj = torch.where(ld != ro, (~u & ~msb) | ld, u)
        elif n == 1:
            adj = (torch.where(sign != ro, ~u, u) & ~msb) | sign
        else:
            lno = torch.where(((u >> (w - n)) & 1) == 1, msb, 0)
            adj = (torch.where(lno == sign, ~u, u) & ~(msb | top)) | sign | notop
    return torch.where(over | under, _wrap(adj, t), v)


_SATURATING = ("AP_SAT", "AP_SAT_ZERO", "AP_SAT_SYM")
_NARROW_FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def _fast_path_applies(x: torch.Tensor, t: FixedType) -> bool:
    return x.dtype in _NARROW_FLOATS and t.kind == "fixed" and t.overflow in _SATURATING


def _quantize_saturating(x: torch.Tensor, t: FixedType) -> torch.Tensor:
    """The training hot path: a few elementwise ops instead of the bit-level general case.

    Exact, not approximate: y = x * 2**frac is exact (power-of-two scaling; inputs have at
    most 24 significant bits), clamping to two LSBs beyond the range changes no saturating
    result, and after it |y| <= 2**(W+1), so floor(y) and floor(y) + 1/2 are exact in the
    working dtype. Rounding decisions compare y with those two (never with a remainder,
    which can round). float32 suffices for W <= 22 and 0 <= frac <= 100: scaling up never
    underflows (a negative frac could round a tiny negative x to -0 and floor it to 0, not
    -1), 2**frac and 2**-frac are normal float32 numbers, and an overflow to inf only means
    "beyond the range", which the clamp handles. Otherwise float64: every narrow float times
    2**frac, |frac| <= 576, is a normal float64. The tests compare this path against the
    exact one for every mode and against g++ (test_fixed_oracle).
    """
    lo, hi = map(float, t.overflow_range())                   # AP_SAT_SYM: see there
    work = torch.float32 if t.width <= 22 and 0 <= t.frac <= 100 else torch.float64
    y = torch.clamp(x.detach().to(work) * 2.0 ** t.frac, lo - 2.0, hi + 2.0)
    fl = torch.floor(y)
    half = fl + 0.5
    q = t.rounding
    if q == "AP_TRN":
        m = fl
    elif q == "AP_TRN_ZERO":
        m = torch.where(y < 0, torch.ceil(y), fl)
    elif q == "AP_RND":
        m = torch.floor(y + 0.5) if work is torch.float64 else torch.where(y >= half, fl + 1.0, fl)
    else:
        if q == "AP_RND_ZERO":
            up = (y > half) | ((y == half) & (y < 0))
        elif q == "AP_RND_MIN_INF":
            up = y > half
        elif q == "AP_RND_INF":
            up = (y > half) | ((y == half) & (y > 0))
        else:  # AP_RND_CONV
            up = (y > half) | ((y == half) & (torch.remainder(fl, 2.0) == 1.0))
        m = torch.where(up, fl + 1.0, fl)
    if t.overflow == "AP_SAT_ZERO":
        m = torch.where((m < lo) | (m > hi), 0.0, m)
    else:
        m = torch.clamp(m, lo, hi)
    return (m * 2.0 ** -t.frac).to(x.dtype)


def quantize_tensor(x: torch.Tensor, t: FixedType) -> torch.Tensor:
    """The quantised values of ``x`` in type ``t``, in x's dtype (no gradient)."""
    t = _check(t)
    if _fast_path_applies(x, t):
        if not torch.compiler.is_compiling() and not bool(torch.isfinite(x).all()):
            raise FixedTypeError(f"{t}: cannot convert NaN or infinity to fixed point")
        return _quantize_saturating(x, t)
    m = quantize_mantissa_tensor(x, t)
    return (m.to(torch.float64) * 2.0 ** -t.frac).to(x.dtype)


class FixedQuantizeSTE(torch.autograd.Function):
    """Forward: quantize_tensor.  Backward: straight through inside [min, max] of the
    type, zero outside, where the output no longer follows the input."""

    @staticmethod
    def forward(ctx, x, t):
        t = _check(t)
        ctx.save_for_backward((x >= t.min_value) & (x <= t.max_value))
        return quantize_tensor(x, t)

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside.to(grad.dtype), None


def fixed_quantize(x: torch.Tensor, t) -> torch.Tensor:
    """Quantise with a straight-through gradient (see FixedQuantizeSTE)."""
    return FixedQuantizeSTE.apply(x, FixedType.parse(t))
