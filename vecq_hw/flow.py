"""The end-to-end flow behind the CLI: export, simulate, generate HLS, C-simulate, report.

Everything after export reads the integer model (``ir.Model``), never the PyTorch one: the
simulator, the HLS project and its testbench data all come from the same model folder. This is
the only module that orchestrates; ``report`` only formats what it computes.

Every file the flow writes lies inside the output folder or file the caller named: names that
come from a model (layer names in ``sim --trace``) are reduced to safe file names first.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import ir
from .batch import NpyBatch
from .errors import ToolError, VecQError
from .fixed import MAX_WIDTH, FixedType
from .outputs import atomic_save, inside, output_file, output_folder, safe_file_names
from .report import format_report, memory_lines, overflow_table
from .hls.options import DEFAULTS as HLS_DEFAULTS
from .resources import CONFIG_DIR

DEFAULT_RECIPE = CONFIG_DIR / "demo_lenet5_mnist_w2a8.yaml"


# --------------------------------------------------------------------------- inputs

def images_to_inputs(images: np.ndarray, model: ir.Model) -> np.ndarray:
    """uint8 images (N, H, W) -> the integer model's float inputs (x/256, channels-last)."""
    x = np.asarray(images, dtype=np.float64) / 256.0
    return x.reshape((x.shape[0],) + tuple(model.input.shape))


def images_to_torch(images: np.ndarray, input_shape):
    import torch
    x = torch.from_numpy(np.asarray(images, dtype=np.float32) / 256.0)
    return x.reshape((x.shape[0],) + tuple(input_shape))


def load_array(path, *, what: str, expect_shape=None, allow_empty: bool = False) -> np.ndarray:
    """A numeric .npy array with at least one sample, or one clear error naming the file."""
    return NpyBatch(path, what=what, expect_shape=expect_shape, allow_empty=allow_empty).read()


#: samples per chunk when the flow itself walks a big input array
SCAN_CHUNK = 4096


def _chunks(arr, n=SCAN_CHUNK):
    for i in range(0, arr.shape[0] if arr.ndim else 0, n):
        yield np.asarray(arr[i:i + n])


# --------------------------------------------------------------------------- input range

#: share of input values outside the input type above which the flow warns
SATURATION_WARN_SHARE = 0.01


def count_input_overflow(model: ir.Model, x) -> dict:
    """How many input values the conversion to the input type saturates or wraps.

    The simulator's overflow table counts requantising layers; the input conversion
    (``from_float``) can clip too, e.g. raw 0..255 pixels for an ``ap_ufixed<8,0>`` input. The
    check converts each chunk to a wider type with the same fraction bits and rounding and
    counts the values outside the input type: exact, and chunked (``x`` may be memory-mapped).
    Returned as an overflow-table row: {'saturated', 'wrapped', 'total'}.
    """
    t = model.input.out_type
    counts = {"saturated": 0, "wrapped": 0, "total": 0}
    kind = "wrapped" if t.overflow.startswith("AP_WRAP") and t.kind == "fixed" else "saturated"
    for chunk in _chunks(x):
        chunk = np.asarray(chunk, dtype=np.float64)
        if t.kind == "int":  # ap_int from double: the integer part
            v = np.trunc(chunk)
            out = int(np.count_nonzero((v < t.min_mantissa) | (v > t.max_mantissa)))
        else:
            extra = max(0, min(16, MAX_WIDTH - 1 - t.width))
            wide = FixedType(width=t.width + extra, integer=t.integer + extra, signed=True, rounding=t.rounding,
                             overflow="AP_SAT")
            m = wide.from_float(chunk)
            out = int(np.count_nonzero((m < t.min_mantissa) | (m > t.max_mantissa)))
        counts[kind] += out
        counts["total"] += int(chunk.size)
    return counts


