"""The integer model as a QONNX graph (``to_qonnx``): what FINN and hls4ml ingest.

Per weighted layer (docs/QONNX.md has the whole mapping):

    levels[c] (float32 integers) -> Quant(scale 1) -> Conv (no bias) | MatMul
        -> Mul(s_j) -> Add(b_j + rounding offset) [-> Add(low bits of b_j)] -> Quant(out_type)

so round(W / scale) of every weight tensor is our levels, the contract's y = acc*s + b is the
input of the one activation Quant, and that Quant is the requantisation (modes: ``modes``).
Layout: NCHW tensors as ONNX defines Conv; a flatten is Transpose(0, 2, 3, 1) + Flatten, so the
flattened order is ours (channels-last) and dense weights keep their row order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from .. import ir
from ..errors import VecQError
from .bounds import PreRound, cannot_overflow, f32_error, sum_y, weighted_f32_error, weighted_y
from .builder import GraphBuilder
from .exact import f32_exact, f32_slices, trailing_zeros
from .modes import narrow_for, rounding_out


@dataclass
class QonnxGraph:
    """What :func:`write_graph` returns: the ONNX model, what the graph does not keep (one line
    each), and per layer the bound, in output LSBs, on a float32 executor's error (0: exact)."""

    proto: onnx.ModelProto
    notes: list[str] = field(default_factory=list)
    f32_error: dict[str, float] = field(default_factory=dict)


class _Ctx:
    def __init__(self, where: str, input_name: str):
        self.b = GraphBuilder()
        self.input_name = self.b.fresh(input_name)  # the graph input is named after our input layer
        self.where = where
        self.notes: list[str] = []
        self.errors: dict[str, float] = {}
        self.index: dict[str, int] = {}

    def fail(self, layer: ir.Layer, fld: str, msg: str):
        loc = f"layers[{self.index.get(layer.name, '?')}] ({layer.name})"
        raise VecQError(msg, file=self.where, field=f"{loc}.{fld}" if fld else loc)

    def quant_to(self, x: str, layer: ir.Layer, mode: str, base: str | None = None, narrow: bool = True) -> str:
        """A Quant into ``layer.out_type`` (``narrow``: AP_SAT_SYM as QONNX's narrow range)."""
        t = layer.out_type
        if t.signed and t.width == 1:
            self.fail(layer, "out_type", f"{t}: a 1-bit signed Quant is bipolar (+-1) in QONNX, not {{-1, 0}}")
        return self.b.quant(x, base or layer.name, scale=2.0 ** -t.frac, bits=t.width, signed=t.signed,
                            narrow=narrow_for(t.overflow, t.signed) if narrow else 0, rounding=mode)

    def plan(self, layer: ir.Layer, y: PreRound) -> tuple[str, int]:
        """(rounding_mode, offset in units of 2^-y.frac) of the layer's requantisation; refuses what
        a saturating Quant cannot write."""
        t = layer.out_type
        if (t.overflow not in ("AP_SAT", "AP_SAT_SYM") or t.sat_bits) and not cannot_overflow(t, y):
            mode = t.overflow + (f" with N={t.sat_bits}" if t.sat_bits else "")
            self.fail(layer, "out_type", f"{t}: QONNX's Quant saturates, so {mode} is written only where the "
                      "result cannot overflow, and here it can")
        return rounding_out(t.rounding, y.frac - t.frac)


def _channels(shape) -> tuple[int, ...]:
    """How a per-channel constant is laid out for a tensor of our (channels-last) ``shape``: (C,)
    on a flat tensor; on a feature map the whole NCHW shape (1, C, H, W), each channel's value
    repeated. hls4ml 1.3.0 turns a Mul/Add constant into an ApplyAlpha by broadcasting it to the
    batch-less shape (``merge_const.py``, ``MergeToApplyAlpha``), which a (1, C, 1, 1) constant
    (what qonnx's channels-last conversion makes of a (C, 1, 1) one) cannot do."""
    return (1, int(shape[2]), int(shape[0]), int(shape[1])) if len(shape) == 3 else (int(shape[-1]),)


