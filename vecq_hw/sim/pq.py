"""Simulator kernels of the PQ kinds (``pq_dense``, ``pq_conv2d``: :mod:`vecq_hw.ir.pq`).

acc_j = sum_b dot(x_block_b, codeword_{indices[b, j]}) is computed as sum_i x_i d_ij with the
layer's integer multipliers d_ij (``layer.multipliers()``: the codebook entry of fan-in i's block,
placed in this model's channels-last fan-in order): the same integer, because integer sums
reorder freely, so the dense / conv kernels' exact accumulation (float BLAS inside the
accumulator bound, which ``accum_type`` is checked against over this very d; see :mod:`.kernels`)
and their one requantisation apply unchanged. The back ends build per-block forms; the tests
compare both with an independent per-block reference.
"""

from __future__ import annotations

from .kernels import Conv2DKernel, DenseKernel, kernel_for


@kernel_for("pq_dense")
class PqDenseKernel(DenseKernel):
    pass


@kernel_for("pq_conv2d")
class PqConv2DKernel(Conv2DKernel):
    def __init__(self, layer, in_shape, in_type, out_shape, force_dtype=None):
        super().__init__(layer, in_shape, in_type, out_shape, force_dtype)
        # im2col columns are ordered (kh, kw, cin): multipliers()' own order, flattened
        self.weights = self.weights.reshape(-1, self.weights.shape[-1])
