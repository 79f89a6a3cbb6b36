"""RTL ops of ALQ's native kinds (``alq_dense``, ``alq_conv2d``), in their native structure:

    acc_k = sum_i x_i beta_ik      one da4ml constant matrix-vector product over the +-1 plane
                                   columns (an adder graph of additions and subtractions)
    acc_j = sum_k E_kj acc_k       a second, small one: E_kj = alpha_k where column k is channel
                                   j's (the alpha constants as shift-adds, shared where they repeat)
    then y_j = acc_j * s_j + b_j and the ONE requantisation (``trace._post``).

Exact: da4ml's values are exact integers on the input's grid, and acc_j = sum_i x_i d_ij as in
the simulator (:mod:`vecq_hw.ir.alq`). Registered by importing this module (:mod:`.ops` does).
"""

from __future__ import annotations

import numpy as np

from .trace import TraceStep, _post, _windows, rtl_op


def _alpha_matrix(layer) -> np.ndarray:
    """E (K, n_out): alpha of column k in its channel's column, 0 elsewhere."""
    e = np.zeros((layer.planes.shape[-1], layer.n_out), dtype=np.int64)
    e[np.arange(e.shape[0]), layer.column_outputs()] = layer.column_alpha()
    return e


def _outputs(s: TraceStep, xs: np.ndarray, planes: np.ndarray, alpha: np.ndarray, post) -> np.ndarray:
    """The layer's outputs for one input vector (dense) or window (conv): bases, alphas, tail."""
    return post(s.solver.matvec(s.solver.matvec(xs, planes), alpha))


@rtl_op("alq_dense")
def alq_dense(s: TraceStep) -> np.ndarray:
    layer = s.layer
    planes = layer.planes.astype(np.int64)
    return _outputs(s, s.x, planes, _alpha_matrix(layer), _post(layer, s.in_type))


@rtl_op("alq_conv2d")
def alq_conv2d(s: TraceStep) -> np.ndarray:
    layer = s.layer
    planes = layer.planes.astype(np.int64).reshape(-1, layer.planes.shape[-1])  # rows (kh, kw, cin)
    alpha, post = _alpha_matrix(layer), _post(layer, s.in_type)
    out = np.empty(tuple(s.out_shape), dtype=object)
    for r, c, patch in _windows(s.x, layer, s.out_shape, s.hw):
        out[r, c] = _outputs(s, patch.reshape(-1), planes, alpha, post)
    return out


__all__ = ["alq_conv2d", "alq_dense"]
