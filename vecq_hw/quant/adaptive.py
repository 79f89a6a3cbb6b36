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
* Larger rows: a log-spaced coarse grid of steps over a bracket that holds every sensible
  step (``[min(table, median|w|/(m-1))/16, 1.05*max(table, max|w|/(m-1))]``, 10% apart; 3%
  and more minima for rows under ``SMALL_ROW``), then ``REFINE_ROUNDS`` zooms (9 points over
  the two neighbouring spacings, 4x finer each round) around the best local minima, then
  the exact breakpoint sweep restricted to +-``LOCAL_WIDTH`` of the result (the loss curve
  of a mid-size row is jagged).  The table step is a candidate throughout, so the result
  is never worse than VecQ's (up to float rounding of weights exactly on a threshold).
* Rows longer than ``SAMPLE_N`` (per tensor: 262k weights): the sort would dominate, so the
  loss is estimated from every weight above the 99th percentile (the tail, exact: it sets
  the best step at high k) plus a strided sample of the bulk, read as a piecewise-linear
  CDF (smooth in s) through at most ``BULK_KNOTS`` of its order statistics.  The estimate is good to a few 1e-3, so there the searched step
  replaces the table step only if it is estimated better by ``SAMPLE_MARGIN`` (0.5%): the
  "never worse than the table" guarantee is statistical for such rows, exact below.
* The codes and ``alpha`` of the chosen step are then computed exactly like VecQ
  (``round_clip(w/s - 1/2)``, ``alpha = <w,q>/(<q,q> + eps)``): same output, same STE.

Cost: benchmarks/dql.py measures it against the table method.  For training,
``refresh_every = N`` runs the search on every N-th torch call only; the other calls
re-derive the codes from the cached step and re-solve alpha (a table-method pass).
The search runs on the CPU (numpy); a CUDA weight is copied to the host for it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vecq_hw.errors import VecQError

#: small tensors (rows * n * (2**(k-1) - 1) breakpoints at most) are solved exactly
EXACT_EVENTS = 1_000_000
#: coarse grid: at most this ratio between neighbouring candidate steps (rows of fewer
#: than SMALL_ROW weights, whose loss curve is jagged: the finer ratio and more minima) ...
COARSE_RATIO, COARSE_RATIO_SMALL, SMALL_ROW = 1.1, 1.03, 2**16
#: ... and this many candidates per row, at least / at most
COARSE_MIN, COARSE_MAX = 32, 192
#: zoom rounds, points per zoom, local minima refined per row; sampled rows stop at a
#: 0.2 % bracket (their loss estimate is good to ~1e-3, a finer step changes nothing)
REFINE_ROUNDS, REFINE_POINTS, REFINE_MINIMA, REFINE_MINIMA_SMALL = 5, 9, 2, 6
SAMPLE_REFINE_ROUNDS = 3
#: exact rows too large for the full sweep: an exact sweep within +-LOCAL_WIDTH of the
#: grid's best step
LOCAL_WIDTH = 0.03
#: rows longer than max(SAMPLE_N // rows, SAMPLE_ROW_MIN) are searched on a strided sample
#: of at most SAMPLE_BULK of their weights for the bulk ...
SAMPLE_N, SAMPLE_ROW_MIN, SAMPLE_BULK = 2**18, 4096, 2**16
#: ... plus, exactly, every weight above the sample's (1 - TAIL_FRAC) quantile of |w|
TAIL_FRAC = 0.01
#: the bulk sample's CDF is interpolated between at most this many knots per row
BULK_KNOTS = 1024
#: on a sample, the searched step replaces the table step only if its estimated loss is
#: lower by this fraction (exact tensors: any gain)
SAMPLE_MARGIN = 5e-3


