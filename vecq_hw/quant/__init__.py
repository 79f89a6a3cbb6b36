"""Weight quantisers: float weights -> k-bit integer codes + scale(s) + a levels table.

A quantiser is an object (``VecQ(bits=2, adaptive=True)``) that declares what its codes stand
for once (``levels()`` and ``unit``: w = levels[c - cmin] * unit * alpha), serialises itself
(``get_config()`` -> ``{method, **options}``) and is registered by method name
(:data:`QUANTIZERS`, :func:`register_quantizer`, :func:`quantizer_from_config`).
``VecQ`` and ``UL2Q`` (µL2Q) put weights on the half-integer grid: code c means
(c + 1/2)*alpha, the odd table d = 2c + 1 with unit 1/2.
"""

from __future__ import annotations

from vecq_hw.errors import VecQError
from vecq_hw.quant.base import (
    MAX_QUANT_BITS,
    HalfIntegerGrid,
    QuantResult,
    WeightQuantizer,
    check_bits,
    check_bool,
    check_levels,
    code_range,
)
from vecq_hw.quant.adaptive import optimal_steps
from vecq_hw.quant.ul2q import UL2Q, UL2Q_LAMBDAS, ul2q_lambda
from vecq_hw.quant.registry import (PROCEDURES, QUANTIZERS, procedure_class, quantizer_class,
                                    quantizer_from_config, register_procedure, register_quantizer)
from vecq_hw.quant.vecq import VECQ_LAMBDAS, VecQ, vecq_lambda
# issue 14: ESB, ALQ, BWN/TWN and SQ register themselves on import
from vecq_hw.quant.esb import ESB
from vecq_hw.quant.alq import ALQ
from vecq_hw.quant.binary import BWN, TWN
from vecq_hw.quant.sq import SQ
# issue 24: product quantisation (And the Bit Goes Down)
from vecq_hw.quant.pq import PQ
# issue 25: SRQ with DropBits (learned widths: vecq_hw.train.srq_schedule)
from vecq_hw.quant.srq import SRQ


def get_quantizer(name: str, bits: int = 2, per_channel: bool = False, **options) -> WeightQuantizer:
    """A quantiser by registered name, with the *constructor's* defaults (``get_quantizer('ul2q')``
    has µL2Q's published mean offset; a config ``{method: ul2q}`` has none). Errors name the
    field 'quantizer'."""
    cls = quantizer_class(name, field="quantizer")
    allowed = list(cls.options())[2:]
    bad = sorted(set(options) - set(allowed))
    if bad:
        raise VecQError(f"unknown option {bad[0]!r} for method {cls.name!r}; expected some of "
                        f"{', '.join(allowed) or '(none)'}", field="quantizer")
    return cls(bits, per_channel, **options)


def vecq_quantize(w, bits: int = 2, per_channel: bool = False, adaptive: bool = False) -> QuantResult:
    """numpy/float64 VecQ quantisation of ``w`` (``adaptive=True``: searched step, issue #6)."""
    return VecQ(bits, per_channel, adaptive=adaptive).quantize(w)


def ul2q_quantize(w, bits: int = 2, per_channel: bool = False, offset: bool = True) -> QuantResult:
    """numpy/float64 µL2Q quantisation of ``w``."""
    return UL2Q(bits, per_channel, offset).quantize(w)


__all__ = [
    "ALQ",
    "BWN",
    "ESB",
    "MAX_QUANT_BITS",
    "PQ",
    "PROCEDURES",
    "SQ",
    "SRQ",
    "TWN",
    "QUANTIZERS",
    "HalfIntegerGrid",
    "QuantResult",
    "UL2Q",
    "UL2Q_LAMBDAS",
    "VECQ_LAMBDAS",
    "VecQ",
    "WeightQuantizer",
    "check_bits",
    "check_bool",
    "check_levels",
    "code_range",
    "get_quantizer",
    "optimal_steps",
    "procedure_class",
    "quantizer_class",
    "quantizer_from_config",
    "register_procedure",
    "register_quantizer",
    "ul2q_lambda",
    "ul2q_quantize",
    "vecq_lambda",
    "vecq_quantize",
]
