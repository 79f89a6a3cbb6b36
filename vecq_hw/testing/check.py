"""``check``: run a model folder's inputs through every stage of the flow and compare exactly.

    sim     the bit-accurate simulator: the reference (compared with ``expected`` when given)
    csim    the HLS project (hls4ml + our kernels) compiled with g++ and C-simulated
    rtlsim  the da4ml RTL Verilated (and the exact execution of da4ml's traced graph, rtl/interp.py)

A stage whose tool is not installed is skipped with the reason (inside a pytest test: the test
is skipped after the other stages passed; elsewhere it is reported in the result). Anything
else that stops a stage is an error: a refused model, a compiler error, a mismatch. A mismatch
raises AssertionError naming the stage and the layer: for csim the first layer whose C-simulated
values differ (projects are written with ``HlsOptions(trace=True)``, so the C simulation hands
over every layer's output), else the output layer.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import ir
from ..errors import VecQError
from .cache import ProjectCache, locked, missing_tool, temporary_cache
from .compare import mismatch
from .inputs import as_model

STAGES = ("sim", "csim", "rtlsim")
ON_MISSING = ("auto", "skip", "report", "fail")
#: samples whose layers are traced in C simulation to find the first layer that differs
TRACE_SAMPLES = 4


@dataclass
class StageResult:
    stage: str
    status: str  # 'bit-exact', 'reference' or 'skipped'
    detail: str
    seconds: float = 0.0


@dataclass
class CheckResult:
    """What :func:`check` found: per stage, its status and what it compared."""

    model: str
    n_inputs: int
    outputs: np.ndarray  # the simulator's output mantissas, (N,) + output shape
    stages: dict[str, StageResult] = field(default_factory=dict)

    @property
    def skipped(self) -> list[StageResult]:
        return [s for s in self.stages.values() if s.status == "skipped"]

    @property
    def ok(self) -> bool:
        """Every stage ran and agreed (a skipped stage is not a pass)."""
        return not self.skipped

    def text(self) -> str:
        lines = [f"vecq_hw.testing.check of '{self.model}' on {self.n_inputs} inputs:"]
        lines += [f"  {s.stage:7s} {s.status:10s} {s.detail} ({s.seconds:.2f} s)" if s.status != "skipped"
                  else f"  {s.stage:7s} skipped    {s.detail}" for s in self.stages.values()]
        return "\n".join(lines)


@dataclass
class _Run:
    model: ir.Model
    model_dir: object
    x: np.ndarray
    ref: np.ndarray
    cache: ProjectCache
    hls_project: object = None
    rtl_project: object = None
    hls_options: object = None
    rtl_options: object = None
    jobs: int | None = None
    expected: object = None

    def flat(self, y: np.ndarray) -> np.ndarray:
        return np.asarray(y).reshape(len(self.x), -1)


def as_mantissas(model: ir.Model, inputs) -> np.ndarray:
    """Integer arrays are the input type's mantissas (checked to lie in it); floats are values,
    converted as the flow converts them (``from_float``: the input type's rounding and overflow)."""
    x = np.asarray(inputs)
    t, shape = model.input.out_type, tuple(model.input.shape)
    if x.shape == shape:
        x = x[None]
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape or len(x) == 0:
        raise VecQError(f"expected inputs of shape (N,) + {shape} with N >= 1, got {x.shape}", field="inputs")
    if x.dtype.kind in "iu":
        if x.min() < t.min_mantissa or x.max() > t.max_mantissa:
            raise VecQError(f"integer inputs are mantissas of {t} and must lie in [{t.min_mantissa}, "
                            f"{t.max_mantissa}]", field="inputs")
        return x.astype(np.int64)
    if x.dtype.kind != "f":
        raise VecQError(f"expected integer mantissas or float values, got dtype {x.dtype}", field="inputs")
    return np.asarray(t.from_float(x.astype(np.float64)), dtype=np.int64)


def _sim(run: _Run) -> StageResult:
    if run.expected is None:
        return StageResult("sim", "reference", f"{run.ref.size} output values of {run.model.output_type}")
    expected = np.asarray(run.expected)
    expected = expected.reshape(run.ref.shape) if expected.size == run.ref.size else expected  # flat rows too
    why = mismatch(expected, run.ref, stage="sim", layer=run.model.layers[-1].name,
                   expected_name="expected", actual_name="simulator")
    if why:
        raise AssertionError(why)
    return StageResult("sim", "bit-exact", f"{run.ref.size} output values equal to the expected ones")


def _first_layer_that_differs(run: _Run, prj, samples: np.ndarray) -> str | None:
    """Trace the C simulation and the simulator on ``samples``; the first layer (in the graph's
    order) whose values differ, as a one-line message, or None when the project traces nothing."""
    from ..hls import predict
    from ..hls.csim import read_project_meta
    from ..sim import simulate
    meta = read_project_meta(Path(prj))
    if not meta.get("traced"):
        return None
    got = predict(prj, run.x[samples], trace=True, jobs=run.jobs).trace
    ref = simulate(run.model, x_mantissa=run.x[samples], trace=True).trace
    for layer in run.model.layers[1:]:
        name = meta["layer_names"].get(layer.name)
        if name in got:
            why = mismatch(ref[layer.name], got[name].reshape(ref[layer.name].shape), stage="csim",
                           layer=layer.name, expected_name="simulator", actual_name="C simulation",
                           note="the first layer that differs, every layer traced on the first "
                                f"{len(samples)} inputs whose outputs differ", sample_ids=samples)
            if why:
                return why
    return None


def _csim(run: _Run) -> StageResult:
    from ..hls import build, predict, weight_copy_differences
    prj = run.hls_project or run.cache.hls(run.model_dir, run.hls_options)
    copies = weight_copy_differences(prj)  # first: it needs no build
    if copies:
        more = f" (and {len(copies) - 1} more tables)" if len(copies) > 1 else ""
        raise AssertionError(f"csim: {copies[0]}{more}")
    with locked(prj):  # one build, whoever asks first
        build(prj)
    pred = predict(prj, run.x, jobs=run.jobs)
    out = mismatch(run.flat(run.ref), pred.outputs, stage="csim", layer=run.model.layers[-1].name,
                   expected_name="simulator", actual_name="C simulation")
    if out:
        bad = np.flatnonzero(np.any(run.flat(run.ref) != pred.outputs, axis=1))[:TRACE_SAMPLES]
        first = _first_layer_that_differs(run, prj, bad)
        raise AssertionError(f"{first}; output {out.split(': ', 1)[1]}" if first else out)
    return StageResult("csim", "bit-exact", f"{pred.outputs.size} output values equal to the simulator's; "
                       "the synthesised weight tables equal the C-simulated ones")


def _rtlsim(run: _Run) -> StageResult:
    from ..rtl import build, load_project, predict_interp, predict_rtl
    prj = load_project(run.rtl_project or run.cache.rtl(run.model_dir, run.rtl_options))
    with locked(prj.path):  # the Verilated harness reads and writes files inside the project
        b = build(prj)
        rtl = predict_rtl(prj, run.x, build_result=b)
        interp = predict_interp(prj, run.x)
    for got, name in ((rtl, "Verilator RTL"), (interp, "traced-graph executor")):
        why = mismatch(run.flat(run.ref), got, stage="rtlsim", layer=run.model.layers[-1].name,
                       expected_name="simulator", actual_name=name)
        if why:
            raise AssertionError(why)
    return StageResult("rtlsim", "bit-exact", f"{rtl.size} output values (Verilated RTL and the exact execution "
                       "of da4ml's traced graph) equal to the simulator's")


RUNNERS = {"sim": _sim, "csim": _csim, "rtlsim": _rtlsim}


def _handle_missing(result: CheckResult, on_missing: str) -> None:
    skipped = result.skipped
    if not skipped:
        return
    why = "; ".join(f"{s.stage} skipped: {s.detail}" for s in skipped)
    ran = [s.stage for s in result.stages.values() if s.status != "skipped"]
    why += f" ({', '.join(ran)} passed)" if ran else ""
    mode = on_missing
    if mode == "auto":
        mode = "skip" if os.environ.get("PYTEST_CURRENT_TEST") else "report"
    if mode == "fail":
        raise AssertionError(f"vecq_hw.testing.check: {why}")
    if mode == "skip":
        try:
            import pytest
        except ImportError:  # not in a test after all: the result says it
            return
        pytest.skip(why)


def _saved(model: ir.Model, stack: contextlib.ExitStack) -> Path:
    """An ``ir.Model`` passed to check, saved into a temporary model folder (the back ends' input)."""
    from ..ir.io import save_model
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vecq_check_model_"))) / "model"
    return save_model(model, folder).path


def check(model_dir, inputs, backends=STAGES, *, expected=None, hls_project=None, rtl_project=None,
          hls_options=None, rtl_options=None, cache: ProjectCache | None = None, on_missing: str = "auto",
          jobs: int | None = None) -> CheckResult:
    """Run ``inputs`` through each of ``backends`` and compare every output exactly with the simulator.

    ``model_dir``: a model folder (or an ``ir.Model``). ``inputs``: integer mantissas of the input
    type, or float values (converted like the flow does), shape (N,) + input shape. ``expected``: output mantissas the simulator must reproduce
    (golden outputs kept by the caller). ``hls_project`` / ``rtl_project``: an existing project to
    check (default: written from ``model_dir`` with ``hls_options`` / ``rtl_options`` into
    ``cache``, or into a temporary folder). ``on_missing``: what a stage whose tool is not installed
    does: 'auto' (pytest.skip inside a pytest test, else 'report'), 'skip', 'report' (in the
    result only) or 'fail' (AssertionError). Raises AssertionError (one line naming the stage and
    the layer) on the first disagreement; returns a :class:`CheckResult`.
    """
    __tracebackhide__ = True
    unknown = [b for b in backends if b not in STAGES]
    if unknown or on_missing not in ON_MISSING:
        raise VecQError(f"expected backends among {STAGES} and on_missing among {ON_MISSING}, got "
                        f"{list(backends)} and {on_missing!r}", field="backends" if unknown else "on_missing")
    from ..sim import simulate
    model = as_model(model_dir)
    x = as_mantissas(model, inputs)
    t0 = time.perf_counter()
    ref = simulate(model, x_mantissa=x).output
    result = CheckResult(model.name, len(x), ref)
    with contextlib.ExitStack() as stack:
        if any(b != "sim" for b in backends):
            cache = cache or stack.enter_context(temporary_cache())
            model_dir = model_dir if not isinstance(model_dir, ir.Model) else _saved(model, stack)
        run = _Run(model, model_dir, x, ref, cache, hls_project, rtl_project, hls_options, rtl_options, jobs,
                   expected)
        for stage in dict.fromkeys(("sim",) + tuple(backends)):  # the reference first, once
            why = missing_tool(stage)
            if why:
                result.stages[stage] = StageResult(stage, "skipped", why)
                continue
            result.stages[stage] = RUNNERS[stage](run)
            result.stages[stage].seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
    _handle_missing(result, on_missing)
    return result
