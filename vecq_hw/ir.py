"""The integer model: the hub every downstream step reads.

A :class:`Model` is an ordered chain of layer records. Everything in it is an integer or a
fixed-point type; the float PyTorch model is gone by the time one of these exists. Shapes are
channels-last (H, W, C) as in hls4ml; weight tables use hls4ml's orders: dense (n_in, n_out),
conv (kh, kw, c_in, c_out).

The records hold data only. What a layer *computes* is defined once, by the simulator
(``vecq_hw.sim``) and mirrored by the HLS kernels; what a layer *may contain* is checked here
by :meth:`Model.check`, so a model that passes cannot overflow its accumulators.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import ClassVar

import numpy as np

from .errors import FormatError
from .fixed import FixedType

#: The largest mantissa width the simulator's int64 arithmetic may produce anywhere.
MAX_EXACT_WIDTH = 62

ENCODINGS = ("odd", "int")


def multipliers(codes: np.ndarray, encoding: str) -> np.ndarray:
    """The integer multipliers d a weight table stands for (``odd``: d = 2c + 1)."""
    c = np.asarray(codes, dtype=np.int64)
    if encoding == "odd":
        return 2 * c + 1
    if encoding == "int":
        return c
    raise FormatError(f"unknown weight encoding '{encoding}', expected one of {ENCODINGS}")


def code_range(bits: int) -> tuple[int, int]:
    """Inclusive range of a signed k-bit code."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def signed_width_for(lo: int, hi: int) -> int:
    """Smallest two's-complement width holding every integer in [lo, hi]."""
    w = 1
    while not (-(1 << (w - 1)) <= lo and hi <= (1 << (w - 1)) - 1):
        w += 1
    return w


def accumulator_type(in_type: FixedType, d: np.ndarray) -> FixedType:
    """Exact accumulator for sum_i x_i * d_ij, from the worst case over all output channels.

    ``d`` has the fan-in on every axis but the last (output channels). The bound uses the
    input type's extreme mantissas, so no input the type can hold overflows it.
    """
    d = np.asarray(d, dtype=np.int64).reshape(-1, d.shape[-1])
    pos = np.where(d > 0, d, 0).sum(axis=0)
    neg = np.where(d < 0, d, 0).sum(axis=0)
    lo_x, hi_x = in_type.min_mantissa, in_type.max_mantissa
    hi = int(np.max(pos * hi_x + neg * lo_x)) if d.size else 0
    lo = int(np.min(pos * lo_x + neg * hi_x)) if d.size else 0
    width = signed_width_for(min(lo, 0), max(hi, 0))
    return FixedType(width=width, integer=width - in_type.frac, signed=True)


@dataclass(eq=False)
class Layer:
    """Base record: a name and the type of what it produces."""

    kind: ClassVar[str] = "layer"
    name: str
    out_type: FixedType

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return in_shape

    def arrays(self) -> dict[str, np.ndarray]:
        """The integer tables of this layer, by field name."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if isinstance(getattr(self, f.name), np.ndarray)}

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
                    return False
                if a.dtype != b.dtype or a.shape != b.shape or not np.array_equal(a, b):
                    return False
            elif a != b:
                return False
        return True


@dataclass(eq=False)
class Input(Layer):
    kind: ClassVar[str] = "input"
    shape: tuple[int, ...] = ()

    def output_shape(self, in_shape=None):
        return tuple(self.shape)


@dataclass(eq=False)
class Weighted(Layer):
    """Shared fields of dense and conv: the arithmetic contract's constants."""

    bits: int = 2
    encoding: str = "odd"
    codes: np.ndarray = None  # int8, k-bit signed codes
    scale: np.ndarray = None  # int64 mantissas of s_j, one per output channel
    scale_type: FixedType = None
    bias: np.ndarray = None  # int64 mantissas of b_j, one per output channel
    bias_type: FixedType = None
    accum_type: FixedType = None
    #: 'dsp' lets the tool map multiplies to DSPs; 'fabric' forces LUTs (HLS only).
    multiplier: str = "auto"

    @property
    def n_out(self) -> int:
        return int(self.codes.shape[-1])

    def multipliers(self) -> np.ndarray:
        return multipliers(self.codes, self.encoding)

    def product_frac(self, in_type: FixedType) -> int:
        """Fractional bits of y = acc * s + b, before the one requantisation."""
        return max(in_type.frac + self.scale_type.frac, self.bias_type.frac)


@dataclass(eq=False)
class Dense(Weighted):
    kind: ClassVar[str] = "dense"

    @property
    def n_in(self) -> int:
        return int(self.codes.shape[0])

    def output_shape(self, in_shape):
        return (self.n_out,)


