"""vecq_hw.fixed against the real thing: g++ builds of hls4ml's ap_types headers.

Every rounding x overflow mode, signed and unsigned, widths 5..64 and (a second build) 1
and 2, for conversion from double and from a raw ap_fixed mantissa (the simulator's
requantisation step), on every path of ours that can produce it, with random values plus
ties, extremes and one-LSB-outside values. One compile and one run per build (cached).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vecq_hw.errors import FixedTypeError
from vecq_hw.fixed import OVERFLOW_MODES, ROUNDING_MODES, FixedType, add_type, mul_type
from vecq_hw.fixed_torch import MAX_TORCH_WIDTH, quantize_tensor
from vecq_hw.sim.float_requant import FloatRequant

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


def _differ(what, got, want, inp):
    got = np.asarray(got)
    bad = np.flatnonzero(got != want)
    if bad.size:
        i = bad[0]
        pytest.fail(f"{what}: {bad.size}/{inp.size} differ, e.g. input {inp[i]!r} "
                    f"-> ours {got[i]}, ap_types {want[i]}")


def _check(items):
    """Our conversions against ap_types' bits, on every path that can produce the target:
    from_float's exact path and its single-pass fast path (which runs only when the whole array
    is small), the torch paths (float64: the bit-level one; float32: the saturating fast one),
    quantize_mantissa's in-place shift path and general path, and FloatRequant where it plans."""
    compared = 0
    for t, s, inp, bits in items:
        want = t._wrap(bits.view(np.int64))
        if s is None:
            _differ(f"{t} = (double), exact path", t.from_float(inp), want, inp)
            small = np.abs(inp) < 2.0 ** (50 - t.frac)              # from_float's fast path
            assert small.sum() > 100
            _differ(f"{t} = (double), fast path", t.from_float(inp[small]), want[small], inp[small])
            if t.width > MAX_TORCH_WIDTH:
                compared += inp.size
                continue
            got = quantize_tensor(torch.from_numpy(inp), t).numpy()
            _differ(f"{t} = (double), torch float64", got, t.to_float(want), inp)
            with np.errstate(over="ignore"):                     # |x| > float32's max: inf
                narrow = inp.astype(np.float32).astype(np.float64) == inp
            x32 = inp[narrow].astype(np.float32)
            got = quantize_tensor(torch.from_numpy(x32), t).numpy()   # torch's float32 path
            _differ(f"{t} = (float), torch float32", got,
                    t.to_float(want[narrow]).astype(np.float32), inp[narrow])
        else:
            sh = s.frac - t.frac
            what = f"{t} = {s}"
            _differ(what, t.quantize_mantissa(inp, s.frac, src_width=s.width), want, inp)
            if t.kind == "fixed":
                _differ(f"{what}, general path", t._convert(inp, np.int64(sh)), want, inp)
            buf = inp.copy()
            _differ(f"{what}, in place", t.quantize_mantissa(buf, s.frac, s.width, out=buf),
                    want, inp)
            one, zero = np.ones(1, np.int64), np.zeros(1, np.int64)   # acc * 1 + 0
            plan = FloatRequant.plan(s.width + 1, one, zero, sh, t)   # + 1: unsigned sources
            if plan is not None:
                got = plan(inp.reshape(-1, 1).astype(np.float64)).reshape(-1).astype(np.int64)
                _differ(f"{what}, FloatRequant", got, want, inp)
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


# -- W = 1 and W = 2: every rounding x overflow mode, signed and unsigned, every N -----------
# A separate oracle build (cached on its own): widths this small hit the edge cases of the
# saturation logic (ap_types' AP_SAT_SYM ORs the LSB into the minimum, so W = 1 saturates
# negatives to -1, not to -max = 0). Each target is checked on every path that can produce
# it: from_float's single-pass fast path and its exact path, quantize_mantissa's in-place
# shift path and its general path, both torch paths, and FloatRequant where it plans.

SMALL_I = (0, 1, 2, -1, 3, -3, 5)      # rotated over the targets: I inside, above, below W


def _small_targets() -> list[FixedType]:
    out, k = [], 0
    for q in ROUNDING_MODES:
        for o in OVERFLOW_MODES:
            for s in (True, False):
                if o == "AP_WRAP_SM" and not s:
                    continue
                for w in (1, 2):
                    for n in (range(w + 1) if o in ("AP_WRAP", "AP_WRAP_SM") else (0,)):
                        out.append(FixedType(w, SMALL_I[k % len(SMALL_I)], s, q, o, n))
                        k += 1
    issue = FixedType(1, 1, True, "AP_TRN", "AP_SAT_SYM")     # the issue's example
    return out + ([issue] if issue not in out else [])


SMALL_TARGETS = _small_targets()
SMALL_ARITH = ["ap_fixed<1,1>", "ap_ufixed<1,0>", "ap_fixed<2,-3>", "ap_ufixed<2,5>", "ap_int<1>",
               "ap_uint<1>", "ap_int<2>", "ap_fixed<8,3>"]
