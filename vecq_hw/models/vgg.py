"""A small VGG-style CNN (Fashion-MNIST)."""

from __future__ import annotations

from torch import nn

from ..nn import DEFAULT_WEIGHT_QUANT
from ._common import (DEFAULT_ACT_TYPE, DEFAULT_IN_TYPE, DEFAULT_OUT_TYPE, block_tail, conv,
                      finish, fixed_quant, linear)


def vgg_small(*, weight_quant=DEFAULT_WEIGHT_QUANT,
              act_type: str = DEFAULT_ACT_TYPE, in_type: str = DEFAULT_IN_TYPE,
              out_type: str = DEFAULT_OUT_TYPE, num_classes: int = 10, in_channels: int = 1,
              image_size: int = 28, stages=((32, 32), (64, 64)), hidden: int = 256,
              batch_norm: bool = True) -> nn.Sequential:
    """in quant -> per stage: [conv3x3 'same' -> BN -> ReLU -> act quant]* -> maxpool2 ->
    flatten -> dense hidden -> BN -> ReLU -> act quant -> dense num_classes -> out quant."""
    layers: list[nn.Module] = [fixed_quant(in_type)]
    c_in, side = in_channels, image_size
    for stage in stages:
        for c_out in stage:
            c_out = int(c_out)
            layers.append(conv(c_in, c_out, 3, weight_quant, padding=1))
            block_tail(layers, nn.BatchNorm2d(c_out) if batch_norm else None, act_type)
            c_in = c_out
        if side % 2:
            raise ValueError("vgg_small: image size not divisible by 2 at a pooling stage")
        layers.append(nn.MaxPool2d(2))
        side //= 2
    layers.append(nn.Flatten())
    n = c_in * side * side
    if hidden:
        layers.append(linear(n, hidden, weight_quant))
        block_tail(layers, nn.BatchNorm1d(hidden) if batch_norm else None, act_type)
        n = hidden
    layers.append(linear(n, num_classes, weight_quant))
    layers.append(fixed_quant(out_type))
    return finish(layers, (in_channels, image_size, image_size), num_classes, "vgg_small")
