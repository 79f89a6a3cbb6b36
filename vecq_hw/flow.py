"""The end-to-end flow behind the CLI: export, simulate, generate HLS, C-simulate, report.

Everything after export reads the integer model (``ir.Model``), never the PyTorch one: the
simulator, the HLS project and its testbench data all come from the same model folder.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import ir
from .errors import VecQError
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


def load_array(path, *, what: str, expect_shape=None) -> np.ndarray:
    """A numeric .npy array, or one clear error naming the file."""
    p = Path(path)
    try:
        arr = np.load(p, allow_pickle=False)
    except FileNotFoundError:
        raise VecQError("file not found", file=p) from None
    except Exception as exc:  # truncated, not .npy, pickled objects ...
        raise VecQError(f"not a readable .npy array ({type(exc).__name__}: {exc})", file=p) from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "iuf":
        raise VecQError(f"expected a numeric array for {what}, got dtype {getattr(arr, 'dtype', '?')}", file=p)
    if expect_shape is not None and tuple(arr.shape[1:]) != tuple(expect_shape):
        raise VecQError(f"expected {what} of shape (N, {', '.join(map(str, expect_shape))}), got {arr.shape}",
                        file=p)
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise VecQError(f"{what} contains NaN or infinity", file=p)
    return arr


# --------------------------------------------------------------------------- export

@dataclass
class ExportReport:
    model_dir: Path
    memory: dict
    agreement: float | None = None
    qat_accuracy: float | None = None
    deployed_accuracy: float | None = None
    n_eval: int = 0

    def text(self) -> str:
        from .report import memory_lines
        lines = [f"wrote {self.model_dir}"] + memory_lines(self.memory)
        if self.n_eval:
            lines.append(f"accuracy effect on {self.n_eval} test images: QAT model {100 * self.qat_accuracy:.2f} %, "
                         f"integer model {100 * self.deployed_accuracy:.2f} %, argmax agreement "
                         f"{100 * self.agreement:.2f} %")
        return "\n".join(lines)


def export_torch(model, *, scale_bits=16, scale_frac=None, multiplier="auto", name=None) -> ir.Model:
    from .export.torch_export import ExportOptions, export_model
    opts = ExportOptions(scale_bits=scale_bits, scale_frac=scale_frac, multiplier=multiplier,
                         name=name or getattr(model, "arch", "model"))
    return export_model(model.eval(), model.input_shape, opts)


def _run_dir(source) -> Path:
    p = Path(source)
    return p.parent if p.is_file() else p


def export_run(source, out_dir, *, scale_bits=16, scale_frac=None, multiplier="auto", overwrite=False,
               data_root=None, eval_limit=1000) -> ExportReport:
    from .export.model_io import save_model, weight_memory_report
    from .train import load_run
    model, recipe = load_run(_run_dir(source))
    imodel = export_torch(model, scale_bits=scale_bits, scale_frac=scale_frac, multiplier=multiplier)
    rep = ExportReport(model_dir=Path(out_dir), memory=weight_memory_report(imodel))
    if eval_limit:
        from .data import load_dataset
        images, labels = load_dataset(recipe["data"]["dataset"], "test", root=data_root, limit=eval_limit)
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

def simulate_files(model_dir, input_path, output_path=None, *, mantissas=False, trace_dir=None) -> str:
    from .export.model_io import load_model
    from .report import overflow_table
    from .sim import simulate
    model = load_model(model_dir)
    x = load_array(input_path, what="inputs", expect_shape=model.input.shape)
    t0 = time.perf_counter()
    res = simulate(model, x.astype(np.float64), trace=trace_dir is not None, count_overflow=True)
    dt = time.perf_counter() - t0
    if output_path:
        _atomic_save(output_path, res.output if mantissas else res.values())
    if trace_dir:
        tdir = Path(trace_dir)
        tdir.mkdir(parents=True, exist_ok=True)
        for name, arr in res.trace.items():
            np.save(tdir / f"{name}.npy", arr)
    lines = [f"simulated {len(x)} inputs in {dt:.3f} s ({len(x) / max(dt, 1e-9):.0f} samples/s); "
             f"output type {model.output_type}"]
    if output_path:
        lines.append(f"wrote {output_path}")
    lines.append(overflow_table(res.overflow))
    return "\n".join(lines)


def _atomic_save(path, arr):
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, arr)
    tmp.replace(path)


def random_inputs(model: ir.Model, n: int, seed: int = 0) -> np.ndarray:
    """n inputs spread over the whole input type, extremes included (values, float64)."""
    from .hls.examples import random_inputs as random_mantissas
    m = random_mantissas(model, n, seed=seed)
    t = model.input.out_type
    if n >= 2:
        m[0], m[1] = t.min_mantissa, t.max_mantissa
    return t.to_float(m)


def generate_hls(model_dir, out_dir, *, backend="Vitis", io_type="io_parallel", reuse_factor=1,
                 strategy="Latency", part="xcu250-figd2104-2L-e", clock_period=5.0, test_inputs=None,
                 project_name="myproject") -> str:
    from .export.model_io import load_model
    from .hls import write_project
    model = load_model(model_dir)
    if test_inputs is not None:
        x = load_array(test_inputs, what="test inputs", expect_shape=model.input.shape).astype(np.float64)
    else:
        x = random_inputs(model, 100)
    path = write_project(model, out_dir, backend=backend, io_type=io_type, reuse_factor=reuse_factor,
                         strategy=strategy, part=part, clock_period=clock_period, project_name=project_name,
                         test_inputs=x)
    return (f"wrote {backend} {io_type} project to {path} with {len(x)} test vectors\n"
            f"next: vecq-hw csim {path}   (g++ C simulation, exact comparison)")


# --------------------------------------------------------------------------- demo

def run_demo(out_dir, *, data_root=None, recipe=None, csim_images=1000, progress=print) -> dict:
    """train -> export -> simulate -> HLS -> C-simulate -> report, in one folder."""
    from .report import deploy_report, format_report
    from .train import train
    out = Path(out_dir)
    recipe = Path(recipe) if recipe else DEFAULT_RECIPE
    progress(f"[1/5] training {recipe.name} into {out / 'run'} (resumes if interrupted) ...")
    train(recipe, out / "run", resume=(out / "run").exists(), data_root=data_root)
    r = deploy_report(out / "run", out, data_root=data_root, csim_images=csim_images,
                      progress=lambda s: progress("[2-5] " + s))
    progress(format_report(r))
    if r["csim_mismatches"]:
        raise VecQError(f"C simulation disagrees with the simulator in {r['csim_mismatches']} values", file=out)
    return r
