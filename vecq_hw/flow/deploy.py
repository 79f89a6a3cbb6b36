"""The demo and the deployment report: train -> export -> simulate -> HLS -> C-simulate -> report.

:func:`deploy_report` computes every number of a :class:`DeployReport`; ``vecq_hw.report``
only formats it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ToolError, VecQError
from ..hls.options import DEFAULTS as HLS_DEFAULTS
from ..report import format_fit, format_report
from ..resources import CONFIG_DIR
from .pytorch import export_torch, predict_sim, predict_torch
from .hls import resolve_part, write_hls_project
from .inputs import count_input_overflow, images_to_inputs

DEFAULT_RECIPE = CONFIG_DIR / "demo_lenet5_mnist_w2a8.yaml"


@dataclass
class DeployReport:
    """One training run deployed and checked; ``report.json`` is :meth:`to_dict` (same keys, in
    this order). Accuracies are fractions; the ``*_subset`` ones are on the ``n_csim`` images
    that were also C-simulated; ``float_accuracy`` is None when the run recorded none."""

    model: str
    dataset: str
    n_test: int
    n_csim: int
    float_accuracy: float | None
    qat_accuracy: float
    sim_accuracy: float
    qat_accuracy_subset: float
    sim_accuracy_subset: float
    csim_accuracy: float
    qat_sim_agreement: float
    csim_mismatches: int
    csim_values: int
    csim_value_mismatches: int
    csim_seconds: float
    csim_summary: str
    #: ``ir.io.weight_memory_report`` of the integer model
    memory: dict
    #: overflow-table rows {layer: {'saturated', 'wrapped', 'total'}}, the input conversion first
    overflow: dict
    model_dir: str
    project_dir: str
    backend: str
    io_type: str
    plots: list
    #: the part the project is folded for (``vecq-hw fit``: configs/hardware/parts.yaml's default
    #: unless given), whether the plan fits it, and the plan (reuse factor per weighted layer)
    part: str
    fits: bool
    reuse: dict
    #: ``estimate.Estimate.to_dict()`` of the deployed (fitted) design, and its text
    estimate: dict
    estimate_text: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def text(self, *, estimate: bool = False) -> str:
        """The report as people read it (``report.txt`` adds the estimate)."""
        return format_report(self) + ("\n\n" + self.estimate_text if estimate else "")


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    return str(o)


def _fitted_project(imodel, prj_dir, x, backend, io_type, part):
    """``fit`` the model to ``part`` (default: the parts table's default), write the project of
    its plan (the closest, fully folded one when nothing fits) with ``x`` as its test vectors, and
    C-simulate it: (FitResult, full part name, project, CsimResult, seconds)."""
    from ..hls import HlsOptions, csim
    from ..hls.estimate import fit
    p, hls_part = resolve_part(part)
    result = fit(imodel, p, io_type=io_type)
    plan = result.closest
    opts = HlsOptions(backend=backend, io_type=plan.io_type, part=hls_part, reuse=plan.reuse())
    prj = write_hls_project(imodel, prj_dir, opts, x, overwrite=True)
    t0 = time.perf_counter()
    cs = csim(prj, progress=True)  # a build or run failure raises CsimError (a ToolError)
    return result, hls_part, prj, cs, time.perf_counter() - t0


def _plots(model, run_dir: Path, work_dir: Path) -> list[str]:
    from ..plots import plot_weight_histograms
    plots = [plot_weight_histograms(model, work_dir / "weights.png")]
    curve = run_dir / "training_curve.png"
    return [str(p) for p in plots + ([curve] if curve.exists() else [])]


def _fit_text(result, hls_part: str) -> str:
    head = (f"hardware: the HLS project is the plan `vecq-hw fit` chose for {hls_part}" if result.ok else
            f"hardware: nothing fits {hls_part}; the HLS project is the closest plan")
    return head + "\n" + format_fit(result, per_layer=False)


def deploy_report(run_dir, work_dir, *, data_root=None, csim_images=1000, backend=HLS_DEFAULTS.backend,
                  io_type=None, part=None, progress=print) -> DeployReport:
    """Export -> simulate -> fit -> HLS -> C-simulate -> report, for one training run.

    The HLS project is folded by ``fit`` for ``part`` (default: configs/hardware/parts.yaml's
    default; ``io_type`` None lets fit choose), so the project the report points at fits it.
    Writes model/, hls_prj/, weights.png, report.json and report.txt into ``work_dir`` (they are
    ours: an existing model or project there is replaced)."""
    from ..data import load_dataset
    from ..ir.io import load_model, save_model, weight_memory_report
    from ..train import load_run

    csim_images = int(csim_images)
    if csim_images < 1:
        raise VecQError(f"expected at least 1 image to C-simulate, got {csim_images}", field="csim_images")
    resolve_part(part)  # refused before any work
    run_dir, work_dir = Path(run_dir), Path(work_dir)
    model, recipe = load_run(run_dir)
    dataset = recipe["data"]["dataset"]
    metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").exists() else {}

    progress("exporting the integer model ...")
    save_model(export_torch(model), work_dir / "model", overwrite=True)
    imodel = load_model(work_dir / "model")  # downstream reads the saved integer model only

    images, labels = load_dataset(dataset, "test", root=data_root)
    progress(f"QAT model and simulator on {len(labels)} test images ...")
    qat = predict_torch(model, images)
    sim, res = predict_sim(imodel, images, count_overflow=True)
    x = images_to_inputs(images, imodel)
    overflow = {f"{imodel.input.name} (input)": count_input_overflow(imodel, x), **res.overflow}

    m = min(csim_images, len(labels))
    progress(f"fitting the HLS design to a part, writing its project and C-simulating {m} images with g++ ...")
    fitted, hls_part, prj, cs, csim_seconds = _fitted_project(imodel, work_dir / "hls_prj", x[:m], backend, io_type,
                                                              part)
    csim_pred = np.argmax(cs.outputs.reshape(m, -1), axis=1)
    plan = fitted.closest
    r = DeployReport(
        model=getattr(model, "arch", imodel.name), dataset=dataset, n_test=int(len(labels)), n_csim=m,
        float_accuracy=metrics.get("float_test_accuracy"),
        qat_accuracy=float(np.mean(qat == labels)), sim_accuracy=float(np.mean(sim == labels)),
        qat_accuracy_subset=float(np.mean(qat[:m] == labels[:m])),
        sim_accuracy_subset=float(np.mean(sim[:m] == labels[:m])),
        csim_accuracy=float(np.mean(csim_pred == labels[:m])), qat_sim_agreement=float(np.mean(qat == sim)),
        csim_mismatches=int(cs.mismatches), csim_values=int(cs.n_values),
        csim_value_mismatches=int(cs.value_mismatches), csim_seconds=round(csim_seconds, 2),
        csim_summary=cs.summary(), memory=weight_memory_report(imodel), overflow=overflow,
        model_dir=str(work_dir / "model"), project_dir=str(prj), backend=backend, io_type=plan.io_type,
        plots=_plots(model, run_dir, work_dir), part=hls_part, fits=fitted.ok, reuse=plan.reuse(),
        estimate=plan.to_dict(), estimate_text=_fit_text(fitted, hls_part))
    (work_dir / "report.json").write_text(json.dumps(r.to_dict(), indent=2, default=_jsonable))
    (work_dir / "report.txt").write_text(r.text(estimate=True) + "\n")
    return r


def check_csim_agrees(r: DeployReport, where) -> None:
    """A report whose C simulation disagrees with the simulator is a tool failure."""
    if r.csim_mismatches:
        raise ToolError(f"{where}: C simulation disagrees with the simulator in {r.csim_mismatches} of "
                        f"{r.n_csim} images ({r.csim_value_mismatches} output values)")


def report_run(run_dir, *, data_root=None, limit=1000, show=print) -> DeployReport:
    """``vecq-hw report RUN``: RUN is a demo folder (with run/) or a training run folder; ``show``
    the report, then raise ``ToolError`` when its C simulation disagrees with the simulator."""
    run_dir = Path(run_dir)
    if (run_dir / "run").is_dir():
        train_dir, work = run_dir / "run", run_dir
    else:
        train_dir, work = run_dir, run_dir / "deploy"
    if not (train_dir / "model.pt").exists():
        raise VecQError("not a training run (no model.pt); expected a folder written by `vecq-hw train` or "
                        "`vecq-hw demo`", file=run_dir)
    r = deploy_report(train_dir, work, data_root=data_root, csim_images=limit, progress=lambda s: None)
    show(r.text())
    check_csim_agrees(r, run_dir)  # a C simulation that disagrees: exit 3 after the report
    return r


def run_demo(out_dir, *, data_root=None, recipe=None, csim_images=1000, progress=print) -> DeployReport:
    """train -> export -> simulate -> HLS -> C-simulate -> report, in one folder."""
    from ..train import train
    out = Path(out_dir)
    recipe = Path(recipe) if recipe else DEFAULT_RECIPE
    progress(f"[1/5] training {recipe.name} into {out / 'run'} (resumes if interrupted) ...")
    train(recipe, out / "run", resume=(out / "run").exists(), data_root=data_root)
    r = deploy_report(out / "run", out, data_root=data_root, csim_images=csim_images,
                      progress=lambda s: progress("[2-5] " + s))
    progress(r.text(estimate=True))
    check_csim_agrees(r, out)
    return r
