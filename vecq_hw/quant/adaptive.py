"""Adaptive VecQ: the step that minimises the vector loss on the actual weights (issue #6).

VecQ picks its orientation step as ``sigma * lambda_k`` from a table derived for Gaussian
weights, then solves the modulus ``alpha`` in closed form.  On other distributions the table
step can be far from the best step of the same half-integer grid (Laplace, k = 8: 14x the
loss).  ``VecQ(bits, per_channel, adaptive=True)`` instead searches the step ``s``:

    codes(s) = clip(round(w/s - 1/2), -2**(k-1), 2**(k-1) - 1),   q = codes + 1/2
    alpha(s) = <w,q> / <q,q>                                      (closed form)
    loss(s)  = |w - alpha q|^2 = <w,w> - <w,q>^2 / <q,q>

Minimising ``loss(s)`` over ``s`` minimises the loss over *all* (codes, alpha) pairs of the
grid: at the joint optimum the codes are the nearest grid points for ``alpha``, which is
``codes(alpha)``, so ``s = alpha`` reaches it.

How (per tensor, or per output channel = per row, vectorised over rows):

* The grid is symmetric, so only ``|w|`` matters: with ``m = 2**(k-1)``, ``|w|`` is on level
  ``L = #{j in 1..m-1 : |w| >= j*s}`` (value ``L + 1/2``).  After one sort of ``|w|`` and a
  prefix sum ``C``, each threshold ``t = j*s`` costs one binary search (``i = #{|w| < t}``):

      <|w|,q> = S/2 + sum_j (S - C[i_j]),   <q,q> = n/4 + sum_j 2j (n - i_j)

  so the *exact* loss of a candidate step costs ``m - 1`` binary searches, not a pass over
  the weights.
* Small tensors (rows * n * (m-1) <= ``EXACT_EVENTS``): exact global optimum.  ``loss(s)`` is
  piecewise constant in ``s``, changing only where ``s`` crosses a breakpoint ``|w_i|/j``; a
  sweep over the sorted breakpoints (one cumulative sum) scores every piece.
* Larger tensors: a log-spaced coarse grid of steps over a bracket that holds every sensible
  step (``[min(table, median|w|/(m-1))/16, 1.05*max(table, max|w|/(m-1))]``, at most 6%
  apart), then ``REFINE_ROUNDS`` zooms (9 points over the two neighbouring spacings, 4x
  finer each round: 6% -> 0.006%) around the ``REFINE_MINIMA`` best local minima.  The table step itself
  is always a candidate, so the result is never worse than VecQ's (up to float rounding of
  weights lying exactly on a threshold).
* The codes and ``alpha`` of the chosen step are then computed exactly like VecQ
  (``round_clip(w/s - 1/2)``, ``alpha = <w,q>/(<q,q> + eps)``): same output, same STE.

Cost: one sort of ``|w|`` plus a few thousand binary searches, then the same code/alpha pass
as the table method (benchmarks/dql.py measures it).  For training, ``refresh_every = N``
runs the search on every N-th torch call only; the other calls re-derive the codes from the
cached step and re-solve alpha (a table-method pass).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vecq_hw.errors import VecQError

#: small tensors (rows * n * (2**(k-1) - 1) breakpoints at most) are solved exactly
EXACT_EVENTS = 200_000
#: coarse grid: at most this ratio between neighbouring candidate steps ...
COARSE_RATIO = 1.06
#: ... and this many candidates per row, at least / at most
COARSE_MIN, COARSE_MAX = 32, 192
#: zoom rounds, points per zoom, local minima refined per row
REFINE_ROUNDS, REFINE_POINTS, REFINE_MINIMA = 6, 9, 2
#: large tensors: the search sorts at most max(SAMPLE_N // rows, SAMPLE_ROW_MIN) fixed
#: pseudo-random columns per row; the result is then checked against the table step on all
#: the weights (exact loss), so it is still never worse than VecQ
SAMPLE_N, SAMPLE_ROW_MIN = 2**18, 4096


def check_refresh_every(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise VecQError(f"expected an integer >= 1, got {value!r}", field="refresh_every")
    return int(value)


# ----------------------------------------------------------------------------------------
# exact loss of candidate steps from sorted |w|
# ----------------------------------------------------------------------------------------
class _Sorted:
    """|w| sorted per row with prefix sums: exact vector loss of any candidate step."""

    def __init__(self, w2d: np.ndarray, bits: int):
        a = np.sort(np.abs(w2d), axis=1)  # in the weights' own dtype (float32 sorts faster)
        ta = torch.from_numpy(a).to(torch.float64)
        self.rows, self.n = a.shape
        self.a = ta.numpy()
        self.C = np.zeros((self.rows, self.n + 1))
        torch.cumsum(ta, dim=1, out=torch.from_numpy(self.C)[:, 1:])
        self.S = self.C[:, -1]
        self.Sww = (ta * ta).sum(dim=1).numpy()
        self.m1 = 2 ** (bits - 1) - 1
        self.j = np.arange(1, self.m1 + 1, dtype=np.float64)
        self._ta = ta

    def loss(self, s: np.ndarray) -> np.ndarray:
        """Loss <w,w> - <w,q>^2/<q,q> for steps s of shape (rows, G) -> (rows, G).

        The thresholds go threshold-major (j, then s): for increasing s each run of G
        needles is sorted, which keeps the binary searches cache-friendly.
        """
        rows, g = s.shape
        t = (self.j[None, :, None] * s[:, None, :]).reshape(rows, -1)  # (rows, J*G)
        idx = torch.searchsorted(self._ta, torch.from_numpy(t), right=False).numpy()
        csum = np.take_along_axis(self.C, idx, axis=1).reshape(rows, self.m1, g)
        above = (self.n - idx).reshape(rows, self.m1, g)  # elements with |w| >= j*s
        swq = self.S[:, None] * (self.m1 + 0.5) - csum.sum(axis=1)
        sqq = self.n * 0.25 + np.einsum("rjg,j->rg", above, 2.0 * self.j)
        return self.Sww[:, None] - swq * swq / sqq


def _exact_steps(srt: _Sorted) -> np.ndarray:
    """Global optimum by a sweep over all breakpoints |w_i|/j (small tensors)."""
    a, rows, n, m1 = srt.a, srt.rows, srt.n, srt.m1
    ev = (a[:, :, None] / srt.j).reshape(rows, -1)  # crossing s downwards: level j-1 -> j
    dwq = np.broadcast_to(a[:, :, None], a.shape + (m1,)).reshape(rows, -1)
    dqq = np.broadcast_to(2.0 * srt.j, a.shape + (m1,)).reshape(rows, -1)
    order = np.argsort(-ev, axis=1, kind="stable")
    ev = np.take_along_axis(ev, order, axis=1)
    swq = srt.S[:, None] * 0.5 + np.cumsum(np.take_along_axis(dwq, order, axis=1), axis=1)
    sqq = n * 0.25 + np.cumsum(np.take_along_axis(dqq, order, axis=1), axis=1)
    loss = srt.Sww[:, None] - swq * swq / sqq
    nxt = np.concatenate([ev[:, 1:], np.zeros((rows, 1))], axis=1)
    loss = np.where((nxt < ev) & (ev > 0), loss, np.inf)  # one score per piece (s in (nxt, ev))
    loss0 = srt.Sww - (0.5 * srt.S) ** 2 / (n * 0.25)  # s above every breakpoint: all level 0
    best = np.argmin(loss, axis=1)
    r = np.arange(rows)
    hi, lo = ev[r, best], nxt[r, best]
    step = np.where(lo > 0, np.sqrt(hi * np.maximum(lo, 1e-300)), 0.5 * hi)
    top = ev[:, 0]
    use0 = loss0 <= loss[r, best]
    step = np.where(use0, np.where(top > 0, 2.0 * top, 1.0), step)
    return step


def _grid_steps(srt: _Sorted, s_table: np.ndarray) -> np.ndarray:
    """Coarse log grid + zooms around the best local minima; the table step is a candidate."""
    rows, m1 = srt.rows, srt.m1
    amax = srt.a[:, -1]
    med = srt.a[:, srt.n // 2]
    hi = np.maximum(s_table, amax / m1) * 1.05
    lo = np.minimum(s_table, np.where(med > 0, med, amax) / m1) / 16.0
    lo = np.maximum(lo, hi * 1e-7)
    g = int(np.clip(math.ceil(np.log(np.max(hi / lo)) / math.log(COARSE_RATIO)) + 1, COARSE_MIN, COARSE_MAX))
    u = np.linspace(0.0, 1.0, g)
    steps = lo[:, None] * (hi / lo)[:, None] ** u[None, :]  # (rows, g), log-spaced
    loss = srt.loss(steps)

    best_s = s_table.copy()
    best_l = srt.loss(s_table[:, None])[:, 0]
    r = np.arange(rows)

    def take(st, ls):
        nonlocal best_s, best_l
        i = np.argmin(ls, axis=1)
        better = ls[r, i] < best_l
        best_s = np.where(better, st[r, i], best_s)
        best_l = np.where(better, ls[r, i], best_l)

    take(steps, loss)
    # brackets around the REFINE_MINIMA best local minima of the coarse grid
    pad = np.concatenate([np.full((rows, 1), np.inf), loss, np.full((rows, 1), np.inf)], axis=1)
    is_min = (pad[:, 1:-1] <= pad[:, :-2]) & (pad[:, 1:-1] <= pad[:, 2:])
    ranked = np.argsort(np.where(is_min, loss, np.inf), axis=1, kind="stable")[:, :REFINE_MINIMA]
    logs = np.log(steps)
    left = logs[r[:, None], np.maximum(ranked - 1, 0)]
    right = logs[r[:, None], np.minimum(ranked + 1, g - 1)]
    v = np.linspace(0.0, 1.0, REFINE_POINTS)
    for _ in range(REFINE_ROUNDS):
        cand_log = left[:, :, None] + (right - left)[:, :, None] * v  # (rows, K, P)
        cand = np.exp(cand_log).reshape(rows, -1)
        cl = srt.loss(cand)
        take(cand, cl)
        cl = cl.reshape(rows, REFINE_MINIMA, REFINE_POINTS)
        i = np.argmin(cl, axis=2)
        k = np.arange(REFINE_MINIMA)[None, :]
        new_left = cand_log[r[:, None], k, np.maximum(i - 1, 0)]
        new_right = cand_log[r[:, None], k, np.minimum(i + 1, REFINE_POINTS - 1)]
        left, right = new_left, new_right
    return best_s


def _sample_columns(n: int, size: int) -> np.ndarray:
    """A fixed pseudo-random subset of ``size`` column indices out of ``n`` (sorted)."""
    key = (n, size)
    idx = _SAMPLE_CACHE.get(key)
    if idx is None:
        idx = np.sort(np.random.default_rng(0x5EC0).choice(n, size=size, replace=False))
        if len(_SAMPLE_CACHE) > 64:
            _SAMPLE_CACHE.clear()
        _SAMPLE_CACHE[key] = idx
    return idx


_SAMPLE_CACHE: dict = {}


def optimal_steps(w2d, bits: int, s_table, *, sample: int | None = SAMPLE_N):
    """Best orientation step per row of ``w2d`` (numpy or torch, shape (rows, n)).

    ``s_table`` (rows,) is VecQ's step (a candidate; returned for k = 1, where every step
    gives the same codes).  Rows longer than ``max(sample // rows, SAMPLE_ROW_MIN)`` are
    searched on that many fixed pseudo-random columns (``sample=None``: never).  Returns
    (steps float64 numpy (rows,), sampled: bool).
    """
    if isinstance(w2d, torch.Tensor):
        w2d = w2d.detach().cpu().numpy()
    if isinstance(s_table, torch.Tensor):
        s_table = s_table.detach().cpu().numpy()
    s_table = np.asarray(s_table, dtype=np.float64).reshape(-1)
    if bits == 1:
        return s_table, False
    w2d = np.asarray(w2d)
    rows, n = w2d.shape
    sampled = False
    if sample is not None:
        size = max(sample // rows, SAMPLE_ROW_MIN)
        if n > size:
            w2d = w2d[:, _sample_columns(n, size)]
            sampled = True
    srt = _Sorted(w2d, bits)
    if srt.rows * srt.n * srt.m1 <= EXACT_EVENTS:
        steps = _exact_steps(srt)
        # never worse than the table step (ties of rounding aside, equal on a plateau)
        lt = srt.loss(s_table[:, None])[:, 0]
        ls = srt.loss(steps[:, None])[:, 0]
        steps = np.where(ls <= lt, steps, s_table)
    else:
        steps = _grid_steps(srt, s_table)
    zero = srt.a[:, -1] == 0  # an all-zero row: any step; keep the table's
    return np.where(zero | ~np.isfinite(steps) | (steps <= 0), s_table, steps), sampled


# ----------------------------------------------------------------------------------------
# the quantiser hook (VecQ(adaptive=True) calls this from _quantize_rows)
# ----------------------------------------------------------------------------------------
def _codes_alpha(w, step, q_lo, q_hi, ops, eps):
    codes = ops.round_clip(w / step - 0.5, q_lo, q_hi)
    q = codes + 0.5
    swq, sqq = ops.sum(w * q), ops.sum(q * q)
    return codes, swq / (sqq + eps), swq, sqq


def adaptive_rows(quantizer, w, ops, eps: float):
    """codes, alpha, None for the rows of ``w`` with the searched step (see VecQ)."""
    sigma = ops.std(w)
    s_table = sigma * quantizer.lam + eps  # exactly the table method's divisor
    if isinstance(w, torch.Tensor):
        return _torch_rows(quantizer, w, s_table, ops, eps)
    steps, sampled = optimal_steps(w, quantizer.bits, s_table)
    step, _ = _choose(w, steps.reshape(-1, 1), s_table, sampled, quantizer, ops, eps, np.where)
    return step


def _choose(w, step, s_table, sampled, quantizer, ops, eps, where):
    """Codes/alpha of ``step``; when the step was searched on a sample, also of the table
    step, keeping per row whichever has the lower exact loss.  Returns ((codes, alpha,
    None), effective step)."""
    lo, hi = quantizer.cmin, quantizer.cmax
    codes, alpha, swq, sqq = _codes_alpha(w, step, lo, hi, ops, eps)
    if sampled:
        codes_t, alpha_t, swq_t, sqq_t = _codes_alpha(w, s_table, lo, hi, ops, eps)
        # |w - alpha q|^2 = <w,w> - 2 alpha <w,q> + alpha^2 <q,q>; <w,w> is common
        loss = alpha * (alpha * sqq - 2 * swq)
        loss_t = alpha_t * (alpha_t * sqq_t - 2 * swq_t)
        keep = loss_t < loss
        codes = where(keep, codes_t, codes)
        alpha = where(keep, alpha_t, alpha)
        step = where(keep, s_table, step)
    return (codes, alpha, None), step


def _torch_rows(quantizer, w: torch.Tensor, s_table: torch.Tensor, ops, eps):
    """The torch path, with ``refresh_every`` caching of the (effective) step."""
    key = (tuple(w.shape), w.dtype, w.device, w.data_ptr())
    cache = quantizer._step_cache
    calls = quantizer._calls
    quantizer._calls = calls + 1
    if cache is not None and cache[0] == key and calls % quantizer.refresh_every != 0:
        out, _ = _choose(w, cache[1], s_table, False, quantizer, ops, eps, torch.where)
        return out
    steps, sampled = optimal_steps(w, quantizer.bits, s_table)
    step = torch.from_numpy(steps).to(dtype=w.dtype, device=w.device).reshape(-1, 1)
    out, step = _choose(w, step, s_table, sampled, quantizer, ops, eps, torch.where)
    if quantizer.refresh_every > 1:
        quantizer._step_cache = (key, step)
    return out
