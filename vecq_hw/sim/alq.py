"""Simulator kernels of ALQ's native kinds (``alq_dense``, ``alq_conv2d``: :mod:`vecq_hw.ir.alq`).

acc_j = sum_b alpha_jb sum_i x_i beta_ijb is computed as sum_i x_i d_ij with the layer's integer
multipliers d_ij = sum_b alpha_jb beta_ijb (``layer.multipliers()``): the same integer, because
integer sums reorder freely, so the dense / conv kernels' exact accumulation (float BLAS inside
the accumulator bound, which ``accum_type`` is checked against over this very d; see
:mod:`.kernels`) and their one requantisation apply unchanged. The back ends build the per-basis
form; the tests compare both with an independent per-basis reference.
"""

from __future__ import annotations

from .kernels import Conv2DKernel, DenseKernel, kernel_for


@kernel_for("alq_dense")
class AlqDenseKernel(DenseKernel):
    pass


@kernel_for("alq_conv2d")
class AlqConv2DKernel(Conv2DKernel):
    def __init__(self, layer, in_shape, in_type, out_shape, force_dtype=None):
        super().__init__(layer, in_shape, in_type, out_shape, force_dtype)
        # im2col columns are ordered (kh, kw, cin): the planes' own order, flattened
        self.weights = self.weights.reshape(-1, self.weights.shape[-1])
