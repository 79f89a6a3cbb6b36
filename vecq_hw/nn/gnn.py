"""A quantised GCN layer on one fixed graph, computing what the integer model's graph kinds compute.

    norm = gcn_normalisation(edges, n_nodes, 12)   # Â's factors, 12 significant bits
    conv = GCNConv(1433, 16, norm, weight_quant=VecQ(bits=2), combine_type="ap_fixed<12,4,AP_RND,AP_SAT>",
                   bucket_types=["ap_fixed<4,1,AP_RND,AP_SAT>", "ap_fixed<3,0,AP_RND,AP_SAT>"],
                   node_bucket=degree_buckets(norm.degree, [5]), out_type="ap_fixed<8,3,AP_RND,AP_SAT>")

Forward on node features ``x`` (batch, n_nodes, f_in) (or (n_nodes, f_in))::

    z   = FQ_combine(x @ W)                 W = levels[c] * s_q: the quantiser's codes times its scale
                                            rounded to ``scale_bits`` significant bits (the integer
                                            model's node_dense, exactly)
    u_j = FQ_bucket(j)(z_j * p_j)           the pre-scale, into node j's degree bucket type (SGQuant's
                                            topology-aware widths)
    s_i = Σ_{j in N(i) ∪ {i}} u_j           the exact neighbour sum (a sparse product with 0/1 entries)
    y_i = FQ_out(s_i * q_i + FQ_bias(b))    the post-scale and the bias (rounded onto y's grid)

Every rounding is a FixedQuant (exact ap_types conversion, straight-through gradient), so in
float64 the layer equals the integer model bit for bit (``vecq_hw.export.gnn`` checks it). Without
types (``combine_type=None`` ...) and with a float normalisation it is Kipf & Welling's float
GCN layer. ``quantize_features`` switches the feature quantisers (a QAT schedule's float phase).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from ..fixed import FixedType
from ..fixed_torch import MAX_TORCH_WIDTH, fixed_quantize
from ..ir.gnn import csr_with_self_loops, inv_sqrt_mantissas, store_type
from .layers import DEFAULT_WEIGHT_QUANT, VecQLinear


@dataclass(frozen=True)
class GraphNorm:
    """Â = D̃^-½ (A + I) D̃^-½ of one graph as its CSR and per-node factors ``pre`` (1/√d̃_j, times
    1/r_j with a row normalisation of the features) and ``post`` (1/√d̃_i), float64 values; with
    ``pre_type``/``post_type`` exactly the mantissas ``pre_m``/``post_m`` of those types."""

    indptr: np.ndarray
    indices: np.ndarray
    pre: np.ndarray
    post: np.ndarray
    pre_type: FixedType | None = None
    post_type: FixedType | None = None
    pre_m: np.ndarray | None = None
    post_m: np.ndarray | None = None

    @property
    def n_nodes(self) -> int:
        return int(self.indptr.size - 1)

    @property
    def degree(self) -> np.ndarray:
        """d̃: neighbours including the node itself."""
        return np.diff(self.indptr)

    @property
    def quantized(self) -> bool:
        return self.pre_type is not None


def scale_type_for(values: np.ndarray, significant_bits: int) -> FixedType:
    """ap_ufixed<W,1> giving the smallest of ``values`` (all in (0, 1]) ``significant_bits`` bits."""
    frac = significant_bits - math.frexp(float(np.min(values)))[1]
    return FixedType(width=1 + frac, integer=1, signed=False)


def gcn_normalisation(edges, n_nodes: int, significant_bits: int | None = None, row_sum=None) -> GraphNorm:
    """The CSR of A + I (duplicates and existing self-loops once) and the factors 1/√d̃ (``row_sum``:
    the pre-scale also divides node j's features by r_j, Kipf & Welling's row normalisation, 0 rows
    left as they are). ``significant_bits``: each factor rounded to nearest in an ap_ufixed<W,1> that
    gives the smallest one that many significant bits (None: exact float)."""
    indptr, indices = csr_with_self_loops(edges, n_nodes)
    deg = np.diff(indptr)
    r = np.ones(n_nodes, dtype=np.int64) if row_sum is None else np.maximum(np.asarray(row_sum, np.int64), 1)
    pre_f, post_f = 1.0 / (r * np.sqrt(deg.astype(np.float64))), 1.0 / np.sqrt(deg.astype(np.float64))
    if significant_bits is None:
        return GraphNorm(indptr, indices, pre_f, post_f)
    # 1/(r sqrt(d)) = 1/sqrt(d r^2): the same exact integer rounding
    pre_t, post_t = scale_type_for(pre_f, significant_bits), scale_type_for(post_f, significant_bits)
    pre_m, post_m = inv_sqrt_mantissas(deg * r * r, pre_t), inv_sqrt_mantissas(deg, post_t)
    return GraphNorm(indptr, indices, pre_t.to_float(pre_m), post_t.to_float(post_m), pre_t, post_t, pre_m, post_m)


def _fixed(t) -> FixedType | None:
    return None if t is None else (t if isinstance(t, FixedType) else FixedType.parse(str(t)))


def scale_mantissas(s: torch.Tensor, scale_bits: int) -> tuple[torch.Tensor, int]:
    """Per-channel scales rounded to one fixed-point grid: ``scale_bits`` significant bits for the
    smallest nonzero |s| (every larger one keeps more); (mantissas as float, fractional bits)."""
    mag = s.detach().abs()
    nz = mag[mag > 0]
    frac = scale_bits - (math.frexp(float(nz.min()))[1] if nz.numel() else 0)
    return torch.round(s.detach() * 2.0**frac), frac


class GCNConv(nn.Module):
    """One GCN layer ``y = Â x W + b`` on the graph of ``norm`` (see the module docstring)."""

    def __init__(self, in_features: int, out_features: int, norm: GraphNorm, *, weight_quant=DEFAULT_WEIGHT_QUANT,
                 combine_type=None, bucket_types=None, node_bucket=None, out_type=None, bias: bool = True,
                 scale_bits: int = 16):
        super().__init__()
        self.norm, self.scale_bits = norm, int(scale_bits)
        self.lin = VecQLinear(in_features, out_features, bias=False, weight_quant=weight_quant)
        nn.init.xavier_uniform_(self.lin.weight)  # Kipf & Welling's (Glorot) initialisation
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        n = norm.n_nodes
        rows = np.repeat(np.arange(n), np.diff(norm.indptr))
        self.register_buffer("edge_index", torch.from_numpy(np.stack([rows, norm.indices.astype(np.int64)])),
                             persistent=False)
        self.register_buffer("pre", torch.from_numpy(norm.pre.astype(np.float32)), persistent=False)
        self.register_buffer("post", torch.from_numpy(norm.post.astype(np.float32)), persistent=False)
        self.node_bucket = np.zeros(n, dtype=np.int8) if node_bucket is None else np.asarray(node_bucket, np.int8)
        order = np.argsort(self.node_bucket, kind="stable")
        self.register_buffer("order", torch.from_numpy(order), persistent=False)
        self.register_buffer("inverse", torch.from_numpy(np.argsort(order)), persistent=False)
        self.quantize_features = True
        self.set_types(combine_type, bucket_types, out_type)

    # -- the feature types ---------------------------------------------------------------------
    def set_types(self, combine_type=None, bucket_types=None, out_type=None) -> None:
        """The layer's fixed-point types (None: float there); the bias grid follows from them."""
        self.combine_type, self.out_type = _fixed(combine_type), _fixed(out_type)
        self.bucket_types = None if bucket_types is None else tuple(_fixed(t) for t in bucket_types)
        if self.bucket_types is not None and int(self.node_bucket.max(initial=0)) >= len(self.bucket_types):
            raise ValueError(f"node_bucket names bucket {int(self.node_bucket.max())}, but only "
                             f"{len(self.bucket_types)} bucket types are given")
        self.bias_type = self._bias_type()
        counts = np.bincount(self.node_bucket.astype(np.int64), minlength=len(self.bucket_types or (0,)))
        self._splits = [int(c) for c in counts]

    def _bias_type(self) -> FixedType | None:
        """The bias on y's exact grid (the store frac + the post-scale frac), range of the output plus one bit."""
        if self.out_type is None or self.bucket_types is None or not self.norm.quantized:
            return None
        frac = store_type(self.bucket_types).frac + self.norm.post_type.frac
        integer = self.out_type.integer + 1
        frac = min(frac, MAX_TORCH_WIDTH - integer)
        return FixedType(width=integer + frac, integer=integer, signed=True, rounding="AP_RND_CONV",
                         overflow="AP_SAT")

    @property
    def quantized(self) -> bool:
        """Every rounding of the integer model is in place (what the exporter needs)."""
        return (self.lin.quantize and self.quantize_features and self.combine_type is not None
                and self.bucket_types is not None and self.out_type is not None and self.norm.quantized)

    # -- the pieces of forward -----------------------------------------------------------------
    def combine_weight(self) -> torch.Tensor:
        """W (f_in, f_out) as forward uses it: levels[c] * s_q with a straight-through gradient."""
        lin = self.lin
        if not lin.quantize:
            return lin.weight.t()
        d, s_m, frac = self.integer_combine_torch()
        w_q = d * (s_m * 2.0**-frac)[:, None]
        return (lin.weight + (w_q - lin.weight).detach()).t()

    def integer_combine_torch(self):
        """(d (f_out, f_in) multipliers, scale mantissas (f_out,), their frac) in the weight's dtype."""
        r = self.lin.quant_result()
        d = r.multipliers().to(self.lin.weight.dtype)
        alpha = r.alpha.to(self.lin.weight.dtype)
        s = (alpha if alpha.dim() else alpha.expand(d.shape[0])) * r.unit
        s_m, frac = scale_mantissas(s, self.scale_bits)
        return d, s_m, frac

    def bias_value(self) -> torch.Tensor:
        if self.bias_type is None or not self.quantize_features:
            return self.bias
        return fixed_quantize(self.bias, self.bias_type)

    def _q(self, t: FixedType | None, x: torch.Tensor) -> torch.Tensor:
        return x if t is None or not self.quantize_features else fixed_quantize(x, t)

    def stored(self, u: torch.Tensor) -> torch.Tensor:
        """u with each node's row rounded into its bucket's type (nodes sorted by bucket, then back)."""
        if self.bucket_types is None or not self.quantize_features:
            return u
        parts = torch.split(u.index_select(1, self.order), self._splits, dim=1)
        q = torch.cat([fixed_quantize(p, t) for p, t in zip(parts, self.bucket_types)], dim=1)
        return q.index_select(1, self.inverse)

    def neighbour_sum(self, u: torch.Tensor) -> torch.Tensor:
        """s_i = Σ_{j in row i} u_j for every graph of the batch (one sparse product)."""
        b, n, f = u.shape
        a = torch.sparse_coo_tensor(self.edge_index, torch.ones(self.edge_index.shape[1], dtype=u.dtype,
                                                                device=u.device), (n, n), is_coalesced=True,
                                    check_invariants=False)
        s = torch.sparse.mm(a, u.permute(1, 0, 2).reshape(n, b * f))
        return s.reshape(n, b, f).permute(1, 0, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = x.dim() == 2
        if x.is_sparse:  # one graph's sparse (n_nodes, f_in) features: the same product, zeros skipped
            z = torch.sparse.mm(x, self.combine_weight()).unsqueeze(0)
        else:
            z = torch.matmul(x.unsqueeze(0) if single else x, self.combine_weight())
        z = self._q(self.combine_type, z)
        u = self.stored(z * self.pre.to(z.dtype)[:, None])
        y = self.neighbour_sum(u) * self.post.to(u.dtype)[:, None]
        if self.bias is not None:
            y = y + self.bias_value()
        y = self._q(self.out_type, y)
        return y.squeeze(0) if single else y

    def extra_repr(self) -> str:
        types = [f"{k}={v}" for k, v in (("combine", self.combine_type), ("out", self.out_type)) if v is not None]
        if self.bucket_types is not None:
            types.append("buckets=[" + ", ".join(str(t) for t in self.bucket_types) + "]")
        return f"{self.lin.in_features}, {self.lin.out_features}, nodes={self.norm.n_nodes}" + (
            ", " + ", ".join(types) if types else "")


__all__ = ["GCNConv", "GraphNorm", "gcn_normalisation", "scale_mantissas", "scale_type_for"]