# spellings we accept at the edges of the grammar: C++ must read them as we do
EDGE_SPELLINGS = ["ap_fixed<8,-0>", "ap_fixed<+8,+0>", "ap_fixed<8,0>", "\tap_fixed\t<\t8\t,\t3\t>\t",
                  "ap_fixed<8,3,AP_TRN,AP_WRAP,+0>", "ap_fixed<1,1,AP_RND,AP_SAT_SYM,1>",
                  "ap_ufixed<2,-5,AP_RND_CONV,AP_WRAP,2>", "ap_uint<+1>"]
# spellings C++ reads as another number than the digits say: we refuse them
OTHER_READINGS = ["ap_fixed<012,5>", "ap_fixed<8,-010>", "ap_int<010>", "ap_fixed<0x10,5>",
                  "ap_fixed<8,0b11>"]


def _small_sources(t: FixedType, k: int) -> list[FixedType]:
    """All-values sources (<= 12 bits): a right shift with rounding and overflow, plus one
    of (rotating with the target's index k, to keep the build small) an unsigned source, a
    left shift, and the issue's ap_fixed<5,3> (its shift depends on t's I), which every
    AP_SAT_SYM target also gets."""
    f = t.frac
    other = [FixedType(7, 7 - (f + 2), False),      # unsigned, 2 more fractional bits
             FixedType(6, 6 - (f - 2), True),       # 2 fewer fractional bits (left shift)
             FixedType(5, 3, True)]
    out = [FixedType(8, 8 - (f + 3), True), other[k % 3]]   # 3 more frac bits, 2+ more int
    if t.overflow == "AP_SAT_SYM" and k % 3 != 2:
        out.append(other[2])
    return out


@pytest.fixture(scope="module")
def small_results(tmp_path_factory):
    rng = np.random.default_rng(20261202)
    oracle, cases = Oracle(), []
    for k, t in enumerate(SMALL_TARGETS):
        x = double_inputs(t, rng)
        cases.append((t, None, x, oracle.from_double(t, x)))
        for s in _small_sources(t, k):
            if s.frac - t.frac > s.width:      # ap_types asserts (reads a bit beyond the MSB)
                continue
            m = fixed_inputs(s, t, rng)
            cases.append((t, s, m, oracle.from_fixed(s, t, m)))
    for a in SMALL_ARITH:
        for b in SMALL_ARITH:
            oracle.arith(FixedType.parse(a), FixedType.parse(b))
    for text in EDGE_SPELLINGS + OTHER_READINGS:
        oracle.spelling(text)
    out, printed = oracle.run(tmp_path_factory.mktemp("apt_small"))
    by_target = {}
    for t, s, inp, job in cases:
        by_target.setdefault(t, []).append((t, s, inp, out[job]))
    return by_target, printed


@pytest.mark.parametrize("t", SMALL_TARGETS, ids=str)
def test_widths_1_and_2_match_ap_types(small_results, t):
    assert _check(small_results[0][t]) >= 3500


def test_small_result_types_match_ap_types(small_results):
    printed = small_results[1]
    k = 0
    for a in SMALL_ARITH:
        for b in SMALL_ARITH:
            mul, add = _fields(printed[k]), _fields(printed[k + 1])
            k += 2
            assert mul_type(FixedType.parse(a), FixedType.parse(b)) == mul, (a, b)
            assert add_type(FixedType.parse(a), FixedType.parse(b)) == add, (a, b)


def test_edge_spellings_mean_what_cpp_says_or_are_refused(small_results):
    printed = small_results[1][2 * len(SMALL_ARITH) ** 2:]
    assert len(printed) == len(EDGE_SPELLINGS) + len(OTHER_READINGS)
    for text, line in zip(EDGE_SPELLINGS, printed):
        assert FixedType.parse(text) == _fields(line), text
    for text, line in zip(OTHER_READINGS, printed[len(EDGE_SPELLINGS):]):
        cpp_reads = _fields(line)
        digits = text.split("<")[1].rstrip(">").split(",")
        assert [cpp_reads.width, cpp_reads.integer][:len(digits)] != \
            [int("".join(c for c in d if c in "+-0123456789")) for d in digits], text
        with pytest.raises(FixedTypeError):
            FixedType.parse(text)


def test_sat_sym_width_1_saturates_negatives_to_minus_one(small_results):
    """The issue's example, straight from the oracle: ap_fixed<5,3> mantissa -8 (value -1)."""
    t = FixedType(1, 1, True, "AP_TRN", "AP_SAT_SYM")
    src = FixedType(5, 3, True)
    (inp, bits), = [(inp, bits) for _, s, inp, bits in small_results[0][t] if s == src]
    assert t._wrap(bits.view(np.int64))[list(inp).index(-8)] == -1   # ap_types says so
    assert t.quantize_mantissa(np.array([-8]), src.frac)[0] == -1
    assert t.from_float(np.array([-1.0, -7.5]))[0] == -1
