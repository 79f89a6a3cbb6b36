"""A MobileNet-style network around one depthwise-separable block with a residual add, written as ordinary modules with a ``forward`` (MNIST-sized).

in quant -> stem conv 3x3 stride 2 -> BN -> ReLU -> act quant -> max pool 2
-> block: depthwise 3x3 -> BN -> ReLU -> act quant -> pointwise 1x1 -> BN -> res quant
   (linear, as MobileNetV2's projection), + the block input -> res quant
-> pointwise 1x1 expansion (c -> 4c) -> BN -> ReLU -> act quant
-> global average pool (7x7: a non-power-of-two window) -> act quant -> dense -> out quant.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from ..nn import DEFAULT_WEIGHT_QUANT
from ._common import DEFAULT_ACT_TYPE, DEFAULT_IN_TYPE, DEFAULT_OUT_TYPE, fixed_quant, linear
from .resnet_small import DEFAULT_RES_TYPE, conv_bn


class DepthwiseSeparableBlock(nn.Module):
    def __init__(self, c: int, weight_quant, act_type: str, res_type: str):
        super().__init__()
        self.dw, self.dw_bn = conv_bn(c, c, 3, weight_quant, groups=c)
        self.dw_q = fixed_quant(act_type)
        self.pw, self.pw_bn = conv_bn(c, c, 1, weight_quant)
        self.pw_q = fixed_quant(res_type)
        self.out_q = fixed_quant(res_type)

    def forward(self, x):
        h = self.dw_q(F.relu(self.dw_bn(self.dw(x))))
        h = self.pw_q(self.pw_bn(self.pw(h)))
        return self.out_q(x + h)


class MobileNetBlock(nn.Module):
    def __init__(self, weight_quant, *, in_channels: int, image_size: int, channels: int, num_classes: int,
                 in_type: str, act_type: str, res_type: str, out_type: str):
        super().__init__()
        c = int(channels)
        self.in_q = fixed_quant(in_type)
        self.stem, self.stem_bn = conv_bn(in_channels, c, 3, weight_quant, stride=2)
        self.stem_q = fixed_quant(act_type)
        self.block = DepthwiseSeparableBlock(c, weight_quant, act_type, res_type)
        self.expand, self.expand_bn = conv_bn(c, 4 * c, 1, weight_quant)
        self.expand_q = fixed_quant(act_type)
        self.pool = nn.MaxPool2d(2)
        self.gap_q = fixed_quant(act_type)
        self.fc = linear(4 * c, num_classes, weight_quant)
        self.out_q = fixed_quant(out_type)
        self.input_shape = (int(in_channels), int(image_size), int(image_size))
        self.num_classes = int(num_classes)
        self.arch = "mobilenet_block"

    def forward(self, x):
        x = self.pool(self.stem_q(F.relu(self.stem_bn(self.stem(self.in_q(x))))))
        x = self.expand_q(F.relu(self.expand_bn(self.expand(self.block(x)))))
        x = self.gap_q(x.mean((2, 3)))
        return self.out_q(self.fc(x))


def mobilenet_block(*, weight_quant=DEFAULT_WEIGHT_QUANT,
                    act_type: str = DEFAULT_ACT_TYPE, in_type: str = DEFAULT_IN_TYPE,
                    out_type: str = DEFAULT_OUT_TYPE, res_type: str = DEFAULT_RES_TYPE, num_classes: int = 10,
                    in_channels: int = 1, image_size: int = 28, channels: int = 16) -> MobileNetBlock:
    """Stem conv (stride 2), max pool, a depthwise 3x3 + pointwise 1x1 block with a residual
    add, a 1x1 expansion, global average pool, dense."""
    return MobileNetBlock(weight_quant, in_channels=in_channels, image_size=image_size, channels=channels,
                          num_classes=num_classes, in_type=in_type, act_type=act_type, res_type=res_type,
                          out_type=out_type)
