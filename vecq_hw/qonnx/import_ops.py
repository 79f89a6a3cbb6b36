"""One handler per ONNX op for ``from_qonnx`` (see ``reader``): each reads its inputs' states,
refuses (one line naming the node) what the integer model cannot compute exactly, and sets the
state of its output."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from onnx import helper

from .. import ir
from ..errors import FixedTypeError
from ..fixed import FixedType
from .modes import ROUND_IN
from .pending import Built, Const, Pending, QConst, relu_out
from .reader import GraphInput, Reader, label

OPS = {}
#: domains Brevitas, FINN and qonnx write their Quant ops in
QONNX_DOMAINS = ("qonnx.custom_op.general", "onnx.brevitas", "finn.custom_op.general", "finn")
_STANDARD = ("", "ai.onnx")


def op(*names):
    def register(fn):
        for n in names:
            OPS[n] = fn
        return fn
    return register


def attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _domain_ok(r: Reader, node, domains) -> None:
    if node.domain not in domains:
        r.fail(node, f"operation in domain '{node.domain}' is not supported (expected {domains[0] or 'the ONNX'} domain)")


# -- Quant -----------------------------------------------------------------------------------

@dataclass
class QuantSpec:
    scale: np.ndarray
    bits: int
    signed: bool
    narrow: bool
    rounding: str


def quant_spec(r: Reader, node) -> QuantSpec:
    _domain_ok(r, node, QONNX_DOMAINS)
    if len(node.input) != 4:
        r.fail(node, f"Quant takes 4 inputs (x, scale, zeropt, bitwidth), got {len(node.input)}")
    scale, zero, bits = (np.asarray(r.const(node, n)) for n in node.input[1:4])
    if bits.size != 1:
        r.fail(node, f"bitwidth must be a scalar, got shape {list(bits.shape)}")
    b = float(bits.reshape(-1)[0])
    if not (b == int(b) and 1 <= b <= 64):
        r.fail(node, f"bitwidth must be an integer in 1..64, got {b}")
    if np.any(zero != 0):
        r.fail(node, "non-zero zero point: the integer model's kernels have none (its values are m * scale)")
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        r.fail(node, "scale must be positive and finite")
    a = attrs(node)
    mode = a.get("rounding_mode", b"ROUND")
    mode = (mode.decode() if isinstance(mode, bytes) else str(mode)).upper()
    return QuantSpec(scale, int(b), bool(a.get("signed", 1)), bool(a.get("narrow", 0)), mode)


def int_values(r: Reader, node, spec: QuantSpec, data: np.ndarray) -> np.ndarray:
    """The integers a Quant makes of constant ``data``, computed as qonnx's executor does (float32
    division, clamp, its rounding function): the same integers it uses."""
    from qonnx.custom_op.general.quant import max_int, min_int, resolve_rounding_mode
    y = np.asarray(data, dtype=np.float32) / np.asarray(spec.scale, dtype=np.float32)
    if spec.bits == 1 and spec.signed:
        return np.where(y >= 0, 1, -1).astype(np.int64)
    y = np.clip(y, min_int(spec.signed, spec.narrow, spec.bits), max_int(spec.signed, spec.narrow, spec.bits))
    try:
        fn = resolve_rounding_mode(spec.rounding)
    except ValueError:
        r.fail(node, f"unknown rounding_mode '{spec.rounding}'")
    return fn(y).astype(np.int64)


def act_type(r: Reader, node, spec: QuantSpec) -> FixedType:
    """The fixed-point type an activation Quant requantises into."""
    if spec.scale.size != 1:
        r.fail(node, f"an activation scale of shape {list(spec.scale.shape)}: the integer model has one type per tensor")
    s = float(spec.scale.reshape(-1)[0])
    mant, exp = np.frexp(s)
    if mant != 0.5:
        r.fail(node, f"activation scale {s!r} is not a power of two: no fixed-point type has that grid "
               "(Brevitas: use a *FixedPoint activation quantiser)")
    if spec.rounding not in ROUND_IN:
        r.fail(node, f"rounding_mode {spec.rounding} has no ap_types mode (expected one of {', '.join(ROUND_IN)})")
    if spec.narrow and not spec.signed:
        r.fail(node, "narrow range on an unsigned Quant ([0, 2^b - 2]) has no ap_types overflow mode")
    if spec.bits == 1 and spec.signed:
        r.fail(node, "a 1-bit signed activation Quant is bipolar (+-1): no fixed-point type")
    frac = 1 - int(exp)
    try:
        return FixedType(width=spec.bits, integer=spec.bits - frac, signed=spec.signed, rounding=ROUND_IN[spec.rounding],
                         overflow="AP_SAT_SYM" if spec.narrow else "AP_SAT")
    except FixedTypeError as exc:
        r.fail(node, exc.detail)


def _holds(big: FixedType, small: FixedType) -> bool:
    return big.frac >= small.frac and big.min_value <= small.min_value and big.max_value >= small.max_value


@op("Quant")
def _quant(r: Reader, node) -> None:
    spec = quant_spec(r, node)
    src = r.get(node, node.input[0])
    if isinstance(src, Const):
        r.set(node, QConst(int_values(r, node, spec, src.value), spec.scale, spec.bits, spec.signed, spec.narrow,
                           label(node)))
        return
    t = act_type(r, node, spec)
    if isinstance(src, GraphInput):
        layer = ir.Input(name=r.layer_name(src.name), out_type=t, shape=src.shape)
        r.set(node, r.add(layer, src.shape))
    elif isinstance(src, Pending):
        r.set(node, r.materialize(src, _with_offset(r, node, src, t)))
    elif isinstance(src, Built) and _holds(t, src.type):
        r.set(node, src)  # the identity on every value the tensor can hold
    elif isinstance(src, Built):
        r.fail(node, f"requantises layer '{src.layer}' ({src.type}) into {t}: the integer model rounds only "
               "after a weighted layer, an add or a global average pool")
    else:
        r.fail(node, "unexpected input")


def _with_offset(r: Reader, node, p: Pending, t: FixedType) -> FixedType:
    """A sum or pool plus a constant c, then FLOOR: c = half an LSB is AP_RND (ties up); c = half
    an LSB less at most one step of the value's grid is AP_RND_MIN_INF (ties down)."""
    if p.offset is None:
        return t
    grid = max(b.type.frac for b in p.inputs) if p.kind == "add" else None
    if grid is None:
        grid = p.inputs[0].type.frac + max(p.mult.denominator.bit_length() - 1, 0)
    eps = Fraction(1, 2 ** (t.frac + 1)) - p.offset if t.frac >= -1 else None
    if t.rounding == "AP_TRN" and eps == 0:
        return dataclasses.replace(t, rounding="AP_RND")
    if t.rounding == "AP_TRN" and eps is not None and 0 < eps <= Fraction(1, 2 ** grid):
        return dataclasses.replace(t, rounding="AP_RND_MIN_INF")
    r.fail(node, f"a constant {float(p.offset)!r} added before this Quant is not a rounding offset the integer "
           "model knows (half an LSB before FLOOR)")


