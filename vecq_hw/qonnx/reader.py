"""Reading a QONNX graph: the reader's state, loading and normalising the file.

The graph is read node by node (``import_ops``) into the tensor states of ``pending``: Quant'd
constants become codes and exact scales, Conv/MatMul/Gemm start a pending weighted layer whose
y = acc*s + b collects the Mul/Add constants after it, and the activation Quant that follows is
its one requantisation. Whatever the integer model cannot compute exactly is refused with one
line naming the node. Before reading, qonnx folds constant subgraphs (Quant nodes excepted) and
drops initializers listed as graph inputs (Brevitas does that); node names are kept.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import onnx

from .. import ir
from ..errors import FixedTypeError, VecQError
from ..names import layer_identifier
from .pending import Built, Const, Pending, exact_sum_type, gap_layer, relu_out, relu_split, weighted_layer


class GraphInput:
    """The raw graph input: only a Quant may read it (the Quant states the input type)."""

    def __init__(self, name: str, shape: tuple[int, ...]):
        self.name, self.shape = name, shape


def label(node) -> str:
    return node.name or f"{node.op_type} -> {node.output[0] if node.output else '?'}"


class Reader:
    def __init__(self, where: str):
        self.where = where
        self.tensors: dict[str, object] = {}
        self.layers: list[ir.Layer] = []
        self._names: set[str] = set()

    # -- messages and states -------------------------------------------------------------------
    def fail(self, node, msg: str):
        raise VecQError(msg, file=self.where, field=f"node '{label(node)}' ({node.op_type})")

    def get(self, node, name: str):
        if name not in self.tensors:
            self.fail(node, f"input '{name}' is not produced by any earlier node, initializer or graph input")
        return self.tensors[name]

    def const(self, node, name: str) -> np.ndarray:
        s = self.get(node, name)
        if not isinstance(s, Const):
            self.fail(node, f"input '{name}' must be a constant")
        return s.value

    def set(self, node, state) -> None:
        self.tensors[node.output[0]] = state

    # -- layers --------------------------------------------------------------------------------
    def layer_name(self, base: str) -> str:
        # a name the generated C++ can take (vecq_hw.names): '/features/features.0/Conv' -> features_features_0_Conv
        name = layer_identifier(base.strip("/"), "layer", self._names)
        self._names.add(name)
        return name

    def add(self, layer: ir.Layer, shape, **kw) -> Built:  # noqa: A003
        self.layers.append(layer)
        return Built(layer.name, layer.out_type, tuple(int(s) for s in shape), **kw)

    def built(self, node, name: str) -> Built:
        """Tensor ``name`` as a built layer's output: a pending result is built at its exact type
        (no rounding, no overflow: the value is kept as it is)."""
        s = self.get(node, name)
        if isinstance(s, Pending):
            s = self.materialize(s, None)
            self.tensors[name] = s
        if not isinstance(s, Built):
            self.fail(node, f"input '{name}' must be a computed tensor, not a constant or the raw graph input")
        return s

    def materialize(self, p: Pending, out_type) -> Built:
        """Build pending ``p`` requantised into ``out_type`` (None: its exact type), then its ReLU."""
        t = relu_split(out_type) if (p.relu and out_type is not None) else out_type
        name = self.layer_name(p.node)
        try:
            if p.kind == "weighted":
                layer = weighted_layer(p, name, t)
            elif p.kind == "add":
                layer = ir.Add(name=name, out_type=t or exact_sum_type(p), inputs=tuple(b.layer for b in p.inputs))
            else:
                layer = gap_layer(p, name, t or exact_sum_type(p))
        except FixedTypeError as exc:  # a constant or result no ap_fixed of <= 64 bits holds
            raise VecQError(f"cannot be represented exactly: {exc.detail}", file=self.where,
                            field=f"node '{p.node}'") from None
        built = self.add(layer, p.shape)
        if p.relu:
            relu = ir.ReLU(name=self.layer_name(f"{p.node}_relu"), out_type=relu_out(built.type), inputs=(built.layer,))
            built = self.add(relu, p.shape)
        return dataclasses.replace(built, chw=p.chw)


def load(source) -> tuple[onnx.ModelProto, str]:
    """(model, where) from a ModelProto or a path; a file that is not ONNX is one VecQError line."""
    if isinstance(source, onnx.ModelProto):
        return source, source.graph.name or "model"
    path = Path(os.fspath(source))
    try:
        return onnx.load(str(path)), str(path)
    except FileNotFoundError:
        raise VecQError("no such file", file=path) from None
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types for a broken file
        first = (str(exc).splitlines() or [""])[0]
        raise VecQError(f"not an ONNX model ({type(exc).__name__}: {first})", file=path) from None


def normalize(model: onnx.ModelProto, where: str) -> onnx.ModelProto:
    """Checked by onnx, constant subgraphs folded by qonnx (Quant nodes kept), initializers that are
    also graph inputs made plain initializers. Node names are kept (they name errors and layers)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.transformation.general import RemoveStaticGraphInputs
    try:
        onnx.checker.check_model(model)
        mw = ModelWrapper(model).transform(RemoveStaticGraphInputs())
        mw = mw.transform(FoldConstants(exclude_op_types=["Quant", "BipolarQuant", "Trunc"]))
    except Exception as exc:  # noqa: BLE001 - onnx and qonnx raise many types for a malformed graph
        first = (str(exc).strip().splitlines() or [""])[0]
        raise VecQError(f"malformed ONNX graph ({type(exc).__name__}: {first})", file=where) from None
    return mw.model
