"""Layer-by-layer comparison of qonnx's executor with the simulator's trace (tests/test_qonnx.py,
benchmarks/qonnx_interop.py): a layer is judged only on the samples whose inputs to it agree, so
a difference is charged to the layer that made it, not to the layers it flows through."""

from __future__ import annotations

import numpy as np

from vecq_hw import ir


def to_mantissas(values: np.ndarray, t) -> np.ndarray:
    m = np.asarray(values, dtype=np.float64) * 2.0 ** t.frac
    assert np.array_equal(m, np.round(m)), "a value off the type's grid"
    return m.astype(np.int64)


def layer_diffs(model: ir.Model, ctx: dict, trace: dict) -> dict[str, dict]:
    """Per layer whose output the graph names (a tensor named after it, NCHW): on the samples whose
    inputs agree with the trace, how many output values differ, the largest |difference| in LSBs,
    and how many samples were judged."""
    n = len(trace[model.input.name])
    agree: dict[str, np.ndarray] = {}
    out = {}
    for layer in model.layers:
        ok_in = np.ones(n, dtype=bool)
        for src in layer.inputs:
            ok_in &= agree[src]
        if layer.name not in ctx or isinstance(layer, ir.Input):
            agree[layer.name] = ok_in
            continue
        v = ctx[layer.name]
        got = to_mantissas(v.transpose(0, 2, 3, 1) if v.ndim == 4 else v, layer.out_type).reshape(n, -1)
        diff = np.abs(got - trace[layer.name].reshape(n, -1))
        judged = diff[ok_in]
        out[layer.name] = {"differ": int(np.count_nonzero(judged)), "max": int(judged.max(initial=0)),
                           "samples": int(ok_in.sum())}
        agree[layer.name] = ok_in & ~np.any(diff, axis=1)
    return out
