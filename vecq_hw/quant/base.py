"""Shared pieces of the weight quantisers: the result type, the base class, the levels.

Every quantiser maps a float weight tensor onto k-bit signed integer codes ``c`` in
``[-2**(k-1), 2**(k-1) - 1]`` plus a scale ``alpha`` (per tensor or per output channel). What
a code stands for is *data* the quantiser declares once: a table ``levels()`` of 2**k integers
in code order (code ``-2**(k-1)`` first) and a float ``unit``, so that

    w_hat = levels[c - cmin] * unit * alpha  [+ beta, µL2Q's mean offset only]

VecQ and µL2Q use the half-integer grid ``(c + 1/2) * alpha``: the odd table d = 2c + 1 with
unit 1/2 (:class:`HalfIntegerGrid`). The integer model (:mod:`vecq_hw.ir.levels`) holds the
same table and owns the named ones ('odd', 'int'); the exporter turns ``unit * alpha`` (times
any folded BatchNorm gain) into the per-channel fixed-point scale s_j.

A quantiser has two paths that implement the same formula:

* ``quantize(w)``: numpy, always float64 (deterministic; for export and analysis);
* ``quantize_torch(w)``: torch, in ``w``'s dtype, without autograd (the layers use it,
  so the codes a layer exports are the very codes its forward pass used);

and ``__call__(w)`` is the training path: the quantised weights with a straight-through
estimator (forward: the quantised tensor, bit for bit; backward: the identity to ``w``).

Configuration: every constructor argument is an *option*, stored under the same attribute
name; ``get_config()`` returns ``{"method": name, **options}`` and ``from_config`` (or the
registry's :func:`vecq_hw.quant.registry.quantizer_from_config`) rebuilds the quantiser,
refusing unknown options and values of the wrong type in one line.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from vecq_hw.errors import ExportError, VecQError
from vecq_hw.ir.levels import levels_name, named_levels

#: The largest k the quantiser math supports (codes are int16 above 8 bits).
MAX_QUANT_BITS = 16


def check_bits(bits: Any, *, low: int = 1, high: int = MAX_QUANT_BITS, field: str = "bits") -> int:
    """Return ``bits`` as an int, or raise a one-line VecQError."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not low <= bits <= high:
        raise VecQError(f"expected an integer number of bits in {low}..{high}, got {bits!r}", field=field)
    return int(bits)


def check_bool(value: Any, field: str) -> bool:
    """Return ``value`` if it is a bool (numpy's included), or raise a one-line VecQError."""
    if not isinstance(value, (bool, np.bool_)):
        raise VecQError(f"expected true or false, got {value!r}", field=field)
    return bool(value)


def code_range(bits: int) -> tuple[int, int]:
    """(lowest, highest) k-bit signed code."""
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def code_dtype(bits: int) -> np.dtype:
    """int8 codes up to 8 bits, int16 above."""
    return np.dtype(np.int8) if bits <= 8 else np.dtype(np.int16)


def check_levels(levels: Any, bits: int, field: str = "levels") -> np.ndarray:
    """``levels`` as a read-only int64 table of 2**bits integers, or a one-line VecQError."""
    if isinstance(levels, torch.Tensor):
        levels = levels.detach().cpu().numpy()
    a = np.asarray(levels)
    n = 2 ** int(bits)
    if a.ndim != 1 or a.size != n:
        raise VecQError(f"expected a table of 2**{bits} = {n} levels in code order, got shape {a.shape}",
                        field=field)
    if a.dtype.kind not in "iu":
        if a.dtype.kind != "f" or not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise VecQError(f"expected integer levels, got {a.tolist()[:8]}", field=field)
    t = a.astype(np.int64)
    t.setflags(write=False)
    return t


def _check_unit(unit: Any) -> float:
    if isinstance(unit, bool) or not isinstance(unit, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(unit)) or float(unit) <= 0:
        raise VecQError(f"expected a finite number > 0, got {unit!r}", field="unit")
    return float(unit)


