"""VecQ weight quantiser (Gong et al., "VecQ: Minimal Loss DNN Model Compression With
Vectorized Weight Quantization", IEEE TC 2020), as in the authors' reference code.

Two steps, per tensor (as published) or per output channel:

1. orientation: with sigma the *population* standard deviation of the weights
   (ddof = 0, taken about their mean, as ``K.std``) and lambda_k the table below,

       c = round(clip(w / (sigma*lambda_k + eps) - 1/2, -2**(k-1), 2**(k-1) - 1))
       q = c + 1/2                                   (the half-integer grid)

   The weights themselves are *not* centred: VecQ has no mean offset, only sigma
   looks at the mean.  (round and clip commute here since the bounds are integers;
   rounding is half to even, like ``K.round``/``np.round``/``torch.round``.)
2. modulus: the least-squares scale for that orientation,

       alpha = <w, q> / (<q, q> + eps),   w_hat = alpha * q = (2c + 1) * alpha/2.

``eps`` = 1e-7 is the reference's ``K.epsilon()``; it also keeps an all-zero weight
finite (codes 0, alpha 0).  lambda_k = 6 / (2**k - 1) above 8 bits.

``adaptive=True`` (off by default: the default is the published method) replaces the table
step ``sigma*lambda_k`` by the step that minimises the vector loss on the actual weights,
searched per tensor or per output channel (:mod:`vecq_hw.quant.adaptive`); codes, alpha and
the straight-through estimator are unchanged.  ``refresh_every = N`` re-runs that search on
every N-th torch call only and re-derives the codes from the cached step in between.
"""

from __future__ import annotations

from vecq_hw.quant.adaptive import adaptive_rows, check_refresh_every
from vecq_hw.quant.base import MAX_QUANT_BITS, HalfIntegerGrid, WeightQuantizer, check_bits, check_bool
from vecq_hw.quant.registry import register_quantizer

#: lambda_k for k = 1..8 (the reference's table).
VECQ_LAMBDAS = (1.0000, 0.9957, 0.5860, 0.3352, 0.1881, 0.1041, 0.0569, 0.0308)

#: the reference's K.epsilon()
EPS = 1e-7


def vecq_lambda(bits: int) -> float:
    """lambda_k of VecQ for k = 1..16."""
    bits = check_bits(bits, high=MAX_QUANT_BITS)
    return VECQ_LAMBDAS[bits - 1] if bits <= 8 else 6.0 / (2**bits - 1)


@register_quantizer
class VecQ(HalfIntegerGrid, WeightQuantizer):
    """VecQ quantiser: ``VecQ(bits=2, per_channel=False, adaptive=False, refresh_every=1)``.

    Half-integer grid (levels 2c + 1, unit 1/2), no mean offset; ``adaptive``/
    ``refresh_every``: see the module docstring. Config: ``{method: vecq, bits, per_channel,
    adaptive, refresh_every}``.
    """

    name = "vecq"

    def __init__(self, bits: int = 2, per_channel: bool = False, adaptive: bool = False,
                 refresh_every: int = 1):
        super().__init__(bits, per_channel)
        self.lam = vecq_lambda(self.bits)
        self.adaptive = check_bool(adaptive, "adaptive")
        self.refresh_every = check_refresh_every(refresh_every)
        self._step_cache = None  # adaptive torch path: (tensor key, cached step)
        self._calls = 0

    def reset_cache(self) -> None:
        """Forget the cached adaptive step: the next torch call searches again."""
        self._step_cache = None
        self._calls = 0

    def _quantize_rows(self, w, ops):
        if self.adaptive:
            return adaptive_rows(self, w, ops, EPS)
        sigma = ops.std(w)
        codes = ops.round_clip(w / (sigma * self.lam + EPS) - 0.5, self.cmin, self.cmax)
        q = codes + 0.5
        alpha = ops.sum(w * q) / (ops.sum(q * q) + EPS)
        return codes, alpha, None
