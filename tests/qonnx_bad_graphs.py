"""QONNX graphs broken on purpose, one way each (tests/test_qonnx.py calls the API on them,
tests/test_qonnx_cli.py the CLI): (mutation, the node the refusal names, what it says)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from vecq_hw import ir
from vecq_hw.qonnx import to_qonnx


def mutated(model: ir.Model, change) -> onnx.ModelProto:
    proto = to_qonnx(model)
    nodes = {n.name: n for n in proto.graph.node}
    inits = {t.name: t for t in proto.graph.initializer}
    change(nodes, inits)
    return proto


def _set(inits, name, value):
    inits[name].CopyFrom(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))


BAD_GRAPHS = {
    "unsupported op": (lambda n, i: setattr(n["relu1"], "op_type", "Sigmoid"), "node 'relu1' (Sigmoid)",
                       "unsupported operation"),
    "non-scalar bitwidth": (lambda n, i: _set(i, n["conv1.quant"].input[3], [8.0, 8.0]),
                            "node 'conv1.quant' (Quant)", "bitwidth must be a scalar"),
    "non-zero zero point": (lambda n, i: _set(i, n["conv1.quant"].input[2], 1.0), "node 'conv1.quant' (Quant)",
                            "non-zero zero point"),
    "float activation scale": (lambda n, i: _set(i, n["conv1.quant"].input[1], 0.1), "node 'conv1.quant' (Quant)",
                               "not a power of two"),
    "unquantised weights": (lambda n, i: n["conv1"].input.__setitem__(1, n["conv1.wq.quant"].input[0]),
                            "node 'conv1' (Conv)", "weights are not quantised"),
}
