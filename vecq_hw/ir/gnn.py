"""Graph layers of the integer model: a GCN on one fixed graph (transductive), bit-exact.

Node features are a ``(n_nodes, f)`` tensor: one row per node. A GCN layer (Kipf & Welling)
``H' = act(Â H W + b)`` with ``Â = D̃^-½ (A + I) D̃^-½`` is two kinds:

* ``node_dense``: ``Z = H W``, the dense contract applied to every node's row
  (``acc = Σ_f h_f d_fo``, ``z = requant(acc * s_o + b_o)``); codes ``(f_in, f_out)``.
* ``gcn_aggregate``: the normalised sum over each node's neighbours, with Â's edge weight
  ``1/√(d_i d_j)`` factored into one per-node *pre-scale* ``p_j`` and one per-node
  *post-scale* ``q_i``, so that the edge loop is a pure sum (exact, multiplier-free)::

      u_j = requant_{T(j)}(z_j * p_j)           the pre-scale: one requantisation per node row,
                                                into the type T(j) of node j's degree bucket
      S_i = Σ_{j in row i of the CSR} u_j        exact (every u_j held in the common store type)
      y_i = requant_out(S_i * q_i + b)           the post-scale and bias: the one requantisation

  The CSR (``indptr``, ``indices``) is the constant adjacency, self-loops included, each row
  strictly increasing. ``node_bucket[j]`` picks node j's storage type among ``bucket_types``
  (SGQuant's topology-aware widths: the u table is stored packed at each node's width, and
  every stored value is held exactly by the common *store type*, the narrowest type holding
  every bucket type, which the sum reads).

The helpers at the end build the tables from an edge list (CSR with self-loops, the exact
``1/√d`` mantissas, degree buckets); nothing here imports torch or a back end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..fixed import FixedType
from .arith import MAX_EXACT_WIDTH, aligned_sum_type, signed_width_for
from .layers import Dense, Layer, register_kind

#: degree buckets of one aggregation (one memory each in hardware)
MAX_BUCKETS = 4
#: node and edge counts are stored as int32 indices
MAX_NODES = (1 << 31) - 1


@dataclass(eq=False)
class NodeDense(Dense):
    """``Z = H W`` on node features ``(n_nodes, f_in) -> (n_nodes, f_out)``: the dense contract on
    every row (codes ``(f_in, f_out)``, the scale and bias per output feature)."""

    kind: ClassVar[str] = "node_dense"

    def infer_shape(self, in_shapes):
        return (int(in_shapes[0][0]), self.n_out)

    @classmethod
    def codes_shape_problem(cls, codes_shape, in_shapes):
        shape = in_shapes[0]
        if len(shape) != 2:
            return "", f"node_dense needs node features (n_nodes, f), got shape {tuple(shape)}"
        if len(codes_shape) != 2 or codes_shape[0] != shape[1]:
            return "codes", f"expected shape ({shape[1]}, f_out), got {tuple(codes_shape)}"
        return None


def store_type(types) -> FixedType:
    """The narrowest type holding every value of every bucket type exactly (one signedness)."""
    types = list(types)
    frac = max(t.frac for t in types)
    integer = max(t.integer for t in types)
    return FixedType(width=integer + frac, integer=integer, signed=types[0].signed)


@dataclass(eq=False)
class GCNAggregate(Layer):
    """``y_i = requant(q_i * Σ_{j in row i} requant_{T(j)}(p_j z_j) + b)``: see the module docstring."""

    kind: ClassVar[str] = "gcn_aggregate"
    PARAMS: ClassVar[tuple[str, ...]] = ("pre_scale_type", "bucket_types", "post_scale_type", "bias_type")
    #: the tables (.npy files after ``out_type``, in this order) and their dtypes
    TABLES: ClassVar[dict[str, str]] = {
        "indptr": "int64", "indices": "int32", "node_bucket": "int8",
        "pre_scale": "int64", "post_scale": "int64", "bias": "int64"}
    FILES: ClassVar[tuple[str, ...]] = tuple(TABLES)
    pre_scale_type: FixedType = None
    bucket_types: tuple[FixedType, ...] = ()
    post_scale_type: FixedType = None
    bias_type: FixedType = None
    indptr: np.ndarray = None  # int64 (n_nodes + 1,): row i is indices[indptr[i]:indptr[i+1]]
    indices: np.ndarray = None  # int32 (n_edges,): the neighbours j of each row, increasing
    node_bucket: np.ndarray = None  # int8 (n_nodes,): each node's storage type
    pre_scale: np.ndarray = None  # int64 mantissas of pre_scale_type, one per node
    post_scale: np.ndarray = None  # int64 mantissas of post_scale_type, one per node
    bias: np.ndarray = None  # int64 mantissas of bias_type, one per feature

    def __post_init__(self):
        self.bucket_types = tuple(self.bucket_types)

    # -- derived types -----------------------------------------------------------------------
    @property
    def store_type(self) -> FixedType:
        return store_type(self.bucket_types)

    def pre_frac(self, in_type: FixedType) -> int:
        """Fractional bits of z_j * p_j, before the bucket's requantisation."""
        return in_type.frac + self.pre_scale_type.frac

    def max_row(self) -> int:
        return int(np.max(np.diff(self.indptr), initial=0))

    def sum_type(self) -> FixedType:
        """The exact type of S_i: the sum of up to max_row() values of the store type."""
        return aligned_sum_type([self.store_type], count=max(1, self.max_row()))

    def product_frac(self) -> int:
        """Fractional bits of y = S * q + b, before the one requantisation."""
        return max(self.store_type.frac + self.post_scale_type.frac, self.bias_type.frac)

    def types(self):
        out = {"pre_scale_type": self.pre_scale_type, "post_scale_type": self.post_scale_type,
               "bias_type": self.bias_type, "out_type": self.out_type}
        out.update({f"bucket_types[{i}]": t for i, t in enumerate(self.bucket_types)})
        return out

    @classmethod
    def table_shapes(cls, in_shapes) -> dict:
        """The shape each table must have on these inputs (None: one dimension, any length)."""
        shape = in_shapes[0]
        n, f = (int(shape[0]), int(shape[1])) if len(shape) == 2 else (0, 0)
        return {"indptr": (n + 1,), "indices": None, "node_bucket": (n,), "pre_scale": (n,), "post_scale": (n,),
                "bias": (f,)}

    def files_to_yaml(self, stem, out):
        return {t: out.npy(t, getattr(self, t), dtype) for t, dtype in self.TABLES.items()}

    @classmethod
    def files_from_yaml(cls, r, rec, fld, kw, in_shapes):
        """Each table with its shape checked before its file is read; the values are ``check``'s."""
        want = cls.table_shapes(in_shapes)

        def shape_of(name):
            def check(shape, sfld):
                need = want[name]
                if (need is None and len(shape) != 1) or (need is not None and tuple(shape) != need):
                    r.fail(sfld, f"expected {list(need) if need is not None else 'one dimension'}, got {list(shape)}")
            return check
        return {t: r.table(rec[t], f"{fld}.{t}", dtype, shape_of(t)) for t, dtype in cls.TABLES.items()}

    # -- YAML --------------------------------------------------------------------------------
    def params_to_yaml(self):
        return {"pre_scale_type": str(self.pre_scale_type), "bucket_types": [str(t) for t in self.bucket_types],
                "post_scale_type": str(self.post_scale_type), "bias_type": str(self.bias_type)}

    @classmethod
    def params_from_yaml(cls, r, rec, fld, in_shapes):
        bt = rec["bucket_types"]
        if not isinstance(bt, list) or not 1 <= len(bt) <= MAX_BUCKETS:
            r.fail(f"{fld}.bucket_types", f"expected a list of 1 to {MAX_BUCKETS} fixed-point types")
        return {"pre_scale_type": r.fixed(rec["pre_scale_type"], f"{fld}.pre_scale_type"),
                "bucket_types": tuple(r.fixed(t, f"{fld}.bucket_types[{i}]") for i, t in enumerate(bt)),
                "post_scale_type": r.fixed(rec["post_scale_type"], f"{fld}.post_scale_type"),
                "bias_type": r.fixed(rec["bias_type"], f"{fld}.bias_type")}

    # -- check -------------------------------------------------------------------------------
    def check(self, in_shapes, in_types, fail):
        shape = in_shapes[0]
        if len(shape) != 2:
            fail("", f"gcn_aggregate needs node features (n_nodes, f), got shape {tuple(shape)}")
        for name, want in self.table_shapes(in_shapes).items():
            arr, dtype = getattr(self, name), np.dtype(self.TABLES[name])
            if not isinstance(arr, np.ndarray) or arr.dtype != dtype or (
                    want is not None and arr.shape != want) or arr.ndim != 1:
                fail(name, f"expected {dtype} of shape {list(want) if want else '(n_edges,)'}")
        check_csr(self.indptr, self.indices, int(shape[0]), fail)
        self._check_types(fail)
        nb = len(self.bucket_types)
        if self.node_bucket.size and (int(self.node_bucket.min()) < 0 or int(self.node_bucket.max()) >= nb):
            j = int(np.flatnonzero((self.node_bucket < 0) | (self.node_bucket >= nb))[0])
            fail("node_bucket", f"node {j} names bucket {int(self.node_bucket[j])}, expected 0..{nb - 1} "
                 f"(one per bucket type)")
        for name, t in (("pre_scale", self.pre_scale_type), ("post_scale", self.post_scale_type),
                        ("bias", self.bias_type)):
            arr = getattr(self, name)
            if arr.size and (int(arr.min()) < t.min_mantissa or int(arr.max()) > t.max_mantissa):
                fail(name, f"mantissas outside {t}")
        self._check_widths(in_types[0], fail)

    def _check_types(self, fail):
        if not 1 <= len(self.bucket_types) <= MAX_BUCKETS:
            fail("bucket_types", f"expected 1 to {MAX_BUCKETS} types, got {len(self.bucket_types)}")
        for key, t in self.types().items():
            if not isinstance(t, FixedType) or t.kind != "fixed":
                fail(key, f"expected an ap_fixed/ap_ufixed type, got {t}")
        signs = {t.signed for t in self.bucket_types}
        if len(signs) != 1:
            fail("bucket_types", "expected types of one signedness (all ap_fixed or all ap_ufixed)")

    def _check_widths(self, in_type: FixedType, fail):
        """Every exact intermediate within the simulator's exact int64 range."""
        p = self.pre_scale_type
        prod = signed_width_for(min(in_type.min_mantissa * p.max_mantissa, 0),
                                max(in_type.max_mantissa * p.max_mantissa, 0))
        if prod > MAX_EXACT_WIDTH:
            fail("pre_scale_type", f"z*p needs {prod} bits, more than the {MAX_EXACT_WIDTH} computed exactly")
        s, q = self.sum_type(), self.post_scale_type
        y_frac = self.product_frac()
        y_bits = max(s.width + q.width + (y_frac - s.frac - q.frac),
                     self.bias_type.width + (y_frac - self.bias_type.frac)) + 1
        if y_bits > MAX_EXACT_WIDTH:
            fail("post_scale_type", f"S*q+b needs {y_bits} bits, more than the {MAX_EXACT_WIDTH} computed exactly")


