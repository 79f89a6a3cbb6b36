"""ImageNet-shape networks as integer models with random k-bit weights: ResNet-18 and MobileNetV2.

For sizing hardware (estimate, fit, off-chip weights, C simulation of a network bigger than the
chip), not for accuracy: the codes are random and the scales are chosen, as in
:mod:`.examples`, so that every layer's outputs span its output type. The shapes follow the
papers (He et al. 2016, table 1; Sandler et al. 2018, table 2), with two changes our layer kinds
force and say here:

* ResNet-18's stem max pool is 2x2 stride 2 instead of 3x3 stride 2 with padding 1 (our pools
  have no padding); the output is the same 56 x 56 at 224 x 224;
* MobileNetV2's ReLU6 is a ReLU (our ReLU is exact and never clips; the next requantisation
  saturates at its type's maximum instead).

BatchNorm is folded (the scale s_j and bias b_j of every conv), activations are 8-bit.
``size``/``width`` shrink the same topology for tests (e.g. ``resnet18(size=32, width=8)``).
"""

from __future__ import annotations

import numpy as np

from .. import ir  # noqa: F401 (vecq_hw.ir: this package)
from ..fixed import FixedType
from .examples import random_codes, relu_type, weighted_layer

#: (expansion t, channels c, repeats n, first stride s) of MobileNetV2's bottleneck stages
MOBILENET_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1))

_CONV_T = FixedType(8, 3, True, "AP_RND", "AP_SAT")  # every conv's requantisation target
_ADD_T = FixedType(9, 4, True, "AP_RND", "AP_SAT")  # a residual add's


class _Builder:
    """Appends layers with their inputs named; every weighted layer gets random codes."""

    def __init__(self, bits: int, seed: int, in_shape, in_type: FixedType):
        self.bits, self.rng = int(bits), np.random.default_rng(seed)
        self.layers: list[ir.Layer] = [ir.Input(name="input_1", out_type=in_type, shape=tuple(in_shape))]
        self.types = {"input_1": in_type}
        self.channels = {"input_1": int(in_shape[-1])}

    def _add(self, layer, src, channels=None):
        layer.inputs = (src,) if isinstance(src, str) else tuple(src)
        self.layers.append(layer)
        self.types[layer.name] = layer.out_type
        first = layer.inputs[0]
        self.channels[layer.name] = self.channels[first] if channels is None else int(channels)
        return layer.name

    def conv(self, name, src, c_out, k, stride=1, *, depthwise=False, out_type=_CONV_T):
        c_in, pad = self.channels[src], (k - 1) // 2
        if depthwise:
            cls, shape, c_out = ir.DepthwiseConv2D, (k, k, c_in), c_in
        else:
            cls, shape = ir.Conv2D, (k, k, c_in, c_out)
        layer = weighted_layer(cls, name, self.rng, self.types[src], random_codes(self.rng, shape, self.bits),
                               self.bits, "odd", out_type, stride=(stride, stride), padding=(pad,) * 4)
        return self._add(layer, src, c_out)

    def relu(self, name, src):
        return self._add(ir.ReLU(name=name, out_type=relu_type(self.types[src])), src)

    def add(self, name, a, b):
        return self._add(ir.Add(name=name, out_type=_ADD_T), (a, b))

    def head(self, src, num_classes, shape):
        """Global average pool over ``shape`` (h, w) and the classifier."""
        mult, mult_type = ir.GlobalAvgPool2D.constant(int(shape[0] * shape[1]), 12)
        gap = self._add(ir.GlobalAvgPool2D(name="gap", out_type=FixedType(10, 3, True, "AP_RND", "AP_SAT"),
                                           mult=mult, mult_type=mult_type), src)
        fc = weighted_layer(ir.Dense, "fc", self.rng, self.types[gap],
                            random_codes(self.rng, (self.channels[gap], num_classes), self.bits), self.bits, "odd",
                            FixedType(12, 5, True, "AP_RND", "AP_SAT"))
        return self._add(fc, gap, num_classes)

    def model(self, name) -> ir.Model:
        return ir.Model(name=name, layers=self.layers).check()

    def shape(self, name) -> tuple:
        return ir.Model(name="tmp", layers=list(self.layers)).shapes()[name]


