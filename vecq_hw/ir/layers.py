"""One class per layer kind of the integer model.

A kind owns its fields, its YAML keys (``PARAMS``: read and written by :mod:`.io` through
``params_to_yaml`` / ``params_from_yaml``), its shape inference (``infer_shape``) and its
``check``: what it may contain so that the arithmetic contract computes it exactly. What a
kind *computes* is defined once by the simulator (``vecq_hw.sim``), mirrored by each back end.

Shapes are channels-last (H, W, C) as in hls4ml; weight tables use hls4ml's orders: dense
(n_in, n_out), conv (kh, kw, c_in, c_out), depthwise (kh, kw, c).

``check(in_shapes, in_types, fail)`` calls ``fail(field, message)`` (which raises) on the
first problem; ``field`` is relative to the layer ('' for the layer itself).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable, ClassVar

import numpy as np

from ..fixed import FixedType
from .arith import MAX_EXACT_WIDTH, accumulator_type, aligned_sum_type, code_range
from .levels import MAX_LEVEL, levels_name, multipliers, named_levels
from .packing import packed_size

Fail = Callable[[str, str], None]
MULTIPLIERS = ("auto", "dsp", "fabric")
#: ap_types' AP_WRAP_SM has no hls4ml spelling, so no back end could build it
UNBUILDABLE_OVERFLOW = ("AP_WRAP_SM",)


@dataclass(eq=False)
class Layer:
    """Base record: a name, the names of the layers it reads, and the type it produces."""

    kind: ClassVar[str] = "layer"
    #: (fewest, most) inputs
    arity: ClassVar[tuple[int, int]] = (1, 1)
    #: kind-specific YAML keys, in the order they are written
    PARAMS: ClassVar[tuple[str, ...]] = ()
    name: str
    out_type: FixedType
    #: names of the layers whose outputs this one reads (empty in a chain: the previous layer)
    inputs: tuple[str, ...] = ()

    # -- shape and type inference ------------------------------------------------------------
    def infer_shape(self, in_shapes: tuple[tuple[int, ...], ...]) -> tuple[int, ...]:
        return tuple(in_shapes[0])

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Single-input form of :meth:`infer_shape`."""
        return self.infer_shape((in_shape,))

    def check(self, in_shapes, in_types, fail: Fail) -> None:
        """Refuse (``fail``) what the contract cannot compute exactly."""

    def types(self) -> dict[str, FixedType]:
        """Every fixed-point type this layer names, by YAML key."""
        return {"out_type": self.out_type}

    # -- YAML --------------------------------------------------------------------------------
    def params_to_yaml(self) -> dict:
        return {}

    @classmethod
    def params_from_yaml(cls, r, rec: dict, fld: str, in_shapes) -> dict:
        """Constructor keywords from the record's PARAMS (validated with reader ``r``)."""
        return {}

    # -- tables of its own (a kind with weights that are not k-bit codes) --------------------
    #: YAML keys naming the kind's own table files, written last (after ``out_type``)
    FILES: ClassVar[tuple[str, ...]] = ()

    def files_to_yaml(self, stem: str, out) -> dict:
        """The ``FILES`` entries; ``out.npy(name, array, dtype)`` / ``out.blob(name, bytes, **keys)``
        (:class:`.io.TableWriter`) add the files to the folder and return their entries."""
        return {}

    @classmethod
    def files_from_yaml(cls, r, rec: dict, fld: str, kw: dict, in_shapes) -> dict:
        """Constructor keywords from the ``FILES`` entries (read with ``r.table`` / ``r.blob``)."""
        return {}

    def weight_memory(self) -> dict | None:
        """This layer's weight memory record (:func:`.io.weight_memory_report`); None: no weights."""
        return None

    # -- data --------------------------------------------------------------------------------
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
            elif f.name == "inputs":
                if tuple(a) != tuple(b):
                    return False
            elif a != b:
                return False
        return True


def _pair(v) -> list[int]:
    return [int(s) for s in v]


@dataclass(eq=False)
class Input(Layer):
    kind: ClassVar[str] = "input"
    arity: ClassVar[tuple[int, int]] = (0, 0)
    shape: tuple[int, ...] = ()

    def infer_shape(self, in_shapes=()):
        return tuple(int(s) for s in self.shape)

    def output_shape(self, in_shape=None):
        return self.infer_shape()

    def check(self, in_shapes, in_types, fail):
        # (n,) a vector, (h, w, c) an image, (n_nodes, f) the node features of a graph (ir/gnn.py)
        if not self.shape or any(int(s) <= 0 for s in self.shape) or len(self.shape) not in (1, 2, 3):
            fail("shape", f"expected (n,), (n_nodes, f) or (h, w, c) with positive sizes, got {self.shape}")


