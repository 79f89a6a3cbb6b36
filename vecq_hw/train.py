"""Quantisation-aware training from a recipe (see :mod:`vecq_hw.recipe`).

Two phases: ``float_epochs`` of float pre-training (weighted layers with ``bits=None``; the
input, activation and logit quantisers are active throughout, with their straight-through
gradients), then ``epochs`` of QAT with the recipe's weight quantiser. Each phase starts a
fresh optimizer and learning-rate schedule (``qat_lr`` for the QAT phase).

Run folder (``out_dir``)::

    recipe.yaml        the normalised recipe (every default filled in)
    checkpoint.pt      latest epoch: model, optimizer, scheduler, epoch, RNG states, history
    log.jsonl          one JSON record per epoch (loss, accuracy, lr, time)
    model.pt           final weights + recipe  (load with load_run)
    metrics.json       float-phase and QAT test accuracy, sizes, timings
    training_curve.png training curves

Everything is written atomically (temp file, then ``os.replace``). Training is deterministic for
a given seed on a given machine and thread count: the initial weights come from
``torch.manual_seed(seed)``, the data order of epoch ``e`` from a generator seeded with
``(seed, e)``, and deterministic algorithms are requested. ``train(..., resume=True)``
continues from the last checkpoint and ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from .data import load_dataset, make_loader, to_tensors
from .errors import RecipeError, VecQError
from .models import build_model
from .recipe import load_recipe, recipe_model_options

__all__ = ["train", "load_run", "evaluate", "set_weight_bits", "CHECKPOINT", "MODEL_FILE",
           "METRICS_FILE", "LOG_FILE", "CURVE_FILE"]

CHECKPOINT = "checkpoint.pt"
MODEL_FILE = "model.pt"
METRICS_FILE = "metrics.json"
LOG_FILE = "log.jsonl"
CURVE_FILE = "training_curve.png"
RECIPE_FILE = "recipe.yaml"
_CKPT_VERSION = 1
_EVAL_BATCH = 1000
_UMASK = os.umask(0o022)
os.umask(_UMASK)


# ----------------------------------------------------------------------------- atomic writes

def _atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``; no partial file survives a failure."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _atomic_text(path: Path, text: str) -> None:
    _atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _atomic_torch_save(obj: Any, path: Path) -> None:
    _atomic_write(path, lambda tmp: torch.save(obj, tmp))


# ----------------------------------------------------------------------------- helpers

def set_weight_bits(model: nn.Module, bits: int | None) -> int:
    """Set the weight bit width of every VecQ layer (None = float); returns how many."""
    n = 0
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)) and hasattr(m, "bits"):
            setter = getattr(m, "set_bits", None)
            if callable(setter):
                setter(bits)
            elif bits is None and hasattr(m, "quantize"):
                m.quantize = False  # float mode, keeping the layer's configured bits
            else:
                m.bits = bits
                if hasattr(m, "quantize"):
                    m.quantize = bits is not None
            n += 1
    return n


@contextlib.contextmanager
def _determinism(threads: int | None):
    prev = (torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(), torch.get_num_threads())
    torch.use_deterministic_algorithms(True, warn_only=True)
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])
        torch.set_num_threads(prev[2])


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate()}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 1) % (2**63 - 1)


def _phases(rec: dict) -> list[dict]:
    t = rec["train"]
    out = []
    if t["float_epochs"]:
        out.append({"name": "float", "epochs": t["float_epochs"], "lr": t["lr"], "bits": None})
    out.append({"name": "qat", "epochs": t["epochs"], "lr": t["qat_lr"], "bits": rec["quant"]["bits"]})
    start = 0
    for p in out:
        p["start"] = start
        start += p["epochs"]
    return out


def _phase_of(phases: list[dict], epoch: int) -> dict:
    for p in phases:
        if p["start"] <= epoch < p["start"] + p["epochs"]:
            return p
    raise AssertionError(epoch)


def _make_optimizer(rec: dict, model: nn.Module, lr: float, steps_per_epoch: int, epochs: int):
    t = rec["train"]
    if t["optimizer"] == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=t["weight_decay"])
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=t["momentum"],
                              weight_decay=t["weight_decay"])
    total = max(1, steps_per_epoch * epochs)
    kind, step_size, gamma = t["lr_schedule"], t["step_size"], t["gamma"]

    def factor(it: int) -> float:  # stepped once per batch
        if kind == "cosine":
            return 0.5 * (1.0 + np.cos(np.pi * min(it, total) / total))
        if kind == "step":
            return gamma ** ((it // max(1, steps_per_epoch)) // step_size)
        return 1.0

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return opt, sched


def evaluate(model: nn.Module, loader) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` in eval mode over ``loader``."""
    was_training = model.training
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            out = model(x)
            loss_sum += float(nn.functional.cross_entropy(out, y, reduction="sum"))
            correct += int((out.argmax(1) == y).sum())
            n += int(y.numel())
    model.train(was_training)
    return loss_sum / max(n, 1), correct / max(n, 1)


