"""Shared pieces of the reference networks."""

from __future__ import annotations

from torch import nn

DEFAULT_IN_TYPE = "ap_ufixed<8,0,AP_RND,AP_SAT>"
DEFAULT_ACT_TYPE = "ap_ufixed<8,3,AP_RND,AP_SAT>"
DEFAULT_OUT_TYPE = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"


def fixed_quant(spelling: str) -> nn.Module:
    from ..nn import FixedQuant

    return FixedQuant(spelling)


def own_quantizer(weight_quant):
    """A layer's own copy of the builder's ``weight_quant`` (an object or a ``{method, ...}``
    config; each layer keeps its own caches and generators); None stays None (float layers)."""
    if weight_quant is None:
        return None
    from ..nn import as_weight_quantizer
    from ..quant import WeightQuantizer

    if isinstance(weight_quant, WeightQuantizer):
        weight_quant = weight_quant.get_config()
    return as_weight_quantizer(weight_quant)


def linear(n_in: int, n_out: int, weight_quant) -> nn.Module:
    from ..nn import VecQLinear

    return VecQLinear(n_in, n_out, bias=True, weight_quant=own_quantizer(weight_quant))


def conv(c_in: int, c_out: int, k: int, weight_quant, padding: int) -> nn.Module:
    from ..nn import VecQConv2d

    return VecQConv2d(c_in, c_out, k, stride=1, padding=padding, bias=True,
                      weight_quant=own_quantizer(weight_quant))


def block_tail(layers: list, bn: nn.Module | None, act_type: str) -> None:
    """BN (optional) -> ReLU -> activation quantiser."""
    if bn is not None:
        layers.append(bn)
    layers.append(nn.ReLU())
    layers.append(fixed_quant(act_type))


def finish(layers: list, input_shape: tuple, num_classes: int, name: str) -> nn.Sequential:
    model = nn.Sequential(*layers)
    # plain attributes (not state): read by the exporter / tools
    model.input_shape = tuple(input_shape)  # without the batch dim, NCHW / (features,)
    model.num_classes = int(num_classes)
    model.arch = name
    return model
