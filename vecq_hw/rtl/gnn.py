"""RTL ops of the graph kinds (``vecq_hw.ir.gnn``), registered with ``rtl_op`` (:mod:`.ops` imports
this module). The whole graph is unrolled (every node, every edge, every feature), so the RTL
path suits small graphs only (the adder-bits budget refuses the rest); Cora's 2,708 nodes take the
HLS path, which streams the edges.

* ``node_dense``: the dense op (one adder graph, shared by every node's identical product) per node.
* ``gcn_aggregate``: per node j and feature, z * p_j requantised into its bucket's type; per node i
  the exact sum of its CSR row's values, times q_i plus the bias, requantised into the output type
  (:func:`.requant.requantize`: exact, or refused with one line).
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import numpy as np

from .requant import const, requantize
from .trace import TraceStep, _dense, rtl_op


@rtl_op("node_dense")
def node_dense_op(step: TraceStep) -> np.ndarray:
    """The dense op on every node's row."""
    rows = [_dense(dataclasses.replace(step, xs=[row], out_shape=(int(step.out_shape[1]),))) for row in step.x]
    return np.stack(rows).reshape(tuple(step.out_shape))


def _constants(mantissas, frac: int) -> list[Decimal]:
    return [Decimal(int(m)) * Decimal(2) ** -frac for m in mantissas]


@rtl_op("gcn_aggregate")
def gcn_aggregate_op(step: TraceStep) -> np.ndarray:
    layer, x, where = step.layer, step.x, step.where
    n, f = x.shape
    pre = _constants(layer.pre_scale, layer.pre_scale_type.frac)
    post = _constants(layer.post_scale, layer.post_scale_type.frac)
    bias = _constants(layer.bias, layer.bias_type.frac)
    pre_frac, pf = layer.pre_frac(step.in_type), layer.product_frac()
    zero = const(0, step.hw)
    u = np.empty((n, f), dtype=object)
    for j in range(n):
        t = layer.bucket_types[int(layer.node_bucket[j])]
        for k in range(f):
            u[j, k] = requantize(x[j, k] * pre[j], pre_frac, t, where) if pre[j] else zero
    out = np.empty((n, f), dtype=object)
    for i in range(n):
        row = layer.indices[int(layer.indptr[i]):int(layer.indptr[i + 1])]
        for k in range(f):
            acc = zero
            for j in row:
                acc = acc + u[int(j), k]
            y = acc * post[i] if post[i] else zero
            out[i, k] = requantize(y + bias[k] if bias[k] else y, pf, layer.out_type, where)
    return out