# --------------------------------------------------------------------------------- weighted

@dataclass(eq=False)
class Weighted(Layer):
    """Shared fields of the weighted kinds: the arithmetic contract's constants.

    acc_j = sum_i x_i * levels[c_ij];  y_j = acc_j * s_j + b_j;  out_j = requant(y_j).
    """

    TABLES: ClassVar[tuple[str, ...]] = ("codes", "scale", "bias")
    bits: int = 2
    #: only read when ``levels`` is not given: the named table to use ('odd' or 'int');
    #: afterwards the table's name, or 'custom'
    encoding: str = "odd"
    codes: np.ndarray = None  # int8, k-bit signed codes
    scale: np.ndarray = None  # int64 mantissas of s_j, one per output channel
    scale_type: FixedType = None
    bias: np.ndarray = None  # int64 mantissas of b_j, one per output channel
    bias_type: FixedType = None
    accum_type: FixedType = None
    #: 'dsp' lets the tool map multiplies to DSPs; 'fabric' forces LUTs (HLS only).
    multiplier: str = "auto"
    #: int64 multiplier per code, 2**bits entries in code order (see ``ir.levels``)
    levels: np.ndarray = None

    def __post_init__(self):
        if self.levels is None:
            if isinstance(self.bits, int) and 1 <= self.bits <= 8 and self.encoding in ("odd", "int"):
                self.levels = named_levels(self.encoding, self.bits)
        else:
            self.levels = np.asarray(self.levels, dtype=np.int64)
            if isinstance(self.bits, int) and 1 <= self.bits <= 8:
                self.encoding = levels_name(self.levels, self.bits) or "custom"

    @property
    def n_out(self) -> int:
        return int(self.codes.shape[-1])

    def multipliers(self) -> np.ndarray:
        """The integer multiplier d of every weight (int64, the codes' shape)."""
        return multipliers(self.codes, self.levels, self.bits)

    def multipliers_by_output(self) -> np.ndarray:
        """d as (fan-in, n_out): the matrix of the layer's products, one column per output."""
        d = self.multipliers()
        return d.reshape(-1, d.shape[-1])

    def product_frac(self, in_type: FixedType) -> int:
        """Fractional bits of y = acc * s + b, before the one requantisation."""
        return max(in_type.frac + self.scale_type.frac, self.bias_type.frac)

    def types(self):
        return {"accum_type": self.accum_type, "scale_type": self.scale_type,
                "bias_type": self.bias_type, "out_type": self.out_type}

    def fan_in(self) -> int:
        return int(math.prod(self.codes.shape[:-1]))

    # -- YAML
    GEOMETRY: ClassVar[tuple[str, ...]] = ()

    def params_to_yaml(self):
        out = {"bits": int(self.bits), "levels": [int(v) for v in self.levels],
               "multiplier": str(self.multiplier)}
        for g in self.GEOMETRY:
            out[g] = _pair(getattr(self, g))
        for t in ("accum_type", "scale_type", "bias_type"):
            out[t] = str(getattr(self, t))
        return out

    @classmethod
    def params_from_yaml(cls, r, rec, fld, in_shapes):
        bits = r.int_(rec["bits"], f"{fld}.bits", 1, 8)
        kw = {"bits": bits, "multiplier": r.str_(rec["multiplier"], f"{fld}.multiplier", MULTIPLIERS)}
        if "levels" in rec:
            lv = rec["levels"]
            if not isinstance(lv, list) or len(lv) != 1 << bits:
                r.fail(f"{fld}.levels", f"expected a list of {1 << bits} integers (one per {bits}-bit code)")
            kw["levels"] = np.array([r.int_(v, f"{fld}.levels[{i}]", -MAX_LEVEL, MAX_LEVEL)
                                     for i, v in enumerate(lv)], dtype=np.int64)
        else:  # format v1: a named table
            kw["encoding"] = r.str_(rec["encoding"], f"{fld}.encoding", ("odd", "int"))
        if "stride" in cls.GEOMETRY:
            kw["stride"] = r.ints(rec["stride"], f"{fld}.stride", 2, 1, r.MAX_GEOMETRY)
            kw["padding"] = r.ints(rec["padding"], f"{fld}.padding", 4, 0, r.MAX_GEOMETRY)
        for t in ("accum_type", "scale_type", "bias_type"):
            kw[t] = r.fixed(rec[t], f"{fld}.{t}")
        return kw

    @classmethod
    def codes_shape_problem(cls, codes_shape, in_shapes) -> tuple[str, str] | None:
        """(field, why) a codes table of this shape cannot sit on these inputs, or None."""
        return None

    # -- check
    def check(self, in_shapes, in_types, fail):
        typ = in_types[0]
        if not isinstance(self.bits, int) or not 1 <= self.bits <= 8:
            fail("bits", f"expected an integer 1..8, got {self.bits!r}")
        if self.multiplier not in MULTIPLIERS:
            fail("multiplier", f"expected auto, dsp or fabric, got {self.multiplier!r}")
        lv = self.levels
        if lv is None:
            fail("encoding", f"expected one of ('odd', 'int') or a levels table, got {self.encoding!r}")
        if (not isinstance(lv, np.ndarray) or lv.dtype != np.int64 or lv.shape != (1 << self.bits,)
                or int(np.max(np.abs(lv))) > MAX_LEVEL):
            fail("levels", f"expected {1 << self.bits} int64 levels with |level| <= {MAX_LEVEL}")
        codes = self.codes
        if not isinstance(codes, np.ndarray):
            fail("codes", "missing")
        problem = self.codes_shape_problem(codes.shape, in_shapes)
        if problem:
            fail(*problem)
        lo, hi = code_range(self.bits)
        if codes.dtype != np.int8 or codes.size == 0 or int(codes.min()) < lo or int(codes.max()) > hi:
            fail("codes", f"expected int8 codes in [{lo}, {hi}] ({self.bits} bits)")
        check_contract(self, typ, self.multipliers_by_output(), fail)

    def weight_memory(self) -> dict:
        n, n_out = int(self.codes.size), self.n_out
        scale_bits, bias_bits = n_out * self.scale_type.width, n_out * self.bias_type.width
        return {"name": self.name, "kind": self.kind, "n_weights": n, "bits": int(self.bits),
                "code_bits": n * int(self.bits), "image_bytes": packed_size(n, self.bits),
                "scale_bits": scale_bits, "bias_bits": bias_bits, "scale_bias_bits": scale_bits + bias_bits,
                "float32_bits": 32 * n}


