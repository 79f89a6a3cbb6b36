"""Full-batch transductive training of the GCN (:mod:`vecq_hw.models.gcn`), float and SGQuant-style.

The image Trainer (:mod:`.trainer`) is built around minibatches of independent samples, data
loaders, DDP and per-epoch checkpoints; a transductive GCN is one graph, one full batch per step
and a labelled-node mask, so it has its own short loop here (:func:`train_gcn`), run from a recipe
by :mod:`.gcn_recipe` (``vecq-hw train`` with ``data.dataset: cora|citeseer``).

Phases (Kipf & Welling's float GCN, then SGQuant's quantisation):

1. **float**: ``float_epochs`` of Adam (weight decay on the first layer only, dropout), the epoch
   with the best validation accuracy kept;
2. **calibration**: every feature type's integer bits from the float model's largest value in it
   (per layer; the stored features per layer *and* degree bucket), one bit of headroom;
3. **QAT** at the starting width ``feature_bits`` for ``epochs`` epochs (weights quantised with the
   recipe's quantiser, every feature type in place), best validation accuracy kept;
4. **ABS** (automatic bit selection, when a budget is given, :mod:`.gcn_abs`): the stored features'
   widths per layer and degree bucket searched on the validation nodes under the memory budget,
   then ``epochs`` more QAT epochs at those widths.

The test nodes are never looked at before the end.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..ir.gnn import degree_buckets
from ..models.gcn import GCN, GCNTypes, SCALE_BITS
from ..nn import set_quantize
from ..nn.gnn import gcn_normalisation
from ..planetoid import Graph
from .gcn_abs import select_widths, stored_bits


@dataclass
class GCNConfig:
    """What :func:`train_gcn` trains (a validated recipe's fields; see :mod:`.gcn_recipe`)."""

    hidden: int = 16
    dropout: float = 0.5
    lr: float = 0.01
    weight_decay: float = 5e-4
    float_epochs: int = 200
    epochs: int = 200
    seed: int = 0
    #: the weight quantiser, one config for both layers or one per layer (component-wise)
    weight_quant: object = field(default_factory=lambda: {"method": "vecq", "bits": 4})
    #: starting (and, without a budget, the uniform) width of the stored features
    feature_bits: int = 8
    #: ABS: average bits per stored feature value (None: no search)
    budget_bits: float | None = None
    min_bits: int = 2
    #: lower degree bounds (d̃, self-loop included) of the buckets after the first
    degree_bounds: tuple = (4, 7)
    #: the stored features' integer bits per degree bucket (False: one range per layer, pooled)
    per_bucket_range: bool = True
    combine_bits: int = 16
    hidden_bits: int = 8
    logit_bits: int = 16
    scale_bits: int = SCALE_BITS


@dataclass
class GCNRun:
    """What :func:`train_gcn` returns: both models (eval mode) and what it measured."""

    float_model: GCN
    model: GCN
    types: GCNTypes
    widths: list
    history: list
    metrics: dict


def features_tensor(graph: Graph) -> torch.Tensor:
    """The binary features as a sparse (n_nodes, f) tensor (the training input)."""
    return torch.from_numpy(graph.features.astype(np.float32)).to_sparse()


def accuracy(model: GCN, x: torch.Tensor, graph: Graph, idx) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` (eval mode) on the nodes ``idx``."""
    model.eval()
    with torch.no_grad():
        out = model.forward_sparse(x)
    i = torch.as_tensor(idx)
    y = torch.as_tensor(graph.labels)[i]
    return float((out[i].argmax(1) == y).float().mean()), float(F.cross_entropy(out[i], y))


def fit(model: GCN, x: torch.Tensor, graph: Graph, cfg: GCNConfig, epochs: int, phase: str,
        history: list, progress=None) -> float:
    """``epochs`` full-batch Adam steps; the model ends with the weights of its best validation
    epoch (first of equals). Returns that validation accuracy."""
    opt = torch.optim.Adam([{"params": model.conv1.parameters(), "weight_decay": cfg.weight_decay},
                            {"params": model.conv2.parameters(), "weight_decay": 0.0}], lr=cfg.lr)
    y = torch.as_tensor(graph.labels)
    train = torch.as_tensor(graph.train_idx)
    best, best_state = -1.0, None
    for epoch in range(epochs):
        t0 = time.perf_counter()
        model.train()
        opt.zero_grad()
        loss = F.cross_entropy(model.forward_sparse(x)[train], y[train])
        loss.backward()
        opt.step()
        val, val_loss = accuracy(model, x, graph, graph.val_idx)
        history.append({"phase": phase, "epoch": epoch + 1, "train_loss": loss.item(), "val_acc": val,
                        "val_loss": val_loss, "time_s": round(time.perf_counter() - t0, 4)})
        if val > best:
            best, best_state = val, copy.deepcopy(model.state_dict())
        if progress:
            progress(history[-1])
    model.load_state_dict(best_state)
    model.eval()
    return best


def _max_abs(t: torch.Tensor) -> float:
    return float(t.detach().abs().max()) if t.numel() else 0.0


def integer_bits(v: float) -> int:
    """Integer bits of a signed type holding +-v with one bit of headroom."""
    return max(1, math.ceil(math.log2(v)) + 2) if v > 0 else 1


@dataclass
class Ranges:
    """What the feature types are fitted to: per layer the largest |z| and |y|, and the values u
    each degree bucket stores (before their rounding)."""

    z: list
    y: list
    u: list  # [layer][bucket] -> float64 array
    _fitted: dict = field(default_factory=dict, repr=False)

    def pooled(self) -> "Ranges":
        """The same ranges with every bucket of a layer fitted to all of the layer's stored values."""
        return Ranges(self.z, self.y, [[np.concatenate(layer)] * len(layer) for layer in self.u])

    def stored_integer_bits(self, layer: int, bucket: int, width: int) -> int:
        """The integer bits that round this bucket's values to ``width`` bits with the least squared error
        (SGQuant's per-bucket range; saturation clips the rare large values)."""
        key = (layer, bucket, width)
        if key not in self._fitted:
            v = self.u[layer][bucket]
            top = integer_bits(float(np.abs(v).max(initial=0.0)))
            errs = [(float(np.mean((GCNTypes.stored(width, i).quantize(v) - v) ** 2)), -i)
                    for i in range(top - 8, top + 1)] if v.size else [(0.0, -top)]
            self._fitted[key] = -min(errs)[1]
        return self._fitted[key]


def calibrate(model: GCN, x: torch.Tensor) -> Ranges:
    """The ranges of ``model``'s features on the whole graph (its own types where it has them)."""
    model.eval()
    out = Ranges([], [], [])
    h = x
    with torch.no_grad():
        for conv in model.convs():
            z = torch.sparse.mm(h, conv.combine_weight()) if h.is_sparse else h @ conv.combine_weight()
            out.z.append(_max_abs(z))
            u = conv._q(conv.combine_type, z) * conv.pre[:, None]
            y = conv(h)
            out.y.append(_max_abs(conv.neighbour_sum(u.unsqueeze(0))[0] * conv.post[:, None] + conv.bias))
            out.u.append([u[torch.from_numpy(conv.node_bucket == b)].double().numpy().ravel()
                          for b in range(int(conv.node_bucket.max()) + 1)])
            h = torch.relu(y)
    return out


def types_for(ranges: Ranges, cfg: GCNConfig, widths) -> GCNTypes:
    """The feature types at stored widths ``widths[layer][bucket]``, fitted to ``ranges``."""
    def t(bits, v, mode="AP_RND"):
        return f"ap_fixed<{bits},{integer_bits(v)},{mode},AP_SAT>"
    base = GCNTypes(combine=tuple(t(cfg.combine_bits, v) for v in ranges.z),
                    out=(t(cfg.hidden_bits, ranges.y[0]), t(cfg.logit_bits, ranges.y[1], "AP_RND_CONV")))
    ints = [[ranges.stored_integer_bits(i, b, w) for b, w in enumerate(wl)] for i, wl in enumerate(widths)]
    return base.with_buckets(widths, ints)


def _ranges(cfg: GCNConfig, r: Ranges) -> Ranges:
    return r if cfg.per_bucket_range else r.pooled()


def build(graph: Graph, cfg: GCNConfig, *, quantized: bool) -> GCN:
    """The float model, or the quantised one (types set later), on ``graph``."""
    bits = cfg.scale_bits if quantized else None
    norm = gcn_normalisation(graph.edges, graph.n_nodes, bits)
    norm_in = gcn_normalisation(graph.edges, graph.n_nodes, bits, row_sum=graph.features.sum(1))
    buckets = degree_buckets(norm.degree, cfg.degree_bounds)
    return GCN(norm, graph.features.shape[1], cfg.hidden, graph.n_classes, norm_in=norm_in,
               weight_quant=cfg.weight_quant if quantized else None, node_bucket=buckets, dropout=cfg.dropout,
               types=None)


def train_gcn(graph: Graph, cfg: GCNConfig | None = None, *, float_model: GCN | None = None,
              progress=None) -> GCNRun:
    """Float GCN, then the quantised one (QAT, and ABS under ``cfg.budget_bits``); see the module
    docstring. ``float_model``: a float GCN already trained on ``graph`` (phase 1 is skipped)."""
    cfg = cfg or GCNConfig()
    torch.manual_seed(cfg.seed)
    x, history = features_tensor(graph), []
    if float_model is None:
        float_model = build(graph, cfg, quantized=False)
        fit(float_model, x, graph, cfg, cfg.float_epochs, "float", history, progress)
    model = build(graph, cfg, quantized=True)
    model.load_state_dict(float_model.state_dict())
    ranges = _ranges(cfg, calibrate(float_model, x))
    widths = [[cfg.feature_bits] * len(ranges.u[0]) for _ in range(2)]
    types = types_for(ranges, cfg, widths)
    model.set_types(types)
    set_quantize(model, True)
    fit(model, x, graph, cfg, cfg.epochs, "qat", history, progress)
    search = None
    if cfg.budget_bits is not None:
        ranges = _ranges(cfg, calibrate(model, x))  # the quantised model's own values decide the stored ranges

        def types_of(w):
            return types_for(ranges, cfg, w)
        search = select_widths(model, lambda: accuracy(model, x, graph, graph.val_idx), types_of, widths,
                               cfg.budget_bits, cfg.min_bits)
        widths, types = search.widths, types_of(search.widths)
        model.set_types(types)
        fit(model, x, graph, cfg, cfg.epochs, "qat_abs", history, progress)
    metrics = {"float_test_acc": accuracy(float_model, x, graph, graph.test_idx)[0],
               "qat_test_acc": accuracy(model, x, graph, graph.test_idx)[0],
               "qat_val_acc": accuracy(model, x, graph, graph.val_idx)[0],
               "widths": widths, "stored_bits_avg": stored_bits(model.convs(), widths),
               "abs_steps": None if search is None else search.steps}
    return GCNRun(float_model.eval(), model.eval(), types, widths, history, metrics)


__all__ = ["GCNConfig", "GCNRun", "accuracy", "build", "calibrate", "features_tensor", "fit", "integer_bits",
           "train_gcn", "types_for"]