@dataclass(frozen=True, eq=False)
class QuantResult:
    """Integer codes plus scale(s) of one quantised weight tensor.

    ``codes`` has the weight's shape (torch layout: (out, in[, kh, kw])). ``alpha`` (and
    ``beta`` when the quantiser has a mean offset) is a 0-d array for a per-tensor scale or
    has shape ``(out,)`` for a per-output-channel scale (axis 0). The arrays are either all
    numpy (``quantize``) or all torch (``quantize_torch``). ``levels`` (numpy int64, 2**bits
    entries in code order) and ``unit`` (float) say what a code stands for:

        value = levels[codes - cmin] * unit * alpha [+ beta]

    (VecQ/µL2Q: levels = 2c + 1, unit = 1/2, i.e. (c + 1/2) * alpha.)
    """

    codes: Any
    alpha: Any
    bits: int
    levels: Any
    unit: float
    beta: Any = None

    def __post_init__(self):
        object.__setattr__(self, "bits", check_bits(self.bits))
        object.__setattr__(self, "levels", check_levels(self.levels, self.bits))
        object.__setattr__(self, "unit", _check_unit(self.unit))

    @property
    def encoding(self) -> str:
        """'odd' or 'int' when ``levels`` is that named table of the integer model, else
        'custom' (read-only, derived; kept for code that predates the levels table)."""
        return levels_name(self.levels, self.bits) or "custom"

    @property
    def cmin(self) -> int:
        return code_range(self.bits)[0]

    @property
    def per_channel(self) -> bool:
        return self.alpha.ndim == 1

    @property
    def has_offset(self) -> bool:
        return self.beta is not None

    def _per_row(self, s: Any) -> Any:
        """Reshape a scale so it broadcasts against ``codes`` along axis 0."""
        if s.ndim == 0:
            return s
        return s.reshape((-1,) + (1,) * (self.codes.ndim - 1))

    def value(self) -> Any:
        """The dequantised weights, in alpha's dtype (float64 for the numpy path).

        ``levels * unit`` first (exact for the odd table: (2c + 1)/2 = c + 1/2), then times
        alpha: one rounding, the same as ``(c + 1/2) * alpha``.
        """
        torch_path = isinstance(self.codes, torch.Tensor)
        affine = _exact_affine(self.levels, self.bits, self.unit)
        if affine is not None:  # q = c*a + b, every step exact: the same bits as the table, faster
            a, b = affine
            q = self.codes.to(self.alpha.dtype) if torch_path else self.codes.astype(self.alpha.dtype)
            q = (q * a if a != 1.0 else q) + b
        elif torch_path:
            table = self.levels.astype(np.float64) * self.unit
            t = torch.as_tensor(table, dtype=self.alpha.dtype, device=self.codes.device)
            q = t[self.codes.long() - self.cmin]
        else:
            table = self.levels.astype(np.float64) * self.unit
            q = table.astype(self.alpha.dtype)[self.codes.astype(np.int64) - self.cmin]
        w = q * self._per_row(self.alpha)
        if self.beta is not None:
            w = w + self._per_row(self.beta)
        return w

    def multipliers(self) -> Any:
        """The integer multipliers d = levels[c - cmin] (int64 numpy / torch)."""
        if isinstance(self.codes, torch.Tensor):
            t = torch.tensor(self.levels, device=self.codes.device)  # a copy: levels is read-only
            return t[self.codes.long() - self.cmin]
        return self.levels[self.codes.astype(np.int64) - self.cmin]

    def odd(self) -> Any:
        """The odd integer multipliers d = 2c + 1 (int16), for the odd table only."""
        if self.encoding != "odd":
            raise VecQError(f"odd() needs the odd levels table, this result's is {self.encoding!r}",
                            field="levels")
        d = self.multipliers()
        return d.to(torch.int16) if isinstance(d, torch.Tensor) else d.astype(np.int16)

    def alpha_per_channel(self, n_out: int | None = None) -> np.ndarray:
        """alpha as float64 numpy of shape (out,), broadcast if per-tensor."""
        n = self.codes.shape[0] if n_out is None else n_out
        a = _to_numpy(self.alpha).astype(np.float64)
        return np.broadcast_to(a, (n,)).copy() if a.ndim == 0 else a

    def require_no_offset(self) -> None:
        """Raise unless the weights are exactly ``levels[c] * unit * alpha`` (no mean offset)."""
        if self.beta is not None:
            raise ExportError(
                "weights carry a µL2Q mean offset beta (w = (c+1/2)*alpha + beta), which is not "
                "a pure codes*scale weight; quantise with offset=False for hardware export",
                field="offset",
            )

    def to_numpy(self) -> "QuantResult":
        """A numpy copy (alpha and beta in float64)."""
        return QuantResult(
            codes=_to_numpy(self.codes).astype(code_dtype(self.bits)),
            alpha=_to_numpy(self.alpha).astype(np.float64),
            bits=self.bits,
            levels=self.levels,
            unit=self.unit,
            beta=None if self.beta is None else _to_numpy(self.beta).astype(np.float64),
        )


