"""Simulator kernels of the graph layers (``vecq_hw.ir.gnn``): the definition of what they compute.

* ``node_dense``: the dense kernel on every node's row (a (batch, n_nodes, f_in) @ (f_in, f_out)
  GEMM; exact in a float carrier for the dense kernel's reason: every partial sum lies inside
  the accumulator bound).
* ``gcn_aggregate``, on mantissas z (frac F_z) of shape (batch, n_nodes, f)::

      u_j = T(j).quantize_mantissa(z_j * p_j, F_z + F_p) << (F_store - F_T(j))   pre-scale, exact shift
      S_i = Σ_{k in indptr[i]..indptr[i+1]-1} u_{indices[k]}                      exact int64
      y_i = out.quantize_mantissa(S_i * q_i * 2^a + b * 2^c, product_frac)        the one requantisation

  with ``a``, ``c`` the shifts onto the product grid. ``Model.check`` bounds every exact step below
  2^62 (``GCNAggregate._check_widths``); every partial sum of a row is a sum of a subset of its
  terms, each of whose ranges contains 0, so it stays inside the row's bound too.
"""

from __future__ import annotations

import numpy as np

from .. import ir
from .kernels import DenseKernel, _RequantKernel, kernel_for


@kernel_for("node_dense")
class NodeDenseKernel(DenseKernel):
    """``x @ d`` over the last axis: numpy's matmul broadcasts over (batch, nodes)."""


@kernel_for("gcn_aggregate")
class GCNAggregateKernel(_RequantKernel):
    def __init__(self, layer: ir.GCNAggregate, in_shape, in_type, out_shape):
        super().__init__(layer, in_shape, in_type, out_shape)
        self.pre_frac = layer.pre_frac(in_type)
        store = layer.store_type
        self.buckets = [(np.flatnonzero(layer.node_bucket == b), t, store.frac - t.frac)
                        for b, t in enumerate(layer.bucket_types)]
        pf = layer.product_frac()
        self.post = layer.post_scale.astype(np.int64)[:, None] << np.int64(pf - store.frac - layer.post_scale_type.frac)
        self.bias = layer.bias.astype(np.int64) << np.int64(pf - layer.bias_type.frac)
        self.product_frac = pf
        self.pre = layer.pre_scale.astype(np.int64)[:, None]
        indptr = layer.indptr
        self.indices = layer.indices.astype(np.int64)
        self.starts = np.minimum(indptr[:-1], max(len(self.indices) - 1, 0))
        self.empty = indptr[1:] == indptr[:-1]

    def pre_scaled(self, z: np.ndarray) -> np.ndarray:
        """u: every node's row times its pre-scale, requantised into its bucket's type, in the store grid."""
        prod = z.astype(np.int64) * self.pre
        u = np.empty_like(prod)
        for rows, t, shift in self.buckets:
            q = t.quantize_mantissa(prod[:, rows], self.pre_frac)
            u[:, rows] = q << np.int64(shift) if shift else q
        return u

    def neighbour_sums(self, u: np.ndarray) -> np.ndarray:
        """S_i: each CSR row's u values summed (rows without entries sum to 0)."""
        if not len(self.indices):
            return np.zeros_like(u)
        s = np.add.reduceat(u[:, self.indices], self.starts, axis=1)
        s[:, self.empty] = 0
        return s

    def run(self, x, counts=None):
        y = self.neighbour_sums(self.pre_scaled(x)) * self.post + self.bias
        return self.requantize(y, self.product_frac, counts)
