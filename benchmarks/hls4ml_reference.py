"""The same network in real hls4ml (Resource strategy): what hls4ml configures, without synthesis.

``hls4ml_reference(model, reuse)`` builds a plain PyTorch equivalent of a sequential integer model
(conv2d / dense with the integer multipliers d as weights, relu, maxpool2d, flatten), converts it
with hls4ml's own PyTorch front end (``config_from_pytorch_model`` + ``convert_from_pytorch_model``,
Strategy 'Resource', one ReuseFactor per layer) and reads back, per weighted layer, what hls4ml
decided: the ReuseFactor it kept (hls4ml replaces an invalid one by the closest valid one and says
so), n_in x n_out of its dense kernel (conv: per output pixel), the multipliers its Resource
kernel instantiates (block_factor = ceil(n_in * n_out / RF), the products per ReuseLoop
iteration), their operand widths and the weight storage bits. Nothing is written or compiled (the
graph lives in a temporary folder) and nothing is synthesised: hls4ml states no II, latency, LUT
or DSP count before Vivado/Vitis runs, so the only timing given is the lower bound its kernel
structure implies (``ReuseLoop``: RF iterations at II=1 per input vector, i.e. per output pixel in
conv), and whether a product becomes DSPs or LUTs is for the HLS tool to decide.

Not part of ``vecq_hw`` (hls4ml + torch are heavy; the package's estimate does not need them).
"""

from __future__ import annotations

import contextlib
import io
import math
import tempfile

from vecq_hw import ir
from vecq_hw.errors import VecQError
from vecq_hw.ir.arith import signed_width_for

INPUT_NAME = "x"  # hls4ml's PyTorch front end names the input after forward()'s argument


def _weight_width(layer) -> int:
    d = layer.multipliers()
    return signed_width_for(int(d.min()), int(d.max()))


def torch_equivalent(model: ir.Model):
    """A torch.nn.Module computing the model's products (weights = d; no scale/bias requantisation).

    Channels first (torch's layout); the first dense after a flatten gets its rows permuted so it
    reads the same (h, w, c) element our flatten puts there."""
    import torch
    from torch import nn

    mods, order, last_conv_shape = {}, [], None
    for node in model.nodes():
        layer, kind = node.layer, node.layer.kind
        if kind == "input":
            continue
        if kind == "conv2d":
            pt, pb, pl, pr = layer.padding
            if pt != pb or pl != pr:
                raise VecQError(f"layer '{layer.name}': asymmetric padding {layer.padding} has no torch Conv2d")
            d = layer.multipliers()  # (kh, kw, c_in, c_out)
            m = nn.Conv2d(d.shape[2], d.shape[3], tuple(d.shape[:2]), stride=tuple(layer.stride), padding=(pt, pl),
                          bias=False)
            m.weight.data = torch.tensor(d.transpose(3, 2, 0, 1), dtype=torch.float32)
            last_conv_shape = node.out_shape
        elif kind == "dense":
            d = layer.multipliers()  # (n_in, n_out)
            if last_conv_shape is not None:  # rows in (h, w, c) order -> torch's (c, h, w)
                h, w, c = last_conv_shape
                d = d.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1)
                last_conv_shape = None
            m = nn.Linear(d.shape[0], d.shape[1], bias=False)
            m.weight.data = torch.tensor(d.T.copy(), dtype=torch.float32)
        elif kind == "relu":
            m = nn.ReLU()
        elif kind == "maxpool2d":
            m = nn.MaxPool2d(tuple(layer.pool), tuple(layer.stride))
            last_conv_shape = node.out_shape
        elif kind == "flatten":
            m = nn.Flatten()
        else:
            raise VecQError(f"layer '{layer.name}': kind '{kind}' is not mapped to torch for the hls4ml reference")
        mods[layer.name] = m
        order.append(layer.name)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            for name, m in mods.items():
                setattr(self, name, m)  # hls4ml names its layers after these attributes

        def forward(self, x):
            for name in order:
                x = getattr(self, name)(x)
            return x

    return Net().eval()


def _ap(prec) -> str:
    """An hls4ml precision as the C++ type it becomes (width, integer bits, sign only)."""
    return f"ap_{'' if prec.signed else 'u'}fixed<{prec.width},{prec.integer}>"