def input_saturation_warning(model: ir.Model, counts: dict) -> str | None:
    """One line when a noticeable share of the inputs falls outside the input type, else None."""
    bad = counts["saturated"] + counts["wrapped"]
    if not counts["total"] or bad < SATURATION_WARN_SHARE * counts["total"]:
        return None
    t = model.input.out_type
    how = "saturated" if counts["saturated"] else "wrapped"
    return (f"warning: {100 * bad / counts['total']:.1f} % of the input values ({bad:,} of {counts['total']:,}) "
            f"lie outside the input type {t} [{float(t.to_float(t.min_mantissa))}, {float(t.to_float(t.max_mantissa))}] and "
            f"were {how}; scale inputs as in training (e.g. pixels / 256, not 0..255)")


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
    from .export.torch_export import ExportOptions, export
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
    from .ir.io import save_model, weight_memory_report
    from .train import load_run
    model, recipe = load_run(_run_dir(source))
    images = None
    if eval_limit:
        from .data import load_dataset
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


def predict_torch(model, images, batch_size=500) -> np.ndarray:
    import torch
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            out.append(model(images_to_torch(images[i:i + batch_size], model.input_shape)).argmax(1).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def predict_sim(imodel: ir.Model, images, *, count_overflow=False):
    from .sim import simulate
    res = simulate(imodel, images_to_inputs(images, imodel), count_overflow=count_overflow)
    pred = np.argmax(res.output.reshape(len(images), -1), axis=1)
    return (pred, res) if count_overflow else pred


# --------------------------------------------------------------------------- sim / hls

def simulate_files(model_dir, input_path, output_path=None, *, mantissas=False, trace_dir=None, warn=None) -> str:
    """`vecq-hw sim`: simulate a .npy batch; write outputs (and a per-layer trace) if asked.

    The input file is read block by block (``batch.NpyBatch``), so memory grows with the
    outputs (N x outputs x 8 bytes; with ``trace_dir`` N x every layer's values x 8), never
    with a copy of the inputs. ``warn``: where the input-range warning goes (default: a line
    of the returned text).
    """
    from .ir.io import load_model
    from .sim import Simulator
    model = load_model(model_dir)
    batch = NpyBatch(input_path, what="inputs", expect_shape=model.input.shape)
    out_file = output_file(output_path, "--output") if output_path else None
    tdir = output_folder(trace_dir, "--trace") if trace_dir else None
    sim = Simulator(model)
    n = len(batch)
    output, traces = None, None
    in_counts = {"saturated": 0, "wrapped": 0, "total": 0}
    overflow: dict = {}
    t0 = time.perf_counter()
    for start, x in batch.blocks():
        res = sim.run(x, trace=tdir is not None, count_overflow=True)
        if output is None:
            output = np.empty((n,) + res.output.shape[1:], dtype=res.output.dtype)
            if tdir is not None:
                traces = {k: np.empty((n,) + v.shape[1:], dtype=v.dtype) for k, v in res.trace.items()}
        output[start:start + len(x)] = res.output
        for k, v in (res.trace or {}).items():
            traces[k][start:start + len(x)] = v
        _add_counts(in_counts, count_input_overflow(model, x))
        for k, c in (res.overflow or {}).items():
            _add_counts(overflow.setdefault(k, {"saturated": 0, "wrapped": 0, "total": 0}), c)
    dt = time.perf_counter() - t0
    if out_file:
        atomic_save(out_file, output if mantissas else model.output_type.to_float(output))
    if tdir:
        for fname, arr in zip(safe_file_names(traces, ".npy"), traces.values()):
            atomic_save(inside(tdir, fname), arr)
    lines = [f"simulated {n} inputs in {dt:.3f} s ({n / max(dt, 1e-9):.0f} samples/s); "
             f"output type {model.output_type}"]
    if out_file:
        lines.append(f"wrote {output_path}")
    if tdir:
        lines.append(f"wrote {len(traces)} layer outputs (mantissas) to {trace_dir}")
    lines.append(overflow_table({f"{model.input.name} (input)": in_counts, **overflow}))
    warning = input_saturation_warning(model, in_counts)
    if warning:
        if warn is None:
            lines.insert(0, warning)
        else:
            warn(warning)
    return "\n".join(lines)


def _add_counts(into: dict, counts: dict) -> None:
    for k, v in counts.items():
        into[k] = into.get(k, 0) + int(v)


def random_inputs(model: ir.Model, n: int, seed: int = 0) -> np.ndarray:
    """n inputs spread over the whole input type, extremes included (values, float64)."""
    from .ir.examples import random_inputs as random_mantissas
    m = random_mantissas(model, n, seed=seed)
    t = model.input.out_type
    if n >= 2:
        m[0], m[1] = t.min_mantissa, t.max_mantissa
    return t.to_float(m)


def generate_hls(model_dir, out_dir, *, backend=HLS_DEFAULTS.backend, io_type=HLS_DEFAULTS.io_type,
                 reuse_factor=HLS_DEFAULTS.reuse_factor, strategy=HLS_DEFAULTS.strategy, part=HLS_DEFAULTS.part,
                 clock_period=HLS_DEFAULTS.clock_period, test_inputs=None,
                 project_name=HLS_DEFAULTS.project_name, overwrite=False, reuse=None) -> str:
    from .ir.io import load_model
    from .hls import HlsOptions
    options = HlsOptions(backend=backend, io_type=io_type, reuse_factor=reuse_factor, strategy=strategy, part=part,
                         clock_period=clock_period, project_name=project_name, reuse=dict(reuse or {}))
    model = load_model(model_dir)
    lines = []
    if test_inputs is not None:
        x = load_array(test_inputs, what="test inputs", expect_shape=model.input.shape)
        warning = input_saturation_warning(model, count_input_overflow(model, x))
        lines += [warning] if warning else []
    else:
        x = random_inputs(model, 100)
    path = write_hls_project(model, out_dir, options, x, overwrite=overwrite)
    lines += [f"wrote {backend} {io_type} project to {path} with {len(x)} test vectors",
              f"next: vecq-hw csim {path}   (g++ C simulation, exact comparison)"]
    return "\n".join(lines)


def estimate_hls(model_dir, *, reuse=None, reuse_factor=1, part=None, clock_period=HLS_DEFAULTS.clock_period,
                 io_type=HLS_DEFAULTS.io_type) -> str:
    """``vecq-hw estimate``: the pre-synthesis estimate of the HLS design with this folding."""
    from .hls.estimate import estimate
    from .ir.io import load_model
    from .report import format_estimate
    est = estimate(load_model(model_dir), reuse, default_reuse=reuse_factor, part=part, clock_period=clock_period,
                   io_type=io_type)
    return format_estimate(est)


def fit_hls(model_dir, out_dir=None, *, part=None, clock_period=HLS_DEFAULTS.clock_period, target="throughput",
            headroom=0.8, io_type=None, backend=HLS_DEFAULTS.backend, overwrite=False):
    """``vecq-hw fit``: choose the folding for ``part``, print it, write the HLS project with it.

    Returns (text, ok); nothing is written when nothing fits."""
    from .hls.estimate import fit, get_part
    from .hls import HlsOptions
    from .ir.io import load_model
    from .report import format_fit
    model = load_model(model_dir)
    p = get_part(part)
    result = fit(model, p, headroom=headroom, target=target, clock_period=clock_period, io_type=io_type)
    text = format_fit(result)
    if result.ok and out_dir is not None:
        hls_part = part if part and len(str(part)) > len(p.name) else p.hls_part
        io_type = result.plan.io_type
        opts = HlsOptions(backend=backend, io_type=io_type, part=hls_part, clock_period=clock_period,
                          reuse=result.plan.reuse())
        path = write_hls_project(model, out_dir, opts, random_inputs(model, 100), overwrite=overwrite)
        from .hls.estimate.plot import write_fit_plot  # matplotlib only when a plot is written
        plot = write_fit_plot(result, path)  # LUTs vs fps of the candidates, inside the project folder
        text += (f"\nwrote {backend} {io_type} project for {hls_part} to {path}\n"
                 f"plot of the {len(result.tried)} foldings estimated: {plot}\nnext: vecq-hw csim {path}")
    return text, result.ok


def write_hls_project(model: ir.Model, out_dir, options, x, *, overwrite=False) -> Path:
    """The HLS project with the simulator's outputs on ``x`` (float values) as its testbench's
    expectation (hls/ does not run the simulator)."""
    from .hls import write_project
    from .sim import simulate
    xm = np.concatenate([np.asarray(model.input.out_type.from_float(c), dtype=np.int64) for c in _chunks(x)])
    return write_project(model, out_dir, options, expected=(xm, simulate(model, x_mantissa=xm).output),
                         overwrite=overwrite)


# --------------------------------------------------------------------------- demo / report

def deploy_report(run_dir, work_dir, *, data_root=None, csim_images=1000, backend=HLS_DEFAULTS.backend,
                  io_type=HLS_DEFAULTS.io_type, progress=print) -> dict:
    """Export -> simulate -> HLS -> C-simulate -> report, for one training run.

    Writes model/, hls_prj/, weights.png, report.json and report.txt into ``work_dir`` (they are
    ours: an existing model or project there is replaced)."""
    from .data import load_dataset
    from .hls import HlsOptions, csim
    from .ir.io import load_model, save_model, weight_memory_report
    from .plots import plot_weight_histograms
    from .train import load_run

    csim_images = int(csim_images)
    if csim_images < 1:
        raise VecQError(f"expected at least 1 image to C-simulate, got {csim_images}", field="csim_images")
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
    progress(f"writing the HLS project and C-simulating {m} images with g++ ...")
    prj = write_hls_project(imodel, work_dir / "hls_prj", HlsOptions(backend=backend, io_type=io_type), x[:m],
                            overwrite=True)
    t0 = time.perf_counter()
    cs = csim(prj, progress=True)  # a build or run failure raises CsimError (a ToolError)
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
        "overflow": overflow,
        "model_dir": str(work_dir / "model"), "project_dir": str(prj),
        "backend": backend, "io_type": io_type, "plots": plots,
    }
    from .hls.estimate import estimate as estimate_design
    from .report import format_estimate
    est = estimate_design(imodel, io_type=io_type)  # the deployed (unfolded) design on the default part, 200 MHz
    r["estimate"], r["estimate_text"] = est.to_dict(), ("hardware estimate of this project (unfolded; "
                                                     "`vecq-hw fit` folds it for a part):\n"
                                                     + format_estimate(est, per_layer=False))
    (work_dir / "report.json").write_text(json.dumps(r, indent=2, default=_jsonable))
    text = format_report(r) + "\n\n" + r["estimate_text"]
    (work_dir / "report.txt").write_text(text + "\n")
    return r


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    return str(o)


