"""Exact comparison with a message that says where: the layer, the first differing index, both
values and how many differ. Zero tolerance: bit-exact means equal integer mantissas."""

from __future__ import annotations

import numpy as np


def _position(shape: tuple, flat_index: int, sample_ids=None) -> str:
    idx = np.unravel_index(flat_index, shape) if shape else ()
    if len(idx) >= 2:  # (sample, position within the sample)
        rest = tuple(int(i) for i in idx[1:])
        sample = int(idx[0]) if sample_ids is None else int(sample_ids[int(idx[0])])
        return f"sample {sample}, index {rest if len(rest) > 1 else rest[0]}"
    return f"index {int(idx[0])}" if idx else "the only value"


def _number(v) -> str:
    v = v.item() if hasattr(v, "item") else v
    return repr(v) if isinstance(v, float) else str(v)


def mismatch(expected, actual, *, layer: str | None = None, stage: str | None = None,
             expected_name: str = "expected", actual_name: str = "actual", note: str | None = None,
             sample_ids=None) -> str | None:
    """None when ``expected`` and ``actual`` have the same shape and equal values everywhere;
    else one line naming the stage, the layer (and ``note``), how many values (and samples)
    differ, the first differing index (row-major; the first axis is the sample, reported as
    ``sample_ids[i]`` when the arrays hold a selection of samples) and both values there."""
    e, a = np.asarray(expected), np.asarray(actual)
    where = "".join([f"{stage}: " if stage else "", f"layer '{layer}'" if layer else "",
                     f" ({note})" if note else "", ": " if layer or note else ""])
    for arr, name in ((e, expected_name), (a, actual_name)):
        if arr.dtype.kind not in "biuf":
            return f"{where}{name} holds {arr.dtype} values, expected integer mantissas"
    if e.shape != a.shape:
        return f"{where}shapes differ: {expected_name} {e.shape}, {actual_name} {a.shape}"
    differ = e != a  # NaN never equals anything: a float NaN is reported, never passed
    count = int(np.count_nonzero(differ))
    if count == 0:
        return None
    first = int(np.flatnonzero(differ)[0])
    samples = ""
    if e.ndim >= 2:
        bad = int(np.count_nonzero(differ.reshape(e.shape[0], -1).any(axis=1)))
        samples = f" in {bad} of {e.shape[0]} samples" + (" traced" if sample_ids is not None else "")
    return (f"{where}{count} of {e.size} values differ{samples}; first at {_position(e.shape, first, sample_ids)}: "
            f"{expected_name} {_number(e.flat[first])}, {actual_name} {_number(a.flat[first])}")


def assert_bit_exact(expected, actual, *, layer: str | None = None, stage: str | None = None,
                     expected_name: str = "expected", actual_name: str = "actual", note: str | None = None,
                     sample_ids=None) -> None:
    """Raise AssertionError (one line, see :func:`mismatch`) unless ``actual`` equals ``expected``
    exactly: same shape, every value equal. Pass integer mantissas (what the simulator, the C
    simulation and the RTL return); float arrays are compared exactly too, never within a tolerance.

    >>> assert_bit_exact(sim.output, my_outputs, layer="fc", expected_name="simulator")
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this one
    message = mismatch(expected, actual, layer=layer, stage=stage, expected_name=expected_name,
                       actual_name=actual_name, note=note, sample_ids=sample_ids)
    if message is not None:
        raise AssertionError(message)
