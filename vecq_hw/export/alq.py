"""ALQ layers export in their native form: bit-planes and alpha constants (``alq_dense`` /
``alq_conv2d``, :mod:`vecq_hw.ir.alq`), registered as the ALQ quantiser's weight form.

From the layer's quantiser (``ALQ.bases``): per output channel j its group's sign bases beta_jb
and integer alphas a_jb, with the channel's scale s_j = the quantiser's alpha (times a folded
BatchNorm's gain, as for any layer). What was trained is what is deployed, checked exactly:
sum_b a_jb beta_jb must equal the integer codes the layer's forward uses (``integer_weights``).
Then, per channel, exactly:

* a basis with a_jb = 0 contributes nothing and is not stored (a pruned basis, or an alpha that
  rounded to 0 on the channel's grid);
* the channel's common factor g_j (the gcd of its alphas, signed like the first) moves into the
  scale: s_j g_j * sum_b (a_jb / g_j) beta_jb is the same weight, and a channel with one basis
  then has alpha 1 (no product at all). s_j is rounded to fixed point afterwards, as always.

Depthwise convolutions have no native kind: they export as codes and levels (the 'int' table).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import ir
from ..errors import ExportError
from ..quant.alq import ALQ
from .handlers import register_weight_form
from .values import PendingNative

_NATIVE = {ir.Dense: ir.AlqDense, ir.Conv2D: ir.AlqConv2D}


@dataclass
class PendingAlq(PendingNative):
    """An ALQ layer: its planes (IR layout) and alpha rows are fixed (``tables``), the constants still float."""

    what = "ALQ layer"


def channel_bases(B: np.ndarray, a: np.ndarray, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel its slice of its group's bases, (n_out, fan-in, I), and the alphas
    (n_out, I): one group per channel, or one group for the whole tensor (every channel shares
    its alphas and holds its own slice of the bases, C order)."""
    signs = B.reshape(n_out, -1, B.shape[-1])
    return signs, np.broadcast_to(a, (n_out, a.shape[-1])) if a.shape[0] == 1 else a


def fold_common_factors(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """(alpha rows with the stored bases first, the factor g_j moved into each scale, the basis
    indices kept per channel): zero alphas dropped, each channel divided by the gcd of its
    alphas, signed so that its first alpha is positive."""
    rows = np.zeros(a.shape, dtype=np.int16)
    g = np.ones(a.shape[0], dtype=np.int64)
    kept = []
    for j, row in enumerate(np.asarray(a, dtype=np.int64)):
        idx = [int(i) for i in np.flatnonzero(row)]
        kept.append(idx)
        if idx:
            g[j] = math.gcd(*(int(abs(row[i])) for i in idx)) * (1 if row[idx[0]] > 0 else -1)
            rows[j, :len(idx)] = row[idx] // g[j]
    return rows, g, kept


@register_weight_form(ALQ)
def alq_native(m, to_ir, common: dict) -> PendingAlq | None:
    """The native form of a dense or conv2d layer (None for depthwise: codes and levels)."""
    native = _NATIVE.get(common["kind"])
    if native is None:
        return None
    view, where = common["view"], common["where"]
    n_out = int(m.weight.shape[0])
    B, a = m.weight_quant.bases(m.weight)
    signs, alpha = channel_bases(B, a, n_out)
    codes = np.einsum("oni,oi->on", signs.astype(np.int64), alpha)
    if not np.array_equal(codes, view.codes.reshape(n_out, -1).astype(np.int64)):
        raise ExportError("the ALQ bases and alphas do not give the codes the layer computes with", field=where)
    rows, g, kept = fold_common_factors(alpha)
    if not any(kept):
        raise ExportError("every ALQ basis of the layer is pruned (all weights 0); remove the layer", field=where)
    wshape = tuple(m.weight.shape)
    # torch layout (out, ...) per basis -> IR layout (fan-in dims..., out); then the kept columns
    per_basis = [to_ir(signs[:, :, i].reshape(wshape)) for i in range(signs.shape[-1])]
    stacked = np.stack(per_basis, axis=-1)  # (fan-in dims..., out, I)
    cols = [stacked[..., j, i] for j in range(n_out) for i in kept[j]]
    planes = np.ascontiguousarray(np.stack(cols, axis=-1), dtype=np.int8)
    return PendingAlq(**{**common, "kind": native, "s": common["s"] * g}, tables={"alpha": rows, "planes": planes})


__all__ = ["PendingAlq", "alq_native", "channel_bases", "fold_common_factors"]
