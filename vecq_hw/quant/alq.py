"""ALQ: adaptive loss-aware quantisation with multi-bit binary bases (Qu et al., CVPR 2020).

Per group g (an output channel): w_g ≈ sum_{i=1..I_g} alpha_i·beta_i, beta_i in {-1, +1}^n.
This module holds the quantiser (the deployed form) and the pure tensor steps; the training
procedure (loss-aware steps with Adam's moments, pruning to a target average bit-width, then
STE post-training) is :mod:`vecq_hw.train.alq_steps`.

* ``decompose``: greedy residual binarisation (beta_i = sign(r), alpha_i = mean|r|,
  r -= alpha_i·beta_i), then the least-squares alpha for those bases (B^T B alpha = B^T w).
* ``loss_aware_alpha`` / ``loss_aware_bases``: ALQ's steps under the quadratic model
  l(w + D) ≈ l + g^T D + 1/2 D^T H D with g = Adam's bias-corrected first moment and
  H = diag(sqrt(v_hat) + eps)/lr (the curvature for which one Newton step is one Adam step):
  alpha in closed form with the bases fixed, alpha = (B^T H B)^-1 B^T (H w_hat - g); the bases
  with alpha fixed, per coordinate the sign pattern whose value is nearest w_hat - g/h, on the
  ``top_k`` fraction of coordinates with the largest |g/h| (the rest keep theirs).
* ``prune_costs``: the modelled loss increase of removing basis i, -alpha_i·g^T beta_i +
  1/2 alpha_i^2·sum(h); the procedure removes the cheapest last (smallest-|alpha|) basis of
  any group, round after round (``prune_rate`` of the remaining bases per round), until the
  average number of bases per weight is at most ``target_bits`` -- which can be below 1.

The alphas of each group are requantised onto one fixed-point grid s_j = max_i|alpha_i| / 2^P
with integer a_i = round(alpha_i / s_j), |a_i| <= 2^P, P = floor(log2((2^(k-1) - 1) / I_max)), so
the weight is (sum_i a_i·beta_i)·s_j: ``quantize`` returns it as an integer code of the 'int'
table of k = ``bits`` bits under the per-channel scale s_j, and the training forward uses these
very values (STE). A pruned channel (I_g = 0) has codes 0 and scale 0.

Deployed form: the native one (docs/FORMAT.md, "ALQ layers"; the exporter's
``vecq_hw.export.alq``): ``bases`` gives the bases beta_i and the integers a_i of the same
decomposition, stored as bit-planes and alpha constants (``alq_dense`` / ``alq_conv2d``).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from vecq_hw.errors import VecQError
from vecq_hw.ir.levels import named_levels
from vecq_hw.quant.base import WeightQuantizer, check_bits
from vecq_hw.quant.registry import register_quantizer

EPS = 1e-12


def _check_num(v, field, lo, hi, *, integer=False, lo_open=False):
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    ok = not isinstance(v, bool) and isinstance(v, kinds)
    if ok:
        ok = (lo < v if lo_open else lo <= v) and v <= hi
    if not ok:
        kind = "an integer" if integer else "a number"
        raise VecQError(f"expected {kind} in {'(' if lo_open else '['}{lo}, {hi}], got {v!r}", field=field)
    return int(v) if integer else float(v)


def grid_bits(bits: int, max_bases: int) -> int:
    """P: alphas are requantised to multiples of max|alpha|/2^P so that sum |a_i| <= 2^(k-1) - 1."""
    return int(np.floor(np.log2((2 ** (bits - 1) - 1) / max_bases)))


def decompose(w: torch.Tensor, counts: torch.Tensor, max_bases: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy residual binarisation + least-squares alpha. w: (G, n) float; counts: (G,) ints.
    Returns B (G, n, I) in {-1, 0, +1} (0 for unused bases) and alpha (G, I) (0 unused),
    bases ordered as found (alpha of the greedy init decreasing)."""
    g, n = w.shape
    on = torch.arange(max_bases, device=w.device).reshape(1, -1) < counts.reshape(-1, 1).to(w.device)  # (G, I)
    B = torch.zeros(g, n, max_bases, dtype=w.dtype, device=w.device)
    r = w.clone()
    for i in range(max_bases):
        b = torch.where(r >= 0, 1.0, -1.0).to(w.dtype) * on[:, i:i + 1]
        a = (r * b).sum(1, keepdim=True) / n
        B[:, :, i] = b
        r = r - a * b
    return B, least_squares_alpha(w, B, on)


