"""Channel-sliced io_stream packs (issue 28): a token of an image stream carries k of its C
channels (k divides C), not always the whole pixel, so folded layers get narrow FIFOs.

hls4ml's io_stream declares every image tensor as a stream of ``nnet::array<T, C>`` (one pixel a
token); with a pack of k the array holds k values and a pixel is C / k consecutive tokens, still
in channels-last element order (element e of the frame is value e % k of token e / k). Our
kernels index their streams that way (``vecq_lines_store``, ``vecq_stream_out``,
``vecq_read_packs``/``vecq_write_packs`` and the global pool's channel counter), and so do
hls4ml's stream activation, merge and clone kernels, which loop over ``n / size`` packs: but
those read one pack and write one of the same size, so an activation or add has one pack size on
its inputs and its output (hls4ml's add asserts it), and a clone's copies carry its source's.

Each kind's mapping says how its kernel takes packs (:meth:`Mapping.pack_rule`): 'free' (any
divisor of the channels on each side: our line-buffer convs and pool, the global pool, the input
port), 'tied' (the same pack on its inputs and output: relu, add), or None (whole pixels only:
every other kind; its input and output streams keep whole pixels). Tensors tied together form a
*group* that shares one pack. No hls4ml import here.
"""

from __future__ import annotations

from .. import ir
from ..errors import VecQError
from .mappings import mapping_for


class _Groups:
    """Union-find over layer names (a layer stands for its output tensor)."""

    def __init__(self, names):
        self.parent = {n: n for n in names}

    def find(self, n: str) -> str:
        while self.parent[n] != n:
            self.parent[n] = self.parent[self.parent[n]]
            n = self.parent[n]
        return n

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def pack_groups(model: ir.Model) -> tuple[dict[str, str], set[str]]:
    """({layer: its group's representative}, {groups that must keep whole pixels}).

    A group is whole-pixel when a member is a vector (one token already), or is written or read
    by a kernel with no pack rule."""
    nodes = model.nodes()
    groups = _Groups([n.layer.name for n in nodes])
    whole = []
    for node in nodes:
        rule = mapping_for(node).pack_rule(node)
        if rule == "tied":
            for src in node.layer.inputs:
                groups.union(node.layer.name, src)
        elif rule is None:
            whole += [node.layer.name, *node.layer.inputs]
        if len(node.out_shape) != 3:
            whole.append(node.layer.name)
    rep = {n.layer.name: groups.find(n.layer.name) for n in nodes}
    return rep, {rep[n] for n in whole}


def packable_groups(model: ir.Model) -> dict[str, list[str]]:
    """{representative: members} of the groups whose pack may be narrower than a pixel."""
    rep, whole = pack_groups(model)
    out: dict[str, list[str]] = {}
    for name, r in rep.items():
        if r not in whole:
            out.setdefault(r, []).append(name)
    return out


def resolve_packs(model: ir.Model, packs: dict | None) -> dict[str, int]:
    """{layer: values per token of its output stream} for the layers whose pack is narrower than
    a pixel, from the asked ``packs`` {layer: k} (a tied layer's pack applies to its whole group).
    A bad entry is one line naming it (``VecQError``)."""
    if not packs:
        return {}
    shapes, by_name = model.shapes(), {lyr.name: lyr for lyr in model.layers}
    rep, whole = pack_groups(model)
    chosen: dict[str, tuple[int, str]] = {}
    for name, k in packs.items():
        if name not in by_name:
            raise VecQError(f"'{name}' is not a layer of model '{model.name}'", field="packs")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise VecQError(f"expected a positive number of values per token, got {k!r}", field=f"packs.{name}")
        channels = int(shapes[name][-1])
        if channels % k:
            raise VecQError(f"expected a divisor of the layer's {channels} channels, got {k}", field=f"packs.{name}")
        if rep[name] in whole and k != channels:
            raise VecQError(f"layer '{name}' ({by_name[name].kind}): its stream must carry whole pixels "
                            f"({channels} values: it is a vector, or a kernel that reads or writes it has no sliced "
                            "form)", field=f"packs.{name}")
        prev = chosen.get(rep[name])
        if prev is not None and prev[0] != k:
            raise VecQError(f"layer '{name}' shares its stream's pack with '{prev[1]}' (an activation or add reads "
                            f"and writes one pack size), which asks {prev[0]}, got {k}", field=f"packs.{name}")
        chosen[rep[name]] = (k, name)
    return {name: chosen[r][0] for name, r in rep.items()
            if r in chosen and chosen[r][0] != int(shapes[name][-1])}


def parse_packs(items) -> dict[str, int]:
    """CLI ``--pack LAYER=K`` (repeated) -> {LAYER: K}; a bad item is one line naming it."""
    out: dict[str, int] = {}
    for item in items or ():
        name, sep, k = str(item).partition("=")
        if not sep or not name.strip() or not k.strip().isdigit() or int(k) < 1:
            raise VecQError(f"--pack: expected LAYER=K with K a positive number of values per token, got {item!r}")
        out[name.strip()] = int(k)
    return out


def slices(model: ir.Model, packs: dict | None) -> dict[str, int]:
    """{layer: tokens per pixel of its output stream} (1 for whole pixels and vectors)."""
    resolved, shapes = resolve_packs(model, packs), model.shapes()
    return {lyr.name: int(shapes[lyr.name][-1]) // resolved[lyr.name] if lyr.name in resolved else 1
            for lyr in model.layers}


__all__ = ["pack_groups", "packable_groups", "parse_packs", "resolve_packs", "slices"]
