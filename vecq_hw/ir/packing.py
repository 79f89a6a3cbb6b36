"""Bit-packed weight memory images: the k-bit codes as a hardware loader reads them.

Layout (``layout: k-bit-lsb-first`` in model.yaml, see docs/FORMAT.md):

* the codes are taken in table order: C order of the (n_in, n_out) dense table or the
  (kh, kw, c_in, c_out) conv table;
* each code is a k-bit two's-complement field;
* field i occupies stream bits [i*k, i*k + k), its least significant bit first;
* stream bit j is bit (j % 8) of byte (j // 8): LSB-first within little-endian bytes;
* the last byte is padded with zero bits; the image is ceil(n*k / 8) bytes.

Example: k = 2, codes [-2, -1, 0, 1] -> fields 10, 11, 00, 01 -> stream bits
0,1, 1,1, 0,0, 1,0 -> one byte 0b01001110 = 0x4E.
"""

from __future__ import annotations

import numpy as np

LAYOUT = "k-bit-lsb-first"

# weights per chunk: a multiple of 8, so every chunk packs into whole bytes
_CHUNK = 1 << 20


def packed_size(count: int, bits: int) -> int:
    """Bytes of the image of ``count`` k-bit codes."""
    return (int(count) * int(bits) + 7) // 8


def _check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 8:
        raise ValueError(f"bits must be an integer 1..8, got {bits!r}")
    return int(bits)


def pack_codes(codes: np.ndarray, bits: int) -> bytes:
    """Pack signed k-bit codes (any integer array, read in C order) into the image bytes."""
    bits = _check_bits(bits)
    c = np.asarray(codes).reshape(-1)
    if c.size and not np.issubdtype(c.dtype, np.integer):
        raise ValueError(f"codes must be integers, got {c.dtype}")
    c = c.astype(np.int64)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if c.size and (int(c.min()) < lo or int(c.max()) > hi):
        raise ValueError(f"codes outside the {bits}-bit range [{lo}, {hi}]")
    shifts = np.arange(bits, dtype=np.uint8)
    mask = (1 << bits) - 1
    out = []
    for start in range(0, c.size, _CHUNK):
        u = (c[start:start + _CHUNK] & mask).astype(np.uint8)
        fields = (u[:, None] >> shifts) & 1  # (n, k), LSB first
        out.append(np.packbits(fields.reshape(-1), bitorder="little").tobytes())
    return b"".join(out)


def unpack_codes(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: a flat int8 array of ``count`` codes.

    Raises ValueError if the image has the wrong length or nonzero padding bits.
    """
    bits = _check_bits(bits)
    count = int(count)
    buf = np.frombuffer(bytes(data), dtype=np.uint8)
    need = packed_size(count, bits)
    if buf.size != need:
        raise ValueError(f"image is {buf.size} bytes, expected {need} for {count} {bits}-bit codes")
    weights = 1 << np.arange(bits, dtype=np.int64)
    out = np.empty(count, dtype=np.int8)
    step = _CHUNK * bits // 8  # bytes per chunk
    for i, start in enumerate(range(0, count, _CHUNK)):
        n = min(_CHUNK, count - start)
        b = np.unpackbits(buf[i * step:i * step + packed_size(n, bits)], bitorder="little")
        if b[n * bits:].any():
            raise ValueError("nonzero padding bits after the last code")
        u = b[:n * bits].reshape(n, bits).astype(np.int64) @ weights
        out[start:start + n] = np.where(u >= 1 << (bits - 1), u - (1 << bits), u)
    return out
