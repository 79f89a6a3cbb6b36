"""SRQ weight quantiser: Semi-Relaxed Quantization with DropBits (Lee et al., arXiv:1911.12990)
on the integer levels table the toolkit already deploys ('int': code c stands for c·Δ).

The formulas (the categorical distribution over the grid, the multi-class straight-through
estimator, DropBits, learned widths) and their equation numbers are in :mod:`.srq_grid`.
The grid at width j is the j-bit int codes [-2^(j-1), 2^(j-1) - 1] under the step
Δ_j = α·2^(bits - j) (α: the learned step of the top width ``bits``, per output channel when
``per_channel``): the grids nest, so DropBits only coarsens the step. Deployed at width k the
layer is exactly ``levels = int table of k bits``, ``unit = 1``, alpha = Δ_k per channel.

Options (``quant: {method: srq, ...}``): ``bits`` the top width (the deployed one unless
widths are learned), ``per_channel``, ``min_bits`` the lowest width DropBits or the width
search may reach, ``drop_rate`` p of DropBits (0: off), ``learn_bits`` (learn the width from
keep probabilities, :mod:`vecq_hw.train.srq_schedule`), ``tau`` the initial noise scale τ
(grid steps), ``window`` the local grid of the estimator (boundaries each side), ``seed``
(DropBits' draws; each quantiser of a model also has its own ``stream``), ``init_keep`` the
initial keep probability of each learned level.

Learned parameters (module parameters of the quantiser, which is an ``nn.Module`` the layer
holds, so the state_dict, checkpoints and ``--resume`` carry them): ``log_alpha`` (shaped by
the layer through :meth:`bind`, initialised at the first quantised use by a least-squares
search for the deployed width), ``log_tau``, and ``widths.keep_logits`` when learning widths.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from vecq_hw.errors import VecQError
from vecq_hw.ir.levels import named_levels
from vecq_hw.quant.alq import _check_num
from vecq_hw.quant.base import QuantResult, WeightQuantizer, check_bool
from vecq_hw.quant.registry import register_quantizer
from vecq_hw.quant.srq_grid import BitWidths, clamp_tau, int_range, srq_quantize

#: candidates of the least-squares step search (fractions of max|w| / 2^(k-1))
_STEP_CANDIDATES = 64


def least_squares_step(w2d: torch.Tensor, bits: int) -> torch.Tensor:
    """Per row, the step Δ of ``bits``-bit int codes minimising ||w - Δ·clip(round(w/Δ))||²
    among Δ = s·max|w|/2^(bits-1), s = 1/64, 2/64, ..., 1 (float64, shape (rows, 1))."""
    w = w2d.detach().double()
    top = w.abs().amax(1, keepdim=True).clamp_min(1e-12) / 2 ** (bits - 1)
    lo, hi = int_range(bits)
    best, best_err = top.clone(), torch.full_like(top, math.inf)
    for i in range(1, _STEP_CANDIDATES + 1):
        step = top * (i / _STEP_CANDIDATES)
        err = ((w - step * torch.clamp(torch.round(w / step), lo, hi)) ** 2).sum(1, keepdim=True)
        better = err < best_err
        best, best_err = torch.where(better, step, best), torch.where(better, err, best_err)
    return best


class _WeightGrid:
    """The int grid of one weight tensor (rows: channels or the whole tensor) for srq_quantize."""

    def __init__(self, q: "SRQ", w: torch.Tensor):
        self.top, self.shape = q.bits, w.shape
        alpha = torch.exp(q.log_alpha).to(w.dtype)
        self.alpha = alpha.reshape((-1,) + (1,) * (w.ndim - 1)) if q.per_channel else alpha

    def crange(self, width):
        return int_range(width)

    def codes(self, w, width):
        lo, hi = int_range(width)
        return torch.clamp(torch.round(w.detach() / (self.alpha.detach() * 2.0 ** (self.top - width))), lo, hi)


@register_quantizer
class SRQ(nn.Module, WeightQuantizer):
    """``SRQ(bits=4, per_channel=True, min_bits=2, drop_rate=0.0, learn_bits=False, tau=1/3,
    window=4, seed=0, init_keep=0.9)``: see the module."""

    name = "srq"
    unit = 1.0

    def __init__(self, bits: int = 4, per_channel: bool = True, min_bits: int = 2, drop_rate: float = 0.0,
                 learn_bits: bool = False, tau: float = 1 / 3, window: int = 4, seed: int = 0,
                 init_keep: float = 0.9):
        nn.Module.__init__(self)
        WeightQuantizer.__init__(self, bits, per_channel)
        self.min_bits = _check_num(min_bits, "min_bits", 1, self.bits, integer=True)
        self.drop_rate = _check_num(drop_rate, "drop_rate", 0.0, 0.95)
        self.learn_bits = check_bool(learn_bits, "learn_bits")
        self.tau = _check_num(tau, "tau", 0.05, 2.0)
        self.window = _check_num(window, "window", 1, 64, integer=True)
        self.seed = _check_num(seed, "seed", 0, 2**62, integer=True)
        self.init_keep = _check_num(init_keep, "init_keep", 0.01, 0.99)
        self.widths = BitWidths(self.min_bits, self.bits, self.drop_rate, self.learn_bits, self.init_keep)
        self.log_tau = nn.Parameter(torch.tensor(math.log(self.tau)))
        self.log_alpha: nn.Parameter | None = None
        self.register_buffer("ready", torch.tensor(False))
        #: which DropBits stream this quantiser draws (set per layer by the training procedure)
        self.stream = 0

    # -- the layer's side ---------------------------------------------------------------------
    def bind(self, weight: torch.Tensor) -> None:
        """Shape the learned step for the layer's weight (one per output channel, or one)."""
        shape = (weight.shape[0],) if self.per_channel else ()
        self.log_alpha = nn.Parameter(torch.zeros(shape, dtype=weight.dtype, device=weight.device))

    def deployed_bits(self) -> int:
        return self.widths.deployed()

    def _prepare(self, w: torch.Tensor) -> None:
        if self.log_alpha is None:
            raise VecQError("SRQ learns its step per layer: give it to a layer (VecQLinear / VecQConv2d "
                            "weight_quant=...), which binds it to the weight's shape", field="weight_quant")
        if not bool(self.ready):
            self.init_step(w)

    @torch.no_grad()
    def init_step(self, w: torch.Tensor, bits: int | None = None) -> None:
        """Set α so that the step at ``bits`` (default: the deployed width) is the least-squares
        one for the current weights (at the first quantised use, and when a width is frozen)."""
        k = self.deployed_bits() if bits is None else int(bits)
        step = least_squares_step(self._rows(w.detach()), k).reshape(-1) * 2.0 ** (k - self.bits)  # the top step
        self.log_alpha.copy_(torch.log(step).reshape(self.log_alpha.shape).to(self.log_alpha.dtype))
        self.ready.fill_(True)

    # -- WeightQuantizer ----------------------------------------------------------------------
    def levels(self) -> np.ndarray:
        return named_levels("int", self.deployed_bits())

    def level_table(self) -> np.ndarray:
        return self.levels()

    def _quantize_rows(self, w2d, ops):
        k = self.deployed_bits()
        alpha = torch.exp(self.log_alpha.detach()) * 2.0 ** (self.bits - k)
        if isinstance(w2d, np.ndarray):
            alpha = alpha.double().cpu().numpy()
        else:
            alpha = alpha.to(w2d.dtype)
        alpha = alpha.reshape(-1, 1) if self.per_channel else alpha.reshape(1, 1)
        lo, hi = int_range(k)
        return ops.round_clip(w2d / alpha, lo, hi), alpha, None

    def _finish(self, w, codes, alpha, beta, to_codes):
        k = self.deployed_bits()
        shape = (-1,) if self.per_channel else ()
        return QuantResult(codes=to_codes(codes.reshape(w.shape)), alpha=alpha.reshape(shape), bits=k,
                           levels=named_levels("int", k), unit=1.0)

    def quantize(self, w):
        self._prepare(torch.as_tensor(np.asarray(w), dtype=torch.float32))
        return super().quantize(w)

    def quantize_torch(self, w):
        self._prepare(w)
        return super().quantize_torch(w)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """``q(w)``, the training path (nn.Module's call; a module is never called otherwise): SRQ's estimator at the deployed width (eval, or training without
        draws) or at each weight's drawn width (DropBits, width search)."""
        self._prepare(w)
        grid = _WeightGrid(self, w)
        return srq_quantize(w, grid, self.widths, clamp_tau(self.log_tau), self.window, train=self.training,
                            seed=self.seed, stream=self.stream)

    def extra_repr(self) -> str:
        cfg = self.get_config()
        cfg.pop("method")
        return ", ".join(f"{k}={v!r}" for k, v in cfg.items()) + f", deployed_bits={self.deployed_bits()}"


__all__ = ["SRQ", "least_squares_step"]
