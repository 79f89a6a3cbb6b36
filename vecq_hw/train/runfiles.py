"""The files of a run folder: atomic writes, and checkpoints that hold plain data only.

A run folder may come from someone else, so nothing in it is unpickled beyond plain data:
every ``.pt`` file is read with ``torch.load(weights_only=True)`` (tensors, numbers,
strings, lists, tuples, dicts) and a file holding any other pickled object is refused with
one line. What needs more than that (numpy's RNG state) is stored as plain data.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import VecQError

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
