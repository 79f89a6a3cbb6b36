"""The exporter's handler for :class:`vecq_hw.nn.gnn.GCNConv` (registered into the handler table on
import; :mod:`.torch_export` imports this module, so every export knows it).

A GCNConv becomes two integer-model layers, ``node_dense`` then ``gcn_aggregate``
(:mod:`vecq_hw.ir.gnn`), read from the module whole (it is a leaf of the trace): its quantiser's
codes and levels, its scale rounded exactly as forward rounds it, its graph tables and feature
types, its bias rounded onto the bias type as forward rounds it. Every constant is the one forward
uses, so the segment is exact: the equivalence check compares it with PyTorch to the bit (run the
model in float64, where PyTorch's own arithmetic is exact too: :func:`.gnn.export_gcn`).
"""

from __future__ import annotations

import numpy as np

from .. import ir
from ..ir.gnn import GCNAggregate, NodeDense
from ..nn.gnn import GCNConv
from .build import Builder
from .fold import fixed_for
from .handlers import HANDLERS
from .trace import where
from .values import Tensor


def node_dense(b: Builder, m: GCNConv, inp: Tensor, path: str) -> NodeDense:
    """z = x W: the quantiser's codes (f_in, f_out) and forward's own scale mantissas."""
    r = m.lin.quant_result().to_numpy()
    r.require_no_offset()
    _, s_m, frac = m.integer_combine_torch()
    s_m, s_type = fixed_for(s_m.detach().double().cpu().numpy() * 2.0**-frac, frac, "scale", path)
    n_out = m.lin.out_features
    zero, zero_type = fixed_for(np.zeros(n_out), 0, "bias", path)
    codes = np.ascontiguousarray(np.asarray(r.codes).T, dtype=np.int8)
    levels = np.asarray(r.levels, dtype=np.int64)
    acc = ir.accumulator_type(inp.typ, ir.multipliers(codes, levels, int(r.bits)))
    return NodeDense(name=b.name(path), out_type=m.combine_type, inputs=(inp.layer,), bits=int(r.bits), levels=levels,
                     codes=codes, scale=s_m, scale_type=s_type, bias=zero, bias_type=zero_type, accum_type=acc)


def aggregate(b: Builder, m: GCNConv, src: str, path: str) -> GCNAggregate:
    """The normalised neighbour sum: the graph's tables, the bucket types, forward's rounded bias."""
    norm = m.norm
    bias = np.zeros(m.lin.out_features) if m.bias is None else m.bias.detach().double().cpu().numpy()
    return GCNAggregate(name=b.name(path + "_aggregate"), out_type=m.out_type, inputs=(src,),
                        pre_scale_type=norm.pre_type, bucket_types=m.bucket_types, post_scale_type=norm.post_type,
                        bias_type=m.bias_type, indptr=norm.indptr.astype(np.int64),
                        indices=norm.indices.astype(np.int32), node_bucket=m.node_bucket.astype(np.int8),
                        pre_scale=norm.pre_m.astype(np.int64), post_scale=norm.post_m.astype(np.int64),
                        bias=np.asarray(m.bias_type.from_float(bias), dtype=np.int64))


def gcn_conv(b: Builder, node, m: GCNConv):
    path = where(node)
    inp = b.settle(node, 0)
    n = m.norm.n_nodes
    if tuple(inp.ishape) != (n, m.lin.in_features):
        b.fail(node, f"GCNConv expects node features ({n}, {m.lin.in_features}), the graph gives {inp.tshape}")
    if not m.quantized:
        b.fail(node, "GCNConv is not fully quantised (it needs a weight quantiser, combine/bucket/out types and a "
                     "quantised normalisation, with its switches on): it has no integer form")
    dense = node_dense(b, m, inp, path)
    agg = aggregate(b, m, dense.name, path)
    shape = (n, m.lin.out_features)
    out = Tensor(layer=agg.name, tshape=shape, ishape=shape, typ=m.out_type)
    return b.emit(node, [dense, agg], out, (inp.layer,), error=0.0)  # every constant is forward's own: exact


HANDLERS.modules[GCNConv] = gcn_conv
