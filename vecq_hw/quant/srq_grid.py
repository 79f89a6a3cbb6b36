"""SRQ's estimator and DropBits' widths: the pieces the SRQ weight quantiser (:mod:`.srq`) and
the SRQ activation quantiser (:class:`vecq_hw.nn.SRQActivation`) share.

Lee, Yun, Hwang, Yang, *Semi-Relaxed Quantization with DropBits: Training Low-Bit Neural
Networks via Bit-wise Regularization* (arXiv:1911.12990). No code of the paper is available;
this is built from the paper's text, and the equation numbers below are the paper's as far as
they could be reconstructed (marked "(?)" where unsure). Everything is in *grid units*: the
input x is divided by the grid step Δ (u = x / Δ), so the grid is the integer codes
c in [c_lo, c_hi] and the quantised value is Δ·c.

**The categorical distribution over the grid** (SRQ eq. (1)-(2), from Relaxed Quantization,
Louizos et al. 2019, eq. (3)): x is perturbed by logistic noise of scale σ = τ·Δ, and code c
is picked when the noisy input falls into its bin [c - 1/2, c + 1/2) (the outer bins open to
±∞, so the probabilities sum to 1)::

    π_c(u) = F((c + 1/2 - u) / τ) - F((c - 1/2 - u) / τ),   F = the logistic sigmoid   (1)

**The multi-class straight-through estimator** (SRQ eq. (4)-(5) (?)): the forward pass takes
the hard one-hot r = onehot(argmax_c π_c), i.e. the nearest grid point (argmax of a unimodal,
symmetric bin distribution; an exact tie is broken by the deployed rounding mode), so the
forward value is exactly the deployed quantisation, with no sampling noise; the backward pass
replaces r by π (∂r/∂π := I), so the gradient is that of the expected value
E[ĉ](u) = Σ_c c·π_c(u), which telescopes to::

    E[ĉ](u) = c_lo + Σ_{b = c_lo + 1/2, ..., c_hi - 1/2} F((u - b) / τ)                  (2)
    D_u  := ∂E[ĉ]/∂u = Σ_b F'((u - b)/τ) / τ,   D_τ := ∂E[ĉ]/∂τ = -Σ_b F'((u - b)/τ)·(u - b)/τ²

With x̂ = Δ·ĉ (ĉ the hard code) the chain rule through u = x/Δ gives the gradients this
module's :class:`SRQRound` returns (g = ∂L/∂x̂)::

    ∂L/∂x = g·D_u,   ∂L/∂Δ = g·(ĉ - u·D_u),   ∂L/∂τ = g·Δ·D_τ                         (3)

(the hard ĉ in ∂L/∂Δ is the one-hot's own dependence on the grid values g_c = Δ·c.) As in
Relaxed Quantization, the sum runs over a *local grid*: the 2·``window`` bin boundaries
nearest u (boundaries further away contribute less than F'(window/τ)/τ each); ``window=None``
sums the whole grid. τ (the noise relative to the grid step) is learned per layer, clamped to
[0.05, 2]; Δ is learned for weights (per channel or per tensor) and fixed (the fixed-point
type's LSB) for activations.

**DropBits** (SRQ §3.2 (?)): instead of dropping neurons, training drops *bits*: a grid of k
bits loses its least significant level (every other grid point) with probability p, the next
level with probability p², and so on (drop probabilities decaying exponentially toward the
coarse levels, down to ``low`` bits). The grids are nested (int codes at k bits under step Δ
contain the (k-1)-bit codes under step 2Δ; an ap_fixed<k, I> grid contains ap_fixed<k-1, I>),
so dropping levels keeps the range and coarsens the step: the grid of width j is the codes
[c_lo(j), c_hi(j)] under step Δ_top·2^(top - j). We keep the levels *nested*: level j is kept,
given level j - 1 is, with probability q_j, so P(width >= j) = Π_{i = low+1..j} q_i and the
width of an element is the largest level kept (the paper masks grid points; whether its masks
nest this way is not stated in what could be reconstructed; nesting keeps every drawn grid
one the back ends can build). Fixed DropBits: q_j = 1 - p^(k - j + 1). Masks are drawn per
element (as dropout draws per neuron) from a counter-based generator seeded by
(seed, stream, step): the schedule is a pure function of the seed, the quantiser's stream and
its step count (a buffer, so ``--resume`` continues it exactly).

**Learned widths** (SRQ §3.3 (?)): the q_j are learnable, q_j = sigmoid(θ_j). The forward pass
draws each element's width from this distribution; the backward pass is again a multi-class
straight-through estimator, over widths: ∂L/∂P(width = j) := Σ_e g_e·x̂_j,e (x̂_j the input
quantised at width j), so θ gets the gradient of the expected output Σ_j P(j)·x̂_j
(:class:`WidthMix`). The paper regularises the expected number of bits; we regularise the
expected *estimated LUTs* of the HLS design (:mod:`vecq_hw.train.srq_schedule`). The width
deployed is the largest j whose levels low+1..j all have q > 1/2 (each bit kept if more likely
kept than dropped).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vecq_hw.errors import VecQError

#: τ is clamped to this range (grid steps)
TAU_RANGE = (0.05, 2.0)
_MASK64 = (1 << 64) - 1


# ----------------------------------------------------------------------------- the estimator

def bin_probs(u: torch.Tensor, lo: int, hi: int, tau: float) -> torch.Tensor:
    """π_c(u) of eq. (1) for every code c in [lo, hi] (last axis), the outer bins open."""
    c = torch.arange(lo, hi + 1, dtype=u.dtype, device=u.device)
    z = u.unsqueeze(-1)
    upper = torch.sigmoid((c + 0.5 - z) / tau)
    lower = torch.sigmoid((c - 0.5 - z) / tau)
    upper[..., -1] = 1.0
    lower[..., 0] = 0.0
    return upper - lower


def mcste_terms(u: torch.Tensor, lo, hi, tau: torch.Tensor, window: int | None):
    """(D_u, D_τ) of eq. (2): the derivatives of E[ĉ](u) over the bin boundaries b = n + 1/2,
    lo <= n < hi (``lo``/``hi`` scalars or tensors like u), the ``window`` nearest on each side
    of u, or all of them (None)."""
    lo_t = torch.as_tensor(lo, dtype=u.dtype, device=u.device)
    hi_t = torch.as_tensor(hi, dtype=u.dtype, device=u.device)
    if window is None:
        offsets = range(int(lo_t.min()), int(hi_t.max()))
        base = torch.zeros_like(u)
    else:
        offsets = range(-window, window)
        base = torch.floor(u)
    d_u, d_tau = torch.zeros_like(u), torch.zeros_like(u)
    for off in offsets:
        n = base + off
        z = (u - n - 0.5) / tau
        s = torch.sigmoid(z)
        f = torch.where((n >= lo_t) & (n < hi_t), s * (1.0 - s), torch.zeros_like(s))
        d_u = d_u + f / tau
        d_tau = d_tau - f * z / tau
    return d_u, d_tau


class SRQRound(torch.autograd.Function):
    """x̂ = Δ·ĉ with Δ = alpha·mult: forward the hard code ``code`` (computed by the caller: the
    deployed rounding), backward eq. (3). ``alpha`` (broadcastable, may require grad), ``mult``
    (a tensor of powers of two, per element under DropBits), ``tau`` (0-d), the code range
    ``lo``/``hi`` (scalars or per-element tensors)."""

    @staticmethod
    def forward(ctx, x, alpha, mult, tau, code, lo, hi, window):  # noqa: D102
        delta = alpha.detach() * mult
        ctx.save_for_backward(x.detach() / delta, code, delta, mult, tau.detach())
        ctx.lo, ctx.hi, ctx.window, ctx.alpha_shape, ctx.tau_shape = lo, hi, window, alpha.shape, tau.shape
        return code * delta

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        u, code, delta, mult, tau = ctx.saved_tensors
        d_u, d_tau = mcste_terms(u, ctx.lo, ctx.hi, tau, ctx.window)
        g_x = g * d_u
        g_alpha = (g * (code - u * d_u) * mult).sum_to_size(ctx.alpha_shape)
        g_tau = (g * delta * d_tau).sum_to_size(ctx.tau_shape)
        return g_x, g_alpha, None, g_tau, None, None, None, None


class WidthMix(torch.autograd.Function):
    """Forward: ``out`` (the input quantised at each element's drawn width); backward: ``out``
    gets g, and the width probabilities ``probs`` get Σ_e g_e·stack[j, e] (the multi-class
    straight-through estimator over widths; ``stack[j]``: the input quantised at width j)."""

    @staticmethod
    def forward(ctx, out, probs, stack):  # noqa: D102
        ctx.save_for_backward(stack)
        return out.clone()

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        (stack,) = ctx.saved_tensors
        return g, (stack * g.unsqueeze(0)).flatten(1).sum(1), None


def clamp_tau(log_tau: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.exp(log_tau), *TAU_RANGE)


# ----------------------------------------------------------------------------- DropBits

def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def counter_seed(*parts: int) -> int:
    """A 63-bit generator seed from integers (seed, stream, step): distinct counters give
    unrelated streams (splitmix64 over the parts)."""
    h = 0
    for p in parts:
        h = _splitmix64(h ^ (int(p) & _MASK64))
    return h & ((1 << 63) - 1)


def fixed_keep_probs(low: int, top: int, drop_rate: float, high: int) -> torch.Tensor:
    """q_j for j = low+1..high under fixed DropBits from width ``top``: 1 - p^(top - j + 1) up
    to ``top``, 0 above it (float64)."""
    q = [1.0 - drop_rate ** (top - j + 1) if j <= top else 0.0 for j in range(low + 1, high + 1)]
    return torch.tensor(q, dtype=torch.float64)


def ge_probs(keep: torch.Tensor) -> torch.Tensor:
    """P(width >= j) for j = low..high from the keep probabilities q_(low+1..high)."""
    return torch.cat([torch.ones(1, dtype=keep.dtype, device=keep.device), torch.cumprod(keep, 0)])


def width_probs(keep: torch.Tensor) -> torch.Tensor:
    """P(width = j) for j = low..high (differentiable in ``keep``)."""
    ge = ge_probs(keep)
    return ge - torch.cat([ge[1:], torch.zeros(1, dtype=ge.dtype, device=ge.device)])


def draw_widths(ge: torch.Tensor, low: int, shape, seed: int, stream: int, step: int) -> torch.Tensor:
    """Each element's width (int64, CPU): low + #{j > low : u < P(width >= j)} with one uniform
    u per element from the generator seeded by (seed, stream, step)."""
    gen = torch.Generator().manual_seed(counter_seed(seed, stream, step))
    u = torch.rand(tuple(shape), generator=gen, dtype=torch.float64)
    w = torch.full(tuple(shape), low, dtype=torch.int64)
    for p in ge[1:].detach().double().cpu():
        w += (u < p).to(torch.int64)
    return w


def decided_width(keep: torch.Tensor, low: int) -> int:
    """The largest j whose levels low+1..j all have q_j > 1/2."""
    k = low
    for q in keep.detach().cpu().tolist():
        if q <= 0.5:
            break
        k += 1
    return k


class BitWidths(nn.Module):
    """One quantiser's widths low..high: fixed (the deployed ``width`` buffer, DropBits ladder
    below it at ``drop_rate``) or learned (``keep_logits`` θ, q = sigmoid(θ)) until frozen.

    Buffers (in the state_dict, so checkpoints and model.pt carry them): ``width`` (the
    deployed width once frozen), ``frozen``, ``step`` (draws so far: the DropBits counter)."""

    def __init__(self, low: int, high: int, drop_rate: float, learn: bool, init_keep: float):
        super().__init__()
        if not 1 <= low <= high:
            raise VecQError(f"expected 1 <= min_bits <= bits, got min_bits {low} and bits {high}", field="min_bits")
        self.low, self.high, self.drop_rate, self.learn = int(low), int(high), float(drop_rate), bool(learn)
        if self.learn:
            logit = math.log(init_keep / (1.0 - init_keep))
            self.keep_logits = nn.Parameter(torch.full((self.high - self.low,), logit))
        self.register_buffer("width", torch.tensor(self.high, dtype=torch.int64))
        self.register_buffer("frozen", torch.tensor(not self.learn))
        self.register_buffer("step", torch.tensor(0, dtype=torch.int64))
        #: False: no draws in training either (a training procedure's float phase)
        self.enabled = True

    @property
    def searching(self) -> bool:
        return self.learn and not bool(self.frozen)

    def keep_probs(self) -> torch.Tensor:
        """q_(low+1..high): learned while searching, else the DropBits ladder below the width."""
        if self.searching:
            return torch.sigmoid(self.keep_logits)
        return fixed_keep_probs(self.low, int(self.width), self.drop_rate, self.high)

    def deployed(self) -> int:
        """The width forward() uses outside training and export deploys."""
        return decided_width(self.keep_probs(), self.low) if self.searching else int(self.width)

    def draws(self) -> bool:
        """Whether a training forward draws widths (learning, or DropBits with room below)."""
        return self.enabled and (self.searching or (self.drop_rate > 0 and int(self.width) > self.low))

    def draw(self, shape, seed: int, stream: int) -> torch.Tensor:
        """Each element's width for this training step; counts the step."""
        w = draw_widths(ge_probs(self.keep_probs().detach()), self.low, shape, seed, stream, int(self.step))
        self.step += 1
        return w

    def freeze(self, width: int) -> None:
        if not self.low <= width <= self.high:
            raise VecQError(f"expected a width in {self.low}..{self.high}, got {width}", field="width")
        self.width.fill_(int(width))
        self.frozen.fill_(True)


