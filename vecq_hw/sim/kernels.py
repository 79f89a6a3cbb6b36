"""Per-layer kernels of the bit-accurate simulator: numpy, vectorised over the batch.

Every kernel maps mantissas of its input type to mantissas of its ``out_type`` exactly as the
arithmetic contract (``shared/DESIGN.md``) defines it (int64, or the same integers in a float
carrier: ``float_requant``):

* Dense / Conv2D / DepthwiseConv2D: ``acc = sum_i x_i * d_i`` with d = levels[code]
  (exact, frac = input frac), then ``y = acc * s + b`` (exact, frac =
  ``layer.product_frac(in_type)``), then the ONE requantisation
  ``out_type.quantize_mantissa(y, product_frac)``.
* Add: every input shifted onto the largest fractional width (exact), summed exactly (int64:
  ``Model.check`` bounds the sum's width), then the ONE requantisation.
* GlobalAvgPool2D: exact window sum (int64), times the pinned constant ``mult`` (exact), then
  the ONE requantisation from ``in_frac + mult_type.frac`` fractional bits.
* ReLU: ``max(0, x)`` shifted onto the output frac (exact by ``Model.check``).
* MaxPool2D: window maximum (type unchanged). AvgPool2D: window sum shifted onto the
  output frac, which ``Model.check`` guarantees is at least ``in_frac + log2(area)``.
* Flatten: C-order reshape of (H, W, C).

Kernels are registered by layer kind (:func:`kernel_for`); the simulator looks them up there,
so a new kind adds one class here and nothing else in the simulator.

Why the accumulation may run in float BLAS and stay exact
-----------------------------------------------------------
``Model.check`` guarantees ``layer.accum_type.width >= ir.accumulator_type(in_type, d).width``,
whose bound is, per output channel j, ``[sum_i min(x_i d_ij), sum_i max(x_i d_ij)]`` over all
mantissas x_i the input type can hold. Every input type's mantissa range contains 0, so each
term's range ``[min(x_i d_ij), max(x_i d_ij)]`` contains 0, and therefore *any* partial sum
(any subset of the terms, in any order or blocking a BLAS library picks, with or without FMA)
also lies inside the same bound ``[-2**(w-1), 2**(w-1) - 1]`` with ``w = accum_type.width``.
Each single product is such a partial sum too. So when ``w <= 24`` every product and every
partial sum is an integer of magnitude <= 2**23 < 2**24, which float32 represents exactly:
no float32 operation in the GEMM ever rounds. Likewise ``w <= 53`` for float64 (2**52 < 2**53).
The operands themselves are exact: |d| <= 255, and an input mantissa x_i that meets a nonzero
d_ij has |x_i| <= |x_i d_ij| <= 2**(w-1); an x_i whose whole weight row is zero may be
rounded when cast, but it is only ever multiplied by 0 (and int64 -> float32 never reaches
inf). Wider accumulators use an int64 matmul (exact: the bound is below 2**62 by check).
The simulator validates user-supplied input mantissas against the input type, and every
later layer's input is the output of a requantisation or an exact op, hence in range.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import ir
from ..fixed import FixedType
from .float_requant import FloatRequant, carrier_dtype

#: Largest accumulator width accumulated in float32 / float64 BLAS (see module docstring).
F32_MAX_ACC_WIDTH = 24
F64_MAX_ACC_WIDTH = 53
#: Upper bound on the im2col matrix (elements) built at once: bounds memory per conv call.
IM2COL_MAX_ELEMENTS = 1 << 23
#: Elements of y = acc*s + b requantised per block (cache-sized temporaries).
POST_BLOCK_ELEMENTS = 1 << 15

_SATURATING = ("AP_SAT", "AP_SAT_ZERO", "AP_SAT_SYM")


def accumulation_dtype(acc_width: int, force: str | None = None):
    """The dtype the GEMM runs in for an accumulator ``acc_width`` bits wide."""
    if force is not None:
        return {"float32": np.float32, "float64": np.float64, "int64": np.int64}[force]
    if acc_width <= F32_MAX_ACC_WIDTH:
        return np.float32
    if acc_width <= F64_MAX_ACC_WIDTH:
        return np.float64
    return np.int64


#: layer kind -> kernel class
KERNELS: dict[str, type["Kernel"]] = {}


def kernel_for(*kinds: str):
    """Class decorator: register a kernel for these layer kinds."""
    def register(cls):
        for kind in kinds:
            KERNELS[kind] = cls
        return cls
    return register


class Kernel:
    """A compiled layer: ``run(x_m) -> out_m`` on a chunk; optional overflow counting.

    Single-input kernels implement ``run(x, counts)``; multi-input ones override
    ``run_many(xs, counts)``. ``in_shape``/``in_type`` are the first input's."""

    requantises = False

    def __init__(self, layer: ir.Layer, in_shape, in_type: FixedType, out_shape):
        self.layer, self.in_shape, self.in_type, self.out_shape = layer, in_shape, in_type, out_shape
        self.out_type = layer.out_type

    @classmethod
    def from_node(cls, node: ir.Node, force_dtype=None) -> "Kernel":
        return cls(node.layer, node.in_shapes[0], node.in_types[0], node.out_shape)

    def run(self, x: np.ndarray, counts: dict | None = None) -> np.ndarray:  # pragma: no cover
        """Input mantissas (int64 or an exact float carrier) -> output mantissas.

        ``x`` belongs to the kernel: the simulator hands over arrays no other layer still
        reads (and copies them into the trace first), so a kernel may overwrite it."""
        raise NotImplementedError

    def run_many(self, xs: list[np.ndarray], counts: dict | None = None) -> np.ndarray:
        return self.run(xs[0], counts)


