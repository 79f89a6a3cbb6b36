"""Input batches from .npy files, read block by block.

``np.load`` reads a whole file, and a memory map (``mmap_mode='r'``) keeps every page it touched
resident until it is closed, so either way a 100k-image batch costs its full size in memory.
:class:`NpyBatch` parses the header, checks it (numeric dtype, sample shape, length of the file)
and then reads ``block`` samples at a time with plain file reads: what a caller holds at once is
one block, whatever N is.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.lib.format as npy_format

from .errors import VecQError

#: bytes of input read at a time
BLOCK_BYTES = 32 << 20


class NpyBatch:
    """A numeric (N,) + sample-shape .npy file, checked up front, read in blocks."""

    def __init__(self, path, *, what: str, expect_shape=None, allow_empty: bool = False):
        self.path = p = Path(path)
        self.what = what
        try:
            with open(p, "rb") as f:
                version = npy_format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = npy_format.read_array_header_1_0(f)
                else:
                    shape, fortran, dtype = npy_format.read_array_header_2_0(f)
                self.offset = f.tell()
        except FileNotFoundError:
            raise VecQError("file not found", file=p) from None
        except IsADirectoryError:
            raise VecQError("is a folder, expected a .npy file", file=p) from None
        except PermissionError:
            raise VecQError("not readable (permission denied)", file=p) from None
        except Exception as exc:  # not .npy, a bad header ...
            raise VecQError(f"not a readable .npy array ({type(exc).__name__}: {' '.join(str(exc).split())})",
                            file=p) from None
        if dtype.hasobject or dtype.kind not in "iuf":
            raise VecQError(f"expected a numeric array for {what}, got dtype {dtype}", file=p)
        if expect_shape is not None and (len(shape) != len(expect_shape) + 1
                                         or tuple(shape[1:]) != tuple(expect_shape)):
            raise VecQError(f"expected {what} of shape (N, {', '.join(map(str, expect_shape))}), got {shape}",
                            file=p)
        if not allow_empty and (len(shape) == 0 or shape[0] == 0):
            raise VecQError(f"{what}: the array holds no samples (shape {shape}); expected at least one", file=p)
        self.shape, self.dtype, self.fortran = tuple(shape), dtype, fortran
        self.sample_values = math.prod(shape[1:]) if shape else 1
        need = self.offset + math.prod(shape) * dtype.itemsize
        size = p.stat().st_size
        if size != need:
            raise VecQError(f"not a readable .npy array (the header promises {need} bytes, the file has {size})",
                            file=p)

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 0

    def block_size(self) -> int:
        return max(1, BLOCK_BYTES // max(1, self.sample_values * self.dtype.itemsize))

    def blocks(self, size: int | None = None):
        """(first sample index, array of up to ``size`` samples), in order; floats checked finite."""
        size = size or self.block_size()
        if self.fortran:  # rare (np.save writes C order); column order cannot be read by rows
            arr = np.load(self.path, allow_pickle=False)
            for i in range(0, len(self), size):
                yield i, self._finite(np.ascontiguousarray(arr[i:i + size]))
            return
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            for i in range(0, len(self), size):
                n = min(size, len(self) - i)
                a = np.fromfile(f, dtype=self.dtype, count=n * self.sample_values)
                if a.size != n * self.sample_values:
                    raise VecQError("file shorter than its header says (truncated while reading)", file=self.path)
                yield i, self._finite(a.reshape((n,) + self.shape[1:]))

    def _finite(self, a: np.ndarray) -> np.ndarray:
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise VecQError(f"{self.what} contains NaN or infinity", file=self.path)
        return a

    def read(self) -> np.ndarray:
        """The whole array (for small batches: test inputs)."""
        out = np.empty(self.shape, dtype=self.dtype)
        for i, a in self.blocks():
            out[i:i + len(a)] = a
        return out
