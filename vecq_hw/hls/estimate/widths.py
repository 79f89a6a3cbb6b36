"""One integer model priced at other bit-widths: the per-layer cost tables SRQ's width search
differentiates (:mod:`vecq_hw.train.srq_cost`), from the very per-layer estimate that
:func:`.estimate` sums and :func:`.fit` searches with (``Mapping.estimate``).

A *width variable* is a name (a quantiser's module path) with choices: for weights the bits
k of an 'int' levels table, for activations the out_type of the layers it types. Each layer's
cost depends on the variables it sees: its own weights' k, its own out_type and the types of
its inputs (a layer whose out_type is its input's type, a max pool or a flatten, follows the
input's variable). :func:`width_tables` enumerates, per layer, every combination of the
variables it sees (at most three: a few hundred estimates) and returns one table per layer;
the cost of any assignment is the sum of the tables' entries, equal to ``estimate(model at
those widths).total('luts')`` (tests/test_srq.py checks it against a real export). In io_stream
that total has a row of its own, the FIFOs between the layers (a token is a whole pixel, so a
FIFO's width follows its producer's type): more tables over the activation variables, from the
very :func:`.model.fifo_estimate` (:func:`_fifo_terms`).

The folding does not depend on the widths (cycles are set by the geometry and R), so a frame
rate fixes it once: :func:`rate_folding` is fit's rule for one target II (every weighted
layer the largest R whose cycles keep up with it).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import numpy as np

from ... import ir
from ...errors import VecQError
from ...fixed import FixedType
from ..folding import divisors, is_weighted, products_per_input, weighted_nodes
from ..mappings import mapping_for
from .model import fifo_estimate
from .parts import Part, get_part

METRICS = ("luts", "weight_bits")
#: where paths meet, the FIFO row is priced whole per combination of the activation variables: at most
FIFO_COMBINATIONS = 4096


@dataclass
class Term:
    """One layer's cost over the variables it sees (``table`` has one axis per variable)."""

    layer: str
    variables: tuple[str, ...]
    table: np.ndarray


def rate_folding(model: ir.Model, fps: float, clock_period: float, io_type: str) -> dict[str, int]:
    """{weighted layer: the largest R whose cycles per frame are <= the frame's cycles at
    ``fps``}; one line naming the layer that cannot keep up even unfolded."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0:
        raise VecQError(f"expected a frame rate > 0, got {fps!r}", field="fps")
    frame = math.floor(1e9 / (clock_period * fps))
    plan = {}
    for node in weighted_nodes(model):
        mapping = mapping_for(node)
        ok = [r for r in divisors(products_per_input(node)) if mapping.estimate(node, r, io_type).cycles <= frame]
        if not ok:
            fastest = mapping.estimate(node, 1, io_type).cycles
            raise VecQError(f"layer '{node.layer.name}' needs {fastest} cycles per frame even unfolded: at most "
                            f"{1e9 / (clock_period * fastest):,.0f} frames/s at {clock_period} ns, asked {fps:,}",
                            field="fps")
        plan[node.layer.name] = max(ok)
    return plan


def _weight_variant(layer: ir.Weighted, bits: int) -> ir.Weighted:
    lo, hi = ir.code_range(bits)
    return replace(layer, bits=int(bits), levels=ir.named_levels("int", bits),
                   codes=np.clip(layer.codes, lo, hi).astype(np.int8))


def _cost(node: ir.Node, reuse: int, io_type: str, metric: str) -> float:
    if metric == "weight_bits":
        return float(node.layer.weight_memory()["code_bits"]) if isinstance(node.layer, ir.Weighted) else 0.0
    return float(mapping_for(node).estimate(node, reuse, io_type).luts)


def _propagate(nodes, types: dict) -> dict:
    """``types`` plus every layer whose out_type is its single input's and whose input varies."""
    out = dict(types)
    for node in nodes:
        name, ins = node.layer.name, node.layer.inputs
        if name not in out and len(ins) == 1 and ins[0] in out and node.layer.out_type == node.in_types[0]:
            out[name] = out[ins[0]]
    return out


