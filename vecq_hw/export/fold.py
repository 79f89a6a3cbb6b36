"""The constants of a weighted layer: integer codes and levels, BatchNorm folding, fixed point.

A VecQ layer's weight is ``levels[c - cmin] * unit * alpha_j`` (VecQ/µL2Q: the odd table
with unit 1/2). The integer model keeps the codes and the levels; everything else folds into
the per-channel constants of the contract::

    y_j = acc_j * s_j + b_j,   s_j = alpha_j * unit * g_j,   b_j = (bias_j - mean_j) * g_j + beta_j

with g_j = gamma_j / sqrt(var_j + eps) when a BatchNorm follows (else 1, mean 0, beta 0).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from .. import ir
from ..errors import ExportError
from ..fixed import FixedType


#: Overflow modes for which relu(requant(y)) == requant(relu(y)); see split_relu.
MONOTONE_OVERFLOW = ("AP_SAT", "AP_SAT_ZERO", "AP_SAT_SYM")


def split_relu(t: FixedType, where: str) -> tuple[FixedType, FixedType]:
    """Types for requant-then-ReLU that equal PyTorch's ReLU-then-quantise.

    requant is monotone and maps 0 to 0, so for saturating overflow modes both orders agree
    as long as the pre-ReLU type has the same top value and resolution as ``t``. An unsigned
    ``t`` gets one more integer bit and a sign in front of the ReLU.
    """
    if t.overflow not in MONOTONE_OVERFLOW:
        raise ExportError(f"{t} after a ReLU needs a saturating overflow mode ({', '.join(MONOTONE_OVERFLOW)}) "
                          "to be folded exactly", field=where)
    if t.signed:
        return t, t
    pre = FixedType(width=t.width + 1, integer=t.integer + 1, signed=True, rounding=t.rounding,
                    overflow=t.overflow)
    return pre, t


class ScalePrecisionWarning(UserWarning):
    """A channel's scale constant is far from the layer's others (see :func:`scale_frac`)."""


@dataclass
class WeightView:
    """A VecQ layer's integer weights in PyTorch's layout."""

    codes: np.ndarray  # int8, torch weight layout (out, ...)
    alpha: np.ndarray  # float64 per output channel
    bits: int
    levels: np.ndarray  # int64, 2**bits entries in code order
    unit: float  # value of one level step (odd table: 1/2)


def weight_view(m, where: str) -> WeightView:
    """Codes, per-channel alpha, bits and the levels table of a VecQ layer."""
    try:
        iw = m.integer_weights()
    except Exception as exc:  # the layer knows why (e.g. float mode, a mean offset)
        raise ExportError(" ".join(str(exc).split()), field=where) from exc
    codes = np.asarray(iw.codes)
    bits = int(iw.bits)
    n_out = codes.shape[0]
    alpha = np.broadcast_to(np.asarray(iw.alpha, dtype=np.float64).reshape(-1), (n_out,)).copy()
    levels = getattr(iw, "levels", None)
    if levels is None:  # a quantiser without a levels table: the named encoding
        enc = getattr(iw, "encoding", "odd")
        levels = ir.named_levels(enc, bits)
        unit = 0.5 if enc == "odd" else 1.0
    else:
        levels = np.asarray(levels, dtype=np.int64)
        unit = float(getattr(iw, "unit", 1.0))
    if levels.shape != (1 << bits,):
        raise ExportError(f"the quantiser's levels table has {levels.size} entries, expected {1 << bits} "
                          f"for {bits}-bit codes", field=where)
    if not math.isfinite(unit) or unit <= 0 or not np.all(np.isfinite(alpha)):
        raise ExportError(f"the quantiser's scale is not a finite positive number (unit {unit})", field=where)
    return WeightView(codes=codes.astype(np.int8), alpha=alpha, bits=bits, levels=levels, unit=unit)


def fold_batchnorm(bn, s: np.ndarray, b: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(s, b) of ``acc*s + b`` followed by an eval-mode BatchNorm, as one affine map."""
    n = s.shape[0]
    if bn.num_features != n:
        raise ExportError(f"BatchNorm has {bn.num_features} features, the layer before it {n} channels",
                          field=where)
    if not bn.track_running_stats or bn.running_mean is None:
        raise ExportError("BatchNorm without running statistics cannot be folded", field=where)
    def arr(t):
        return t.detach().double().cpu().numpy()
    gamma = arr(bn.weight) if bn.affine else np.ones(n)
    beta = arr(bn.bias) if bn.affine else np.zeros(n)
    var, mean = arr(bn.running_var), arr(bn.running_mean)
    for name, v in (("running_var", var), ("running_mean", mean), ("weight", gamma), ("bias", beta)):
        if not np.all(np.isfinite(v)):
            raise ExportError(f"BatchNorm {name} holds NaN or infinity (channel {int(np.argmin(np.isfinite(v)))})",
                              field=where)
    if np.any(var + bn.eps <= 0):
        raise ExportError(f"BatchNorm running_var + eps is not positive (channel {int(np.argmax(var + bn.eps <= 0))}: "
                          f"{float(np.min(var)):.3g}); its statistics are corrupt", field=where)
    g = gamma / np.sqrt(var + bn.eps)
    return s * g, (b - arr(bn.running_mean)) * g + beta


