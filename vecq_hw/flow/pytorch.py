"""PyTorch side of the flow: train a recipe, export a run to the integer model, predict.

Everything after export reads the integer model (``ir.Model``), never the PyTorch one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import ir
from ..errors import VecQError
from ..report import memory_lines
from .inputs import images_to_inputs, images_to_torch


# --------------------------------------------------------------------------- train

def train_recipe(recipe, out_dir, *, data_root=None, resume=False, overwrite=False, device=None,
                 threads=None) -> dict | None:
    """``vecq-hw train``: train a recipe into a run folder; its metrics (None on ranks other
    than 0 of a multi-process run, which print nothing)."""
    from ..train import train
    metrics = train(recipe, out_dir, resume=resume, overwrite=overwrite, data_root=data_root, device=device,
                    threads=threads)
    return metrics if os.environ.get("RANK", "0") == "0" else None


def launch_training(recipe, out_dir, nproc: int, *, data_root=None, resume=False, overwrite=False, device=None,
                    threads=None) -> int:
    """``vecq-hw train --nproc N``: check the run, then start ``torchrun`` with N processes on this
    machine; returns its exit status."""
    from ..train.dist import launch
    from ..train.loop import preflight
    if os.environ.get("RANK") or os.environ.get("WORLD_SIZE"):
        raise VecQError("--nproc starts torchrun itself; under torchrun (RANK/WORLD_SIZE set) leave it out")
    preflight(recipe, out_dir, resume=resume, overwrite=overwrite, world=nproc, data_root=data_root)
    args = [str(recipe), "--out", str(out_dir)] + (["--data", str(data_root)] if data_root else [])
    args += (["--resume"] if resume else []) + (["--overwrite"] if overwrite else [])
    args += (["--device", device] if device else []) + (["--threads", str(threads)] if threads else [])
    return launch(nproc, args, threads)


def quiet_rank() -> bool:
    """True on ranks other than 0 of a valid multi-process run: rank 0 prints a refusal for all."""
    from ..train.dist import quiet_rank as quiet
    return quiet()


# --------------------------------------------------------------------------- export

@dataclass
class ExportReport:
    model_dir: Path
    memory: dict
    agreement: float | None = None
    qat_accuracy: float | None = None
    deployed_accuracy: float | None = None
    n_eval: int = 0
    #: the export's equivalence check (integer model vs PyTorch), as one line
    equivalence: str | None = None

    def text(self) -> str:
        lines = [f"wrote {self.model_dir}"] + memory_lines(self.memory)
        if self.equivalence:
            lines.append(self.equivalence)
        if self.n_eval:
            lines.append(f"accuracy effect on {self.n_eval} test images: QAT model {100 * self.qat_accuracy:.2f} %, "
                         f"integer model {100 * self.deployed_accuracy:.2f} %, argmax agreement "
                         f"{100 * self.agreement:.2f} %")
        return "\n".join(lines)


def export_checked(model, *, scale_bits=16, scale_frac=None, multiplier="auto", name=None, samples=None):
    """Export and check against PyTorch on ``samples`` (default: random inputs): an ExportResult."""
    from ..export.torch_export import ExportOptions, export
    opts = ExportOptions(scale_bits=scale_bits, scale_frac=scale_frac, multiplier=multiplier,
                         name=name or getattr(model, "arch", "model"))
    return export(model.eval(), model.input_shape, opts, samples)


def export_torch(model, *, scale_bits=16, scale_frac=None, multiplier="auto", name=None, samples=None) -> ir.Model:
    return export_checked(model, scale_bits=scale_bits, scale_frac=scale_frac, multiplier=multiplier, name=name,
                          samples=samples).model


def _run_dir(source) -> Path:
    p = Path(source)
    return p.parent if p.is_file() else p


def export_run(source, out_dir, *, scale_bits=16, scale_frac=None, multiplier="auto", overwrite=False,
               data_root=None, eval_limit=1000) -> ExportReport:
    from ..ir.io import check_model_folder, save_model, weight_memory_report
    from ..train import load_run
    check_model_folder(out_dir, overwrite=overwrite)  # before the export and the evaluation
    from .gnn import export_gcn_run, gcn_run_recipe
    if gcn_run_recipe(source) is not None:  # a GCN on its graph: exported exactly, measured on its test nodes
        return export_gcn_run(source, out_dir, overwrite=overwrite, data_root=data_root)
    model, recipe = load_run(_run_dir(source))
    images = None
    if eval_limit:
        from ..data import load_dataset
        images, labels = load_dataset(recipe["data"]["dataset"], "test", root=data_root, limit=eval_limit)
    # the equivalence check runs on (up to 256 of) the test images, else on random inputs
    samples = None if images is None else images_to_torch(images[:256], model.input_shape)
    result = export_checked(model, scale_bits=scale_bits, scale_frac=scale_frac, multiplier=multiplier,
                            samples=samples)
    imodel = result.model
    rep = ExportReport(model_dir=Path(out_dir), memory=weight_memory_report(imodel), equivalence=result.text())
    if eval_limit:
        q = predict_torch(model, images)
        d = predict_sim(imodel, images)
        rep.n_eval = len(labels)
        rep.qat_accuracy = float(np.mean(q == labels))
        rep.deployed_accuracy = float(np.mean(d == labels))
        rep.agreement = float(np.mean(q == d))
    save_model(imodel, out_dir, overwrite=overwrite)
    return rep


# --------------------------------------------------------------------------- predict

def predict_torch(model, images, batch_size=500) -> np.ndarray:
    import torch
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            out.append(model(images_to_torch(images[i:i + batch_size], model.input_shape)).argmax(1).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def predict_sim(imodel: ir.Model, images, *, count_overflow=False):
    from ..sim import simulate
    res = simulate(imodel, images_to_inputs(images, imodel), count_overflow=count_overflow)
    pred = np.argmax(res.output.reshape(len(images), -1), axis=1)
    return (pred, res) if count_overflow else pred
