"""ALQ in its native form (Qu et al., CVPR 2020): multi-bit binary bases stored as bit-planes.

Kinds ``alq_dense`` and ``alq_conv2d`` (docs/FORMAT.md, "ALQ layers"). Output channel j is one
ALQ group with n_j binary bases (0 <= n_j <= I, I = ``max_bases``); its weights are
``w_ij = s_j * sum_{b < n_j} alpha_jb * beta_ijb`` with beta in {-1, +1}. Stored:

* ``alpha`` (n_out, I) int16: the integer alpha mantissas of channel j on its grid s_j; the first
  n_j entries of row j are non-zero, the rest 0 (n_j is read from it);
* ``planes`` (fan-in dims..., K) int8 in {-1, +1}, K = sum_j n_j: column k is basis b of output
  j, k = n_0 + ... + n_{j-1} + b (channels in order, each channel's bases in order). On disk it
  is bits only (1 = +1), C order, LSB first: n_j bits per weight, nothing for a channel with
  0 bases;
* ``scale``, ``bias``: the contract's s_j and b_j (``scale_type``, ``bias_type``).

What it computes (the arithmetic contract, the sum split by basis):

    acc_jb = sum_i x_i * beta_ijb          exact: add or subtract x_i, no product
    acc_j  = sum_b alpha_jb * acc_jb       exact: one constant product per basis and output
    y_j    = acc_j * s_j + b_j             exact
    out_j  = requant(y_j)                  the ONE rounding/overflow step into out_type

Why exact and why ``accum_type`` is checked like any weighted kind's: with the integer
multipliers d_ij = sum_b alpha_jb * beta_ijb, acc_j = sum_b alpha_jb sum_i x_i beta_ijb =
sum_i x_i d_ij (integer sums reorder freely), so acc_j is the very accumulator of a levels layer
with weights d, bounded by :func:`.arith.accumulator_type` over d; the simulator may compute it
either way, the back ends build the per-basis form.
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

#: most bases per group (the alpha table's columns)
MAX_BASES = 8
#: the planes file's layout name (model.yaml ``planes.layout``)
PLANES_LAYOUT = "bit-planes-lsb-first"
_TYPES = ("accum_type", "scale_type", "bias_type")


def pack_planes(planes: np.ndarray) -> bytes:
    """The planes (+1/-1, read in C order) as bits, 1 for +1, LSB first, last byte zero-padded."""
    return np.packbits((np.asarray(planes).reshape(-1) > 0).astype(np.uint8), bitorder="little").tobytes()


def unpack_planes(data: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`pack_planes`; ValueError on a wrong length or nonzero padding bits."""
    n = math.prod(shape)
    buf = np.frombuffer(bytes(data), dtype=np.uint8)
    if buf.size != (n + 7) // 8:
        raise ValueError(f"{buf.size} bytes, expected {(n + 7) // 8} for {n} bits")
    bits = np.unpackbits(buf, bitorder="little")
    if bits[n:].any():
        raise ValueError("nonzero padding bits after the last plane bit")
    return np.where(bits[:n] == 1, 1, -1).astype(np.int8).reshape(shape)


