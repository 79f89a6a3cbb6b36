"""The float requantisation path against the int64 definition, bit for bit.

``FloatRequant`` is only allowed where its module docstring proves it exact; these tests check
that proof at its edges: every mode it covers (and refusal of those it does not), accumulators
at both ends of their range, ties, and the 2**24 / 2**53 bounds from both sides.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vecq_hw.fixed import ROUNDING_MODES, FixedType
from vecq_hw.sim.float_requant import FloatRequant, carrier_dtype

COVERED_ROUNDING = ("AP_TRN", "AP_RND", "AP_RND_MIN_INF", "AP_RND_CONV", "AP_TRN_ZERO")
COVERED_OVERFLOW = ("AP_SAT", "AP_SAT_SYM", "AP_SAT_ZERO")


def accumulators(rng, acc_width, scale, bias, sh, n=400):
    """int64 accumulators (n, n_out): random, both range ends, and exact ties for every channel
    with scale 1 (acc + b = k * 2**sh + 2**(sh-1))."""
    lo, hi = -(1 << (acc_width - 1)), (1 << (acc_width - 1)) - 1
    n_out = len(scale)
    acc = rng.integers(lo, hi + 1, size=(n, n_out), dtype=np.int64)
    acc[0], acc[1], acc[2], acc[3] = lo, hi, 0, -1
    small = rng.integers(-64, 64, size=(n // 4, n_out), dtype=np.int64)
    acc[4:4 + n // 4] = np.clip(small, lo, hi)
    if sh:
        k = rng.integers(-(hi >> sh) // 2 - 1, (hi >> sh) // 2 + 1, size=(n // 4, n_out))
        ties = k * (1 << sh) + (1 << (sh - 1)) - bias
        ones = scale == 1
        acc[-n // 4:, ones] = np.clip(ties, lo, hi)[:, ones]
    return acc


def int_reference(acc, scale, bias, sh, t):
    return t.quantize_mantissa(acc * scale + bias, t.frac + sh)


def check_plan(plan, acc, scale, bias, sh, t, acc_dtype):
    got = plan(acc.astype(acc_dtype))
    assert got.dtype == plan.out_dtype
    np.testing.assert_array_equal(got.astype(np.int64), int_reference(acc, scale, bias, sh, t),
                                  err_msg=f"{t} sh={sh} plan dtype {np.dtype(plan.dtype).name}")


@pytest.mark.parametrize("rounding", ROUNDING_MODES)
@pytest.mark.parametrize("overflow", COVERED_OVERFLOW + ("AP_WRAP",))
def test_plan_equals_int_path_or_is_refused(rounding, overflow):
    rng = np.random.default_rng(ROUNDING_MODES.index(rounding) * 10 + len(overflow))
    planned = 0
    for trial in range(60):
        signed = bool(trial % 3)
        w = int(rng.integers(2, 20))
        t = FixedType(w, int(rng.integers(-2, w + 3)), signed, rounding, overflow)
        sh = int(rng.choice([0, 1, 2, 3, 7, 12]))
        acc_width = int(rng.integers(2, 20))
        n_out = 5
        scale = rng.integers(0, 1 << int(rng.integers(1, 12)), size=n_out).astype(np.int64)
        scale[0] = 1
        bias = rng.integers(-(1 << 14), 1 << 14, size=n_out).astype(np.int64)
        plan = FloatRequant.plan(acc_width, scale, bias, sh, t)
        covered = overflow in COVERED_OVERFLOW and (sh == 0 or rounding in COVERED_ROUNDING)
        if not covered:
            assert plan is None
            continue
        assert plan is not None  # these bounds stay far below 2**53
        planned += 1
        acc = accumulators(rng, acc_width, scale, bias, sh)
        acc_dtype = np.float32 if acc_width <= 24 else np.float64
        check_plan(plan, acc, scale, bias, sh, t, acc_dtype)
        check_plan(plan, acc, scale, bias, sh, t, np.int64)
    if overflow in COVERED_OVERFLOW:
        assert planned > 0


@pytest.mark.parametrize("w,want", [(1, [-1, -1, -1, -1, 0, 0, 0, 0]),
                                    (2, [-1, -1, -1, -1, 0, 0, 1, 1])])
def test_sat_sym_narrowest_widths(w, want):
    """AP_SAT_SYM at W = 1 saturates negatives to -1 (ap_types ORs the LSB into the minimum;
    -max would be 0), at W = 2 to -max = -1; values by hand: AP_TRN, sh = 2, floor(acc / 4)
    = -2 -2 -1 -1 0 0 1 1. The oracle tests confirm both against g++."""
    t = FixedType(w, w, True, "AP_TRN", "AP_SAT_SYM")
    acc = np.array([[-8], [-5], [-4], [-1], [0], [3], [4], [7]], dtype=np.int64)
    plan = FloatRequant.plan(5, np.ones(1, np.int64), np.zeros(1, np.int64), 2, t)
    assert plan is not None
    for dtype in (np.float32, np.int64):
        np.testing.assert_array_equal(plan(acc.astype(dtype)).ravel(), want)
    np.testing.assert_array_equal(t.quantize_mantissa(acc, t.frac + 2).ravel(), want)


def test_integer_targets_and_right_shifts_beyond_62_are_refused():
    one = np.ones(3, np.int64)
    assert FloatRequant.plan(8, one, one, 2, FixedType.parse("ap_int<8>")) is None
    assert FloatRequant.plan(8, one, one, 63, FixedType.parse("ap_fixed<8,3,AP_TRN,AP_SAT>")) is None
    assert FloatRequant.plan(8, one, one, -1, FixedType.parse("ap_fixed<8,3,AP_TRN,AP_SAT>")) is None


def _bound_case(p_bits: int, sh: int, below: bool):
    """Scale/bias whose plan bound 2**(wa-1)*max|s| + max|b| + 2**sh is 2**p - 1 (below) or 2**p."""
    acc_width = 12
    target = (1 << p_bits) - (1 if below else 0)
    smax = ((1 << p_bits) - (1 << sh) - (1 << 10)) >> (acc_width - 1)
    bmax = target - (1 << sh) - (smax << (acc_width - 1))
    scale = np.array([smax, smax, 1, smax - 1], dtype=np.int64)
    bias = np.array([bmax, -bmax, 3, -bmax], dtype=np.int64)
    assert (1 << (acc_width - 1)) * smax + bmax + (1 << sh) == target
    return acc_width, scale, bias


@pytest.mark.parametrize("p_bits,dtype_below,dtype_at", [(24, np.float32, np.float64),
                                                         (53, np.float64, None)])
@pytest.mark.parametrize("sh", [0, 1, 5])
def test_precision_boundary(p_bits, dtype_below, dtype_at, sh):
    t = FixedType(60, 60 - 0, True, "AP_RND", "AP_SAT")  # wide: the clip never hides an error
    rng = np.random.default_rng(p_bits + sh)
    for below, want in ((True, dtype_below), (False, dtype_at)):
        acc_width, scale, bias = _bound_case(p_bits, sh, below)
        plan = FloatRequant.plan(acc_width, scale, bias, sh, t)
        if want is None:
            assert plan is None
            continue
        assert plan.dtype is want
        acc = accumulators(rng, acc_width, scale, bias, sh)
        y = acc * scale + bias
        assert np.abs(y).max() >= 2 ** (p_bits - 2)  # the test reaches the top of the range
        check_plan(plan, acc, scale, bias, sh, t, np.float32)


def test_float32_beyond_its_bound_would_be_wrong():
    """The 2**24 bound is not decorative: running the same plan in float32 above it rounds."""
    t = FixedType(60, 60, True, "AP_TRN", "AP_SAT")
    acc_width, scale, bias = _bound_case(26, 1, below=True)
    plan = FloatRequant.plan(acc_width, scale, bias, 1, t)
    assert plan.dtype is np.float64
    narrow = dataclasses.replace(plan, dtype=np.float32, scale=plan.scale.astype(np.float32),
                                 offset=plan.offset.astype(np.float32))
    acc = accumulators(np.random.default_rng(5), acc_width, scale, bias, 1)
    want = int_reference(acc, scale, bias, 1, t)
    np.testing.assert_array_equal(plan(acc.astype(np.float32)).astype(np.int64), want)
    assert not np.array_equal(narrow(acc.astype(np.float32)).astype(np.int64), want)


@pytest.mark.parametrize("spec,dtype", [("ap_fixed<24,4>", np.float32), ("ap_ufixed<24,4>", np.float32),
                                        ("ap_fixed<25,4>", np.float64), ("ap_fixed<53,4>", np.float64),
                                        ("ap_ufixed<53,4>", np.float64), ("ap_fixed<54,4>", np.int64)])
def test_carrier_holds_every_mantissa(spec, dtype):
    t = FixedType.parse(spec)
    assert carrier_dtype(t) is dtype
    ends = np.array([t.min_mantissa, t.max_mantissa, t.max_mantissa - 1], dtype=np.int64)
    if dtype is not np.int64:
        np.testing.assert_array_equal(ends.astype(dtype).astype(np.int64), ends)
    # and from_float straight into the carrier equals the int64 conversion
    x = np.array([t.min_value, t.max_value, -1.3, 0.7, 1e9, -1e9, 2.0 ** -30])
    np.testing.assert_array_equal(t.from_float(x, dtype=dtype).astype(np.int64), t.from_float(x))