def _exact_affine(levels: np.ndarray, bits: int, unit: float) -> tuple[float, float] | None:
    """(a, b) with levels[c - cmin] * unit == c*a + b for every code c, when that is exact in
    float32 and float64 (unit a power of two, |levels| and |a| < 2**23), else None. Then
    value() computes c*a + b instead of a table lookup: the same numbers, every step exact
    (the odd table: c + 1/2)."""
    m, e = math.frexp(unit)
    if m != 0.5 or np.max(np.abs(levels)) >= 2**23:
        return None
    c = np.arange(code_range(bits)[0], code_range(bits)[1] + 1, dtype=np.int64)
    step = int(levels[1] - levels[0]) if levels.size > 1 else 0
    off = int(levels[0] - step * c[0])
    if abs(step) >= 2**23 or abs(off) >= 2**23 or not np.array_equal(levels, step * c + off):
        return None
    return step * unit, off * unit


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


class _StraightThrough(torch.autograd.Function):
    """Forward: the quantiser's output, exactly; backward: identity gradient to w.

    (``w + (w_hat - w).detach()`` would add a float rounding to the forward value.)
    """

    @staticmethod
    def forward(ctx, w, quantizer):  # noqa: D102
        return quantizer.quantize_torch(w).value()

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        return grad, None


_KIND_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


