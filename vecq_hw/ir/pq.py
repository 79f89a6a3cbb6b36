"""Product quantisation in its native form (Stock et al., ICLR 2020): vector levels.

Kinds ``pq_dense`` and ``pq_conv2d`` (docs/FORMAT.md, "PQ layers"): the scalar levels table of
the weighted kinds becomes a *codebook* of K codewords of d integers, and each output channel's
filter is cut into blocks of d weights, each stored as the index of its codeword (scalar levels
are the case d = 1). Stored:

* ``codebook`` (K, d) int16: the integer codewords, |c| <= 32767;
* ``indices`` (n_blocks, n_out) uint16: block b of output channel j is codeword
  ``indices[b, j]`` (< K <= 2^index_bits);
* ``scale``, ``bias``: the contract's s_j and b_j (per channel; a per-layer scale is the case of
  equal s_j).

Blocks follow PyTorch's order of a filter: block b of output j holds entries [b*d, (b+1)*d) of
the channel's flattened filter in PyTorch order, (C_in, kh, kw) for a convolution (d = 9: one
3x3 kernel slice, d = 18: two input channels), the input features for a dense layer. The integer
model's tables are channels-last: fan-in position i of a convolution is (u, v, c) in (kh, kw,
C_in) order, i = (u*kw + v)*C_in + c, and stands for PyTorch's t = (c*kh + u)*kw + v. A dense
layer after a channels-last flatten of an (h, w, c) tensor reads PyTorch's (c, h, w) features in
another order: ``flatten_channels`` = c says so (input i = p*c + ch, p the pixel, is PyTorch's
t = ch*(n_in/c) + p); 1 means the inputs' own order. Both are one rule, :meth:`PqWeighted.view`:
the fan-in seen as (rows, cols, chan) channels-last against PyTorch's (chan, rows, cols).

What it computes (the arithmetic contract; d_ij the weight's integer multiplier):

    d_ij  = codebook[indices[b, j], e]      t(i) = b*d + e (PyTorch's position of fan-in i)
    acc_j = sum_i x_i * d_ij                exact
    y_j   = acc_j * s_j + b_j               exact
    out_j = requant(y_j)                    the ONE rounding/overflow step into out_type

so ``accum_type`` is checked like any weighted kind's, against d. The back ends may sum per
block (sum_b dot(x_block, codeword)) or multiply the inputs by every codeword first and then
pick (sum_b p[b, indices[b, j]]): integer sums reorder freely, the result is the same acc_j.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..fixed import FixedType
from .arith import signed_width_for
from .layers import Layer, check_contract, check_conv_geometry, conv_out_shape, register_kind
from .levels import MAX_LEVEL

#: the widest index (uint16 table)
MAX_INDEX_BITS = 16
_TYPES = ("accum_type", "scale_type", "bias_type")


@dataclass(eq=False)
class PqWeighted(Layer):
    """The fields and checks shared by ``pq_dense`` and ``pq_conv2d`` (see the module)."""

    FILES: ClassVar[tuple[str, ...]] = ("codebook", "indices", "scale", "bias")
    GEOMETRY: ClassVar[tuple[str, ...]] = ()
    index_bits: int = 8
    codebook: np.ndarray = None  # int16 (K, d)
    indices: np.ndarray = None  # uint16 (n_blocks, n_out)
    scale: np.ndarray = None  # int64 mantissas of s_j
    scale_type: FixedType = None
    bias: np.ndarray = None  # int64 mantissas of b_j
    bias_type: FixedType = None
    #: type of acc_j = sum_i x_i d_ij; the input's frac
    accum_type: FixedType = None

    def __post_init__(self):
        for g in self.GEOMETRY:
            setattr(self, g, tuple(int(v) for v in getattr(self, g)))

    # -- the tables ----------------------------------------------------------------------------
    @property
    def n_out(self) -> int:
        return int(self.indices.shape[1])

    @property
    def block(self) -> int:
        """d: the weights of one block."""
        return int(self.codebook.shape[1])

    @property
    def codewords(self) -> int:
        """K."""
        return int(self.codebook.shape[0])

    @property
    def n_blocks(self) -> int:
        return int(self.indices.shape[0])

    def fan_in(self) -> int:
        return self.n_blocks * self.block

    def view(self) -> tuple[int, int, int]:  # pragma: no cover
        """The fan-in as (rows, cols, chan), channels-last here, (chan, rows, cols) in PyTorch."""
        raise NotImplementedError

    def torch_positions(self) -> np.ndarray:
        """PyTorch's flat filter position t of every fan-in position i (int64, (fan-in,))."""
        rows, cols, chan = self.view()
        return np.arange(rows * cols * chan, dtype=np.int64).reshape(chan, rows, cols).transpose(1, 2, 0).reshape(-1)

    def multipliers_by_output(self) -> np.ndarray:
        """d as (fan-in, n_out), fan-in in this model's (channels-last) order."""
        cb = self.codebook.astype(np.int64)
        w_torch = cb[self.indices.astype(np.int64).T].reshape(self.n_out, -1)  # (n_out, fan-in), PyTorch order
        return np.ascontiguousarray(w_torch[:, self.torch_positions()].T)

    def multipliers(self) -> np.ndarray:
        """d_ij in the table layout of the kind's scalar sibling: (n_in, n_out) / (kh, kw, c_in, n_out)."""
        return self.multipliers_by_output().reshape(self.fan_in_shape() + (self.n_out,))

    def fan_in_shape(self) -> tuple[int, ...]:
        return (self.fan_in(),)

    def codeword_width(self) -> int:
        """Bits of one stored codeword entry (two's complement, the widest of the codebook)."""
        cb = self.codebook.astype(np.int64)
        return signed_width_for(int(cb.min(initial=0)), int(cb.max(initial=0)))

    def product_frac(self, in_type: FixedType) -> int:
        """Fractional bits of y = acc * s + b, before the one requantisation."""
        return max(in_type.frac + self.scale_type.frac, self.bias_type.frac)

    def types(self):
        return {"accum_type": self.accum_type, "scale_type": self.scale_type, "bias_type": self.bias_type,
                "out_type": self.out_type}

    # -- YAML --------------------------------------------------------------------------------
    def params_to_yaml(self):
        out = {g: [int(v) for v in getattr(self, g)] for g in self.GEOMETRY}
        out["index_bits"] = int(self.index_bits)
        out.update(self.extra_params())
        out.update({t: str(getattr(self, t)) for t in _TYPES})
        return out

    def extra_params(self) -> dict:
        return {}

    @classmethod
    def params_from_yaml(cls, r, rec, fld, in_shapes):
        kw = {}
        if "kernel" in cls.GEOMETRY:
            kw["kernel"] = r.ints(rec["kernel"], f"{fld}.kernel", 2, 1, r.MAX_GEOMETRY)
            kw["stride"] = r.ints(rec["stride"], f"{fld}.stride", 2, 1, r.MAX_GEOMETRY)
            kw["padding"] = r.ints(rec["padding"], f"{fld}.padding", 4, 0, r.MAX_GEOMETRY)
        kw["index_bits"] = r.int_(rec["index_bits"], f"{fld}.index_bits", 1, MAX_INDEX_BITS)
        if "flatten_channels" in cls.PARAMS:
            kw["flatten_channels"] = r.int_(rec["flatten_channels"], f"{fld}.flatten_channels", 1, 1 << 28)
        kw.update({t: r.fixed(rec[t], f"{fld}.{t}") for t in _TYPES})
        return kw

    def files_to_yaml(self, stem, out):
        return {"codebook": out.npy("codebook", self.codebook, "int16"),
                "indices": out.npy("indices", self.indices, "uint16"),
                "scale": out.npy("scale", self.scale, "int64"), "bias": out.npy("bias", self.bias, "int64")}

    @classmethod
    def files_from_yaml(cls, r, rec, fld, kw, in_shapes):
        fan_in = cls.expected_fan_in(kw, in_shapes)
        got = {}

        def codebook_shape(shape, sfld):
            if len(shape) != 2 or shape[0] > 1 << kw["index_bits"]:
                r.fail(sfld, f"expected [K, d] with K <= 2^index_bits = {1 << kw['index_bits']}, got {list(shape)}")
            got["d"] = shape[1]

        def indices_shape(shape, sfld):
            d = got["d"]
            if fan_in is not None and fan_in % d:
                r.fail(sfld, f"a block of d = {d} weights does not tile the filter of {fan_in} weights")
            want = "n_blocks" if fan_in is None else str(fan_in // d)
            if len(shape) != 2 or (fan_in is not None and shape[0] != fan_in // d):
                r.fail(sfld, f"expected [{want}, n_out] (blocks of {d} in a filter of {fan_in}), got {list(shape)}")
            got["n_out"] = shape[1]

        def vec_shape(shape, sfld):
            if shape != (got["n_out"],):
                r.fail(sfld, f"expected [{got['n_out']}] (one per output channel), got {list(shape)}")

        out = {"codebook": r.table(rec["codebook"], f"{fld}.codebook", "int16", codebook_shape),
               "indices": r.table(rec["indices"], f"{fld}.indices", "uint16", indices_shape)}
        out.update({k: r.table(rec[k], f"{fld}.{k}", "int64", vec_shape) for k in ("scale", "bias")})
        return out

    @classmethod
    def expected_fan_in(cls, kw: dict, in_shapes) -> int | None:  # pragma: no cover
        """The fan-in the input shapes and parameters give (None: the input does not fit; check says why)."""
        raise NotImplementedError

    # -- check -------------------------------------------------------------------------------
    def check(self, in_shapes, in_types, fail):
        ib = self.index_bits
        if isinstance(ib, bool) or not isinstance(ib, int) or not 1 <= ib <= MAX_INDEX_BITS:
            fail("index_bits", f"expected an integer 1..{MAX_INDEX_BITS}, got {ib!r}")
        cb = self.codebook
        if not isinstance(cb, np.ndarray) or cb.dtype != np.int16 or cb.ndim != 2 or min(cb.shape) < 1:
            fail("codebook", "expected an int16 table (K, d) of integer codewords")
        if cb.shape[0] > 1 << ib:
            fail("codebook", f"K = {cb.shape[0]} codewords do not fit {ib}-bit indices (at most {1 << ib})")
        if int(np.abs(cb.astype(np.int64)).max()) > MAX_LEVEL:
            fail("codebook", f"expected |codeword entries| <= {MAX_LEVEL}")
        idx = self.indices
        if not isinstance(idx, np.ndarray) or idx.dtype != np.uint16 or idx.ndim != 2 or min(idx.shape) < 1:
            fail("indices", "expected a uint16 table (n_blocks, n_out)")
        fan_in = self.expected_fan_in(self.__dict__, in_shapes)
        if fan_in is None:
            fail("", self.input_problem(in_shapes))
        if fan_in % self.block:
            fail("codebook", f"a block of d = {self.block} weights does not tile the filter of {fan_in} weights")
        if idx.shape[0] != fan_in // self.block:
            fail("indices", f"expected shape ({fan_in // self.block}, n_out) (blocks of {self.block} in a filter "
                            f"of {fan_in}), got {tuple(idx.shape)}")
        if int(idx.max()) >= self.codewords:
            fail("indices", f"index {int(idx.max())} is not below K = {self.codewords}")
        check_contract(self, in_types[0], self.multipliers_by_output(), fail)

    def input_problem(self, in_shapes) -> str:  # pragma: no cover
        raise NotImplementedError

    def weight_memory(self) -> dict:
        n = self.fan_in() * self.n_out
        index = self.n_blocks * self.n_out * int(self.index_bits)
        book = self.codewords * self.block * self.codeword_width()
        scale_bits, bias_bits = self.n_out * self.scale_type.width, self.n_out * self.bias_type.width
        return {"name": self.name, "kind": self.kind, "n_weights": n, "bits": (index + book) / n,
                "block": self.block, "codewords": self.codewords, "index_bits": index, "codebook_bits": book,
                "code_bits": index + book, "image_bytes": (index + 7) // 8 + (book + 7) // 8,
                "scale_bits": scale_bits, "bias_bits": bias_bits, "scale_bias_bits": scale_bits + bias_bits,
                "float32_bits": 32 * n}


@register_kind
@dataclass(eq=False)
class PqDense(PqWeighted):
    kind: ClassVar[str] = "pq_dense"
    PARAMS: ClassVar[tuple[str, ...]] = ("index_bits", "flatten_channels") + _TYPES
    #: the input is a channels-last flatten of a tensor with this many channels (1: plain order)
    flatten_channels: int = 1

    def view(self):
        c = int(self.flatten_channels)
        return self.fan_in() // c, 1, c

    def extra_params(self):
        return {"flatten_channels": int(self.flatten_channels)}

    def infer_shape(self, in_shapes):
        return (self.n_out,)

    @classmethod
    def expected_fan_in(cls, kw, in_shapes):
        x = in_shapes[0]
        return int(x[0]) if len(x) == 1 else None

    def input_problem(self, in_shapes):
        return f"pq_dense needs a flat input, got shape {tuple(in_shapes[0])} (add a flatten)"

    def check(self, in_shapes, in_types, fail):
        super().check(in_shapes, in_types, fail)
        c = self.flatten_channels
        if isinstance(c, bool) or not isinstance(c, int) or c < 1 or self.fan_in() % c:
            fail("flatten_channels", f"expected a divisor of the {self.fan_in()} inputs, got {c!r}")


@register_kind
@dataclass(eq=False)
class PqConv2D(PqWeighted):
    kind: ClassVar[str] = "pq_conv2d"
    GEOMETRY: ClassVar[tuple[str, ...]] = ("kernel", "stride", "padding")
    PARAMS: ClassVar[tuple[str, ...]] = GEOMETRY + ("index_bits",) + _TYPES
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    #: zero padding (top, bottom, left, right)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)

    def view(self):
        kh, kw = self.kernel
        return kh, kw, self.fan_in() // (kh * kw)

    def fan_in_shape(self):
        return self.view()

    def infer_shape(self, in_shapes):
        return conv_out_shape(self, in_shapes[0])

    @classmethod
    def expected_fan_in(cls, kw, in_shapes):
        x = in_shapes[0]
        return int(math.prod(kw["kernel"])) * int(x[2]) if len(x) == 3 else None

    def input_problem(self, in_shapes):
        return f"pq_conv2d needs an (h, w, c) input, got shape {tuple(in_shapes[0])}"

    def check(self, in_shapes, in_types, fail):
        if len(self.kernel) != 2 or min(self.kernel) < 1:
            fail("kernel", f"expected two positive sizes, got {self.kernel}")
        check_conv_geometry(self, fail)
        super().check(in_shapes, in_types, fail)
        h, w, _ = in_shapes[0]
        if any(s <= 0 for s in self.infer_shape(in_shapes)):
            fail("kernel", f"the kernel {self.kernel} does not fit the input {h}x{w} with this padding")


__all__ = ["MAX_INDEX_BITS", "PqConv2D", "PqDense", "PqWeighted"]
