"""Weight quantisers: float weights -> k-bit integer codes + scale(s).

``VecQ`` and ``UL2Q`` (µL2Q) put weights on the half-integer grid: code c means
(c + 1/2)*alpha, i.e. the odd integer d = 2c + 1 times alpha/2 (encoding 'odd').
"""

from __future__ import annotations

from vecq_hw.errors import VecQError
from vecq_hw.quant.base import (
    MAX_QUANT_BITS,
    QuantResult,
    WeightQuantizer,
    check_bits,
    code_range,
)
from vecq_hw.quant.adaptive import optimal_steps
from vecq_hw.quant.ul2q import UL2Q, UL2Q_LAMBDAS, ul2q_lambda
from vecq_hw.quant.vecq import VECQ_LAMBDAS, VecQ, vecq_lambda

QUANTIZERS = {"vecq": VecQ, "ul2q": UL2Q}


def get_quantizer(name: str, bits: int = 2, per_channel: bool = False, **options) -> WeightQuantizer:
    """A quantiser by name ('vecq' or 'ul2q'); options go to its constructor
    (ul2q: offset; vecq: adaptive, refresh_every)."""
    cls = QUANTIZERS.get(str(name).lower()) if isinstance(name, str) else None
    if cls is None:
        raise VecQError(f"expected one of {sorted(QUANTIZERS)}, got {name!r}", field="quantizer")
    try:
        return cls(bits, per_channel, **options)
    except TypeError as exc:
        raise VecQError(f"bad option for quantizer {name!r}: {exc}", field="quantizer") from None


def vecq_quantize(w, bits: int = 2, per_channel: bool = False, adaptive: bool = False) -> QuantResult:
    """numpy/float64 VecQ quantisation of ``w`` (``adaptive=True``: searched step, issue #6)."""
    return VecQ(bits, per_channel, adaptive=adaptive).quantize(w)


def ul2q_quantize(w, bits: int = 2, per_channel: bool = False, offset: bool = True) -> QuantResult:
    """numpy/float64 µL2Q quantisation of ``w``."""
    return UL2Q(bits, per_channel, offset).quantize(w)


__all__ = [
    "MAX_QUANT_BITS",
    "QUANTIZERS",
    "QuantResult",
    "UL2Q",
    "UL2Q_LAMBDAS",
    "VECQ_LAMBDAS",
    "VecQ",
    "WeightQuantizer",
    "check_bits",
    "code_range",
    "get_quantizer",
    "optimal_steps",
    "ul2q_lambda",
    "ul2q_quantize",
    "vecq_lambda",
    "vecq_quantize",
]
