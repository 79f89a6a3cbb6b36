"""vecq_hw.fixed and vecq_hw.fixed_torch without g++: spelling, ranges, a big-integer
reference for long shifts, and torch == numpy for every mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vecq_hw.errors import FixedTypeError
from vecq_hw.fixed import OVERFLOW_MODES, ROUNDING_MODES, FixedType, add_type, mul_type
from vecq_hw.fixed_torch import FixedQuantizeSTE, fixed_quantize, quantize_tensor

P = FixedType.parse


# -- spelling ----------------------------------------------------------------------------

@pytest.mark.parametrize("text,canonical", [
    ("ap_fixed<8,3>", "ap_fixed<8,3>"),
    ("  ap_fixed < 8 , 3 >  ", "ap_fixed<8,3>"),
    ("ap_fixed<8,3,AP_TRN,AP_WRAP,0>", "ap_fixed<8,3>"),
    ("ap_fixed<8,3,AP_RND>", "ap_fixed<8,3,AP_RND>"),
    ("ap_fixed<8,3,AP_TRN,AP_SAT>", "ap_fixed<8,3,AP_TRN,AP_SAT>"),
    ("ap_ufixed<8,0,AP_RND_CONV,AP_SAT>", "ap_ufixed<8,0,AP_RND_CONV,AP_SAT>"),
    ("ap_fixed<16,6,AP_RND,AP_WRAP,2>", "ap_fixed<16,6,AP_RND,AP_WRAP,2>"),
    ("ap_fixed<12,-3,AP_RND_ZERO,AP_SAT_ZERO>", "ap_fixed<12,-3,AP_RND_ZERO,AP_SAT_ZERO>"),
    ("ap_fixed<5,+7>", "ap_fixed<5,7>"),
    ("ap_fixed<64,30,AP_RND_INF,AP_SAT_SYM>", "ap_fixed<64,30,AP_RND_INF,AP_SAT_SYM>"),
    ("ap_int<8>", "ap_int<8>"),
    ("ap_uint< 1 >", "ap_uint<1>"),
    ("ap_int<64>", "ap_int<64>"),
    ("ap_ufixed<63,63>", "ap_ufixed<63,63>"),
    ("ap_fixed<8,0>", "ap_fixed<8,0>"), ("ap_fixed<8,-0>", "ap_fixed<8,0>"),
    ("ap_fixed<+8,+0>", "ap_fixed<8,0>"), ("\tap_fixed<8,\t3>\n", "ap_fixed<8,3>"),
    ("ap_fixed<8,3,AP_TRN,AP_WRAP,+0>", "ap_fixed<8,3>"),
])
def test_parse_print_round_trip(text, canonical):
    t = P(text)
    assert str(t) == canonical
    assert P(str(t)) == t
    assert P(t) is t


def test_fields():
    t = P("ap_ufixed<10,4,AP_RND_MIN_INF,AP_WRAP,3>")
    assert (t.width, t.integer, t.signed, t.rounding, t.overflow, t.sat_bits, t.kind, t.frac) == \
        (10, 4, False, "AP_RND_MIN_INF", "AP_WRAP", 3, "fixed", 6)
    i = P("ap_uint<9>")
    assert (i.width, i.integer, i.signed, i.kind, i.frac) == (9, 9, False, "int", 0)


@pytest.mark.parametrize("text", [
    "", "ap_fixed", "ap_fixed<>", "ap_fixed<8>", "ap_fixed<8,3", "ap_fixed 8,3>",
    "ap_fixed<8,3,AP_RND,AP_SAT,0,1>", "ap_fixed<8,3,AP_ROUND>", "ap_fixed<8,3,AP_RND,AP_SATURATE>",
    "ap_fixed<8,3,ap_rnd>", "ap_fixed<0,0>", "ap_fixed<65,3>", "ap_fixed<-8,3>", "ap_fixed<8.5,3>",
    "ap_fixed<8,x>", "ap_int<8,3>", "ap_int<0>", "ap_uint<64>", "ap_ufixed<64,10>",
    "ap_ufixed<8,3,AP_TRN,AP_WRAP_SM>", "ap_fixed<8,3,AP_TRN,AP_WRAP,9>", "ap_fixed<8,3,AP_TRN,AP_WRAP,-1>",
    "ap_fixed<8,3,,AP_SAT>", "fixed<8,3>", "ap_fixed<8,3>x", "ap_fixed<8,10000>", "std::ap_fixed<8,3>",
    # spellings C++ reads differently (octal, other literals) or not at all (non-ASCII)
    "ap_fixed<１２,5>", "ap_fixed<8,３>", "ap_fixed<8,\u0663>", "ap_fixed<012,5>", "ap_fixed<8,03>",
    "ap_fixed<8,-03>", "ap_int<010>", "ap_fixed<8,3,AP_TRN,AP_WRAP,01>", "ap_fixed<8,00>",
    "ap_fixed<0x10,5>", "ap_fixed<8,0b11>", "ap_fixed<1'6,5>", "ap_fixed<16u,5>", "ap_fixed<8,3.0>",
    "ap_fixed<8,1e1>", "ap_fixed<1 6,5>", "ap_fixed<8,- 3>", "ap_fixed<8,+-3>", "ap_fixed<8,(3)>",
    "ap_fixed<8,\u22123>", "ap_fixed<8,\u00a03>", "ap_fixed<8,3\u3000>", "\u00a0ap_fixed<8,3>",
    "ap_fixed<8,3>\u2028", "ap_fixed<8,3,AP_Rnd>", "ap_fixed<8,3,SC_RND>", "ap_fixed<8,3,AP_SAT>",
    "ap_fixed<8,3,AP_RND,AP_SAT,>", "ap_fixed<8,3>>", "ap_fixed<8,3,AP_RND\u00a0>", "AP_FIXED<8,3>",
    "ap_fixed<8,\n3>", "ap_fixed<1_2,5>", "ap_fixed<1024,10>", "ap_fixed<8,513>", "ap_fixed<8,-600>",
])
def test_malformed_rejected(text):
    with pytest.raises(FixedTypeError) as info:
        P(text)
    msg = str(info.value)
    assert repr(text) in msg and "\n" not in msg


def test_not_a_string_rejected():
    with pytest.raises(FixedTypeError):
        P(8)


@pytest.mark.parametrize("fields", [(True, 1), (8, True), (8, 3, True, "AP_TRN", "AP_WRAP", False),
                                    (8.0, 3), (8, 3.0)])
def test_bool_and_float_fields_rejected(fields):
    """FixedType(True, 1) would print ap_fixed<True,1>, which C++ does not read."""
    with pytest.raises(FixedTypeError):
        FixedType(*fields)


def test_leading_zero_message_says_why():
    with pytest.raises(FixedTypeError, match="width W must be a decimal integer.*octal.*'012'"):
        P("ap_fixed<012,5>")


# -- ranges, derived by hand from the ap_types definitions --------------------------------

@pytest.mark.parametrize("text,lo,hi,res,mlo,mhi", [
    ("ap_fixed<8,3>", -4.0, 4 - 1 / 32, 1 / 32, -128, 127),
    ("ap_ufixed<8,3>", 0.0, 8 - 1 / 32, 1 / 32, 0, 255),
    ("ap_fixed<5,7>", -64.0, 60.0, 4.0, -16, 15),              # I > W: LSB is 4
    ("ap_fixed<18,-2>", -0.125, 0.125 - 2.0**-20, 2.0**-20, -2**17, 2**17 - 1),
    ("ap_ufixed<8,0>", 0.0, 255 / 256, 1 / 256, 0, 255),
    ("ap_fixed<1,1>", -1.0, 0.0, 1.0, -1, 0),
    ("ap_int<8>", -128.0, 127.0, 1.0, -128, 127),
    ("ap_uint<8>", 0.0, 255.0, 1.0, 0, 255),
    ("ap_fixed<64,30>", -2.0**29, 2.0**29, 2.0**-34, -2**63, 2**63 - 1),  # max rounds in float
])
def test_ranges(text, lo, hi, res, mlo, mhi):
    t = P(text)
    assert (t.min_value, t.max_value, t.resolution) == (lo, hi, res)
    assert (t.min_mantissa, t.max_mantissa) == (mlo, mhi)


def test_hand_examples():
    t = P("ap_fixed<8,3,AP_RND_CONV,AP_SAT>")                 # LSB 1/32
    x = np.array([0.5 / 32, 1.5 / 32, -0.5 / 32, -1.5 / 32, 100.0, -100.0, 4 - 1 / 64])
    np.testing.assert_array_equal(t.from_float(x), [0, 2, 0, -2, 127, -128, 127])
    sym = P("ap_fixed<8,3,AP_TRN,AP_SAT_SYM>")
    np.testing.assert_array_equal(sym.from_float([-4.0, -100.0, 100.0]), [-127, -127, 127])
    wrap = P("ap_fixed<4,4>")
    np.testing.assert_array_equal(wrap.from_float([8.0, 9.5, -9.0, 17.0]), [-8, -7, 7, 1])
    i8 = P("ap_int<8>")                                       # C truncation, plus the quirk
    np.testing.assert_array_equal(i8.from_float([2.7, -2.7, -0.7, -0.3, 0.3, 300.0]),
                                  [2, -2, 0, 1, 0, 44])
    np.testing.assert_array_equal(i8.quantize_mantissa([-16, 16, -3], 4), [-1, 1, 0])
    np.testing.assert_array_equal(i8.quantize_mantissa([-16, -1], 8, src_width=8), [-1, -1])
    # AP_SAT_SYM at W = 1 (max 0): ap_types sets the minimum, then ORs in the LSB (the same
    # bit), so negatives saturate to -1, not to -max = 0; at W = 2 -max = -1 as usual
    sym1 = P("ap_fixed<1,1,AP_TRN,AP_SAT_SYM>")
    np.testing.assert_array_equal(sym1.from_float([-1.0, -7.5, -0.5, 0.5, 3.0]), [-1, -1, -1, 0, 0])
    np.testing.assert_array_equal(sym1.from_float([-1e300, 1e300]), [-1, 0])   # exact path
    np.testing.assert_array_equal(sym1.quantize_mantissa([-8, -5, 3], 2), [-1, -1, 0])
    np.testing.assert_array_equal(sym1.quantize_mantissa([-8], 2, src_width=5), [-1])
    np.testing.assert_array_equal(sym1.quantize_mantissa([-1], -70), [-1])     # general path
    assert sym1.overflow_range() == (-1, 0)
    sym2 = P("ap_fixed<2,2,AP_RND,AP_SAT_SYM>")
    np.testing.assert_array_equal(sym2.from_float([-2.0, -9.0, -1.5, 1.5]), [-1, -1, -1, 1])
    assert P("ap_ufixed<1,1,AP_TRN,AP_SAT_SYM>").overflow_range() == (0, 1)
    with pytest.raises(FixedTypeError):
        t.from_float([1.0, np.nan])
    with pytest.raises(FixedTypeError):
        t.from_float(np.inf)


# -- a big-integer reference for the value semantics (shifts the oracle cannot do) ---------

def _ref(t: FixedType, m: int, sh: int) -> int:
    """Rounding then overflow on Python ints: value m * 2**-sh in units of t's LSB."""
    if sh <= 0:
        r = m << -sh
    else:
        fl, rem = m >> sh, m & ((1 << sh) - 1)
        half = 1 << (sh - 1)
        qb, st, neg = rem >= half, rem not in (0, half), m < 0
        inc = {"AP_TRN": False, "AP_RND": qb, "AP_RND_ZERO": qb and (neg or st),
               "AP_RND_MIN_INF": qb and st, "AP_RND_INF": qb and (not neg or st),
               "AP_RND_CONV": qb and (fl & 1 or st), "AP_TRN_ZERO": neg and rem != 0}[t.rounding]
        r = fl + bool(inc)
    lo, hi = t.min_mantissa, t.max_mantissa
    if t.overflow == "AP_SAT" or (t.overflow == "AP_SAT_SYM" and not t.signed):
        return min(max(r, lo), hi)
    if t.overflow == "AP_SAT_SYM":   # -max, but W = 1 gives -1: ap_types ORs the LSB into min
        return min(max(r, -max(hi, 1)), hi)
    if t.overflow == "AP_SAT_ZERO":
        return r if lo <= r <= hi else 0
    v = r % (1 << t.width)
    return v - (1 << t.width) if t.signed and v > hi else v


