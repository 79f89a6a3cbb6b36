"""VecQ layers: nn.Linear / nn.Conv2d whose forward pass uses quantised weights.

The float weight is the trained parameter (standard state_dict keys ``weight`` and
``bias``); forward quantises it with the layer's quantiser object (straight-through
estimator) and then runs the ordinary F.linear / F.conv2d:

    VecQLinear(784, 256, weight_quant=VecQ(bits=2, adaptive=True))
    VecQConv2d(32, 32, 3, padding=1, groups=32, weight_quant={"method": "vecq", "bits": 4})
    VecQLinear(784, 256, weight_quant=None)          # float mode (pre-training)

The older keyword form (``bits=2, quantizer='vecq', per_channel=False, offset=False,
adaptive=False, refresh_every=1``) is a shorthand that builds the same object. ``bits=None``
(or 32) is float mode; the layer keeps its quantiser, so ``set_bits(k)`` (QAT schedules) or
``layer.bits = k`` switches quantisation on at k bits (a fresh quantiser of the same method
and options). ``integer_weights()`` returns the codes, per-channel scales and the quantiser's
levels table of exactly the weights forward() uses: ``levels[c - cmin] * unit * alpha``
equals them (bit for bit in float64; in float32 forward computes that product in float32,
which is the float64 product rounded once for the half-integer grid).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from vecq_hw.errors import ExportError, VecQError
from vecq_hw.quant import QuantResult, WeightQuantizer, check_bits, get_quantizer, quantizer_from_config
from vecq_hw.quant.registry import quantizer_class

#: the widest weight code a layer may use (codes are int8)
MAX_LAYER_BITS = 8


class _DefaultBits(int):
    """The default ``bits`` (2), told apart from an explicit 2 (which overrides the bits of a
    given ``weight_quant``)."""


class _Unset:
    def __repr__(self) -> str:
        return "<shorthand>"


_BITS = _DefaultBits(2)
#: the default of ``bits`` (== 2) in the layers and the model builders: with a given
#: ``weight_quant``, only an explicitly passed bits overrides the quantiser's
DEFAULT_BITS = _BITS
_UNSET = _Unset()
#: the shorthand keywords and their defaults
_SHORTHAND = {"quantizer": "vecq", "per_channel": False, "offset": False, "adaptive": False,
              "refresh_every": 1}


def _is_float_bits(bits) -> bool:
    return bits is None or (isinstance(bits, int) and not isinstance(bits, bool) and bits == 32)


class _VecQWeight:
    """Mixin: the quantisation state and helpers shared by the VecQ layers.

    State: ``_wq`` (the quantiser, or None), ``_bits`` (its width, None = float mode) and
    ``quantize`` (False = float mode, keeping bits and quantiser).
    """

    def _setup_quant(self, bits, weight_quant, **shorthand) -> None:
        self._wq: WeightQuantizer | None = None
        self._bits: int | None = None
        self.quantize = False
        if weight_quant is _UNSET:
            self._setup_shorthand(bits, **shorthand)
            return
        given = [k for k, v in shorthand.items() if v != _SHORTHAND[k]]
        if given:
            raise VecQError(f"give either weight_quant or the shorthand {'/'.join(given)}, not both",
                            field=given[0])
        if weight_quant is None:
            if not (bits is _BITS or _is_float_bits(bits)):
                raise VecQError(f"weight_quant=None is float mode; bits={bits!r} needs a quantiser",
                                field="bits")
            return
        q = self._as_quantizer(weight_quant)
        if _is_float_bits(bits):  # float for now; quantize = True or set_bits() turns q on
            self._wq, self._bits = q, q.bits
            return
        if bits is not _BITS and check_bits(bits, high=MAX_LAYER_BITS) != q.bits:
            q = q.with_bits(bits)
        self._wq, self._bits, self.quantize = q, q.bits, True

    def _setup_shorthand(self, bits, quantizer, per_channel, offset, adaptive, refresh_every) -> None:
        if not _is_float_bits(bits):
            bits = check_bits(bits, high=MAX_LAYER_BITS)
        cls = quantizer_class(quantizer, field="quantizer")
        options = {}
        for key, value in (("offset", offset), ("adaptive", adaptive), ("refresh_every", refresh_every)):
            if key in cls.options():
                options[key] = value
            elif value != _SHORTHAND[key]:  # an option this method does not have
                raise VecQError(f"{key}={value!r} only applies to a quantizer with that option, "
                                f"not {cls.name!r} (options: {', '.join(cls.options())})", field=key)
        # through get_quantizer: a benchmark swaps it to change the method of every layer
        q = get_quantizer(cls.name, 2 if _is_float_bits(bits) else bits, per_channel, **options)
        self._wq = q
        if not _is_float_bits(bits):
            self._bits, self.quantize = bits, True

    @staticmethod
    def _as_quantizer(weight_quant) -> WeightQuantizer:
        if isinstance(weight_quant, WeightQuantizer):
            if weight_quant.bits > MAX_LAYER_BITS:
                raise VecQError(f"expected an integer number of bits in 1..{MAX_LAYER_BITS}, got "
                                f"{weight_quant.bits}", field="weight_quant.bits")
            return weight_quant
        if isinstance(weight_quant, dict):
            return quantizer_from_config(weight_quant, max_bits=MAX_LAYER_BITS, prefix="weight_quant.")
        raise VecQError(f"expected a quantiser object (e.g. VecQ(bits=2)), a {{method: ..., ...}} "
                        f"config or None, got {weight_quant!r}", field="weight_quant")

    # --- the quantiser ------------------------------------------------------------------------
    @property
    def bits(self) -> int | None:
        """The weight width (None: no width set, float mode)."""
        return self._bits

    @bits.setter
    def bits(self, value) -> None:
        self._bits = None if _is_float_bits(value) else check_bits(value, high=MAX_LAYER_BITS)

    @property
    def weight_quantizer(self) -> WeightQuantizer:
        """The quantiser at the current ``bits``: one object, kept across calls (so the
        adaptive step cache of ``refresh_every`` works) and replaced by a fresh one of the same
        method and options only when ``bits`` changes."""
        if self._bits is None:
            raise VecQError("layer has bits=None (float mode); set bits to quantise", field="bits")
        if self._wq is None:
            raise VecQError("layer has no quantiser (weight_quant=None); set layer.weight_quant",
                            field="weight_quant")
        if self._wq.bits != self._bits:
            self._wq = self._wq.with_bits(self._bits)
        return self._wq

    @property
    def weight_quant(self) -> WeightQuantizer | None:
        """The quantiser forward() uses, or None in float mode. Assign a quantiser object or a
        ``{method, ...}`` config to quantise with it, None for float mode (the old quantiser is
        kept for ``set_bits``)."""
        if not self.quantize or self._bits is None or self._wq is None:
            return None
        return self.weight_quantizer

    @weight_quant.setter
    def weight_quant(self, value) -> None:
        if value is None:
            self.quantize = False
            return
        q = self._as_quantizer(value)
        self._wq, self._bits, self.quantize = q, q.bits, True

    # read-only views of the quantiser's options (older code and tests read them)
    @property
    def quantizer(self) -> str | None:
        return None if self._wq is None else self._wq.name

    @property
    def per_channel(self) -> bool:
        return bool(getattr(self._wq, "per_channel", False))

    @property
    def offset(self) -> bool:
        return bool(getattr(self._wq, "offset", False))

    @property
    def adaptive(self) -> bool:
        return bool(getattr(self._wq, "adaptive", False))

    @property
    def refresh_every(self) -> int:
        return int(getattr(self._wq, "refresh_every", 1))

    def reset_quant_cache(self) -> None:
        """Forget the adaptive step cache: the next forward searches the step again."""
        if self._wq is not None and hasattr(self._wq, "reset_cache"):
            self._wq.reset_cache()

    def set_bits(self, bits: int | None) -> None:
        """Switch the weight width: 1..8 quantises, None (or 32) is float mode (keeps bits)."""
        if _is_float_bits(bits):
            self.quantize = False
            return
        bits = check_bits(bits, high=MAX_LAYER_BITS)
        if self._wq is None:
            raise VecQError("layer has no quantiser (built with weight_quant=None); assign "
                            "layer.weight_quant = VecQ(...) instead of set_bits", field="weight_quant")
        self._bits = bits
        self.quantize = True

    # --- weights ----------------------------------------------------------------------------
    def quantized_weight(self) -> torch.Tensor:
        """The weight forward() uses (quantised with STE, or the float weight)."""
        if not self.quantize:
            return self.weight
        return self.weight_quantizer(self.weight)

    def quant_result(self) -> QuantResult:
        """Codes and scale(s) (torch tensors, weight dtype) of the current weight."""
        if not self.quantize or self._bits is None or self._wq is None:
            raise ExportError("layer is in float mode (quantize=False, bits=None or weight_quant=None): "
                              "it has no integer weights", field="bits")
        return self.weight_quantizer.quantize_torch(self.weight)

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
        if self._wq is None:
            return "weight_quant=None"
        s = f"bits={self.bits}, quantizer='{self._wq.name}', per_channel={self.per_channel}"
        defaults = type(self._wq).options()
        for k, v in self._wq.get_config().items():
            if k not in ("method", "bits", "per_channel") and v != defaults.get(k):
                s += f", {k}={v!r}"
        if self.bits is not None and not self.quantize:
            s += ", quantize=False"
        return s


class VecQLinear(_VecQWeight, nn.Linear):
    """``nn.Linear`` with quantised weights.

    VecQLinear(in_features, out_features, bias=True, *, weight_quant=VecQ(bits=2))
    VecQLinear(in_features, out_features, bias=True, bits=2, quantizer='vecq',
               per_channel=False, offset=False, device=None, dtype=None, adaptive=False,
               refresh_every=1)                                      (shorthand)

    ``weight_quant``: a quantiser object, a ``{method, ...options}`` config, or None (float
    mode). With it, ``bits`` may only be None (float for now) or override its bits.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bits: int | None = _BITS,
                 quantizer: str = "vecq", per_channel: bool = False, offset: bool = False,
                 device: Any = None, dtype: Any = None, adaptive: bool = False, refresh_every: int = 1,
                 *, weight_quant: Any = _UNSET):
        nn.Linear.__init__(self, in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._setup_quant(bits, weight_quant, quantizer=quantizer, per_channel=per_channel,
                          offset=offset, adaptive=adaptive, refresh_every=refresh_every)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.quantized_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{nn.Linear.extra_repr(self)}, {self._quant_repr()}"


class VecQConv2d(_VecQWeight, nn.Conv2d):
    """``nn.Conv2d`` (zero padding) with quantised weights, quantised per output channel
    when ``per_channel``. ``groups`` is 1, or in_channels == out_channels (depthwise; the
    integer model's ``depthwise_conv2d``).

    VecQConv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
               *, weight_quant=VecQ(bits=2), dilation=1, groups=1)
    VecQConv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
               bits=2, quantizer='vecq', per_channel=False, offset=False, dilation=1,
               groups=1, device=None, dtype=None, adaptive=False, refresh_every=1)  (shorthand)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = True, bits: int | None = _BITS, quantizer: str = "vecq",
                 per_channel: bool = False, offset: bool = False, dilation=1, groups: int = 1,
                 device: Any = None, dtype: Any = None, adaptive: bool = False, refresh_every: int = 1,
                 *, weight_quant: Any = _UNSET):
        if isinstance(groups, bool) or not isinstance(groups, int) or not (
                groups == 1 or groups == in_channels == out_channels):
            raise VecQError(f"expected groups=1 or a depthwise conv (groups == in_channels == "
                            f"out_channels), got groups={groups!r} with in_channels={in_channels}, "
                            f"out_channels={out_channels}", field="groups")
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                           dilation=dilation, groups=groups, bias=bias, device=device, dtype=dtype)
        self._setup_quant(bits, weight_quant, quantizer=quantizer, per_channel=per_channel,
                          offset=offset, adaptive=adaptive, refresh_every=refresh_every)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{nn.Conv2d.extra_repr(self)}, {self._quant_repr()}"
