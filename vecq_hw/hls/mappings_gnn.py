"""HLS mappings of the graph layers (``vecq_hw.ir.gnn``): their hls4ml layers, pinned types and cost.

* ``node_dense`` -> ``VecQNodeDense``: the dense kernel once per node (``nnet_vecq_gnn.h``); its P
  products run ``n_nodes`` times per frame (the graph is the frame), so it folds like a conv.
* ``gcn_aggregate`` -> ``VecQGcnAggregate``: a node row per cycle into the bucket memories, then an
  edge per cycle (CSR walk) with the row sum and the post-scale per node. Memories: one per degree
  bucket (a word of ``n_feat`` values at the bucket's width per node) and the graph's ROMs (indptr,
  indices, each node's bucket/slot, the pre- and post-scales).

No hls4ml import here (the estimator and the CLI read it cheaply); the hls4ml classes
(:mod:`.layers_gnn`) are registered by ``register_hls`` before a graph is built.
"""

from __future__ import annotations

import math

import numpy as np

from .. import ir
from ..fixed import FixedType
from ..ir.gnn import MAX_BUCKETS
from .costs import LayerEstimate, bram_or_lutram
from .mappings import DenseMapping, Mapping, register


def uint_type(count: int) -> FixedType:
    """ap_uint wide enough for 0..count-1 (at least one bit)."""
    return FixedType(width=max(1, (max(count, 1) - 1).bit_length()), integer=max(1, (max(count, 1) - 1).bit_length()),
                     signed=False, kind="int")


class _GraphKernels:
    """The graph kinds' hls4ml classes (:mod:`.layers_gnn`) are registered when a graph is built."""

    def register_hls(self) -> None:
        from . import layers_gnn

        layers_gnn.register()


class NodeDenseMapping(_GraphKernels, DenseMapping):
    kind = "node_dense"

    def class_name(self, node, opts):
        return "VecQNodeDense"

    def geometry(self, node):
        n, f_in = node.in_shapes[0]
        return {"n_in": int(f_in), "n_out": int(node.out_shape[1]), "n_nodes": int(n)}

    def products_per_input(self, node):
        return int(node.in_shapes[0][1]) * int(node.out_shape[1])

    def inputs_per_frame(self, node):
        return int(node.in_shapes[0][0])


def bucket_rows(layer: ir.GCNAggregate) -> list[int]:
    """Nodes per bucket memory (MAX_BUCKETS entries; an unused one keeps one row: no empty arrays)."""
    counts = np.bincount(layer.node_bucket.astype(np.int64), minlength=MAX_BUCKETS)
    return [max(1, int(c)) for c in counts[:MAX_BUCKETS]]


def bucket_slots(layer: ir.GCNAggregate) -> np.ndarray:
    """Each node's row in its bucket's memory: its rank among the nodes of that bucket."""
    slots = np.zeros(layer.node_bucket.size, dtype=np.int64)
    for b in range(len(layer.bucket_types)):
        rows = np.flatnonzero(layer.node_bucket == b)
        slots[rows] = np.arange(rows.size)
    return slots


class GCNAggregateMapping(_GraphKernels, Mapping):
    kind = "gcn_aggregate"

    def refuse(self, node, opts):
        if node.layer.indices.size == 0:
            return "a graph without edges (add self-loops): the HLS kernel needs at least one"
        return None

    def class_name(self, node, opts):
        return "VecQGcnAggregate"

    def index_types(self, layer: ir.GCNAggregate) -> dict[str, FixedType]:
        n = layer.node_bucket.size
        return {"ptr": uint_type(layer.indices.size + 1), "nbr": uint_type(n),
                "slot": uint_type(max(bucket_rows(layer))), "bucket": uint_type(len(layer.bucket_types))}

    def types(self, node, opts):
        layer = node.layer
        store = layer.store_type
        buckets = list(layer.bucket_types) + [store] * (MAX_BUCKETS - len(layer.bucket_types))
        return {"result": layer.out_type, **{f"u{b}": t for b, t in enumerate(buckets)}, "store": store,
                "sum": layer.sum_type(), "pre": layer.pre_scale_type, "post": layer.post_scale_type,
                "bias": layer.bias_type, **self.index_types(layer)}

    def attrs(self, node, opts):
        layer = node.layer
        n, f = (int(s) for s in node.in_shapes[0])
        rows = bucket_rows(layer)
        it = self.index_types(layer)
        tables = {"ptr": (layer.indptr, it["ptr"]), "nbr": (layer.indices, it["nbr"]),
                  "bucket": (layer.node_bucket, it["bucket"]), "slot": (bucket_slots(layer), it["slot"]),
                  "pre": (layer.pre_scale, layer.pre_scale_type), "post": (layer.post_scale, layer.post_scale_type),
                  "bias": (layer.bias, layer.bias_type)}
        return {"n_nodes": n, "n_feat": f, "n_edges": int(layer.indices.size),
                **{f"rows{b}": r for b, r in enumerate(rows)},
                "vecq_tables": {k: (np.asarray(v, dtype=np.int64), t) for k, (v, t) in tables.items()},
                "vecq_out_type": layer.out_type}

    def estimate(self, node, reuse, io_type):
        """Bucket memories and ROMs (BRAM or LUTRAM), n_feat pre- and post-scale DSP products, n_feat adders;
        cycles: a row per node in, then an edge per cycle plus a row per node out."""
        layer, (n, f) = node.layer, (int(s) for s in node.in_shapes[0])
        e = LayerEstimate(layer.name, layer.kind)
        for rows, t in zip(bucket_rows(layer), layer.bucket_types):
            b, lut = bram_or_lutram(1, rows, f * t.width)
            e.bram18, e.luts = e.bram18 + b, e.luts + lut
        it = self.index_types(layer)
        roms = ((n + 1, it["ptr"].width), (int(layer.indices.size), it["nbr"].width),
                (n, it["bucket"].width + it["slot"].width), (n, layer.pre_scale_type.width),
                (n, layer.post_scale_type.width))
        for depth, width in roms:
            b, lut = bram_or_lutram(1, depth, width)
            e.bram18, e.luts = e.bram18 + b, e.luts + lut
        z_w, s_w = int(node.in_types[0].width), int(layer.sum_type().width)
        # the scales are run-time operands (a ROM word per node): one DSP48 (25 x 18) per product
        e.dsps += f * (math.ceil(z_w / 25) * math.ceil(layer.pre_scale_type.width / 18)
                       + math.ceil(s_w / 25) * math.ceil(layer.post_scale_type.width / 18))
        e.luts += f * s_w  # the row accumulators' adders
        e.ffs += f * s_w
        e.cycles = n + int(layer.indices.size) + n
        e.latency = e.cycles + 4
        return self.add_io(e, node, io_type)


for _m in (NodeDenseMapping(), GCNAggregateMapping()):
    register(_m)
