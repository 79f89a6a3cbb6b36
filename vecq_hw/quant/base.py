"""Shared pieces of the weight quantisers.

Every quantiser maps a float weight tensor onto the *half-integer grid*: an integer
code ``c`` in ``[-2**(k-1), 2**(k-1) - 1]`` stands for the value ``(c + 1/2) * alpha``
(plus an optional mean offset ``beta`` for µL2Q).  Equivalently the odd integer
``d = 2c + 1`` times ``alpha / 2``: that is the ``encoding = 'odd'`` of the integer model.

A quantiser has two paths that implement the same formula:

* ``quantize(w)``: numpy, always float64 (deterministic; for export and analysis);
* ``quantize_torch(w)``: torch, in ``w``'s dtype, without autograd (the layers use it,
  so the codes a layer exports are the very codes its forward pass used);

and ``__call__(w)`` is the training path: the quantised weights with a straight-through
estimator (forward: the quantised tensor, bit for bit; backward: the identity to ``w``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vecq_hw.errors import ExportError, VecQError

#: The largest k the quantiser math supports (codes are int16 above 8 bits).
MAX_QUANT_BITS = 16


def check_bits(bits: Any, *, low: int = 1, high: int = MAX_QUANT_BITS, field: str = "bits") -> int:
    """Return ``bits`` as an int, or raise a one-line VecQError."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not low <= bits <= high:
        raise VecQError(f"expected an integer number of bits in {low}..{high}, got {bits!r}", field=field)
    return int(bits)


def code_range(bits: int) -> tuple[int, int]:
    """(lowest, highest) k-bit signed code."""
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def code_dtype(bits: int) -> np.dtype:
    """int8 codes up to 8 bits, int16 above."""
    return np.dtype(np.int8) if bits <= 8 else np.dtype(np.int16)


@dataclass(frozen=True, eq=False)
class QuantResult:
    """Integer codes plus scale(s) of one quantised weight tensor.

    ``codes`` has the weight's shape.  ``alpha`` (and ``beta`` when the quantiser has a
    mean offset) is a 0-d array for a per-tensor scale or has shape ``(out,)`` for a
    per-output-channel scale (axis 0 of a torch weight).  The arrays are either all
    numpy (``quantize``) or all torch (``quantize_torch``).

    value = (codes + 1/2) * alpha [+ beta]  ==  (2*codes + 1) * alpha/2 [+ beta]
    """

    codes: Any
    alpha: Any
    bits: int
    beta: Any = None
    encoding: str = "odd"

    @property
    def per_channel(self) -> bool:
        return self.alpha.ndim == 1

    @property
    def has_offset(self) -> bool:
        return self.beta is not None

    def _per_row(self, s: Any) -> Any:
        """Reshape a scale so it broadcasts against ``codes`` along axis 0."""
        if s.ndim == 0:
            return s
        return s.reshape((-1,) + (1,) * (self.codes.ndim - 1))

    def value(self) -> Any:
        """The dequantised weights, in alpha's dtype (float64 for the numpy path)."""
        if isinstance(self.codes, torch.Tensor):
            q = self.codes.to(self.alpha.dtype) + 0.5
        else:
            q = self.codes.astype(self.alpha.dtype) + 0.5
        w = q * self._per_row(self.alpha)
        if self.beta is not None:
            w = w + self._per_row(self.beta)
        return w

    def odd(self) -> Any:
        """The odd integer multipliers d = 2c + 1 (int16 numpy / torch)."""
        if isinstance(self.codes, torch.Tensor):
            return 2 * self.codes.to(torch.int16) + 1
        return 2 * self.codes.astype(np.int16) + 1

    def alpha_per_channel(self, n_out: int | None = None) -> np.ndarray:
        """alpha as float64 numpy of shape (out,), broadcast if per-tensor."""
        n = self.codes.shape[0] if n_out is None else n_out
        a = _to_numpy(self.alpha).astype(np.float64)
        return np.broadcast_to(a, (n,)).copy() if a.ndim == 0 else a

    def require_no_offset(self) -> None:
        """Raise unless the weights are exactly ``codes * scale`` (no mean offset)."""
        if self.beta is not None:
            raise ExportError(
                "weights carry a µL2Q mean offset beta (w = (c+1/2)*alpha + beta), which is not "
                "a pure codes*scale weight; quantise with offset=False for hardware export",
                field="offset",
            )

    def to_numpy(self) -> "QuantResult":
        """A numpy copy (alpha and beta in float64)."""
        return QuantResult(
            codes=_to_numpy(self.codes).astype(code_dtype(self.bits)),
            alpha=_to_numpy(self.alpha).astype(np.float64),
            bits=self.bits,
            beta=None if self.beta is None else _to_numpy(self.beta).astype(np.float64),
            encoding=self.encoding,
        )


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