@pytest.mark.parametrize("q", ROUNDING_MODES)
@pytest.mark.parametrize("o", ["AP_WRAP", "AP_SAT", "AP_SAT_ZERO", "AP_SAT_SYM"])
def test_long_shifts_against_big_int_reference(q, o):
    rng = np.random.default_rng(1)
    for w, i, s in ((8, 3, True), (64, 20, True), (33, 40, False), (12, -70, True),
                    (1, 1, True), (2, -3, True), (1, 0, False)):
        t = FixedType(w, i, s, q, o)
        for frac in (-80, -64, -63, -1, 0, 1, 5, 63, 64, 65, 100, 126):
            m = np.concatenate([rng.integers(-2**63, 2**63 - 1, 150, endpoint=True),
                                rng.integers(-2**12, 2**12, 100),
                                [0, 1, -1, 2**62, -2**63, 2**63 - 1]]).astype(np.int64)
            want = [_ref(t, int(v), frac - t.frac) for v in m]
            np.testing.assert_array_equal(t.quantize_mantissa(m, frac), want, err_msg=f"{t} frac={frac}")


def test_quantize_and_scalar_shapes():
    t = P("ap_fixed<6,2,AP_RND,AP_SAT>")
    assert t.quantize(0.3) == 0.3125 and t.from_float(0.3).shape == ()
    assert t.quantize_mantissa(np.int64(5), 3).shape == ()
    np.testing.assert_array_equal(t.quantize(np.zeros((2, 3))), np.zeros((2, 3)))