def least_squares_alpha(w: torch.Tensor, B: torch.Tensor, on: torch.Tensor) -> torch.Tensor:
    """alpha minimising ||w - B alpha||^2 per group (unused bases: alpha 0)."""
    return _solve(B, w, on, torch.ones_like(w))


def _solve(B, rhs, on, h):
    """(B^T H B) alpha = B^T rhs over the used bases (H = diag(h)); unused bases get alpha 0.
    The pseudo-inverse of the small I x I system: two equal bases (a singular system, seen in
    training) get the minimum-norm split instead of an error."""
    A = torch.einsum("gni,gn,gnj->gij", B, h, B)
    y = torch.einsum("gni,gn->gi", B, rhs) * on
    both = on.unsqueeze(1) & on.unsqueeze(2)
    A = torch.where(both, A, 0.0)  # unused bases: zero rows and columns, zero right-hand side
    return (torch.linalg.pinv(A, hermitian=True) @ y.unsqueeze(-1)).squeeze(-1) * on


def loss_aware_alpha(w_hat, B, on, g, h):
    """alpha = (B^T H B)^-1 B^T (H w_hat - g), the minimiser of the quadratic model."""
    return _solve(B, h * w_hat - g, on, h)


def sign_patterns(max_bases: int) -> torch.Tensor:
    """All 2^I sign vectors, (2^I, I)."""
    return torch.tensor(list(itertools.product((-1.0, 1.0), repeat=max_bases)))


def loss_aware_bases(B, alpha, on, w_hat, g, h, top_k: float) -> torch.Tensor:
    """New bases: for the top_k fraction of coordinates with the largest |g/h| per group, the
    sign pattern whose value sum alpha_i·beta_i is nearest to w_hat - g/h."""
    target = w_hat - g / h
    pats = sign_patterns(B.shape[-1]).to(B.dtype).to(B.device)  # (P, I)
    vals = torch.einsum("pi,gi->gp", pats, alpha * on)  # (G, P); unused bases add 0
    best = (target.unsqueeze(-1) - vals.unsqueeze(1)).abs().argmin(-1)  # (G, n)
    newB = pats[best] * on.unsqueeze(1)  # (G, n, I)
    n = B.shape[1]
    kk = max(1, int(round(top_k * n)))
    score = (g / h).abs()
    idx = score.topk(kk, dim=1).indices
    sel = torch.zeros_like(score, dtype=torch.bool).scatter_(1, idx, True).unsqueeze(-1)
    return torch.where(sel, newB, B)


def prune_costs(B, alpha, g, h) -> torch.Tensor:
    """Modelled loss increase of removing each basis, (G, I)."""
    return -alpha * torch.einsum("gn,gni->gi", g, B) + 0.5 * alpha**2 * h.sum(1, keepdim=True)


