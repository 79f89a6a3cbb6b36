"""PyTorch layers for VecQ networks: quantised-weight Linear/Conv2d and the
fixed-point activation quantiser."""

from __future__ import annotations

from vecq_hw.nn.activation import FixedQuant
from vecq_hw.nn.layers import (DEFAULT_WEIGHT_QUANT, MAX_LAYER_BITS, VecQConv2d, VecQLinear,
                               as_weight_quantizer, set_quantize)
from vecq_hw.nn.srq import SRQActivation

__all__ = ["DEFAULT_WEIGHT_QUANT", "MAX_LAYER_BITS", "FixedQuant", "SRQActivation", "VecQConv2d", "VecQLinear",
           "as_weight_quantizer", "set_quantize"]
