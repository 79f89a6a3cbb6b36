"""The model folder's own commands: ``check`` (describe it) and ``sim`` (simulate a .npy batch).

Every file written lies inside the output folder or file the caller named: names that come
from a model (layer names in ``sim --trace``) are reduced to safe file names first.
"""

from __future__ import annotations

import time

import numpy as np

from ..batch import NpyBatch
from ..outputs import atomic_save, inside, output_file, output_folder, safe_file_names
from ..report import describe_model, overflow_table
from .inputs import add_counts, count_input_overflow, input_saturation_warning, no_overflow


def describe_model_dir(model_dir) -> str:
    """``vecq-hw check``: validate a model folder; its layers and weight memory as text."""
    from ..ir.io import load_model, weight_memory_report
    model = load_model(model_dir)
    return describe_model(model, weight_memory_report(model))


def simulate_files(model_dir, input_path, output_path=None, *, mantissas=False, trace_dir=None, warn=None) -> str:
    """`vecq-hw sim`: simulate a .npy batch; write outputs (and a per-layer trace) if asked.

    The input file is read block by block (``batch.NpyBatch``), so memory grows with the
    outputs (N x outputs x 8 bytes; with ``trace_dir`` N x every layer's values x 8), never
    with a copy of the inputs. ``warn``: where the input-range warning goes (default: a line
    of the returned text).
    """
    from ..ir.io import load_model
    from ..sim import Simulator
    model = load_model(model_dir)
    batch = NpyBatch(input_path, what="inputs", expect_shape=model.input.shape)
    out_file = output_file(output_path, "--output") if output_path else None
    tdir = output_folder(trace_dir, "--trace") if trace_dir else None
    sim = Simulator(model)
    n = len(batch)
    output, traces = None, None
    in_counts = no_overflow()
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
        add_counts(in_counts, count_input_overflow(model, x))
        for k, c in (res.overflow or {}).items():
            add_counts(overflow.setdefault(k, no_overflow()), c)
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
