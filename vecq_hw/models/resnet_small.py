"""A small ResNet-style CNN written as ordinary modules with a ``forward`` (MNIST-sized).

in quant -> stem conv 3x3 stride 2 -> BN -> ReLU -> act quant
-> residual block (c -> c) -> residual block (c -> 2c, stride 2, 1x1 projection)
-> global average pool -> act quant -> dense num_classes -> out quant.

A residual block: conv3x3 -> BN -> ReLU -> act quant -> conv3x3 -> BN -> res quant (signed,
no ReLU), the shortcut (the input, or a 1x1 strided conv -> BN -> res quant), then
relu(main + shortcut) -> act quant: every weighted layer, the add and the average end in
their one requantisation (a FixedQuant), so the network deploys exactly as it trains.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from ..nn import DEFAULT_WEIGHT_QUANT, VecQConv2d
from ._common import (DEFAULT_ACT_TYPE, DEFAULT_IN_TYPE, DEFAULT_OUT_TYPE, fixed_quant, linear,
                      own_quantizer)

#: the type of a block's main path and projection before the add (signed: no ReLU there)
DEFAULT_RES_TYPE = "ap_fixed<9,4,AP_RND,AP_SAT>"


def conv_bn(c_in: int, c_out: int, k: int, weight_quant, *, stride: int = 1, groups: int = 1):
    """A VecQ conv ('same' padding for odd k) and its BatchNorm."""
    conv = VecQConv2d(c_in, c_out, k, stride=stride, padding=k // 2, groups=groups, bias=False,
                      weight_quant=own_quantizer(weight_quant))
    return conv, nn.BatchNorm2d(c_out)


class ResidualBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, weight_quant, act_type: str, res_type: str):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(c_in, c_out, 3, weight_quant, stride=stride)
        self.q1 = fixed_quant(act_type)
        self.conv2, self.bn2 = conv_bn(c_out, c_out, 3, weight_quant)
        self.q2 = fixed_quant(res_type)
        if stride != 1 or c_in != c_out:
            self.proj, self.proj_bn = conv_bn(c_in, c_out, 1, weight_quant, stride=stride)
            self.proj_q = fixed_quant(res_type)
        else:
            self.proj = None
        self.out_q = fixed_quant(act_type)

    def forward(self, x):
        h = self.q1(F.relu(self.bn1(self.conv1(x))))
        h = self.q2(self.bn2(self.conv2(h)))
        s = x if self.proj is None else self.proj_q(self.proj_bn(self.proj(x)))
        return self.out_q(F.relu(h + s))


class ResNetSmall(nn.Module):
    def __init__(self, weight_quant, *, in_channels: int, image_size: int, channels: int, num_classes: int,
                 in_type: str, act_type: str, res_type: str, out_type: str):
        super().__init__()
        c = int(channels)
        self.in_q = fixed_quant(in_type)
        self.stem, self.stem_bn = conv_bn(in_channels, c, 3, weight_quant, stride=2)
        self.stem_q = fixed_quant(act_type)
        self.block1 = ResidualBlock(c, c, 1, weight_quant, act_type, res_type)
        self.block2 = ResidualBlock(c, 2 * c, 2, weight_quant, act_type, res_type)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.pool_q = fixed_quant(act_type)
        self.fc = linear(2 * c, num_classes, weight_quant)
        self.out_q = fixed_quant(out_type)
        # plain attributes (not state): read by the exporter / tools
        self.input_shape = (int(in_channels), int(image_size), int(image_size))
        self.num_classes = int(num_classes)
        self.arch = "resnet_small"

    def forward(self, x):
        x = self.in_q(x)
        x = self.stem_q(F.relu(self.stem_bn(self.stem(x))))
        x = self.block2(self.block1(x))
        x = self.pool_q(self.pool(x).flatten(1))
        return self.out_q(self.fc(x))


def resnet_small(*, weight_quant=DEFAULT_WEIGHT_QUANT,
                 act_type: str = DEFAULT_ACT_TYPE, in_type: str = DEFAULT_IN_TYPE, out_type: str = DEFAULT_OUT_TYPE,
                 res_type: str = DEFAULT_RES_TYPE, num_classes: int = 10, in_channels: int = 1,
                 image_size: int = 28, channels: int = 8) -> ResNetSmall:
    """Stem conv (stride 2), two residual blocks (the second strided with a 1x1 projection),
    global average pool, dense."""
    return ResNetSmall(weight_quant, in_channels=in_channels, image_size=image_size, channels=channels,
                       num_classes=num_classes, in_type=in_type, act_type=act_type, res_type=res_type,
                       out_type=out_type)
