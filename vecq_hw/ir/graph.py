"""The integer model: a DAG of layers, listed in topological order.

Every layer names its ``inputs``; a layer that names none reads the one listed before it, so
a chain can still be written as a plain list. :meth:`Model.check` refuses anything the
contract cannot compute exactly: cycles, unknown or later input names, more or fewer
inputs than a kind takes, more than one output (a layer nobody reads, other than the last),
and every kind's own check on the shapes and types that reach it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, NamedTuple

from ..errors import FormatError
from ..fixed import FixedType
from ..names import identifier_problem
from .layers import Input, Layer, check_buildable_types


class Node(NamedTuple):
    """A layer with the shapes and types that reach it (topological order)."""

    layer: Layer
    in_shapes: tuple[tuple[int, ...], ...]
    in_types: tuple[FixedType, ...]
    out_shape: tuple[int, ...]


@dataclass(eq=False)
class Model:
    """An integer model: a name and its layers, the first an :class:`Input`, the last the output."""

    name: str
    layers: list[Layer] = field(default_factory=list)

    def __post_init__(self):
        self.link()

    def link(self) -> "Model":
        """Give every non-input layer without ``inputs`` the layer listed before it.

        Such a link is remembered as automatic and follows the list: renaming or inserting a
        layer re-links it on the next call, while inputs a caller set stay as they are."""
        for prev, layer in zip(self.layers, self.layers[1:]):
            if isinstance(layer, Input):
                continue
            auto = getattr(layer, "_auto_inputs", None)
            if not layer.inputs or (auto is not None and tuple(layer.inputs) == auto):
                layer.inputs = (prev.name,)
                layer._auto_inputs = layer.inputs
            elif not isinstance(layer.inputs, tuple):
                layer.inputs = tuple(layer.inputs)
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Model):
            return NotImplemented
        self.link(), other.link()
        return (self.name == other.name and len(self.layers) == len(other.layers)
                and all(a == b for a, b in zip(self.layers, other.layers)))

    # -- structure ---------------------------------------------------------------------------
    @property
    def input(self) -> Input:
        return self.layers[0]

    @property
    def output(self) -> Layer:
        return self.layers[-1]

    @property
    def output_type(self) -> FixedType:
        return self.layers[-1].out_type

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def consumers(self) -> dict[str, list[str]]:
        """Layer name -> names of the layers that read it (in order)."""
        self.link()
        out: dict[str, list[str]] = {layer.name: [] for layer in self.layers}
        for layer in self.layers:
            for src in layer.inputs:
                if src in out:
                    out[src].append(layer.name)
        return out

    @property
    def is_chain(self) -> bool:
        """Every layer reads exactly the one listed before it."""
        self.link()
        return all(tuple(layer.inputs) == (prev.name,) for prev, layer in zip(self.layers, self.layers[1:]))

    # -- inference ---------------------------------------------------------------------------
    def nodes(self) -> list[Node]:
        """Every layer with its input shapes/types and output shape (after :meth:`check`)."""
        self.link()
        info: dict[str, tuple[tuple[int, ...], FixedType]] = {}
        out = []
        for layer in self.layers:
            ins = [info[n] for n in layer.inputs]
            in_shapes = tuple(s for s, _ in ins)
            in_types = tuple(t for _, t in ins)
            shape = tuple(int(s) for s in layer.infer_shape(in_shapes))
            info[layer.name] = (shape, layer.out_type)
            out.append(Node(layer, in_shapes, in_types, shape))
        return out

    def walk(self) -> Iterator[tuple[Layer, tuple | None, FixedType | None, tuple]]:
        """(layer, first input's shape, first input's type, out_shape) in topological order.

        The single-input view of :meth:`nodes`; code that handles multi-input kinds uses that."""
        for n in self.nodes():
            yield (n.layer, n.in_shapes[0] if n.in_shapes else None, n.in_types[0] if n.in_types else None,
                   n.out_shape)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {n.layer.name: n.out_shape for n in self.nodes()}

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.nodes()[-1].out_shape

    # -- validation --------------------------------------------------------------------------
    def check(self, where: str = "model") -> "Model":
        """Refuse, with one clear line, any model the contract cannot compute exactly."""
        self.link()

        def fail_at(loc):
            def fail(fld, msg):
                raise FormatError(msg, file=where, field=f"{loc}.{fld}" if fld else loc)
            return fail

        if not self.layers or not isinstance(self.layers[0], Input):
            raise FormatError("the first layer must be an input layer", file=where, field="layers")
        index: dict[str, int] = {}
        for i, layer in enumerate(self.layers):
            loc = f"layers[{i}] ({layer.name})"
            why = identifier_problem(layer.name)  # a layer's name reaches the generated C++
            if why:
                raise FormatError(why, file=where, field=f"{loc}.name")
            if layer.name in index:
                raise FormatError(f"duplicate layer name '{layer.name}'", file=where, field=loc)
            index[layer.name] = i
            if i and isinstance(layer, Input):
                raise FormatError("only the first layer may be an input", file=where, field=loc)
        _check_edges(self.layers, index, where)
        info: dict[str, tuple[tuple[int, ...], FixedType]] = {}
        for i, layer in enumerate(self.layers):
            loc = f"layers[{i}] ({layer.name})"
            fail = fail_at(loc)
            in_shapes = tuple(info[n][0] for n in layer.inputs)
            in_types = tuple(info[n][1] for n in layer.inputs)
            layer.check(in_shapes, in_types, fail)
            check_buildable_types(layer, fail)
            shape = tuple(int(s) for s in layer.infer_shape(in_shapes))
            if any(s <= 0 for s in shape):
                raise FormatError(f"output shape {shape} is empty", file=where, field=loc)
            info[layer.name] = (shape, layer.out_type)
        _check_computes_something(self.layers, where)
        return self


#: kinds that only relabel their input's values (no arithmetic, no reordering a back end keeps)
_RELAYOUT_KINDS = ("flatten",)


def _check_computes_something(layers: list[Layer], where: str) -> None:
    """A model whose output is its input (nothing after it, or only flattens) is no network: its
    output port would be its input port (g++ refuses the generated top function)."""
    if len(layers) < 2:
        raise FormatError("a model needs at least one layer after its input", file=where, field="layers")
    if all(layer.kind in _RELAYOUT_KINDS for layer in layers[1:]):
        raise FormatError(f"the model computes nothing: every layer after the input is a "
                          f"{' or '.join(_RELAYOUT_KINDS)}, so its output is its input", file=where,
                          field=f"layers[{len(layers) - 1}] ({layers[-1].name})")


def find_cycle(layers: list[Layer]) -> list[str] | None:
    """A list of names a -> b -> ... -> a along input edges, or None (unknown names ignored)."""
    edges = {layer.name: [n for n in layer.inputs] for layer in layers}
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    for start in edges:
        if state.get(start):
            continue
        stack = [(start, iter(edges[start]))]
        path = [start]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                path.pop()
                continue
            if nxt not in edges:
                continue
            if state.get(nxt) == 1:
                cyc = path[path.index(nxt):] + [nxt]
                return list(reversed(cyc))  # in data-flow order
            if not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(edges[nxt])))
                path.append(nxt)
    return None


def _check_edges(layers: list[Layer], index: dict[str, int], where: str) -> None:
    for i, layer in enumerate(layers):
        loc = f"layers[{i}] ({layer.name})"
        lo, hi = layer.arity
        n = len(layer.inputs)
        if not lo <= n <= hi:
            want = f"{lo}" if lo == hi else f"{lo} to {hi}"
            raise FormatError(f"{layer.kind} takes {want} inputs, got {n}", file=where, field=f"{loc}.inputs")
        for src in layer.inputs:
            if not isinstance(src, str) or src not in index:
                raise FormatError(f"unknown input '{src}' (no layer has that name)", file=where,
                                  field=f"{loc}.inputs")
    cycle = find_cycle(layers)
    if cycle:
        first = cycle[0]
        raise FormatError("the layers form a cycle: " + " -> ".join(cycle), file=where,
                          field=f"layers[{index[first]}] ({first}).inputs")
    for i, layer in enumerate(layers):
        for src in layer.inputs:
            if index[src] >= i:
                raise FormatError(f"input '{src}' is listed after this layer; list layers in topological "
                                  "order (every layer after its inputs)", file=where,
                                  field=f"layers[{i}] ({layer.name}).inputs")
    read = {src for layer in layers for src in layer.inputs}
    unread = [layer.name for layer in layers[:-1] if layer.name not in read]
    if unread:
        raise FormatError(f"layer '{unread[0]}' is not read by any layer: a model has one output, the last "
                          f"layer ('{layers[-1].name}'); outputs not read: {', '.join(unread)}", file=where,
                          field=f"layers[{index[unread[0]]}] ({unread[0]})")