def test_result_types():
    assert mul_type(P("ap_fixed<8,3>"), P("ap_ufixed<6,1>")) == P("ap_fixed<14,4>")
    assert add_type(P("ap_fixed<8,3>"), P("ap_ufixed<6,1>")) == P("ap_fixed<9,4>")
    assert add_type(P("ap_ufixed<8,3>"), P("ap_ufixed<6,1>")) == P("ap_ufixed<9,4>")
    assert add_type(P("ap_fixed<8,3>"), P("ap_ufixed<8,3>")) == P("ap_fixed<10,5>")
    assert mul_type(P("ap_int<4>"), P("ap_uint<4>")) == P("ap_int<8>")
    assert add_type(P("ap_int<4>"), P("ap_uint<4>")) == P("ap_int<6>")
    assert add_type(P("ap_int<4>"), P("ap_fixed<6,2>")) == P("ap_fixed<9,5>")
    with pytest.raises(FixedTypeError):
        mul_type(P("ap_fixed<40,3>"), P("ap_fixed<40,3>"))


# -- torch ----------------------------------------------------------------------------

def _torch_types():
    out = [FixedType(w, i, s, q, o) for q in ROUNDING_MODES for o in OVERFLOW_MODES
           for w, i, s in ((8, 3, True), (5, 7, False), (24, 4, True), (12, -3, True))
           if s or o != "AP_WRAP_SM"]
    out += [FixedType(8, 3, s, q, o, n) for q in ("AP_TRN", "AP_RND_CONV")
            for o in ("AP_WRAP", "AP_WRAP_SM") for n in (1, 2, 3, 8) for s in (True, False)
            if s or o == "AP_WRAP"]
    out += [FixedType(w, w, s, kind="int") for w in (1, 8, 24) for s in (True, False)]
    return out


