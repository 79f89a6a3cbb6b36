"""The sources of the synthesis-path type check, with big weight tables cut to their first values.

C simulation reads the weight tables at run time (hls4ml's ``#ifndef __SYNTHESIS__`` declaration +
``load_weights_from_txt``), so its build does not grow with the weights. The synthesis path
(``#else``: every table as a C++ initialiser list of ap_int/ap_fixed values, what Vitis HLS
compiles into ROMs) does: g++ spends about 10 KB and 0.2 ms per initialiser value building an
ap_int constructor call for each (measured: 590 k codes took 84 s and 6.2 GB under
``-fsyntax-only``; ResNet-18's 11.7 M would need about 120 GB), which is what made a C simulation
of an ImageNet-size network unbuildable (issue 28).

So the type check compiles a copy of the top function whose weight headers keep the declaration
(type and full size) and the first ``FULL_VALUES`` initialisers of any longer table: every value
of a table is the same conversion (an integer or exact decimal literal into the table's type),
so the prefix exercises exactly the code g++ would check for the rest. The rest is checked here
instead, in Python: the table has exactly its declared number of values, each an integer or exact
decimal literal, and, for an ``ap_int<k>``/``ap_uint<k>`` table (the codes), within its k-bit
range. Tables up to ``FULL_VALUES`` (scales, biases, small layers: every test model) are compiled
whole, as before. The csim summary says how many tables were cut.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np

from ..errors import VecQError

#: tables longer than this are type-checked by their first FULL_VALUES values
FULL_VALUES = 4096
_TABLE = re.compile(r"^(\w+) (\w+)\[(\d+)\] = \{(.*)\};\s*$", re.M)
_LITERAL = re.compile(r"-?\d+(\.\d+)?")
_INT_TYPE = re.compile(r"typedef ap_(u?)int<(\d+)> (\w+);")


def _int_ranges(defines: str) -> dict[str, tuple[int, int]]:
    out = {}
    for unsigned, width, name in _INT_TYPE.findall(defines):
        w = int(width)
        out[name] = (0, (1 << w) - 1) if unsigned else (-(1 << (w - 1)), (1 << (w - 1)) - 1)
    return out


def _cut(path: Path, text: str, ranges: dict) -> tuple[str, bool]:
    """The header with its table cut to FULL_VALUES values (after checking all of them)."""
    m = _TABLE.search(text)
    if m is None:
        return text, False
    type_name, var, size = m.group(1), m.group(2), int(m.group(3))
    values = m.group(4).split(", ")
    if len(values) != size:
        raise VecQError(f"table '{var}' has {len(values)} values, declared {size}", file=path)
    if size <= FULL_VALUES:
        return text, False
    if type_name in ranges:  # the codes: integers in the k-bit range
        lo, hi = ranges[type_name]
        try:
            ints = np.asarray(values).astype(np.int64)
        except ValueError:
            raise VecQError(f"table '{var}': a value is not an integer literal", file=path) from None
        if ints.min() < lo or ints.max() > hi:
            raise VecQError(f"table '{var}': values outside {type_name}'s range [{lo}, {hi}]", file=path)
    elif not all(_LITERAL.fullmatch(v) for v in values):
        raise VecQError(f"table '{var}': a value is not an integer or decimal literal", file=path)
    head = f"{type_name} {var}[{size}] = {{{', '.join(values[:FULL_VALUES])}}};"
    return text[:m.start()] + head + text[m.end():], True


def synthesis_sources(prj: Path, project: str, dest: Path) -> int:
    """Copy the top function's own files into ``dest`` (the weight headers cut; nnet_utils and
    ap_types stay in the project, found through -Ifirmware); returns how many tables were cut."""
    fw = prj / "firmware"
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "weights").mkdir(parents=True)
    for p in fw.iterdir():
        if p.is_file() and p.suffix in (".h", ".cpp"):
            shutil.copy(p, dest / p.name)
    ranges = _int_ranges((fw / "defines.h").read_text()) if (fw / "defines.h").is_file() else {}
    cut = 0
    for p in sorted((fw / "weights").glob("*.h")) if (fw / "weights").is_dir() else ():
        text, was_cut = _cut(p, p.read_text(), ranges)
        (dest / "weights" / p.name).write_text(text)
        cut += was_cut
    return cut


__all__ = ["FULL_VALUES", "synthesis_sources"]
