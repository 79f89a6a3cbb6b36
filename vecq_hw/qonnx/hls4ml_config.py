"""Precision overrides that make hls4ml 1.3.0 compute ``to_qonnx`` graphs exactly.

hls4ml reads a QONNX graph (after qonnx's cleanup and channels-last conversion) into fixed-point
layers and takes most precisions from the Quant nodes: weights, activations, the Mul/Add
constants (each a Quant'd constant, see ``writer._fixed_const``). Three places fall back to
the model's default precision, which is not exact in general; this module computes, from the
cleaned graph alone, the config entries that pin them:

* consecutive Mul/Add constants become one ApplyAlpha (``FuseConsecutiveBatchNormalization``,
  ``hls4ml/model/optimizer/passes/batchnorm_opt.py``), which keeps the bias's quantizer only if
  ``(b0 == np.ones_like(b0)).all()`` or ``(b1 == np.ones_like(b1)).all()`` (line 215: a bias of
  ones, where a bias of zeros was meant): the fused bias then takes the config's 'bias'
  precision, which this sets to the exact type of the fused bias (and 'scale' likewise);
* an activation (Relu) takes the config's 'result' precision: set to the type of the Quant that
  reads it (our ReLU's out_type, which holds every value exactly);
* the input layer takes the config's 'result' precision: set to the input Quant's type.

The result is keyed by hls4ml layer name (the ONNX node name, '.' -> '_'), to merge into
``config['LayerName']`` of ``hls4ml.utils.config.config_from_onnx_model(..., granularity='name')``.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import onnx
from onnx import numpy_helper



def _hls_type(mantissas, frac: int) -> str:
    """The narrowest hls4ml fixed type holding every m * 2^-frac exactly."""
    lo, hi = min(list(mantissas) + [0]), max(list(mantissas) + [0])
    if lo < 0:
        width = max(max(hi.bit_length(), (-lo - 1).bit_length()) + 1, 2)
        return f"fixed<{width},{width - frac}>"
    width = max(hi.bit_length(), 1)
    return f"ufixed<{width},{width - frac}>"


def _quant_type(node, inits) -> str | None:
    """'fixed<W,I>' of a Quant with a scalar power-of-two scale and zero point 0, else None."""
    if node.op_type != "Quant" or any(i not in inits for i in node.input[1:4]):
        return None
    scale, zero, bits = (inits[i] for i in node.input[1:4])
    if scale.size != 1 or np.any(zero != 0) or bits.size != 1:
        return None
    m, e = np.frexp(float(scale.reshape(-1)[0]))
    if m != 0.5:
        return None
    signed = next((a.i for a in node.attribute if a.name == "signed"), 1)
    w, frac = int(bits.reshape(-1)[0]), 1 - int(e)
    return f"{'' if signed else 'u'}fixed<{w},{w - frac}>"


def _const_quant(name, producers, inits):
    """The Quant node making tensor ``name`` from a constant (power-of-two scale), or None."""
    q = producers.get(name)
    if q is not None and q.op_type == "Quant" and q.input[0] in inits and _quant_type(q, inits):
        return q
    return None


def _const_of(node, producers, inits):
    """(exact values as Fractions, the other input's name) of a Mul/Add with a Quant'd constant."""
    for k, name in enumerate(node.input[:2]):
        q = _const_quant(name, producers, inits)
        if q is not None:
            scale = Fraction(float(inits[q.input[1]].reshape(-1)[0]))
            vals = [Fraction(round(Fraction(float(v)) / scale)) * scale for v in inits[q.input[0]].reshape(-1)]
            return vals, node.input[1 - k]
    return None


def hls4ml_precisions(model: onnx.ModelProto) -> dict[str, dict]:
    """Config overrides per hls4ml layer name (see the module docstring)."""
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out: dict[str, dict] = {}

    def pin(node, **prec):
        out.setdefault(node.name.replace(".", "_"), {}).setdefault("Precision", {}).update(prec)

    for inp in g.input:
        readers = consumers.get(inp.name, [])
        if len(readers) == 1 and _quant_type(readers[0], inits):
            out.setdefault(inp.name.replace(".", "_"), {"Precision": {"result": _quant_type(readers[0], inits)}})
    for n in g.node:
        readers = consumers.get(n.output[0], [])
        if n.op_type == "Relu" and len(readers) == 1 and _quant_type(readers[0], inits):
            pin(n, result=_quant_type(readers[0], inits))
        if n.op_type in ("Mul", "Add") and _const_of(n, producers, inits) is not None:
            nxt = readers[0] if len(readers) == 1 else None
            if nxt is None or nxt.op_type not in ("Mul", "Add") or _const_of(nxt, producers, inits) is None:
                _pin_chain(n, producers, consumers, inits, pin)
    return out


def _pin_chain(last, producers, consumers, inits, pin) -> None:
    """The fused scale and bias of the chain of constant Mul/Add nodes ending at ``last``, as
    hls4ml fuses them (scale = s0 * s1, bias = s1 * b0 + b1), exactly, pinned on ``last``'s name."""
    chain, n = [], last
    while n is not None and n.op_type in ("Mul", "Add") and _const_of(n, producers, inits) is not None:
        chain.append(n)
        src = _const_of(n, producers, inits)[1]
        n = producers.get(src) if len(consumers.get(src, [])) == 1 else None
    scale, bias = [Fraction(1)], [Fraction(0)]
    for node in reversed(chain):
        c = _const_of(node, producers, inits)[0]
        n = max(len(c), len(scale))
        scale, bias = (scale * n)[:n] if len(scale) == 1 else scale, (bias * n)[:n] if len(bias) == 1 else bias
        c = c * n if len(c) == 1 else c
        if node.op_type == "Mul":
            scale, bias = [s * v for s, v in zip(scale, c)], [b * v for b, v in zip(bias, c)]
        else:
            bias = [b + v for b, v in zip(bias, c)]
    pin(last, scale=_hls_type(*_mantissas(scale)), bias=_hls_type(*_mantissas(bias)))


def _mantissas(values) -> tuple[list[int], int]:
    """Exact (mantissas, frac) of dyadic Fractions."""
    frac = max((v.denominator.bit_length() - 1 for v in values), default=0)
    return [int(v * (1 << frac)) for v in values], frac


def hls4ml_convert(model: onnx.ModelProto, output_dir, *, backend: str = "Vitis", io_type: str = "io_parallel",
                   pin: bool = True, **convert_kw):
    """hls4ml's documented QONNX flow on ``model``, with :func:`hls4ml_precisions` merged into its
    config (``pin=False``: without, to see what hls4ml does on its own): qonnx cleanup,
    channels-last conversion (with a channels-last input, like ours), GemmToMatMul, cleanup
    again, ``config_from_onnx_model(granularity='name')``, ``convert_from_onnx_model``. Returns
    hls4ml's ModelGraph (``compile()``, ``predict()``); its input is channels-last, like ours."""
    import hls4ml
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    mw = cleanup_model(ModelWrapper(model))
    mw = mw.transform(ConvertToChannelsLastAndClean(make_input_channels_last=True))
    mw = cleanup_model(mw.transform(GemmToMatMul()))
    config = hls4ml.utils.config.config_from_onnx_model(mw, granularity="name", backend=backend)
    for name, entry in (hls4ml_precisions(mw.model) if pin else {}).items():
        config["LayerName"].setdefault(name, {}).setdefault("Precision", {}).update(entry["Precision"])
    return hls4ml.converters.convert_from_onnx_model(mw, output_dir=str(output_dir), io_type=io_type, backend=backend,
                                                     hls_config=config, **convert_kw)
