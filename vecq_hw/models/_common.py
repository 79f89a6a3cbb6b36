"""Shared pieces of the reference networks."""

from __future__ import annotations

from torch import nn

DEFAULT_IN_TYPE = "ap_ufixed<8,0,AP_RND,AP_SAT>"
DEFAULT_ACT_TYPE = "ap_ufixed<8,3,AP_RND,AP_SAT>"
DEFAULT_OUT_TYPE = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"


def fixed_quant(spelling: str) -> nn.Module:
    from ..nn import FixedQuant

    return FixedQuant(spelling)


def _per_layer(q: dict) -> dict:
    """Layer keywords; a given quantiser is cloned, so each layer has its own (caches)."""
    wq = q.get("weight_quant")
    if wq is None:
        return q
    from ..quant import quantizer_from_config

    return {**q, "weight_quant": quantizer_from_config(wq)}


def linear(n_in: int, n_out: int, q: dict) -> nn.Module:
    from ..nn import VecQLinear

    return VecQLinear(n_in, n_out, bias=True, **_per_layer(q))


def conv(c_in: int, c_out: int, k: int, q: dict, padding: int) -> nn.Module:
    from ..nn import VecQConv2d

    return VecQConv2d(c_in, c_out, k, stride=1, padding=padding, bias=True, **_per_layer(q))


def quant_args(bits, quantizer, per_channel, adaptive=False, refresh_every=1, weight_quant=None) -> dict:
    """Layer keywords from a builder's quant options. ``weight_quant`` (a quantiser object or
    a ``{method, ...}`` config) replaces quantizer/per_channel/adaptive/refresh_every; ``bits``
    then overrides its bits only when passed (None: float mode, the quantiser kept)."""
    if weight_quant is not None:
        from ..nn import DEFAULT_BITS

        given = [k for k, v, d in (("quantizer", quantizer, "vecq"), ("per_channel", per_channel, False),
                                   ("adaptive", adaptive, False), ("refresh_every", refresh_every, 1))
                 if v != d]
        if given:
            raise TypeError(f"give either weight_quant or {'/'.join(given)}, not both")
        q = {"weight_quant": weight_quant}
        if bits is not DEFAULT_BITS:
            q["bits"] = bits
        return q
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