def width_tables(model: ir.Model, reuse: dict[str, int], io_type: str,
                 weights: dict[str, tuple[str, list[int]]], types: dict[str, tuple[str, list[FixedType]]],
                 metric: str = "luts", part=None) -> list[Term]:
    """One :class:`Term` per layer: its cost (``metric``: estimated LUTs at the folding
    ``reuse``, or the bits of its weight codes) for every combination of the width variables
    it sees. ``weights``: weighted layer -> (variable, [k per choice]); ``types``: layer ->
    (variable, [out_type per choice]); one variable may type several layers (a requantisation
    and its ReLU), with the same number of choices everywhere. In io_stream, ``metric`` 'luts'
    adds the FIFO row's term (``part``: the estimator's, for where deep FIFOs go)."""
    if metric not in METRICS:
        raise VecQError(f"expected one of {', '.join(METRICS)}, got {metric!r}", field="metric")
    nodes = model.nodes()
    types = _propagate(nodes, types)
    sizes = {v: len(c) for v, c in list(weights.values()) + list(types.values())}
    terms = []
    for node in nodes:
        layer = node.layer
        seen = [weights[layer.name][0]] if layer.name in weights else []
        seen += [types[n][0] for n in (layer.name, *layer.inputs) if n in types]
        variables = tuple(dict.fromkeys(seen))
        table = np.zeros([sizes[v] for v in variables])
        r = int(reuse.get(layer.name, 1)) if is_weighted(node) else 0
        for combo in itertools.product(*(range(sizes[v]) for v in variables)):
            pick = dict(zip(variables, combo))
            table[combo] = _cost(_variant(node, pick, weights, types), r, io_type, metric)
        terms.append(Term(layer.name, variables, table))
    if metric == "luts" and io_type == "io_stream":
        terms += _fifo_terms(model, types, sizes, part)
    return terms


def _fifo_terms(model: ir.Model, types: dict, sizes: dict, part) -> list[Term]:
    """The io_stream FIFO row's LUTs over the activation variables. A chain (no layer reads two
    tensors) keeps every FIFO at its default depth whatever the widths and each FIFO's width
    follows its one producer's type, so the row is a sum of one table per variable (exact); where
    paths meet, a FIFO's depth may depend on the widths and the row is priced whole per
    combination."""
    p = part if isinstance(part, Part) else get_part(part)
    variables = tuple(dict.fromkeys(v for v, _ in types.values()))

    def luts(pick: dict[str, int]) -> float:
        layers = [replace(layer, out_type=types[layer.name][1][pick.get(types[layer.name][0], 0)])
                  if layer.name in types else layer for layer in model.layers]
        return fifo_estimate(replace(model, layers=layers), p).luts

    base = luts({})
    if not any(len(layer.inputs) > 1 for layer in model.layers):
        return [Term("(fifos)", (), np.array(base))] + [
            Term(f"(fifos) {v}", (v,), np.array([luts({v: i}) - base for i in range(sizes[v])])) for v in variables]
    shape = [sizes[v] for v in variables]
    if math.prod(shape) > FIFO_COMBINATIONS:
        raise VecQError(f"cannot price the FIFOs of {len(variables)} learned activation widths where paths meet "
                        f"({math.prod(shape):,} combinations, at most {FIFO_COMBINATIONS:,}): learn fewer",
                        field="train.srq.act_learn")
    table = np.zeros(shape)
    for combo in itertools.product(*(range(n) for n in shape)):
        table[combo] = luts(dict(zip(variables, combo)))
    return [Term("(fifos)", variables, table)]


def _variant(node: ir.Node, pick: dict[str, int], weights: dict, types: dict) -> ir.Node:
    """``node`` with the widths ``pick`` (variable -> choice index) in its layer and inputs."""
    layer = node.layer
    if layer.name in weights:
        var, ks = weights[layer.name]
        layer = _weight_variant(layer, ks[pick[var]])
    if layer.name in types:
        var, ts = types[layer.name]
        layer = replace(layer, out_type=ts[pick[var]])
    in_types = tuple(types[n][1][pick[types[n][0]]] if n in types else t
                     for n, t in zip(node.layer.inputs, node.in_types))
    return ir.Node(layer, node.in_shapes, in_types, node.out_shape)


def total(terms: list[Term], choice: dict[str, int]) -> float:
    """The cost of one assignment (variable -> choice index)."""
    return float(sum(t.table[tuple(choice[v] for v in t.variables)] for t in terms))


__all__ = ["METRICS", "Term", "rate_folding", "total", "width_tables"]