def check_csr(indptr: np.ndarray, indices: np.ndarray, n: int, fail) -> None:
    """Refuse (``fail(field, why)``) a CSR that is not n rows of strictly increasing in-range indices."""
    if n > MAX_NODES:
        fail("indptr", f"{n} nodes, more than the {MAX_NODES} int32 indices address")
    if int(indptr[0]) != 0:
        fail("indptr", f"expected indptr[0] = 0, got {int(indptr[0])}")
    step = np.diff(indptr)
    if step.size and int(step.min()) < 0:
        i = int(np.flatnonzero(step < 0)[0])
        fail("indptr", f"not monotone: indptr[{i + 1}] = {int(indptr[i + 1])} < indptr[{i}] = {int(indptr[i])}")
    if int(indptr[-1]) != indices.size:
        fail("indptr", f"expected indptr[{n}] = {indices.size} (the number of indices), got {int(indptr[-1])}")
    if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= n):
        k = int(np.flatnonzero((indices < 0) | (indices >= n))[0])
        fail("indices", f"indices[{k}] = {int(indices[k])} is outside the {n} nodes [0, {n - 1}]")
    if indices.size > 1:
        rising = np.diff(indices.astype(np.int64)) > 0
        starts = np.zeros(indices.size - 1, dtype=bool)  # k -> k+1 crosses into a new row
        inner = indptr[1:-1]
        starts[inner[(inner > 0) & (inner < indices.size)] - 1] = True
        bad = np.flatnonzero(~rising & ~starts)
        if bad.size:
            k = int(bad[0])
            row = int(np.searchsorted(indptr, k, side="right") - 1)
            fail("indices", f"row {row} is not strictly increasing (indices[{k}] = {int(indices[k])}, "
                 f"indices[{k + 1}] = {int(indices[k + 1])}): sort each row, no duplicate edges")


