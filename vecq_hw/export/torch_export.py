"""PyTorch (VecQ layers + fixed-point activations) -> the integer model.

The exporter walks a flat chain of modules and recognises these patterns::

    FixedQuant                                  -> Input
    VecQLinear|VecQConv2d [BatchNorm] FixedQuant        -> Dense|Conv2D (out = that type)
    VecQLinear|VecQConv2d [BatchNorm] ReLU FixedQuant   -> Dense|Conv2D + ReLU
    ReLU | MaxPool2d | AvgPool2d | Flatten | Dropout | Identity

BatchNorm (eval statistics) folds into the per-channel scale and bias; the integer weight
codes never change. Every weighted layer must end in a FixedQuant: that is the one
requantisation of the contract, and without it there is no exact deployed type to name.

Layout: PyTorch is channels-first, the integer model channels-last, so conv tables are
transposed and the first dense layer after a Flatten has its rows permuted from (C, H, W)
order to (H, W, C) order. Nothing else changes, so the deployed network is the same function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .. import ir
from ..errors import ExportError
from ..fixed import FixedType

#: Overflow modes for which relu(requant(y)) == requant(relu(y)); see _split_relu.
_MONOTONE_OVERFLOW = ("AP_SAT", "AP_SAT_ZERO", "AP_SAT_SYM")


@dataclass
class ExportOptions:
    """How the float constants s_j, b_j become fixed point.

    ``scale_bits`` is the number of significant bits kept for the largest scale of a layer
    (the fractional bits follow from its magnitude); ``scale_frac``, when given, fixes the
    fractional bits of the scale instead. Biases get the fractional bits of the product
    acc * s, so that adding them never needs an alignment shift wider than the product.
    """

    scale_bits: int = 16
    scale_frac: int | None = None
    bias_frac: int | None = None
    multiplier: str = "auto"
    name: str = "model"


def _flat_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    out = []
    for name, m in model.named_children():
        if isinstance(m, nn.Sequential):
            out.extend((f"{name}.{n}", c) for n, c in _flat_modules(m))
        else:
            out.append((name, m))
    if not out and not isinstance(model, nn.Sequential):
        raise ExportError(f"{type(model).__name__} has no child modules; expected a flat chain such as nn.Sequential",
                          field="model")
    return out


def _is_fixed_quant(m):
    return hasattr(m, "fixed_type") and not hasattr(m, "integer_weights")


def _is_weighted(m):
    return hasattr(m, "integer_weights") and isinstance(m, (nn.Linear, nn.Conv2d))


def _integer_view(m: nn.Module, where: str):
    """(codes in torch layout, alpha per output channel, bits, encoding) of a VecQ layer."""
    try:
        iw = m.integer_weights()
    except Exception as exc:  # the layer knows why (e.g. float mode, a mean offset)
        raise ExportError(str(exc), field=where) from exc
    if isinstance(iw, dict):
        codes, alpha, bits, enc = iw["codes"], iw["alpha"], iw["bits"], iw.get("encoding", "odd")
    elif isinstance(iw, tuple):
        codes, alpha, bits, enc = (tuple(iw) + ("odd",))[:4]
    else:
        codes, alpha, bits, enc = iw.codes, iw.alpha, iw.bits, getattr(iw, "encoding", "odd")
    codes = np.asarray(codes)
    alpha = np.broadcast_to(np.asarray(alpha, dtype=np.float64).reshape(-1), (codes.shape[0],)).copy()
    return codes.astype(np.int8), alpha, int(bits), str(enc)


def _unit_per_code(encoding: str) -> float:
    # value of one unit of d: odd encoding w = (c + 1/2) alpha = d * alpha / 2
    return 0.5 if encoding == "odd" else 1.0


def _fixed_for(values: np.ndarray, frac: int) -> tuple[np.ndarray, FixedType]:
    """Round float constants to mantissas with `frac` fractional bits, in the narrowest type."""
    m = np.round(np.asarray(values, dtype=np.float64) * 2.0 ** frac)
    if not np.all(np.isfinite(m)) or np.max(np.abs(m), initial=0) >= 2.0 ** 60:
        raise ExportError(f"constant out of range for {frac} fractional bits")
    m = m.astype(np.int64)
    width = ir.signed_width_for(int(m.min(initial=0)), int(m.max(initial=0)))
    width = max(width, 2)
    return m, FixedType(width=width, integer=width - frac, signed=True)


def _split_relu(t: FixedType, where: str) -> tuple[FixedType, FixedType]:
    """Types for requant-then-ReLU that equal PyTorch's ReLU-then-quantise.

    requant is monotone and maps 0 to 0, so for saturating overflow modes both orders agree
    as long as the pre-ReLU type has the same top value and resolution as ``t``. An unsigned
    ``t`` gets one more integer bit and a sign in front of the ReLU.
    """
    if t.overflow not in _MONOTONE_OVERFLOW:
        raise ExportError(f"{t} after a ReLU needs a saturating overflow mode ({', '.join(_MONOTONE_OVERFLOW)}) "
                          "to be folded exactly", field=where)
    if t.signed:
        return t, t
    pre = FixedType(width=t.width + 1, integer=t.integer + 1, signed=True, rounding=t.rounding,
                    overflow=t.overflow)
    return pre, t


def export_model(model: nn.Module, input_shape, options: ExportOptions | None = None) -> ir.Model:
    """Turn an eval-mode PyTorch chain into a checked integer model.

    ``input_shape`` is PyTorch's per-sample shape: (C, H, W) or (features,).
    """
    opts = options or ExportOptions()
    mods = _flat_modules(model)
    if not mods or not _is_fixed_quant(mods[0][1]):
        raise ExportError("the first module must be a FixedQuant input quantiser (the input's fixed-point type)",
                          field=mods[0][0] if mods else "model")
    in_shape = tuple(int(s) for s in input_shape)
    if len(in_shape) == 3:
        c, h, w = in_shape
        shape = (h, w, c)
    elif len(in_shape) == 1:
        shape = in_shape
    else:
        raise ExportError(f"input shape must be (C, H, W) or (features,), got {input_shape}", field="input_shape")
    typ = _as_type(mods[0][1])
    layers: list[ir.Layer] = [ir.Input(name="input", out_type=typ, shape=shape)]
    torch_order = None  # after Flatten of (H, W, C): PyTorch's flat index per channels-last index
    i = 1
    while i < len(mods):
        name, m = mods[i]
        lname = _layer_name(name, layers)
        if _is_weighted(m):
            i, new, shape, typ = _export_weighted(mods, i, shape, typ, torch_order, opts)
            layers.extend(new)
            torch_order = None
            continue
        if isinstance(m, (nn.Dropout, nn.Identity)):
            pass
        elif isinstance(m, nn.ReLU):
            layers.append(ir.ReLU(name=lname, out_type=typ))
        elif isinstance(m, nn.MaxPool2d):
            pool, stride = _pool_params(m, name)
            layers.append(ir.MaxPool2D(name=lname, out_type=typ, pool=pool, stride=stride))
        elif isinstance(m, nn.AvgPool2d):
            pool, stride = _pool_params(m, name)
            extra = (pool[0] * pool[1]).bit_length() - 1
            if pool[0] * pool[1] != 1 << extra:
                raise ExportError(f"average pooling {pool} is not a power-of-two window, so its mean is not exact",
                                  field=name)
            typ = FixedType(width=typ.width + extra, integer=typ.integer, signed=typ.signed,
                            rounding=typ.rounding, overflow=typ.overflow)
            layers.append(ir.AvgPool2D(name=lname, out_type=typ, pool=pool, stride=stride))
        elif isinstance(m, nn.Flatten):
            if len(shape) == 3:
                h, w, c = shape
                torch_order = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
            layers.append(ir.Flatten(name=lname, out_type=typ))
        elif _is_fixed_quant(m):
            t = _as_type(m)
            if t.frac < typ.frac or t.max_value < _unrounded(typ).max_value or t.min_value > typ.min_value:
                raise ExportError(f"a FixedQuant({t}) that is not right after a weighted layer would round or "
                                  f"clip its {typ} input; only one requantisation per weighted layer is supported",
                                  field=name)
        else:
            raise ExportError(f"unsupported module {type(m).__name__}; supported: VecQLinear, VecQConv2d, "
                              "BatchNorm, ReLU, MaxPool2d, AvgPool2d, Flatten, FixedQuant, Dropout", field=name)
        shape = layers[-1].output_shape(shape) if layers[-1].name == lname else shape
        i += 1
    return ir.Model(name=opts.name, layers=layers).check(where=opts.name)


def _unrounded(t: FixedType) -> FixedType:
    return FixedType(width=t.width, integer=t.integer, signed=t.signed)


def _as_type(m) -> FixedType:
    t = m.fixed_type
    return t if isinstance(t, FixedType) else FixedType.parse(str(t))


def _layer_name(torch_name: str, layers) -> str:
    base = "l_" + torch_name.replace(".", "_")
    taken = {layer.name for layer in layers}
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    return name


def _pair(v):
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _pool_params(m, where):
    if _pair(m.padding) != (0, 0) or getattr(m, "ceil_mode", False) or _pair(getattr(m, "dilation", 1)) != (1, 1):
        raise ExportError("pooling with padding, dilation or ceil_mode is not supported", field=where)
    pool = _pair(m.kernel_size)
    stride = _pair(m.stride if m.stride is not None else m.kernel_size)
    return pool, stride


def _export_weighted(mods, i, shape, in_type, torch_order, opts):
    name, m = mods[i]
    codes, alpha, bits, enc = _integer_view(m, name)
    n_out = codes.shape[0]
    if isinstance(m, nn.Conv2d):
        if m.groups != 1 or _pair(m.dilation) != (1, 1) or m.padding_mode != "zeros":
            raise ExportError("conv2d with groups > 1, dilation or non-zero padding mode is not supported", field=name)
        if len(shape) != 3 or shape[2] != m.in_channels:
            raise ExportError(f"conv2d expects {m.in_channels} input channels, the chain gives shape {shape}", field=name)
        if isinstance(m.padding, str):
            if m.padding != "same":
                pad = (0, 0, 0, 0)
            else:
                kh, kw = _pair(m.kernel_size)
                pad = ((kh - 1) // 2, kh - 1 - (kh - 1) // 2, (kw - 1) // 2, kw - 1 - (kw - 1) // 2)
        else:
            ph, pw = _pair(m.padding)
            pad = (ph, ph, pw, pw)
        table = codes.transpose(2, 3, 1, 0)  # (out, in, kh, kw) -> (kh, kw, in, out)
    else:
        if len(shape) != 1 or shape[0] != m.in_features:
            raise ExportError(f"linear expects {m.in_features} inputs, the chain gives shape {shape}", field=name)
        table = codes.T  # (out, in) -> (in, out)
        if torch_order is not None:
            table = table[torch_order]
    table = np.ascontiguousarray(table, dtype=np.int8)

    # fold: y = acc * alpha * u * g + (bias - mean) * g + beta
    g = np.ones(n_out)
    b = m.bias.detach().double().cpu().numpy() if m.bias is not None else np.zeros(n_out)
    j = i + 1
    if j < len(mods) and isinstance(mods[j][1], (nn.BatchNorm1d, nn.BatchNorm2d)):
        bn = mods[j][1]
        if not bn.track_running_stats or bn.running_mean is None:
            raise ExportError("BatchNorm without running statistics cannot be folded", field=mods[j][0])
        gamma = bn.weight.detach().double().cpu().numpy() if bn.affine else np.ones(n_out)
        beta = bn.bias.detach().double().cpu().numpy() if bn.affine else np.zeros(n_out)
        g = gamma / np.sqrt(bn.running_var.detach().double().cpu().numpy() + bn.eps)
        b = (b - bn.running_mean.detach().double().cpu().numpy()) * g + beta
        j += 1
    s = alpha * _unit_per_code(enc) * g

    relu = j < len(mods) and isinstance(mods[j][1], nn.ReLU)
    q = j + 1 if relu else j
    if q >= len(mods) or not _is_fixed_quant(mods[q][1]):
        raise ExportError("a weighted layer must be followed by [BatchNorm] [ReLU] FixedQuant: the FixedQuant names "
                          "the deployed output type", field=name)
    t = _as_type(mods[q][1])
    pre, post = _split_relu(t, mods[q][0]) if relu else (t, t)

    max_s = float(np.max(np.abs(s))) if s.size else 0.0
    if opts.scale_frac is not None:
        s_frac = opts.scale_frac
    else:
        s_frac = opts.scale_bits - (math.frexp(max_s)[1] if max_s > 0 else 0)
    s_m, s_type = _fixed_for(s, s_frac)
    b_frac = opts.bias_frac if opts.bias_frac is not None else in_type.frac + s_frac
    b_m, b_type = _fixed_for(b, b_frac)

    lname = "l_" + name.replace(".", "_")
    kind = ir.Conv2D if isinstance(m, nn.Conv2d) else ir.Dense
    extra = {"stride": _pair(m.stride), "padding": pad} if kind is ir.Conv2D else {}
    layer = kind(name=lname, out_type=pre, bits=bits, encoding=enc, codes=table, scale=s_m, scale_type=s_type,
                 bias=b_m, bias_type=b_type, accum_type=ir.accumulator_type(in_type, ir.multipliers(table, enc)),
                 multiplier=opts.multiplier, **extra)
    new = [layer]
    out_shape = layer.output_shape(shape)
    if relu:
        new.append(ir.ReLU(name=lname + "_relu", out_type=post))
    return q + 1, new, out_shape, post
