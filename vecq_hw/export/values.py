"""What the exporter knows about each value of the traced graph.

* :class:`RawInput`: the model's float input, before its FixedQuant.
* :class:`Tensor`: the output of an integer-model layer, in a deployed fixed-point type.
* :class:`Pending`: an operation whose ONE requantisation is still to come: a weighted layer
  (waiting for [BatchNorm] [ReLU] FixedQuant), an add or a global average (waiting for a
  FixedQuant, or settled in their exact type when none follows).
* :class:`BatchDim`, :class:`ShapeOf`: ``x.size(0)`` / ``x.shape`` (for ``x.view(x.size(0), -1)``).

Shapes: ``tshape`` is PyTorch's per-sample shape (channels-first), ``ishape`` the integer
model's (channels-last). ``order`` maps a flat channels-last index to PyTorch's flat index
(a flatten of (C, H, W)); None when both orders agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import ir
from ..errors import ExportError
from ..fixed import FixedType


@dataclass
class RawInput:
    tshape: tuple


@dataclass
class BatchDim:
    source: object


@dataclass
class ShapeOf:
    source: object


@dataclass
class Tensor:
    layer: str
    tshape: tuple
    ishape: tuple
    typ: FixedType
    order: np.ndarray | None = None

    def same_layout(self, other: "Tensor") -> bool:
        if self.tshape != other.tshape or self.ishape != other.ishape:
            return False
        if self.order is None or other.order is None:
            return self.order is None and other.order is None
        return bool(np.array_equal(self.order, other.order))


@dataclass
class Pending:
    """Base: ``where`` names who made it; ``relu`` records a ReLU before the FixedQuant."""

    where: str
    name: str
    tshape: tuple
    ishape: tuple
    relu: bool = False
    #: flat layout of the result (an add of two flattened tensors keeps theirs)
    order: np.ndarray | None = None

    #: what a refusal calls it
    what = "operation"

    def layer(self, name: str, out_type: FixedType) -> ir.Layer:  # pragma: no cover - abstract
        raise NotImplementedError

    def layer_kind(self) -> str:
        """The kind of the layer it becomes (for its name)."""
        return "layer"

    def exact_type(self) -> FixedType | None:
        """The type holding every result exactly, when one exists (else a FixedQuant is needed)."""
        return None

    def error_bound(self, out_type: FixedType) -> float:
        """Largest |integer model - PyTorch| before the requantisation, in real units."""
        return 0.0


@dataclass
class PendingWeighted(Pending):
    """A VecQ layer: y = acc*s + b with the float constants still to be fixed (and BN folded)."""

    what = "VecQ layer"
    kind: type = None
    table: np.ndarray = None  # int8 codes, integer-model layout
    view: object = None  # fold.WeightView
    s: np.ndarray = None  # float64 per channel
    b: np.ndarray = None
    inp: Tensor = None
    geometry: dict = field(default_factory=dict)
    folded_bn: bool = False
    opts: object = None  # ExportOptions
    #: filled when built (for the error bound)
    built: ir.Weighted | None = None

    def layer_kind(self):
        return self.kind.kind

    def constants(self) -> dict:
        """s_j and b_j as fixed-point mantissas and their types (the layer's keywords)."""
        from .fold import fixed_for, scale_frac
        o, t_in = self.opts, self.inp.typ
        s_frac = o.scale_frac if o.scale_frac is not None else scale_frac(self.s, o.scale_bits, self.where)
        s_m, s_type = fixed_for(self.s, s_frac, "scale", self.where)
        b_frac = o.bias_frac if o.bias_frac is not None else t_in.frac + s_frac
        b_m, b_type = fixed_for(self.b, b_frac, "bias", self.where)
        return {"scale": s_m, "scale_type": s_type, "bias": b_m, "bias_type": b_type}

    def layer(self, name, out_type):
        lv = self.view.levels
        acc = ir.accumulator_type(self.inp.typ, ir.multipliers(self.table, lv, self.view.bits))
        self.built = self.kind(name=name, out_type=out_type, bits=self.view.bits, levels=lv, codes=self.table,
                               accum_type=acc, multiplier=self.opts.multiplier, inputs=(self.inp.layer,),
                               **self.constants(), **self.geometry)
        return self.built

    def _check_kept(self, out_type) -> None:
        """Refuse constants that lost all their precision: every scale rounded to 0 (the layer's
        weights vanish), or every bias rounded to 0 where the float biases reach an LSB of the
        output (extreme weights make the bias type ap_fixed<2,74>: its step is 2^72)."""
        lay = self.built
        for what, fixed, true, t, matters in (
                ("scale", lay.scale, self.s, lay.scale_type, 0.0),
                ("bias", lay.bias, self.b, lay.bias_type, float(out_type.resolution))):
            big = float(np.max(np.abs(true), initial=0.0))
            if not np.any(fixed) and big > matters:
                raise ExportError(f"layer '{lay.name}': every {what} constant rounds to 0 in {t} (the float values "
                                  f"reach {big:.3g}); the layer's constants cannot be represented at this scale "
                                  "(extreme weights?)", field=self.where)

    def error_bound(self, out_type):
        """|acc*s + b - PyTorch's y| <= sum_i |d_ij| x_max ds + db, with ds, db half a step of the
        scale and bias types (the constants are PyTorch's rounded to nearest: checked here), plus
        PyTorch's own float32 rounding of the same sum (<= (fan_in + 8) * 2**-24 relative, the
        textbook bound for sequential float summation, plus the BatchNorm ops). The bound depends
        on the chosen precision only, never on the constants' actual values."""
        self._check_kept(out_type)
        lay = self.built
        ds, db = 2.0 ** -(lay.scale_type.frac + 1), 2.0 ** -(lay.bias_type.frac + 1)
        for what, fixed, true, half in (("scale", lay.scale_type.to_float(lay.scale), self.s, ds),
                                        ("bias", lay.bias_type.to_float(lay.bias), self.b, db)):
            if np.any(np.abs(fixed - true) > half * (1 + 1e-9)):
                raise ExportError(f"layer '{lay.name}': its {what} constants are not PyTorch's rounded to "
                                  "the nearest step", field=self.where)
        d = np.abs(lay.multipliers_by_output()).sum(axis=0).astype(np.float64)
        x_max = max(abs(self.inp.typ.max_value), abs(self.inp.typ.min_value))
        y_max = d * x_max * np.abs(self.s) + np.abs(self.b)
        err = d * x_max * ds + db + y_max * (lay.fan_in() + 8) * 2.0 ** -24
        return float(err.max(initial=0.0))


@dataclass
class PendingNative(PendingWeighted):
    """A weighted layer in its kind's own form (a quantiser's registered weight form: ALQ's planes,
    PQ's codebook): the kind's tables are fixed (``tables``: its keywords), the constants still float."""

    tables: dict = field(default_factory=dict)

    def layer(self, name, out_type):
        layer = self.kind(name=name, out_type=out_type, inputs=(self.inp.layer,), **self.tables, **self.constants(),
                          **self.geometry)
        layer.accum_type = ir.accumulator_type(self.inp.typ, layer.multipliers_by_output())
        self.built = layer
        return layer


@dataclass
class PendingAdd(Pending):
    what = "add"
    a: Tensor = None
    b: Tensor = None

    def layer_kind(self):
        return ir.Add.kind

    def layer(self, name, out_type):
        return ir.Add(name=name, out_type=out_type, inputs=(self.a.layer, self.b.layer))

    def exact_type(self):
        return ir.aligned_sum_type([self.a.typ, self.b.typ])

    def error_bound(self, out_type):
        # PyTorch adds two exact values in float32: exact while the sum fits 24 significant bits
        s = ir.aligned_sum_type([self.a.typ, self.b.typ])
        return 0.0 if s.width <= 24 else max(abs(s.max_value), abs(s.min_value)) * 2.0 ** -24


@dataclass
class PendingGap(Pending):
    what = "global average pool"
    inp: Tensor = None
    built: ir.GlobalAvgPool2D | None = None

    def layer_kind(self):
        return ir.GlobalAvgPool2D.kind

    @property
    def window(self) -> int:
        return int(self.inp.ishape[0]) * int(self.inp.ishape[1])

    def exact_type(self):
        n = self.window
        extra = n.bit_length() - 1
        if n != 1 << extra:
            return None  # 1/n is not a finite binary fraction
        t = self.inp.typ
        return FixedType(width=t.width + extra, integer=t.integer, signed=t.signed)

    def layer(self, name, out_type):
        t_in, n = self.inp.typ, self.window
        extra = n.bit_length() - 1
        if n == 1 << extra:
            frac = extra  # 1/n is exact: mult = 1, the layer is the exact mean
        else:
            # 1/n rounded to fm fractional bits errs by <= 2**-(fm+1), so sum*mult errs from the exact
            # mean by <= n*M*2**-(fi+fm+1) (M: the largest |input mantissa|, fi its frac). A mean
            # S/(n*2**fi) that is not exactly on a rounding boundary of the out type (spacing
            # 2**-(fo+1)) is at least 1/(n*2**max(fi, fo+1)) away from it. fm >= bitlen(n*n*M) +
            # max(0, fo+1-fi) makes the error smaller than that, so every result is the exact mean's
            # requantisation except exact ties (where PyTorch's own float32 mean may go either way).
            m_max = max(abs(t_in.min_mantissa), abs(t_in.max_mantissa))
            frac = (n * n * m_max).bit_length() + max(0, out_type.frac + 1 - t_in.frac)
        mult, mult_type = ir.GlobalAvgPool2D.constant(n, frac)
        self.built = ir.GlobalAvgPool2D(name=name, out_type=out_type, mult=mult, mult_type=mult_type,
                                        inputs=(self.inp.layer,))
        return self.built

    def error_bound(self, out_type):
        lay, n, t_in = self.built, self.window, self.inp.typ
        x_max = max(abs(t_in.max_value), abs(t_in.min_value))
        const = abs(float(lay.mult_type.to_float(np.int64(lay.mult))) - 1.0 / n)
        half = 2.0 ** -(lay.mult_type.frac + 1)
        if const > half:
            raise ExportError(f"layer '{lay.name}': its constant is not 1/{n} rounded to the nearest step",
                              field=self.where)
        # 0 when the constant is exactly 1/n, else at most half a step (nearest rounding)
        bound = 0.0 if const == 0 else n * x_max * half
        # PyTorch's float32 mean: the sum is exact while it fits 24 bits, the division by a power
        # of two too; any other division rounds once
        exact_sum = lay.sum_type(t_in, self.inp.ishape).width <= 24
        slack = 0.0 if exact_sum and n & (n - 1) == 0 else x_max * 2.0 ** -22
        return float(bound + slack)
