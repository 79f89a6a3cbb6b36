"""The flow's inputs: images to model inputs, .npy arrays, random test vectors, input range.

Shared by every step of the flow (simulate, HLS, RTL, report); nothing here writes a file.
"""

from __future__ import annotations

import numpy as np

from .. import ir
from ..batch import NpyBatch
from ..fixed import MAX_WIDTH, FixedType


def images_to_inputs(images: np.ndarray, model: ir.Model) -> np.ndarray:
    """uint8 images (N, H, W) -> the integer model's float inputs (x/256, channels-last)."""
    x = np.asarray(images, dtype=np.float64) / 256.0
    return x.reshape((x.shape[0],) + tuple(model.input.shape))


def images_to_torch(images: np.ndarray, input_shape):
    import torch
    x = torch.from_numpy(np.asarray(images, dtype=np.float32) / 256.0)
    return x.reshape((x.shape[0],) + tuple(input_shape))


def load_array(path, *, what: str, expect_shape=None, allow_empty: bool = False) -> np.ndarray:
    """A numeric .npy array with at least one sample, or one clear error naming the file."""
    return NpyBatch(path, what=what, expect_shape=expect_shape, allow_empty=allow_empty).read()


#: samples per chunk when the flow itself walks a big input array
SCAN_CHUNK = 4096


def chunks(arr, n=SCAN_CHUNK):
    for i in range(0, arr.shape[0] if arr.ndim else 0, n):
        yield np.asarray(arr[i:i + n])


def random_inputs(model: ir.Model, n: int, seed: int = 0) -> np.ndarray:
    """n inputs spread over the whole input type, extremes included (values, float64)."""
    from ..ir.examples import random_inputs as random_mantissas
    m = random_mantissas(model, n, seed=seed)
    t = model.input.out_type
    if n >= 2:
        m[0], m[1] = t.min_mantissa, t.max_mantissa
    return t.to_float(m)


def to_mantissas(model: ir.Model, x) -> np.ndarray:
    """Float input values -> the input type's int64 mantissas, chunk by chunk."""
    return np.concatenate([np.asarray(model.input.out_type.from_float(c), dtype=np.int64) for c in chunks(x)])


# --------------------------------------------------------------------------- input range

#: share of input values outside the input type above which the flow warns
SATURATION_WARN_SHARE = 0.01


def no_overflow() -> dict:
    """An empty overflow-table row."""
    return {"saturated": 0, "wrapped": 0, "total": 0}


def add_counts(into: dict, counts: dict) -> None:
    for k, v in counts.items():
        into[k] = into.get(k, 0) + int(v)


def count_input_overflow(model: ir.Model, x) -> dict:
    """How many input values the conversion to the input type saturates or wraps.

    The simulator's overflow table counts requantising layers; the input conversion
    (``from_float``) can clip too, e.g. raw 0..255 pixels for an ``ap_ufixed<8,0>`` input. The
    check converts each chunk to a wider type with the same fraction bits and rounding and
    counts the values outside the input type: exact, and chunked (``x`` may be memory-mapped).
    Returned as an overflow-table row: {'saturated', 'wrapped', 'total'}.
    """
    t = model.input.out_type
    counts = no_overflow()
    kind = "wrapped" if t.overflow.startswith("AP_WRAP") and t.kind == "fixed" else "saturated"
    for chunk in chunks(x):
        chunk = np.asarray(chunk, dtype=np.float64)
        if t.kind == "int":  # ap_int from double: the integer part
            v = np.trunc(chunk)
            out = int(np.count_nonzero((v < t.min_mantissa) | (v > t.max_mantissa)))
        else:
            extra = max(0, min(16, MAX_WIDTH - 1 - t.width))
            wide = FixedType(width=t.width + extra, integer=t.integer + extra, signed=True, rounding=t.rounding,
                             overflow="AP_SAT")
            m = wide.from_float(chunk)
            out = int(np.count_nonzero((m < t.min_mantissa) | (m > t.max_mantissa)))
        counts[kind] += out
        counts["total"] += int(chunk.size)
    return counts


def input_saturation_warning(model: ir.Model, counts: dict) -> str | None:
    """One line when a noticeable share of the inputs falls outside the input type, else None."""
    bad = counts["saturated"] + counts["wrapped"]
    if not counts["total"] or bad < SATURATION_WARN_SHARE * counts["total"]:
        return None
    t = model.input.out_type
    how = "saturated" if counts["saturated"] else "wrapped"
    return (f"warning: {100 * bad / counts['total']:.1f} % of the input values ({bad:,} of {counts['total']:,}) "
            f"lie outside the input type {t} [{float(t.to_float(t.min_mantissa))}, {float(t.to_float(t.max_mantissa))}] and "
            f"were {how}; scale inputs as in training (e.g. pixels / 256, not 0..255)")
