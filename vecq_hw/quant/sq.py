"""SQ: stochastic quantisation (Dong et al., "Learning Accurate Low-Bit Deep Neural Networks
with Stochastic Quantization", BMVC 2017) over any registered weight quantiser.

Training forward (``__call__``), every call: the base quantiser Q quantises the whole weight
(straight-through); per output channel i the relative error e_i = ||W_i - Q_i||_1 / ||W_i||_1;
``n_fp = round((1 - ratio)·n_out)`` channels, sampled *without replacement with probability
proportional to e_i* (successive draws, ``torch.multinomial``), keep their full-precision
weights; the rest use Q (STE). Channels that quantise badly thus stay float more often.
(The paper draws the *quantised* channels with probability ∝ 1/e_i; we follow the issue's
rule above, which has the same intent.) ``ratio`` steps 50 % -> 75 % -> 87.5 % -> 100 % over
training stages (:mod:`vecq_hw.train.sq_schedule`), each stage continuing from the previous.

Export (``quantize``/``quantize_torch``, what ``integer_weights`` reads) is always the base
quantiser on the whole tensor: the deployed model is fully quantised (r = 100 %), whatever
``ratio`` a stage left. Codes, levels and unit are the base's.

Config: ``{method: sq, base: vecq | ul2q | esb | bwn | twn | ..., bits, per_channel, ratio,
seed}``; the base gets ``bits`` and ``per_channel`` and its config defaults otherwise.
"""

from __future__ import annotations

import numpy as np
import torch

from vecq_hw.errors import VecQError
from vecq_hw.quant.base import WeightQuantizer
from vecq_hw.quant.registry import quantizer_class, register_quantizer

#: the published schedule of the quantisation ratio
SQ_STAGES = (0.5, 0.75, 0.875, 1.0)


def channel_errors(w: torch.Tensor, wq: torch.Tensor) -> torch.Tensor:
    """e_i = ||W_i - Q_i||_1 / ||W_i||_1 per output channel (axis 0), float64 on the CPU; an
    all-zero channel has error 0."""
    w2 = w.detach().reshape(w.shape[0], -1).double().cpu()
    q2 = wq.detach().reshape(w.shape[0], -1).double().cpu()
    norm = w2.abs().sum(1)
    return torch.where(norm > 0, (w2 - q2).abs().sum(1) / torch.where(norm > 0, norm, 1.0), 0.0)


def sample_full_precision(errors: torch.Tensor, n_fp: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``n_fp`` channels drawn without replacement, each draw with probability ∝
    e_i among those left (uniform when every error is 0)."""
    if n_fp <= 0:
        return torch.zeros(0, dtype=torch.long)
    p = errors.double()
    if not bool((p > 0).any()):
        p = torch.ones_like(p)
    # a zero-error channel can still be drawn once the positive ones run out (tiny weight)
    p = p + (p.max() * 1e-12 if n_fp > int((p > 0).sum()) else 0.0)
    return torch.multinomial(p, n_fp, replacement=False, generator=generator)


@register_quantizer
class SQ(WeightQuantizer):
    """``SQ(bits=2, per_channel=False, base='vecq', ratio=1.0, seed=0)``: see the module."""

    name = "sq"

    def __init__(self, bits: int = 2, per_channel: bool = False, base: str = "vecq", ratio: float = 1.0,
                 seed: int = 0):
        super().__init__(bits, per_channel)
        cls = quantizer_class(base, field="base")
        if cls is SQ:
            raise VecQError("the base of SQ cannot be SQ itself", field="base")
        self.base = cls.name
        self._base = cls.from_config({"bits": self.bits, "per_channel": self.per_channel})
        self.ratio = check_ratio(ratio)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise VecQError(f"expected an integer seed, got {seed!r}", field="seed")
        self.seed = int(seed)
        self._gen = torch.Generator().manual_seed(self.seed)
        #: the full-precision channel indices of the last training call (for inspection/tests)
        self.last_full_precision = torch.zeros(0, dtype=torch.long)

    @property
    def unit(self) -> float:  # type: ignore[override]
        return self._base.unit

    @property
    def base_quantizer(self) -> WeightQuantizer:
        return self._base

    def levels(self) -> np.ndarray:
        return self._base.level_table()

    def _quantize_rows(self, w, ops):
        return self._base._quantize_rows(w, ops)

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        wq = self._base(w)  # every channel quantised, straight-through
        n_out = w.shape[0]
        n_fp = n_out - int(round(self.ratio * n_out))
        if n_fp <= 0:
            self.last_full_precision = torch.zeros(0, dtype=torch.long)
            return wq
        fp = sample_full_precision(channel_errors(w, wq), n_fp, self._gen)
        self.last_full_precision = fp
        keep = torch.zeros(n_out, dtype=torch.bool)
        keep[fp] = True
        keep = keep.to(w.device).reshape((-1,) + (1,) * (w.ndim - 1))
        return torch.where(keep, w, wq)


def check_ratio(ratio) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.integer, np.floating)) \
            or not 0.0 <= float(ratio) <= 1.0:
        raise VecQError(f"expected a quantisation ratio in [0, 1], got {ratio!r}", field="ratio")
    return float(ratio)
