"""ESB: elastic significant bits (Gong et al., "Elastic Significant Bit Quantization and
Acceleration for Deep Neural Networks", IEEE TPDS 2022, arXiv 2109.03513).

Value set. ``b`` total bits, ``k`` significant (fraction) bits after the leading one, one sign
bit and ``e = b - 1 - k`` exponent bits (so 0 <= k <= b - 2), with subnormals:

    M(b, k) = {0} ∪ {m·2^-k : m = 1..2^k - 1} ∪ {2^n·(1 + j·2^-k) : n = 0..N, j = 0..2^k - 1}
    N = 2^e - 2,   c = max M = 2^(N+1) - 2^(N-k)

(b = 5, k = 2: {0, .25, .5, .75, 1, 1.25, ..., 3.5, 4, 5, 6, 7}; k = 0 is power-of-two
quantisation). A weight is ``±alpha·m``. Every m·2^k is an integer with at most k + 1
significant bits, so the integer model holds ESB as a levels table ``±m·2^k`` with unit 2^-k
under the per-channel scale alpha, and the hardware product x·level is at most k + 1 shifted
copies of x (fewer in canonical signed digits) -- no multiplier.

Projection (the paper's): u = w/alpha, n = clip(floor(log2|u|), 0, N), s = n - k,
q = round(u / 2^s)·2^s (half to even), clipped to ±c. floor(log2|u|) is read exactly from the
float exponent (frexp), not from a rounded log2.

Scale alpha, per tensor or per output channel (``scale``):

* ``'dda'``: alpha = sigma·r(b, k), sigma the population std of the group. The published
  distribution difference aligner (DDA) aligns the value set with a Gaussian weight
  distribution; its published scales are close to the L2-optimal ratio for N(0, 1). We do not
  ship the paper's table: r(b, k) here is that Gaussian L2-optimal ratio, computed once per
  (b, k) by quadrature (:func:`gaussian_ratio`) -- our reconstruction of DDA, named as such.
* ``'l2'``: our own search on the actual weights (as adaptive VecQ does): 97 log-spaced
  candidates over [1/4, 4]x the DDA scale, the best by squared error, then the
  least-squares modulus alpha = <w,q>/<q,q> for the chosen codes (never worse).

Training uses the base class's straight-through estimator: the forward value is the
quantised tensor bit for bit, the backward the identity to the float weights (the weights
get the gradient; nothing is normalised under ``no_grad`` on the training path).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from vecq_hw.errors import VecQError
from vecq_hw.ir.levels import MAX_LEVEL
from vecq_hw.quant.base import WeightQuantizer, check_bits
from vecq_hw.quant.registry import register_quantizer

SCALES = ("dda", "l2")
#: the l2 search: candidates = dda scale * geomspace(1/4, 4, L2_CANDIDATES)
L2_CANDIDATES = 97
EPS = 1e-12


def _check_k(bits: int, k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= bits - 2:
        raise VecQError(f"expected an integer in 0..bits-2 = 0..{bits - 2} (one sign bit and at least "
                        f"one exponent bit), got {k!r}", field="significant_bits")
    return int(k)


def esb_max_exponent(bits: int, k: int) -> int:
    """N = 2^e - 2 with e = bits - 1 - k exponent bits."""
    return 2 ** (bits - 1 - k) - 2


def esb_magnitudes(bits: int, k: int) -> np.ndarray:
    """The 2^(bits-1) normalised magnitudes M(bits, k), ascending, float64 (exact: every
    value is a dyadic rational with few significant bits)."""
    n_top = esb_max_exponent(bits, k)
    sub = [m * 2.0**-k for m in range(0, 2**k)]
    normal = [2.0**n * (1 + j * 2.0**-k) for n in range(0, n_top + 1) for j in range(2**k)]
    return np.array(sub + normal, dtype=np.float64)


def esb_integer_magnitudes(bits: int, k: int) -> np.ndarray:
    """M(bits, k)·2^k as Python ints (exact for any size), ascending."""
    n_top = esb_max_exponent(bits, k)
    return [m for m in range(2**k)] + [(2**k + j) << n for n in range(n_top + 1) for j in range(2**k)]


def esb_levels(bits: int, k: int) -> np.ndarray:
    """The levels table in code order: code c >= 0 is +M[c]·2^k, code c < 0 is -M[-c-1]·2^k
    (code -1 is a second zero, never produced)."""
    mags = esb_integer_magnitudes(bits, k)
    if mags[-1] > MAX_LEVEL:
        raise VecQError(f"bits={bits}, significant_bits={k} needs integer levels up to {mags[-1]}, above "
                        f"the integer model's {MAX_LEVEL}; use more significant bits (fewer exponent "
                        f"bits) or fewer bits", field="significant_bits")
    mags = np.array(mags, dtype=np.int64)
    return np.concatenate([-mags[::-1], mags])


def _is_torch(x) -> bool:
    return isinstance(x, torch.Tensor)


def esb_project(u, bits: int, k: int):
    """The paper's projection of normalised values u = w/alpha onto ±M(bits, k) (numpy or
    torch, same dtype): n = clip(floor(log2|u|), 0, N), q = round(u/2^(n-k))·2^(n-k), clip ±c."""
    n_top = esb_max_exponent(bits, k)
    c_max = 2.0 ** (n_top + 1) - 2.0 ** (n_top - k)
    if _is_torch(u):
        _, e = torch.frexp(u.abs())  # |u| = m·2^e, m in [0.5, 1): floor(log2|u|) = e - 1
        n = torch.clamp(e - 1, 0, n_top).to(u.dtype)
        step = torch.exp2(n - k)
        return torch.clamp(torch.round(u / step) * step, -c_max, c_max)
    _, e = np.frexp(np.abs(u))
    n = np.clip(e - 1, 0, n_top).astype(u.dtype)
    step = np.exp2(n - k)
    return np.clip(np.round(u / step) * step, -c_max, c_max)


@lru_cache(maxsize=None)
def gaussian_ratio(bits: int, k: int) -> float:
    """alpha/sigma minimising E[(x - alpha·Q(x/alpha))^2] for x ~ N(0, 1) (quadrature on
    [-8, 8], a log grid of ratios then a finer one): the DDA scale we use."""
    x = np.linspace(-8.0, 8.0, 16001)
    p = np.exp(-x * x / 2)
    p /= p.sum()
    c_max = float(esb_magnitudes(bits, k)[-1])

    def mse(r):
        return float(np.sum(p * (x - r * esb_project(x / r, bits, k)) ** 2))

    grid = np.geomspace(0.5 / c_max, 8.0 / c_max * 4, 241)
    best = grid[int(np.argmin([mse(r) for r in grid]))]
    fine = np.geomspace(best / 1.05, best * 1.05, 81)
    return float(fine[int(np.argmin([mse(r) for r in fine]))])


@register_quantizer
class ESB(WeightQuantizer):
    """ESB quantiser: ``ESB(bits=5, per_channel=False, significant_bits=2, scale='dda')``.

    Levels ±m·2^k (unit 2^-k). Config: ``{method: esb, bits, per_channel, significant_bits,
    scale: dda | l2}``.
    """

    name = "esb"

    def __init__(self, bits: int = 5, per_channel: bool = False, significant_bits: int = 2,
                 scale: str = "dda"):
        super().__init__(check_bits(bits, low=2), per_channel)
        self.significant_bits = _check_k(self.bits, significant_bits)
        if scale not in SCALES:
            raise VecQError(f"expected one of {', '.join(SCALES)}, got {scale!r}", field="scale")
        self.scale = scale
        self._levels = esb_levels(self.bits, self.significant_bits)
        self._levels.setflags(write=False)
        mags = self._levels[2 ** (self.bits - 1):]
        lut = np.zeros(int(mags[-1]) + 1, dtype=np.int64)  # integer magnitude -> magnitude index
        lut[mags] = np.arange(mags.size)
        self._index_of = lut
        self.ratio = gaussian_ratio(self.bits, self.significant_bits)

    @property
    def unit(self) -> float:  # type: ignore[override]
        return 2.0 ** -self.significant_bits

    def levels(self) -> np.ndarray:
        return self._levels

    def _codes(self, q, ops):
        """Codes of projected values q (exact members of ±M): magnitude index, sign-magnitude."""
        scale = 2.0 ** self.significant_bits
        if _is_torch(q):
            mag = torch.round(q.abs() * scale).long()
            idx = torch.as_tensor(self._index_of, device=q.device)[mag].to(q.dtype)
            return torch.where(q < 0, -idx - 1, idx)
        mag = np.round(np.abs(q) * scale).astype(np.int64)
        idx = self._index_of[mag].astype(q.dtype)
        return np.where(q < 0, -idx - 1, idx)

    def _quantize_rows(self, w, ops):
        b, k = self.bits, self.significant_bits
        alpha = ops.std(w) * self.ratio
        if self.scale == "l2":
            alpha = self._search(w, alpha)
        safe = alpha + EPS
        q = esb_project(w / safe, b, k)
        if self.scale == "l2":  # least-squares modulus for the chosen codes
            alpha = ops.sum(w * q) / (ops.sum(q * q) + EPS)
        return self._codes(q, ops), alpha, None

    def _search(self, w, alpha0):
        t = np.geomspace(0.25, 4.0, L2_CANDIDATES)
        if _is_torch(w):
            cand = alpha0 * torch.as_tensor(t, dtype=w.dtype, device=w.device).reshape(1, -1)  # (G, T)
            best_err = torch.full_like(alpha0, math.inf)
            best = alpha0.clone()
            for j in range(cand.shape[1]):
                a = cand[:, j:j + 1]
                err = ((w - a * esb_project(w / (a + EPS), self.bits, self.significant_bits)) ** 2).sum(1, keepdim=True)
                better = err < best_err
                best = torch.where(better, a, best)
                best_err = torch.where(better, err, best_err)
            return best
        cand = alpha0 * t.reshape(1, -1)
        best, best_err = alpha0.copy(), np.full_like(alpha0, np.inf)
        for j in range(cand.shape[1]):
            a = cand[:, j:j + 1]
            err = ((w - a * esb_project(w / (a + EPS), self.bits, self.significant_bits)) ** 2).sum(1, keepdims=True)
            better = err < best_err
            best = np.where(better, a, best)
            best_err = np.where(better, err, best_err)
        return best

