"""SRQ activation quantiser: :class:`FixedQuant`'s fixed-point grid with SRQ's estimator,
DropBits and (optionally) a learned width (the formulas: :mod:`vecq_hw.quant.srq_grid`).

``SRQActivation("ap_ufixed<8,3,AP_RND,AP_SAT>", min_bits=2, learn_bits=True)`` quantises to
ap_(u)fixed<j, I> with the type's own integer bits I, rounding and overflow, j the deployed
width (8 here until a narrower one is learned): dropping bits keeps the range and halves the
LSB per bit, so the grids nest. Forward: exactly the ap_fixed conversion at the width (as
FixedQuant); backward: SRQ's multi-class straight-through estimator (a smooth gradient through
the rounding and the saturation, eq. (3) of :mod:`vecq_hw.quant.srq_grid`), not FixedQuant's
box. ``fixed_type`` is the deployed type, which the exporter reads (its handler is
FixedQuant's, registered for this class in :mod:`vecq_hw.export.srq`).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import nn

from vecq_hw.errors import VecQError
from vecq_hw.fixed import FixedType
from vecq_hw.fixed_torch import quantize_tensor
from vecq_hw.nn.activation import FixedQuant
from vecq_hw.quant.alq import _check_num
from vecq_hw.quant.base import check_bool
from vecq_hw.quant.srq_grid import BitWidths, clamp_tau, int_range, srq_quantize

#: the widest activation whose width may be learned (a learned width is 1..8)
MAX_LEARNED_WIDTH = 8


class _ActGrid:
    """The fixed-point grid of ``q.type_at(width)`` (codes: mantissas) for srq_quantize."""

    def __init__(self, q: "SRQActivation", x: torch.Tensor):
        self.q, self.top = q, q.max_type.width
        self.alpha = torch.tensor(2.0 ** -q.max_type.frac, dtype=x.dtype, device=x.device)

    def crange(self, width):
        if self.q.max_type.signed:
            return int_range(width)
        if isinstance(width, torch.Tensor):
            return torch.zeros_like(width, dtype=torch.float64), torch.pow(2.0, width.double()) - 1
        return 0, 2 ** width - 1

    def codes(self, x, width):
        t = self.q.type_at(width)
        return quantize_tensor(x.detach(), t) * 2.0 ** t.frac


class SRQActivation(FixedQuant):
    """``SRQActivation(fixed_type, *, min_bits=2, drop_rate=0.0, learn_bits=False, tau=1/3,
    window=4, seed=0, init_keep=0.9)``: ``fixed_type`` is the widest type (its width the top
    width); the options are SRQ's (:class:`vecq_hw.quant.SRQ`)."""

    def __init__(self, fixed_type: "str | FixedType", *, min_bits: int = 2, drop_rate: float = 0.0,
                 learn_bits: bool = False, tau: float = 1 / 3, window: int = 4, seed: int = 0,
                 init_keep: float = 0.9):
        nn.Module.__init__(self)
        t = fixed_type if isinstance(fixed_type, FixedType) else FixedType.parse(fixed_type)
        if t.kind != "fixed":
            raise VecQError(f"expected an ap_fixed or ap_ufixed type, got {t}", field="fixed_type")
        learn = check_bool(learn_bits, "learn_bits")
        if learn and t.width > MAX_LEARNED_WIDTH:
            raise VecQError(f"a learned activation width is 1..{MAX_LEARNED_WIDTH}: the widest type may have at "
                            f"most {MAX_LEARNED_WIDTH} bits, got {t}", field="fixed_type")
        self.max_type = t
        self.min_bits = _check_num(min_bits, "min_bits", 1, t.width, integer=True)
        self.window = _check_num(window, "window", 1, 64, integer=True)
        self.seed = _check_num(seed, "seed", 0, 2**62, integer=True)
        self.widths = BitWidths(self.min_bits, t.width, _check_num(drop_rate, "drop_rate", 0.0, 0.95), learn,
                                _check_num(init_keep, "init_keep", 0.01, 0.99))
        self.log_tau = nn.Parameter(torch.tensor(math.log(_check_num(tau, "tau", 0.05, 2.0))))
        #: which DropBits stream this quantiser draws (set per layer by the training procedure)
        self.stream = 0

    def type_at(self, width: int) -> FixedType:
        """The widest type with ``width`` bits: same integer bits and modes."""
        t = self.max_type
        return replace(t, width=int(width), sat_bits=min(t.sat_bits, int(width)))

    @property
    def fixed_type(self) -> FixedType:  # type: ignore[override]
        """The deployed type (what the exporter reads)."""
        return self.type_at(self.widths.deployed())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return srq_quantize(x, _ActGrid(self, x), self.widths, clamp_tau(self.log_tau), self.window,
                            train=self.training, seed=self.seed, stream=self.stream)

    def extra_repr(self) -> str:
        return f"'{self.fixed_type}', top '{self.max_type}'"


__all__ = ["MAX_LEARNED_WIDTH", "SRQActivation"]