def _train_one_epoch(model, loader, opt, sched, *, desc: str, progress: bool) -> tuple[float, float]:
    from tqdm.auto import tqdm

    model.train()
    loss_sum, correct, n = 0.0, 0, 0
    bar = tqdm(loader, desc=desc, leave=False, disable=not progress, unit="batch", dynamic_ncols=True)
    for x, y in bar:
        opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = nn.functional.cross_entropy(out, y)
        loss.backward()
        opt.step()
        sched.step()
        b = int(y.numel())
        loss_sum += float(loss.detach()) * b
        correct += int((out.detach().argmax(1) == y).sum())
        n += b
        if progress:
            bar.set_postfix(loss=f"{loss_sum / n:.4f}", acc=f"{correct / n:.4f}", refresh=False)
    bar.close()
    return loss_sum / max(n, 1), correct / max(n, 1)


def _plot(history: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6))
    ax1, ax2 = fig.subplots(1, 2)
    ep = [h["epoch"] for h in history]
    ax1.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    ax1.plot(ep, [h["test_loss"] for h in history], "s-", label="test")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy")
    ax2.plot(ep, [100 * h["train_acc"] for h in history], "o-", label="train")
    ax2.plot(ep, [100 * h["test_acc"] for h in history], "s-", label="test")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy (%)")
    qat = [h["epoch"] for h in history if h["phase"] == "qat"]
    if qat and any(h["phase"] == "float" for h in history):
        for ax in (ax1, ax2):
            ax.axvline(min(qat) - 0.5, color="grey", ls="--", lw=1)
            ax.text(min(qat) - 0.45, ax.get_ylim()[1], " QAT", va="top", fontsize=8, color="grey")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def _resolve_data_root(rec: dict, base: Path | None, data_root) -> Path | None:
    if data_root is not None:
        return Path(data_root)
    root = rec["data"]["root"]
    if root is None:
        return None
    p = Path(root)
    return p if p.is_absolute() or base is None else base / p


def _load_data(rec: dict, root, flatten: bool):
    d = rec["data"]
    xtr, ytr = to_tensors(*load_dataset(d["dataset"], "train", root, d["train_limit"]), flatten=flatten)
    xte, yte = to_tensors(*load_dataset(d["dataset"], "test", root, d["test_limit"]), flatten=flatten)
    return torch.utils.data.TensorDataset(xtr, ytr), torch.utils.data.TensorDataset(xte, yte)


def _build(rec: dict, bits) -> nn.Module:
    return build_model(rec["model"]["name"], **recipe_model_options(rec, bits=bits))


# ----------------------------------------------------------------------------- public API

