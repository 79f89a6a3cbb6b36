"""A small ONNX graph builder: unique names, float32 initializers, QONNX Quant nodes."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: the domain qonnx's cleanup gives its custom ops (``qonnx.util.cleanup``)
QONNX_DOMAIN = "qonnx.custom_op.general"
OPSET = 13


class GraphBuilder:
    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._used: set[str] = set()  # tensor names
        self._node_names: set[str] = set()

    def fresh(self, base: str, used: set[str] | None = None) -> str:
        used = self._used if used is None else used
        name, k = base, 1
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        return name

    def const(self, base: str, value) -> str:
        name = self.fresh(base)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def const_int64(self, base: str, value) -> str:
        name = self.fresh(base)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=np.int64), name))
        return name

    def node(self, op: str, inputs, base: str, *, domain: str = "", name: str | None = None, **attrs) -> str:
        """Add a node; its output tensor is named after ``base``, the node ``name`` (default: base)."""
        out = self.fresh(base)
        node_name = self.fresh(name or base, self._node_names)
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=node_name, domain=domain, **attrs))
        return out

    def quant(self, x: str, base: str, *, scale, bits: int, signed: bool, narrow: int, rounding: str) -> str:
        """QONNX Quant(x, scale, zeropt=0, bitwidth): scale, zero point and bit width as initializers."""
        s = self.const(f"{base}.scale", scale)
        z = self.const(f"{base}.zeropt", 0.0)
        w = self.const(f"{base}.bitwidth", float(bits))
        return self.node("Quant", [x, s, z, w], base, domain=QONNX_DOMAIN, name=f"{base}.quant", signed=int(signed),
                         narrow=int(narrow), rounding_mode=rounding)

    def bipolar(self, x: str, base: str, *, scale) -> str:
        return self.node("BipolarQuant", [x, self.const(f"{base}.scale", scale)], base, domain=QONNX_DOMAIN,
                         name=f"{base}.quant")

    def model(self, name: str, inp: tuple[str, tuple], out: tuple[str, tuple], doc: str,
              metadata: dict[str, str]) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, name, [helper.make_tensor_value_info(inp[0], TensorProto.FLOAT, list(inp[1]))],
            [helper.make_tensor_value_info(out[0], TensorProto.FLOAT, list(out[1]))], self.initializers)
        m = helper.make_model(graph, producer_name="vecq_hw", doc_string=doc,
                              opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(QONNX_DOMAIN, 1)])
        m.ir_version = 8  # readable by onnxruntime releases back to 1.11
        helper.set_model_props(m, metadata)
        return m