@op("BipolarQuant")
def _bipolar(r: Reader, node) -> None:
    _domain_ok(r, node, QONNX_DOMAINS)
    src = r.get(node, node.input[0])
    if not isinstance(src, Const):
        r.fail(node, "a bipolar activation (+-1) has no fixed-point type; only weights may be BipolarQuant")
    scale = np.asarray(r.const(node, node.input[1]))
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        r.fail(node, "scale must be positive and finite")
    q = np.where(np.asarray(src.value, dtype=np.float32) >= 0, 1, -1).astype(np.int64)
    r.set(node, QConst(q, scale, 1, True, False, label(node)))


# -- weighted layers ---------------------------------------------------------------------------

def _table(r: Reader, node, w: QConst) -> tuple[np.ndarray, int, np.ndarray]:
    """(codes, bits, levels) of Quant'd weight integers: VecQ's odd table when every value is odd
    (d = 2c + 1, one bit fewer), else plain integer codes."""
    q = w.q
    if w.signed and w.bits >= 2 and np.all(q % 2 != 0) and w.bits - 1 <= 8:
        k = w.bits - 1
        return (q - 1) // 2, k, ir.named_levels("odd", k)
    if w.bits == 1 and w.signed:  # bipolar: +-1 is the 1-bit odd table
        return (q - 1) // 2, 1, ir.named_levels("odd", 1)
    k = w.bits + (0 if w.signed else 1)
    if k > 8:
        r.fail(node, f"{w.bits}-bit {'signed' if w.signed else 'unsigned'} weights: the integer model's codes "
               "have at most 8 bits")
    return q, k, ir.named_levels("int", k)


