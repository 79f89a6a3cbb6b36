"""LeNet-5 as used in the VecQ paper (MNIST)."""

from __future__ import annotations

from torch import nn

from ..nn import DEFAULT_WEIGHT_QUANT
from ._common import (DEFAULT_ACT_TYPE, DEFAULT_IN_TYPE, DEFAULT_OUT_TYPE, block_tail, conv,
                      finish, fixed_quant, linear)


def lenet5(*, weight_quant=DEFAULT_WEIGHT_QUANT,
           act_type: str = DEFAULT_ACT_TYPE, in_type: str = DEFAULT_IN_TYPE,
           out_type: str = DEFAULT_OUT_TYPE, num_classes: int = 10, in_channels: int = 1,
           image_size: int = 28, conv_channels=(32, 64), hidden: int = 512,
           batch_norm: bool = True) -> nn.Sequential:
    """in quant -> [conv5x5 'same' -> BN -> ReLU -> act quant -> maxpool2] x2 -> flatten ->
    dense hidden -> BN -> ReLU -> act quant -> dense num_classes -> out quant."""
    if image_size % 4:
        raise ValueError("lenet5: image_size must be divisible by 4")
    c1, c2 = (int(c) for c in conv_channels)
    layers: list[nn.Module] = [fixed_quant(in_type)]
    layers.append(conv(in_channels, c1, 5, weight_quant, padding=2))
    block_tail(layers, nn.BatchNorm2d(c1) if batch_norm else None, act_type)
    layers.append(nn.MaxPool2d(2))
    layers.append(conv(c1, c2, 5, weight_quant, padding=2))
    block_tail(layers, nn.BatchNorm2d(c2) if batch_norm else None, act_type)
    layers.append(nn.MaxPool2d(2))
    layers.append(nn.Flatten())
    side = image_size // 4
    layers.append(linear(c2 * side * side, hidden, weight_quant))
    block_tail(layers, nn.BatchNorm1d(hidden) if batch_norm else None, act_type)
    layers.append(linear(hidden, num_classes, weight_quant))
    layers.append(fixed_quant(out_type))
    return finish(layers, (in_channels, image_size, image_size), num_classes, "lenet5")