for _cls in (NodeDense, GCNAggregate):
    register_kind(_cls)


# ------------------------------------------------------------------------------ building the tables

def csr_with_self_loops(edges: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(indptr int64, indices int32) of A + I from a (2, E) edge list (row = edges[0]):
    duplicates and existing self-loops collapse to one entry, every row sorted."""
    e = np.asarray(edges, dtype=np.int64)
    loops = np.arange(n, dtype=np.int64)
    rows = np.concatenate([e[0], loops])
    cols = np.concatenate([e[1], loops])
    key = np.unique(rows * n + cols)
    rows, cols = key // n, key % n
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return indptr, cols.astype(np.int32)


def inv_sqrt_mantissas(degree: np.ndarray, t: FixedType) -> np.ndarray:
    """Mantissas of ``1/√d`` in ``t``, rounded to nearest (ties up), from integer arithmetic only:
    m = floor(√(4^F / d)) or one more, whichever is nearer (compare (2m+1)^2 d with 4^(F+1))."""
    f = t.frac
    if f < 0:
        raise ValueError(f"{t} has no fractional bits for 1/sqrt(d)")
    out = np.empty(len(degree), dtype=np.int64)
    for i, d in enumerate(np.asarray(degree, dtype=np.int64).tolist()):
        if d <= 0:
            raise ValueError(f"node {i} has degree {d}; 1/sqrt(d) needs d >= 1 (add self-loops)")
        m = math.isqrt((1 << (2 * f)) // d)
        if (2 * m + 1) ** 2 * d <= 1 << (2 * f + 2):
            m += 1
        out[i] = min(m, t.max_mantissa)
    return out


def degree_buckets(degree: np.ndarray, edges_of_buckets) -> np.ndarray:
    """int8 bucket of every node: bucket b holds degrees in [edges[b-1], edges[b]) (the first from
    0, the last to infinity); ``edges_of_buckets`` are the increasing lower bounds of buckets 1.."""
    bounds = np.asarray(list(edges_of_buckets), dtype=np.int64)
    if bounds.size >= MAX_BUCKETS or (bounds.size > 1 and np.any(np.diff(bounds) <= 0)):
        raise ValueError(f"expected at most {MAX_BUCKETS - 1} increasing degree bounds, got {bounds.tolist()}")
    return np.searchsorted(bounds, np.asarray(degree, dtype=np.int64), side="right").astype(np.int8)


__all__ = ["GCNAggregate", "MAX_BUCKETS", "NodeDense", "check_csr", "csr_with_self_loops", "degree_buckets",
           "inv_sqrt_mantissas", "store_type"]