def _per_channel(r: Reader, node, values, axis: int, what: str) -> list[Fraction]:
    """One exact value per index of ``axis`` of an array constant along every other axis."""
    v = np.moveaxis(np.asarray(values, dtype=object), axis, -1)
    v = v.reshape(-1, v.shape[-1])
    if not all(len(set(v[:, j].tolist())) == 1 for j in range(v.shape[1])):
        r.fail(node, f"the {what} varies inside an output channel: only a per-channel {what} is a layer constant")
    return [Fraction(float(x)) if not isinstance(x, Fraction) else x for x in v[0]]


def _weights(r: Reader, node, name: str, out_axis: int):
    w = r.get(node, name)
    if not isinstance(w, QConst):
        r.fail(node, "its weights are not quantised: they must come through a Quant (or BipolarQuant) on a constant")
    scale = np.broadcast_to(np.asarray(w.scale, dtype=np.float64), w.q.shape)
    codes, bits, levels = _table(r, node, w)
    return codes, bits, levels, _per_channel(r, node, scale, out_axis, "weight scale")


def _bias(r: Reader, node, name: str | None, n: int) -> list[Fraction]:
    if not name:
        return [Fraction(0)] * n
    s = r.get(node, name)
    if isinstance(s, QConst):
        vals = s.values().reshape(-1)
    elif isinstance(s, Const):
        vals = [Fraction(float(x)) for x in np.asarray(s.value, dtype=np.float64).reshape(-1)]
    else:
        r.fail(node, "the bias must be a constant")
    if len(vals) not in (1, n):
        r.fail(node, f"the bias has {len(vals)} values for {n} output channels")
    return list(vals) * n if len(vals) == 1 else list(vals)


@op("Conv")
def _conv(r: Reader, node) -> None:
    _domain_ok(r, node, _STANDARD)
    x = _feature_map(r, node, node.input[0])
    a = attrs(node)
    codes, bits, levels, scale = _weights(r, node, node.input[1], 0)
    o, i, kh, kw = codes.shape
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or any(d != 1 for d in a.get("dilations", [1, 1])):
        r.fail(node, "auto_pad and dilations other than 1 are not supported")
    if list(a.get("kernel_shape", [kh, kw])) != [kh, kw]:
        r.fail(node, f"kernel_shape {a['kernel_shape']} does not match the weights {[kh, kw]}")
    pt, pl, pb, pr = a.get("pads", [0, 0, 0, 0])
    geo = {"stride": tuple(a.get("strides", [1, 1])), "padding": (pt, pb, pl, pr)}
    c, group = x.shape[2], a.get("group", 1)
    if group == 1 and i == c:
        layer = ir.Conv2D(name="", out_type=None, bits=bits, levels=levels,
                          codes=codes.transpose(2, 3, 1, 0).astype(np.int8), **geo)
    elif group == c and i == 1 and o == c:
        layer = ir.DepthwiseConv2D(name="", out_type=None, bits=bits, levels=levels,
                                   codes=codes[:, 0].transpose(1, 2, 0).astype(np.int8), **geo)
    else:
        r.fail(node, f"group={group} with {c} input channels and weights {list(codes.shape)}: only plain and "
               "depthwise convolutions are supported")
    bias = _bias(r, node, node.input[2] if len(node.input) > 2 else None, o)
    r.set(node, Pending("weighted", label(node), layer.infer_shape([x.shape]), [x], layer, scale, bias))