def _basic_block(b: _Builder, name: str, src: str, c_out: int, stride: int) -> str:
    """conv3x3(stride) -> relu -> conv3x3 -> + shortcut (identity, or a strided 1x1 projection) -> relu."""
    h = b.relu(f"{name}_relu1", b.conv(f"{name}_conv1", src, c_out, 3, stride))
    h = b.conv(f"{name}_conv2", h, c_out, 3)
    skip = src
    if stride != 1 or b.channels[src] != c_out:
        skip = b.conv(f"{name}_proj", src, c_out, 1, stride)
    return b.relu(f"{name}_out", b.add(f"{name}_add", h, skip))


def resnet18(bits: int = 2, *, size: int = 224, width: int = 64, num_classes: int = 1000, seed: int = 0,
             name: str = "resnet18") -> ir.Model:
    """ResNet-18 (11.7 M weights at 224 x 224, width 64): conv7x7/2, pool, 4 stages x 2 basic blocks
    (width, 2w, 4w, 8w channels; stages 2-4 start with stride 2 and a 1x1 projection), GAP, FC."""
    b = _Builder(bits, seed, (size, size, 3), FixedType(width=8, integer=0, signed=False))
    h = b.relu("stem_relu", b.conv("stem", "input_1", width, 7, 2))
    h = b._add(ir.MaxPool2D(name="stem_pool", out_type=b.types[h]), h)
    for stage in range(4):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            h = _basic_block(b, f"l{stage + 1}b{block + 1}", h, width << stage, stride)
    b.head(h, num_classes, b.shape(h))
    return b.model(name)


def _channels(c: float, divisor: int = 8) -> int:
    """MobileNetV2's channel rounding (to a multiple of 8, never below 90 % of c)."""
    out = max(divisor, int(c + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * c else out


def mobilenet_v2(bits: int = 2, *, size: int = 224, width_mult: float = 1.0, last_channels: int = 1280,
                 num_classes: int = 1000, seed: int = 0, stages=MOBILENET_V2_STAGES,
                 name: str = "mobilenet_v2") -> ir.Model:
    """MobileNetV2 (3.5 M weights at width 1.0): conv3x3/2, 17 inverted residual blocks (1x1 expand ->
    relu -> depthwise 3x3 -> relu -> 1x1 linear projection, + the input when stride 1 and the
    channels agree), 1x1 conv to ``last_channels``, GAP, FC."""
    b = _Builder(bits, seed, (size, size, 3), FixedType(width=8, integer=2, signed=True))
    h = b.relu("stem_relu", b.conv("stem", "input_1", _channels(32 * width_mult), 3, 2))
    for i, (t, c, n, s) in enumerate(stages):
        for j in range(n):
            nm, c_in, c_out = f"b{i + 1}_{j + 1}", b.channels[h], _channels(c * width_mult)
            x = h
            if t != 1:
                x = b.relu(f"{nm}_expand_relu", b.conv(f"{nm}_expand", x, c_in * t, 1))
            x = b.relu(f"{nm}_dw_relu", b.conv(f"{nm}_dw", x, 0, 3, s if j == 0 else 1, depthwise=True))
            x = b.conv(f"{nm}_project", x, c_out, 1)
            h = b.add(f"{nm}_add", x, h) if (s == 1 or j > 0) and c_in == c_out else x
    last = max(int(last_channels), _channels(last_channels * width_mult)) if width_mult > 1 else int(last_channels)
    h = b.relu("last_relu", b.conv("last", h, last, 1))
    b.head(h, num_classes, b.shape(h))
    return b.model(name)


__all__ = ["MOBILENET_V2_STAGES", "mobilenet_v2", "resnet18"]