def fixed_for(values: np.ndarray, frac: int, what: str, where: str) -> tuple[np.ndarray, FixedType]:
    """Round float constants to mantissas with ``frac`` fractional bits, in the narrowest type."""
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ExportError(f"{what} constants hold NaN or infinity (channel {int(np.argmin(np.isfinite(values)))}): the "
                          "layer's weights, bias or quantiser scale are not finite", field=where)
    m = np.round(values * 2.0 ** frac)
    if not np.all(np.isfinite(m)) or np.max(np.abs(m), initial=0) >= 2.0 ** 60:
        big = float(np.max(np.abs(values), initial=0.0))
        raise ExportError(f"{what} constants out of range: the float values reach {big:.3g}, which {frac} fractional "
                          "bits cannot hold in 60 (extreme weights or scales?)", field=where)
    m = m.astype(np.int64)
    width = max(ir.signed_width_for(int(m.min(initial=0)), int(m.max(initial=0))), 2)
    return m, FixedType(width=width, integer=width - frac, signed=True)


#: a channel whose |s| is this many times the median gets a warning (it widens the scale type)
OUTLIER_RATIO = 2.0 ** 6


def scale_frac(s: np.ndarray, scale_bits: int, where: str) -> int:
    """Fractional bits of a layer's one scale type: ``scale_bits`` significant bits for every
    channel that is not an outlier.

    The layer has ONE scale type (the IR, the simulator and the HLS kernels share it), but
    the channels' constants can differ by orders of magnitude: a BatchNorm channel with
    running_var ~ 0 has g ~ gamma/sqrt(eps), hundreds of times the others. Choosing the
    fractional bits from the *largest* |s| (as the first exporter did) leaves the normal
    channels only a few significant bits (issue #11 item 4: exact outputs 99.7 % -> 60 %).
    Here they come from the *smallest* |s| among the channels within OUTLIER_RATIO of the
    median, so every normal channel keeps at least ``scale_bits`` significant bits whatever
    one odd channel does; a large outlier only makes the type wider (its mantissa needs more
    integer bits: exact, a wider multiplier), and a warning names it. Channels far *below*
    the median (near-dead: gamma ~ 0) keep fewer significant bits than the others; they are
    named too, rather than widening every channel's constant for them.
    """
    mag = np.abs(np.asarray(s, dtype=np.float64))
    nz = mag[mag > 0]
    if nz.size == 0:
        return scale_bits
    med = float(np.median(nz))
    normal = nz[(nz <= med * OUTLIER_RATIO) & (nz >= med / OUTLIER_RATIO)]
    frac = scale_bits - math.frexp(float(normal.min()))[1]
    big = np.flatnonzero(mag > med * OUTLIER_RATIO)
    small = np.flatnonzero((mag > 0) & (mag < med / OUTLIER_RATIO))
    if big.size:
        j = int(big[np.argmax(mag[big])])
        extra = math.frexp(float(mag[j]))[1] - math.frexp(float(normal.max()))[1]
        warnings.warn(f"{where}: channel {j}'s scale constant is {mag[j] / med:.3g}x the median "
                      f"(a BatchNorm running_var near 0?); it widens the layer's scale type by {extra} bits, "
                      "the other channels keep their precision", ScalePrecisionWarning, stacklevel=3)
    if small.size:
        j = int(small[np.argmin(mag[small])])
        warnings.warn(f"{where}: channel {j}'s scale constant is {mag[j] / med:.3g}x the median; it keeps "
                      f"fewer than {scale_bits} significant bits", ScalePrecisionWarning, stacklevel=3)
    return frac
