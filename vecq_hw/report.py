"""Deployment report: one pipeline behind `vecq-hw demo` and `vecq-hw report`.

Given a training run, it exports the integer model, simulates it on the test set, generates
the HLS project, C-simulates it on a subset and prints one report comparing the float model,
the QAT model, the simulator and the C simulation on the same images.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from . import ir
from .errors import VecQError


def memory_lines(mem: dict) -> list[str]:
    t = mem["total"]
    return [f"weight memory: {t['code_bits']:,} bits of codes for {t['n_weights']:,} weights "
            f"(+ {t['scale_bias_bits']:,} bits of per-channel scale/bias); "
            f"{t['compression_vs_float32']:.1f}x smaller than float32 weights"]


def describe_model(model: ir.Model, mem: dict | None = None) -> str:
    lines = [f"model '{model.name}': {len(model.layers)} layers"]
    for layer, in_shape, in_type, out_shape in model.walk():
        extra = ""
        if isinstance(layer, ir.Weighted):
            extra = f" k={layer.bits} acc={layer.accum_type} s={layer.scale_type} b={layer.bias_type}"
        lines.append(f"  {layer.kind:<10} {layer.name:<24} {str(out_shape):<16} {layer.out_type}{extra}")
    if mem:
        lines += memory_lines(mem)
    return "\n".join(lines)


def overflow_table(overflow: dict) -> str:
    lines = [f"{'layer':<24} {'values':>12} {'saturated':>10} {'wrapped':>10}"]
    for name, c in overflow.items():
        lines.append(f"{name:<24} {c['total']:>12,} {c['saturated']:>10,} {c['wrapped']:>10,}")
    return "\n".join(lines)


def _pct(x):
    return "   -   " if x is None else f"{100 * x:6.2f} %"


def format_report(r: dict) -> str:
    n, m = r["n_test"], r["n_csim"]
    lines = [
        "=" * 72,
        f"vecq_hw deployment report: {r['model']} on {r['dataset']}",
        "=" * 72,
        f"{'accuracy':<34}{'all ' + str(n) + ' test images':>22}{'C-sim subset (' + str(m) + ')':>22}",
        f"{'  float model (pre-training)':<34}{_pct(r.get('float_accuracy')):>22}{'':>22}",
        f"{'  QAT model (PyTorch)':<34}{_pct(r['qat_accuracy']):>22}{_pct(r['qat_accuracy_subset']):>22}",
        f"{'  integer model (simulator)':<34}{_pct(r['sim_accuracy']):>22}{_pct(r['sim_accuracy_subset']):>22}",
        f"{'  HLS C simulation (g++)':<34}{'':>22}{_pct(r['csim_accuracy']):>22}",
        f"QAT vs simulator argmax agreement: {100 * r['qat_sim_agreement']:.2f} %",
        f"C simulation vs simulator: {r['csim_mismatches']} of {m} images and {r['csim_value_mismatches']} of "
        f"{r['csim_values']} output values differ ({'bit-exact' if r['csim_mismatches'] == 0 else 'MISMATCH'})",
    ]
    if r.get("csim_summary"):
        lines.append(r["csim_summary"])
    lines += memory_lines(r["memory"])
    lines += ["", "requantisation overflow on the test set (simulator):", overflow_table(r["overflow"]), ""]
    lines += [f"integer model: {r['model_dir']}", f"HLS project:   {r['project_dir']}  ({r['backend']}, {r['io_type']})",
              "  take it into the vendor tools (not available here):",
              f"    cd {r['project_dir']} && vitis_hls -f build_prj.tcl        # Vitis HLS (or vivado_hls -f build_prj.tcl)",
              f"    cd {r['project_dir']} && v++ -c --mode hls --config hls_config.cfg   # Vitis 2023.2+",
              f"plots: {', '.join(r['plots'])}"]
    return "\n".join(lines)


def deploy_report(run_dir, work_dir, *, data_root=None, csim_images=1000, backend="Vitis",
                  io_type="io_parallel", progress=print) -> dict:
    """Export -> simulate -> HLS -> C-simulate -> report, for one training run."""
    from .data import load_dataset
    from .export.model_io import load_model, save_model, weight_memory_report
    from .flow import export_torch, images_to_inputs, predict_sim, predict_torch
    from .hls import csim, write_project
    from .plots import plot_weight_histograms
    from .train import load_run

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

    m = min(int(csim_images), len(labels))
    progress(f"writing the HLS project and C-simulating {m} images with g++ ...")
    prj = write_project(imodel, work_dir / "hls_prj", backend=backend, io_type=io_type,
                        test_inputs=images_to_inputs(images[:m], imodel))
    t0 = time.perf_counter()
    cs = csim(prj)
    if not cs.ok and cs.outputs is None:
        raise VecQError(f"C simulation failed to build or run:\n{cs.log[-2000:]}", file=prj)
    csim_pred = np.argmax(cs.outputs.reshape(m, -1), axis=1)
    csim_seconds = time.perf_counter() - t0

    plots = plot_weight_histograms(model, work_dir / "weights.png")
    curve = run_dir / "training_curve.png"
    plots = [str(p) for p in ([plots] + ([curve] if curve.exists() else []))]

    r = {
        "model": getattr(model, "arch", imodel.name), "dataset": dataset,
        "n_test": int(len(labels)), "n_csim": m,
        "float_accuracy": metrics.get("float_test_accuracy"),
        "qat_accuracy": float(np.mean(qat == labels)),
        "sim_accuracy": float(np.mean(sim == labels)),
        "qat_accuracy_subset": float(np.mean(qat[:m] == labels[:m])),
        "sim_accuracy_subset": float(np.mean(sim[:m] == labels[:m])),
        "csim_accuracy": float(np.mean(csim_pred == labels[:m])),
        "qat_sim_agreement": float(np.mean(qat == sim)),
        "csim_mismatches": int(cs.mismatches), "csim_values": int(cs.n_values),
        "csim_value_mismatches": int(cs.value_mismatches),
        "csim_seconds": round(csim_seconds, 2), "csim_summary": cs.summary(),
        "memory": weight_memory_report(imodel),
        "overflow": res.overflow,
        "model_dir": str(work_dir / "model"), "project_dir": str(prj),
        "backend": backend, "io_type": io_type, "plots": plots,
    }
    (work_dir / "report.json").write_text(json.dumps(r, indent=2, default=_jsonable))
    text = format_report(r)
    (work_dir / "report.txt").write_text(text + "\n")
    return r


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    return str(o)


def run_report(run_dir, *, data_root=None, limit=1000) -> str:
    """`vecq-hw report RUN`: RUN is a demo folder (with run/) or a training run folder."""
    run_dir = Path(run_dir)
    if (run_dir / "run").is_dir():
        train_dir, work = run_dir / "run", run_dir
    else:
        train_dir, work = run_dir, run_dir / "deploy"
    if not (train_dir / "model.pt").exists():
        raise VecQError("not a training run (no model.pt); expected a folder written by `vecq-hw train` or "
                        "`vecq-hw demo`", file=run_dir)
    r = deploy_report(train_dir, work, data_root=data_root, csim_images=limit, progress=lambda s: None)
    return format_report(r)
