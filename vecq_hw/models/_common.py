"""Shared pieces of the reference networks."""

from __future__ import annotations

from torch import nn

DEFAULT_IN_TYPE = "ap_ufixed<8,0,AP_RND,AP_SAT>"
DEFAULT_ACT_TYPE = "ap_ufixed<8,3,AP_RND,AP_SAT>"
DEFAULT_OUT_TYPE = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"


def fixed_quant(spelling: str) -> nn.Module:
    from ..nn import FixedQuant

    return FixedQuant(spelling)


def linear(n_in: int, n_out: int, q: dict) -> nn.Module:
    from ..nn import VecQLinear

    return VecQLinear(n_in, n_out, bias=True, **q)


def conv(c_in: int, c_out: int, k: int, q: dict, padding: int) -> nn.Module:
    from ..nn import VecQConv2d

    return VecQConv2d(c_in, c_out, k, stride=1, padding=padding, bias=True, **q)


def quant_args(bits, quantizer, per_channel, adaptive=False, refresh_every=1) -> dict:
    q = {"bits": bits, "quantizer": quantizer, "per_channel": per_channel}
    if adaptive or refresh_every != 1:  # vecq only; the layer refuses them for ul2q
        q.update(adaptive=adaptive, refresh_every=refresh_every)
    return q


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
