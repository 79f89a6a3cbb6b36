"""SRQ's regulariser: the expected cost of the design ``fit`` would build, as a differentiable
function of the learned width distributions.

The network is traced once by the exporter (:func:`vecq_hw.export.torch_export.build_layers`,
no equivalence check: only its structure is read) into an integer model; every quantiser that
learns its width is a *width variable* (named by its module path): a weight quantiser varies
its layer's bits, an activation quantiser the out_type of the layers its FixedQuant types (the
requantisation and, after a ReLU, the ReLU, split as the exporter splits them). The folding is
fixed by the frame rate (:func:`vecq_hw.hls.estimate.widths.rate_folding`: fit's rule for one
II), or, without one, is the plan ``fit`` picks for the starting widths. Then
:func:`vecq_hw.hls.estimate.widths.width_tables` prices every layer at every combination of the
widths it sees with the estimator's own per-layer estimate (``Mapping.estimate``), and

    E[cost] = Σ_layers Σ_{widths it sees} Π_v P_v(width_v) · cost_layer(widths)

is an exact expectation over the (independent) width distributions P_v of
:mod:`vecq_hw.quant.srq_grid`: multilinear in them, so its gradient reaches every keep
probability. (No interpolation between integer widths: each integer width is priced as built.)
``cost: bits`` prices the weights' code bits instead, as an average per weight.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.fx as fx
from torch import nn

from ..errors import VecQError
from ..export.fold import split_relu
from ..export.torch_export import ExportOptions, build_layers
from ..hls.estimate import fit, get_part
from ..hls.estimate.widths import rate_folding, width_tables
from ..nn import FixedQuant, SRQActivation
from ..quant import SRQ

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass
class WidthCost:
    """Σ of per-layer tables over width variables (each variable's choices: its widths low..high)."""

    low: dict[str, int]  # variable -> its lowest width (choice 0)
    terms: list[tuple[tuple[str, ...], torch.Tensor]]  # (variables, float64 table)
    budget: float
    metric: str  # 'luts' or 'bits' (average code bits per weight)
    reuse: dict[str, int]

    def expected(self, probs: dict[str, torch.Tensor]) -> torch.Tensor:
        """E[cost] under ``probs`` (variable -> P over its widths), float64, differentiable."""
        total = torch.zeros((), dtype=torch.float64)
        for variables, table in self.terms:
            if not variables:
                total = total + table
                continue
            letters = _LETTERS[:len(variables)]
            spec = f"{letters}," + ",".join(letters) + "->"
            total = total + torch.einsum(spec, table, *(probs[v].double() for v in variables))
        return total

    def at(self, widths: dict[str, int]) -> float:
        """The cost of one assignment (variable -> width)."""
        return float(sum(t[tuple(widths[v] - self.low[v] for v in vs)] for vs, t in self.terms))

    def state(self) -> dict:
        return {"low": dict(self.low), "terms": [[list(v), t.clone()] for v, t in self.terms],
                "budget": float(self.budget), "metric": self.metric, "reuse": dict(self.reuse)}

    @classmethod
    def from_state(cls, s: dict) -> "WidthCost":
        return cls(low=dict(s["low"]), terms=[(tuple(v), t) for v, t in s["terms"]], budget=float(s["budget"]),
                   metric=str(s["metric"]), reuse=dict(s["reuse"]))


def learning_quantizers(model: nn.Module) -> dict[str, object]:
    """{module path: quantiser} of every SRQ quantiser still searching its width (a weight
    quantiser under its layer's path, an activation quantiser under its own)."""
    out = {}
    for path, m in model.named_modules():
        q = m if isinstance(m, SRQActivation) else getattr(m, "weight_quant", None)
        if isinstance(q, (SRQ, SRQActivation)) and q.widths.searching:
            out[path] = q
    return out


def _weighted_source(node: fx.Node, modules: dict) -> str | None:
    """The VecQ layer feeding a FixedQuant node through [BatchNorm] [ReLU] (None: another
    FixedQuant or the input comes first)."""
    n = node.args[0] if node.args else None
    while isinstance(n, fx.Node):
        m = modules.get(n.target) if n.op == "call_module" else None
        if isinstance(m, FixedQuant):
            return None
        if hasattr(m, "weight_quant"):
            return str(n.target)
        n = n.args[0] if n.args and isinstance(n.args[0], fx.Node) else None
    return None


def _variables(builder, learning: dict) -> tuple[dict, dict]:
    """(weights, types) for width_tables from the builder's record of each layer's origin."""
    weights, types = {}, {}
    for seg_end, mapped in builder.mapped.items():
        node = mapped.node
        if node.op != "call_module" or not isinstance(builder.modules[node.target], FixedQuant):
            continue
        seg, q = mapped.segment, learning.get(str(node.target))
        if isinstance(q, SRQActivation):
            ts = [q.type_at(j) for j in range(q.widths.low, q.widths.high + 1)]
            pairs = [split_relu(t, str(node.target)) if len(seg) == 2 else (t, t) for t in ts]
            types[seg[0]] = (str(node.target), [p for p, _ in pairs])
            if len(seg) == 2:
                types[seg[1]] = (str(node.target), [p for _, p in pairs])
        source = _weighted_source(node, builder.modules)
        wq = learning.get(source)
        if isinstance(wq, SRQ):
            weights[seg[0]] = (source, list(range(wq.widths.low, wq.widths.high + 1)))
    return weights, types


def _folding(imodel, opts: dict) -> dict[str, int]:
    if opts["fps"] is not None:
        return rate_folding(imodel, opts["fps"], opts["clock_period"], opts["io_type"])
    res = fit(imodel, opts["part"], headroom=opts["headroom"], clock_period=opts["clock_period"],
              io_type=opts["io_type"])
    return res.closest.reuse()


def price_model(model: nn.Module, input_shape, opts: dict) -> WidthCost:
    """The :class:`WidthCost` of ``model``'s searching quantisers under the recipe section
    ``opts`` (train.srq): part, frame rate or fit's folding, io type, cost, budget."""
    net = copy.deepcopy(model).cpu().eval()
    learning = learning_quantizers(net)
    imodel, builder = build_layers(net, input_shape, ExportOptions(name="srq_search"))
    weights, types = _variables(builder, learning)
    missing = sorted(set(learning) - {v for v, _ in list(weights.values()) + list(types.values())})
    if missing:
        raise VecQError(f"cannot price the width of '{missing[0]}': the exporter maps it to no layer",
                        field="train.srq")
    reuse = _folding(imodel, opts)
    metric = "weight_bits" if opts["cost"] == "bits" else "luts"
    terms = width_tables(imodel, reuse, opts["io_type"], weights, types, metric, part=opts["part"])
    scale = 1.0
    if opts["cost"] == "bits":  # average code bits per weight
        scale = 1.0 / sum(int(layer.codes.size) for layer in imodel.layers if hasattr(layer, "codes"))
        budget = float(opts["bits_budget"])
    else:
        budget = float(opts["lut_budget"] or get_part(opts["part"]).luts * opts["headroom"])
    low = {v: q.widths.low for v, q in learning.items()}
    return WidthCost(low=low, terms=[(t.variables, torch.tensor(t.table * scale, dtype=torch.float64))
                                     for t in terms], budget=budget, metric=opts["cost"], reuse=reuse)


__all__ = ["WidthCost", "learning_quantizers", "price_model"]
