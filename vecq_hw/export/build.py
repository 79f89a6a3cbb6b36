"""Walk the traced graph node by node, through the handler table, into an integer model.

Every handler gets the builder, the fx node and (for a module call) the module, and returns
the node's value (:mod:`.values`). The builder keeps, for every integer-model layer that has
a PyTorch counterpart, the fx node whose output equals it (in the deployed type) and how far
the two may differ: the equivalence check (:mod:`.equivalence`) reads that record.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.fx as fx
from torch import nn

from .. import ir
from ..errors import ExportError
from ..fixed import FixedType
from ..names import layer_identifier
from .fold import split_relu
from .trace import target_name, where
from .values import Pending, RawInput, Tensor


@dataclass
class Mapped:
    """An integer-model layer with a PyTorch counterpart (fx ``node``)."""

    node: fx.Node
    value: Tensor
    #: the layers computed from ``inputs`` to this one (this one last); only this one is compared
    segment: list[str]
    inputs: tuple[str, ...]
    #: largest |integer model - PyTorch| of y before the requantisation, in real units
    #: (0: the layer is exact, the two must agree to the bit)
    error: float = 0.0


@dataclass
class Handlers:
    modules: dict = field(default_factory=dict)  # module class -> handler
    functions: dict = field(default_factory=dict)  # callable -> handler
    methods: dict = field(default_factory=dict)  # method name -> handler

    def supported(self) -> str:
        mods = sorted({c.__name__ for c in self.modules})
        return ", ".join(mods)


class Builder:
    def __init__(self, gm: fx.GraphModule, input_shape: tuple, options, handlers: Handlers):
        self.gm = gm
        self.opts = options
        self.handlers = handlers
        self.modules = dict(gm.named_modules())
        self.input_shape = tuple(int(s) for s in input_shape)
        self.layers: list[ir.Layer] = []
        self.values: dict[fx.Node, object] = {}
        self.mapped: dict[str, Mapped] = {}
        self.calls: dict[str, fx.Node] = {}
        self.has_input = False
        #: the model output's value (its layout and type): what PyTorch's model(x) is compared with
        self.output: Tensor | None = None

    # -- helpers for handlers -----------------------------------------------------------------
    def fail(self, node: fx.Node, message: str):
        raise ExportError(message, field=where(node))

    def value(self, node: fx.Node, i: int = 0):
        a = node.args[i] if i < len(node.args) else None
        if not isinstance(a, fx.Node):
            self.fail(node, f"{target_name(node)} needs a tensor argument here, got {a!r}")
        return self.values[a]

    def name(self, base: str, kind: str = "layer") -> str:
        """A layer name a user maps back to the model: the module's attribute path with '.' ->
        '_' (``features.0`` -> ``features_0``), as refusals name modules, or the fx name of a
        function call (``relu``, ``add_1``); see :func:`vecq_hw.names.layer_identifier`."""
        return layer_identifier(base, kind, [layer.name for layer in self.layers])

    def layer_name(self, node: fx.Node, kind: str) -> str:
        """:meth:`name` for the layer made from one fx node (a module by its path)."""
        return self.name(str(node.target) if node.op == "call_module" else node.name, kind)

    def emit(self, node: fx.Node, layers: list[ir.Layer], value: Tensor, inputs: tuple[str, ...],
             error: float = 0.0) -> Tensor:
        """Append ``layers`` (a segment computed from ``inputs``); the last one's output is
        PyTorch's output of ``node``."""
        self.layers.extend(layers)
        self.mapped[layers[-1].name] = Mapped(node=node, value=value, segment=[x.name for x in layers],
                                              inputs=inputs, error=float(error))
        return value

    def settle(self, node: fx.Node, i: int = 0, *, before: str | None = None) -> Tensor:
        """The argument as a deployed tensor: a pending add or power-of-two average pool is
        settled in its exact type; a pending weighted layer (no FixedQuant yet) is refused."""
        v = self.value(node, i)
        if isinstance(v, Tensor):
            return v
        if isinstance(v, RawInput):
            self.fail(node, "the model input must first go through a FixedQuant (it names the input's "
                            "fixed-point type); operations on the float input are not exported")
        if isinstance(v, Pending):
            t = v.exact_type()
            if t is None:
                raise ExportError(f"a {v.what} must be followed by [BatchNorm] [ReLU] FixedQuant before "
                                  f"{before or where(node)} reads it: the FixedQuant names its one requantisation",
                                  field=v.where)
            return self.finish(v, t, None)
        self.fail(node, f"{target_name(node)} needs a tensor argument")

    def finish(self, p: Pending, t: FixedType, fq_node: fx.Node | None) -> Tensor:
        """Build a pending operation with its output type ``t`` (the FixedQuant's, or exact)."""
        node = fq_node if fq_node is not None else p.node
        # a FixedQuant after the ReLU: requant into `pre`, then the ReLU (split_relu); settled in
        # the exact type (no FixedQuant), nothing rounds and the ReLU keeps that type
        pre, post = split_relu(t, where(node)) if p.relu and fq_node is not None else (t, t)
        layer = p.layer(self.name(p.name, p.layer_kind()), pre)
        layers = [layer]
        if p.relu:
            layers.append(ir.ReLU(name=self.name(layer.name + "_relu", ir.ReLU.kind), out_type=post))
        inputs = tuple(layer.inputs) if layer.inputs else (p.inp.layer,)
        if not layer.inputs:
            layer.inputs = inputs
        value = Tensor(layer=layers[-1].name, tshape=p.tshape, ishape=p.ishape, typ=post, order=p.order)
        return self.emit(node, layers, value, inputs, p.error_bound(pre))

    # -- the walk -----------------------------------------------------------------------------
    def run(self) -> list[ir.Layer]:
        output = None
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                if any(isinstance(v, RawInput) for v in self.values.values()):
                    self.fail(node, "forward takes more than one input; the exporter supports one tensor input")
                self.values[node] = RawInput(tshape=self.input_shape)
                continue
            if node.op == "output":
                output = node
                break
            if node.op == "get_attr":
                self.fail(node, f"forward reads the parameter or buffer '{node.target}' directly; only the "
                                f"supported modules may hold weights ({self.handlers.supported()})")
            handler, mod = self._handler(node)
            val = handler(self, node, mod)
            if isinstance(val, Pending):
                val.node = node
                if len(node.users) != 1:
                    self.fail(node, f"the output of {val.what} '{val.where}' is read by {len(node.users)} operations "
                                    "before its FixedQuant; it must go [BatchNorm] [ReLU] FixedQuant first")
            self.values[node] = val
        arg = output.args[0]
        if not isinstance(arg, fx.Node):
            self.fail(output, "forward must return one tensor (not a tuple, list or dict)")
        out = self.settle(output, 0, before="the model output")
        if not self.layers or out.layer != self.layers[-1].name:
            self.fail(output, "the model's output is not its last computed layer")
        self.output = out
        return self.layers

    def _handler(self, node: fx.Node):
        h = self.handlers
        if node.op == "call_module":
            mod = self.modules[node.target]
            path = str(node.target)
            if path in self.calls and (any(True for _ in mod.parameters()) or any(True for _ in mod.buffers())):
                self.fail(node, f"{type(mod).__name__} is called more than once in forward (shared weights); "
                                "give every call its own module")
            self.calls.setdefault(path, node)
            for cls in type(mod).__mro__:
                if cls in h.modules:
                    if type(mod).forward is not cls.forward:
                        self.fail(node, f"{type(mod).__name__} overrides forward() of {cls.__name__}; "
                                        "the exporter only follows the modules it knows")
                    return h.modules[cls], mod
                if cls is nn.Module:
                    break
            self.fail(node, f"unsupported module {type(mod).__name__}; supported: {h.supported()}, "
                            "+ (add), F.relu, flatten, mean over (2, 3)")
        if node.op == "call_function" and node.target in h.functions:
            return h.functions[node.target], None
        if node.op == "call_method" and node.target in h.methods:
            return h.methods[node.target], None
        self.fail(node, f"unsupported operation {target_name(node)} in forward; supported: the modules "
                        f"{h.supported()}, and +, relu, flatten(1), view(x.size(0), -1), mean((2, 3)), "
                        "adaptive_avg_pool2d(x, 1)")
