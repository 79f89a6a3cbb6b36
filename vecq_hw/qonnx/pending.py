"""What the importer knows about each ONNX tensor, and how a pending result becomes layers.

A tensor is a constant (float values, or the exact integers and scale of a Quant on a constant),
the output of a layer already built (``Built``: its fixed-point type and shape), or a value the
integer model has not computed yet (``Pending``): a weighted layer's y = acc*s + b, a sum or a
global pool awaiting the one requantisation a following Quant supplies. Scales and biases are
kept as exact Fractions (every float is dyadic) until the layer is built.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from .. import ir
from ..fixed import FixedType
from .bounds import sum_y, weighted_y
from .exact import fractions_to_fixed


@dataclass
class Const:
    value: np.ndarray  # float32/float64 values as the file holds them


@dataclass
class QConst:
    """Quant(constant): integers ``q`` (data's shape) times ``scale`` (broadcastable)."""

    q: np.ndarray
    scale: np.ndarray
    bits: int
    signed: bool
    narrow: bool
    node: str

    def values(self) -> np.ndarray:
        """Exact values as an object array of Fractions."""
        s = np.broadcast_to(np.asarray(self.scale, dtype=np.float64), self.q.shape)
        return np.vectorize(lambda q, v: Fraction(int(q)) * Fraction(float(v)), otypes=[object])(self.q, s)


@dataclass
class Built:
    """The output of a built layer. ``shape`` is ours (channels-last). ``chw``: for a flat tensor
    made by flattening an NCHW map (h, w, c), the map's shape (ONNX's order is c, h, w)."""

    layer: str
    type: FixedType
    shape: tuple[int, ...]
    chw: tuple[int, int, int] | None = None
    nhwc: bool = False  # a feature map transposed to NHWC (only a flatten may read it)


@dataclass
class Pending:
    """A value awaiting its requantisation: ``kind`` 'weighted' | 'add' | 'gap'."""

    kind: str
    node: str  # the ONNX node that made it (for messages and the layer name)
    shape: tuple[int, ...]  # ours (channels-last) of the result
    inputs: list[Built] = field(default_factory=list)
    layer: ir.Weighted | None = None  # weighted: codes, levels, geometry (types still to fix)
    scale: list[Fraction] = field(default_factory=list)
    bias: list[Fraction] = field(default_factory=list)
    mult: Fraction = Fraction(1)  # gap: the constant the sum is multiplied by
    offset: Fraction | None = None  # add/gap: a scalar added before a FLOOR Quant (a rounding mode)
    relu: bool = False
    chw: tuple[int, int, int] | None = None  # an add of flattened maps keeps their order


def fixed_type(mantissas, frac: int, signed: bool | None = None) -> FixedType:
    """The narrowest ap_fixed/ap_ufixed holding every m * 2^-frac (signed: at least 2 bits)."""
    lo, hi = min(list(mantissas) + [0]), max(list(mantissas) + [0])
    signed = lo < 0 if signed is None else signed
    width = ir.signed_width_for(lo, hi) if signed else max(hi.bit_length(), 1)
    width = max(width, 2 if signed else 1)
    return FixedType(width=width, integer=width - frac, signed=signed)


def relu_out(t: FixedType) -> FixedType:
    """ReLU's exact output type: the non-negative values of ``t`` (one bit less when signed)."""
    if not t.signed:
        return FixedType(width=t.width, integer=t.integer, signed=False)
    return FixedType(width=max(t.width - 1, 1), integer=t.integer - 1, signed=False)


def relu_split(t: FixedType) -> FixedType:
    """The signed type a layer requantises into so that ReLU after it equals a Quant into ``t``
    after a Relu (QONNX's order): for unsigned ``t`` one more integer bit and a sign, same modes.
    Saturation commutes with ReLU there: relu(sat(round(y))) == sat(round(relu(y)))."""
    if t.signed:
        return t
    return FixedType(width=t.width + 1, integer=t.integer + 1, signed=True, rounding=t.rounding,
                     overflow=t.overflow)


def weighted_layer(p: Pending, name: str, out_type: FixedType | None) -> ir.Weighted:
    """The pending weighted layer with exact scale/bias types; ``out_type`` None: the exact type of
    y itself (no rounding, no overflow)."""
    layer, t_in = copy.copy(p.layer), p.inputs[0].type  # a pending result may be requantised twice
    s_m, s_f = fractions_to_fixed(p.scale)
    b_m, b_f = fractions_to_fixed(p.bias)
    layer.name, layer.inputs = name, (p.inputs[0].layer,)
    layer.scale_type, layer.bias_type = fixed_type(s_m, s_f), fixed_type(b_m, b_f, signed=True)  # <= 64 bits
    layer.scale, layer.bias = np.array(s_m, dtype=np.int64), np.array(b_m, dtype=np.int64)
    layer.accum_type = ir.accumulator_type(t_in, layer.multipliers_by_output())
    if out_type is None:
        frac = layer.product_frac(t_in)
        y = weighted_y(layer, t_in, [v << (frac - layer.bias_type.frac) for v in b_m])
        out_type = fixed_type([min(y.lo), max(y.hi)], frac, signed=True)
    layer.out_type = out_type
    return layer


def exact_sum_type(p: Pending) -> FixedType:
    """The exact type of a pending add's sum or a gap's sum * mult (no rounding, no overflow)."""
    if p.kind == "add":
        return ir.aligned_sum_type([b.type for b in p.inputs])
    h, w, _ = p.inputs[0].shape
    s = sum_y([p.inputs[0].type], [h * w])
    m, f = fractions_to_fixed([p.mult])
    return fixed_type([s.lo[0] * m[0], s.hi[0] * m[0]], s.frac + f, signed=True)


def gap_layer(p: Pending, name: str, out_type: FixedType) -> ir.GlobalAvgPool2D:
    m, f = fractions_to_fixed([p.mult])
    width = max(m[0].bit_length(), 1)
    mult_type = FixedType(width=width, integer=width - f, signed=False)  # <= 63 bits, or FixedTypeError
    return ir.GlobalAvgPool2D(name=name, out_type=out_type, mult=m[0], mult_type=mult_type,
                              inputs=(p.inputs[0].layer,))