def _torch_inputs(t: FixedType, rng) -> np.ndarray:
    span = t.max_value - t.min_value
    k = rng.integers(t.min_mantissa - 8, t.max_mantissa + 8, 400)
    return np.concatenate([
        rng.uniform(t.min_value - 2 * span, t.max_value + 2 * span, 1500),
        np.ldexp(k + 0.5, -t.frac), np.ldexp(k.astype(np.float64), -t.frac),
        rng.choice([-1, 1], 300) * np.exp2(rng.uniform(-t.frac - 30, t.integer + 30, 300)),
        [0.0, -0.0, 1e300, -1e300, 5e-324, -5e-324, 0.3, -0.3, -0.5, 2.0**t.integer],
    ])


@pytest.mark.parametrize("t", _torch_types(), ids=str)
def test_torch_equals_numpy(t):
    x = _torch_inputs(t, np.random.default_rng(abs(hash(str(t))) % 2**32))
    got = quantize_tensor(torch.from_numpy(x), t)
    assert got.dtype == torch.float64
    np.testing.assert_array_equal(got.numpy(), t.quantize(x))
    x32 = x[np.abs(x) < 1e38].astype(np.float32)
    got32 = quantize_tensor(torch.from_numpy(x32), t)
    assert got32.dtype == torch.float32
    np.testing.assert_array_equal(got32.numpy(), t.quantize(x32.astype(np.float64)).astype(np.float32))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_torch_sat_sym_width_1(dtype):
    """Both torch paths (bit-level for float64, saturating fast path for narrow floats):
    ap_fixed<1,1,*,AP_SAT_SYM> takes negatives to -1 as ap_types does (see test_hand_examples)."""
    x = torch.tensor([-1.0, -7.5, -0.5, -0.25, 0.5, 3.0], dtype=dtype)
    for q, want in (("AP_TRN", [-1, -1, -1, -1, 0, 0]), ("AP_RND", [-1, -1, 0, 0, 0, 0])):
        got = quantize_tensor(x, FixedType(1, 1, True, q, "AP_SAT_SYM"))
        assert got.dtype == dtype
        assert got.tolist() == want, q