class _StraightThrough(torch.autograd.Function):
    """Forward: the quantiser's output, exactly; backward: identity gradient to w.

    (``w + (w_hat - w).detach()`` would add a float rounding to the forward value.)
    """

    @staticmethod
    def forward(ctx, w, quantizer):  # noqa: D102
        return quantizer.quantize_torch(w).value()

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        return grad, None


class WeightQuantizer:
    """Base class: subclasses set ``name`` and implement ``_quantize_rows``.

    ``_quantize_rows(w2d, ops)`` gets the weights as a 2-D array of shape
    (groups, n): one row for per-tensor, one row per output channel for per-channel;
    ``ops`` is the numpy or torch flavour of the few reductions needed.  It returns
    (codes, alpha, beta): codes as integer-valued floats of shape (groups, n), alpha and
    beta of shape (groups, 1), beta None when there is no mean offset.
    """

    name = "base"

    def __init__(self, bits: int = 2, per_channel: bool = False):
        self.bits = check_bits(bits)
        self.per_channel = bool(per_channel)
        self.cmin, self.cmax = code_range(self.bits)

    # --- the two array paths ----------------------------------------------------------
    def _rows(self, w):
        if w.ndim == 0:
            raise VecQError("cannot quantise a 0-d weight", field="weight")
        if self.per_channel:
            return w.reshape(w.shape[0], -1)
        return w.reshape(1, -1)

    def _finish(self, w, codes, alpha, beta, to_codes):
        codes = to_codes(codes.reshape(w.shape))
        shape = (-1,) if self.per_channel else ()
        alpha = alpha.reshape(shape)
        beta = None if beta is None else beta.reshape(shape)
        return QuantResult(codes=codes, alpha=alpha, bits=self.bits, beta=beta)

    def quantize(self, w: Any) -> QuantResult:
        """numpy path: float64 in, QuantResult of numpy arrays out."""
        w = np.asarray(_to_numpy(w), dtype=np.float64)
        codes, alpha, beta = self._quantize_rows(self._rows(w), _NUMPY)
        return self._finish(w, codes, alpha, beta, lambda c: c.astype(code_dtype(self.bits)))

    def quantize_torch(self, w: torch.Tensor) -> QuantResult:
        """torch path, in w's dtype, no autograd."""
        if not w.is_floating_point():
            raise VecQError(f"expected a floating-point weight tensor, got {w.dtype}", field="weight")
        with torch.no_grad():
            w = w.detach()
            codes, alpha, beta = self._quantize_rows(self._rows(w), _TORCH)
            tdt = torch.int8 if self.bits <= 8 else torch.int16
            return self._finish(w, codes, alpha, beta, lambda c: c.to(tdt))

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        """Quantised weights with the straight-through estimator (for training)."""
        return _StraightThrough.apply(w, self)

    def _quantize_rows(self, w2d, ops):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bits={self.bits}, per_channel={self.per_channel})"


class _NumpyOps:
    @staticmethod
    def mean(x):
        return x.mean(axis=1, keepdims=True)

    @staticmethod
    def std(x):  # population std (ddof = 0), about the row mean
        return x.std(axis=1, keepdims=True)

    @staticmethod
    def sum(x):
        return x.sum(axis=1, keepdims=True)

    @staticmethod
    def round_clip(x, lo, hi):  # round half to even, then clip
        return np.clip(np.round(x), lo, hi)


class _TorchOps:
    @staticmethod
    def mean(x):
        return x.mean(dim=1, keepdim=True)

    @staticmethod
    def std(x):
        return x.std(dim=1, keepdim=True, correction=0)

    @staticmethod
    def sum(x):
        return x.sum(dim=1, keepdim=True)

    @staticmethod
    def round_clip(x, lo, hi):
        return torch.clamp(torch.round(x), lo, hi)


_NUMPY = _NumpyOps()
_TORCH = _TorchOps()
