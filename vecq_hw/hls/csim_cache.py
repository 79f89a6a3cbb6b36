"""The user cache that C simulation shares between projects: precompiled headers.

**Where**: ``vecq-hw csim --cache-dir DIR`` (``csim(..., cache_dir=DIR)``), else ``$VECQ_HW_CACHE``,
else ``~/.cache/vecq_hw``. It lies outside every project folder on purpose: hls4ml's ap_types and
nnet_utils headers are the same in every project, and parsing them is most of a g++ build.

**What**: one folder ``pch-<csim|synth>-<key>`` per compiler, flags and header content, holding a
copy of those headers and the precompiled ``vecq_pch.h.gch`` (about 80-90 MB each). Nothing in it
is needed for a result: without it g++ parses the headers itself (slower, the same outputs), so
it may be deleted at any time.

**Bound**: at most ``$VECQ_HW_CACHE_MB`` megabytes (default 1024). A folder's modification time
is its last use; after a new header is built, the least recently used folders are removed until
the rest fits, except those used in the last ``IN_USE_SECONDS`` (another process may be about to
read them). Other content of the cache folder (not ``pch-*``) is never touched.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ..errors import VecQError

ENV_DIR = "VECQ_HW_CACHE"
ENV_MB = "VECQ_HW_CACHE_MB"
DEFAULT_MB = 1024
#: folders used this recently are never removed (a build elsewhere may be starting with them)
IN_USE_SECONDS = 300


def cache_dir(override=None) -> Path:
    """The cache folder: ``override``, else $VECQ_HW_CACHE, else ~/.cache/vecq_hw."""
    if override is not None:
        return Path(override)
    return Path(os.environ.get(ENV_DIR) or Path.home() / ".cache" / "vecq_hw")


def limit_bytes() -> int:
    """$VECQ_HW_CACHE_MB (a positive integer of megabytes; default DEFAULT_MB) in bytes."""
    text = os.environ.get(ENV_MB, "").strip()
    if not text:
        return DEFAULT_MB << 20
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise VecQError(f"expected a positive number of megabytes, got {text!r}", field=f"${ENV_MB}")
    return int(text) << 20


def touch(folder: Path) -> None:
    """Mark ``folder`` as used now (its place in the LRU order)."""
    try:
        os.utime(folder)
    except OSError:  # a read-only cache still serves
        pass


def _size(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def prune(root: Path, keep: Path | None = None, *, limit: int | None = None, now: float | None = None) -> list[Path]:
    """Remove the least recently used ``pch-*`` folders of ``root`` until the rest holds at most
    ``limit`` bytes (default :func:`limit_bytes`); ``keep`` and folders used in the last
    IN_USE_SECONDS stay. Returns what was removed."""
    limit = limit_bytes() if limit is None else limit
    now = time.time() if now is None else now
    entries = []
    for p in root.glob("pch-*"):
        try:
            entries.append((p.stat().st_mtime, p, _size(p)))
        except OSError:
            continue
    total = sum(size for _, _, size in entries)
    removed = []
    for mtime, p, size in sorted(entries):  # oldest use first
        if total <= limit:
            break
        if p == keep or now - mtime < IN_USE_SECONDS:
            continue
        shutil.rmtree(p, ignore_errors=True)
        total -= size
        removed.append(p)
    return removed


__all__ = ["DEFAULT_MB", "ENV_DIR", "ENV_MB", "IN_USE_SECONDS", "cache_dir", "limit_bytes", "prune", "touch"]
