"""A written project's C simulation on inputs of the caller's choice, and its two weight copies.

``csim`` runs the testbench data the project was written with and counts mismatches; here the
caller brings the inputs and gets the C++'s output mantissas back (and, for a project written
with ``HlsOptions(trace=True)``, every traced layer's values), to compare as it likes. The
project is not modified: the inputs go to a temporary folder the testbench reads (it compares
nothing when that folder holds no expected outputs), and the build is the cached one of
``csim`` (keyed by the sources' content).

hls4ml writes every weight table twice: ``firmware/weights/<w>.txt``, which the C simulation
loads at run time, and the initialiser in ``<w>.h``, which only synthesis compiles.
:func:`weight_copy_differences` says where the two disagree, so that a C simulation is known
to have run the tables synthesis will build.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ToolError, VecQError
from ..fixed import FixedType
from .csim import DEFAULT_OPT, CsimError, _build, _first_error, default_jobs, read_project_meta
from .csim_run import run_commands, shard_size


@dataclass
class Prediction:
    """Output mantissas (n, n_out) int64; ``trace``: hls4ml layer name -> (n, size) mantissas of
    its output type (``predict(..., trace=True)`` only); the build's time and whether it was cached."""

    outputs: np.ndarray
    trace: dict[str, np.ndarray] | None
    build_seconds: float
    cached: bool
    run_seconds: float


def build(prj_dir, *, opt: str = DEFAULT_OPT, cxx: str = "g++", jobs: int | None = None,
          check_synthesis: bool = True, cache_dir=None) -> tuple[Path, bool, float]:
    """(executable, cached?, seconds): the project's C simulation build (``csim``'s cache;
    ``cache_dir``: where the shared precompiled headers live, as for ``csim``)."""
    prj = Path(prj_dir).resolve()
    meta = read_project_meta(prj)
    t0 = time.perf_counter()
    exe, _, cached, _, _ = _build(prj, meta["project"], cxx=cxx, opt=opt, jobs=jobs or default_jobs(),
                               check_synthesis=check_synthesis, pch=True, deadline=None,
                               kernels=frozenset(meta.get("kernel_headers", ())), cache=cache_dir)
    return exe, cached, time.perf_counter() - t0


def _input_file(path: Path, x: np.ndarray) -> None:
    """The testbench's input format: a header 'N values_per_sample', then one sample a line."""
    flat = x.reshape(len(x), -1)
    with open(path, "w") as f:
        f.write(f"{flat.shape[0]} {flat.shape[1]}\n")
        for row in flat:
            f.write(" ".join(map(str, row.tolist())) + "\n")


def _trace_mantissas(lines: list[str], n: int, meta: dict) -> dict[str, np.ndarray]:
    """The testbench's trace lines (per sample, one 'name v...' line per traced layer) as
    mantissas of each layer's type; values off the type's grid are a tool failure."""
    names = meta["traced"]
    rows: dict[str, list] = {name: [] for name in names}
    for k, line in enumerate(lines):
        name, _, values = line.partition(" ")
        if name != names[k % len(names)]:
            raise ToolError(f"C simulation trace: line {k + 1} is layer '{name}', expected '{names[k % len(names)]}'")
        rows[name].append(np.array(values.split(), dtype=np.float64))
    out = {}
    for name in names:
        t = meta["layer_types"].get(name)
        if t is None or len(rows[name]) != n:  # a layer hls4ml added (a clone): no type of ours
            continue
        v = np.ldexp(np.stack(rows[name]), FixedType.parse(t).frac)
        if not np.all(np.isfinite(v)) or np.any(v != np.round(v)):
            raise ToolError(f"C simulation trace of layer '{name}' is not on the grid of {t}")
        out[name] = v.astype(np.int64)
    return out


