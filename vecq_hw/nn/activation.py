"""Activation quantiser: the exact ap_fixed conversion as an nn.Module."""

from __future__ import annotations

import torch
import torch.nn as nn

from vecq_hw.fixed import FixedType
from vecq_hw.fixed_torch import fixed_quantize


class FixedQuant(nn.Module):
    """Quantise activations to one ap_fixed/ap_ufixed type, exactly as ap_types converts
    (rounding, then overflow); straight-through gradient (see ``fixed_quantize``).

    FixedQuant("ap_ufixed<8,0,AP_RND,AP_SAT>") or FixedQuant(FixedType(...)).
    """

    def __init__(self, fixed_type: "str | FixedType"):
        super().__init__()
        self.fixed_type = fixed_type if isinstance(fixed_type, FixedType) else FixedType.parse(fixed_type)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fixed_quantize(x, self.fixed_type)

    def extra_repr(self) -> str:
        return f"'{self.fixed_type}'"
