"""The files of a run folder: atomic writes, checkpoints that hold plain data only, what a
folder already holds (:func:`open_run_folder`) and the training curve.

A run folder may come from someone else, so nothing in it is unpickled beyond plain data:
every ``.pt`` file is read with ``torch.load(weights_only=True)`` (tensors, numbers,
strings, lists, tuples, dicts) and a file holding any other pickled object is refused with
one line. What needs more than that (numpy's RNG state) is stored as plain data.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import RecipeError, VecQError
from ..outputs import creatable
from .recipe import RUNTIME_KEYS

CHECKPOINT = "checkpoint.pt"
MODEL_FILE = "model.pt"
METRICS_FILE = "metrics.json"
LOG_FILE = "log.jsonl"
CURVE_FILE = "training_curve.png"
RECIPE_FILE = "recipe.yaml"
RUN_FILES = (CHECKPOINT, MODEL_FILE, METRICS_FILE, LOG_FILE, CURVE_FILE)
#: 2: plain-data checkpoints (RNG states as tensors/tuples, quantiser state), any world size
CKPT_VERSION = 2
_UMASK = os.umask(0o022)
os.umask(_UMASK)


# ----------------------------------------------------------------------------- atomic writes

def atomic_write(path: Path, write) -> None:
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


def atomic_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_torch_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


# ----------------------------------------------------------------------------- safe loading

def _why_not_plain(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    m = re.search(r"GLOBAL ([\w.]+)", text)  # torch names the refused global
    if m:
        return f"global {m.group(1)}"
    m = re.search(r"Unsupported operand[^.;(]*", text)
    return m.group(0) if m else "not a weights-only pickle"


def load_plain(path: Path, what: str) -> Any:
    """``torch.load(path, weights_only=True)``; any failure is one VecQError line."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise VecQError(f"refusing to load {what}: it holds a pickled object that is not plain "
                        f"data ({_why_not_plain(exc)}); a run folder is read with "
                        f"torch.load(weights_only=True) only", file=str(path)) from None
    except Exception as exc:  # truncated/corrupt zip, not a torch file, unreadable
        raise VecQError(f"cannot read {what} ({' '.join(str(exc).split())[:200]})",
                        file=str(path)) from None


def load_weights(model, state, path: Path, field: str) -> None:
    """Saved weights (``state``, read from ``path``'s entry ``field``) into the recipe's model, or
    one line saying what does not fit (missing or unexpected names, shapes that differ)."""
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise VecQError(f"the '{field}' entry is not a state dict (parameter names -> tensors)", file=str(path),
                        field=field)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # torch lists every missing/unexpected key and every size mismatch
        detail = " ".join(str(exc).split("\n\t", 1)[-1].split())
        raise VecQError(f"the weights do not fit the recipe's model: {detail[:300]}", file=str(path),
                        field=field) from None


#: what a checkpoint holds (version 2) beyond its version
CKPT_KEYS = ("recipe", "model", "epochs_done", "history", "rng")


# ----------------------------------------------------------------------------- RNG state as plain data

def rng_state() -> dict:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                      "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# ----------------------------------------------------------------------------- the run folder

def open_run_folder(out: Path, rec: dict, *, resume: bool, overwrite: bool, dry_run: bool = False):
    """Look at what ``out`` holds; returns (checkpoint or None, finished metrics or None).

    Without ``resume``, a folder that already holds run files is refused unless
    ``overwrite`` (then they are deleted): an interrupted run is never thrown away silently.
    """
    creatable(out, "--out")  # a file where the run folder goes: refused before any process trains
    ckpt_path = out / CHECKPOINT
    if resume and overwrite:
        raise VecQError("--resume and --overwrite exclude each other: continue the run or start over",
                        file=str(out))
    if resume and ckpt_path.exists():
        ckpt = load_plain(ckpt_path, "checkpoint")
        if not isinstance(ckpt, dict) or ckpt.get("version") != CKPT_VERSION:
            v = ckpt.get("version") if isinstance(ckpt, dict) else None
            # a plain scalar is shown; anything else by its type only (no object reprs in messages)
            v = repr(v) if isinstance(v, (int, str, float, type(None))) else f"of type {type(v).__name__}"
            raise VecQError(f"unsupported checkpoint version {v} (this vecq_hw writes "
                            f"{CKPT_VERSION}); start over with --overwrite", file=str(ckpt_path))
        missing = [k for k in CKPT_KEYS if k not in ckpt]
        if missing:
            raise VecQError(f"not a complete checkpoint (no {', '.join(missing)}); start over with --overwrite",
                            file=str(ckpt_path), field=missing[0])
        if comparable_recipe(ckpt["recipe"]) != comparable_recipe(rec):
            raise RecipeError("recipe differs from the one the checkpoint was trained with; "
                              "resume with the same recipe or start a new run folder",
                              file=str(ckpt_path), field="recipe")
        if ckpt.get("finished") and (out / METRICS_FILE).exists():
            return ckpt, json.loads((out / METRICS_FILE).read_text())
        return ckpt, None
    if not resume:
        present = [f for f in RUN_FILES if (out / f).exists()]
        if present and not overwrite:
            what = "an interrupted run" if CHECKPOINT in present and MODEL_FILE not in present else "a run"
            raise VecQError(f"already holds {what} ({', '.join(present)}); pass --resume to continue "
                            f"it or --overwrite to start over", file=str(out))
        for f in present if not dry_run else ():
            with contextlib.suppress(FileNotFoundError):
                (out / f).unlink()
    return None, None


def comparable_recipe(rec: dict) -> dict:
    """The recipe minus where-it-runs keys (device, threads, workers): a run may resume on
    another device or thread count."""
    out = json.loads(json.dumps(rec))
    for k in RUNTIME_KEYS:
        out["train"].pop(k, None)
    return out


def checkpoint_threads(out: Path) -> int | None:
    """The thread count a run folder's checkpoint was trained with (None: no usable one)."""
    path = out / CHECKPOINT
    if not path.exists():
        return None
    try:
        v = load_plain(path, "checkpoint").get("threads")
    except (VecQError, AttributeError):
        return None  # open_run_folder reports what is wrong with it
    return int(v) if isinstance(v, int) and v > 0 else None


def write_curve(history: list[dict], path: Path, title: str) -> None:
    """training_curve.png: loss and accuracy per epoch, the start of QAT marked."""
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
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
