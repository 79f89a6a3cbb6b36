"""Output paths the CLI was given, and file names that come from a model.

Everything we write lands inside the folder or at the file the user named: a name taken from a
model (a layer name such as '../../x') is reduced to a plain file name first, and a path that
cannot be written is one line (``VecQError``) before any work is done, not a traceback after it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from .errors import VecQError

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def safe_file_names(names, suffix: str) -> list[str]:
    """Distinct plain file names for ``names`` (layer names come from a model file: '../x', 'a/b'
    and '.hidden' must not become paths): unsafe characters -> '_', no leading '.', unique."""
    out, used = [], set()
    for name in names:
        stem = _UNSAFE.sub("_", str(name)).lstrip(".")[:100] or "layer"
        cand, k = stem, 1
        while cand.lower() in used:  # case-insensitive file systems too
            k += 1
            cand = f"{stem}_{k}"
        used.add(cand.lower())
        out.append(cand + suffix)
    return out


def inside(folder: Path, name: str) -> Path:
    """``folder / name``, refused unless it stays inside ``folder`` (the last line of defence)."""
    path = folder / name
    if path.resolve().parent != folder.resolve():
        raise VecQError(f"refusing to write '{name}' outside the output folder", file=folder)
    return path


def creatable(path, option: str, *, folder: bool = True) -> Path:
    """``path`` if it can be created where it is (checked, nothing created): no folder above it
    is a file (and, for a ``folder``, it is not a file itself). Checked before any work."""
    p = Path(path)
    for q in ((p,) if folder else ()) + tuple(p.parents):
        if q.exists() and not q.is_dir():
            raise VecQError(f"{option}: '{q}' is a file, so this {'folder' if folder else 'file'} cannot be "
                            "created", file=p)
    return p


def output_folder(path, option: str) -> Path:
    """An output folder, created if missing; one line naming it when it cannot be."""
    p = creatable(path, option)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VecQError(f"{option}: cannot create this folder ({exc.strerror or exc})", file=p) from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise VecQError(f"{option}: folder is not writable", file=p)
    return p


def output_file(path, option: str) -> Path:
    """An output file's path, its folder created if missing; refused early (before the work) when
    it cannot be written."""
    p = Path(path)
    if p.is_dir():
        raise VecQError(f"{option}: is a folder, expected a file name", file=p)
    creatable(p, option, folder=False)
    output_folder(p.parent if str(p.parent) else Path("."), option)
    return p


def _atomic(path, suffix: str, write) -> None:
    """``write(tmp)`` to a temporary sibling, then rename: a failure leaves no half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise VecQError(f"cannot write this file ({exc.strerror or exc})", file=path) from None


def atomic_save(path, arr):
    """np.save, atomically (see :func:`_atomic`)."""
    _atomic(path, ".npy", lambda tmp: np.save(tmp, arr))


def atomic_text(path, text: str):
    """A text file, atomically (see :func:`_atomic`)."""
    _atomic(path, "", lambda tmp: tmp.write_text(text, encoding="utf-8"))
