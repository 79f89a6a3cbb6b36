"""Small random GCN integer models for the graph-layer tests (vecq_hw.ir.gnn): a random graph,
input features, node_dense -> gcn_aggregate [-> relu -> node_dense -> gcn_aggregate]."""

from __future__ import annotations

import numpy as np

from vecq_hw import ir
from vecq_hw.fixed import FixedType
from vecq_hw.ir.gnn import GCNAggregate, NodeDense, csr_with_self_loops, degree_buckets, inv_sqrt_mantissas

PRE = FixedType.parse("ap_ufixed<10,1,AP_RND,AP_SAT>")
POST = FixedType.parse("ap_ufixed<10,1,AP_RND,AP_SAT>")


def random_edges(rng, n: int, m: int) -> np.ndarray:
    """A symmetric random edge list (2, 2m) without self-loops; node degrees vary widely."""
    src = rng.integers(0, n, size=m)
    # a few hubs: preferential targets give a long-tailed degree distribution, as in citation graphs
    dst = np.where(rng.random(m) < 0.3, rng.integers(0, max(1, n // 10), size=m), rng.integers(0, n, size=m))
    keep = src != dst
    src, dst = src[keep], dst[keep]
    return np.stack([np.concatenate([src, dst]), np.concatenate([dst, src])])


def aggregate(name, inp, rng, indptr, indices, f, z_type, bucket_types, bounds, out_type):
    n = len(indptr) - 1
    deg = np.diff(indptr)
    inv = inv_sqrt_mantissas(deg, PRE)
    bias_type = FixedType(width=12, integer=4, signed=True)
    return GCNAggregate(
        name=name, inputs=(inp,), out_type=out_type, pre_scale_type=PRE, bucket_types=tuple(bucket_types),
        post_scale_type=POST, bias_type=bias_type, indptr=indptr, indices=indices,
        node_bucket=degree_buckets(deg, bounds), pre_scale=inv, post_scale=inv_sqrt_mantissas(deg, POST),
        bias=rng.integers(-200, 200, size=f).astype(np.int64))


def node_dense(name, inp, rng, in_type, f_in, f_out, bits, out_type):
    codes = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(f_in, f_out)).astype(np.int8)
    d = ir.multipliers(codes, "odd")
    acc = ir.accumulator_type(in_type, d)
    scale_type = FixedType(width=12, integer=-2, signed=False)
    return NodeDense(name=name, inputs=(inp,), out_type=out_type, bits=bits, codes=codes,
                     scale=rng.integers(200, 4000, size=f_out).astype(np.int64), scale_type=scale_type,
                     bias=np.zeros(f_out, dtype=np.int64), bias_type=FixedType(width=2, integer=2, signed=True),
                     accum_type=acc)


def random_gcn(seed: int = 0, n: int = 40, f_in: int = 12, hidden: int = 6, classes: int = 3, m: int = 60,
               two_layers: bool = True) -> ir.Model:
    rng = np.random.default_rng(seed)
    indptr, indices = csr_with_self_loops(random_edges(rng, n, m), n)
    in_type = FixedType.parse("ap_ufixed<1,1>")
    z_type = FixedType.parse("ap_fixed<10,4,AP_RND,AP_SAT>")
    buckets = [FixedType.parse(t) for t in ("ap_fixed<8,3,AP_RND_CONV,AP_SAT>", "ap_fixed<5,2,AP_RND,AP_SAT>",
                                            "ap_fixed<3,1,AP_TRN,AP_WRAP>")]
    h_type = FixedType.parse("ap_fixed<8,3,AP_RND,AP_SAT>")
    layers = [ir.Input(name="x", out_type=in_type, shape=(n, f_in)),
              node_dense("fc1", "x", rng, in_type, f_in, hidden, 2, z_type),
              aggregate("agg1", "fc1", rng, indptr, indices, hidden, z_type, buckets, [3, 6], h_type)]
    if two_layers:
        layers += [ir.ReLU(name="relu1", inputs=("agg1",), out_type=h_type),
                   node_dense("fc2", "relu1", rng, h_type, hidden, classes, 3, z_type),
                   aggregate("agg2", "fc2", rng, indptr, indices, classes, z_type, buckets[:2], [4],
                             FixedType.parse("ap_fixed<12,5,AP_RND_CONV,AP_SAT>"))]
    return ir.Model(name=f"gcn_{seed}", layers=layers).check()


def random_features(model: ir.Model, seed: int = 0, density: float = 0.3) -> np.ndarray:
    """One sample of binary node features (mantissas of ap_ufixed<1,1>)."""
    rng = np.random.default_rng(seed)
    return (rng.random((1,) + tuple(model.input.shape)) < density).astype(np.int64)
