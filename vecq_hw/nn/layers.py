"""VecQ layers: nn.Linear / nn.Conv2d whose forward pass uses quantised weights.

The float weight is the trained parameter (standard state_dict keys ``weight`` and
``bias``); forward quantises it with a straight-through estimator and then runs the
ordinary F.linear / F.conv2d.  ``bits=None`` (or 32, or ``layer.quantize = False``) is
float mode, for pre-training.  ``integer_weights()`` returns the codes and per-channel scales
of exactly the weights forward() uses: (2c + 1) * alpha/2 equals them (bit for bit in
float64; in float32 forward computes (c + 1/2)*alpha in float32, which is that product
rounded once to float32).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from vecq_hw.errors import ExportError, VecQError
from vecq_hw.quant import QuantResult, check_bits, get_quantizer
from vecq_hw.quant.adaptive import check_refresh_every

#: the widest weight code a layer may use (codes are int8)
MAX_LAYER_BITS = 8


class _VecQWeight:
    """Mixin: the quantisation state and helpers shared by the VecQ layers."""

    def _setup_quant(self, bits: int | None, quantizer: str, per_channel: bool, offset: bool,
                     adaptive: bool = False, refresh_every: int = 1) -> None:
        if isinstance(bits, int) and not isinstance(bits, bool) and bits == 32:
            bits = None  # 32 = float, as in recipes
        if bits is not None:
            bits = check_bits(bits, high=MAX_LAYER_BITS)
        self.bits = bits
        self.quantizer = str(quantizer).lower() if isinstance(quantizer, str) else quantizer
        self.per_channel = bool(per_channel)
        self.offset = bool(offset)
        if offset and self.quantizer != "ul2q":
            raise VecQError("offset=True only applies to quantizer='ul2q'", field="offset")
        if not isinstance(adaptive, bool):
            raise VecQError(f"expected true or false, got {adaptive!r}", field="adaptive")
        refresh_every = check_refresh_every(refresh_every)
        if adaptive and self.quantizer != "vecq":
            raise VecQError(f"adaptive=True only applies to quantizer='vecq', got {self.quantizer!r}",
                            field="adaptive")
        if refresh_every != 1 and self.quantizer != "vecq":
            raise VecQError(f"refresh_every only applies to quantizer='vecq', got {self.quantizer!r}",
                            field="refresh_every")
        self.adaptive = adaptive
        self.refresh_every = refresh_every
        self.quantize = bits is not None
        self._wq = None  # (options key, quantiser): one quantiser, kept across forward calls
        self._make_quantizer(bits or 2)  # validates the name even in float mode

    def _quant_key(self, bits: int) -> tuple:
        return (self.quantizer, bits, self.per_channel, self.offset, self.adaptive, self.refresh_every)

    def _make_quantizer(self, bits: int):
        if self.quantizer == "ul2q":
            options = {"offset": self.offset}
        elif self.adaptive or self.refresh_every != 1:
            options = {"adaptive": self.adaptive, "refresh_every": self.refresh_every}
        else:
            options = {}
        return get_quantizer(self.quantizer, bits, self.per_channel, **options)

    @property
    def weight_quantizer(self):
        """The quantiser for the current ``bits``/``quantizer``/``per_channel``/``offset``/
        ``adaptive``/``refresh_every``: one object, kept across calls (so the adaptive step
        cache of ``refresh_every`` works) and rebuilt only when one of those changes."""
        if self.bits is None:
            raise VecQError("layer has bits=None (float mode); set bits to quantise", field="bits")
        key = self._quant_key(check_bits(self.bits, high=MAX_LAYER_BITS))
        cached = getattr(self, "_wq", None)
        if cached is None or cached[0] != key:
            cached = (key, self._make_quantizer(key[1]))
            self._wq = cached
        return cached[1]

    def reset_quant_cache(self) -> None:
        """Forget the adaptive step cache: the next forward searches the step again."""
        cached = getattr(self, "_wq", None)
        if cached is not None and hasattr(cached[1], "reset_cache"):
            cached[1].reset_cache()

    def set_bits(self, bits: int | None) -> None:
        """Switch the weight width: 1..8 quantises, None (or 32) is float mode (keeps bits)."""
        if bits is None or (isinstance(bits, int) and not isinstance(bits, bool) and bits == 32):
            self.quantize = False
            return
        self.bits = check_bits(bits, high=MAX_LAYER_BITS)
        self.quantize = True

    def quantized_weight(self) -> torch.Tensor:
        """The weight forward() uses (quantised with STE, or the float weight)."""
        if not self.quantize:
            return self.weight
        return self.weight_quantizer(self.weight)

    def quant_result(self) -> QuantResult:
        """Codes and scale(s) (torch tensors, weight dtype) of the current weight."""
        if not self.quantize or self.bits is None:
            raise ExportError("layer is in float mode (quantize=False or bits=None): it has no integer weights",
                              field="bits")
        return self.weight_quantizer.quantize_torch(self.weight)

    def integer_weights(self) -> QuantResult:
        """codes (numpy int8, torch weight layout), alpha per output channel (float64,
        broadcast if per-tensor), bits and encoding 'odd': the weight is (2c+1)*alpha/2.

        Raises ExportError in float mode or if the quantiser has a mean offset.
        """
        r = self.quant_result().to_numpy()
        r.require_no_offset()
        return QuantResult(codes=r.codes, alpha=r.alpha_per_channel(self.weight.shape[0]),
                           bits=r.bits, encoding=r.encoding)

    def _quant_repr(self) -> str:
        s = f"bits={self.bits}, quantizer='{self.quantizer}', per_channel={self.per_channel}"
        if self.offset:
            s += ", offset=True"
        if self.adaptive:
            s += f", adaptive=True, refresh_every={self.refresh_every}"
        if self.bits is not None and not self.quantize:
            s += ", quantize=False"
        return s


class VecQLinear(_VecQWeight, nn.Linear):
    """``nn.Linear`` with VecQ/µL2Q weights.

    VecQLinear(in_features, out_features, bias=True, bits=2, quantizer='vecq',
               per_channel=False, offset=False, device=None, dtype=None, adaptive=False,
               refresh_every=1)

    ``adaptive``/``refresh_every``: VecQ with the searched step (issue #6), vecq only.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bits: int | None = 2,
                 quantizer: str = "vecq", per_channel: bool = False, offset: bool = False,
                 device: Any = None, dtype: Any = None, adaptive: bool = False, refresh_every: int = 1):
        nn.Linear.__init__(self, in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._setup_quant(bits, quantizer, per_channel, offset, adaptive, refresh_every)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.quantized_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{nn.Linear.extra_repr(self)}, {self._quant_repr()}"


class VecQConv2d(_VecQWeight, nn.Conv2d):
    """``nn.Conv2d`` (groups=1, zero padding) with VecQ/µL2Q weights.

    VecQConv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
               bits=2, quantizer='vecq', per_channel=False, offset=False, dilation=1,
               groups=1, device=None, dtype=None, adaptive=False, refresh_every=1)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = True, bits: int | None = 2, quantizer: str = "vecq",
                 per_channel: bool = False, offset: bool = False, dilation=1, groups: int = 1,
                 device: Any = None, dtype: Any = None, adaptive: bool = False, refresh_every: int = 1):
        if groups != 1:
            raise VecQError(f"VecQConv2d supports groups=1 only, got groups={groups!r}", field="groups")
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                           dilation=dilation, groups=1, bias=bias, device=device, dtype=dtype)
        self._setup_quant(bits, quantizer, per_channel, offset, adaptive, refresh_every)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{nn.Conv2d.extra_repr(self)}, {self._quant_repr()}"