def check_contract(layer, typ: FixedType, d: np.ndarray, fail: Fail) -> None:
    """The checks every weighted kind shares (``layer`` has ``n_out``, ``scale``/``scale_type``,
    ``bias``/``bias_type``, ``accum_type``, ``product_frac`` and ``out_type``): the per-channel
    constants, an accumulator holding sum_i x_i d_ij for the multipliers ``d`` (fan-in, n_out),
    y = acc * s + b inside the exact int64 range, and a fixed-point output."""
    n = layer.n_out
    for name, arr, t in (("scale", layer.scale, layer.scale_type), ("bias", layer.bias, layer.bias_type)):
        if not isinstance(arr, np.ndarray) or arr.dtype != np.int64 or arr.shape != (n,):
            fail(name, f"expected {n} int64 mantissas")
        if arr.size and (int(arr.min()) < t.min_mantissa or int(arr.max()) > t.max_mantissa):
            fail(name, f"mantissas outside {t}")
    acc = layer.accum_type
    if acc.frac != typ.frac or not acc.signed:
        fail("accum_type", f"expected a signed type with {typ.frac} fractional bits (the input's), got {acc}")
    need = accumulator_type(typ, d)
    if acc.width < need.width:
        fail("accum_type", f"{acc} can overflow: the worst case needs {need}")
    # y = acc * s + b must stay inside the simulator's exact int64 range
    y_frac = layer.product_frac(typ)
    acc_bits = acc.width - 1 + (y_frac - typ.frac - layer.scale_type.frac)
    sb = layer.scale_type.width - (0 if layer.scale_type.signed else 1)
    bb = layer.bias_type.width - 1 + (y_frac - layer.bias_type.frac)
    y_bits = max(acc_bits + sb, bb) + 2
    if y_bits > MAX_EXACT_WIDTH:
        fail("scale_type", f"acc*s+b needs {y_bits} bits, more than the {MAX_EXACT_WIDTH} computed exactly")
    if layer.out_type.kind != "fixed":
        # ap_types converts a signed ap_fixed into ap_int with quirks (-1 for small negatives)
        fail("out_type", f"expected an ap_fixed/ap_ufixed output type, got {layer.out_type}")