def _fixed_const(ctx: _Ctx, layer: ir.Layer, base: str, mantissas, frac: int, shape, fld: str) -> str:
    """Fixed-point constants m * 2^-frac as float32 values through Quant(scale 2^-F, bitwidth W): the
    Quant is the identity on them and states their exact type (hls4ml takes it as the precision).
    ``mantissas``: one per channel (the last axis of ``shape`` after NCHW, see ``_channels``)."""
    m = [int(v) for v in np.asarray(mantissas, dtype=object).reshape(-1)]
    tz = trailing_zeros(m)
    m, frac = [v >> tz for v in m], frac - tz
    if not f32_exact(m, frac):
        ctx.fail(layer, fld, "a constant with more than 24 significant bits (or outside float32's range) has no "
                 "float32 initializer")
    lo, hi = min(m + [0]), max(m + [0])
    signed = lo < 0
    width = ir.signed_width_for(lo, hi) if signed else max(1, hi.bit_length())
    vals = np.array([np.ldexp(float(v), -frac) for v in m], dtype=np.float32)
    # (C,) -> (1, C, H, W); (C,) stays; () for a scalar
    vals = np.broadcast_to(vals.reshape(1, -1, 1, 1), shape) if len(shape) == 4 else vals.reshape(shape)
    c = ctx.b.const(base, vals)
    return ctx.b.quant(c, f"{base}.q", scale=2.0 ** -frac, bits=width, signed=signed, narrow=0, rounding="ROUND")


def _weight_tensor(ctx: _Ctx, layer: ir.Weighted) -> str:
    """levels[c] in ONNX order through a Quant with scale 1 (BipolarQuant for the 1-bit odd table)."""
    d = layer.multipliers()
    if isinstance(layer, ir.DepthwiseConv2D):
        d = d.transpose(2, 0, 1)[:, None]  # (kh, kw, c) -> (c, 1, kh, kw)
    elif isinstance(layer, ir.Conv2D):
        d = d.transpose(3, 2, 0, 1)  # (kh, kw, cin, cout) -> OIHW
    w = ctx.b.const(f"{layer.name}.weight", d.astype(np.float32))
    base, lv = f"{layer.name}.wq", layer.levels
    if layer.encoding == "odd" and layer.bits == 1:
        return ctx.b.bipolar(w, base, scale=1.0)
    if layer.encoding == "odd":
        return ctx.b.quant(w, base, scale=1.0, bits=layer.bits + 1, signed=True, narrow=1, rounding="ROUND")
    if layer.encoding == "int" and layer.bits > 1:
        return ctx.b.quant(w, base, scale=1.0, bits=layer.bits, signed=True, narrow=0, rounding="ROUND")
    width = max(2, ir.signed_width_for(int(lv.min()), int(lv.max())))
    ctx.notes.append(f"{layer.name}: levels {[int(v) for v in lv]} of {layer.bits}-bit codes written as "
                     f"{width}-bit integers (the code table is lost)")
    return ctx.b.quant(w, base, scale=1.0, bits=width, signed=True, narrow=int(lv.min() > -(1 << (width - 1))),
                       rounding="ROUND")


def _weighted(ctx: _Ctx, node: ir.Node, ins: list[str]) -> str:
    layer, t_in, b = node.layer, node.in_types[0], ctx.b
    frac = layer.product_frac(t_in)
    bias = [v << (frac - layer.bias_type.frac) for v in layer.bias.tolist()]
    mode, offset = ctx.plan(layer, weighted_y(layer, t_in, bias))
    bias = [v + offset for v in bias]
    w = _weight_tensor(ctx, layer)
    if isinstance(layer, ir.Dense):
        acc = b.node("MatMul", [ins[0], w], f"{layer.name}.acc", name=layer.name)
    else:
        pt, pb, pl, pr = (int(p) for p in layer.padding)
        acc = b.node("Conv", [ins[0], w], f"{layer.name}.acc", name=layer.name, kernel_shape=list(layer.kernel),
                     strides=[int(s) for s in layer.stride], pads=[pt, pl, pb, pr], dilations=[1, 1],
                     group=node.in_shapes[0][-1] if isinstance(layer, ir.DepthwiseConv2D) else 1)
    shape = _channels(node.out_shape)
    s = _fixed_const(ctx, layer, f"{layer.name}.s", layer.scale, layer.scale_type.frac, shape, "scale_type")
    y = b.node("Mul", [acc, s], f"{layer.name}.scaled")
    parts = [p for p in f32_slices(bias) if any(p)]
    for i, p in enumerate(parts):  # one Add per 24-bit slice: their sum is b_j exactly
        bi = _fixed_const(ctx, layer, f"{layer.name}.b{i or ''}", p, frac, shape, "bias_type")
        y = b.node("Add", [y, bi], f"{layer.name}.biased")
    ctx.errors[layer.name] = weighted_f32_error(layer, t_in, frac, bias, len(parts))
    return ctx.quant_to(y, layer, mode)


