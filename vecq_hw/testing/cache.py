"""Built projects, cached by content: an HLS project compiled once (g++) and an RTL project
Verilated once per model folder, options and toolkit, shared by every test (and every pytest
worker) that asks for the same thing.

The key hashes the model folder's files, the options, and the toolkit that writes the project
(vecq_hw's sources and templates, the hls4ml and da4ml versions), so a changed model or a
changed vecq_hw never reuses a stale project. A file lock makes one process build while others
wait (pytest-xdist workers share the cache folder).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import importlib.util
import json
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

from ..errors import ToolError
from ..resources import TEMPLATE_DIR

_PACKAGE = Path(__file__).resolve().parents[1]


class ToolMissing(ToolError):
    """A stage's tool (g++, verilator, hls4ml, da4ml) is not installed: a reason to skip it."""


def missing_tool(stage: str, cxx: str = "g++") -> str | None:
    """Why ``stage`` ('csim' or 'rtlsim') cannot run here, or None when its tools are installed."""
    needs = {"csim": ((cxx, "C simulation"), ("hls4ml", None)),
             "rtlsim": (("verilator", "RTL simulation"), ("da4ml", None))}.get(stage, ())
    for name, program_for in needs:
        if program_for and shutil.which(name) is None:
            return f"{name} not found on PATH (needed for the {program_for})"
        if not program_for and importlib.util.find_spec(name) is None:
            return f"the Python package {name} is not installed"
    return None


def require_tool(stage: str, cxx: str = "g++") -> None:
    why = missing_tool(stage, cxx)
    if why:
        raise ToolMissing(f"{stage}: {why}")


@contextlib.contextmanager
def locked(path):
    """An exclusive lock, across processes, named after ``path`` (the lock file lives in the
    system's temporary folder: nothing is added to the caller's folders)."""
    key = hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:20]
    with open(Path(tempfile.gettempdir()) / f"vecq_hw-{key}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _hash_files(h, root: Path, files) -> None:
    for p in sorted(files):
        h.update(str(p.relative_to(root)).encode() + b"\0")
        h.update(p.read_bytes())


@functools.lru_cache(maxsize=1)
def toolkit_fingerprint() -> str:
    """What writes a project: vecq_hw's sources, its HLS templates, hls4ml's and da4ml's versions."""
    h = hashlib.sha256()
    _hash_files(h, _PACKAGE, _PACKAGE.rglob("*.py"))
    _hash_files(h, TEMPLATE_DIR, (p for p in TEMPLATE_DIR.rglob("*") if p.is_file()))
    for dist in ("hls4ml", "da4ml"):
        try:
            h.update(f"{dist}={metadata.version(dist)}".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{dist}=none".encode())
    return h.hexdigest()


def model_hash(model_dir) -> str:
    """The content of a model folder (every file, by relative path)."""
    root = Path(model_dir)
    h = hashlib.sha256()
    _hash_files(h, root, (p for p in root.rglob("*") if p.is_file()))
    return h.hexdigest()


class ProjectCache:
    """Projects under ``root``: ``hls(model_dir, ...)`` and ``rtl(model_dir, ...)`` return the
    path of a built project, writing and building it only the first time for this content."""

    def __init__(self, root):
        self.root = Path(root).absolute()
        self.root.mkdir(parents=True, exist_ok=True)

    def _key(self, kind: str, model_dir, options: dict) -> str:
        h = hashlib.sha256(kind.encode())
        for part in (model_hash(model_dir), json.dumps(options, sort_keys=True), toolkit_fingerprint()):
            h.update(part.encode() + b"\0")
        return h.hexdigest()[:24]

    def _get(self, kind: str, model_dir, options: dict, make) -> Path:
        path = self.root / f"{kind}-{self._key(kind, model_dir, options)}"
        ready = path.with_name(path.name + ".ready")
        with locked(path):
            if not ready.is_file():
                ready.unlink(missing_ok=True)
                shutil.rmtree(path, ignore_errors=True)  # a build that stopped half-way
                make(path)
                ready.write_text("built\n")
        return path

    def hls(self, model_dir, options=None, **option_kw) -> Path:
        """The HLS project of ``model_dir`` (default options with ``trace=True``, so that a
        C simulation can be compared layer by layer), C-simulation build done."""
        from ..hls.options import HlsOptions
        opts = HlsOptions.from_kwargs(options or HlsOptions(trace=True), **option_kw)
        require_tool("csim")

        def make(path: Path) -> None:
            from ..flow import random_inputs, write_hls_project
            from ..hls import build
            from ..ir.io import load_model
            model = load_model(model_dir)
            write_hls_project(model, path, opts, random_inputs(model, 100))
            build(path)

        return self._get("hls", model_dir, dataclasses.asdict(opts), make)

    def rtl(self, model_dir, options=None, **option_kw) -> Path:
        """The RTL project of ``model_dir`` (da4ml), Verilated."""
        from ..rtl.options import RtlOptions
        opts = options or RtlOptions()
        opts = dataclasses.replace(opts, **option_kw) if option_kw else opts
        require_tool("rtlsim")

        def make(path: Path) -> None:
            from ..flow import generate_rtl
            from ..rtl import build
            generate_rtl(model_dir, path, opts)
            build(path)

        return self._get("rtl", model_dir, opts.to_dict(), make)


@contextlib.contextmanager
def temporary_cache():
    """A ProjectCache in a temporary folder, removed afterwards (``check`` without a cache)."""
    root = tempfile.mkdtemp(prefix="vecq_check_")
    try:
        yield ProjectCache(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


__all__ = ["ProjectCache", "ToolMissing", "locked", "missing_tool", "model_hash", "require_tool",
           "temporary_cache", "toolkit_fingerprint"]
