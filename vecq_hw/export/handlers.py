"""The handler table: one function per PyTorch module type, function or method the exporter
follows (like hls4ml's ``converters/pytorch_to_hls.py`` registry). Anything not in the table
is refused by :class:`.build.Builder`.

A handler gets ``(builder, fx_node, module_or_None)`` and returns the node's value
(:mod:`.values`). Every handler checks exactly the arguments it supports and refuses the rest
with one line naming the module (attribute path) or the line of ``forward``.
"""

from __future__ import annotations

import operator
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import ir
from ..errors import ExportError
from ..fixed import FixedType
from ..nn import FixedQuant, VecQConv2d, VecQLinear
from .build import Builder, Handlers
from .fold import MONOTONE_OVERFLOW, fold_batchnorm, weight_view  # noqa: F401  (the recipe checker reads it)
from .trace import target_name, where
from .values import BatchDim, Pending, PendingAdd, PendingGap, PendingWeighted, RawInput, ShapeOf, Tensor

HANDLERS = Handlers()


def _module(*classes):
    def reg(fn):
        for c in classes:
            HANDLERS.modules[c] = fn
        return fn
    return reg


def _function(*fns):
    def reg(fn):
        for f in fns:
            HANDLERS.functions[f] = fn
        return fn
    return reg


def _method(*names):
    def reg(fn):
        for n in names:
            HANDLERS.methods[n] = fn
        return fn
    return reg


def _pair(v):
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _arg(node, i, name, default):
    """Argument ``name`` of a call, positional (index i) or keyword."""
    if len(node.args) > i:
        return node.args[i]
    return node.kwargs.get(name, default)


def _only(b: Builder, node, allowed: tuple[str, ...]):
    extra = sorted(set(node.kwargs) - set(allowed))
    if extra:
        b.fail(node, f"{target_name(node)} with {', '.join(extra)} is not supported")


def _in_place(b: Builder, node):
    """An in-place op changes its input for every other reader: only when it is the one reader."""
    src = node.args[0]
    if len(src.users) > 1:
        b.fail(node, f"{target_name(node)} works in place on a tensor that other operations read too; "
                     "use the out-of-place form")


def _unrounded(t: FixedType) -> FixedType:
    return FixedType(width=t.width, integer=t.integer, signed=t.signed)


# ----------------------------------------------------------------------------- FixedQuant

@_module(FixedQuant)
def fixed_quant(b: Builder, node, m):
    t = m.fixed_type if isinstance(m.fixed_type, FixedType) else FixedType.parse(str(m.fixed_type))
    v = b.value(node)
    if isinstance(v, RawInput):
        if b.has_input:
            b.fail(node, "the model input goes through more than one FixedQuant; the input has one type")
        b.has_input = True
        shape = v.tshape
        if len(shape) == 3:
            ishape = (shape[1], shape[2], shape[0])
        elif len(shape) in (1, 2):  # a vector, or a graph's (nodes, features): the same layout
            ishape = shape
        else:
            raise ExportError(f"input shape must be (C, H, W), (features,) or (nodes, features), got {shape}",
                              field="input_shape")
        layer = ir.Input(name="input", out_type=t, shape=ishape)
        return b.emit(node, [layer], Tensor(layer="input", tshape=shape, ishape=ishape, typ=t), ())
    if isinstance(v, Pending):
        return b.finish(v, t, node)
    typ = v.typ
    if t.frac < typ.frac or t.max_value < _unrounded(typ).max_value or t.min_value > typ.min_value:
        b.fail(node, f"a FixedQuant({t}) that is not right after a weighted layer, add or average pool would "
                     f"round or clip its {typ} input; only one requantisation per operation is supported")
    return v  # holds every input value unchanged: nothing to compute


# ----------------------------------------------------------------------------- weighted layers

def _weighted_input(b, node, m, inp: Tensor):
    if isinstance(m, nn.Conv2d):
        if len(inp.ishape) != 3 or inp.tshape[0] != m.in_channels:
            b.fail(node, f"conv2d expects {m.in_channels} input channels, the graph gives shape {inp.tshape}")
    elif len(inp.tshape) != 1 or inp.tshape[0] != m.in_features:
        b.fail(node, f"linear expects {m.in_features} inputs, the graph gives shape {inp.tshape}")