@dataclass(eq=False)
class Dense(Weighted):
    kind: ClassVar[str] = "dense"
    PARAMS: ClassVar[tuple[str, ...]] = ("bits", "levels", "multiplier", "accum_type", "scale_type", "bias_type")

    @property
    def n_in(self) -> int:
        return int(self.codes.shape[0])

    def infer_shape(self, in_shapes):
        return (self.n_out,)

    @classmethod
    def codes_shape_problem(cls, codes_shape, in_shapes):
        shape = in_shapes[0]
        if len(shape) != 1:
            return "", f"dense needs a flat input, got shape {tuple(shape)} (add a flatten)"
        if len(codes_shape) != 2 or codes_shape[0] != shape[0]:
            return "codes", f"expected shape ({shape[0]}, n_out), got {tuple(codes_shape)}"
        return None


def window_out(size: int, pad: int, k: int, stride: int) -> int:
    return (size + pad - k) // stride + 1


@dataclass(eq=False)
class _Conv(Weighted):
    GEOMETRY: ClassVar[tuple[str, ...]] = ("stride", "padding")
    #: the codes table's shape as messages spell it; its comma count gives the rank
    CODES_SPELLING: ClassVar[str] = ""
    PARAMS: ClassVar[tuple[str, ...]] = ("bits", "levels", "multiplier", "stride", "padding", "accum_type",
                                         "scale_type", "bias_type")
    stride: tuple[int, int] = (1, 1)
    #: zero padding (top, bottom, left, right)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.codes.shape[0]), int(self.codes.shape[1])

    def infer_shape(self, in_shapes):
        return conv_out_shape(self, in_shapes[0])

    @classmethod
    def codes_shape_problem(cls, codes_shape, in_shapes):
        shape = in_shapes[0]
        want = cls.CODES_SPELLING.format(c=shape[2] if len(shape) == 3 else "c")
        if len(shape) != 3:
            return "", f"{cls.kind} needs an (h, w, c) input, got shape {tuple(shape)}"
        if len(codes_shape) != want.count(",") + 1 or codes_shape[2] != shape[2]:
            return "codes", f"expected shape {want}, got {tuple(codes_shape)}"
        return None

    def check(self, in_shapes, in_types, fail):
        check_conv_geometry(self, fail)
        super().check(in_shapes, in_types, fail)


def conv_out_shape(layer, in_shape) -> tuple[int, int, int]:
    """(oh, ow, n_out) of a convolution ``layer`` (``kernel``, ``stride``, ``padding``, ``n_out``)."""
    h, w, _ = in_shape
    (kh, kw), (pt, pb, pl, pr) = layer.kernel, layer.padding
    return window_out(h, pt + pb, kh, layer.stride[0]), window_out(w, pl + pr, kw, layer.stride[1]), layer.n_out


def check_conv_geometry(layer, fail: Fail) -> None:
    if len(layer.stride) != 2 or len(layer.padding) != 4 or min(layer.stride) < 1 or min(layer.padding) < 0:
        fail("stride", "stride must be positive and padding (top, bottom, left, right) non-negative")


@dataclass(eq=False)
class Conv2D(_Conv):
    kind: ClassVar[str] = "conv2d"
    CODES_SPELLING: ClassVar[str] = "(kh, kw, {c}, c_out)"


@dataclass(eq=False)
class DepthwiseConv2D(_Conv):
    """One k x k filter per channel (PyTorch groups = channels, multiplier 1)."""

    kind: ClassVar[str] = "depthwise_conv2d"
    CODES_SPELLING: ClassVar[str] = "(kh, kw, {c})"


# --------------------------------------------------------------------------------- simple kinds

@dataclass(eq=False)
class ReLU(Layer):
    kind: ClassVar[str] = "relu"

    def check(self, in_shapes, in_types, fail):
        typ = in_types[0]
        # exact: every non-negative input value must be representable unchanged
        if self.out_type.frac < typ.frac or self.out_type.max_value < typ.max_value:
            fail("out_type", f"{self.out_type} cannot hold every non-negative {typ} value exactly")


