"""VecQ layers: nn.Linear / nn.Conv2d whose forward pass uses quantised weights.

The float weight is the trained parameter (standard state_dict keys ``weight`` and
``bias``); forward quantises it with the layer's quantiser object (straight-through
estimator) and then runs the ordinary F.linear / F.conv2d:

    VecQLinear(784, 256, weight_quant=VecQ(bits=2, adaptive=True))
    VecQConv2d(32, 32, 3, padding=1, groups=32, weight_quant={"method": "vecq", "bits": 4})
    VecQLinear(784, 256, weight_quant=None)          # a float layer
    VecQLinear(784, 256)                             # DEFAULT_WEIGHT_QUANT: 2-bit VecQ

``weight_quant`` is a quantiser object, a ``{method, ...options}`` config (any registered
method, :func:`vecq_hw.quant.quantizer_from_config`) or None. ``layer.quantize`` is the switch
of a QAT schedule: False runs the layer in float mode and keeps its quantiser, True (the
default when it has one) quantises again; :func:`set_quantize` flips every layer of a model.
``integer_weights()`` returns the codes, per-channel scales and the quantiser's levels table of
exactly the weights forward() uses: ``levels[c - cmin] * unit * alpha`` equals them (bit for
bit in float64; in float32 forward computes that product in float32, which is the float64
product rounded once for the half-integer grid).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from vecq_hw.errors import ExportError, VecQError
from vecq_hw.quant import QuantResult, WeightQuantizer, quantizer_from_config

#: the widest weight code a layer may use (codes are int8)
MAX_LAYER_BITS = 8
#: the quantiser of a layer built without ``weight_quant``: 2-bit VecQ, one scale per tensor
DEFAULT_WEIGHT_QUANT = MappingProxyType({"method": "vecq", "bits": 2})


def as_weight_quantizer(weight_quant: Any) -> WeightQuantizer:
    """A quantiser object from ``weight_quant`` (an object, kept as is, or a ``{method, ...}``
    config, built fresh); its bits must fit a layer (1..MAX_LAYER_BITS)."""
    if isinstance(weight_quant, WeightQuantizer):
        if weight_quant.bits > MAX_LAYER_BITS:
            raise VecQError(f"expected an integer number of bits in 1..{MAX_LAYER_BITS}, got "
                            f"{weight_quant.bits}", field="weight_quant.bits")
        return weight_quant
    if isinstance(weight_quant, (dict, MappingProxyType)):
        return quantizer_from_config(dict(weight_quant), max_bits=MAX_LAYER_BITS, prefix="weight_quant.")
    raise VecQError(f"expected a quantiser object (e.g. VecQ(bits=2)), a {{method: ..., ...}} "
                    f"config or None, got {weight_quant!r}", field="weight_quant")


class _VecQWeight:
    """Mixin: the layer's weight quantiser (``weight_quant``, None for a float layer) and its
    switch (``quantize``), shared by the VecQ layers."""

    def _setup_quant(self, weight_quant) -> None:
        self._wq: WeightQuantizer | None = None if weight_quant is None else as_weight_quantizer(weight_quant)
        self._quantize = self._wq is not None
        bind = getattr(self._wq, "bind", None)
        if bind is not None:  # a quantiser with learned per-channel parameters (SRQ) takes their shape
            bind(self.weight)

    @property
    def weight_quant(self) -> WeightQuantizer | None:
        """The layer's quantiser (None: a float layer), whether or not ``quantize`` is on. Assign
        a quantiser object or a ``{method, ...}`` config to quantise with it (switches
        ``quantize`` on), None to make the layer a float layer."""
        return self._wq

    @weight_quant.setter
    def weight_quant(self, value) -> None:
        self._setup_quant(value)

    @property
    def quantize(self) -> bool:
        """Whether forward() quantises (False: float mode, the quantiser kept)."""
        return self._quantize

    @quantize.setter
    def quantize(self, on: bool) -> None:
        if not isinstance(on, bool):
            raise VecQError(f"expected true or false, got {on!r}", field="quantize")
        if on and self._wq is None:
            raise VecQError("layer has no quantiser (weight_quant=None); assign layer.weight_quant "
                            "to quantise it", field="weight_quant")
        self._quantize = on

    def reset_quant_cache(self) -> None:
        """Forget the adaptive step cache: the next forward searches the step again."""
        if self._wq is not None and hasattr(self._wq, "reset_cache"):
            self._wq.reset_cache()

    # --- weights ----------------------------------------------------------------------------
    def quantized_weight(self) -> torch.Tensor:
        """The weight forward() uses (quantised with STE, or the float weight)."""
        if not self._quantize:
            return self.weight
        return self._wq(self.weight)

    def quant_result(self) -> QuantResult:
        """Codes and scale(s) (torch tensors, weight dtype) of the current weight."""
        if not self._quantize:
            raise ExportError("layer is in float mode (weight_quant=None or quantize=False): it has "
                              "no integer weights", field="weight_quant")
        return self._wq.quantize_torch(self.weight)

    def integer_weights(self) -> QuantResult:
        """codes (numpy int8, torch weight layout (out, in[, kh, kw])), alpha per output
        channel (float64 (out,), broadcast if per-tensor), bits, the quantiser's ``levels``
        (int64, 2**bits) and ``unit``: the weight is levels[c - cmin] * unit * alpha.

        Raises ExportError in float mode or if the quantiser has a mean offset.
        """
        r = self.quant_result().to_numpy()
        r.require_no_offset()
        return QuantResult(codes=r.codes, alpha=r.alpha_per_channel(self.weight.shape[0]),
                           bits=r.bits, levels=r.levels, unit=r.unit)

    def _quant_repr(self) -> str:
        off = self._wq is not None and not self._quantize
        shown = type(self._wq).__name__ if isinstance(self._wq, nn.Module) else repr(self._wq)  # a module: listed below
        return f"weight_quant={shown}" + (", quantize=False" if off else "")


def set_quantize(model: nn.Module, on: bool) -> int:
    """Switch every VecQ layer of ``model`` that has a quantiser to quantised (``on``) or float
    mode (the switch of a QAT schedule; float layers stay float); returns how many."""
    n = 0
    for m in model.modules():
        if isinstance(m, _VecQWeight) and m.weight_quant is not None:
            m.quantize = bool(on)
            n += 1
    return n


class VecQLinear(_VecQWeight, nn.Linear):
    """``nn.Linear`` with quantised weights.

    VecQLinear(in_features, out_features, bias=True, *, weight_quant=DEFAULT_WEIGHT_QUANT,
               device=None, dtype=None)

    ``weight_quant``: a quantiser object, a ``{method, ...options}`` config, or None (a float
    layer).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 weight_quant: Any = DEFAULT_WEIGHT_QUANT, device: Any = None, dtype: Any = None):
        nn.Linear.__init__(self, in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._setup_quant(weight_quant)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.quantized_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{nn.Linear.extra_repr(self)}, {self._quant_repr()}"


class VecQConv2d(_VecQWeight, nn.Conv2d):
    """``nn.Conv2d`` (zero padding) with quantised weights (per output channel when the
    quantiser is ``per_channel``). ``groups`` is 1, or in_channels == out_channels (depthwise; the
    integer model's ``depthwise_conv2d``).

    VecQConv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
               *, weight_quant=DEFAULT_WEIGHT_QUANT, dilation=1, groups=1, device=None, dtype=None)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = True, *, weight_quant: Any = DEFAULT_WEIGHT_QUANT, dilation=1,
                 groups: int = 1, device: Any = None, dtype: Any = None):
        if isinstance(groups, bool) or not isinstance(groups, int) or not (
                groups == 1 or groups == in_channels == out_channels):
            raise VecQError(f"expected groups=1 or a depthwise conv (groups == in_channels == "
                            f"out_channels), got groups={groups!r} with in_channels={in_channels}, "
                            f"out_channels={out_channels}", field="groups")
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                           dilation=dilation, groups=groups, bias=bias, device=device, dtype=dtype)
        self._setup_quant(weight_quant)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{nn.Conv2d.extra_repr(self)}, {self._quant_repr()}"