def _offset_add(ctx: _Ctx, x: str, layer: ir.Layer, offset: int, frac: int) -> str:
    if not offset:
        return x
    c = _fixed_const(ctx, layer, f"{layer.name}.offset", [offset], frac, (), "out_type")
    return ctx.b.node("Add", [x, c], f"{layer.name}.offset_added")


def _add(ctx: _Ctx, node: ir.Node, ins: list[str]) -> str:
    layer = node.layer
    y = sum_y(node.in_types)
    mode, offset = ctx.plan(layer, y)
    s = ins[0]
    for x in ins[1:]:  # partial sums stay inside the whole sum's bound (every range holds 0)
        s = ctx.b.node("Add", [s, x], f"{layer.name}.sum", name=layer.name)
    ctx.errors[layer.name] = f32_error(y.magnitude + abs(offset), y.frac, layer.out_type.frac, len(ins))
    return ctx.quant_to(_offset_add(ctx, s, layer, offset, y.frac), layer, mode)


def _global_avg(ctx: _Ctx, node: ir.Node, ins: list[str]) -> str:
    """A power-of-two window whose constant is exactly 1/(h*w): GlobalAveragePool (an exact mean);
    otherwise ReduceSum then Mul(mult): both are sum * mult exactly."""
    layer, (h, w, c), t_in, b = node.layer, node.in_shapes[0], node.in_types[0], ctx.b
    window, fm = h * w, layer.mult_type.frac
    s = sum_y([t_in], [window])
    y = PreRound(t_in.frac + fm, (s.lo[0] * layer.mult,), (s.hi[0] * layer.mult,))
    mode, offset = ctx.plan(layer, y)
    if fm >= 0 and layer.mult * window == 1 << fm:
        pooled = b.node("GlobalAveragePool", ins, f"{layer.name}.mean", name=layer.name)
        n_ops = 1
    else:
        axes = b.const_int64(f"{layer.name}.axes", [2, 3])
        total = b.node("ReduceSum", [ins[0], axes], f"{layer.name}.sum", name=layer.name, keepdims=1)
        mult = _fixed_const(ctx, layer, f"{layer.name}.mult", [layer.mult], fm, (), "mult_type")
        pooled = b.node("Mul", [total, mult], f"{layer.name}.mean")
        n_ops = 2
    flat = b.node("Flatten", [pooled], f"{layer.name}.flat", axis=1)
    ctx.errors[layer.name] = f32_error(y.magnitude + abs(offset), y.frac, layer.out_type.frac, n_ops + 1)
    return ctx.quant_to(_offset_add(ctx, flat, layer, offset, y.frac), layer, mode)


def _input(ctx: _Ctx, node: ir.Node, ins: list[str]) -> str:
    """The input Quant states the input type. On values of that type (the contract's inputs) it
    is the identity; off-grid floats are rounded by FLOOR/ROUND, which is ours only when the
    type's own rounding is AP_TRN/AP_RND_CONV, and saturated (our AP_WRAP would wrap)."""
    layer = node.layer
    t = layer.out_type
    mode = "ROUND" if t.rounding == "AP_RND_CONV" else "FLOOR"
    if t.rounding not in ("AP_TRN", "AP_RND_CONV") or t.overflow != "AP_SAT":
        ctx.notes.append(f"{layer.name}: input type {t}: the graph rounds off-grid inputs with {mode} and "
                         "saturates; feed it values of the input type")
    return ctx.quant_to(ctx.input_name, layer, mode, base=f"{layer.name}.q", narrow=False)


