"""Sliced io_stream packs in the estimate and in ``fit`` (:mod:`vecq_hw.hls.packs`).

A pack of k of a tensor's C channels makes its FIFOs C / k times narrower (and C / k times more
tokens a frame); the layers that write or read it move one pack a cycle, so a pixel takes C / k
cycles to pass (``Mapping.packed_cycles``). ``fit`` takes, for each group of tensors that share a
pack, the narrowest pack that keeps every layer it touches within the plan's II (plus ``SLACK``):
the same frames per second within 1/64, fewer LUTs in FIFOs.
"""

from __future__ import annotations

import dataclasses

from ... import ir
from ..costs import LayerEstimate
from ..folding import divisors
from ..mappings import mapping_for
from ..packs import packable_groups, resolve_packs, slices

#: a pack may lengthen the plan's II by this share: our line-buffer convs read their input packs
#: between computing pixels, so slicing the input of the slowest layer (the II) costs it
#: h x w x (C / k - 1) cycles, a few thousandths of a folded layer's; with no slack its tensors
#: would keep whole pixels (and their FIFOs' LUTs) for that
SLACK = 1 / 64


def as_built(node: ir.Node, e: LayerEstimate, s_out: int) -> LayerEstimate:
    """A folded conv whose output packs are sliced runs pixel by pixel, its requantisation not
    overlapped (vecq_conv_lines_pixel::row): its estimate without the hold registers."""
    if e.overlap and s_out > 1:
        return mapping_for(node).estimate(node, e.reuse, "io_stream", allow_overlap=False)
    return e


def _cycles(node: ir.Node, e: LayerEstimate, s: dict) -> int:
    s_in = s[node.layer.inputs[0]] if node.layer.inputs else 1
    s_out = s[node.layer.name]
    e = as_built(node, e, s_out)
    if (s_in, s_out) == (1, 1):
        return e.cycles
    return mapping_for(node).packed_cycles(node, e.cycles, s_in, s_out)


def packed_layers(model: ir.Model, layers: list[LayerEstimate], packs: dict | None) -> list[LayerEstimate]:
    """The layer estimates (whole-pixel cycles, in model order) with the cycles of these packs
    (copies where they change; the latency covers the cycles)."""
    if not packs:
        return list(layers)
    s, out = slices(model, packs), []
    for node, e in zip(model.nodes(), layers):
        s_out = s[node.layer.name]
        e = as_built(node, e, s_out)
        c, ffs = _cycles(node, e, s), (mapping_for(node).packed_ffs(node, e, s_out) if s_out > 1 else e.ffs)
        changed = c != e.cycles or ffs != e.ffs
        out.append(dataclasses.replace(e, cycles=c, latency=max(e.latency, c), ffs=ffs) if changed else e)
    return out


def choose_packs(model: ir.Model, layers: list[LayerEstimate], ii: int, pinned: dict | None = None) -> dict[str, int]:
    """{layer: k} with, for every group not ``pinned`` (resolved packs the caller fixed), the
    narrowest pack whose layers (the group's writers and readers) stay within ``ii`` x (1 +
    ``SLACK``) cycles, the groups taken in model order (each checked against the packs already chosen)."""
    limit = int(ii * (1 + SLACK))
    nodes = model.nodes()
    by_name = {n.layer.name: (n, e) for n, e in zip(nodes, layers)}
    shapes, readers = model.shapes(), model.consumers()
    fixed = resolve_packs(model, pinned)
    s = {name: int(shapes[name][-1]) // fixed[name] if name in fixed else 1 for name in shapes}
    for members in packable_groups(model).values():
        if any(m in (pinned or {}) or m in fixed for m in members):
            continue
        channels = int(shapes[members[0]][-1])
        touched = set(members) | {r for m in members for r in readers.get(m, [])}
        for k in divisors(channels):  # narrowest first; k = channels always keeps the II
            trial = dict(s, **{m: channels // k for m in members})
            if all(_cycles(*by_name[t], trial) <= limit for t in touched):
                s = trial
                break
    return {name: int(shapes[name][-1]) // v for name, v in s.items() if v > 1}


__all__ = ["SLACK", "choose_packs", "packed_layers"]
