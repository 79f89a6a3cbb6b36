"""PQ layers export in their native form: the integer codebook and the index table (``pq_dense`` /
``pq_conv2d``, :mod:`vecq_hw.ir.pq`), registered as the PQ quantiser's weight form.

From the layer's quantiser (``PQ.native``): the integer codebook C_int (K, d), the indices a
(n_out, n_blocks) in PyTorch's block order, and the per-layer scale alpha, which is the layer's
scale s_j (times a folded BatchNorm's gain, as for any layer). What was trained is what is
deployed, checked exactly: C_int[a] must equal the integer codes the layer's forward uses
(``integer_weights``). The tables keep PyTorch's block order; the layer records how its
channels-last fan-in maps onto it (a convolution's (C_in, kh, kw) against (kh, kw, C_in) by the
kind; a dense layer after a flatten of (C, H, W) by ``flatten_channels`` = C).

Depthwise convolutions have no native kind: they export as codes and levels (the 'int' table).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import ir
from ..errors import ExportError
from ..quant.pq import PQ, index_bits
from .handlers import register_weight_form
from .values import PendingNative

_NATIVE = {ir.Dense: ir.PqDense, ir.Conv2D: ir.PqConv2D}


@dataclass
class PendingPq(PendingNative):
    """A PQ layer: its codebook, indices and block order are fixed (``tables``), the constants still float."""

    what = "PQ layer"


def flatten_channels(order: np.ndarray | None, where: str) -> int:
    """c of a channels-last flatten of a (c, h, w) tensor from the exporter's ``order`` (PyTorch's
    flat index of each channels-last position; None: the same order, c = 1)."""
    if order is None or len(order) < 2 or np.array_equal(order, np.arange(len(order))):
        return 1
    n = len(order)
    c = n // int(order[1]) if int(order[1]) else 0  # position 1 is channel 1 of pixel 0: index h*w
    want = np.arange(n).reshape(max(c, 1), -1).T.reshape(-1) if c and n % c == 0 else None
    if want is None or not np.array_equal(order, want):
        raise ExportError("the PQ layer's inputs are not a channels-last flatten of a (C, H, W) tensor", field=where)
    return c


@register_weight_form(PQ)
def pq_native(m, to_ir, common: dict) -> PendingPq | None:
    """The native form of a dense or conv2d layer (None for depthwise: codes and levels)."""
    native = _NATIVE.get(common["kind"])
    if native is None:
        return None
    view, where = common["view"], common["where"]
    C_int, a, _alpha = m.weight_quant.native(m.weight)
    n_out, d = a.shape[0], C_int.shape[1]
    codes = C_int[a].reshape(n_out, -1)
    if not np.array_equal(codes, view.codes.reshape(n_out, -1).astype(np.int64)):
        raise ExportError("the PQ codebook and indices do not give the codes the layer computes with", field=where)
    tables = {"codebook": C_int.astype(np.int16), "indices": np.ascontiguousarray(a.T, dtype=np.uint16),
              "index_bits": index_bits(C_int.shape[0])}
    if native is ir.PqConv2D:
        tables["kernel"] = tuple(int(k) for k in m.weight.shape[2:])
    else:
        tables["flatten_channels"] = flatten_channels(common["inp"].order, where)
    return PendingPq(**{**common, "kind": native}, tables=tables)


__all__ = ["PendingPq", "flatten_channels", "pq_native"]