@dataclass(eq=False)
class Pool2D(Layer):
    PARAMS: ClassVar[tuple[str, ...]] = ("pool", "stride")
    pool: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)

    def infer_shape(self, in_shapes):
        h, w, c = in_shapes[0]
        return (window_out(h, 0, self.pool[0], self.stride[0]), window_out(w, 0, self.pool[1], self.stride[1]), c)

    def params_to_yaml(self):
        return {"pool": _pair(self.pool), "stride": _pair(self.stride)}

    @classmethod
    def params_from_yaml(cls, r, rec, fld, in_shapes):
        pool = r.ints(rec["pool"], f"{fld}.pool", 2, 1, r.MAX_GEOMETRY)
        stride = r.ints(rec["stride"], f"{fld}.stride", 2, 1, r.MAX_GEOMETRY)
        shape = in_shapes[0]
        if len(shape) == 3 and (pool[0] > shape[0] or pool[1] > shape[1]):
            r.fail(f"{fld}.pool", f"window {list(pool)} is larger than the input {list(shape)}")
        return {"pool": pool, "stride": stride}

    def check(self, in_shapes, in_types, fail):
        if len(in_shapes[0]) != 3:
            fail("", f"pooling needs an (h, w, c) input, got {in_shapes[0]}")
        if len(self.pool) != 2 or len(self.stride) != 2 or min(self.pool) < 1 or min(self.stride) < 1:
            fail("pool", "pool and stride must be two positive integers each")
        if self.pool[0] > in_shapes[0][0] or self.pool[1] > in_shapes[0][1]:
            fail("pool", f"window {list(self.pool)} is larger than the input {list(in_shapes[0])}")


@dataclass(eq=False)
class MaxPool2D(Pool2D):
    kind: ClassVar[str] = "maxpool2d"

    def check(self, in_shapes, in_types, fail):
        super().check(in_shapes, in_types, fail)
        if self.out_type != in_types[0]:
            fail("out_type", f"max pooling keeps its input type {in_types[0]}, got {self.out_type}")


@dataclass(eq=False)
class AvgPool2D(Pool2D):
    kind: ClassVar[str] = "avgpool2d"

    def check(self, in_shapes, in_types, fail):
        super().check(in_shapes, in_types, fail)
        typ = in_types[0]
        area = self.pool[0] * self.pool[1]
        extra = area.bit_length() - 1
        if area != 1 << extra:
            fail("pool", f"average pooling needs a power-of-two window to be exact, got {list(self.pool)}")
        exact = FixedType(width=typ.width, integer=typ.integer, signed=typ.signed)
        if (self.out_type.frac < typ.frac + extra or self.out_type.max_value < exact.max_value
                or self.out_type.min_value > exact.min_value):
            fail("out_type", f"{self.out_type} cannot hold the exact mean of {typ} values")


