"""Integer model (vecq_hw IR) -> hls4ml layer list + config -> ModelGraph.

The hls4ml model is built from a layer list (``ModelGraph.from_layer_list``), never by tracing
PyTorch. Every precision comes from the integer model: inputs, outputs, accumulators, weights,
scales, biases, pooling accumulators, activation tables; :func:`check_pinned` proves that no
type in the finished graph was left to a default.
"""

from __future__ import annotations

import re

import numpy as np
from hls4ml.model.types import FixedPrecisionType, IntegerPrecisionType, NamedType

from .. import ir
from ..errors import VecQError
from ..fixed import FixedType
from .layers import register

IO_TYPES = ("io_parallel", "io_stream")
STRATEGIES = ("Latency", "Resource")


def precision_of(t: FixedType):
    """hls4ml precision object for a FixedType (all modes explicit)."""
    if t.overflow == "AP_WRAP_SM":
        raise VecQError(f"{t}: AP_WRAP_SM is not supported by the HLS generation (hls4ml has no such mode)")
    if t.kind == "int":
        return IntegerPrecisionType(width=t.width, signed=t.signed)
    return FixedPrecisionType(width=t.width, integer=t.integer, signed=t.signed, rounding_mode=t.rounding[3:],
                              saturation_mode=t.overflow[3:], saturation_bits=t.sat_bits)


def precision_string(t: FixedType) -> str:
    """Fully explicit spelling for hls4ml's config parser."""
    if t.kind == "int":
        return str(t)
    u = "" if t.signed else "u"
    return f"ap_{u}fixed<{t.width},{t.integer},{t.rounding},{t.overflow},{t.sat_bits}>"


def hls_name(name: str, taken: set[str]) -> str:
    """A C identifier for a layer name, unique within the model."""
    base = re.sub(r"\W", "_", name)
    if not base or base[0].isdigit():
        base = "l_" + base
    if base.lower() in ("input",):
        base = base + "_1"
    out, i = base, 1
    while out.lower() in taken:
        i += 1
        out = f"{base}_{i}"
    taken.add(out.lower())
    return out


def term_type(in_type: FixedType, bits: int) -> FixedType:
    """Exact type of one product x * d, |d| <= 2**bits - 1."""
    extra = bits + 2
    return FixedType(width=min(in_type.width + extra, 64), integer=in_type.integer + extra, signed=True)


def pool_accum_type(in_type: FixedType, out_type: FixedType, area: int) -> FixedType:
    """Exact accumulator for an average pool: the window sum, with out_type's fractional bits.

    hls4ml computes ``accum_t y = sum; y /= N``; ap_fixed division by an integer keeps the
    dividend's fractional bits, so with frac >= in.frac + log2(N) the mean is exact.
    """
    extra = area.bit_length() - 1
    frac = max(out_type.frac, in_type.frac + extra)
    integer = max(in_type.integer + extra, out_type.integer) + 1
    return FixedType(width=integer + frac, integer=integer, signed=True)