def srq_quantize(x: torch.Tensor, grid, widths: BitWidths, tau: torch.Tensor, window: int | None, *,
                 train: bool, seed: int = 0, stream: int = 0) -> torch.Tensor:
    """x quantised on ``grid`` by SRQ (forward exact, backward eq. (3)); in training with
    DropBits or learned widths, at each element's drawn width (and WidthMix for θ).

    ``grid`` provides ``alpha`` (the top width's step Δ_top, broadcastable), ``top`` (its width),
    ``crange(width)`` -> (lo, hi) as tensors or ints and ``codes(x, width)`` -> the deployed
    codes of x at that width (float, no grad)."""
    if not (train and widths.draws()):
        k = widths.deployed()
        lo, hi = grid.crange(k)
        mult = torch.tensor(2.0 ** (grid.top - k), dtype=x.dtype, device=x.device)
        return SRQRound.apply(x, grid.alpha, mult, tau, grid.codes(x, k), lo, hi, window)
    choices = range(widths.low, widths.high + 1)
    with torch.no_grad():
        codes = torch.stack([grid.codes(x, j) for j in choices])
    drawn = widths.draw(x.shape, seed, stream).to(x.device)
    code = codes.gather(0, (drawn - widths.low).unsqueeze(0))[0]
    lo, hi = grid.crange(drawn)
    mult = torch.pow(2.0, (grid.top - drawn).to(x.dtype))
    out = SRQRound.apply(x, grid.alpha, mult, tau, code, lo, hi, window)
    if not widths.searching:
        return out
    with torch.no_grad():
        stack = torch.stack([c * (grid.alpha.detach() * 2.0 ** (grid.top - j)) for c, j in zip(codes, choices)])
    return WidthMix.apply(out, width_probs(widths.keep_probs()).to(x.dtype), stack)


def int_range(width):
    """(lo, hi) of signed codes at ``width`` (an int or an int64 tensor of widths)."""
    if isinstance(width, torch.Tensor):
        half = torch.pow(2.0, (width - 1).double())
        return -half, half - 1
    return -(2 ** (width - 1)), 2 ** (width - 1) - 1


__all__ = ["BitWidths", "SRQRound", "TAU_RANGE", "WidthMix", "bin_probs", "clamp_tau", "counter_seed",
           "decided_width", "draw_widths", "fixed_keep_probs", "ge_probs", "int_range", "mcste_terms",
           "srq_quantize", "width_probs"]