class WeightQuantizer:
    """Base class. A quantiser is one subclass that sets ``name`` (its registry key) and
    ``unit``, and implements ``levels()`` and ``_quantize_rows``; register it with
    :func:`vecq_hw.quant.register_quantizer` to make it usable from recipes and configs.

    ``_quantize_rows(w2d, ops)`` gets the weights as a 2-D array of shape (groups, n): one
    row for per-tensor, one row per output channel for per-channel; ``ops`` is the numpy or
    torch flavour of the few reductions needed (``mean``, ``std``, ``sum``, ``round_clip``,
    ``nearest``). It returns (codes, alpha, beta): codes as integer-valued floats of shape
    (groups, n) in ``[cmin, cmax]``, alpha and beta of shape (groups, 1), beta None when
    there is no mean offset; the weight of code c is ``levels()[c - cmin] * unit * alpha``.

    Every ``__init__`` argument is an option: store it under the same attribute name (or
    override ``get_config``). ``CONFIG_DEFAULTS`` overrides constructor defaults when the
    quantiser is built from a config (a recipe, a layer's ``weight_quant`` mapping).
    """

    name: ClassVar[str] = "base"
    #: the float value of one level step (w_hat = levels[c - cmin] * unit * alpha)
    unit: ClassVar[float] = 1.0
    #: option defaults for ``from_config`` that differ from the constructor's
    CONFIG_DEFAULTS: ClassVar[dict] = {}

    def __init__(self, bits: int = 2, per_channel: bool = False):
        self.bits = check_bits(bits)
        self.per_channel = check_bool(per_channel, "per_channel")
        self.cmin, self.cmax = code_range(self.bits)
        self._table = None  # (bits, validated levels)

    # --- what a code stands for (the one place a quantiser declares it) -------------------
    def levels(self) -> np.ndarray:  # pragma: no cover - abstract
        """The integer level of each code, in code order (2**bits entries, int64)."""
        raise NotImplementedError

    def level_table(self) -> np.ndarray:
        """``levels()`` checked (2**bits integers) and cached per bit width."""
        cached = getattr(self, "_table", None)
        if cached is None or cached[0] != self.bits:
            cached = (self.bits, check_levels(self.levels(), self.bits))
            self._table = cached
        return cached[1]

    # --- configuration ------------------------------------------------------------------------
    @classmethod
    def options(cls) -> dict:
        """Option name -> default (``inspect.Parameter.empty`` when required), for configs."""
        out = {}
        for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            out[p.name] = p.default
        for k, v in cls.CONFIG_DEFAULTS.items():
            if k in out:
                out[k] = v
        return out

    def get_config(self) -> dict:
        """``{"method": name, **options}``: every option, so ``from_config`` rebuilds it."""
        return {"method": self.name, **{k: getattr(self, k) for k in self.options()}}

    @classmethod
    def from_config(cls, config: dict, *, max_bits: int = MAX_QUANT_BITS, prefix: str = "",
                    file: str | None = None) -> "WeightQuantizer":
        """Build from ``{"method": name, **options}`` (``method`` optional here). Errors are
        one-line VecQErrors whose field is ``prefix + option``."""

        def fail(field: str, msg: str):
            raise VecQError(msg, file=file, field=prefix + field)

        if not isinstance(config, dict):
            fail("method", f"expected a mapping {{method: {cls.name}, ...options}}, got {config!r}")
        cfg = dict(config)
        method = cfg.pop("method", cls.name)
        if not isinstance(method, str) or method.lower() != cls.name:
            fail("method", f"expected {cls.name!r}, got {method!r}")
        allowed = cls.options()
        for k in cfg:
            if k not in allowed:
                fail(str(k), f"unknown option for method {cls.name!r}; expected some of "
                             f"{', '.join(allowed)}")
        kwargs = {}
        for k, default in allowed.items():
            if k not in cfg:
                if default is inspect.Parameter.empty:
                    fail(k, f"missing option of method {cls.name!r}")
                kwargs[k] = default  # CONFIG_DEFAULTS included
                continue
            v = cfg[k]
            kind = type(default)
            if kind in _KIND_WORDS:  # the default's type is the option's type
                ok = (isinstance(v, (bool, np.bool_)) if kind is bool
                      else isinstance(v, str) if kind is str
                      else isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
                      if kind is int
                      else isinstance(v, (int, float, np.integer, np.floating))
                      and not isinstance(v, (bool, np.bool_)))
                if not ok:
                    fail(k, f"expected {_KIND_WORDS[kind]}, got {v!r} ({type(v).__name__})")
            kwargs[k] = v
        if "bits" in kwargs:
            try:
                check_bits(kwargs["bits"], high=max_bits)
            except VecQError as exc:
                fail("bits", exc.detail)
        try:
            q = cls(**kwargs)
        except VecQError as exc:
            raise type(exc)(exc.detail, file=file, field=prefix + (exc.field or "")) from None
        if q.bits > max_bits:  # a default above the caller's limit
            fail("bits", f"expected an integer number of bits in 1..{max_bits}, got {q.bits!r}")
        return q

    def with_bits(self, bits: int) -> "WeightQuantizer":
        """A new quantiser with the same options and ``bits`` (fresh state: no caches)."""
        return type(self).from_config({**self.get_config(), "bits": bits})

    def clone(self) -> "WeightQuantizer":
        """A new quantiser with the same options (fresh state), e.g. one per layer."""
        return self.with_bits(self.bits)

    # --- the two array paths ----------------------------------------------------------
    def _rows(self, w):
        if w.ndim == 0:
            raise VecQError("cannot quantise a 0-d weight", field="weight")
        if self.per_channel:
            return w.reshape(w.shape[0], -1)
        return w.reshape(1, -1)

    def _finish(self, w, codes, alpha, beta, to_codes):
        codes = to_codes(codes.reshape(w.shape))
        shape = (-1,) if self.per_channel else ()
        alpha = alpha.reshape(shape)
        beta = None if beta is None else beta.reshape(shape)
        return QuantResult(codes=codes, alpha=alpha, bits=self.bits, levels=self.level_table(),
                           unit=self.unit, beta=beta)

    def quantize(self, w: Any) -> QuantResult:
        """numpy path: float64 in, QuantResult of numpy arrays out."""
        w = np.asarray(_to_numpy(w), dtype=np.float64)
        codes, alpha, beta = self._quantize_rows(self._rows(w), _NUMPY)
        return self._finish(w, codes, alpha, beta, lambda c: c.astype(code_dtype(self.bits)))

    def quantize_torch(self, w: torch.Tensor) -> QuantResult:
        """torch path, in w's dtype, no autograd."""
        if not w.is_floating_point():
            raise VecQError(f"expected a floating-point weight tensor, got {w.dtype}", field="weight")
        with torch.no_grad():
            w = w.detach()
            codes, alpha, beta = self._quantize_rows(self._rows(w), _TORCH)
            tdt = torch.int8 if self.bits <= 8 else torch.int16
            return self._finish(w, codes, alpha, beta, lambda c: c.to(tdt))

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        """Quantised weights with the straight-through estimator (for training)."""
        return _StraightThrough.apply(w, self)

    def _quantize_rows(self, w2d, ops):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        cfg = self.get_config()
        cfg.pop("method")
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in cfg.items())})"