@pytest.mark.parametrize("integer", [10, 140, -120, -150, -480])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_torch_fast_path_at_extreme_scales(integer, dtype):
    """The saturating fast path for narrow floats, where x * 2**frac leaves float32's range
    (frac 128, 158, 488: 2**frac is inf, 0 * inf is NaN) or underflows (frac < 0: a tiny
    negative x must still floor to -1 LSB, not to 0), against numpy's exact conversion."""
    tiny = [1e-45, -1e-45, 1e-40, -1e-40, 2.0**-126, -2.0**-149, 6e-8, -6e-8, 2.0**-24, -2.0**-133]
    big = [3e38, -3e38, 2.0**127, -2.0**100, 65504.0, -65504.0, 1.0, -1.0, 0.0, -0.0, 0.375]
    x = torch.tensor(tiny + big, dtype=torch.float64).to(dtype)
    x = x[torch.isfinite(x)]
    for q in ROUNDING_MODES:
        for o in ("AP_SAT", "AP_SAT_ZERO", "AP_SAT_SYM"):
            for signed in (True, False):
                t = FixedType(8, integer, signed, q, o)
                got = quantize_tensor(x, t)
                want = torch.from_numpy(t.quantize(x.double().numpy())).to(dtype)
                assert not got.isnan().any(), t
                assert torch.equal(got, want), (str(t), x[got != want], got[got != want])


def test_torch_rejects_wide_and_nonfinite():
    with pytest.raises(FixedTypeError, match="24"):
        quantize_tensor(torch.zeros(3), P("ap_fixed<25,3>"))
    with pytest.raises(FixedTypeError):
        quantize_tensor(torch.tensor([0.0, float("nan")]), P("ap_fixed<8,3>"))


def test_ste_gradient():
    t = P("ap_fixed<8,3,AP_RND,AP_SAT>")                    # range [-4, 4 - 1/32]
    x = torch.tensor([-5.0, -4.0, -1.01, 0.0, 2.5, 3.96875, 3.99, 7.0], requires_grad=True)
    y = fixed_quantize(x, t)
    np.testing.assert_array_equal(y.detach().numpy(), t.quantize(x.detach().double().numpy()))
    (y * torch.arange(1.0, 9.0)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 2, 3, 4, 5, 6, 0, 0])
    assert FixedQuantizeSTE.apply(x, t).requires_grad
    assert fixed_quantize(x, "ap_fixed<8,3>").shape == x.shape


# -- quantize_mantissa's in-place shift path equals the general conversion ------------------------

def test_shift_path_equals_general_conversion():
    """``_round_shift`` (right shifts, common overflow modes) against ``_convert`` (the general
    definition, itself checked against g++ in test_fixed_oracle), values up to |y| = 2**62
    where the shift path hands over to the general one; also writing in place via ``out``."""
    rng = np.random.default_rng(31)
    overflows = ("AP_WRAP", "AP_SAT", "AP_SAT_ZERO", "AP_SAT_SYM", "AP_WRAP_SM")
    covered = 0
    for q in ROUNDING_MODES:
        for o in overflows:
            for signed in (True, False):
                if o == "AP_WRAP_SM" and not signed:
                    continue
                for w in (1, 7, 33) + ((64,) if signed else (63,)):
                    for sh in (0, 1, 2, 17, 62, -3):
                        t = FixedType(w, w - 4, signed, q, o)
                        covered += t._shift_path(sh)
                        frac = t.frac + sh
                        top = 1 << 61
                        y = rng.integers(-top, top, size=200, dtype=np.int64) >> rng.integers(0, 62, 200)
                        base = np.int64(1) << np.int64(max(sh, 0))
                        ties = (rng.integers(-50, 50, 100) * base + (base >> 1)).astype(np.int64)
                        edges = np.array([0, 1, -1, top - 1, -top, t.max_mantissa, t.min_mantissa],
                                         dtype=np.int64)
                        edges = np.concatenate([edges, (edges[5:] << np.int64(max(sh, 0))) + 1,
                                                (edges[5:] << np.int64(max(sh, 0))) - 1])
                        y = np.clip(np.concatenate([y, ties, edges]), -top, top - 1)
                        want = t._convert(y, np.int64(sh))
                        np.testing.assert_array_equal(t.quantize_mantissa(y, frac), want,
                                                      err_msg=f"{t} from frac {frac}")
                        buf = y.copy()
                        assert t.quantize_mantissa(buf, frac, out=buf) is buf
                        np.testing.assert_array_equal(buf, want)
                        big = np.array([(1 << 62) - 1, -(1 << 62) + 1, 1 << 62, -(1 << 62),
                                        (1 << 63) - 1, -(1 << 63)], dtype=np.int64)
                        np.testing.assert_array_equal(t.quantize_mantissa(big, frac),
                                                      t._convert(big, np.int64(sh)))
    assert covered > 100  # the shift path really ran