@_module(VecQLinear, VecQConv2d)
def weighted(b: Builder, node, m):
    path = where(node)
    inp = b.settle(node, 0)
    _weighted_input(b, node, m, inp)
    view = weight_view(m, path)
    n_out = view.codes.shape[0]
    geometry = {}
    if isinstance(m, nn.Conv2d):
        if _pair(m.dilation) != (1, 1) or m.padding_mode != "zeros":
            b.fail(node, "conv2d with dilation or a non-zero padding mode is not supported")
        if m.groups == 1:
            kind = ir.Conv2D
            to_ir = lambda a: a.transpose(2, 3, 1, 0)  # noqa: E731  (out, in, kh, kw) -> (kh, kw, in, out)
        elif m.groups == m.in_channels == m.out_channels:
            kind = ir.DepthwiseConv2D
            to_ir = lambda a: a[:, 0].transpose(1, 2, 0)  # noqa: E731  (c, 1, kh, kw) -> (kh, kw, c)
        else:
            b.fail(node, f"conv2d with groups={m.groups} is not supported: groups 1, or groups = in = out "
                         "channels (depthwise)")
        kh, kw = _pair(m.kernel_size)
        if isinstance(m.padding, str):
            pad = (0, 0, 0, 0) if m.padding != "same" else \
                ((kh - 1) // 2, kh - 1 - (kh - 1) // 2, (kw - 1) // 2, kw - 1 - (kw - 1) // 2)
        else:
            ph, pw = _pair(m.padding)
            pad = (ph, ph, pw, pw)
        stride = _pair(m.stride)
        geometry = {"stride": stride, "padding": pad}
        h, w, _ = inp.ishape
        oh = (h + pad[0] + pad[1] - kh) // stride[0] + 1
        ow = (w + pad[2] + pad[3] - kw) // stride[1] + 1
        if oh <= 0 or ow <= 0:
            b.fail(node, f"the kernel {kh}x{kw} does not fit the input {h}x{w}")
        tshape, ishape = (n_out, oh, ow), (oh, ow, n_out)
    else:
        kind = ir.Dense
        # (out, in) -> (in, out); a flatten of (C, H, W) before it: rows in channels-last order
        to_ir = (lambda a: a.T) if inp.order is None else (lambda a: a.T[inp.order])  # noqa: E731
        tshape = ishape = (n_out,)
    bias = m.bias.detach().double().cpu().numpy() if m.bias is not None else np.zeros(n_out)
    common = dict(where=path, name=path, tshape=tshape, ishape=ishape, kind=kind, view=view,
                  s=view.alpha * view.unit, b=bias, inp=inp, geometry=geometry, opts=b.opts)
    form = weight_form(m.weight_quant)
    native = form(m, to_ir, common) if form is not None else None
    if native is not None:
        return native
    return PendingWeighted(table=np.ascontiguousarray(to_ir(view.codes), dtype=np.int8), **common)


#: quantiser class -> its native deployed form: ``form(module, to_ir, common)`` returns the pending
#: layer (``common``: PendingWeighted's keywords but the table; ``to_ir`` turns an array in the torch
#: weight layout (out, ...) into the integer model's), or None to export codes and levels after all
WEIGHT_FORMS: dict[type, Callable] = {}


def register_weight_form(quantizer_class: type):
    """Decorator: export the layers quantised by ``quantizer_class`` (and its subclasses) in the
    form the decorated function builds (ALQ's bit-planes: :mod:`.alq`), not as codes and levels."""
    def reg(fn):
        WEIGHT_FORMS[quantizer_class] = fn
        return fn
    return reg


def weight_form(quantizer) -> Callable | None:
    """The native form registered for this quantiser's class or a base class, or None."""
    return next((WEIGHT_FORMS[c] for c in type(quantizer).__mro__ if c in WEIGHT_FORMS), None)


@_module(nn.BatchNorm1d, nn.BatchNorm2d)
def batch_norm(b: Builder, node, m):
    v = b.value(node)
    if not isinstance(v, PendingWeighted) or v.relu or v.folded_bn:
        b.fail(node, "BatchNorm folds only into the VecQ layer right before it (as that layer's only reader, "
                     "before any ReLU or FixedQuant)")
    if m.training:
        b.fail(node, "BatchNorm is in training mode (batch statistics); call model.eval() before exporting")
    v.s, v.b = fold_batchnorm(m, v.s, v.b, where(node))
    v.folded_bn = True
    return v


# ----------------------------------------------------------------------------- activations

def _relu(b: Builder, node):
    v = b.value(node)
    if isinstance(v, Pending):
        v.relu = True  # applied before the FixedQuant's requantisation (split_relu)
        return v
    t = b.settle(node, 0)
    layer = ir.ReLU(name=b.layer_name(node, ir.ReLU.kind), out_type=t.typ, inputs=(t.layer,))
    return b.emit(node, [layer], Tensor(layer=layer.name, tshape=t.tshape, ishape=t.ishape, typ=t.typ,
                                        order=t.order), (t.layer,))


@_module(nn.ReLU)
def relu_module(b, node, m):
    if m.inplace:
        _in_place(b, node)
    return _relu(b, node)


@_function(F.relu, torch.relu, torch.relu_, F.relu_)
def relu_function(b, node, m):
    _only(b, node, ("inplace",))
    if node.target in (torch.relu_, F.relu_) or _arg(node, 1, "inplace", False):
        _in_place(b, node)
    return _relu(b, node)


@_method("relu", "relu_")
def relu_method(b, node, m):
    if node.target == "relu_":
        _in_place(b, node)
    return _relu(b, node)


@_module(nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d)
def identity(b, node, m):
    if m.training and not isinstance(m, nn.Identity):
        b.fail(node, "Dropout is in training mode; call model.eval() before exporting")
    return b.value(node)


@_method("contiguous")
def contiguous(b, node, m):
    return b.value(node)


# ----------------------------------------------------------------------------- pooling

def _pool_params(b, node, m):
    if _pair(m.padding) != (0, 0) or getattr(m, "ceil_mode", False) or _pair(getattr(m, "dilation", 1)) != (1, 1):
        b.fail(node, "pooling with padding, dilation or ceil_mode is not supported")
    pool = _pair(m.kernel_size)
    stride = _pair(m.stride if m.stride is not None else m.kernel_size)
    return pool, stride


def _pooled(b, node, t: Tensor, layer):
    h, w, c = layer.infer_shape((t.ishape,))
    return b.emit(node, [layer], Tensor(layer=layer.name, tshape=(c, h, w), ishape=(h, w, c), typ=layer.out_type),
                  (t.layer,))


def _pool_input(b, node, pool):
    t = b.settle(node, 0)
    if len(t.ishape) != 3:
        b.fail(node, f"pooling needs a (C, H, W) input, the graph gives {t.tshape}")
    if pool[0] > t.ishape[0] or pool[1] > t.ishape[1]:
        b.fail(node, f"window {list(pool)} is larger than the input {list(t.tshape)}")
    return t


@_module(nn.MaxPool2d)
def max_pool(b, node, m):
    if m.return_indices:
        b.fail(node, "MaxPool2d(return_indices=True) is not supported")
    pool, stride = _pool_params(b, node, m)
    t = _pool_input(b, node, pool)
    return _pooled(b, node, t, ir.MaxPool2D(name=b.layer_name(node, ir.MaxPool2D.kind), out_type=t.typ, pool=pool,
                                            stride=stride, inputs=(t.layer,)))


@_module(nn.AvgPool2d)
def avg_pool(b, node, m):
    pool, stride = _pool_params(b, node, m)
    area = pool[0] * pool[1]
    # without padding every window holds `area` values, so count_include_pad changes nothing;
    # divisor_override divides by another number: the same mean only when it equals the area
    if m.divisor_override is not None and m.divisor_override != area:
        b.fail(node, f"AvgPool2d(divisor_override={m.divisor_override}) divides a {pool[0]}x{pool[1]} window's sum "
                     f"by {m.divisor_override}, not its area {area}: not supported")
    extra = area.bit_length() - 1
    if area != 1 << extra:
        b.fail(node, f"average pooling {list(pool)} is not a power-of-two window, so its mean is not exact")
    t = _pool_input(b, node, pool)
    typ = FixedType(width=t.typ.width + extra, integer=t.typ.integer, signed=t.typ.signed,
                    rounding=t.typ.rounding, overflow=t.typ.overflow)
    return _pooled(b, node, t, ir.AvgPool2D(name=b.layer_name(node, ir.AvgPool2D.kind), out_type=typ, pool=pool,
                                            stride=stride, inputs=(t.layer,)))


def _gap(b, node, keepdim: bool):
    t = b.settle(node, 0)
    if len(t.ishape) != 3:
        b.fail(node, f"a global average needs a (C, H, W) input, the graph gives {t.tshape}")
    c = t.ishape[2]
    tshape = (c, 1, 1) if keepdim else (c,)
    return PendingGap(where=where(node), name=where(node) if node.op == "call_module" else node.name,
                      tshape=tshape, ishape=(c,), inp=t)


def _is_one(v) -> bool:
    return v == 1 or (isinstance(v, (tuple, list)) and tuple(v) == (1, 1))


@_module(nn.AdaptiveAvgPool2d)
def adaptive_avg_pool(b, node, m):
    if not _is_one(m.output_size):
        b.fail(node, f"AdaptiveAvgPool2d({m.output_size}) is not supported: only output size 1 (global average)")
    return _gap(b, node, keepdim=True)


@_function(F.adaptive_avg_pool2d)
def adaptive_avg_pool_function(b, node, m):
    _only(b, node, ("output_size",))
    if not _is_one(_arg(node, 1, "output_size", None)):
        b.fail(node, "adaptive_avg_pool2d is supported with output size 1 only (global average)")
    return _gap(b, node, keepdim=True)


@_method("mean")
@_function(torch.mean)
def mean(b, node, m):
    _only(b, node, ("dim", "keepdim"))
    dims = _arg(node, 1, "dim", None)
    keepdim = _arg(node, 2, "keepdim", False)
    dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
    if len(dims) != 2 or {d % 4 if isinstance(d, int) else None for d in dims} != {2, 3} or \
            not isinstance(keepdim, bool):
        b.fail(node, f"mean over dims {dims} is not supported: only over (2, 3) of an (N, C, H, W) tensor "
                     "(global average)")
    return _gap(b, node, keepdim=keepdim)


# ----------------------------------------------------------------------------- flatten

def _flatten(b, node):
    v = b.value(node)
    if isinstance(v, PendingGap) and v.tshape == (v.ishape[0], 1, 1):
        v.tshape = v.ishape  # (C, 1, 1) -> (C,): nothing moves
        return v
    t = b.settle(node, 0)
    if len(t.tshape) == 1:
        return t
    if len(t.ishape) == 1:  # (C, 1, 1) of a settled global average
        return Tensor(layer=t.layer, tshape=t.ishape, ishape=t.ishape, typ=t.typ, order=t.order)
    h, w, c = t.ishape
    layer = ir.Flatten(name=b.layer_name(node, ir.Flatten.kind), out_type=t.typ, inputs=(t.layer,))
    # PyTorch's flat index of each channels-last position: the dense after it permutes its rows
    order = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
    return b.emit(node, [layer], Tensor(layer=layer.name, tshape=(c * h * w,), ishape=(c * h * w,), typ=t.typ,
                                        order=order), (t.layer,))


def _check_flatten_dims(b, node, start, end):
    if start != 1 or end != -1:
        b.fail(node, f"flatten(start_dim={start}, end_dim={end}) is not supported: only start_dim=1, end_dim=-1 "
                     "(keep the batch, flatten each sample)")


@_module(nn.Flatten)
def flatten_module(b, node, m):
    _check_flatten_dims(b, node, m.start_dim, m.end_dim)
    return _flatten(b, node)


@_function(torch.flatten)
@_method("flatten")
def flatten_call(b, node, m):
    _only(b, node, ("start_dim", "end_dim"))
    _check_flatten_dims(b, node, _arg(node, 1, "start_dim", 0), _arg(node, 2, "end_dim", -1))
    return _flatten(b, node)


@_method("size")
def size(b, node, m):
    dim = _arg(node, 1, "dim", None)
    if dim != 0:
        b.fail(node, "only x.size(0) (the batch size) is supported")
    return BatchDim(source=node.args[0])


@_function(getattr)
def get_attribute(b, node, m):
    if node.args[1] != "shape":
        b.fail(node, f"reading .{node.args[1]} of a tensor is not supported")
    return ShapeOf(source=node.args[0])


@_function(operator.getitem)
def get_item(b, node, m):
    v = b.value(node)
    if isinstance(v, ShapeOf) and node.args[1] == 0:
        return BatchDim(source=v.source)
    b.fail(node, "indexing is not supported (only x.shape[0], the batch size)")


@_method("view", "reshape")
@_function(torch.reshape)
def view(b, node, m):
    args = list(node.args[1:])
    if node.kwargs:
        args = list(node.kwargs.get("shape", ()))
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = list(args[0])
    v = b.value(node)
    tshape = getattr(v, "tshape", None)
    n = int(np.prod(tshape)) if tshape else None

    def batch(a):
        return isinstance(a, torch.fx.Node) and isinstance(b.values.get(a), BatchDim)
    if len(args) != 2 or not ((batch(args[0]) and args[1] in (-1, n)) or (args[0] == -1 and args[1] == n)):
        b.fail(node, f"{target_name(node)} is supported only as a flatten: x.view(x.size(0), -1)")
    return _flatten(b, node)


# ----------------------------------------------------------------------------- add

@_function(operator.add, operator.iadd, torch.add)
@_method("add", "add_")
def add(b, node, m):
    _only(b, node, ())
    if len(node.args) != 2 or not all(isinstance(a, torch.fx.Node) for a in node.args):
        b.fail(node, f"{target_name(node)} of a tensor and a constant is input arithmetic: not supported "
                     "(only the sum of two tensors, a residual add)")
    if node.target in (operator.iadd, "add_"):
        _in_place(b, node)
    x, y = b.settle(node, 0, before="an add"), b.settle(node, 1, before="an add")
    if not x.same_layout(y):
        b.fail(node, f"add of tensors of shapes {x.tshape} and {y.tshape}: both must have one shape "
                     "(no broadcasting)")
    return PendingAdd(where=where(node), name=node.name, tshape=x.tshape, ishape=x.ishape, order=x.order, a=x,
                      b=y)