class HalfIntegerGrid:
    """Mixin for VecQ and µL2Q: code c stands for (c + 1/2) * alpha, the odd table d = 2c + 1
    of the integer model times unit 1/2."""

    unit: ClassVar[float] = 0.5

    def levels(self) -> np.ndarray:
        return named_levels("odd", self.bits)


class _NumpyOps:
    @staticmethod
    def mean(x):
        return x.mean(axis=1, keepdims=True)

    @staticmethod
    def std(x):  # population std (ddof = 0), about the row mean
        return x.std(axis=1, keepdims=True)

    @staticmethod
    def sum(x):
        return x.sum(axis=1, keepdims=True)

    @staticmethod
    def round_clip(x, lo, hi):  # round half to even, then clip
        return np.clip(np.round(x), lo, hi)

    @staticmethod
    def nearest(x, values):
        """(index, value) of the nearest entry of ``values`` (any order) to each x, as
        arrays like x; a tie goes to the lower value."""
        values = np.asarray(values, dtype=np.float64)
        order = np.argsort(values, kind="stable")
        sv = values[order]
        pos = np.searchsorted((sv[1:] + sv[:-1]) / 2, x, side="left")
        idx = order[pos]
        return idx.astype(x.dtype), values.astype(x.dtype)[idx]


class _TorchOps:
    @staticmethod
    def mean(x):
        return x.mean(dim=1, keepdim=True)

    @staticmethod
    def std(x):
        return x.std(dim=1, keepdim=True, correction=0)

    @staticmethod
    def sum(x):
        return x.sum(dim=1, keepdim=True)

    @staticmethod
    def round_clip(x, lo, hi):
        return torch.clamp(torch.round(x), lo, hi)

    @staticmethod
    def nearest(x, values):
        values = np.asarray(values, dtype=np.float64)
        order = np.argsort(values, kind="stable")
        sv = values[order]
        mids = torch.as_tensor((sv[1:] + sv[:-1]) / 2, dtype=x.dtype, device=x.device)
        pos = torch.bucketize(x.contiguous(), mids, right=False)  # mids[i-1] < x <= mids[i]
        idx = torch.as_tensor(order, device=x.device)[pos]
        return idx.to(x.dtype), torch.as_tensor(values, dtype=x.dtype, device=x.device)[idx]


_NUMPY = _NumpyOps()
_TORCH = _TorchOps()