@dataclass(eq=False)
class Conv2D(Weighted):
    kind: ClassVar[str] = "conv2d"
    stride: tuple[int, int] = (1, 1)
    #: zero padding (top, bottom, left, right)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.codes.shape[0]), int(self.codes.shape[1])

    def output_shape(self, in_shape):
        h, w, _ = in_shape
        kh, kw = self.kernel
        pt, pb, pl, pr = self.padding
        return ((h + pt + pb - kh) // self.stride[0] + 1,
                (w + pl + pr - kw) // self.stride[1] + 1, self.n_out)


@dataclass(eq=False)
class ReLU(Layer):
    kind: ClassVar[str] = "relu"


@dataclass(eq=False)
class Pool2D(Layer):
    pool: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)

    def output_shape(self, in_shape):
        h, w, c = in_shape
        return ((h - self.pool[0]) // self.stride[0] + 1,
                (w - self.pool[1]) // self.stride[1] + 1, c)


@dataclass(eq=False)
class MaxPool2D(Pool2D):
    kind: ClassVar[str] = "maxpool2d"


@dataclass(eq=False)
class AvgPool2D(Pool2D):
    kind: ClassVar[str] = "avgpool2d"


@dataclass(eq=False)
class Flatten(Layer):
    kind: ClassVar[str] = "flatten"

    def output_shape(self, in_shape):
        return (int(np.prod(in_shape)),)


LAYER_KINDS: dict[str, type[Layer]] = {
    cls.kind: cls for cls in (Input, Dense, Conv2D, ReLU, MaxPool2D, AvgPool2D, Flatten)
}


@dataclass(eq=False)
class Model:
    """An integer model: a name and a chain of layers, the first one an :class:`Input`."""

    name: str
    layers: list[Layer] = field(default_factory=list)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Model):
            return NotImplemented
        return (self.name == other.name and len(self.layers) == len(other.layers)
                and all(a == b for a, b in zip(self.layers, other.layers)))

    @property
    def input(self) -> Input:
        return self.layers[0]

    @property
    def output_type(self) -> FixedType:
        return self.layers[-1].out_type

    def walk(self):
        """Yield (layer, in_shape, in_type, out_shape) along the chain (after :meth:`check`)."""
        shape, typ = None, None
        for layer in self.layers:
            out_shape = layer.output_shape(shape)
            yield layer, shape, typ, out_shape
            shape, typ = out_shape, layer.out_type

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {layer.name: out for layer, _, _, out in self.walk()}

    @property
    def output_shape(self) -> tuple[int, ...]:
        return list(self.shapes().values())[-1]

    def check(self, where: str = "model") -> "Model":
        """Refuse, with one clear line, any model the contract cannot compute exactly."""
        if not self.layers or not isinstance(self.layers[0], Input):
            raise FormatError("the first layer must be an input layer", file=where, field="layers")
        names = set()
        shape, typ = None, None
        for i, layer in enumerate(self.layers):
            loc = f"layers[{i}] ({layer.name})"
            if layer.name in names:
                raise FormatError(f"duplicate layer name '{layer.name}'", file=where, field=loc)
            names.add(layer.name)
            if i and isinstance(layer, Input):
                raise FormatError("only the first layer may be an input", file=where, field=loc)
            _check_layer(layer, shape, typ, where, loc)
            shape = layer.output_shape(shape)
            if any(s <= 0 for s in shape):
                raise FormatError(f"output shape {shape} is empty", file=where, field=loc)
            typ = layer.out_type
        return self


def _fail(where, loc, msg):
    raise FormatError(msg, file=where, field=loc)


def _check_layer(layer, shape, typ, where, loc):
    if isinstance(layer, Input):
        if not layer.shape or any(int(s) <= 0 for s in layer.shape) or len(layer.shape) not in (1, 3):
            _fail(where, loc + ".shape", f"expected (n,) or (h, w, c) with positive sizes, got {layer.shape}")
        return
    if isinstance(layer, Weighted):
        _check_weighted(layer, shape, typ, where, loc)
    elif isinstance(layer, ReLU):
        # exact: every non-negative input value must be representable unchanged
        if layer.out_type.frac < typ.frac or layer.out_type.max_value < typ.max_value:
            _fail(where, loc + ".out_type", f"{layer.out_type} cannot hold every non-negative {typ} value exactly")
    elif isinstance(layer, Pool2D):
        if len(shape) != 3:
            _fail(where, loc, f"pooling needs an (h, w, c) input, got {shape}")
        if min(layer.pool) < 1 or min(layer.stride) < 1:
            _fail(where, loc + ".pool", "pool and stride must be positive")
        if isinstance(layer, MaxPool2D) and layer.out_type != typ:
            _fail(where, loc + ".out_type", f"max pooling keeps its input type {typ}, got {layer.out_type}")
        if isinstance(layer, AvgPool2D):
            area = layer.pool[0] * layer.pool[1]
            extra = area.bit_length() - 1
            if area != 1 << extra:
                _fail(where, loc + ".pool", f"average pooling needs a power-of-two window to be exact, got {layer.pool}")
            exact = FixedType(width=typ.width, integer=typ.integer, signed=typ.signed)
            if (layer.out_type.frac < typ.frac + extra or layer.out_type.max_value < exact.max_value
                    or layer.out_type.min_value > exact.min_value):
                _fail(where, loc + ".out_type", f"{layer.out_type} cannot hold the exact mean of {typ} values")
    elif isinstance(layer, Flatten):
        if layer.out_type != typ:
            _fail(where, loc + ".out_type", f"flatten keeps its input type {typ}, got {layer.out_type}")