def integer_alphas(alpha, bits: int, max_bases: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The alphas on one grid per group: integers a (G, I) (as floats) and the scale s (G, 1),
    alpha ~ a * s with s = max|alpha| / 2^P."""
    p = grid_bits(bits, max_bases)
    amax = alpha.abs().amax(1, keepdim=True)
    s = amax / 2.0**p
    a = torch.where(s > 0, torch.round(alpha / torch.where(s > 0, s, 1.0)), 0.0)
    return a, s


def integerise(B, alpha, bits: int, max_bases: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer codes sum_i a_i beta_i and the per-group scale s (G, 1) of the deployed form."""
    a, s = integer_alphas(alpha, bits, max_bases)
    return torch.einsum("gni,gi->gn", B, a), s


@register_quantizer
class ALQ(WeightQuantizer):
    """``ALQ(bits=8, per_channel=True, max_bases=3, target_bits=1.0, prune_rate=0.3, top_k=0.5)``.

    ``bits``: the code width of the deployed 'int' table (alphas on a 2^P grid, see the
    module); ``max_bases``: the bases of the greedy init (the published "max bits");
    ``target_bits``: average bases per weight after pruning (may be < 1); ``prune_rate``:
    fraction of the remaining bases removed per pruning round; ``top_k``: fraction of
    coordinates per group whose bases a loss-aware step may change. ``counts`` (per group
    I_g, set by the pruning) is state, not an option; None means ``max_bases`` everywhere.
    """

    name = "alq"
    unit = 1.0

    def __init__(self, bits: int = 8, per_channel: bool = True, max_bases: int = 3, target_bits: float = 1.0,
                 prune_rate: float = 0.3, top_k: float = 0.5):
        super().__init__(check_bits(bits, low=3), per_channel)
        self.max_bases = _check_num(max_bases, "max_bases", 1, 4, integer=True)
        if grid_bits(self.bits, self.max_bases) < 0:
            raise VecQError(f"bits={self.bits} is too few for {self.max_bases} bases; need 2^(bits-1) - 1 >= "
                            f"max_bases", field="bits")
        self.target_bits = _check_num(target_bits, "target_bits", 0.0, float(self.max_bases))
        self.prune_rate = _check_num(prune_rate, "prune_rate", 0.0, 1.0, lo_open=True)
        self.top_k = _check_num(top_k, "top_k", 0.0, 1.0, lo_open=True)
        self.counts: np.ndarray | None = None

    def levels(self) -> np.ndarray:
        return named_levels("int", self.bits)

    def group_counts(self, groups: int) -> torch.Tensor:
        if self.counts is None:
            return torch.full((groups,), self.max_bases, dtype=torch.long)
        c = torch.as_tensor(np.asarray(self.counts), dtype=torch.long)
        if c.numel() != groups:
            raise VecQError(f"ALQ state has {c.numel()} groups, the weight has {groups}", field="counts")
        return c

    def _quantize_rows(self, w, ops):
        # float64 whatever the weight's dtype: the small normal equations stay well posed, and
        # the codes (integers) and scale then depend on the weights only, not on the dtype path
        is_np = isinstance(w, np.ndarray)
        t = torch.from_numpy(w) if is_np else w.double()
        B, alpha = decompose(t, self.group_counts(t.shape[0]), self.max_bases)
        codes, s = integerise(B, alpha, self.bits, self.max_bases)
        if is_np:
            return codes.numpy(), s.numpy(), None
        return codes.to(w.dtype), s.to(w.dtype), None

    def bases(self, w) -> tuple[np.ndarray, np.ndarray]:
        """The native form of weight ``w`` (torch or numpy, (out, ...)): the sign bases B
        (G, n, I) int8 (+1/-1; 0 for an unused basis) and the integer alphas a (G, I) int64 of
        each group (one row of ``quantize``'s 2-D view), the very numbers ``quantize`` builds
        its codes from: codes = sum_i a_i B_i, and the group's scale is its alpha."""
        t = w.detach().double().cpu() if isinstance(w, torch.Tensor) else torch.from_numpy(np.asarray(w, np.float64))
        rows = self._rows(t)
        B, alpha = decompose(rows, self.group_counts(rows.shape[0]), self.max_bases)
        a, _ = integer_alphas(alpha, self.bits, self.max_bases)
        return B.numpy().astype(np.int8), a.numpy().astype(np.int64)
