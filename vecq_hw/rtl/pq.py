"""RTL ops of the PQ kinds (``pq_dense``, ``pq_conv2d``): the weights are constants, so the layer
is traced like a levels layer, one da4ml constant matrix-vector product over its integer
multipliers d_ij (``layer.multipliers()``: each block's codeword entries in this model's
channels-last fan-in order) per input vector or output pixel, then y_j = acc_j * s_j + b_j and the
ONE requantisation (``trace._post``). da4ml's adder graph shares what the codewords repeat: a
block's codeword appears in every output channel that picked it. Exact: da4ml's values are exact
integers on the input's grid and acc_j = sum_i x_i d_ij as in the simulator (:mod:`vecq_hw.ir.pq`).
Registered by importing this module (:mod:`.ops` does)."""

from __future__ import annotations

from .trace import _conv, _dense, rtl_op

rtl_op("pq_dense")(_dense)
rtl_op("pq_conv2d")(_conv)

__all__: list[str] = []