def predict(prj_dir, x_mantissa, *, trace: bool = False, jobs: int | None = None, opt: str = DEFAULT_OPT,
            cxx: str = "g++", timeout: float | None = None) -> Prediction:
    """The C-simulated outputs of the project on input mantissas (N,) + input shape (and with
    ``trace`` every traced layer's outputs). The testbench runs in ``jobs`` processes at once."""
    prj = Path(prj_dir).resolve()
    meta = read_project_meta(prj)
    if trace and not meta.get("traced"):
        raise VecQError("the project traces no layer: write it with HlsOptions(trace=True)", file=prj)
    x = np.asarray(x_mantissa, dtype=np.int64)
    n = len(x)
    if x.ndim < 2 or x[0].size != meta["n_in"]:
        raise VecQError(f"expected input mantissas of shape (N, ...) with {meta['n_in']} values a sample, got "
                        f"{x.shape}", field="x_mantissa")
    exe, cached, build_seconds = build(prj, opt=opt, cxx=cxx, jobs=jobs)
    jobs = jobs or default_jobs()
    deadline = time.monotonic() + timeout if timeout is not None else None
    work = Path(tempfile.mkdtemp(prefix="vecq_predict_"))
    outputs, traces = {}, {}
    try:
        _input_file(work / "vecq_input.dat", x)
        size = shard_size(n, jobs)
        tasks = [((first, min(size, n - first)),
                  [str(exe), str(work), str(first), str(min(size, n - first)), str(work / f"out-{first}.dat")]
                  + ([str(work / f"trace-{first}.dat")] if trace else []))
                 for first in range(0, n, size)]

        def done(shard, rc, log):
            first, count = shard
            if rc != 0:
                raise CsimError(f"{prj}: testbench failed on samples {first}..{first + count - 1} (exit {rc}): "
                                f"{_first_error(log)}", log=log)
            outputs[first] = np.array((work / f"out-{first}.dat").read_text().split(), dtype=np.int64)
            if trace:
                traces[first] = (work / f"trace-{first}.dat").read_text().splitlines()

        t0 = time.perf_counter()
        run_commands(tasks, cwd=prj, parallel=jobs, deadline=deadline, on_done=done)
        run_seconds = time.perf_counter() - t0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    y = np.concatenate([outputs[k] for k in sorted(outputs)]) if outputs else np.zeros(0, dtype=np.int64)
    if y.size != n * meta["n_out"]:
        raise ToolError(f"{prj}: the testbench wrote {y.size} output values for {n} samples, expected "
                        f"{n * meta['n_out']}")
    tr = _trace_mantissas([ln for k in sorted(traces) for ln in traces[k]], n, meta) if trace else None
    return Prediction(y.reshape(n, meta["n_out"]), tr, build_seconds, cached, run_seconds)


# --------------------------------------------------------------------------- the weights' two copies

_CALL = re.compile(r"^\s*[\w:]+<[^;]*>\(([^;]*)\);\s*//\s*(\S+)\s*$", re.M)


def _owners(prj: Path, project: str) -> dict[str, str]:
    """Weight array name -> the layer whose call takes it (from the top function's call lines,
    which hls4ml ends with '// <layer name>')."""
    out = {}
    for args, layer in _CALL.findall((prj / "firmware" / f"{project}.cpp").read_text()):
        for arg in args.split(","):
            out.setdefault(arg.strip(), layer)
    return out


def weight_copy_differences(prj_dir) -> list[str]:
    """One line per weight table whose synthesised copy (the initialiser in firmware/weights/<w>.h)
    differs from the C-simulated one (<w>.txt): the layer, the files, the first differing index
    and both values. Empty when every table agrees."""
    prj = Path(prj_dir).resolve()
    meta = read_project_meta(prj)
    owners = _owners(prj, meta["project"])
    layer_of = {hls: name for name, hls in meta.get("layer_names", {}).items()}
    lines = []
    for txt in sorted((prj / "firmware" / "weights").glob("*.txt")):
        header = txt.with_suffix(".h")
        init = re.search(rf"\b{re.escape(txt.stem)}\s*\[[^\]]*\]\s*=\s*\{{([^}}]*)\}}",
                         header.read_text() if header.is_file() else "")
        sim = [t.strip() for t in txt.read_text().split(",") if t.strip()]
        syn = [t.strip() for t in init.group(1).split(",") if t.strip()] if init else None
        if syn == sim:
            continue
        hls_layer = owners.get(txt.stem, "?")
        where = f"layer '{layer_of.get(hls_layer, hls_layer)}': firmware/weights/{header.name} (synthesis)"
        if syn is None:
            lines.append(f"{where} has no initialiser for {txt.stem}")
            continue
        k = next((i for i, (a, b) in enumerate(zip(syn, sim)) if a != b), min(len(syn), len(sim)))
        lines.append(f"{where} differs from {txt.name} (C simulation) at index {k} of {len(sim)}: "
                     f"{syn[k] if k < len(syn) else 'nothing'} vs {sim[k] if k < len(sim) else 'nothing'}")
    return lines


__all__ = ["Prediction", "build", "predict", "weight_copy_differences"]