def layer_list(model: ir.Model, *, strategy: str = "Latency", reuse_factor: int = 1, check: bool = True):
    """The hls4ml layer list and per-layer precision config for an integer model.

    Returns (layers, layer_config, names) where names maps IR layer name -> hls4ml name.
    ``check=False`` skips :meth:`Model.check` (only for tests that break a model on purpose).
    """
    if check:
        model.check()
    taken: set[str] = set()
    layers, cfg, names = [], {}, {}
    prev = None
    for layer, in_shape, in_type, out_shape in model.walk():
        name = hls_name(layer.name, taken)
        names[layer.name] = name
        prec = {"result": precision_string(layer.out_type)}
        d: dict = {"name": name}
        if prev is not None:
            d["inputs"] = [prev]
        if isinstance(layer, ir.Input):
            d.update(class_name="InputLayer", input_shape=list(layer.shape))
        elif isinstance(layer, ir.Weighted):
            acc, term = layer.accum_type, term_type(in_type, layer.bits)
            prec.update(accum=precision_string(acc), term=precision_string(term))
            d.update(
                bits=int(layer.bits), encoding=layer.encoding, multiplier=layer.multiplier,
                codes_data=np.asarray(layer.codes, dtype=np.int64),
                scale_mantissas=layer.scale, scale_frac=layer.scale_type.frac,
                bias_mantissas=layer.bias, bias_frac=layer.bias_type.frac,
                vecq_types={"weight": FixedType(width=int(layer.bits), integer=int(layer.bits), kind="int"),
                            "scale": layer.scale_type, "bias": layer.bias_type, "out": layer.out_type},
                accum_t=NamedType(f"{name}_accum_t", precision_of(acc)),
                term_t=NamedType(f"{name}_term_t", precision_of(term)),
                strategy=strategy, reuse_factor=int(reuse_factor),
            )
            prec.update(weight=f"ap_int<{layer.bits}>", scale=precision_string(layer.scale_type),
                        bias=precision_string(layer.bias_type))
            if isinstance(layer, ir.Dense):
                d.update(class_name="VecQDense", n_in=int(in_shape[0]), n_out=int(out_shape[0]))
            else:
                kh, kw = layer.kernel
                pt, pb, pl, pr = (int(p) for p in layer.padding)
                d.update(class_name="VecQConv2D", in_height=int(in_shape[0]), in_width=int(in_shape[1]),
                         n_chan=int(in_shape[2]), out_height=int(out_shape[0]), out_width=int(out_shape[1]),
                         n_filt=int(out_shape[2]), filt_height=kh, filt_width=kw,
                         stride_height=int(layer.stride[0]), stride_width=int(layer.stride[1]),
                         pad_top=pt, pad_bottom=pb, pad_left=pl, pad_right=pr)
        elif isinstance(layer, ir.ReLU):
            d.update(class_name="Activation", activation="relu")
            prec["table"] = precision_string(layer.out_type)  # unused by relu, pinned anyway
            d["table_t"] = NamedType(f"{name}_table_t", precision_of(layer.out_type))
        elif isinstance(layer, ir.Pool2D):
            avg = isinstance(layer, ir.AvgPool2D)
            acc = (pool_accum_type(in_type, layer.out_type, layer.pool[0] * layer.pool[1]) if avg
                   else layer.out_type)
            prec["accum"] = precision_string(acc)
            d.update(class_name="AveragePooling2D" if avg else "MaxPooling2D", data_format="channels_last",
                     in_height=int(in_shape[0]), in_width=int(in_shape[1]), n_filt=int(in_shape[2]),
                     out_height=int(out_shape[0]), out_width=int(out_shape[1]),
                     pool_height=int(layer.pool[0]), pool_width=int(layer.pool[1]),
                     stride_height=int(layer.stride[0]), stride_width=int(layer.stride[1]),
                     pad_top=0, pad_bottom=0, pad_left=0, pad_right=0, count_pad=False)
        elif isinstance(layer, ir.Flatten):
            d.update(class_name="Reshape", target_shape=[int(out_shape[0])])
        else:  # pragma: no cover - ir.check refuses unknown kinds
            raise VecQError(f"layer '{layer.name}': kind '{layer.kind}' has no HLS implementation")
        layers.append(d)
        cfg[name] = {"Precision": prec, "Trace": True, "ReuseFactor": int(reuse_factor),
                     "Strategy": strategy}
        prev = name
    return layers, cfg, names


