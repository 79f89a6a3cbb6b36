"""A small VGG-style CNN (Fashion-MNIST)."""

from __future__ import annotations

from torch import nn

from ..nn import DEFAULT_BITS
from ._common import (DEFAULT_ACT_TYPE, DEFAULT_IN_TYPE, DEFAULT_OUT_TYPE, block_tail, conv,
                      finish, fixed_quant, linear, quant_args)


def vgg_small(*, bits: int | None = DEFAULT_BITS, quantizer: str = "vecq", per_channel: bool = False,
              adaptive: bool = False, refresh_every: int = 1, weight_quant=None,
              act_type: str = DEFAULT_ACT_TYPE, in_type: str = DEFAULT_IN_TYPE,
              out_type: str = DEFAULT_OUT_TYPE, num_classes: int = 10, in_channels: int = 1,
              image_size: int = 28, stages=((32, 32), (64, 64)), hidden: int = 256,
              batch_norm: bool = True) -> nn.Sequential:
    """in quant -> per stage: [conv3x3 'same' -> BN -> ReLU -> act quant]* -> maxpool2 ->
    flatten -> dense hidden -> BN -> ReLU -> act quant -> dense num_classes -> out quant."""
    q = quant_args(bits, quantizer, per_channel, adaptive, refresh_every, weight_quant)
    layers: list[nn.Module] = [fixed_quant(in_type)]
    c_in, side = in_channels, image_size
    for stage in stages:
        for c_out in stage:
            c_out = int(c_out)
            layers.append(conv(c_in, c_out, 3, q, padding=1))
            block_tail(layers, nn.BatchNorm2d(c_out) if batch_norm else None, act_type)
            c_in = c_out
        if side % 2:
            raise ValueError("vgg_small: image size not divisible by 2 at a pooling stage")
        layers.append(nn.MaxPool2d(2))
        side //= 2
    layers.append(nn.Flatten())
    n = c_in * side * side
    if hidden:
        layers.append(linear(n, hidden, q))
        block_tail(layers, nn.BatchNorm1d(hidden) if batch_norm else None, act_type)
        n = hidden
    layers.append(linear(n, num_classes, q))
    layers.append(fixed_quant(out_type))
    return finish(layers, (in_channels, image_size, image_size), num_classes, "vgg_small")
