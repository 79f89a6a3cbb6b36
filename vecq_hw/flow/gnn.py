"""The flow's GCN steps: export a GCN run (``vecq-hw export`` on a run of a cora/citeseer recipe)
and measure the deployed integer model on the graph's test nodes.

The export is checked bit for bit against PyTorch (in float64, :func:`vecq_hw.export.gnn.export_gcn`);
the accuracy reported is the simulator's, on the public split's test nodes, beside the QAT model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import ir


@dataclass
class GCNExportReport:
    model_dir: Path
    memory: dict  # vecq_hw.ir.gnn_memory.gcn_memory
    equivalence: str
    qat_accuracy: float
    deployed_accuracy: float
    agreement: float
    n_test: int

    def text(self) -> str:
        m = self.memory
        return "\n".join([
            f"wrote {self.model_dir}", self.equivalence,
            f"test nodes ({self.n_test}): QAT model {100 * self.qat_accuracy:.2f} %, deployed integer model "
            f"{100 * self.deployed_accuracy:.2f} %, agreement {100 * self.agreement:.2f} %",
            f"feature memory {m['feature_bits']:,} bits ({m['sgquant_reduction']:.1f}x less than float32, SGQuant's "
            f"accounting; stored features {m['stored_avg_bits']:.2f} bits on average); everything (features, weights, "
            f"graph tables) {m['total_bits']:,} bits ({m['total_reduction']:.1f}x)"])


def gcn_run_recipe(source) -> dict | None:
    """The recipe of a GCN run folder (or its model.pt), else None (an image run, or not a run)."""
    from ..errors import VecQError
    from ..train.runfiles import MODEL_FILE, load_plain
    p = Path(source)
    path = p if p.is_file() else p / MODEL_FILE
    if not path.is_file():
        return None
    try:
        blob = load_plain(path, "trained model")
    except VecQError:
        return None
    rec = blob.get("recipe") if isinstance(blob, dict) else None
    return rec if isinstance(rec, dict) and rec.get("model", {}).get("name") == "gcn" else None


def node_predictions(imodel: ir.Model, features: np.ndarray) -> np.ndarray:
    """The deployed model's class of every node (the simulator, one sample: the graph)."""
    from ..sim import simulate
    out = simulate(imodel, x_mantissa=np.asarray(features, dtype=np.int64)[None]).output[0]
    return np.argmax(out, axis=-1)


def export_gcn_run(source, out_dir, *, overwrite=False, data_root=None, name=None) -> GCNExportReport:
    """Export a GCN run to a model folder; the QAT and deployed accuracy on the test nodes."""
    import torch

    from ..export.gnn import export_gcn
    from ..export.torch_export import ExportOptions
    from ..ir.gnn_memory import gcn_memory
    from ..ir.io import save_model
    from ..train.gcn import features_tensor
    from ..train.gcn_recipe import load_gcn_model_file
    from ..train.runfiles import MODEL_FILE
    p = Path(source)
    model, rec, graph = load_gcn_model_file(p if p.is_file() else p / MODEL_FILE, data_root)
    result = export_gcn(model, graph.features, ExportOptions(name=name or rec["name"] or f"gcn_{graph.name}"))
    deployed = node_predictions(result.model, graph.features)
    with torch.no_grad():
        qat = model.forward_sparse(features_tensor(graph)).argmax(1).numpy()
    test, y = graph.test_idx, graph.labels
    save_model(result.model, out_dir, overwrite=overwrite)
    return GCNExportReport(Path(out_dir), gcn_memory(result.model), result.text(), float(np.mean(qat[test] == y[test])),
                           float(np.mean(deployed[test] == y[test])), float(np.mean(qat == deployed)), len(test))
