"""The FIFO plan (:mod:`.fifos`) applied to an io_stream hls4ml graph: each stream variable's depth.

hls4ml declares every stream as deep as its tensor (a whole frame each); here every FIFO gets the
depth the dataflow schedule asks for (:func:`.fifos.plan_fifos`), located in the graph by the
layers that write and read it (a tensor read by several layers goes through hls4ml's Clone,
whose outputs ``*_cpy<i>`` follow its readers in graph order, which is also the order the clone
writes them). Returns one record per FIFO for ``vecq_project.json``.
"""

from __future__ import annotations

from .. import ir
from ..errors import VecQError
from .costs import prefers_uram
from .fifos import plan_fifos
from .packs import resolve_packs


def _clone_outputs(graph, names: dict) -> dict[str, dict[str, str]]:
    """{IR source: {IR reader: stream variable name}} for every hls4ml Clone."""
    ir_of = {v: k for k, v in names.items()}
    producer = {out: node for node in graph.get_layers() for out in node.outputs}
    out: dict[str, dict[str, str]] = {}
    for node in graph.get_layers():
        for var in node.inputs:
            src = producer.get(var)
            if src is None or src.class_name != "Clone":
                continue
            origin = producer[src.inputs[0]]  # the input layer's node too, for a clone of the input
            out.setdefault(ir_of[origin.name], {})[ir_of[node.name]] = var
    return out


def apply_packs(graph, model: ir.Model, names: dict[str, str], packs: dict | None) -> dict[str, int]:
    """Declare each sliced tensor's stream as ``nnet::array<T, k>`` (:mod:`.packs`): the type of
    the layer's output variable and of its clone's copies, which share its type name (one typedef
    in defines.h). Returns the resolved {layer: k}."""
    resolved = resolve_packs(model, packs)
    variables = [v for node in graph.get_layers() for v in node.variables.values()]
    for layer, k in resolved.items():
        name = graph.graph[names[layer]].get_output_variable().type.name
        for var in variables:
            if var.type.name == name:
                if not hasattr(var.type, "n_pack"):
                    raise VecQError(f"internal: the stream of '{layer}' has no packed type ({var.type!r})")
                var.type.n_elem, var.type.n_pack, var.type.unpack = int(k), 1, False
    return resolved


def apply_fifo_plan(graph, model: ir.Model, names: dict[str, str], *, uram: bool = False,
                    packs: dict | None = None) -> list[dict]:
    """Set the depth of every stream between layers; ``uram``: the part has UltraRAM (deep wide
    FIFOs are bound to it where that takes less silicon); ``packs``: sliced streams (their types
    set by :func:`apply_packs`). Returns the FIFO records."""
    clones = _clone_outputs(graph, names)
    order = {src: sorted(readers, key=lambda r: int(readers[r].rsplit("_cpy", 1)[1]))
             for src, readers in clones.items()}
    records = []
    for f in plan_fifos(model, clone_order=order, packs=packs):
        if f.dst is None or f.src not in clones:
            var = graph.graph[names[f.src]].get_output_variable()
        else:
            var = graph.get_layer_output_variable(clones[f.src][f.dst])
        if var is None:
            raise VecQError(f"internal: no hls4ml stream for the FIFO {f.name}")
        var.pragma = ("stream", int(f.depth))
        in_uram = bool(uram) and prefers_uram(f.depth, f.width)
        records.append({"fifo": f.name, "stream": var.name, "tokens": f.tokens, "width": f.width, "depth": f.depth,
                        "uram": in_uram, "reason": f.reason})
    return records


__all__ = ["apply_fifo_plan", "apply_packs"]
