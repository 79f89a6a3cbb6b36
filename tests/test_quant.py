"""Weight quantisers (vecq_hw.quant) against an independent transcription of the
published formulas, plus the properties the integer model relies on."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vecq_hw.errors import ExportError, VecQError
from vecq_hw.quant import (
    UL2Q,
    QuantResult,
    VecQ,
    get_quantizer,
    ul2q_quantize,
    vecq_quantize,
)

# --- independent transcription (plain Python, element by element) ---------------------

REF_VECQ_LAMBDA = {1: 1.0, 2: 0.9957, 3: 0.5860, 4: 0.3352, 5: 0.1881, 6: 0.1041, 7: 0.0569, 8: 0.0308}
REF_UL2Q_LAMBDA = {1: 1.5950161625215948, 2: 0.99529008541347519, 3: 0.5872211503939504,
                   4: 0.3358904980253396, 5: 0.18944224088629152, 6: 0.10570877041455067,
                   7: 0.057082736023857356, 8: 0.030482181036739827}
EPS = 1e-7  # the reference's K.epsilon() / 1e-7


def ref_lambda(table, k):
    return table[k] if k <= 8 else 6.0 / (2**k - 1)


def ref_mean_std(xs):
    n = len(xs)
    mean = sum(xs) / n
    return mean, math.sqrt(sum((x - mean) ** 2 for x in xs) / n)


def ref_vecq_group(xs, k):
    """VecQ on one list of floats -> (codes, alpha)."""
    lo, hi = -(2 ** (k - 1)), 2 ** (k - 1) - 1
    _, sd = ref_mean_std(xs)
    step = sd * ref_lambda(REF_VECQ_LAMBDA, k) + EPS
    codes = []
    for x in xs:
        t = x / step - 0.5
        t = min(max(t, lo), hi)  # the reference clips first, then rounds
        codes.append(int(round(t)))  # Python round: half to even, like K.round
    num = sum(x * (c + 0.5) for x, c in zip(xs, codes))
    den = sum((c + 0.5) ** 2 for c in codes) + EPS
    return codes, num / den


def ref_ul2q_group(xs, k, offset=True):
    """µL2Q on one list of floats -> (codes, alpha, beta)."""
    lo, hi = -(2 ** (k - 1)), 2 ** (k - 1) - 1
    mean, sd = ref_mean_std(xs)
    beta = mean if offset else 0.0
    alpha = ref_lambda(REF_UL2Q_LAMBDA, k) * sd
    codes = []
    for x in xs:
        c = int(round((x - beta) / (alpha + EPS) - 0.5))
        codes.append(min(max(c, lo), hi))
    return codes, alpha, (mean if offset else None)


def ref_groups(w, per_channel):
    w = np.asarray(w, dtype=np.float64)
    if per_channel:
        return [list(map(float, row.ravel())) for row in w.reshape(w.shape[0], -1)]
    return [list(map(float, w.ravel()))]


SHAPES = [(7,), (6, 9), (4, 3, 3, 3)]


def _weights(shape, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(0.01, 0.3, size=shape)


@pytest.mark.parametrize("k", list(range(1, 17)))
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_vecq_matches_reference(k, per_channel, shape):
    w = _weights(shape, seed=k)
    r = vecq_quantize(w, k, per_channel)
    assert r.codes.shape == w.shape and r.beta is None and r.encoding == "odd"
    groups = ref_groups(w, per_channel)
    codes = r.codes.reshape(len(groups), -1)
    alphas = np.atleast_1d(r.alpha)
    assert alphas.shape == (len(groups),)
    for g, xs in enumerate(groups):
        rc, ra = ref_vecq_group(xs, k)
        assert codes[g].tolist() == rc
        assert alphas[g] == pytest.approx(ra, rel=1e-12)


@pytest.mark.parametrize("k", list(range(1, 17)))
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("offset", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_ul2q_matches_reference(k, per_channel, offset, shape):
    w = _weights(shape, seed=100 + k)
    r = ul2q_quantize(w, k, per_channel, offset)
    groups = ref_groups(w, per_channel)
    codes = r.codes.reshape(len(groups), -1)
    alphas = np.atleast_1d(r.alpha)
    betas = None if r.beta is None else np.atleast_1d(r.beta)
    assert r.has_offset == offset
    for g, xs in enumerate(groups):
        rc, ra, rb = ref_ul2q_group(xs, k, offset)
        assert codes[g].tolist() == rc
        assert alphas[g] == pytest.approx(ra, rel=1e-12)
        if offset:
            assert betas[g] == pytest.approx(rb, rel=1e-12, abs=1e-15)


def test_vecq_one_bit_is_sign_times_mean_abs():
    w = np.array([-1.0, -0.2, 0.3, 1.5, 0.05])
    r = vecq_quantize(w, 1)
    assert r.codes.tolist() == [-1, -1, 0, 0, 0]
    assert r.alpha == pytest.approx(2 * np.mean(np.abs(w)), rel=1e-6)  # value = ±alpha/2
    np.testing.assert_allclose(r.value(), np.sign(w) * np.mean(np.abs(w)), rtol=1e-6)


def test_value_and_odd_encoding():
    w = _weights((5, 8), 3)
    for r in (vecq_quantize(w, 3, True), ul2q_quantize(w, 3, True, offset=False)):
        d = r.odd()
        assert np.all(d % 2 == 1)
        np.testing.assert_array_equal(r.value(), d * (r.alpha[:, None] / 2))
    r = ul2q_quantize(w, 3, False, offset=True)
    np.testing.assert_array_equal(r.value(), (r.codes + 0.5) * r.alpha + r.beta)


@pytest.mark.parametrize("cls", [VecQ, UL2Q])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 8, 12, 16])
def test_levels_table_is_the_half_integer_grid(cls, k):
    r = cls(k).quantize(_weights((3, 5), k))
    lo = -(2 ** (k - 1))
    assert r.levels.dtype == np.int64 and r.levels.shape == (2**k,)
    assert r.levels.tolist() == [2 * c + 1 for c in range(lo, -lo)] and r.unit == 0.5
    assert r.encoding == "odd"


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8, 16])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("per_channel", [False, True])
def test_value_over_all_codes_equals_half_integer_formula(k, dtype, per_channel):
    """value() = levels[c - cmin] * unit * alpha is bit for bit the released (c + 1/2) * alpha,
    for every code, numpy and torch, float32 and float64, with and without beta."""
    lo, hi = -(2 ** (k - 1)), 2 ** (k - 1) - 1
    codes = np.arange(lo, hi + 1).reshape(1, -1).repeat(3, axis=0)  # every code in every row
    rng = np.random.default_rng(k)
    alpha = rng.uniform(1e-4, 3.0, size=(3,) if per_channel else ()).astype(dtype)
    beta = rng.normal(size=alpha.shape).astype(dtype)
    levels = VecQ(k).level_table()
    for b in (None, beta):
        r = QuantResult(codes=codes.astype(np.int8 if k <= 8 else np.int16), alpha=alpha, bits=k,
                        levels=levels, unit=0.5, beta=b)
        a2 = alpha.reshape(-1, 1) if per_channel else alpha
        want = (codes.astype(dtype) + dtype(0.5)) * a2  # the released formula, in alpha's dtype
        if b is not None:
            want = want + (b.reshape(-1, 1) if per_channel else b)
        got = r.value()
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, want)
        rt = QuantResult(codes=torch.from_numpy(r.codes), alpha=torch.from_numpy(alpha), bits=k,
                         levels=levels, unit=0.5, beta=None if b is None else torch.from_numpy(b))
        assert torch.equal(rt.value(), torch.from_numpy(want))
        np.testing.assert_array_equal(r.multipliers(), 2 * codes + 1)
        assert torch.equal(rt.multipliers(), torch.from_numpy(2 * codes + 1))


# --- direct quantisation loss: VecQ is near the best step of its grid -------------------

def _best_grid_loss(w, k):
    """Fine search of the best step of the half-integer grid (with modulus refit).

    For step s, code c covers w in [c*s, (c+1)*s) (ends open), and with the least-squares
    alpha the loss is (||w||^2 - <w,q>^2/<q,q>) / ||w||^2.  Bin counts and sums come from
    the sorted samples, so each step costs O(2^k log n): scan 0.4..1.6 x sigma*lambda_k
    in 0.05 % steps, then refine 100x finer around the best.
    """
    lo, hi = -(2 ** (k - 1)), 2 ** (k - 1) - 1
    ws = np.sort(w)
    prefix = np.concatenate([[0.0], np.cumsum(ws)])
    q = np.arange(lo, hi + 1) + 0.5
    ww = float(np.sum(w * w))

    def losses(steps):
        edges = np.searchsorted(ws, steps[:, None] * np.arange(lo + 1, hi + 1)[None, :])
        n = ws.size
        idx = np.concatenate([np.zeros((len(steps), 1), int), edges, np.full((len(steps), 1), n)], 1)
        counts = np.diff(idx, axis=1)
        sums = np.diff(prefix[idx], axis=1)
        wq = sums @ q
        qq = counts @ (q * q)
        return (ww - wq**2 / qq) / ww

    s0 = w.std() * REF_VECQ_LAMBDA[k]
    steps = np.linspace(0.4, 1.6, 2401) * s0
    ls = losses(steps)
    i = int(np.argmin(ls))
    fine = np.linspace(steps[max(i - 1, 0)], steps[min(i + 1, len(steps) - 1)], 201)
    return float(min(ls.min(), losses(fine).min()))


@pytest.fixture(scope="module")
def gaussian_samples():
    return np.random.default_rng(2020).standard_normal(200_000)


@pytest.mark.parametrize("k", list(range(1, 9)))
def test_vecq_dql_near_optimal(gaussian_samples, k):
    w = gaussian_samples
    r = vecq_quantize(w, k)
    dql = float(np.sum((w - r.value()) ** 2) / np.sum(w * w))
    best = _best_grid_loss(w, k)
    assert dql <= best * 1.005, f"k={k}: VecQ DQL {dql:.6g} vs best {best:.6g}"


# --- properties ----------------------------------------------------------------------

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(
    w=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6), elements=finite),
    k=st.integers(1, 16),
    per_channel=st.booleans(),
    which=st.sampled_from(["vecq", "ul2q", "ul2q-nooffset"]),
)
def test_codes_within_k_bits(w, k, per_channel, which):
    q = get_quantizer("ul2q" if which.startswith("ul2q") else "vecq", k, per_channel,
                      **({"offset": False} if which == "ul2q-nooffset" else {}))
    for r in (q.quantize(w), q.quantize_torch(torch.from_numpy(w)).to_numpy()):
        assert r.codes.dtype == (np.int8 if k <= 8 else np.int16)
        assert r.codes.shape == w.shape
        assert r.codes.min() >= -(2 ** (k - 1)) and r.codes.max() <= 2 ** (k - 1) - 1
        assert np.all(np.isfinite(r.value()))


@pytest.mark.parametrize("cls", [VecQ, UL2Q])
@pytest.mark.parametrize("k", [1, 2, 4, 8])
def test_per_channel_is_per_tensor_per_row(cls, k):
    w = _weights((5, 3, 2, 2), 7) * np.arange(1, 6)[:, None, None, None]
    r = cls(k, per_channel=True).quantize(w)
    for j in range(w.shape[0]):
        rj = cls(k).quantize(w[j])
        np.testing.assert_array_equal(r.codes[j], rj.codes)
        assert r.alpha[j] == pytest.approx(float(rj.alpha), rel=1e-13)
        if r.beta is not None:
            assert r.beta[j] == pytest.approx(float(rj.beta), rel=1e-13, abs=1e-16)


@pytest.mark.parametrize("cls", [VecQ, UL2Q])
@pytest.mark.parametrize("per_channel", [False, True])
def test_torch_path_matches_numpy_path(cls, per_channel):
    w = _weights((8, 16), 11)
    rn = cls(3, per_channel).quantize(w)
    rt = cls(3, per_channel).quantize_torch(torch.from_numpy(w))
    assert rt.codes.dtype == torch.int8
    np.testing.assert_array_equal(rt.codes.numpy(), rn.codes)
    np.testing.assert_allclose(rt.alpha.numpy(), rn.alpha, rtol=1e-13)
    # float32 input: same formula in float32
    r32 = cls(3, per_channel).quantize_torch(torch.from_numpy(w).float())
    assert r32.alpha.dtype == torch.float32 and r32.value().dtype == torch.float32


@pytest.mark.parametrize("q", [VecQ(2), VecQ(4, per_channel=True), UL2Q(3), UL2Q(3, True, offset=False)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ste_forward_exact_backward_identity(q, dtype):
    torch.manual_seed(0)
    w = torch.randn(6, 5, dtype=dtype, requires_grad=True)
    y = q(w)
    assert torch.equal(y.detach(), q.quantize_torch(w).value())
    g = torch.randn(6, 5, dtype=dtype)
    (y * g).sum().backward()
    assert torch.equal(w.grad, g)


def test_degenerate_weights_stay_finite():
    for w in (np.zeros((3, 4)), np.full((3, 4), 2.5), np.array([1e-30, -1e-30])):
        for q in (VecQ(2), VecQ(3, True), UL2Q(2), UL2Q(2, True, offset=False)):
            r = q.quantize(w)
            assert np.all(np.isfinite(r.value()))
    r = vecq_quantize(np.zeros(4), 2)
    assert r.alpha == 0 and np.all(r.value() == 0)


def test_offset_is_reported_honestly():
    w = _weights((4, 6), 5) + 1.0
    r = ul2q_quantize(w, 2, offset=True)
    assert r.has_offset
    with pytest.raises(ExportError, match="offset"):
        r.require_no_offset()
    ul2q_quantize(w, 2, offset=False).require_no_offset()
    vecq_quantize(w, 2).require_no_offset()


@pytest.mark.parametrize("bits", [0, -1, 17, 2.5, True, "2", None])
def test_bad_bits(bits):
    with pytest.raises(VecQError, match="bits"):
        VecQ(bits)
    with pytest.raises(VecQError, match="bits"):
        UL2Q(bits)


def test_bad_quantizer_name_and_inputs():
    with pytest.raises(VecQError, match="quantizer"):
        get_quantizer("lsq", 2)
    with pytest.raises(VecQError, match="quantizer"):
        get_quantizer("vecq", 2, offset=True)
    with pytest.raises(VecQError):
        VecQ(2).quantize(np.float64(1.0))
    with pytest.raises(VecQError):
        VecQ(2).quantize_torch(torch.ones(3, dtype=torch.int32))
    assert isinstance(get_quantizer("VecQ", 3), VecQ)
    assert isinstance(vecq_quantize(np.ones(3), 2), QuantResult)
