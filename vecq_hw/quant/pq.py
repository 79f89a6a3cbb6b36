"""PQ: product quantisation with byte-aligned codebooks (Stock et al., "And the Bit Goes Down:
Revisiting the Quantization of Neural Networks", ICLR 2020), implemented from the paper.

A layer's weight is cut into sub-vectors of d consecutive entries of one output channel's
flattened filter in PyTorch's order ((C_in, kh, kw) for a convolution, the input features for a
linear layer): d = 9 is one 3x3 kernel slice, d = 18 two input channels. Every sub-vector is
replaced by the index of one of K codewords (a per-layer codebook of K x d numbers):

    W[j, b*d + e] = C[a[j, b], e]          a: (n_out, n_blocks) indices, C: (K, d)

K = ``codewords`` (``codewords_linear`` for linear layers), cut to the largest power of two <=
(number of sub-vectors) / 4 (:func:`codewords_for`). What is deployed: the codebook as ``bits``-bit
integers under one scale per layer, ``C ~ C_int * alpha`` with ``alpha = max|C| / (2^(bits-1) - 1)``
(the paper stores fp16 codewords; ours are fixed point), so the quantised weight is
``C_int[a] * alpha``: integer codes of the 'int' table under a per-layer scale (what
``quantize`` returns and the forward uses), and in its native form (the exporter's
``vecq_hw.export.pq``) the codebook and index tables of the kinds ``pq_dense`` / ``pq_conv2d``.

The codebook and indices are the quantiser's *state* (:meth:`PQ.set_state`), set by its training
procedure (:mod:`vecq_hw.train.pq_schedule`): activation-weighted EM per layer (:func:`em`:
assignment minimises (w - c)^T G (w - c) with G the d x d Gram matrix of the layer's sampled
input sub-vectors, centroid update = cluster mean), then fine-tuning of the codewords. A PQ
without state quantises by plain k-means on the weights (G = I, the weight-reconstruction
baseline the paper compares with), recomputed on every call.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vecq_hw.errors import VecQError
from vecq_hw.ir.levels import named_levels
from vecq_hw.quant.base import QuantResult, WeightQuantizer, check_bits, check_bool, code_dtype
from vecq_hw.quant.registry import register_quantizer

#: sub-vectors whose distances are computed at once (bounds the (n, K) score matrix)
ASSIGN_CHUNK = 1 << 15


def codewords_for(n_sub: int, codewords: int) -> int:
    """K: ``codewords`` cut to the largest power of two <= n_sub / 4 (at least 1)."""
    cap = 1 << max(0, (int(n_sub) // 4).bit_length() - 1) if n_sub >= 4 else 1
    return max(1, min(int(codewords), cap))


def index_bits(k: int) -> int:
    """Bits of one index into K codewords (at least 1)."""
    return max(1, math.ceil(math.log2(k)))


def subvectors(w: torch.Tensor, d: int) -> torch.Tensor:
    """(n_out * n_blocks, d): row j * n_blocks + b is entries [b*d, (b+1)*d) of output j's
    flattened filter (PyTorch order)."""
    return w.reshape(w.shape[0], -1).reshape(-1, d)


def assign(W: torch.Tensor, C: torch.Tensor, G: torch.Tensor | None = None) -> torch.Tensor:
    """argmin_k (w - c_k)^T G (w - c_k) for every row w of W (G None: the identity), in chunks.
    The (w^T G w) term is the same for every k and dropped; ties go to the lower k."""
    GC = C if G is None else C @ G  # (K, d); G is symmetric
    norms = (GC * C).sum(1)  # c_k^T G c_k
    out = torch.empty(W.shape[0], dtype=torch.long, device=W.device)
    for s in range(0, W.shape[0], ASSIGN_CHUNK):
        scores = norms - 2.0 * (W[s:s + ASSIGN_CHUNK] @ GC.T)
        out[s:s + ASSIGN_CHUNK] = scores.argmin(1)
    return out


def update(W: torch.Tensor, a: torch.Tensor, C: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Cluster means (the minimiser of sum (w - c)^T G (w - c) over c for any positive definite
    G); an empty cluster takes the most populated one's mean nudged apart (the paper's split):
    both copies move by +-1e-3 of that mean's scale along alternating signs. Returns (C, empty)."""
    K, d = C.shape
    counts = torch.bincount(a, minlength=K)
    sums = torch.zeros_like(C).index_add_(0, a, W)
    new = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None].to(W.dtype), C)
    empty = torch.nonzero(counts == 0).flatten()
    for k in empty.tolist():
        big = int(torch.argmax(counts))
        nudge = 1e-3 * (new[big].abs().mean() + 1e-12) * torch.where(torch.arange(d) % 2 == 0, 1.0, -1.0).to(W)
        new[k], new[big] = new[big] + nudge, new[big] - nudge
        counts[k] = counts[big] // 2
        counts[big] -= counts[k]
    return new, int(empty.numel())