def _check_weighted(layer: Weighted, shape, typ, where, loc):
    if not isinstance(layer.bits, int) or not 1 <= layer.bits <= 8:
        _fail(where, loc + ".bits", f"expected an integer 1..8, got {layer.bits!r}")
    if layer.encoding not in ENCODINGS:
        _fail(where, loc + ".encoding", f"expected one of {ENCODINGS}, got {layer.encoding!r}")
    if layer.multiplier not in ("auto", "dsp", "fabric"):
        _fail(where, loc + ".multiplier", f"expected auto, dsp or fabric, got {layer.multiplier!r}")
    codes = layer.codes
    if isinstance(layer, Dense):
        if len(shape) != 1:
            _fail(where, loc, f"dense needs a flat input, got shape {shape} (add a flatten)")
        if codes.ndim != 2 or codes.shape[0] != shape[0]:
            _fail(where, loc + ".codes", f"expected shape ({shape[0]}, n_out), got {codes.shape}")
    else:
        if len(shape) != 3:
            _fail(where, loc, f"conv2d needs an (h, w, c) input, got shape {shape}")
        if codes.ndim != 4 or codes.shape[2] != shape[2]:
            _fail(where, loc + ".codes", f"expected shape (kh, kw, {shape[2]}, c_out), got {codes.shape}")
        if min(layer.stride) < 1 or min(layer.padding) < 0 or len(layer.padding) != 4:
            _fail(where, loc + ".stride", "stride must be positive and padding (top, bottom, left, right) non-negative")
    lo, hi = code_range(layer.bits)
    if codes.dtype != np.int8 or codes.size == 0 or int(codes.min()) < lo or int(codes.max()) > hi:
        _fail(where, loc + ".codes", f"expected int8 codes in [{lo}, {hi}] ({layer.bits} bits)")
    n = layer.n_out
    for name, arr, t in (("scale", layer.scale, layer.scale_type), ("bias", layer.bias, layer.bias_type)):
        if arr is None or arr.dtype != np.int64 or arr.shape != (n,):
            _fail(where, f"{loc}.{name}", f"expected {n} int64 mantissas")
        if arr.size and (int(arr.min()) < t.min_mantissa or int(arr.max()) > t.max_mantissa):
            _fail(where, f"{loc}.{name}", f"mantissas outside {t}")
    acc = layer.accum_type
    if acc.frac != typ.frac or not acc.signed:
        _fail(where, loc + ".accum_type", f"expected a signed type with {typ.frac} fractional bits (the input's), got {acc}")
    need = accumulator_type(typ, layer.multipliers())
    if acc.width < need.width:
        _fail(where, loc + ".accum_type", f"{acc} can overflow: the worst case needs {need}")
    # y = acc * s + b must stay inside the simulator's exact int64 range
    y_frac = layer.product_frac(typ)
    acc_bits = acc.width - 1 + (y_frac - typ.frac - layer.scale_type.frac)
    sb = layer.scale_type.width - (0 if layer.scale_type.signed else 1)
    bb = layer.bias_type.width - 1 + (y_frac - layer.bias_type.frac)
    y_bits = max(acc_bits + sb, bb) + 2
    if y_bits > MAX_EXACT_WIDTH:
        _fail(where, loc + ".scale_type", f"acc*s+b needs {y_bits} bits, more than the {MAX_EXACT_WIDTH} computed exactly")
    if layer.out_type.kind != "fixed":
        # ap_types converts a signed ap_fixed into ap_int with quirks (-1 for small negatives)
        _fail(where, loc + ".out_type", f"expected an ap_fixed/ap_ufixed output type, got {layer.out_type}")


def fan_in(layer: Weighted) -> int:
    return int(math.prod(layer.codes.shape[:-1]))
