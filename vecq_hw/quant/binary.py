"""BWN and TWN: the binary and ternary base quantisers of stochastic quantisation (SQ, Dong et
al., BMVC 2017), as published:

* BWN (Rastegari et al., XNOR-Net): w_hat = alpha·sign(w), alpha = mean|W_i| per filter
  (per tensor with ``per_channel=False``). One bit; levels {-1, +1} in code order (code -1 is
  -1, code 0 is +1); sign(0) is +1.
* TWN (Li & Liu, ternary weight networks): threshold Delta = 0.7·mean|W| (per filter with
  ``per_channel=True``, the SQ paper's form), w_hat = alpha·t with t = sign(w) where
  |w| > Delta, else 0; alpha = mean of |w| over |w| > Delta (0 when no weight passes). Two
  bits; levels {-1, -1, 0, +1} in code order (code -2 is a second -1, never produced).

Both tables are add/subtract/skip products in hardware (``ir.product_kind`` 'addsub').
"""

from __future__ import annotations

import numpy as np

from vecq_hw.errors import VecQError
from vecq_hw.quant.base import WeightQuantizer
from vecq_hw.quant.registry import register_quantizer


def _where(cond, a, b):
    import torch

    if isinstance(cond, torch.Tensor):
        return torch.where(cond, a, b)
    return np.where(cond, a, b)


@register_quantizer
class BWN(WeightQuantizer):
    """Binary weights: ``BWN(bits=1, per_channel=True)``; config ``{method: bwn, per_channel}``."""

    name = "bwn"
    unit = 1.0

    def __init__(self, bits: int = 1, per_channel: bool = True):
        if bits != 1:
            raise VecQError(f"BWN has 1-bit codes, got bits={bits!r}", field="bits")
        super().__init__(bits, per_channel)

    def levels(self) -> np.ndarray:
        return np.array([-1, 1], dtype=np.int64)

    def _quantize_rows(self, w, ops):
        alpha = ops.mean(abs(w))
        codes = _where(w >= 0, w * 0, w * 0 - 1)
        return codes, alpha, None


@register_quantizer
class TWN(WeightQuantizer):
    """Ternary weights: ``TWN(bits=2, per_channel=True, threshold=0.7)``; config
    ``{method: twn, per_channel, threshold}``."""

    name = "twn"
    unit = 1.0

    def __init__(self, bits: int = 2, per_channel: bool = True, threshold: float = 0.7):
        if bits != 2:
            raise VecQError(f"TWN has 2-bit codes (levels -1, 0, +1), got bits={bits!r}", field="bits")
        super().__init__(bits, per_channel)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold < 10:
            raise VecQError(f"expected a number in [0, 10), got {threshold!r}", field="threshold")
        self.threshold = float(threshold)

    def levels(self) -> np.ndarray:
        return np.array([-1, -1, 0, 1], dtype=np.int64)

    def _quantize_rows(self, w, ops):
        a = abs(w)
        delta = self.threshold * ops.mean(a)
        keep = a > delta
        zero = w * 0
        kept = _where(keep, a, zero)
        count = ops.sum(_where(keep, zero + 1, zero))
        alpha = ops.sum(kept) / (count + (count == 0))  # 0 when nothing passes the threshold
        codes = _where(keep, _where(w > 0, zero + 1, zero - 1), zero)
        return codes, alpha, None