def check_refresh_every(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise VecQError(f"expected an integer >= 1, got {value!r}", field="refresh_every")
    return int(value)


# ----------------------------------------------------------------------------------------
# exact loss of candidate steps from sorted |w|
# ----------------------------------------------------------------------------------------
class _Sorted:
    """|w| sorted per row with prefix sums: exact vector loss of any candidate step."""

    def __init__(self, a: np.ndarray, bits: int):
        ta = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))
        self.rows, self.n = ta.shape
        self.a = ta.numpy()
        self.C = np.zeros((self.rows, self.n + 1))
        torch.cumsum(ta, dim=1, out=torch.from_numpy(self.C)[:, 1:])
        self.S = self.C[:, -1]
        self.Sww = (ta * ta).sum(dim=1).numpy()
        self.amax = self.a[:, -1]
        self.med = self.a[:, self.n // 2]
        self.m1 = 2 ** (bits - 1) - 1
        self.j = np.arange(1, self.m1 + 1, dtype=np.float64)
        self._ta = ta

    @classmethod
    def full(cls, w2d: np.ndarray, bits: int) -> "_Sorted":
        # sorted in the weights' own dtype (float32 sorts faster), summed in float64
        return cls(np.sort(np.abs(w2d), axis=1), bits)

    def loss(self, s: np.ndarray) -> np.ndarray:
        """Loss <w,w> - <w,q>^2/<q,q> for steps s of shape (rows, G) -> (rows, G).

        The thresholds go threshold-major (j, then s): for increasing s each run of G
        needles is sorted, which keeps the binary searches cache-friendly.
        """
        rows, g = s.shape
        t = (self.j[None, :, None] * s[:, None, :]).reshape(rows, -1)  # (rows, J*G)
        idx = torch.searchsorted(self._ta, torch.from_numpy(t), right=False).numpy()
        csum = _gather(self.C, idx).reshape(rows, self.m1, g)
        above = (self.n - idx).reshape(rows, self.m1, g)  # elements with |w| >= j*s
        swq = self.S[:, None] * (self.m1 + 0.5) - csum.sum(axis=1)
        sqq = self.n * 0.25 + np.einsum("rjg,j->rg", above, 2.0 * self.j)
        self.last = (swq, sqq)
        return self.Sww[:, None] - swq * swq / sqq


def _local_sweep(srt: "_Sorted", steps: np.ndarray, width: float = LOCAL_WIDTH) -> np.ndarray:
    """Exact optimum inside [s/(1+width), s*(1+width)] around each row's step: the sweep of
    _exact_steps over the breakpoints |w_i|/j that fall in the window only."""
    out = steps.copy()
    for r in range(srt.rows):
        s_hi, s_lo = steps[r] * (1 + width), steps[r] / (1 + width)
        a = srt.a[r]
        lo_i = np.searchsorted(a, srt.j * s_lo, side="right")
        hi_i = np.searchsorted(a, srt.j * s_hi, side="left")
        cnt = np.maximum(hi_i - lo_i, 0)
        if cnt.sum() == 0 or cnt.sum() > 4 * EXACT_EVENTS:
            continue
        jj = np.repeat(srt.j, cnt)
        ii = np.concatenate([np.arange(l, h) for l, h in zip(lo_i, hi_i) if h > l])
        av = a[ii]
        ev = av / jj
        order = np.argsort(-ev, kind="stable")
        ev, av, jj = ev[order], av[order], jj[order]
        srt.loss(np.array([[s_hi]]) if srt.rows == 1 else np.full((srt.rows, 1), s_hi))
        swq0, sqq0 = srt.last[0][r, 0], srt.last[1][r, 0]
        swq = swq0 + np.cumsum(av)
        sqq = sqq0 + np.cumsum(2.0 * jj)
        loss = srt.Sww[r] - swq * swq / sqq
        nxt = np.concatenate([ev[1:], [s_lo]])
        loss = np.where(nxt < ev, loss, np.inf)
        b = int(np.argmin(loss))
        l0 = srt.Sww[r] - swq0 * swq0 / sqq0
        cur = srt.loss(np.full((srt.rows, 1), steps[r]))[r, 0]
        if loss[b] < min(l0, cur):
            out[r] = np.sqrt(ev[b] * max(nxt[b], 1e-300))
        elif l0 < cur:
            out[r] = s_hi
    return out


def _gather(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return x[0, idx[0]][None] if x.shape[0] == 1 else np.take_along_axis(x, idx, axis=1)


class _Stratified:
    """Large rows: the loss of a step from a strided sample of the bulk, smoothed, plus
    every weight in the tail exactly.

    The tail (|w| above the sample's (1 - TAIL_FRAC) quantile tau: where the best step is
    decided at high k) is kept exactly, as sorted point masses.  The bulk (|w| <= tau) is
    represented by its sorted sample as a *piecewise-linear CDF* (knots at the sample
    values, each carrying the weight bulk count / sample count), so the counts and sums
    below a threshold are integrals of a smooth density: the sampled loss curve is smooth
    in s (point masses would give it sampling jitter of a few 1e-3 at high k).
    """

    def __init__(self, w2d: np.ndarray, bits: int, size: int):
        rows, n = w2d.shape
        ab = np.abs(w2d)
        smp = np.sort(ab[:, :: _sample_stride(n, size)], axis=1).astype(np.float64)
        ns = smp.shape[1]
        tau = smp[:, min(ns - 1, int(ns * (1.0 - TAIL_FRAC)))]
        self.rows, self.n, self.m1 = rows, n, 2 ** (bits - 1) - 1
        self.j = np.arange(1, self.m1 + 1, dtype=np.float64)
        self.med = smp[:, ns // 2]
        tails = [np.sort(np.extract(ab[r] > tau[r], ab[r])).astype(np.float64) for r in range(rows)]
        # every |w| above tau is in the tail, and tau is itself one of the |w|
        self.amax = np.array([t[-1] if t.size else tau[r] for r, t in enumerate(tails)])
        nb = (smp <= tau[:, None]).sum(axis=1)
        nbmax, ntmax = int(nb.max()), max(1, max(t.size for t in tails))
        self.ntail = np.array([t.size for t in tails], dtype=np.float64)
        wb = (n - self.ntail) / np.maximum(nb, 1)
        # bulk knots x = [0, sample..., last sample again], F(x) = [0, wb*(i - 1/2)..., wb*nb]:
        # midpoint rule, the last half weight is a point mass at the last sample; rows with
        # fewer bulk samples are padded with their last sample (zero weight)
        # knots at every sample up to BULK_KNOTS of them, else at evenly spaced sample ranks:
        # the bulk is smooth, so linear interpolation between ranks a few samples apart
        # changes the loss far less than sampling does (knot c <-> sample c - 1)
        nk = min(nbmax, BULK_KNOTS)
        u = np.linspace(0.0, 1.0, nk)[None, :]
        col = np.zeros((rows, nk + 2))
        col[:, 1:-1] = 1.0 + np.rint(u * np.maximum(nb[:, None] - 1, 0))
        col[:, -1] = nb + 1
        x = np.zeros((rows, nk + 2))
        x[:, 1:] = np.take_along_axis(
            smp, np.minimum(col[:, 1:].astype(np.int64) - 1, nb[:, None] - 1).clip(0), axis=1)
        x[nb == 0] = 0.0
        K = wb[:, None] * np.clip(col - 0.5, 0.0, nb[:, None].astype(np.float64))
        K[:, 0] = 0.0
        self.x, self.K = x, K
        dk = np.diff(K, axis=1)
        x0, x1 = x[:, :-1], x[:, 1:]
        self.SI = np.zeros((rows, nk + 2))
        np.cumsum(dk * 0.5 * (x0 + x1), axis=1, out=self.SI[:, 1:])
        sww_b = (dk * (x1 * x1 + x1 * x0 + x0 * x0)).sum(axis=1) / 3.0
        self.Wb, self.Sb = K[:, -1], self.SI[:, -1]
        tpad = np.full((rows, ntmax), np.inf)
        for r, t in enumerate(tails):
            tpad[r, : t.size] = t
        self.TC = np.zeros((rows, ntmax + 1))
        self.TC[:, 1:] = np.cumsum(np.where(np.isfinite(tpad), tpad, 0.0), axis=1)
        self.Wtot = self.Wb + self.ntail
        self.S = self.Sb + self.TC[:, -1]
        self.Sww = sww_b + np.array([float(t @ t) for t in tails])
        self._tx, self._tt = torch.from_numpy(x), torch.from_numpy(tpad)

    def loss(self, s: np.ndarray) -> np.ndarray:
        rows, g = s.shape
        t = (self.j[None, :, None] * s[:, None, :]).reshape(rows, -1)
        # bulk: F and the partial first moment at t, linear inside the knot segment
        i = torch.searchsorted(self._tx, torch.from_numpy(t), right=False).numpy()
        i = np.clip(i, 1, self.x.shape[1] - 1)
        x0, x1 = _gather(self.x, i - 1), _gather(self.x, i)
        k0, k1 = _gather(self.K, i - 1), _gather(self.K, i)
        tt = np.clip(t, x0, x1)
        dx = x1 - x0
        slope = np.where(dx > 0, (k1 - k0) / np.where(dx > 0, dx, 1.0), 0.0)
        below_w = np.where(t >= self.x[:, -1:], self.Wb[:, None], k0 + slope * (tt - x0))
        below_s = np.where(t >= self.x[:, -1:], self.Sb[:, None],
                           _gather(self.SI, i - 1) + 0.5 * slope * (tt * tt - x0 * x0))
        # tail: exact point masses
        it = torch.searchsorted(self._tt, torch.from_numpy(t), right=False).numpy()
        below_w = below_w + it
        below_s = below_s + _gather(self.TC, it)
        above = (self.Wtot[:, None] - below_w).reshape(rows, self.m1, g)
        csum = below_s.reshape(rows, self.m1, g)
        swq = self.S[:, None] * (self.m1 + 0.5) - csum.sum(axis=1)
        sqq = self.Wtot[:, None] * 0.25 + np.einsum("rjg,j->rg", above, 2.0 * self.j)
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


def _grid_steps(srt: _Sorted, s_table: np.ndarray, rounds: int = REFINE_ROUNDS) -> np.ndarray:
    """Coarse log grid + zooms around the best local minima; the table step is a candidate."""
    rows, m1 = srt.rows, srt.m1
    amax, med = srt.amax, srt.med
    hi = np.maximum(s_table, amax / m1) * 1.05
    lo = np.minimum(s_table, np.where(med > 0, med, amax) / m1) / 16.0
    lo = np.maximum(lo, hi * 1e-7)
    small = srt.n < SMALL_ROW
    ratio, n_min = (COARSE_RATIO_SMALL, REFINE_MINIMA_SMALL) if small else (COARSE_RATIO, REFINE_MINIMA)
    cmax = COARSE_MAX * (4 if small else 1)
    g = int(np.clip(math.ceil(np.log(np.max(hi / lo)) / math.log(ratio)) + 1, COARSE_MIN, cmax))
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
    # brackets around the n_min best local minima of the coarse grid
    pad = np.concatenate([np.full((rows, 1), np.inf), loss, np.full((rows, 1), np.inf)], axis=1)
    is_min = (pad[:, 1:-1] <= pad[:, :-2]) & (pad[:, 1:-1] <= pad[:, 2:])
    ranked = np.argsort(np.where(is_min, loss, np.inf), axis=1, kind="stable")[:, :n_min]
    logs = np.log(steps)
    left = logs[r[:, None], np.maximum(ranked - 1, 0)]
    right = logs[r[:, None], np.minimum(ranked + 1, g - 1)]
    v = np.linspace(0.0, 1.0, REFINE_POINTS)
    for _ in range(rounds):
        cand_log = left[:, :, None] + (right - left)[:, :, None] * v  # (rows, K, P)
        cand = np.exp(cand_log).reshape(rows, -1)
        cl = srt.loss(cand)
        take(cand, cl)
        cl = cl.reshape(rows, -1, REFINE_POINTS)
        i = np.argmin(cl, axis=2)
        k = np.arange(cl.shape[1])[None, :]
        new_left = cand_log[r[:, None], k, np.maximum(i - 1, 0)]
        new_right = cand_log[r[:, None], k, np.minimum(i + 1, REFINE_POINTS - 1)]
        left, right = new_left, new_right
    return best_s


def _sample_stride(n: int, size: int) -> int:
    """The smallest stride >= n/size that shares no factor with 3*5*7: a strided sample
    then walks through every position of the usual kernel (3x3, 5x5, 7x7) and channel
    (powers of two) layouts instead of one fixed position."""
    stride = max(1, -(-n // size))
    while math.gcd(stride, 105) != 1:
        stride += 1
    return stride


def optimal_steps(w2d, bits: int, s_table, *, sample: int | None = SAMPLE_N):
    """Best orientation step per row of ``w2d`` (numpy or torch, shape (rows, n)).

    ``s_table`` (rows,) is VecQ's step (a candidate; returned for k = 1, where every step
    gives the same codes).  Rows longer than ``max(sample // rows, SAMPLE_ROW_MIN)`` are
    searched on a stratified sample (``sample=None``: never).  Returns float64 numpy (rows,).
    """
    if isinstance(w2d, torch.Tensor):
        w2d = w2d.detach().cpu().numpy()
    if isinstance(s_table, torch.Tensor):
        s_table = s_table.detach().cpu().numpy()
    s_table = np.asarray(s_table, dtype=np.float64).reshape(-1)
    if bits == 1:
        return s_table
    w2d = np.asarray(w2d)
    rows, n = w2d.shape
    size = n if sample is None else max(sample // rows, SAMPLE_ROW_MIN)
    sampled = n > size
    srt = _Stratified(w2d, bits, min(size, SAMPLE_BULK)) if sampled else _Sorted.full(w2d, bits)
    if not sampled and srt.rows * srt.n * srt.m1 <= EXACT_EVENTS:
        steps = _exact_steps(srt)
    else:
        steps = _grid_steps(srt, s_table, SAMPLE_REFINE_ROUNDS if sampled else REFINE_ROUNDS)
        if not sampled:  # jagged loss curves of mid-size rows: exact within +-3%
            steps = _local_sweep(srt, steps)
    # the table step wins ties (exact) and, on a sample, unless beaten by SAMPLE_MARGIN
    lt = srt.loss(s_table[:, None])[:, 0]
    ls = srt.loss(steps[:, None])[:, 0]
    gain = lt - ls
    need = SAMPLE_MARGIN * np.maximum(lt, 0.0) if sampled else 0.0
    steps = np.where(gain > need, steps, s_table)
    zero = srt.amax == 0  # an all-zero row: any step; keep the table's
    return np.where(zero | ~np.isfinite(steps) | (steps <= 0), s_table, steps)


# ----------------------------------------------------------------------------------------
# the quantiser hook (VecQ(adaptive=True) calls this from _quantize_rows)
# ----------------------------------------------------------------------------------------
def adaptive_rows(quantizer, w, ops, eps: float):
    """codes, alpha, None for the rows of ``w`` with the searched step: VecQ's formulas
    with ``sigma*lambda_k + eps`` replaced by the step (the same code as the table method,
    so a row whose best step is the table step gets exactly the table result)."""
    sigma = ops.std(w)
    s_table = sigma * quantizer.lam + eps  # exactly the table method's divisor
    if isinstance(w, torch.Tensor):
        step = _torch_step(quantizer, w, s_table)
    else:
        step = optimal_steps(w, quantizer.bits, s_table).reshape(-1, 1)
    codes = ops.round_clip(w / step - 0.5, quantizer.cmin, quantizer.cmax)
    q = codes + 0.5
    alpha = ops.sum(w * q) / (ops.sum(q * q) + eps)
    return codes, alpha, None


def _torch_step(quantizer, w: torch.Tensor, s_table: torch.Tensor) -> torch.Tensor:
    """The step for the torch path, with ``refresh_every`` caching."""
    key = (tuple(w.shape), w.dtype, w.device, w.data_ptr())
    cache = quantizer._step_cache
    calls = quantizer._calls
    quantizer._calls = calls + 1
    if cache is not None and cache[0] == key and calls % quantizer.refresh_every != 0:
        return cache[1]
    steps = torch.from_numpy(optimal_steps(w, quantizer.bits, s_table))
    step = steps.to(dtype=w.dtype, device=w.device).reshape(-1, 1)  # the table step: exact
    if quantizer.refresh_every > 1:
        quantizer._step_cache = (key, step)
    return step
