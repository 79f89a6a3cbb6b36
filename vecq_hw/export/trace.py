"""Follow a model's ``forward`` with torch.fx: the graph the exporter reads.

The tracer stops at our layers (VecQ layers, FixedQuant) and at torch's own modules (fx's
default: every ``torch.nn`` module except containers is a leaf); a user's own modules
(residual blocks, ...) are traced through, so their ``forward`` is what gets exported.
Whatever fx cannot follow (control flow on tensor values, ...) is refused with the module
it happened in.
"""

from __future__ import annotations

import re
import sys

import torch.fx as fx
from torch import nn

from ..errors import ExportError


def is_ours(m: nn.Module) -> bool:
    """A VecQ weighted layer or a FixedQuant: leaves, handled by the exporter."""
    from ..nn import FixedQuant, VecQConv2d, VecQLinear
    return isinstance(m, (VecQLinear, VecQConv2d, FixedQuant))


class _Tracer(fx.Tracer):
    def __init__(self, leaves: tuple = ()):
        super().__init__()
        self.record_stack_traces = True
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return is_ours(m) or isinstance(m, self.leaves) or super().is_leaf_module(m, qualname)


def refuse_hidden_calls(model: nn.Module) -> None:
    """Refuse what runs in ``model(x)`` but not in the traced graph the exporter reads: forward
    hooks and pre-hooks (on any module, or global ones), a ``forward`` patched onto an instance,
    a class that overrides ``__call__``. Each changes what the model computes where fx (and so
    the integer model) does not look; weight_norm and spectral_norm are such hooks."""
    from torch.nn.modules import module as torch_module
    for kind in ("_global_forward_hooks", "_global_forward_pre_hooks"):
        if getattr(torch_module, kind, None):
            raise ExportError(f"a global module {kind[8:-1].replace('_', ' ')} is registered "
                              "(torch.nn.modules.module.register_module_forward_*hook); it changes every module's "
                              "output where the trace does not see it: remove it before exporting", field="forward")
    for path, m in model.named_modules():
        name = path or type(model).__name__
        for kind in ("_forward_hooks", "_forward_pre_hooks"):
            if getattr(m, kind, None):
                raise ExportError(f"{type(m).__name__} has a {kind[1:-1].replace('_', ' ')} (register_{kind[1:-1]}, "
                                  "weight_norm, spectral_norm, ...): it changes what the module computes where the "
                                  "trace does not see it; remove it before exporting", field=name)
        if "forward" in vars(m):
            raise ExportError(f"{type(m).__name__} has its own forward assigned on the instance (a patched "
                              "forward); the exporter follows the class's forward only", field=name)
        if type(m).__call__ is not nn.Module.__call__:
            raise ExportError(f"{type(m).__name__} overrides __call__; the exporter follows forward() only",
                              field=name)


def trace(model: nn.Module, leaves: tuple = ()) -> fx.GraphModule:
    """The fx graph of ``model.forward`` (dead code removed), or one ExportError line. ``leaves``:
    more module types not to trace into (the handler table's: a handler reads the module whole)."""
    tracer = _Tracer(leaves)
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # fx's own errors are many types; all mean "cannot follow"
        where = _innermost_module(model, sys.exc_info()[2])
        first = " ".join(str(exc).split())[:200]
        raise ExportError(f"torch.fx cannot follow forward() ({type(exc).__name__}: {first}); the exporter only "
                          "exports what it can trace: no control flow on tensor values, one tensor input",
                          field=where or "forward") from None
    gm = fx.GraphModule(model, graph)
    gm.graph.eliminate_dead_code()  # computations that never reach the output are not the network
    gm.recompile()
    return gm


def _innermost_module(model: nn.Module, tb) -> str | None:
    """Attribute path of the innermost module of ``model`` whose code raised (from ``self``)."""
    paths = {id(m): name for name, m in model.named_modules()}
    found = None
    while tb is not None:
        s = tb.tb_frame.f_locals.get("self")
        if s is not None and id(s) in paths:
            found = paths[id(s)] or type(model).__name__
        tb = tb.tb_next
    return found


_LINE = re.compile(r'File "([^"]+)", line (\d+)')


def where(node: fx.Node) -> str:
    """How a refusal names an fx node: a module by its attribute path, else the operation
    and its line in the user's forward."""
    if node.op == "call_module":
        return str(node.target)
    m = _LINE.search(node.stack_trace or "")
    at = f" at {m.group(1).rsplit('/', 1)[-1]}:{m.group(2)}" if m else ""
    return f"forward: {node.name}{at}"


def target_name(node: fx.Node) -> str:
    t = node.target
    if node.op == "call_method":
        return f".{t}()"
    mod = getattr(t, "__module__", None) or ""
    name = getattr(t, "__name__", str(t))
    if mod in ("_operator", "operator"):
        return f"operator.{name}"
    if mod.startswith("torch"):
        return f"{'F' if 'functional' in mod else 'torch'}.{name}"
    return name
