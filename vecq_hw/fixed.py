"""Xilinx ap_types fixed-point formats, converted exactly in numpy.

A value of a type ``T`` is held as its integer mantissa ``m`` (numpy int64):
value = m * 2**-T.frac.  Mantissas live in int64, so signed types go up to 64 bits
and unsigned ones up to 63.

The conversions reproduce the ap_types headers shipped with hls4ml (the tests
compare them with g++ builds of those headers), including two of their quirks:

* ``ap_int<W>``/``ap_uint<W>`` from a double truncate toward zero, except that a
  double in (-0.5, 0) becomes +1 (the header's tiny-magnitude branch returns -1 and
  then negates it);
* ``ap_int`` from a signed ``ap_fixed`` with no integer bits (I <= 0) holding a
  negative value gives -1 instead of 0 (see ``quantize_mantissa(src_width=...)``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .errors import FixedTypeError

ROUNDING_MODES = ("AP_TRN", "AP_RND", "AP_RND_ZERO", "AP_RND_MIN_INF", "AP_RND_INF",
                  "AP_RND_CONV", "AP_TRN_ZERO")
OVERFLOW_MODES = ("AP_WRAP", "AP_SAT", "AP_SAT_ZERO", "AP_SAT_SYM", "AP_WRAP_SM")
MAX_WIDTH = 64          # int64 mantissas
INTEGER_BOUND = 512     # sanity bound on I; keeps frac far from double's denormals

_U64 = np.uint64
#: quantize_mantissa's in-place shift path needs |m| below this (m + offset stays in int64)
_FAST_LIMIT = 1 << 62
# re.ASCII: \s and \d are what C++ reads as whitespace and digits (not NBSP, not '１２')
_SPELLING = re.compile(r"\s*(ap_fixed|ap_ufixed|ap_int|ap_uint)\s*<(.*)>\s*", re.ASCII)
_WHITESPACE = " \t\n\r\f\v"
# decimal without leading zeros: C++ reads 012 as octal 10 (and 0x10, 0b1, 1'0 otherwise too)
_INT = re.compile(r"[+-]?(0|[1-9][0-9]*)", re.ASCII)
_EXPECTED = ("expected ap_fixed<W,I[,Q[,O[,N]]]>, ap_ufixed<W,I[,Q[,O[,N]]]>, "
             "ap_int<W> or ap_uint<W>")


def _is_int(v) -> bool:
    """A plain int: not a bool (printed 'True', which C++ does not read as 1), not a float."""
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class FixedType:
    width: int
    integer: int
    signed: bool = True
    rounding: str = "AP_TRN"
    overflow: str = "AP_WRAP"
    sat_bits: int = 0
    kind: str = "fixed"

    def __post_init__(self):
        name = self._name()
        if self.kind not in ("fixed", "int"):
            raise FixedTypeError(f"{name}: kind must be 'fixed' or 'int', got {self.kind!r}")
        if not _is_int(self.width) or not 1 <= self.width <= MAX_WIDTH:
            raise FixedTypeError(f"{name}: width must be an integer in 1..{MAX_WIDTH} "
                                 f"(mantissas are held in int64), got {self.width!r}")
        if not self.signed and self.width > MAX_WIDTH - 1:
            raise FixedTypeError(f"{name}: unsigned width must be at most {MAX_WIDTH - 1} "
                                 "(mantissas are held in int64)")
        if not _is_int(self.integer) or abs(self.integer) > INTEGER_BOUND:
            raise FixedTypeError(f"{name}: integer bits must be an integer in "
                                 f"-{INTEGER_BOUND}..{INTEGER_BOUND}, got {self.integer!r}")
        if self.rounding not in ROUNDING_MODES:
            raise FixedTypeError(f"{name}: unknown rounding mode {self.rounding!r} "
                                 f"(expected one of {', '.join(ROUNDING_MODES)})")
        if self.overflow not in OVERFLOW_MODES:
            raise FixedTypeError(f"{name}: unknown overflow mode {self.overflow!r} "
                                 f"(expected one of {', '.join(OVERFLOW_MODES)})")
        if not _is_int(self.sat_bits) or not 0 <= self.sat_bits <= self.width:
            raise FixedTypeError(f"{name}: saturation bits N must be in 0..W={self.width}, "
                                 f"got {self.sat_bits!r}")
        if self.kind == "int" and (self.integer != self.width or self.rounding != "AP_TRN"
                                   or self.overflow != "AP_WRAP" or self.sat_bits):
            raise FixedTypeError(f"{name}: ap_int/ap_uint have I == W and no modes")
        if not self.signed and self.overflow == "AP_WRAP_SM":
            # the header itself exits: "ap_ufxied<...> cannot support AP_WRAP_SM"
            raise FixedTypeError(f"{name}: AP_WRAP_SM needs a signed type (ap_fixed)")

    # -- spelling -------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str) -> "FixedType":
        if isinstance(text, FixedType):
            return text
        if not isinstance(text, str):
            raise FixedTypeError(f"bad fixed-point type {text!r}: {_EXPECTED}")
        match = _SPELLING.fullmatch(text)
        if not match:
            raise FixedTypeError(f"bad fixed-point type {text!r}: {_EXPECTED}")
        base, args = match.group(1), [a.strip(_WHITESPACE) for a in match.group(2).split(",")]
        is_int = base in ("ap_int", "ap_uint")
        nmax = 1 if is_int else 5
        if not (1 if is_int else 2) <= len(args) <= nmax:
            raise FixedTypeError(f"bad fixed-point type {text!r}: {base} takes "
                                 + ("exactly one parameter <W>" if is_int
                                    else "2 to 5 parameters <W,I[,Q[,O[,N]]]>"))
        for pos in (0, 1, 4):
            if pos < len(args) and not _INT.fullmatch(args[pos]):
                what = ("width W", "integer bits I", "", "", "saturation bits N")[pos]
                raise FixedTypeError(f"bad fixed-point type {text!r}: {what} must be a "
                                     "decimal integer in ASCII digits without leading zeros "
                                     f"(C++ reads 012 as octal 10), got {args[pos]!r}")
        width = int(args[0])
        kw = dict(width=width, integer=width if is_int else int(args[1]),
                  signed=base in ("ap_fixed", "ap_int"), kind="int" if is_int else "fixed")
        if len(args) > 2:
            kw["rounding"] = args[2]
        if len(args) > 3:
            kw["overflow"] = args[3]
        if len(args) > 4:
            kw["sat_bits"] = int(args[4])
        try:
            return cls(**kw)
        except FixedTypeError as exc:
            raise FixedTypeError(f"bad fixed-point type {text!r}: {exc.detail}") from None

    def _name(self) -> str:
        try:
            return str(self)
        except Exception:  # noqa: BLE001 - only used while reporting a bad type
            return repr((self.width, self.integer, self.signed))

    def __str__(self) -> str:
        u = "" if self.signed else "u"
        if self.kind == "int":
            return f"ap_{u}int<{self.width}>"
        params = [str(self.width), str(self.integer), self.rounding, self.overflow,
                  str(self.sat_bits)]
        defaults = [None, None, "AP_TRN", "AP_WRAP", "0"]
        while len(params) > 2 and params[-1] == defaults[len(params) - 1]:
            params.pop()
        return f"ap_{u}fixed<{','.join(params)}>"

    # -- range ----------------------------------------------------------------------------
    @property
    def frac(self) -> int:
        return self.width - self.integer

    @property
    def min_mantissa(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max_mantissa(self) -> int:
        return (1 << (self.width - self.signed)) - 1

    @property
    def min_value(self) -> float:
        return float(self.to_float(np.int64(self.min_mantissa)))

    @property
    def max_value(self) -> float:
        return float(self.to_float(np.int64(self.max_mantissa)))

    @property
    def resolution(self) -> float:
        return float(np.ldexp(1.0, -self.frac))

    # -- conversions ----------------------------------------------------------------------
    def to_float(self, m) -> np.ndarray:
        """Mantissas -> float64 values (exact while |m| < 2**53)."""
        return np.ldexp(np.asarray(m, dtype=np.int64).astype(np.float64), -self.frac)

    def quantize(self, x) -> np.ndarray:
        return self.to_float(self.from_float(x))

    def from_float(self, x, dtype=np.int64) -> np.ndarray:
        """float64 -> mantissas, as ap_types' constructor from double does it.

        ``dtype``: int64, or a float dtype whose significand holds every mantissa of this
        type (the simulator's float carriers; see ``sim.float_requant``)."""
        x = np.asarray(x, dtype=np.float64)
        if self.kind == "fixed" and self.overflow != "AP_WRAP_SM" and 0 <= self.frac <= 1000:
            with np.errstate(over="ignore", invalid="ignore"):  # huge |x| -> inf -> exact path
                # exact: power-of-two scaling up; out= keeps 0-d inputs arrays (scratch below)
                t = np.multiply(x, 2.0 ** self.frac, out=np.empty_like(x))
            # NaN fails the comparisons too, and is refused below
            if t.size == 0 or (float(t.max()) < 2.0 ** 52 and float(t.min()) > -2.0 ** 52):
                return self._round_scaled(t, dtype)
        if not np.all(np.isfinite(x)):
            raise FixedTypeError(f"{self}: cannot convert NaN or infinity to fixed point")
        f, e = np.frexp(x)                                 # x = f * 2**e, |f| in [0.5, 1)
        man = np.ldexp(f, 53).astype(np.int64)             # exact: 53-bit integer
        src_frac = 53 - e.astype(np.int64)
        if self.kind == "int":
            out = self._to_int(man, src_frac - self.frac)
            # header quirk: a double in (-0.5, 0) converts to the integer +1
            out = np.where((x < 0) & (x > -0.5), self._wrap(np.ones_like(out)), out)
            return out.astype(dtype, copy=False)
        return self._convert(man, src_frac - self.frac).astype(dtype, copy=False)

    def _round_scaled(self, t: np.ndarray, dtype=np.int64) -> np.ndarray:
        """The common case of from_float, in a few float64 passes: t = x * 2**frac, |t| < 2**52.
        ``t`` is scratch (overwritten).

        floor(t) and fl + 1/2 are exact there, so comparing t with them gives the exact
        rounding decisions (no remainder t - fl, which can round for tiny negative t); the
        overflow step then runs on the rounded integers, as it does after any rounding.
        """
        q, o = self.rounding, self.overflow
        if q in ("AP_TRN", "AP_RND", "AP_RND_CONV") and (
                o in ("AP_SAT", "AP_SAT_SYM") or (o == "AP_WRAP" and self.sat_bits == 0)):
            # the hot path of the simulator's input conversion, in place on the scratch t:
            # t + 1/2 is exact below 2**52, and np.rint rounds ties to even (AP_RND_CONV)
            if q == "AP_RND":
                t += 0.5
            (np.rint if q == "AP_RND_CONV" else np.floor)(t, out=t)
            if o == "AP_WRAP":
                return self._wrap(t.astype(np.int64)).astype(dtype, copy=False)
            lo, hi = self.overflow_range()
            return np.clip(t, lo, hi, out=t).astype(dtype, copy=False)
        fl = np.floor(t)
        half = fl + 0.5
        if q == "AP_TRN":
            inc = np.zeros(t.shape, dtype=bool)
        elif q == "AP_RND":
            inc = t >= half
        elif q == "AP_RND_ZERO":
            inc = (t > half) | ((t == half) & (t < 0))
        elif q == "AP_RND_MIN_INF":
            inc = t > half
        elif q == "AP_RND_INF":
            inc = (t > half) | ((t == half) & (t > 0))
        elif q == "AP_RND_CONV":
            inc = (t > half) | ((t == half) & (np.fmod(fl, 2.0) != 0))
        else:  # AP_TRN_ZERO
            inc = (t > fl) & (t < 0)
        return self._convert((fl + inc).astype(np.int64), np.int64(0)).astype(dtype, copy=False)

    def quantize_mantissa(self, m, frac: int, src_width: int | None = None,
                          out: np.ndarray | None = None) -> np.ndarray:
        """Mantissas with ``frac`` fractional bits -> this type's mantissas.

        Rounding first, then overflow, as assignment between ap_fixed types does it.
        ``src_width`` matters only for an ap_int target fed by a signed source with no
        integer bits (src_width <= frac): ap_types then maps negatives to -1.
        ``out``: an int64 array of m's shape to write the result into (``m`` itself is fine).
        """
        m = np.asarray(m, dtype=np.int64)
        sh = frac - self.frac
        if self.kind == "int":
            r = self._to_int(m, np.int64(sh))
            if src_width is not None and src_width <= frac:
                r = np.where(m < 0, self._wrap(np.full_like(r, -1)), r)
        elif self._shift_path(sh) and (m.size == 0 or (int(m.max()) < _FAST_LIMIT
                                                      and int(m.min()) > -_FAST_LIMIT)):
            return self._round_shift(m, sh, out)
        else:
            r = self._convert(m, np.int64(sh))
        if out is None:
            return r
        out[...] = r
        return out

    def overflow_range(self) -> tuple[int, int]:
        """The mantissas the overflow step leaves alone (AP_SAT_SYM also moves the signed min).

        AP_SAT_SYM saturates negatives to -max, except at W = 1 where max is 0: ap_types sets
        the minimum (bit W-1) and then ORs in the LSB, the same bit there, giving -1."""
        lo, hi = self.min_mantissa, self.max_mantissa
        if self.signed and self.overflow == "AP_SAT_SYM":
            lo = -max(hi, 1)
        return lo, hi

    # -- the arithmetic -------------------------------------------------------------------
    def _shift_path(self, sh: int) -> bool:
        """Whether ``_round_shift`` covers a conversion by a right shift of ``sh`` bits."""
        return (self.kind == "fixed" and 0 <= sh <= 62
                and (self.overflow in ("AP_SAT", "AP_SAT_ZERO", "AP_SAT_SYM")
                     or (self.overflow == "AP_WRAP" and self.sat_bits == 0)))

    def _round_shift(self, m: np.ndarray, sh: int, out: np.ndarray | None) -> np.ndarray:
        """The common case of quantize_mantissa in a few in-place int64 passes: a right shift
        by 0 <= sh <= 62, any rounding mode, AP_WRAP (N = 0) or a saturating mode, |m| < 2**62.

        Rounding by sh bits is floor((m + c) / 2**sh) with a per-mode offset c (h = 2**(sh-1)):
        AP_RND c = h (ties up); AP_RND_MIN_INF c = h - 1 (ties down); AP_RND_ZERO
        c = h - [m >= 0] (ties toward 0); AP_RND_INF c = h - [m < 0] (ties away); AP_RND_CONV
        c = h - 1 + (floor(m / 2**sh) & 1) (ties to even); AP_TRN_ZERO c = [m < 0](2**sh - 1)
        (toward 0); AP_TRN c = 0. |m| < 2**62 keeps m + c inside int64. ``_convert`` is the
        general definition; tests/test_fixed.py checks the two agree, and the ap_types oracle
        tests check this path against g++ directly.
        """
        r = np.array(m, dtype=np.int64, copy=True) if out is None else out
        if out is not None and out is not m:
            r[...] = m
        if sh:
            q = self.rounding
            h = np.int64(1) << np.int64(sh - 1)
            if q == "AP_RND":
                r += h
            elif q == "AP_RND_MIN_INF":
                r += h - 1
            elif q == "AP_RND_ZERO":
                r += h - (r >= 0)
            elif q == "AP_RND_INF":
                r += h - (r < 0)
            elif q == "AP_RND_CONV":
                r += (h - 1) + ((r >> np.int64(sh)) & 1)
            elif q == "AP_TRN_ZERO":
                r += (r < 0) * ((np.int64(1) << np.int64(sh)) - 1)
            r >>= np.int64(sh)
        lo, hi = self.overflow_range()
        if self.overflow == "AP_WRAP":
            if self.width < 64:
                if self.signed:
                    k = 64 - self.width
                    ru = r.view(_U64)
                    ru <<= _U64(k)       # unsigned: a well-defined modular shift
                    r >>= np.int64(k)    # arithmetic: sign-extends bit W-1
                else:
                    r &= np.int64(hi)
        elif self.overflow == "AP_SAT_ZERO":
            r[(r < lo) | (r > hi)] = 0
        else:
            np.clip(r, lo, hi, out=r)
        return r

    # -- the arithmetic -------------------------------------------------------------------
    def _wrap(self, v) -> np.ndarray:
        """Low W bits of int64 ``v`` as this type's (sign-extended) mantissa."""
        s = _U64(64 - self.width)
        u = np.asarray(v, dtype=np.int64).view(_U64) << s
        return (u.view(np.int64) >> s.astype(np.int64)) if self.signed else (u >> s).view(np.int64)

    def _to_int(self, m, sh) -> np.ndarray:
        """ap_int target: truncate toward zero, then wrap (C-like conversion)."""
        m, sh = np.asarray(m, dtype=np.int64), np.asarray(sh, dtype=np.int64)
        fl, qb, sticky = _split(m, sh)
        r = fl + ((m < 0) & (qb | sticky))
        left = _shl(m, -sh)
        return self._wrap(np.where(sh > 0, r, left))

    def _convert(self, m, sh) -> np.ndarray:
        """Value m * 2**-sh (in units of this type's LSB) -> rounded, overflow-handled."""
        m, sh = np.asarray(m, dtype=np.int64), np.asarray(sh, dtype=np.int64)
        right = sh > 0
        fl, qb, sticky = _split(m, sh)
        inc = round_increment(self.rounding, qb, sticky, m < 0, (fl & 1).astype(bool))
        r = fl + inc                                      # cannot overflow: fl <= m >> 1

        lo, hi = self.overflow_range()                    # AP_SAT_SYM: the minimum saturates
        k = np.clip(-sh, 0, 63)                          # left shift (target has more frac)
        over = np.where(right, r > hi, m > (np.int64(hi) >> k))
        ceil_lo = (np.int64(lo) >> k) + ((np.int64(lo) & ((_U64(1) << k.astype(_U64)) - _U64(1))
                                           .view(np.int64)) != 0)
        ceil_lo = np.where(-sh >= 64, 0, ceil_lo)
        under = np.where(right, r < lo, m < ceil_lo)
        v = self._wrap(np.where(right, r, _shl(m, -sh)))

        o, n, w = self.overflow, self.sat_bits, self.width
        if o == "AP_WRAP" and n == 0:
            return v
        if o in ("AP_SAT", "AP_SAT_SYM"):
            return np.where(over, hi, np.where(under, lo, v))
        if o == "AP_SAT_ZERO":
            return np.where(over | under, 0, v)
        # AP_WRAP with N saturated top bits, AP_WRAP_SM: bit surgery on the wrapped word
        u = v.view(_U64)
        msb = _U64(1 << (w - 1))
        sign = np.where(under, msb, _U64(0))              # the source's sign, on the MSB
        top = _U64(((1 << max(n - 1, 0)) - 1) << (w - n)) if n else _U64(0)  # bits W-N..W-2
        if o == "AP_WRAP":
            if not self.signed:
                adj = u | _U64(((1 << n) - 1) << (w - n))  # over- and underflow both: ones
            else:
                adj = (u & ~(msb | top)) | sign | np.where(under, _U64(0), top)
        else:  # AP_WRAP_SM (signed only)
            ro = u & msb
            if n == 0:
                pos1 = sh + w                             # source bit just above the target
                ld = (pos1 >= 0) & (pos1 < 64) & (((m >> np.clip(pos1, 0, 63)) & 1) == 1)
                ld = np.where(ld, msb, _U64(0))
                adj = np.where(ld != ro, (~u & ~msb) | ld, u)
            elif n == 1:
                adj = (np.where(sign != ro, ~u, u) & ~msb) | sign
            else:
                lno = np.where((u >> _U64(w - n)) & _U64(1) == 1, msb, _U64(0))
                adj = np.where(lno == sign, ~u, u)
                adj = (adj & ~(msb | top)) | sign | np.where(under, _U64(0), top)
        return np.where(over | under, self._wrap(adj.view(np.int64)), v)


def round_increment(rounding: str, qb, sticky, neg, odd):
    """Whether rounding adds one LSB to the floor: ap_types' rule for each mode, from the
    first dropped bit ``qb``, any lower dropped bit ``sticky``, the sign ``neg`` and the
    floor's lowest bit ``odd``. Boolean numpy arrays or torch tensors (only & | ~ are used)."""
    if rounding == "AP_TRN":
        return qb & ~qb
    if rounding == "AP_RND":
        return qb
    if rounding == "AP_RND_ZERO":
        return qb & (neg | sticky)
    if rounding == "AP_RND_MIN_INF":
        return qb & sticky
    if rounding == "AP_RND_INF":
        return qb & (~neg | sticky)
    if rounding == "AP_RND_CONV":
        return qb & (odd | sticky)
    return neg & (qb | sticky)  # AP_TRN_ZERO


def _split(m, sh):
    """floor(m * 2**-sh), the bit just below that LSB, and 'any lower bit set'.

    Valid where sh > 0 (any size); shifts of 64 or more see only sign bits."""
    fl = m >> np.clip(sh, 0, 63)
    qb = ((m >> np.clip(sh - 1, 0, 63)) & 1).astype(bool)
    nlow = np.clip(sh - 1, 1, 64)                       # bits 0..sh-2; >= 64: all of m
    sticky = (m.view(_U64) << (64 - nlow).astype(_U64)) != 0
    sticky &= sh >= 2
    return fl, qb & (sh > 0), sticky & (sh > 0)


def _shl(m, k):
    """m * 2**k modulo 2**64 for k >= 0 (0 once k >= 64)."""
    kk = np.clip(k, 0, 63).astype(_U64)
    return np.where(k >= 64, 0, (m.view(_U64) << kk).view(np.int64))


def _result(w: int, i: int, s: bool, a: FixedType, b: FixedType) -> FixedType:
    kind = "int" if a.kind == b.kind == "int" else "fixed"
    try:
        return FixedType(w, w if kind == "int" else i, s, kind=kind)
    except FixedTypeError as exc:
        raise FixedTypeError(f"result of {a} and {b} is {w} bits wide: {exc.detail}") from None


def add_type(a: FixedType, b: FixedType) -> FixedType:
    """Type of exact a + b (ap_fixed_base RType::plus)."""
    a, b = FixedType.parse(a), FixedType.parse(b)
    i = max(a.integer + (b.signed and not a.signed), b.integer + (a.signed and not b.signed)) + 1
    return _result(i + max(a.frac, b.frac), i, a.signed or b.signed, a, b)


def mul_type(a: FixedType, b: FixedType) -> FixedType:
    """Type of exact a * b (ap_fixed_base RType::mult)."""
    a, b = FixedType.parse(a), FixedType.parse(b)
    return _result(a.width + b.width, a.integer + b.integer, a.signed or b.signed, a, b)