def _pin_type(ctx: _Ctx, x: str, layer: ir.Layer) -> str:
    """A Quant into ``layer.out_type`` where the layer's own check proves it the identity (the type
    holds every value exactly): it states the type for the tools (hls4ml takes it as the result
    precision, which otherwise defaults)."""
    return ctx.quant_to(x, layer, "FLOOR", narrow=False)


def _pool(op: str):
    def emit(ctx: _Ctx, node: ir.Node, ins: list[str]) -> str:
        layer, avg = node.layer, op == "AveragePool"
        out = ctx.b.node(op, ins, f"{layer.name}.pool" if avg else layer.name, name=layer.name, kernel_shape=[int(p) for p in layer.pool],
                         strides=[int(s) for s in layer.stride], pads=[0, 0, 0, 0], ceil_mode=0)
        if not avg:
            return out
        t, area = node.in_types[0], int(layer.pool[0]) * int(layer.pool[1])
        mag = area * max(-t.min_mantissa, t.max_mantissa)  # the window sum, in input LSBs
        ctx.errors[layer.name] = f32_error(mag, t.frac, layer.out_type.frac, area)
        return _pin_type(ctx, out, layer)
    return emit


def _relu(ctx: _Ctx, node: ir.Node, ins: list[str]) -> str:
    return _pin_type(ctx, ctx.b.node("Relu", ins, f"{node.layer.name}.relu", name=node.layer.name), node.layer)


def _flatten(ctx: _Ctx, node: ir.Node, ins: list[str]) -> str:
    if len(node.in_shapes[0]) == 1:
        return ins[0]
    nhwc = ctx.b.node("Transpose", ins, f"{node.layer.name}.nhwc", perm=[0, 2, 3, 1])
    return ctx.b.node("Flatten", [nhwc], node.layer.name, name=node.layer.name, axis=1)


EMITTERS = {
    "input": _input, "dense": _weighted, "conv2d": _weighted, "depthwise_conv2d": _weighted, "relu": _relu,
    "maxpool2d": _pool("MaxPool"), "avgpool2d": _pool("AveragePool"), "flatten": _flatten, "add": _add,
    "global_avg_pool": _global_avg,
}


def onnx_shape(shape) -> tuple[int, ...]:
    """Our channels-last per-sample shape as the graph's batch-1 NCHW (or (1, n)) shape."""
    shape = tuple(int(s) for s in shape)
    return (1, shape[2], shape[0], shape[1]) if len(shape) == 3 else (1,) + shape


def write_graph(model: ir.Model, where: str = "model") -> QonnxGraph:
    """The QONNX graph of ``model`` with its notes and float32 error bounds (see the module doc)."""
    model.check(where)
    ctx = _Ctx(where, model.input.name)
    ctx.index = {layer.name: i for i, layer in enumerate(model.layers)}
    tensors: dict[str, str] = {}
    for node in model.nodes():
        emit = EMITTERS.get(node.layer.kind)
        if emit is None:
            ctx.fail(node.layer, "", f"layer kind '{node.layer.kind}' has no QONNX form")
        tensors[node.layer.name] = emit(ctx, node, [tensors[n] for n in node.layer.inputs])
        ctx.errors.setdefault(node.layer.name, 0.0)
    out = tensors[model.output.name]
    meta = {"vecq_hw.layout": "NCHW; flatten in channels-last (H, W, C) order (Transpose 0,2,3,1 + Flatten)"}
    meta.update({f"vecq_hw.note.{i}": n for i, n in enumerate(ctx.notes)})
    proto = ctx.b.model(model.name, (ctx.input_name, onnx_shape(model.input.shape)),
                        (out, onnx_shape(model.output_shape)), "vecq_hw integer model", meta)
    return QonnxGraph(proto, ctx.notes, ctx.errors)


def to_qonnx(model: ir.Model) -> onnx.ModelProto:
    """The QONNX graph of ``model`` (``write_graph(model).proto``)."""
    return write_graph(model).proto
