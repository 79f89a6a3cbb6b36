"""``from_qonnx``: read a QONNX graph into an integer model (see ``reader`` and ``import_ops``)."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import numpy_helper

from .. import ir
from ..errors import FormatError, VecQError
from .import_ops import OPS
from .pending import Const
from .reader import GraphInput, Reader, load, normalize


def _graph_input(reader: Reader, value_info) -> GraphInput:
    dims = [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]
    if len(dims) not in (2, 4) or any(d is None or d < 1 for d in dims[1:]):
        raise VecQError(f"graph input '{value_info.name}': expected (N, C, H, W) or (N, features) with known sizes, "
                        f"got {dims}", file=reader.where)
    shape = (dims[2], dims[3], dims[1]) if len(dims) == 4 else (dims[1],)
    return GraphInput(value_info.name, shape)


def from_qonnx(source) -> ir.Model:
    """The integer model of a QONNX graph (a ModelProto or a path to an .onnx file).

    Raises VecQError (one line naming the file and the node) for anything it cannot represent
    exactly; see docs/QONNX.md for the mapping."""
    model, where = load(source)
    model = normalize(model, where)
    g = model.graph
    reader = Reader(where)
    for t in g.initializer:
        reader.tensors[t.name] = Const(numpy_helper.to_array(t))
    if len(g.input) != 1 or len(g.output) != 1:
        raise VecQError(f"expected one graph input and one output, got {len(g.input)} and {len(g.output)}", file=where)
    reader.tensors[g.input[0].name] = _graph_input(reader, g.input[0])
    for node in g.node:
        handler = OPS.get(node.op_type)
        if handler is None:
            reader.fail(node, "unsupported operation: the integer model has no exact counterpart")
        handler(reader, node)
    return _finish(reader, g, model, where)


def _finish(reader: Reader, g, model, where: str) -> ir.Model:
    out = g.output[0].name
    fake = onnx.helper.make_node("Identity", [out], ["_"], name=f"graph output '{out}'")
    built = reader.built(fake, out)
    if built.nhwc or (built.chw and built.chw[2] > 1 and built.chw[0] * built.chw[1] > 1):
        reader.fail(fake, "the output is a flattened feature map in ONNX's (C, H, W) order; the integer "
                    "model flattens in (H, W, C) order")
    if not reader.layers or not isinstance(reader.layers[0], ir.Input):
        raise VecQError("the graph input is not read by a Quant (the input type is unknown)", file=where)
    if reader.layers[-1].name != built.layer:
        reader.fail(fake, "the output is not the last layer computed (a branch is left unused)")
    name = g.name or Path(where).stem or "model"
    try:
        return ir.Model(name=name, layers=reader.layers).check(where)
    except FormatError as exc:
        raise VecQError(f"cannot be represented exactly: {exc.detail}", file=where, field=exc.field) from None
