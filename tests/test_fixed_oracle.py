"""vecq_hw.fixed against the real thing: g++ builds of hls4ml's ap_types headers.

Every rounding x overflow mode, signed and unsigned, widths 5..64, for conversion from
double and from a raw ap_fixed mantissa (the simulator's requantisation step), with
random values plus ties, extremes and one-LSB-outside values. One compile, one run.
"""

from __future__ import annotations

import numpy as np
import pytest

from vecq_hw.fixed import OVERFLOW_MODES, ROUNDING_MODES, FixedType, add_type, mul_type

from _apt import Oracle, oracle_available

pytestmark = [pytest.mark.skipif(oracle_available() is not None, reason=str(oracle_available())),
              pytest.mark.xdist_group("oracle")]

# (W, I): I beyond W, negative I, W > 32 and the full 64 bits (63 for unsigned)
SHAPES = [(5, 7), (8, 3), (18, -2), (40, 12), (64, 30)]
N_DOUBLE, N_FIXED = 4000, 2200


def _targets(q, o, k):
    """Three signed and two unsigned shapes per mode pair, rotating so that every
    shape meets every mode somewhere; each pair gets a width > 32."""
    signed = [SHAPES[1], SHAPES[3 + k % 2], SHAPES[(0, 2)[k // 2 % 2]]]
    unsigned = [SHAPES[4 - k % 2], SHAPES[(0, 1, 2)[k % 3]]]
    out = [FixedType(w, i, True, q, o) for w, i in signed]
    if o != "AP_WRAP_SM":          # ap_ufixed cannot be AP_WRAP_SM
        out += [FixedType(min(w, 63), i, False, q, o) for w, i in unsigned]
    return out


MODE_CASES = {(q, o): _targets(q, o, k) for k, (q, o) in
              enumerate((q, o) for q in ROUNDING_MODES for o in OVERFLOW_MODES)}
SAT_BITS_CASES = {
    (q, o, n): [FixedType(w, i, s, q, o, n) for w, i, s in
                ((8, 3, True), ((40, 12), (64, 30))[n % 2] + (True,), (18, -2, False))
                if s or o == "AP_WRAP"]
    for q in ("AP_TRN", "AP_RND") for o in ("AP_WRAP", "AP_WRAP_SM") for n in (1, 2, 3)
}
INT_CASES = [FixedType(w, w, s, kind="int") for w in (1, 5, 33, 63) for s in (True, False)]
INT_CASES.append(FixedType(64, 64, True, kind="int"))


def _sources(t: FixedType, k: int) -> list[FixedType]:
    w, f = t.width, t.frac
    srcs = [FixedType(min(64, w + 16), min(64, w + 16) - (f + 8), True)]     # wider both ways
    if k % 2:
        srcs.append(FixedType(min(63, w + 12), min(63, w + 12) - (f + 5), False))  # unsigned
    elif w <= 8:
        # drops 64 bits at once (ap_types asserts beyond the source width)
        srcs.append(FixedType(64, 64 - (f + 64), True))
    elif w >= 40:
        srcs.append(FixedType(8, 8 - (f - 90), True))       # gains >= 64 bits at once
    else:
        srcs.append(FixedType(w + 10, w + 10 - (f - 3), True))  # fewer fractional bits
    return srcs


def _to_int64(values) -> np.ndarray:
    """Python ints of any size -> int64 by two's complement wrap-around."""
    return np.array([v % (1 << 64) for v in values], dtype=np.uint64).view(np.int64)


def _edges(t: FixedType) -> list[int]:
    lo, hi = t.min_mantissa, t.max_mantissa
    return [lo, lo + 1, hi, hi - 1, 0, 1, -1, 2, -2, (lo + hi) // 2]


def double_inputs(t: FixedType, rng) -> np.ndarray:
    res = t.resolution
    lo, hi = t.min_value, t.max_value
    span = hi - lo + res
    xs = [rng.uniform(lo - span, hi + span, N_DOUBLE // 4)]
    k = rng.integers(t.min_mantissa // 2 - 4, t.max_mantissa // 2 + 4, N_DOUBLE // 8) * 2
    xs.append(np.ldexp(k.astype(np.float64) + 0.5, -t.frac))               # ties
    xs.append(np.ldexp(k.astype(np.float64) + 1.5, -t.frac))               # ties, odd LSB
    small = rng.integers(-40, 40, N_DOUBLE // 8)
    xs.append(np.ldexp(small + 0.5, -t.frac))
    edge = np.array(_edges(t), dtype=np.float64)
    for d in (0, 0.5, -0.5, 0.25, -0.25, 0.75, 1, -1, 1.5, -1.5, 2**-30, -2**-30):
        xs.append(np.ldexp(edge + d, -t.frac))
    sign = rng.choice([-1.0, 1.0], N_DOUBLE // 4)
    expo = rng.uniform(-t.frac - 12, t.integer + 12, N_DOUBLE // 4)
    xs.append(sign * np.exp2(expo))                                         # all scales
    raw = rng.integers(0, 2**63, N_DOUBLE // 16, dtype=np.int64).view(np.float64)
    xs.append(raw[np.isfinite(raw)] * rng.choice([-1.0, 1.0], raw.size)[np.isfinite(raw)])
    xs.append(np.array([0.0, -0.0, 5e-324, -5e-324, 1e-300, -1e-300, 1e300, -1e300,
                        2.0**63, -2.0**63, 2.0**64, -2.0**64, 0.5, -0.5, 0.3, -0.3,
                        0.7, -0.7, 1.5, -1.5, 2.5, -2.5, 1e-12, -1e-12]))
    x = np.concatenate(xs)
    return x[np.isfinite(x)]


def fixed_inputs(src: FixedType, t: FixedType, rng) -> np.ndarray:
    if src.width <= 12:
        return np.arange(src.min_mantissa, src.max_mantissa + 1, dtype=np.int64)
    vals = list(rng.integers(src.min_mantissa, src.max_mantissa, N_FIXED // 2, endpoint=True))
    d = src.frac - t.frac
    edges = _edges(t) + [int(v) for v in rng.integers(-2**20, 2**20, 20)]
    if d > 0:
        one, half = 1 << d, 1 << (d - 1)
        for e in edges:
            for off in (0, 1, -1, half, half + 1, half - 1, -half, -half - 1, one - 1, one):
                vals.append(e * one + off)
        for k in rng.integers(-2**30, 2**30, N_FIXED // 4):
            vals.append(int(k) * one + half)                   # ties
        for k in rng.integers(-2**12, 2**12, N_FIXED // 8):
            vals.append(int(k) * one + half)
    else:
        for e in edges:
            vals += [(e >> -d) + j for j in (-1, 0, 1)]
    vals += _edges(src)
    out = src._wrap(_to_int64([int(v) for v in vals]))         # into the source's range
    return out


def _collect():
    rng = np.random.default_rng(20240607)
    oracle, cases = Oracle(), []
    all_targets = [(key, t) for key, ts in MODE_CASES.items() for t in ts]
    all_targets += [(key, t) for key, ts in SAT_BITS_CASES.items() for t in ts]
    all_targets += [("int", t) for t in INT_CASES]
    for k, (key, t) in enumerate(all_targets):
        x = double_inputs(t, rng)
        cases.append((key, t, None, x, oracle.from_double(t, x)))
        for s in _sources(t, k):
            m = fixed_inputs(s, t, rng)
            cases.append((key, t, s, m, oracle.from_fixed(s, t, m)))
    return oracle, cases


ARITH = ["ap_fixed<8,3>", "ap_ufixed<8,3>", "ap_fixed<5,-2>", "ap_ufixed<12,14>",
         "ap_int<7>", "ap_uint<9>", "ap_fixed<16,6,AP_RND,AP_SAT>", "ap_ufixed<4,0>"]
SPELLINGS = [
    "ap_fixed<8,3>", "ap_fixed< 8 , 3 >", "ap_fixed<8,3,AP_RND>", "ap_fixed<8,3,AP_TRN,AP_WRAP>",
    "ap_fixed<8,3,AP_TRN,AP_WRAP,0>", "ap_fixed<8, 3, AP_RND_CONV, AP_SAT>",
    "ap_ufixed<8,0,AP_RND_CONV,AP_SAT>", "ap_ufixed<1,1>", "ap_fixed<64,30,AP_RND_INF,AP_SAT_SYM>",
    "ap_fixed<12,-3,AP_RND_ZERO,AP_SAT_ZERO>", "ap_fixed<7,9,AP_RND_MIN_INF>",
    "ap_fixed<10,4,AP_TRN_ZERO,AP_WRAP_SM,2>", "ap_ufixed<10,4,AP_TRN,AP_WRAP,3>",
    "ap_int<8>", "ap_int< 33 >", "ap_uint<1>", "ap_uint<63>", "ap_int<64>",
    "ap_fixed<8,+3>", "ap_fixed<16,6,AP_TRN,AP_SAT,1>",
]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    oracle, cases = _collect()
    arith_jobs = [oracle.arith(FixedType.parse(a), FixedType.parse(b)) for a in ARITH for b in ARITH]
    for s in SPELLINGS:
        oracle.spelling(s)
    out, printed = oracle.run(tmp_path_factory.mktemp("apt"))
    by_key = {}
    for key, t, s, inp, job in cases:
        by_key.setdefault(key, []).append((t, s, inp, out[job]))
    return by_key, printed, len(arith_jobs)


def _check(items):
    compared = 0
    for t, s, inp, bits in items:
        want = t._wrap(bits.view(np.int64))
        if s is None:
            got = t.from_float(inp)
            what = f"{t} = (double)"
        else:
            got = t.quantize_mantissa(inp, s.frac, src_width=s.width)
            what = f"{t} = {s}"
        bad = np.flatnonzero(got != want)
        if bad.size:
            i = bad[0]
            pytest.fail(f"{what}: {bad.size}/{inp.size} differ, e.g. input {inp[i]!r} "
                        f"-> ours {got[i]}, ap_types {want[i]}")
        compared += inp.size
    return compared


@pytest.mark.parametrize("q,o", list(MODE_CASES), ids=[f"{q}-{o}" for q, o in MODE_CASES])
def test_modes_match_ap_types(results, q, o):
    n = _check(results[0][(q, o)])
    assert n >= 10_000


@pytest.mark.parametrize("key", list(SAT_BITS_CASES), ids=[f"{q}-{o}-N{n}" for q, o, n in SAT_BITS_CASES])
def test_saturation_bits_match_ap_types(results, key):
    assert _check(results[0][key]) >= 10_000


def test_ap_int_targets_match_ap_types(results):
    assert _check(results[0]["int"]) >= 10_000


def _fields(line):
    kind, w, i, s, q, o, n = line.split()
    return FixedType(int(w), int(i), bool(int(s)), q, o, int(n), kind)


def test_result_types_match_ap_types(results):
    printed = results[1]
    k = 0
    for a in ARITH:
        for b in ARITH:
            mul, add = _fields(printed[k]), _fields(printed[k + 1])
            k += 2
            assert mul_type(FixedType.parse(a), FixedType.parse(b)) == mul, (a, b)
            assert add_type(FixedType.parse(a), FixedType.parse(b)) == add, (a, b)


def test_spellings_mean_what_cpp_says(results):
    printed = results[1][2 * results[2]:]
    assert len(printed) == len(SPELLINGS)
    for text, line in zip(SPELLINGS, printed):
        t = FixedType.parse(text)
        assert t == _fields(line), text
        assert FixedType.parse(str(t)) == t


def test_value_count(results):
    """The whole oracle comparison covers a few million values."""
    total = sum(inp.size for items in results[0].values() for _, _, inp, _ in items)
    print(f"\n{total} values compared against ap_types")
    assert total > 1_000_000
