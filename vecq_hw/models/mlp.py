"""Multi-layer perceptrons (784-256-128-10 for MNIST; 16-64-32-32-5 for benchmarks)."""

from __future__ import annotations

from torch import nn

from ..nn import DEFAULT_WEIGHT_QUANT
from ._common import (DEFAULT_ACT_TYPE, DEFAULT_IN_TYPE, DEFAULT_OUT_TYPE, block_tail, finish,
                      fixed_quant, linear)


def mlp(*, weight_quant=DEFAULT_WEIGHT_QUANT,
        act_type: str = DEFAULT_ACT_TYPE, in_type: str = DEFAULT_IN_TYPE,
        out_type: str = DEFAULT_OUT_TYPE, in_features: int = 784, hidden=(256, 128),
        num_classes: int = 10, batch_norm: bool = True) -> nn.Sequential:
    """in quant -> [dense -> BN -> ReLU -> act quant]* -> dense num_classes -> out quant.

    Input layout (N, in_features); for MNIST, images are flattened in row-major order.
    """
    layers: list[nn.Module] = [fixed_quant(in_type)]
    n = int(in_features)
    for h in hidden:
        h = int(h)
        layers.append(linear(n, h, weight_quant))
        block_tail(layers, nn.BatchNorm1d(h) if batch_norm else None, act_type)
        n = h
    layers.append(linear(n, num_classes, weight_quant))
    layers.append(fixed_quant(out_type))
    return finish(layers, (int(in_features),), num_classes, "mlp")