def report_run(run_dir, *, data_root=None, limit=1000) -> dict:
    """`vecq-hw report RUN`: RUN is a demo folder (with run/) or a training run folder; the
    report dict (format it with ``report.format_report``)."""
    run_dir = Path(run_dir)
    if (run_dir / "run").is_dir():
        train_dir, work = run_dir / "run", run_dir
    else:
        train_dir, work = run_dir, run_dir / "deploy"
    if not (train_dir / "model.pt").exists():
        raise VecQError("not a training run (no model.pt); expected a folder written by `vecq-hw train` or "
                        "`vecq-hw demo`", file=run_dir)
    return deploy_report(train_dir, work, data_root=data_root, csim_images=limit, progress=lambda s: None)


def run_report(run_dir, *, data_root=None, limit=1000) -> str:
    return format_report(report_run(run_dir, data_root=data_root, limit=limit))


def check_csim_agrees(r: dict, where) -> None:
    """A report whose C simulation disagrees with the simulator is a tool failure."""
    if r["csim_mismatches"]:
        raise ToolError(f"{where}: C simulation disagrees with the simulator in {r['csim_mismatches']} of "
                        f"{r['n_csim']} images ({r['csim_value_mismatches']} output values)")


def run_demo(out_dir, *, data_root=None, recipe=None, csim_images=1000, progress=print) -> dict:
    """train -> export -> simulate -> HLS -> C-simulate -> report, in one folder."""
    from .train import train
    out = Path(out_dir)
    recipe = Path(recipe) if recipe else DEFAULT_RECIPE
    progress(f"[1/5] training {recipe.name} into {out / 'run'} (resumes if interrupted) ...")
    train(recipe, out / "run", resume=(out / "run").exists(), data_root=data_root)
    r = deploy_report(out / "run", out, data_root=data_root, csim_images=csim_images,
                      progress=lambda s: progress("[2-5] " + s))
    progress(format_report(r) + "\n\n" + r["estimate_text"])
    check_csim_agrees(r, out)
    return r