def em(W: torch.Tensor, K: int, iterations: int, generator: torch.Generator,
       G: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(codebook (K, d), assignments (n,)) of the rows of W: K distinct rows drawn with
    ``generator`` as the start, then ``iterations`` rounds of assignment (G-weighted) and
    centroid update, stopping early once the assignments repeat."""
    first = torch.randperm(W.shape[0], generator=generator)[:K].to(W.device)
    C = W[first].clone()
    a = None
    for _ in range(iterations):
        new = assign(W, C, G)
        if a is not None and torch.equal(new, a):
            break
        a = new
        C, _ = update(W, a, C)
    return C, assign(W, C, G)


def integer_codebook(C: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(C_int, alpha): C rounded onto ``bits``-bit integers in [-(2^(bits-1) - 1), 2^(bits-1) - 1]
    under alpha = max|C| / (2^(bits-1) - 1) (0-d; all-zero C: alpha 0, C_int 0)."""
    top = (1 << (bits - 1)) - 1
    alpha = C.abs().max() / top
    safe = torch.where(alpha > 0, alpha, torch.ones_like(alpha))
    return torch.clamp(torch.round(C / safe), -top, top), alpha


def _positive_int(v, field, lo=1, hi=1 << 16) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
        raise VecQError(f"expected an integer in {lo}..{hi}, got {v!r}", field=field)
    return int(v)


@register_quantizer
class PQ(WeightQuantizer):
    """``PQ(bits=8, per_channel=False, block=9, codewords=256, block_pointwise=4, block_linear=4,
    codewords_linear=256, iterations=100, seed=0)``.

    ``block``: d of k x k convolutions (k > 1); ``block_pointwise``: of 1 x 1 convolutions;
    ``block_linear``: of linear layers; ``codewords`` / ``codewords_linear``: K before the cut
    (:func:`codewords_for`); ``bits``: the deployed codeword width (one scale per layer:
    ``per_channel`` must be false); ``iterations``: EM rounds; ``seed``: the EM start. A
    block must divide the layer's fan-in (refused in one line otherwise).
    """

    name = "pq"
    unit = 1.0

    def __init__(self, bits: int = 8, per_channel: bool = False, block: int = 9, codewords: int = 256,
                 block_pointwise: int = 4, block_linear: int = 4, codewords_linear: int = 256,
                 iterations: int = 100, seed: int = 0):
        super().__init__(check_bits(bits, low=2), per_channel)
        if check_bool(per_channel, "per_channel"):
            raise VecQError("PQ has one scale per layer (its codebook's); expected per_channel: false",
                            field="per_channel")
        self.block = _positive_int(block, "block")
        self.block_pointwise = _positive_int(block_pointwise, "block_pointwise")
        self.block_linear = _positive_int(block_linear, "block_linear")
        self.codewords = _positive_int(codewords, "codewords")
        self.codewords_linear = _positive_int(codewords_linear, "codewords_linear")
        self.iterations = _positive_int(iterations, "iterations", 1, 100000)
        self.seed = _positive_int(seed, "seed", 0, 2**32 - 1)
        self.codebook: torch.Tensor | None = None  # float64 (K, d)
        self.assignments: torch.Tensor | None = None  # long (n_out * n_blocks,)

    def levels(self) -> np.ndarray:
        return named_levels("int", self.bits)

    # --- the layer's geometry -----------------------------------------------------------------
    def block_for(self, shape) -> int:
        """d for a weight of this shape ((out, in) linear, (out, in, kh, kw) convolution), checked."""
        shape = tuple(int(s) for s in shape)
        if len(shape) == 2:
            d, which = self.block_linear, "block_linear"
        elif len(shape) == 4:
            d, which = (self.block_pointwise, "block_pointwise") if shape[2:] == (1, 1) else (self.block, "block")
        else:
            raise VecQError(f"expected a linear or conv2d weight, got shape {shape}", field="weight")
        fan_in = math.prod(shape[1:])
        if fan_in % d:
            raise VecQError(f"{which}={d} does not tile a filter of {fan_in} weights (shape {shape}); "
                            f"choose a divisor of {fan_in}", field=which)
        return d

    def codewords_for(self, shape) -> int:
        """K for a weight of this shape."""
        n_sub = math.prod(shape) // self.block_for(shape)
        return codewords_for(n_sub, self.codewords_linear if len(shape) == 2 else self.codewords)

    # --- state --------------------------------------------------------------------------------
    def set_state(self, codebook: torch.Tensor | None, assignments: torch.Tensor | None) -> None:
        """The codebook (K, d) and the sub-vectors' indices (n_out * n_blocks,), or None for both."""
        if (codebook is None) != (assignments is None):
            raise VecQError("PQ state needs both the codebook and the assignments, or neither", field="state")
        if codebook is not None:
            codebook = torch.as_tensor(codebook).detach().to(torch.float64)
            assignments = torch.as_tensor(assignments).detach().to(torch.long).reshape(-1)
            if codebook.ndim != 2 or (assignments.numel() and (int(assignments.min()) < 0
                                                               or int(assignments.max()) >= codebook.shape[0])):
                raise VecQError(f"expected a (K, d) codebook and indices in 0..K-1, got codebook "
                                f"{tuple(codebook.shape)}", field="state")
        self.codebook, self.assignments = codebook, assignments

    def state_for(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(codebook, assignments) for weight ``w``: the state, checked against w's shape, or a
        fresh k-means of w's sub-vectors (G = I) when there is none."""
        d, K = self.block_for(w.shape), self.codewords_for(w.shape)
        n_sub = w.numel() // d
        if self.codebook is None:
            gen = torch.Generator().manual_seed(self.seed)
            return em(subvectors(w.detach().double().cpu(), d), K, self.iterations, gen)
        if self.codebook.shape != (K, d) or self.assignments.numel() != n_sub:
            raise VecQError(f"PQ state (codebook {tuple(self.codebook.shape)}, {self.assignments.numel()} "
                            f"indices) does not fit a weight of shape {tuple(w.shape)} (expected codebook "
                            f"({K}, {d}), {n_sub} indices)", field="state")
        return self.codebook, self.assignments

    def native(self, w) -> tuple[np.ndarray, np.ndarray, float]:
        """The deployed form of weight ``w``: the integer codebook (K, d) int64, the indices
        (n_out, n_blocks) int64 and the scale alpha: w_hat[j, b*d + e] = C_int[a[j, b], e] * alpha."""
        t = torch.as_tensor(w).detach()
        C, a = self.state_for(t)
        C_int, alpha = integer_codebook(C.double().cpu(), self.bits)
        return (C_int.numpy().astype(np.int64), a.cpu().numpy().astype(np.int64).reshape(t.shape[0], -1),
                float(alpha))

    # --- the two array paths -------------------------------------------------------------------
    def quantize_torch(self, w: torch.Tensor) -> QuantResult:
        """Codes C_int[a] (the weight's shape, 'int' table) and the per-layer alpha, in w's dtype."""
        if not w.is_floating_point():
            raise VecQError(f"expected a floating-point weight tensor, got {w.dtype}", field="weight")
        with torch.no_grad():
            C, a = self.state_for(w)
            C_int, alpha = integer_codebook(C.to(w.device, torch.float64), self.bits)
            codes = C_int[a.to(w.device)].reshape(w.shape).to(torch.int8)
            return QuantResult(codes=codes, alpha=alpha.to(w.dtype), bits=self.bits, levels=self.level_table(),
                               unit=self.unit)

    def quantize(self, w) -> QuantResult:
        """numpy path: the same codes and alpha (float64)."""
        r = self.quantize_torch(torch.as_tensor(np.asarray(w, dtype=np.float64)))
        return QuantResult(codes=r.codes.numpy().astype(code_dtype(self.bits)), alpha=r.alpha.numpy(),
                           bits=self.bits, levels=r.levels, unit=r.unit)

    def _quantize_rows(self, w2d, ops):  # pragma: no cover - quantize/quantize_torch are overridden
        raise NotImplementedError


__all__ = ["PQ", "assign", "codewords_for", "em", "index_bits", "integer_codebook", "subvectors", "update"]
