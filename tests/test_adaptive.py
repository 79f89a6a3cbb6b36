"""Adaptive VecQ (issue #6): the searched step vs the table step and an exhaustive search.

Loss = |w - w_hat|^2 of the actual output (codes, alpha).  Tolerances:

* vs the table method: 1e-9 relative, plus 1e-12 |w|^2 absolute.  The table step is always
  one of the candidates (or is re-checked exactly on all weights), so only float rounding
  separates them; the absolute term covers the reference's eps in alpha = <w,q>/(<q,q> + eps),
  which makes a near-zero loss (e.g. a 1-element tensor) depend on <q,q> at ~1e-13 |w|^2.
* small tensors vs brute force: 1e-9 relative.  There the search is exact (a sweep over all
  breakpoints |w_i|/j, where the codes change); the brute force scores every piece directly.
* grid path (larger tensors) vs a dense brute-force search: 1.0005x (the zooms end at 0.006%
  steps; the loss is flat to second order at the optimum; measured worst is ~1.0001x).
* sampled path (>131k weights per row) vs exhaustive: 1.005x, the issue's target.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vecq_hw.errors import VecQError
from vecq_hw.quant import VecQ, get_quantizer, vecq_quantize
from vecq_hw.quant import adaptive as ad


def loss(w, r) -> float:
    w = np.asarray(w, dtype=np.float64)
    v = r.to_numpy().value() if isinstance(r.codes, torch.Tensor) else r.value()
    return float(((w - np.asarray(v, dtype=np.float64).reshape(w.shape)) ** 2).sum())


def brute_best(w: np.ndarray, bits: int, steps: np.ndarray) -> float:
    """Best loss over the given steps, each scored directly (codes, closed-form alpha)."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    best = np.inf
    for chunk in np.array_split(steps, max(1, steps.size * w.size // 4_000_000)):
        q = np.clip(np.round(w[None, :] / chunk[:, None] - 0.5), lo, hi) + 0.5
        swq, sqq = (q * w).sum(1), (q * q).sum(1)
        best = min(best, float(((w * w).sum() - swq * swq / sqq).min()))
    return best


def breakpoint_steps(w: np.ndarray, bits: int) -> np.ndarray:
    """Steps just above and below every breakpoint |w_i|/j: one in every piece."""
    a = np.abs(w[w != 0])
    j = np.arange(1, 2 ** (bits - 1))
    b = (a[:, None] / j[None, :]).ravel()
    return np.concatenate([b * (1 + 1e-9), b * (1 - 1e-9), [a.max() * 4 if a.size else 1.0]])


def sample(dist: str, n: int, seed: int, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dist == "normal":
        w = rng.standard_normal(n)
    elif dist == "laplace":
        w = rng.laplace(size=n)
    elif dist == "t3":
        w = rng.standard_t(3, size=n)
    elif dist == "uniform":
        w = rng.uniform(-1, 1, n)
    elif dist == "mixture":  # spike and slab
        w = np.where(rng.random(n) < 0.9, 0.01 * rng.standard_normal(n), rng.standard_normal(n))
    elif dist == "sparse":  # pruned: 70% exact zeros
        w = np.where(rng.random(n) < 0.7, 0.0, rng.standard_normal(n))
    elif dist == "skewed":
        w = rng.exponential(size=n) - 0.3
    else:
        raise AssertionError(dist)
    return w * scale


DISTS = ["normal", "laplace", "t3", "uniform", "mixture", "sparse", "skewed"]


# --- the published method stays the default ----------------------------------------------
@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_default_is_the_table_method(bits):
    w = sample("laplace", 3000, bits).reshape(30, 100)
    assert VecQ(bits).adaptive is False
    assert get_quantizer("vecq", bits).adaptive is False
    for pc in (False, True):
        ref = VecQ(bits, pc).quantize(w)
        rows = w.reshape(w.shape[0], -1) if pc else w.reshape(1, -1)
        sigma = rows.std(axis=1, keepdims=True)
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        codes = np.clip(np.round(rows / (sigma * VecQ(bits).lam + 1e-7) - 0.5), lo, hi)
        q = codes + 0.5
        alpha = (rows * q).sum(1) / ((q * q).sum(1) + 1e-7)
        for r in (ref, VecQ(bits, pc, adaptive=False).quantize(w)):
            np.testing.assert_array_equal(r.codes, codes.reshape(w.shape))
            np.testing.assert_array_equal(r.alpha, alpha if pc else alpha[0])


def test_options_and_errors():
    q = get_quantizer("vecq", 3, True, adaptive=True, refresh_every=5)
    assert q.adaptive and q.refresh_every == 5 and q.per_channel
    assert "adaptive=True" in repr(q) and "refresh_every=5" in repr(q)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(VecQError, match="refresh_every"):
            VecQ(2, adaptive=True, refresh_every=bad)


# --- never worse than the table ---------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(
    dist=st.sampled_from(DISTS),
    n=st.integers(1, 3000),
    bits=st.integers(1, 8),
    scale=st.floats(1e-4, 1e3),
    per_channel=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_never_worse_than_table(dist, n, bits, scale, per_channel, seed):
    rows = 1 + seed % 7 if per_channel else 1
    w = sample(dist, n * rows, seed, scale).reshape(rows, n)
    t = VecQ(bits, per_channel).quantize(w)
    a = VecQ(bits, per_channel, adaptive=True).quantize(w)
    # same format
    assert a.codes.shape == w.shape and a.codes.dtype == np.int8
    assert a.codes.min() >= -(2 ** (bits - 1)) and a.codes.max() <= 2 ** (bits - 1) - 1
    assert a.alpha.shape == ((rows,) if per_channel else ())
    assert a.beta is None and a.encoding == "odd" and np.all(np.isfinite(a.alpha))
    if per_channel:  # row by row: per-channel adaptive never worse per row
        for r in range(rows):
            lt = float(((w[r] - t.value()[r]) ** 2).sum())
            la = float(((w[r] - a.value()[r]) ** 2).sum())
            assert la <= lt * (1 + 1e-9) + 1e-12 * float((w[r] ** 2).sum()) + 1e-300
    else:
        assert loss(w, a) <= loss(w, t) * (1 + 1e-9) + 1e-12 * float((w**2).sum()) + 1e-300


def test_never_worse_torch_float32_large():
    """The sampled path (1 row of 300k) re-checks the table step on all weights."""
    for dist in ("normal", "laplace", "uniform"):
        w = torch.tensor(sample(dist, 300_000, 3), dtype=torch.float32)
        for bits in (2, 4):
            lt = loss(w.double().numpy(), VecQ(bits).quantize_torch(w))
            la = loss(w.double().numpy(), VecQ(bits, adaptive=True).quantize_torch(w))
            assert la <= lt * (1 + 1e-6)


# --- vs exhaustive search -----------------------------------------------------------------
@pytest.mark.parametrize("dist", DISTS)
@pytest.mark.parametrize("bits", [2, 3, 5, 8])
def test_small_tensors_are_exactly_optimal(dist, bits):
    w = sample(dist, 300 if bits < 8 else 120, bits * 7 + len(dist))
    best = brute_best(w, bits, breakpoint_steps(w, bits))
    got = loss(w, vecq_quantize(w, bits, adaptive=True))
    assert got <= best * (1 + 1e-9) + 1e-300


@pytest.mark.parametrize("dist,bits", [("laplace", 8), ("t3", 7), ("uniform", 8), ("mixture", 6)])
def test_grid_path_matches_dense_search(dist, bits):
    w = sample(dist, ad.EXACT_EVENTS // (2 ** (bits - 1) - 1) + 5000, 11)
    assert w.size * (2 ** (bits - 1) - 1) > ad.EXACT_EVENTS  # the grid path
    got = loss(w, vecq_quantize(w, bits, adaptive=True))
    s_got = float(ad.optimal_steps(w[None], bits, np.array([1.0]))[0])
    sigma = w.std()
    coarse = np.geomspace(0.005 * sigma, 3 * sigma, 300)
    c_best = coarse[np.argmin([brute_best(w, bits, np.array([s])) for s in coarse])]
    fine = np.concatenate([c_best * np.linspace(0.97, 1.03, 1200), s_got * np.linspace(0.995, 1.005, 301)])
    best = brute_best(w, bits, fine)
    assert got <= best * 1.0005


def test_sampled_path_matches_exhaustive():
    w = sample("t3", 400_000, 5)
    srt = ad._Sorted.full(w[None], 8)
    steps = np.geomspace(1e-3, 3.0, 20_000) * w.std()
    ls = srt.loss(steps[None])[0]
    i = int(np.argmin(ls))
    fine = np.linspace(steps[max(i - 1, 0)], steps[min(i + 1, steps.size - 1)], 2001)
    best = min(ls.min(), srt.loss(fine[None]).min())
    assert loss(w, vecq_quantize(w, 8, adaptive=True)) <= best * 1.005


@pytest.mark.parametrize("dist", ["normal", "laplace", "mixture", "sparse"])
def test_sampled_path_keeps_the_tail_exactly(dist):
    """Rows searched on a sample: every |w| above the bulk's cut tau is kept exactly (count,
    sum, max), the bulk is read through at most BULK_KNOTS knots, and the bulk's weight makes
    up the rest of the row's count."""
    w = sample(dist, 3 * 400_000, 21).reshape(3, -1) * np.array([[1.0], [3.0], [0.01]])
    est = ad._Stratified(w, 4, ad.SAMPLE_BULK)
    assert est.x.shape[1] <= ad.BULK_KNOTS + 2
    a = np.abs(w)
    for r in range(3):
        tau = est.x[r, -1]  # the last bulk knot is the largest bulk sample, = tau
        tail = a[r][a[r] > tau]
        assert est.ntail[r] == tail.size > 0
        assert est.TC[r, tail.size] == pytest.approx(tail.sum(), rel=1e-12)
        assert est.amax[r] == a[r].max()
        assert est.Wtot[r] == pytest.approx(w.shape[1], rel=1e-12)


@pytest.mark.parametrize("dist", ["laplace", "t3", "uniform"])
@pytest.mark.parametrize("bits", [2, 4])
def test_sampled_path_at_low_bits(dist, bits):
    """300k weights in one row take the sampled path; the issue's 1.005x target there too."""
    w = sample(dist, 300_000, 40 + bits)
    assert w.size > ad.SAMPLE_N
    srt = ad._Sorted.full(w[None], bits)
    steps = np.geomspace(1e-2, 4.0, 4000) * w.std()
    ls = srt.loss(steps[None])[0]
    i = int(np.argmin(ls))
    fine = np.linspace(steps[max(i - 1, 0)], steps[min(i + 1, steps.size - 1)], 2001)
    best = min(ls.min(), srt.loss(fine[None]).min())
    assert loss(w, vecq_quantize(w, bits, adaptive=True)) <= best * 1.005


def test_one_bit_and_degenerate():
    w = sample("laplace", 500, 0)
    np.testing.assert_array_equal(VecQ(1, adaptive=True).quantize(w).codes, VecQ(1).quantize(w).codes)
    z = VecQ(3, adaptive=True).quantize(np.zeros((4, 5)))
    assert np.all(z.codes == 0) and float(z.alpha) == 0.0
    zc = VecQ(3, True, adaptive=True).quantize(np.concatenate([np.zeros((1, 5)), np.ones((1, 5))]))
    assert np.all(np.isfinite(zc.alpha)) and zc.alpha[0] == 0.0


# --- per channel, torch path, caching, STE ------------------------------------------------
def test_per_channel_is_per_row():
    w = np.stack([sample(d, 6 * 25, i) * (i + 1) for i, d in enumerate(DISTS)]).reshape(7, 6, 5, 5)
    for bits in (2, 4, 8):
        pc = VecQ(bits, True, adaptive=True).quantize(w)
        for r in range(w.shape[0]):
            row = VecQ(bits, adaptive=True).quantize(w[r])
            np.testing.assert_array_equal(pc.codes[r], row.codes)
            assert pc.alpha[r] == pytest.approx(float(row.alpha), rel=1e-12)


def test_torch_path_matches_numpy():
    w = sample("laplace", 4000, 2).reshape(40, 100)
    for pc in (False, True):
        n = VecQ(4, pc, adaptive=True).quantize(w)
        t = VecQ(4, pc, adaptive=True).quantize_torch(torch.tensor(w))  # float64: identical
        np.testing.assert_array_equal(t.codes.numpy(), n.codes)
        np.testing.assert_allclose(t.alpha.numpy(), n.alpha, rtol=1e-12)
        t32 = VecQ(4, pc, adaptive=True).quantize_torch(torch.tensor(w, dtype=torch.float32))
        assert t32.codes.dtype == torch.int8 and t32.alpha.dtype == torch.float32
        assert loss(w, t32) <= loss(w, n) * (1 + 1e-5)


def test_refresh_every_caches_the_step(monkeypatch):
    calls = []
    real = ad.optimal_steps

    def counting(*args, **kw):
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(ad, "optimal_steps", counting)
    p = torch.nn.Parameter(torch.tensor(sample("laplace", 2000, 4), dtype=torch.float32).reshape(20, 100))
    q = VecQ(4, per_channel=True, adaptive=True, refresh_every=3)
    r0 = q.quantize_torch(p)
    step = q._step_cache[1].clone()
    assert len(calls) == 1 and step.shape == (20, 1)
    for i in range(1, 6):
        with torch.no_grad():
            p.mul_(1.1).add_(0.01)  # in place, like an optimizer step
        r = q.quantize_torch(p)
        if i % 3 == 0:  # refresh
            assert len(calls) == 1 + i // 3
            step = q._step_cache[1].clone()
        else:  # codes re-derived from the cached step, alpha re-solved
            assert len(calls) == 1 + i // 3
            w = p.detach()
            codes = torch.clamp(torch.round(w / step - 0.5), -8, 7)
            qq = codes + 0.5
            alpha = (w * qq).sum(1) / ((qq * qq).sum(1) + 1e-7)
            np.testing.assert_array_equal(r.codes.numpy(), codes.to(torch.int8).numpy())
            np.testing.assert_allclose(r.alpha.numpy(), alpha.numpy(), rtol=1e-5)
    assert r0.codes.shape == p.shape
    # another tensor is never quantised with a stale step
    other = torch.tensor(sample("normal", 2000, 9), dtype=torch.float32).reshape(20, 100)
    n_before = len(calls)
    q.quantize_torch(other)
    assert len(calls) == n_before + 1
    q.reset_cache()
    assert q._step_cache is None
    # refresh_every=1 (default): a search every call, nothing cached
    q1 = VecQ(4, adaptive=True)
    q1.quantize_torch(p)
    q1.quantize_torch(p)
    assert q1._step_cache is None


def test_straight_through_estimator():
    w = torch.tensor(sample("t3", 600, 1), dtype=torch.float32).reshape(6, 100).requires_grad_()
    q = VecQ(3, True, adaptive=True)
    out = q(w)
    np.testing.assert_array_equal(out.detach().numpy(), q.quantize_torch(w).value().numpy())
    out.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), np.ones((6, 100), dtype=np.float32))
