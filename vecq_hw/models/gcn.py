"""Kipf & Welling's two-layer GCN on one graph, float or quantised at SGQuant's granularities.

    norm = gcn_normalisation(graph.edges, graph.n_nodes, SCALE_BITS)
    norm_in = gcn_normalisation(graph.edges, graph.n_nodes, SCALE_BITS, row_sum=graph.features.sum(1))
    model = gcn(norm, 1433, 16, 7, norm_in=norm_in, weight_quant=[{"method": "vecq", "bits": 2}] * 2,
                types=GCNTypes.uniform(4, ranges), node_bucket=degree_buckets(norm.degree, [4, 7]))

``forward(x)``: node features (batch, n_nodes, f) -> logits (batch, n_nodes, classes)::

    x -> FixedQuant(in_type) -> dropout -> GCNConv -> ReLU -> dropout -> GCNConv

The first layer may use ``norm_in``: Kipf & Welling's row normalisation of the (binary) features
folded into its pre-scale (1/(r_j √d̃_j)), so the input stays one bit per value.

SGQuant's granularities are the fields of :class:`GCNTypes`: per *component* (the weights' bits,
``weight_quant`` per layer, apart from the features'), per *layer* (each layer its own types) and
per *degree bucket* (the stored features u of a layer, one type per bucket of ``node_bucket``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from ..fixed import FixedType
from ..nn import FixedQuant
from ..nn.gnn import GCNConv, GraphNorm

#: significant bits of the smallest of the normalisation's per-node factors (1/√d̃, 1/(r√d̃))
SCALE_BITS = 12
#: binary bag-of-words features: exactly one bit
BINARY_IN_TYPE = "ap_ufixed<1,1>"


@dataclass(frozen=True)
class GCNTypes:
    """Every feature type of a 2-layer quantised GCN (strings or FixedTypes)."""

    in_type: object = BINARY_IN_TYPE
    combine: tuple = ("ap_fixed<16,6,AP_RND,AP_SAT>", "ap_fixed<16,6,AP_RND,AP_SAT>")  # z = x W, per layer
    buckets: tuple = (("ap_fixed<8,3,AP_RND,AP_SAT>",), ("ap_fixed<8,3,AP_RND,AP_SAT>",))  # u per layer, per bucket
    out: tuple = ("ap_fixed<8,3,AP_RND,AP_SAT>", "ap_fixed<16,6,AP_RND_CONV,AP_SAT>")  # hidden H, logits

    @staticmethod
    def stored(bits: int, integer: int, mode: str = "AP_RND_CONV") -> FixedType:
        """A stored feature type: ``bits`` wide, ``integer`` integer bits, saturating."""
        return FixedType(width=int(bits), integer=int(integer), signed=True, rounding=mode, overflow="AP_SAT")

    def with_buckets(self, widths, integers) -> "GCNTypes":
        """These types with the stored features' widths[layer][bucket] (integer bits integers[layer][bucket])."""
        return replace(self, buckets=tuple(tuple(str(self.stored(b, i)) for b, i in zip(wl, il))
                                           for wl, il in zip(widths, integers)))


class GCN(nn.Module):
    """The two-layer GCN (see the module docstring); ``types=None`` builds the float model."""

    def __init__(self, norm: GraphNorm, in_features: int, hidden: int, classes: int, *,
                 norm_in: GraphNorm | None = None, weight_quant=None, types: GCNTypes | None = None, node_bucket=None, dropout: float = 0.5,
                 scale_bits: int = 16):
        super().__init__()
        wq = weight_quant if isinstance(weight_quant, (list, tuple)) else [weight_quant, weight_quant]
        t = types
        self.q_in = FixedQuant(t.in_type) if t is not None else None
        self.drop = nn.Dropout(dropout)
        self.conv1 = GCNConv(in_features, hidden, norm_in or norm, weight_quant=wq[0], node_bucket=node_bucket,
                             scale_bits=scale_bits, **self._layer_types(t, 0))
        self.relu = nn.ReLU()
        self.drop2 = nn.Dropout(dropout)
        self.conv2 = GCNConv(hidden, classes, norm, weight_quant=wq[1], node_bucket=node_bucket,
                             scale_bits=scale_bits, **self._layer_types(t, 1))
        self.input_shape = (norm.n_nodes, int(in_features))
        self.num_classes = int(classes)
        self.arch = "gcn"

    @staticmethod
    def _layer_types(t: GCNTypes | None, i: int) -> dict:
        if t is None:
            return {}
        return {"combine_type": t.combine[i], "bucket_types": t.buckets[i], "out_type": t.out[i]}

    def convs(self) -> tuple[GCNConv, GCNConv]:
        return self.conv1, self.conv2

    def set_types(self, t: GCNTypes) -> None:
        """Switch every feature type (the bit selection tries widths this way)."""
        self.q_in = FixedQuant(t.in_type)
        for i, conv in enumerate(self.convs()):
            conv.set_types(**self._layer_types(t, i))

    def set_quantize_features(self, on: bool) -> None:
        for conv in self.convs():
            conv.quantize_features = bool(on)

    def forward(self, x):
        if self.q_in is not None:
            x = self.q_in(x)
        h = self.relu(self.conv1(self.drop(x)))
        return self.conv2(self.drop2(h))

    def forward_sparse(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` on one graph's sparse (n_nodes, f) features (training: the zeros of a
        bag-of-words matrix skipped; the input quantiser and dropout act on its nonzero values,
        which is the same function: both map 0 to 0)."""
        v = x.coalesce()
        vals = v.values() if self.q_in is None else self.q_in(v.values())
        x = torch.sparse_coo_tensor(v.indices(), self.drop(vals), v.shape, is_coalesced=True, check_invariants=False)
        h = self.relu(self.conv1(x))
        return self.conv2(self.drop2(h)).squeeze(0)


def gcn(norm: GraphNorm, in_features: int, hidden: int, classes: int, **options) -> GCN:
    """:class:`GCN` (the builder's spelling, like :func:`vecq_hw.models.build_model`'s)."""
    return GCN(norm, in_features, hidden, classes, **options)


__all__ = ["BINARY_IN_TYPE", "GCN", "GCNTypes", "SCALE_BITS", "gcn"]