def train(recipe, out_dir, *, resume: bool = False, data_root=None, progress: bool = True,
          threads: int | None = None, stop_after_epochs: int | None = None,
          plot: bool = True) -> dict:
    """Train a recipe (YAML path or dict) into ``out_dir``; returns the metrics dict.

    ``resume=True`` continues from ``out_dir/checkpoint.pt`` if there is one (and returns the
    stored metrics if the run had finished); without it, a fresh run starts and replaces any
    previous run files. ``data_root`` overrides the recipe's ``data.root``. ``threads`` sets
    torch's intra-op threads for the run (None: leave as is). ``stop_after_epochs`` stops after
    that many epochs of this call, as an interruption would (for tests and time-boxed runs);
    the result then has ``"interrupted": True``. ``plot=False`` skips the training-curve PNG.
    """
    rec, base = load_recipe(recipe)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT
    name = rec["name"] or f"{rec['model']['name']}_{rec['data']['dataset']}"

    ckpt = None
    if resume and ckpt_path.exists():
        try:
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise VecQError(f"cannot read checkpoint ({exc})", file=str(ckpt_path)) from None
        if ckpt.get("version") != _CKPT_VERSION:
            raise VecQError(f"unsupported checkpoint version {ckpt.get('version')!r}", file=str(ckpt_path))
        if ckpt["recipe"] != rec:
            raise RecipeError("recipe differs from the one the checkpoint was trained with; "
                              "resume with the same recipe or start a new run folder",
                              file=str(ckpt_path), field="recipe")
        if ckpt.get("finished") and (out / METRICS_FILE).exists():
            return json.loads((out / METRICS_FILE).read_text())
    elif not resume:
        for f in (CHECKPOINT, MODEL_FILE, METRICS_FILE, LOG_FILE, CURVE_FILE):
            with contextlib.suppress(FileNotFoundError):
                (out / f).unlink()
    _atomic_text(out / RECIPE_FILE, yaml.safe_dump(rec, sort_keys=False))

    t = rec["train"]
    seed = t["seed"]
    phases = _phases(rec)
    total_epochs = phases[-1]["start"] + phases[-1]["epochs"]
    root = _resolve_data_root(rec, base, data_root)

    with _determinism(threads):
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        model = _build(rec, phases[0]["bits"])
        flatten = len(getattr(model, "input_shape", (1, 28, 28))) == 1
        train_ds, test_ds = _load_data(rec, root, flatten)
        in_shape = tuple(getattr(model, "input_shape", train_ds.tensors[0].shape[1:]))
        if tuple(train_ds.tensors[0].shape[1:]) != in_shape:
            raise RecipeError(f"model input shape {in_shape} does not fit {rec['data']['dataset']} "
                              f"samples of shape {tuple(train_ds.tensors[0].shape[1:])}",
                              file="<recipe>", field="model.options")
        test_loader = make_loader(test_ds, _EVAL_BATCH, shuffle=False)
        steps = -(-len(train_ds) // t["batch_size"])

        history: list[dict] = []
        done = 0
        opt = sched = None
        phase = None
        float_acc = None
        elapsed = 0.0
        if ckpt is not None:
            done = int(ckpt["epochs_done"])
            history = list(ckpt["history"])
            float_acc = ckpt.get("float_test_acc")
            elapsed = float(ckpt.get("train_time_s", 0.0))
            last_phase = _phase_of(phases, done - 1)
            set_weight_bits(model, last_phase["bits"])
            model.load_state_dict(ckpt["model"])
            if done < total_epochs and _phase_of(phases, done) is last_phase:
                phase = last_phase
                opt, sched = _make_optimizer(rec, model, phase["lr"], steps, phase["epochs"])
                opt.load_state_dict(ckpt["optimizer"])
                sched.load_state_dict(ckpt["scheduler"])
            _set_rng_state(ckpt["rng"])
        _atomic_text(out / LOG_FILE, "".join(json.dumps(h) + "\n" for h in history))

        ran = 0
        while done < total_epochs:
            if stop_after_epochs is not None and ran >= stop_after_epochs:
                return {"interrupted": True, "epochs_done": done, "total_epochs": total_epochs}
            p = _phase_of(phases, done)
            if p is not phase:  # a new phase: switch bits, fresh optimizer and schedule
                phase = p
                set_weight_bits(model, p["bits"])
                opt, sched = _make_optimizer(rec, model, p["lr"], steps, p["epochs"])
            loader = make_loader(train_ds, t["batch_size"], shuffle=True, seed=_epoch_seed(seed, done))
            k = done - p["start"] + 1
            t0 = time.perf_counter()
            lr = opt.param_groups[0]["lr"]
            tr_loss, tr_acc = _train_one_epoch(
                model, loader, opt, sched, progress=progress,
                desc=f"{name} {p['name']} {k}/{p['epochs']}")
            te_loss, te_acc = evaluate(model, test_loader)
            dt = time.perf_counter() - t0
            elapsed += dt
            done += 1
            ran += 1
            rec_line = {"epoch": done, "phase": p["name"], "phase_epoch": k, "lr": lr,
                        "train_loss": tr_loss, "train_acc": tr_acc, "test_loss": te_loss,
                        "test_acc": te_acc, "time_s": round(dt, 3)}
            history.append(rec_line)
            if p["name"] == "float" and k == p["epochs"]:
                float_acc = te_acc
            _atomic_torch_save({
                "version": _CKPT_VERSION, "recipe": rec, "epochs_done": done,
                "phase": p["name"], "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "rng": _rng_state(), "history": history,
                "float_test_acc": float_acc, "train_time_s": elapsed, "finished": False,
            }, ckpt_path)
            with open(out / LOG_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec_line) + "\n")
            if progress:
                from tqdm.auto import tqdm

                tqdm.write(f"[{name}] epoch {done}/{total_epochs} ({p['name']}): "
                           f"train loss {tr_loss:.4f} acc {tr_acc:.4f} | test loss {te_loss:.4f} "
                           f"acc {te_acc:.4f} | {dt:.1f}s")

        last = history[-1]
        metrics = {
            "name": name, "model": rec["model"]["name"], "dataset": rec["data"]["dataset"],
            "quant": dict(rec["quant"]),
            "float_test_acc": float_acc, "qat_test_acc": last["test_acc"],
            "float_test_accuracy": float_acc, "qat_test_accuracy": last["test_acc"],  # aliases
            "test_acc": last["test_acc"], "test_loss": last["test_loss"],
            "train_acc": last["train_acc"], "train_loss": last["train_loss"],
            "float_epochs": t["float_epochs"], "qat_epochs": t["epochs"],
            "n_train": len(train_ds), "n_test": len(test_ds), "seed": seed,
            "train_time_s": round(elapsed, 3), "threads": torch.get_num_threads(),
        }
        _atomic_torch_save({"version": _CKPT_VERSION, "recipe": rec, "state_dict": model.state_dict()},
                           out / MODEL_FILE)
        _atomic_text(out / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
        if plot:
            _plot(history, out / CURVE_FILE, f"{name}: {rec['quant']['method']} w{rec['quant']['bits']} "
                                              f"(test acc {100 * last['test_acc']:.2f}%)")
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        ck["finished"] = True
        _atomic_torch_save(ck, ckpt_path)
    return metrics


def load_run(out_dir) -> tuple[nn.Module, dict]:
    """Rebuild a trained model (eval mode, quantised weights) and its recipe from a run folder.

    ``out_dir`` may also be the path of a ``model.pt`` file.
    """
    p = Path(out_dir)
    path = p if p.is_file() else p / MODEL_FILE
    if not path.exists():
        raise VecQError("no trained model here (model.pt missing; did training finish?)", file=str(path))
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
        rec = blob["recipe"]
        state = blob["state_dict"]
    except Exception as exc:
        raise VecQError(f"cannot read trained model ({exc})", file=str(path)) from None
    model = _build(rec, rec["quant"]["bits"])
    model.load_state_dict(state)
    model.eval()
    return model, rec