def hls_config(model: ir.Model, *, backend="Vivado", io_type="io_parallel", reuse_factor=1, strategy="Latency",
               part="xcu250-figd2104-2L-e", clock_period=5, project_name="myproject", output_dir="hls_prj",
               trace=False, check=True):
    """(config dict for ModelGraph.from_layer_list, layer list, name map)."""
    from hls4ml.backends import get_backend

    if backend not in ("Vivado", "Vitis"):
        raise VecQError(f"backend must be 'Vivado' or 'Vitis', got {backend!r}")
    if io_type not in IO_TYPES:
        raise VecQError(f"io_type must be one of {IO_TYPES}, got {io_type!r}")
    if strategy not in STRATEGIES:
        raise VecQError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if not isinstance(reuse_factor, int) or reuse_factor < 1:
        raise VecQError(f"reuse_factor must be a positive integer, got {reuse_factor!r}")
    register()
    layers, layer_cfg, names = layer_list(model, strategy=strategy, reuse_factor=reuse_factor, check=check)
    config = get_backend(backend).create_initial_config(part=part, clock_period=clock_period, io_type=io_type)
    config.update(Backend=backend, OutputDir=str(output_dir), ProjectName=project_name, InputData=None,
                  OutputPredictions=None)
    config["HLSConfig"] = {
        "Model": {"Precision": {"default": precision_string(model.input.out_type)}, "ReuseFactor": reuse_factor,
                  "Strategy": strategy, "TraceOutput": bool(trace), "BramFactor": 1_000_000_000},
        "LayerName": layer_cfg,
    }
    return config, layers, names


def build_graph(model: ir.Model, **kw):
    """ModelGraph for an integer model (not written, not compiled), plus the name map."""
    from hls4ml.model.graph import ModelGraph

    config, layers, names = hls_config(model, **kw)
    graph = ModelGraph.from_layer_list(config, layers)
    check_pinned(graph, model, names)
    return graph, names


def _same(prec, t: FixedType) -> bool:
    want = precision_of(t)
    if isinstance(prec, FixedPrecisionType) != isinstance(want, FixedPrecisionType) or prec.width != want.width or prec.signed != want.signed:
        return False
    if isinstance(want, FixedPrecisionType):
        return (prec.integer == want.integer and prec.rounding_mode == want.rounding_mode
                and prec.saturation_mode == want.saturation_mode
                and (prec.saturation_bits or 0) == (want.saturation_bits or 0))
    return True


def check_pinned(graph, model: ir.Model, names: dict[str, str]) -> None:
    """Every type in the hls4ml graph is the one the integer model says (no default, no 'auto')."""
    types = {}
    for layer, _, in_type, _ in model.walk():
        types[names[layer.name]] = (layer, in_type)
    for node in graph.get_layers():
        if node.name not in types:
            raise VecQError(f"hls4ml added a layer '{node.name}' ({node.class_name}) the integer model does not have")
        layer, in_type = types[node.name]
        out = node.get_output_variable().type.precision
        if not _same(out, layer.out_type):
            raise VecQError(f"layer '{layer.name}': hls4ml output type {out} differs from {layer.out_type}")
        expected = {"result_t": layer.out_type}
        if isinstance(layer, ir.Weighted):
            expected.update(accum_t=layer.accum_type, scale_t=layer.scale_type, bias_t=layer.bias_type,
                            term_t=term_type(in_type, layer.bits),
                            weight_t=FixedType(width=layer.bits, integer=layer.bits, kind="int"))
        elif isinstance(layer, ir.AvgPool2D):
            expected["accum_t"] = pool_accum_type(in_type, layer.out_type, layer.pool[0] * layer.pool[1])
        elif isinstance(layer, ir.MaxPool2D):
            expected["accum_t"] = layer.out_type
        elif isinstance(layer, ir.ReLU):
            expected["table_t"] = layer.out_type
        for key, value in node.attributes.items():
            if not key.endswith("_t") or not isinstance(value, NamedType):
                continue
            if key not in expected:
                raise VecQError(f"layer '{layer.name}': hls4ml type '{key}' = {value.precision} is not pinned")
            if not _same(value.precision, expected[key]):
                raise VecQError(f"layer '{layer.name}': hls4ml type '{key}' = {value.precision}, "
                                f"expected {expected[key]}")