def _precisions(model: ir.Model) -> dict[str, dict[str, str]]:
    """hls4ml Precision per layer: our input/activation types, exact accumulators, k+1-bit weights."""
    out = {INPUT_NAME: {"result": str(model.input.out_type)}}
    for node in model.nodes():
        layer = node.layer
        if layer.kind in ("conv2d", "dense"):
            w = _weight_width(layer)
            # no scale/bias in hls4ml's Conv2D/Dense: its result is the (exact) accumulator
            out[layer.name] = {"weight": f"ap_fixed<{w},{w}>", "bias": "ap_fixed<1,1>",
                               "accum": str(layer.accum_type), "result": str(layer.accum_type)}
        elif layer.kind in ("relu", "maxpool2d", "flatten"):
            out[layer.name] = {"result": str(layer.out_type)}
    return out


def hls4ml_reference(model: ir.Model, reuse: dict[str, int], *, io_type: str = "io_stream",
                     backend: str = "Vitis") -> dict:
    """What hls4ml's Resource strategy makes of ``model`` with ReuseFactor ``reuse[layer]`` (see module doc)."""
    import hls4ml
    from hls4ml.backends import get_backend

    net = torch_equivalent(model)
    shape = tuple(model.input.shape)
    in_shape = (shape[2], shape[0], shape[1]) if len(shape) == 3 else shape
    log = io.StringIO()
    with contextlib.redirect_stdout(log), tempfile.TemporaryDirectory(prefix="vecq_hls4ml_ref_") as tmp:
        cfg = hls4ml.utils.config_from_pytorch_model(net, in_shape, granularity="name", backend=backend,
                                                     channels_last_conversion="internal", transpose_outputs=False)
        cfg["Model"]["Strategy"] = "Resource"
        for name, prec in _precisions(model).items():
            cfg["LayerName"].setdefault(name, {})["Precision"] = prec
        for name, r in reuse.items():
            cfg["LayerName"][name]["ReuseFactor"] = int(r)
            cfg["LayerName"][name]["Strategy"] = "Resource"
        graph = hls4ml.converters.convert_from_pytorch_model(net, hls_config=cfg, output_dir=f"{tmp}/prj",
                                                             backend=backend, io_type=io_type)
    be = get_backend(backend)
    layers = []
    for lyr in graph.get_layers():
        if lyr.name not in reuse:
            continue
        n_in, n_out = be.get_layer_mult_size(lyr)
        rf = int(lyr.get_attr("reuse_factor"))
        w_bits = int(lyr.weights["weight"].type.precision.width)
        x_bits = int(lyr.get_input_variable().type.precision.width)
        pixels = int(lyr.get_attr("out_height", 1)) * int(lyr.get_attr("out_width", 1))
        layers.append({
            "name": lyr.name, "hls4ml_class": lyr.class_name, "strategy": lyr.get_attr("strategy"),
            "implementation": lyr.get_attr("implementation"),
            "requested_rf": int(reuse[lyr.name]), "rf": rf, "adjusted": rf != int(reuse[lyr.name]),
            "n_in": int(n_in), "n_out": int(n_out),
            "multipliers": math.ceil(n_in * n_out / rf),  # hls4ml's block_factor
            "weight_type": _ap(lyr.weights["weight"].type.precision), "weight_bits": w_bits,
            "input_type": _ap(lyr.get_input_variable().type.precision), "input_bits": x_bits,
            "weight_storage_bits": int(n_in * n_out * w_bits),
            # ARRAY_RESHAPE block factor=block_factor: RF words of block_factor weights (ROM_nP_BRAM when RF > 1)
            "rom_depth": rf, "rom_width_bits": math.ceil(n_in * n_out / rf) * w_bits,
            "pixels_per_frame": pixels, "cycles_per_frame_at_least": pixels * rf,
        })
    messages = [ln.strip() for ln in log.getvalue().splitlines() if "ReuseFactor" in ln]
    return {"hls4ml_version": hls4ml.__version__, "backend": backend, "io_type": io_type, "strategy": "Resource",
            "layers": layers, "messages": messages,
            "hls4ml_layers": [(lyr.name, lyr.class_name) for lyr in graph.get_layers()]}