def _dense(r: Reader, node, x: Built, codes, bits, levels, scale, bias) -> None:
    n, m = codes.shape
    if len(x.shape) != 1 or x.shape[0] != n:
        r.fail(node, f"expects a flat input of {n} features, got shape {list(x.shape)}")
    if x.chw is not None:  # ONNX flattened (c, h, w); the integer model's flatten is (h, w, c)
        h, w, c = x.chw
        codes = codes.reshape(c, h, w, m).transpose(1, 2, 0, 3).reshape(n, m)
    layer = ir.Dense(name="", out_type=None, bits=bits, levels=levels, codes=codes.astype(np.int8))
    r.set(node, Pending("weighted", label(node), (m,), [x], layer, scale, bias))


@op("MatMul")
def _matmul(r: Reader, node) -> None:
    _domain_ok(r, node, _STANDARD)
    x = r.built(node, node.input[0])
    codes, bits, levels, scale = _weights(r, node, node.input[1], 1)
    if codes.ndim != 2:
        r.fail(node, f"weights of shape {list(codes.shape)}: expected (features in, features out)")
    _dense(r, node, x, codes, bits, levels, scale, [Fraction(0)] * codes.shape[1])


@op("Gemm")
def _gemm(r: Reader, node) -> None:
    _domain_ok(r, node, _STANDARD)
    a = attrs(node)
    if a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0 or a.get("transA", 0):
        r.fail(node, "only alpha = beta = 1 and transA = 0 are supported")
    x = r.built(node, node.input[0])
    trans = bool(a.get("transB", 0))
    codes, bits, levels, scale = _weights(r, node, node.input[1], 0 if trans else 1)
    codes = codes.T if trans else codes
    bias = _bias(r, node, node.input[2] if len(node.input) > 2 else None, codes.shape[1])
    _dense(r, node, x, codes, bits, levels, scale, bias)


def _feature_map(r: Reader, node, name: str) -> Built:
    x = r.built(node, name)
    if len(x.shape) != 3 or x.nhwc:
        r.fail(node, f"expects an (N, C, H, W) feature map, got {'a transposed map' if x.nhwc else list(x.shape)}")
    return x


# -- elementwise ---------------------------------------------------------------------------------

def _fractions(state) -> np.ndarray:
    if isinstance(state, QConst):
        return state.values()
    return np.vectorize(lambda v: Fraction(float(v)), otypes=[object])(np.asarray(state.value, dtype=np.float64))


def _split_const(r: Reader, node):
    """(constant values as Fractions, the other input's state) of a binary op with one constant."""
    sa, sb = (r.get(node, n) for n in node.input[:2])
    const_a, const_b = isinstance(sa, (Const, QConst)), isinstance(sb, (Const, QConst))
    if const_a == const_b:
        return None, None
    return (_fractions(sa), sb) if const_a else (_fractions(sb), sa)


def _channel_values(r: Reader, node, c: np.ndarray, shape, what: str) -> list[Fraction]:
    """Per-channel values of constant ``c`` applied to a tensor of our ``shape`` (ONNX: (1, C, H, W)
    or (1, n)); refused when it would enlarge the tensor or varies inside a channel."""
    onnx_shape = (1, shape[2], shape[0], shape[1]) if len(shape) == 3 else (1, shape[0])
    try:
        ok = np.broadcast_shapes(c.shape, onnx_shape) == onnx_shape
    except ValueError:
        ok = False
    if not ok:
        r.fail(node, f"a {what} constant of shape {list(c.shape)} does not fit the tensor {list(onnx_shape)}")
    return _per_channel(r, node, np.broadcast_to(c, onnx_shape), 1, what)