@dataclass(eq=False)
class GlobalAvgPool2D(Layer):
    """Mean over H and W per channel: (h, w, c) -> (c,).

    Exact sum of the h*w values, times the pinned constant ``mult`` (a mantissa of
    ``mult_type``, about 1/(h*w)), then the ONE requantisation into ``out_type``. With a
    power-of-two window ``mult`` is exactly 1/(h*w) and the layer is an exact mean.
    """

    kind: ClassVar[str] = "global_avg_pool"
    PARAMS: ClassVar[tuple[str, ...]] = ("mult", "mult_type")
    mult: int = 1
    mult_type: FixedType = None

    @staticmethod
    def constant(window: int, frac: int) -> tuple[int, FixedType]:
        """(mult, mult_type) for 1/window with ``frac`` fractional bits (rounded to nearest)."""
        m = max(1, (2 * (1 << frac) + window) // (2 * window))
        width = max(1, m.bit_length())
        return m, FixedType(width=width, integer=width - frac, signed=False)

    def infer_shape(self, in_shapes):
        return (int(in_shapes[0][-1]),)

    def sum_type(self, in_type: FixedType, in_shape) -> FixedType:
        return aligned_sum_type([in_type], count=int(in_shape[0]) * int(in_shape[1]))

    def types(self):
        return {"mult_type": self.mult_type, "out_type": self.out_type}

    def params_to_yaml(self):
        return {"mult": int(self.mult), "mult_type": str(self.mult_type)}

    @classmethod
    def params_from_yaml(cls, r, rec, fld, in_shapes):
        t = r.fixed(rec["mult_type"], f"{fld}.mult_type")
        return {"mult": r.int_(rec["mult"], f"{fld}.mult", 1, (1 << 62)), "mult_type": t}

    def check(self, in_shapes, in_types, fail):
        shape, typ = in_shapes[0], in_types[0]
        if len(shape) != 3:
            fail("", f"global_avg_pool needs an (h, w, c) input, got {tuple(shape)}")
        t = self.mult_type
        if t is None or t.kind != "fixed" or t.signed:
            fail("mult_type", f"expected an unsigned ap_ufixed type, got {t}")
        if not isinstance(self.mult, int) or not 1 <= self.mult <= t.max_mantissa:
            fail("mult", f"expected an integer mantissa in [1, {t.max_mantissa}] of {t}")
        s = self.sum_type(typ, shape)
        if s.width + t.width + 1 > MAX_EXACT_WIDTH:
            fail("mult_type", f"sum*mult needs {s.width + t.width + 1} bits, more than the "
                 f"{MAX_EXACT_WIDTH} computed exactly")
        if self.out_type.kind != "fixed":
            fail("out_type", f"expected an ap_fixed/ap_ufixed output type, got {self.out_type}")


@dataclass(eq=False)
class Add(Layer):
    """Elementwise sum of 2..8 inputs of one shape: every input brought exactly to the
    largest fractional width, summed exactly, then the ONE requantisation into out_type."""

    kind: ClassVar[str] = "add"
    arity: ClassVar[tuple[int, int]] = (2, 8)

    def sum_type(self, in_types) -> FixedType:
        return aligned_sum_type(in_types)

    def check(self, in_shapes, in_types, fail):
        first = tuple(in_shapes[0])
        for name, shape in zip(self.inputs, in_shapes):
            if tuple(shape) != first:
                fail("inputs", f"add needs inputs of one shape: '{self.inputs[0]}' gives {list(first)}, "
                     f"'{name}' gives {list(shape)}")
        s = self.sum_type(in_types)
        if s.width > MAX_EXACT_WIDTH:
            fail("inputs", f"the exact sum needs {s.width} bits, more than the {MAX_EXACT_WIDTH} computed exactly")
        if self.out_type.kind != "fixed":
            fail("out_type", f"expected an ap_fixed/ap_ufixed output type, got {self.out_type}")


@dataclass(eq=False)
class Flatten(Layer):
    kind: ClassVar[str] = "flatten"

    def infer_shape(self, in_shapes):
        return (int(np.prod(in_shapes[0])),)

    def check(self, in_shapes, in_types, fail):
        if self.out_type != in_types[0]:
            fail("out_type", f"flatten keeps its input type {in_types[0]}, got {self.out_type}")


#: kind name -> its class: what the model file format reads and writes (:mod:`.io`)
LAYER_KINDS: dict[str, type[Layer]] = {}


def register_kind(cls: type[Layer]) -> type[Layer]:
    """Register a layer class under its ``kind`` (usable as a class decorator), from inside or
    outside the package: the folder format reads and writes it from then on. A kind already
    taken by another class is refused (a built-in kind cannot be replaced by accident)."""
    if not (isinstance(cls, type) and issubclass(cls, Layer)) or cls.kind in ("", Layer.kind):
        raise TypeError(f"expected a Layer subclass with its own kind, got {cls!r}")
    have = LAYER_KINDS.get(cls.kind)
    if have is not None and have is not cls:
        raise ValueError(f"layer kind '{cls.kind}' is already registered by {have.__name__}")
    LAYER_KINDS[cls.kind] = cls
    return cls


for _cls in (Input, Dense, Conv2D, DepthwiseConv2D, ReLU, MaxPool2D, AvgPool2D, GlobalAvgPool2D, Add, Flatten):
    register_kind(_cls)


def fan_in(layer: Weighted) -> int:
    return layer.fan_in()


def check_buildable_types(layer: Layer, fail: Fail) -> None:
    """Refuse types no back end can build (named by the layer's field)."""
    for key, t in layer.types().items():
        if t is not None and t.overflow in UNBUILDABLE_OVERFLOW:
            fail(key, f"{t}: {t.overflow} is not supported (hls4ml has no such mode); use AP_WRAP or AP_SAT")


__all__ = ["Add", "AvgPool2D", "Conv2D", "Dense", "DepthwiseConv2D", "Flatten", "GlobalAvgPool2D", "Input",
           "LAYER_KINDS", "Layer", "MaxPool2D", "MULTIPLIERS", "Pool2D", "ReLU", "Weighted", "fan_in",
           "check_buildable_types", "check_contract", "check_conv_geometry", "conv_out_shape",
           "register_kind", "window_out"]