class WeightedKernel(Kernel):
    requantises = True

    @classmethod
    def from_node(cls, node, force_dtype=None):
        return cls(node.layer, node.in_shapes[0], node.in_types[0], node.out_shape, force_dtype)

    def __init__(self, layer: ir.Weighted, in_shape, in_type, out_shape, force_dtype=None):
        super().__init__(layer, in_shape, in_type, out_shape)
        self.dtype = accumulation_dtype(layer.accum_type.width, force_dtype)
        d = layer.multipliers()  # int64, (..., n_out)
        if isinstance(layer, ir.Conv2D):
            # im2col columns are ordered (kh, kw, cin): the codes' own order, flattened
            d = d.reshape(-1, d.shape[-1])
        self.weights = np.ascontiguousarray(d.astype(self.dtype))
        pf = layer.product_frac(in_type)
        self.product_frac = pf
        sh_s = pf - (in_type.frac + layer.scale_type.frac)
        sh_b = pf - layer.bias_type.frac
        # both shifts are >= 0 by the definition of product_frac; check() bounds the result
        self.scale = layer.scale.astype(np.int64) << np.int64(sh_s)
        self.bias = layer.bias.astype(np.int64) << np.int64(sh_b)
        self._round_type = _rounding_only_type(self.out_type)
        # the float requantisation; force_dtype="int64" asks for the all-integer path
        self.float_requant = None if force_dtype == "int64" else FloatRequant.plan(
            layer.accum_type.width, self.scale, self.bias, pf - self.out_type.frac, self.out_type)

    def accumulate(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def run(self, x, counts=None):
        acc = self.accumulate(x)
        if counts is None and self.float_requant is not None:
            return self.float_requant(acc, overwrite=True)
        shape = acc.shape
        acc = acc.reshape(-1, shape[-1])
        out = np.empty(acc.shape, dtype=np.int64)
        # y = acc*s + b and its requantisation, in row blocks that stay in cache
        rows = max(1, POST_BLOCK_ELEMENTS // shape[-1])
        for r in range(0, acc.shape[0], rows):
            y = out[r:r + rows]
            y[...] = acc[r:r + rows]  # float -> int64: exact, integers below 2**53
            y *= self.scale
            y += self.bias
            if counts is not None:
                _count_overflow(counts, y, self.product_frac, self.out_type, self._round_type)
            self.out_type.quantize_mantissa(y, self.product_frac, out=y)
        return out.reshape(shape)


@kernel_for("dense")
class DenseKernel(WeightedKernel):
    def accumulate(self, x):
        return x.astype(self.dtype, copy=False) @ self.weights


@kernel_for("conv2d")
class Conv2DKernel(WeightedKernel):
    def accumulate(self, x):
        layer = self.layer
        n = x.shape[0]
        kh, kw = layer.kernel
        sh, sw = layer.stride
        pt, pb, pl, pr = layer.padding
        oh, ow, cout = self.out_shape
        cin = self.in_shape[2]
        xf = x.astype(self.dtype, copy=False)
        if any(layer.padding):
            xf = np.pad(xf, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
        acc = np.empty((n, oh, ow, cout), dtype=self.dtype)
        k = kh * kw * cin
        per_sample = max(1, oh * ow * k)
        step = max(1, IM2COL_MAX_ELEMENTS // per_sample)
        for s in range(0, n, step):
            xs = xf[s:s + step]
            if kh == 1 and kw == 1:
                cols = xs[:, :sh * (oh - 1) + 1:sh, :sw * (ow - 1) + 1:sw, :]
            else:
                # (b, H', W', cin, kh, kw) -> strided -> (b, oh, ow, kh, kw, cin)
                win = np.lib.stride_tricks.sliding_window_view(xs, (kh, kw), axis=(1, 2))
                win = win[:, :sh * (oh - 1) + 1:sh, :sw * (ow - 1) + 1:sw]
                cols = win.transpose(0, 1, 2, 4, 5, 3)
            cols = cols.reshape(-1, k)  # the im2col copy
            np.matmul(cols, self.weights, out=acc[s:s + step].reshape(-1, cout))
        return acc


@kernel_for("depthwise_conv2d")
class DepthwiseConv2DKernel(WeightedKernel):
    """acc[n, i, j, c] = sum over the window of x[n, i*sh + u, j*sw + v, c] * d[u, v, c].

    Exact in a float carrier for the same reason as the GEMM: every partial sum lies inside
    the accumulator bound (see the module docstring), which the float dtype holds exactly."""

    def accumulate(self, x):
        layer = self.layer
        kh, kw = layer.kernel
        sh, sw = layer.stride
        pt, pb, pl, pr = layer.padding
        oh, ow, c = self.out_shape
        xf = x.astype(self.dtype, copy=False)
        if any(layer.padding):
            xf = np.pad(xf, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
        d = self.weights.reshape(kh, kw, c)
        acc = np.zeros((x.shape[0], oh, ow, c), dtype=self.dtype)
        for u in range(kh):
            for v in range(kw):
                acc += xf[:, u:u + sh * (oh - 1) + 1:sh, v:v + sw * (ow - 1) + 1:sw, :] * d[u, v]
        return acc


class _RequantKernel(Kernel):
    """A kernel whose exact int64 result y (``frac`` fractional bits) is requantised once."""

    requantises = True

    def requantize(self, y: np.ndarray, frac: int, counts) -> np.ndarray:
        if counts is not None:
            _count_overflow(counts, y, frac, self.out_type, _rounding_only_type(self.out_type))
        return self.out_type.quantize_mantissa(y, frac, out=y)


@kernel_for("add")
class AddKernel(_RequantKernel):
    def __init__(self, layer, in_shapes, in_types, out_shape):
        super().__init__(layer, in_shapes[0], in_types[0], out_shape)
        self.frac = max(t.frac for t in in_types)
        self.shifts = [self.frac - t.frac for t in in_types]

    @classmethod
    def from_node(cls, node, force_dtype=None):
        return cls(node.layer, node.in_shapes, node.in_types, node.out_shape)

    def run_many(self, xs, counts=None):
        y = np.zeros(xs[0].shape, dtype=np.int64)
        for x, k in zip(xs, self.shifts):
            xi = x.astype(np.int64, copy=False)  # carriers hold integers: exact
            y += (xi << np.int64(k)) if k else xi
        return self.requantize(y, self.frac, counts)


@kernel_for("global_avg_pool")
class GlobalAvgPoolKernel(_RequantKernel):
    def run(self, x, counts=None):
        y = x.astype(np.int64, copy=False).sum(axis=(1, 2))  # exact: Model.check bounds the width
        y *= np.int64(self.layer.mult)
        return self.requantize(y, self.in_type.frac + self.layer.mult_type.frac, counts)


@kernel_for("relu")
class ReLUKernel(Kernel):
    def run(self, x, counts=None):
        k = self.out_type.frac - self.in_type.frac
        carrier = carrier_dtype(self.out_type)
        if x.dtype.kind == "f" and np.dtype(carrier).kind == "f":
            # exact: max(x, 0) * 2**k is a mantissa of out_type (Model.check), held by carrier.
            # In place when the dtypes allow: kernels own their input (see Kernel.run)
            if x.dtype == carrier:
                out = np.maximum(x, 0, out=x)
            else:
                out = np.maximum(x, 0).astype(carrier)
            if k:
                out *= carrier(2.0 ** k)
            return out
        out = np.maximum(x.astype(np.int64, copy=False), 0)
        if k:
            out <<= np.int64(k)
        return out


def _window_slices(layer: ir.Pool2D, out_shape):
    oh, ow, _ = out_shape
    (ph, pw), (sh, sw) = layer.pool, layer.stride
    for dy in range(ph):
        for dx in range(pw):
            yield (slice(None), slice(dy, dy + sh * (oh - 1) + 1, sh),
                   slice(dx, dx + sw * (ow - 1) + 1, sw), slice(None))


@kernel_for("maxpool2d")
class MaxPoolKernel(Kernel):
    def run(self, x, counts=None):
        it = _window_slices(self.layer, self.out_shape)
        out = x[next(it)].copy()
        for sl in it:
            np.maximum(out, x[sl], out=out)
        return out


@kernel_for("avgpool2d")
class AvgPoolKernel(Kernel):
    def run(self, x, counts=None):
        x = x.astype(np.int64, copy=False)  # the window sum and shift are integer operations
        it = _window_slices(self.layer, self.out_shape)
        out = x[next(it)].copy()
        for sl in it:
            out += x[sl]
        ph, pw = self.layer.pool
        log2_area = (ph * pw).bit_length() - 1
        k = self.out_type.frac - self.in_type.frac - log2_area  # >= 0 by Model.check
        if k:
            out <<= np.int64(k)
        return out


@kernel_for("flatten")
class FlattenKernel(Kernel):
    def run(self, x, counts=None):
        return x.reshape(x.shape[0], -1)


def make_kernel(node: ir.Node, force_dtype=None) -> Kernel:
    cls = KERNELS.get(node.layer.kind)
    if cls is None:
        raise TypeError(f"the simulator has no kernel for layer kind {node.layer.kind!r}")
    return cls.from_node(node, force_dtype)


# -- overflow accounting --------------------------------------------------------------------

def _rounding_only_type(t: FixedType) -> FixedType:
    """Same frac and rounding as ``t``, 64 bits wide and wrapping: rounding without overflow."""
    return dataclasses.replace(t, width=64, integer=64 - t.frac, signed=True, overflow="AP_WRAP",
                               sat_bits=0)


def out_of_range(y: np.ndarray, frac: int, t: FixedType, round_type: FixedType | None = None):
    """Boolean mask: y (``frac`` fractional bits) rounded to ``t.frac`` falls outside t's range."""
    lo, hi = t.overflow_range()
    k = t.frac - frac
    if k <= 0:
        r = (round_type or _rounding_only_type(t)).quantize_mantissa(y, frac)  # |r| < 2**62
        return (r > hi) | (r < lo)
    if k >= 63:
        return y != 0
    # y * 2**k outside [lo, hi]  <=>  y > floor(hi / 2**k)  or  y < ceil(lo / 2**k)
    return (y > (hi >> k)) | (y < -((-lo) >> k))


def _count_overflow(counts, y, frac, t, round_type):
    n = int(np.count_nonzero(out_of_range(y, frac, t, round_type)))
    key = "saturated" if t.overflow in _SATURATING else "wrapped"
    counts[key] += n
    counts["total"] += int(y.size)