@op("Mul")
def _mul(r: Reader, node) -> None:
    _domain_ok(r, node, _STANDARD)
    c, p = _split_const(r, node)
    if isinstance(p, Pending) and p.kind == "weighted" and not p.relu:
        v = _channel_values(r, node, c, p.shape, "scale")
        r.set(node, dataclasses.replace(p, scale=[s * x for s, x in zip(p.scale, v)],
                                        bias=[b * x for b, x in zip(p.bias, v)]))
    elif isinstance(p, Pending) and p.kind == "gap" and not p.relu and p.offset is None and c.size == 1:
        r.set(node, dataclasses.replace(p, mult=p.mult * c.reshape(-1)[0]))
    else:
        r.fail(node, "a Mul is exact only by a constant on a weighted layer's result or a global pool's sum, "
               "before its Quant")


@op("Add")
def _add(r: Reader, node) -> None:
    _domain_ok(r, node, _STANDARD)
    c, p = _split_const(r, node)
    if c is not None:
        if isinstance(p, Pending) and p.kind == "weighted" and not p.relu:
            v = _channel_values(r, node, c, p.shape, "bias")
            r.set(node, dataclasses.replace(p, bias=[b + x for b, x in zip(p.bias, v)]))
        elif isinstance(p, Pending) and p.kind in ("add", "gap") and not p.relu and p.offset is None and c.size == 1:
            r.set(node, dataclasses.replace(p, offset=c.reshape(-1)[0]))
        else:
            r.fail(node, "adding a constant is exact only as a weighted layer's bias (or a rounding offset "
                   "before a Quant)")
        return
    first = r.get(node, node.input[0])
    if isinstance(first, Pending) and first.kind == "add" and not first.relu and first.offset is None:
        ins = first.inputs + [r.built(node, node.input[1])]  # a chain of adds is one add
    else:
        ins = [r.built(node, n) for n in node.input[:2]]
    if any(b.shape != ins[0].shape or b.nhwc != ins[0].nhwc or b.chw != ins[0].chw for b in ins) or len(ins) > 8:
        r.fail(node, f"adds 2..8 tensors of one shape and layout, got {[list(b.shape) for b in ins]}")
    r.set(node, Pending("add", label(node), ins[0].shape, ins, chw=ins[0].chw))


@op("Relu")
def _relu(r: Reader, node) -> None:
    _domain_ok(r, node, _STANDARD)
    s = r.get(node, node.input[0])
    if isinstance(s, Pending) and not s.relu:
        r.set(node, dataclasses.replace(s, relu=True))
        return
    x = r.built(node, node.input[0])
    layer = ir.ReLU(name=r.layer_name(label(node)), out_type=relu_out(x.type), inputs=(x.layer,))
    r.set(node, r.add(layer, x.shape, chw=x.chw, nhwc=x.nhwc))


# -- pooling and shapes --------------------------------------------------------------------------

def _pool_geometry(r: Reader, node) -> tuple[tuple[int, int], tuple[int, int]]:
    a = attrs(node)
    if any(a.get("pads", [0])) or a.get("ceil_mode", 0) or any(d != 1 for d in a.get("dilations", [1])) \
            or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        r.fail(node, "pooling with padding, ceil_mode or dilations is not supported")
    k = tuple(a["kernel_shape"])
    return k, tuple(a.get("strides", k))


@op("MaxPool")
def _maxpool(r: Reader, node) -> None:
    _domain_ok(r, node, _STANDARD)
    if len(node.output) > 1 and node.output[1]:
        r.fail(node, "the indices output is not supported")
    x = _feature_map(r, node, node.input[0])
    k, s = _pool_geometry(r, node)
    layer = ir.MaxPool2D(name=r.layer_name(label(node)), out_type=x.type, pool=k, stride=s, inputs=(x.layer,))
    r.set(node, r.add(layer, layer.infer_shape([x.shape])))


@op("AveragePool")
def _avgpool(r: Reader, node) -> None:
    _domain_ok(r, node, _STANDARD)
    x = _feature_map(r, node, node.input[0])
    k, s = _pool_geometry(r, node)
    extra = (k[0] * k[1]).bit_length() - 1
    if k[0] * k[1] != 1 << extra:
        r.fail(node, f"the mean over a {k[0]}x{k[1]} window is not a fixed-point value (power-of-two windows only)")
    t = FixedType(width=x.type.width + extra, integer=x.type.integer, signed=x.type.signed)
    layer = ir.AvgPool2D(name=r.layer_name(label(node)), out_type=t, pool=k, stride=s, inputs=(x.layer,))
    r.set(node, r.add(layer, layer.infer_shape([x.shape])))


