"""µL2Q weight quantiser (Gong et al., "µL2Q: An Ultra-Low Loss Quantization Method
for DNN Compression", IJCNN 2019), as in the authors' reference code.

With beta the mean of the weights, sigma their population standard deviation
(ddof = 0, about the mean) and lambda_k the table below (the reference's full-precision
values; 4-decimal: 1.5950, 0.9953, 0.5872, 0.3359, 0.1894, 0.1057, 0.0571, 0.0305),

    alpha = lambda_k * sigma
    c     = clip(round((w - beta) / (alpha + eps) - 1/2), -2**(k-1), 2**(k-1) - 1)
    w_hat = (c + 1/2) * alpha + beta

``offset=True`` (the default here) is the published method.  The offset makes the
deployed weight ``d*alpha/2 + beta``, not a pure ``codes * scale``, which the integer
model cannot hold exactly; ``offset=False`` drops beta (the weights are not centred,
sigma is unchanged), and is what the VecQ layers use unless asked otherwise.
``QuantResult.require_no_offset()`` raises a clear error if an offset is present.
"""

from __future__ import annotations

from vecq_hw.quant.base import MAX_QUANT_BITS, HalfIntegerGrid, WeightQuantizer, check_bits, check_bool
from vecq_hw.quant.registry import register_quantizer

#: lambda_k for k = 1..8 (the reference's table, full precision).
UL2Q_LAMBDAS = (
    1.5950161625215948,
    0.99529008541347519,
    0.5872211503939504,
    0.3358904980253396,
    0.18944224088629152,
    0.10570877041455067,
    0.057082736023857356,
    0.030482181036739827,
)

#: the reference's 1e-7 guard on alpha
EPS = 1e-7


def ul2q_lambda(bits: int) -> float:
    """lambda_k of µL2Q for k = 1..16."""
    bits = check_bits(bits, high=MAX_QUANT_BITS)
    return UL2Q_LAMBDAS[bits - 1] if bits <= 8 else 6.0 / (2**bits - 1)


@register_quantizer
class UL2Q(HalfIntegerGrid, WeightQuantizer):
    """µL2Q quantiser: ``UL2Q(bits=2, per_channel=False, offset=True)``.

    Half-integer grid (levels 2c + 1, unit 1/2). Config: ``{method: ul2q, bits, per_channel,
    offset}``; built from a config (recipes, layer shorthand), ``offset`` defaults to false,
    the form the hardware can hold.
    """

    name = "ul2q"
    CONFIG_DEFAULTS = {"offset": False}

    def __init__(self, bits: int = 2, per_channel: bool = False, offset: bool = True):
        super().__init__(bits, per_channel)
        self.offset = check_bool(offset, "offset")
        self.lam = ul2q_lambda(self.bits)

    def _quantize_rows(self, w, ops):
        beta = ops.mean(w) if self.offset else None
        alpha = self.lam * ops.std(w)
        centred = w - beta if self.offset else w
        codes = ops.round_clip(centred / (alpha + EPS) - 0.5, self.cmin, self.cmax)
        return codes, alpha, beta
