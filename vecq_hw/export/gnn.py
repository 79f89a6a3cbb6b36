"""Export a GCN on one graph (:mod:`vecq_hw.models.gcn`) to the integer model, checked bit for bit.

    result = export_gcn(model, graph.features, ExportOptions(name="gcn_cora"))
    result.model          # input (n_nodes, f) -> node_dense -> gcn_aggregate -> relu -> ...

The exporter is the image models' one (torch.fx trace of ``forward``, the handler table, the
equivalence check); :mod:`.gnn_handlers` adds the GCN layer. The model is exported from a float64
copy with the graph's own features as the one sample: in float64 every sum and product PyTorch
computes in a GCN layer is exact (widths below 53 bits), so the check holds the integer model to
PyTorch's outputs exactly, layer by layer and at the output (every node's logits).
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from dataclasses import replace

from .torch_export import ExportOptions, ExportResult, export


def export_gcn(model: torch.nn.Module, features, options: ExportOptions | None = None) -> ExportResult:
    """Export ``model`` (eval mode) on its graph's ``features`` (n_nodes, f); see the module docstring."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    double = copy.deepcopy(model).double().eval()
    opts = replace(options or ExportOptions(), check_dtype="float64")
    return export(double, x.shape[1:], opts, samples=torch.from_numpy(x))


__all__ = ["export_gcn"]