@op("GlobalAveragePool")
def _global_avg(r: Reader, node) -> None:
    _domain_ok(r, node, _STANDARD)
    x = _feature_map(r, node, node.input[0])
    h, w, c = x.shape
    if (h * w) & (h * w - 1):
        r.fail(node, f"the mean over {h}x{w} values is not a fixed-point multiple of the sum (power-of-two "
               "windows only)")
    r.set(node, Pending("gap", label(node), (c,), [x], mult=Fraction(1, h * w)))


@op("ReduceSum")
def _reduce_sum(r: Reader, node) -> None:
    _domain_ok(r, node, _STANDARD)
    x = _feature_map(r, node, node.input[0])
    axes = attrs(node).get("axes")
    if len(node.input) > 1 and node.input[1]:
        axes = r.const(node, node.input[1]).tolist()
    if sorted(int(a) % 4 for a in (axes or [])) != [2, 3]:
        r.fail(node, f"only a sum over the spatial axes (2, 3) is supported, got axes {axes}")
    r.set(node, Pending("gap", label(node), (x.shape[2],), [x]))


def _flatten(r: Reader, node) -> None:
    s = r.get(node, node.input[0])
    if isinstance(s, (Pending, Built)) and len(s.shape) == 1:
        r.set(node, s)  # already flat: (N, C, 1, 1) of a global pool, or a flat tensor
        return
    x = r.built(node, node.input[0])
    if len(x.shape) != 3:
        r.fail(node, f"cannot flatten a tensor of shape {list(x.shape)}")
    layer = ir.Flatten(name=r.layer_name(label(node)), out_type=x.type, inputs=(x.layer,))
    h, w, c = x.shape
    # ONNX flattens NCHW in (c, h, w) order; after Transpose(0, 2, 3, 1) in ours, (h, w, c)
    r.set(node, r.add(layer, (h * w * c,), chw=None if x.nhwc or c == 1 or h * w == 1 else (h, w, c)))


@op("Flatten")
def _flatten_op(r: Reader, node) -> None:
    _domain_ok(r, node, _STANDARD)
    if attrs(node).get("axis", 1) != 1:
        r.fail(node, "only Flatten(axis=1) is supported")
    _flatten(r, node)


@op("Reshape")
def _reshape(r: Reader, node) -> None:
    _domain_ok(r, node, _STANDARD)
    target = [int(v) for v in r.const(node, node.input[1]).reshape(-1)]
    s = r.get(node, node.input[0])
    size = int(np.prod(getattr(s, "shape", (0,))))
    if len(target) != 2 or target[1] not in (size, -1):
        r.fail(node, f"only a reshape to (N, {size}) (a flatten) is supported, got {target}")
    _flatten(r, node)


@op("Transpose")
def _transpose(r: Reader, node) -> None:
    _domain_ok(r, node, _STANDARD)
    x = r.built(node, node.input[0])
    perm = list(attrs(node).get("perm", []))
    if len(x.shape) == 3 and not x.nhwc and perm == [0, 2, 3, 1]:
        r.set(node, dataclasses.replace(x, nhwc=True))
    elif x.nhwc and perm == [0, 3, 1, 2]:
        r.set(node, dataclasses.replace(x, nhwc=False))
    else:
        r.fail(node, f"only NCHW <-> NHWC transposes of a feature map are supported, got perm {perm}")


@op("Identity", "Dropout")
def _identity(r: Reader, node) -> None:
    _domain_ok(r, node, _STANDARD)
    r.set(node, r.get(node, node.input[0]))


@op("Constant")
def _constant(r: Reader, node) -> None:
    _domain_ok(r, node, _STANDARD)
    a = attrs(node)
    if "value" not in a:
        r.fail(node, "only Constant nodes with a 'value' tensor are supported")
    from onnx import numpy_helper
    r.set(node, Const(numpy_helper.to_array(a["value"])))
