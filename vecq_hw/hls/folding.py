"""Folding of weighted layers: the reuse factor R, its legal values and what it costs in time.

A weighted layer computes P products per input (dense: n_in * n_out per vector; conv2d:
kh * kw * c_in * c_out per output pixel; depthwise: kh * kw * c per pixel). With reuse factor R
the kernels (``nnet_vecq_dense.h`` / ``nnet_vecq_conv.h``: ``vecq_dense_folded`` / ``vecq_conv_folded``) compute P / R of
them per cycle: R products share one multiplier slot and the layer accepts a new input (pixel)
every R cycles (II = R). R = 1 is the unfolded kernel; R = P is fully folded (one product slot).
R must divide P, so every slot does the same work each cycle and the weight ROM splits into
P / R equal cyclic banks. Which layers fold, their P and how often per frame they run is asked
of each kind's mapping (:mod:`.mappings`). No hls4ml import here: the estimator and the CLI read
it cheaply.
"""

from __future__ import annotations

from .. import ir
from ..errors import VecQError
from .mappings import mapping_for


def products_per_input(node: ir.Node) -> int:
    """P: products the layer computes per input vector (dense) or per output pixel (conv),
    as its kind's mapping states it; one line for a kind with nothing to fold."""
    p = mapping_for(node).products_per_input(node)
    if p is None:
        raise VecQError(f"layer '{node.layer.name}': kind '{node.layer.kind}' has no products to fold")
    return p


def inputs_per_frame(node: ir.Node) -> int:
    """How many times per frame the P products run: 1 (dense) or the output pixels (conv)."""
    return mapping_for(node).inputs_per_frame(node)


def is_weighted(node: ir.Node) -> bool:
    """The layer has products to fold (its mapping states a P)."""
    return mapping_for(node).products_per_input(node) is not None


def divisors(n: int) -> list[int]:
    small = [d for d in range(1, int(n ** 0.5) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def _nearby(p: int, r: int) -> str:
    legal = divisors(p)
    below = [d for d in legal if d < r][-2:]
    above = [d for d in legal if d > r][:2]
    return ", ".join(str(d) for d in below + above)


def check_reuse(node: ir.Node, r: int) -> int:
    """``r`` if it folds this layer evenly (a divisor of P), else one line naming the layer."""
    p = products_per_input(node)
    name, kind = node.layer.name, node.layer.kind
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise VecQError(f"layer '{name}' ({kind}): reuse factor must be a positive integer, got {r!r}")
    if p % r:
        raise VecQError(f"layer '{name}' ({kind}): reuse factor {r} must divide its {p} products per input "
                        f"(nearest legal: {_nearby(p, r)})")
    return r


def weighted_nodes(model: ir.Model) -> list[ir.Node]:
    return [n for n in model.nodes() if is_weighted(n)]


def check_reuse_names(model: ir.Model, reuse: dict) -> None:
    """Every per-layer entry names a weighted layer of the model."""
    names = [n.layer.name for n in weighted_nodes(model)]
    for name in reuse:
        if name not in names:
            raise VecQError(f"reuse: '{name}' is not a weighted layer of model '{model.name}' "
                            f"(weighted layers: {', '.join(names) or 'none'})", field="reuse")


def reuse_plan(model: ir.Model, opts) -> dict[str, int]:
    """{weighted layer name: validated R} for these options (per-layer entries over the default)."""
    check_reuse_names(model, opts.reuse)
    return {n.layer.name: check_reuse(n, opts.reuse_of(n.layer.name)) for n in weighted_nodes(model)}


def parse_reuse(items) -> dict[str, int]:
    """CLI ``--reuse LAYER=R`` (repeated) -> {LAYER: R}; a bad item is one line naming it."""
    out: dict[str, int] = {}
    for item in items or ():
        name, sep, value = str(item).partition("=")
        if not sep or not name.strip() or not (value.strip().isascii() and value.strip().isdigit()) or int(value) < 1:
            raise VecQError(f"--reuse: expected LAYER=R with R a positive integer, got {item!r}")
        if name.strip() in out:
            raise VecQError(f"--reuse: layer '{name.strip()}' is given twice ({out[name.strip()]} and {int(value)}); "
                            "give each layer once")
        out[name.strip()] = int(value)
    return out


def streamed_plan(model: ir.Model, reuse: dict[str, int], weights: dict[str, str], *, io_type: str, part,
                  word_bits: int | None = None) -> dict:
    """{layer: StreamedLayer} of the layers whose codes are not on chip (``weights`` {layer: mode},
    'onchip' by default), each checked against the part and its folding (one line naming the
    layer otherwise). ``reuse``: the validated plan of :func:`reuse_plan`; ``part``: a Part (its
    DDR and AXI width, configs/hardware/parts.yaml), only read when some layer is streamed."""
    from .offchip import STREAMED_MODES, check_streamed

    nodes = {n.layer.name: n for n in weighted_nodes(model)}
    for name in weights:
        if name not in nodes:
            raise VecQError(f"weights: '{name}' is not a weighted layer of model '{model.name}' "
                            f"(weighted layers: {', '.join(nodes) or 'none'})", field="weights")
    out = {}
    for name, node in nodes.items():
        mode = weights.get(name, "onchip")
        if mode not in STREAMED_MODES:
            continue
        mapping = mapping_for(node)
        if not mapping.streams_weights(node):
            raise VecQError(f"layer '{name}' ({node.layer.kind}): its kind keeps its weights on chip")
        check_streamed(name, node.layer.kind, mode, products=products_per_input(node), reuse=reuse[name],
                       bits=int(node.layer.bits), io_type=io_type, part=part)
        out[name] = mapping.streamed_layer(node, reuse[name], mode, word_bits or part.axi_bits)
    return out
