"""Memory of a deployed GCN (``vecq_hw.ir.gnn``), counted two ways.

* **SGQuant's way** (features): the node-feature tensors the GCN keeps in memory, at the bits they
  are stored with, against 32-bit floats: the input features (``n_nodes x f`` at the input type's
  width) and each aggregation's stored operand u (``n_nodes x f``, every node's row at its degree
  bucket's width). SGQuant reports this ratio.
* **ours** (everything the design holds): those features, plus the weights (k-bit codes, scales and
  biases: :func:`vecq_hw.ir.io.weight_memory_report`) and the graph's tables (CSR ``indptr`` and
  ``indices`` at the widths that address them, each node's bucket index, the pre- and post-scales,
  the aggregation's biases), against a float32 GCN: features and weights at 32 bits and Â as a
  32-bit CSR with a 32-bit float per edge.
"""

from __future__ import annotations

import numpy as np

from .gnn import GCNAggregate
from .graph import Model
from .io import weight_memory_report


def _bits(count: int) -> int:
    """Bits of an unsigned index addressing 0..count-1."""
    return max(1, (max(int(count), 1) - 1).bit_length())


def feature_tensors(model: Model) -> list[dict]:
    """Each node-feature tensor held in memory: name, values, stored bits."""
    out = []
    inp = model.input
    if len(inp.shape) == 2:
        out.append({"tensor": f"{inp.name} (input features)", "values": int(np.prod(inp.shape)),
                    "bits": int(np.prod(inp.shape)) * inp.out_type.width})
    for node in model.nodes():
        layer = node.layer
        if isinstance(layer, GCNAggregate):
            n, f = (int(s) for s in node.in_shapes[0])
            widths = np.array([t.width for t in layer.bucket_types], dtype=np.int64)
            bits = int(widths[layer.node_bucket.astype(np.int64)].sum()) * f
            out.append({"tensor": f"{layer.name} (stored u)", "values": n * f, "bits": bits})
    return out


def table_bits(layer: GCNAggregate) -> int:
    """Bits of one aggregation's constant tables at their hardware widths."""
    n, e = int(layer.node_bucket.size), int(layer.indices.size)
    return ((n + 1) * _bits(e + 1) + e * _bits(n) + n * _bits(len(layer.bucket_types))
            + n * (layer.pre_scale_type.width + layer.post_scale_type.width) + layer.bias.size * layer.bias_type.width)


def gcn_memory(model: Model) -> dict:
    """Both accountings (see the module docstring): per feature tensor and the totals and ratios."""
    feats = feature_tensors(model)
    f_values = sum(t["values"] for t in feats)
    f_bits = sum(t["bits"] for t in feats)
    w = weight_memory_report(model)["total"]
    aggs = [n.layer for n in model.nodes() if isinstance(n.layer, GCNAggregate)]
    tables = sum(table_bits(a) for a in aggs)
    float_graph = sum(32 * (a.node_bucket.size + 1) + 64 * a.indices.size for a in aggs)  # int32 CSR + float32 Â
    float_all = 32 * f_values + w["float32_bits"] + float_graph
    ours = f_bits + w["total_bits"] + tables
    hidden = [t for t in feats if "input" not in t["tensor"]]
    h_values, h_bits = sum(t["values"] for t in hidden), sum(t["bits"] for t in hidden)
    return {
        "features": feats,
        "feature_values": f_values, "feature_bits": f_bits, "feature_float32_bits": 32 * f_values,
        "sgquant_reduction": 32 * f_values / f_bits if f_bits else 0.0,
        "stored_avg_bits": h_bits / h_values if h_values else 0.0,
        "stored_reduction": 32 * h_values / h_bits if h_bits else 0.0,
        "weight_bits": w["total_bits"], "weight_float32_bits": w["float32_bits"],
        "table_bits": tables, "float_graph_bits": float_graph,
        "total_bits": ours, "total_float32_bits": float_all,
        "total_reduction": float_all / ours if ours else 0.0,
    }


__all__ = ["feature_tensors", "gcn_memory", "table_bits"]