@dataclass(eq=False)
class AlqWeighted(Layer):
    """The fields and checks shared by ``alq_dense`` and ``alq_conv2d`` (see the module)."""

    FILES: ClassVar[tuple[str, ...]] = ("alpha", "scale", "bias", "planes")
    GEOMETRY: ClassVar[tuple[str, ...]] = ()
    alpha: np.ndarray = None  # int16 (n_out, max_bases)
    planes: np.ndarray = None  # int8 +1/-1 (fan-in dims..., K)
    scale: np.ndarray = None  # int64 mantissas of s_j
    scale_type: FixedType = None
    bias: np.ndarray = None  # int64 mantissas of b_j
    bias_type: FixedType = None
    #: type of acc_j = sum_b alpha_jb acc_jb (= sum_i x_i d_ij); the input's frac
    accum_type: FixedType = None

    # -- the bases ---------------------------------------------------------------------------
    @property
    def n_out(self) -> int:
        return int(self.alpha.shape[0])

    @property
    def max_bases(self) -> int:
        return int(self.alpha.shape[1])

    def counts(self) -> np.ndarray:
        """n_j: the stored bases of each output channel (int64, (n_out,))."""
        return np.count_nonzero(self.alpha, axis=1).astype(np.int64)

    def column_outputs(self) -> np.ndarray:
        """The output channel of every plane column k (int64, (K,))."""
        return np.repeat(np.arange(self.n_out, dtype=np.int64), self.counts())

    def column_alpha(self) -> np.ndarray:
        """alpha of every plane column k (int64, (K,)): the non-zero entries in row order."""
        a = self.alpha.astype(np.int64)
        return a[a != 0]

    def fan_in(self) -> int:
        return int(math.prod(self.planes.shape[:-1]))

    def multipliers(self) -> np.ndarray:
        """d_ij = sum_b alpha_jb beta_ijb (int64, the fan-in dims + (n_out,))."""
        cols = self.planes.reshape(-1, self.planes.shape[-1]).astype(np.int64) * self.column_alpha()
        d = np.zeros((cols.shape[0], self.n_out), dtype=np.int64)
        np.add.at(d.T, self.column_outputs(), cols.T)
        return d.reshape(self.planes.shape[:-1] + (self.n_out,))

    def multipliers_by_output(self) -> np.ndarray:
        return self.multipliers().reshape(-1, self.n_out)

    def product_frac(self, in_type: FixedType) -> int:
        """Fractional bits of y = acc * s + b, before the one requantisation."""
        return max(in_type.frac + self.scale_type.frac, self.bias_type.frac)

    def types(self):
        return {"accum_type": self.accum_type, "scale_type": self.scale_type, "bias_type": self.bias_type,
                "out_type": self.out_type}

    def alpha_width(self) -> int:
        """Bits of one stored alpha constant (two's complement, the widest of the layer)."""
        a = self.column_alpha()
        return signed_width_for(int(a.min(initial=0)), int(a.max(initial=0)))

    # -- YAML --------------------------------------------------------------------------------
    def params_to_yaml(self):
        out = {g: [int(v) for v in getattr(self, g)] for g in self.GEOMETRY}
        out.update({t: str(getattr(self, t)) for t in _TYPES})
        return out

    @classmethod
    def params_from_yaml(cls, r, rec, fld, in_shapes):
        kw = {}
        if "stride" in cls.GEOMETRY:
            kw["stride"] = r.ints(rec["stride"], f"{fld}.stride", 2, 1, r.MAX_GEOMETRY)
            kw["padding"] = r.ints(rec["padding"], f"{fld}.padding", 4, 0, r.MAX_GEOMETRY)
        kw.update({t: r.fixed(rec[t], f"{fld}.{t}") for t in _TYPES})
        return kw

    def files_to_yaml(self, stem, out):
        return {"alpha": out.npy("alpha", self.alpha, "int16"), "scale": out.npy("scale", self.scale, "int64"),
                "bias": out.npy("bias", self.bias, "int64"),
                "planes": out.blob("planes", pack_planes(self.planes), layout=PLANES_LAYOUT,
                                   shape=[int(s) for s in self.planes.shape])}

    @classmethod
    def files_from_yaml(cls, r, rec, fld, kw, in_shapes):
        n = []

        def alpha_shape(shape, sfld):
            if len(shape) != 2 or not 1 <= shape[1] <= MAX_BASES:
                r.fail(sfld, f"expected [n_out, max_bases] with max_bases 1..{MAX_BASES}, got {list(shape)}")
            n[:] = shape

        def vec_shape(shape, sfld):
            if shape != (n[0],):
                r.fail(sfld, f"expected [{n[0]}] (one per output channel), got {list(shape)}")

        alpha = r.table(rec["alpha"], f"{fld}.alpha", "int16", alpha_shape)
        why = cls.alpha_problem(alpha)
        if why:  # before the planes: their shape follows from it
            r.fail(f"{fld}.alpha", why)
        kw = {"alpha": alpha, "scale": r.table(rec["scale"], f"{fld}.scale", "int64", vec_shape),
              "bias": r.table(rec["bias"], f"{fld}.bias", "int64", vec_shape)}
        k = int(np.count_nonzero(alpha))
        spec, pfld = rec["planes"], f"{fld}.planes"
        r.mapping(spec, pfld, ("file", "layout", "shape", "bytes", "sha256"))
        r.str_(spec["layout"], f"{pfld}.layout", (PLANES_LAYOUT,))
        shape = r.shape(spec["shape"], f"{pfld}.shape", (2, 4))
        problem = cls.planes_shape_problem(shape, in_shapes, k)
        if problem:
            r.fail(f"{pfld}.shape" if problem[0] == "planes" else fld, problem[1])
        data = r.blob(spec, pfld, ("layout", "shape"), (math.prod(shape) + 7) // 8)
        try:
            kw["planes"] = unpack_planes(data, shape)
        except ValueError as e:
            r.fail(f"{pfld}.file", f"{spec['file']}: {e}")
        return kw

    # -- check -------------------------------------------------------------------------------
    @classmethod
    def planes_shape_problem(cls, shape, in_shapes, k: int) -> tuple[str, str] | None:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def alpha_problem(a) -> str | None:
        """Why ``a`` is not an alpha table (int16 (n_out, max_bases), each row's non-zero entries
        first, at least one in the layer), or None."""
        if not isinstance(a, np.ndarray) or a.dtype != np.int16 or a.ndim != 2 or a.shape[0] < 1 \
                or not 1 <= a.shape[1] <= MAX_BASES:
            return f"expected an int16 table (n_out, max_bases) with max_bases 1..{MAX_BASES}"
        if int(np.abs(a.astype(np.int64)).max()) > MAX_LEVEL:
            return f"expected |alpha| <= {MAX_LEVEL}"
        nz = a != 0
        later = np.flatnonzero((~nz[:, :-1] & nz[:, 1:]).any(axis=1))
        if later.size:
            return (f"row {int(later[0])}: a zero before a non-zero alpha (a channel's stored bases come first, "
                    "each with a non-zero alpha)")
        if not nz.any():
            return "every channel has 0 bases (a constant layer); at least one basis must be stored"
        return None

    def check(self, in_shapes, in_types, fail):
        why = self.alpha_problem(self.alpha)
        if why:
            fail("alpha", why)
        p = self.planes
        if not isinstance(p, np.ndarray) or p.dtype != np.int8:
            fail("planes", "expected an int8 table of +1/-1 signs")
        problem = self.planes_shape_problem(p.shape, in_shapes, int(np.count_nonzero(self.alpha)))
        if problem:
            fail(*problem)
        if not np.all(np.abs(p) == 1):
            fail("planes", "expected +1/-1 signs only")
        check_contract(self, in_types[0], self.multipliers_by_output(), fail)

    def weight_memory(self) -> dict:
        n = self.fan_in() * self.n_out
        plane_bits = self.fan_in() * int(self.planes.shape[-1])
        scale_bits, bias_bits = self.n_out * self.scale_type.width, self.n_out * self.bias_type.width
        return {"name": self.name, "kind": self.kind, "n_weights": n, "bits": plane_bits / n,
                "bases": int(self.planes.shape[-1]), "code_bits": plane_bits, "image_bytes": (plane_bits + 7) // 8,
                "scale_bits": scale_bits, "bias_bits": bias_bits, "scale_bias_bits": scale_bits + bias_bits,
                "alpha_bits": int(self.planes.shape[-1]) * self.alpha_width(), "float32_bits": 32 * n}


@register_kind
@dataclass(eq=False)
class AlqDense(AlqWeighted):
    kind: ClassVar[str] = "alq_dense"
    PARAMS: ClassVar[tuple[str, ...]] = _TYPES

    def infer_shape(self, in_shapes):
        return (self.n_out,)

    @classmethod
    def planes_shape_problem(cls, shape, in_shapes, k):
        x = in_shapes[0]
        if len(x) != 1:
            return "", f"alq_dense needs a flat input, got shape {tuple(x)} (add a flatten)"
        if tuple(shape) != (x[0], k):
            return "planes", f"expected shape ({x[0]}, {k}) (inputs, stored bases), got {tuple(shape)}"
        return None


@register_kind
@dataclass(eq=False)
class AlqConv2D(AlqWeighted):
    kind: ClassVar[str] = "alq_conv2d"
    GEOMETRY: ClassVar[tuple[str, ...]] = ("stride", "padding")
    PARAMS: ClassVar[tuple[str, ...]] = GEOMETRY + _TYPES
    stride: tuple[int, int] = (1, 1)
    #: zero padding (top, bottom, left, right)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.planes.shape[0]), int(self.planes.shape[1])

    def infer_shape(self, in_shapes):
        return conv_out_shape(self, in_shapes[0])

    @classmethod
    def planes_shape_problem(cls, shape, in_shapes, k):
        x = in_shapes[0]
        if len(x) != 3:
            return "", f"alq_conv2d needs an (h, w, c) input, got shape {tuple(x)}"
        if len(shape) != 4 or shape[2] != x[2] or shape[3] != k:
            return "planes", f"expected shape (kh, kw, {x[2]}, {k}) (channels, stored bases), got {tuple(shape)}"
        return None

    def check(self, in_shapes, in_types, fail):
        check_conv_geometry(self, fail)
        super().check(in_shapes, in_types, fail)
        h, w, _ = in_shapes[0]
        if any(s <= 0 for s in self.infer_shape(in_shapes)):
            fail("planes", f"the kernel {self.kernel} does not fit the input {h}x{w} with this padding")


__all__ = ["AlqConv2D", "AlqDense", "AlqWeighted", "MAX_BASES", "PLANES_LAYOUT", "pack_planes", "unpack_planes"]
