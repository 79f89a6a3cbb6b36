"""Test inputs for a model's input type, as int64 mantissas of shape (N,) + the input shape (what
:func:`vecq_hw.testing.check` and ``simulate(model, x_mantissa=...)`` take).

    random_inputs(model, n)       uniform over the whole type, both ends included
    edge_inputs(model)            every value at an end of the type's range (all min, all max,
                                  the checkerboards, random mixes of the two ends)
    saturating_inputs(model, n)   the candidates that make the requantising layers saturate (or
                                  wrap) the most values, as the simulator counts them

``model``: an ``ir.Model`` or a model folder.
"""

from __future__ import annotations

import os

import numpy as np

from .. import ir


def as_model(model) -> ir.Model:
    """An ``ir.Model`` as given, or the model folder it names, loaded and checked."""
    if isinstance(model, ir.Model):
        return model
    if isinstance(model, (str, os.PathLike)):
        from ..ir.io import load_model
        return load_model(model)
    raise TypeError(f"expected an ir.Model or a model folder, got {type(model).__name__}")


def _ends(model: ir.Model) -> tuple[int, int, tuple]:
    t = model.input.out_type
    return t.min_mantissa, t.max_mantissa, tuple(int(s) for s in model.input.shape)


def random_inputs(model, n: int = 256, *, seed: int = 0) -> np.ndarray:
    """``n`` inputs with every value drawn uniformly from the whole input type, ends included."""
    lo, hi, shape = _ends(as_model(model))
    return np.random.default_rng(seed).integers(lo, hi + 1, size=(n,) + shape, dtype=np.int64)


def edge_inputs(model, *, n_random: int = 8, seed: int = 0) -> np.ndarray:
    """Inputs whose every value is at an end of the input type's range: all at the minimum, all
    at the maximum, the two checkerboards (alternate values over the flattened sample), then
    ``n_random`` samples with each value at either end at random."""
    lo, hi, shape = _ends(as_model(model))
    size = int(np.prod(shape))
    board = np.arange(size) % 2 == 0
    fixed = [np.full(size, lo), np.full(size, hi), np.where(board, hi, lo), np.where(board, lo, hi)]
    pick = np.random.default_rng(seed).integers(0, 2, size=(n_random, size)).astype(bool)
    rows = np.concatenate([np.stack(fixed), np.where(pick, hi, lo)]).astype(np.int64)
    return rows.reshape((len(rows),) + shape)


def _candidates(lo: int, hi: int, shape: tuple, count: int, seed: int) -> np.ndarray:
    """Mixes of the range ends and of the whole range, from sparse to dense: value = hi with
    probability p, lo with probability q, else uniform over the range (p, q swept)."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    p = rng.uniform(0, 1, size=(count, 1))
    q = rng.uniform(0, 1, size=(count, 1)) * (1 - p)
    u = rng.uniform(size=(count, size))
    mid = rng.integers(lo, hi + 1, size=(count, size), dtype=np.int64)
    return np.where(u < p, hi, np.where(u < p + q, lo, mid)).reshape((count,) + shape)


def saturating_inputs(model, n: int = 16, *, candidates: int = 256, seed: int = 0) -> np.ndarray:
    """The ``n`` inputs, among :func:`edge_inputs` and ``candidates`` random mixes of the range
    ends, whose run through the simulator saturates (or wraps) the most values in the
    requantising layers, most first: the ones that exercise the hardware's overflow logic."""
    from ..sim import Simulator
    m = as_model(model)
    lo, hi, shape = _ends(m)
    pool = np.concatenate([edge_inputs(m, seed=seed), _candidates(lo, hi, shape, candidates, seed)])
    sim = Simulator(m)
    score = np.empty(len(pool), dtype=np.int64)
    for k, x in enumerate(pool):  # per sample: the simulator counts overflow per batch
        counts = sim.run(x_mantissa=x[None], count_overflow=True).overflow
        score[k] = sum(c["saturated"] + c["wrapped"] for c in counts.values())
    order = np.argsort(-score, kind="stable")
    return pool[order[:n]]
