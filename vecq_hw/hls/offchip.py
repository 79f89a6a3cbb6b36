"""Weights from off-chip memory (issue 28): which layers stream their codes over an AXI master,
in which layout, and the binary blob that holds them.

A weighted layer keeps its k-bit codes in one of three places (``HlsOptions.weights``,
``vecq-hw hls --weights LAYER=MODE``, or chosen by ``fit``):

* ``onchip``: a ROM beside the layer (BRAM/LUTRAM), the default;
* ``offchip``: in DDR. The layer's reader process (``vecq_weight_reader``,
  ``hls_templates/nnet_vecq_streamed.h``) reads the layer's whole table once per *pass* (per
  output pixel of a conv, per frame of a dense layer) over its own ``m_axi`` port, one word per
  cycle, and the layer unpacks ``block = P / R`` codes per cycle from the words;
* ``uram``: in DDR too, but the reader copies the table into an UltraRAM buffer on its first
  call and reads it from there afterwards (UltraRAM cannot be a ROM: it has no initial
  contents on UltraScale+, see ``configs/hardware/parts.yaml``).

Layout (the same for both): the layer's codes in weight-table order (the order the folded
kernels consume them: product p = r * block + b), packed exactly as the integer model's weight
image (:func:`vecq_hw.ir.packing.pack_codes`: k-bit two's-complement fields, LSB first), the
stream cut into little-endian ``word_bits`` words (the last one zero-padded). Word w holds
stream bits [w * word_bits, (w + 1) * word_bits). Each layer's region of the blob
(``vecq_weights.bin`` beside the project) starts on a 4 KiB boundary, so every region is one
contiguous, aligned burst source; ``vecq_project.json`` lists each region's offset and size.

One word per cycle bounds the folding: a streamed layer consumes block x k bits per cycle, so
block x k <= word_bits (:func:`check_streamed`). No hls4ml import here (the estimator reads it).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import VecQError
from ..ir.packing import pack_codes
from .options import WEIGHT_MODES

STREAMED_MODES = ("offchip", "uram")
BLOB_NAME = "vecq_weights.bin"
#: every layer's region starts on this boundary (bytes): an AXI burst never crosses 4 KiB
BLOB_ALIGN = 4096


@dataclass(frozen=True)
class StreamedLayer:
    """Where one streamed layer's codes are and how it reads them."""

    name: str
    mode: str  # 'offchip' | 'uram'
    bits: int  # k
    products: int  # P per pass
    reuse: int  # R
    passes: int  # passes per frame (output pixels of a conv, 1 for a dense layer)
    word_bits: int  # AXI word
    offset: int = 0  # bytes into the blob

    @property
    def block(self) -> int:
        return self.products // self.reuse

    @property
    def step_bits(self) -> int:
        """Code bits the layer consumes per cycle."""
        return self.block * self.bits

    @property
    def words(self) -> int:
        """AXI words of the table (one pass)."""
        return math.ceil(self.products * self.bits / self.word_bits)

    @property
    def nbytes(self) -> int:
        return self.words * self.word_bits // 8

    @property
    def ddr_bytes_per_frame(self) -> int:
        """DDR reads per frame: every pass for 'offchip'; none once loaded for 'uram'."""
        return self.nbytes * self.passes if self.mode == "offchip" else 0


def parse_weights(items) -> dict[str, str]:
    """CLI ``--weights LAYER=MODE`` (repeated) -> {LAYER: MODE}; a bad item is one line naming it."""
    out: dict[str, str] = {}
    for item in items or ():
        name, sep, mode = str(item).partition("=")
        if not sep or not name.strip() or mode.strip() not in WEIGHT_MODES:
            raise VecQError(f"--weights: expected LAYER=MODE with MODE one of {', '.join(WEIGHT_MODES)}, "
                            f"got {item!r}")
        out[name.strip()] = mode.strip()
    return out


def legal_streamed_reuse(products: int, bits: int, word_bits: int) -> int:
    """The smallest R at which a streamed layer's block x k bits fit one word per cycle."""
    return max(1, math.ceil(products * bits / word_bits))


def check_streamed(name: str, kind: str, mode: str, *, products: int, reuse: int, bits: int, io_type: str,
                   part) -> None:
    """Refuse, in one line naming the layer, a streamed layer this part and folding cannot build."""
    where = f"layer '{name}' ({kind}): --weights {name}={mode}"
    if io_type != "io_stream":
        raise VecQError(f"{where} needs io_stream (its reader is a dataflow process), got {io_type}")
    if not part.has_ddr:
        raise VecQError(f"{where}: part {part.name} has no DDR bandwidth in configs/hardware/parts.yaml "
                        f"(ddr_gbps, axi_bits)")
    if mode == "uram" and not part.uram:
        raise VecQError(f"{where}: part {part.name} has no UltraRAM")
    block_bits = products // reuse * bits
    if block_bits > part.axi_bits:
        least = legal_streamed_reuse(products, bits, part.axi_bits)
        raise VecQError(f"{where}: reuse factor {reuse} reads {block_bits} code bits a cycle, more than one "
                        f"{part.axi_bits}-bit AXI word; use R >= {least} (a divisor of {products})")


def layout(layers: list[StreamedLayer]) -> list[StreamedLayer]:
    """The layers with their blob offsets: in order, each region aligned to BLOB_ALIGN."""
    out, pos = [], 0
    for sl in layers:
        out.append(replace(sl, offset=pos))
        pos += math.ceil(sl.nbytes / BLOB_ALIGN) * BLOB_ALIGN
    return out


def region_bytes(codes: np.ndarray, sl: StreamedLayer) -> bytes:
    """One layer's region: its packed weight image, zero-padded to whole words."""
    image = pack_codes(codes, sl.bits)
    return image + bytes(sl.nbytes - len(image))


def write_blob(path: Path, regions: list[tuple[StreamedLayer, np.ndarray]]) -> str:
    """Write the blob (regions at their offsets, zero between) and return its sha256."""
    h = hashlib.sha256()
    pos = 0
    with open(path, "wb") as f:
        for sl, codes in regions:
            pad = bytes(sl.offset - pos)
            data = region_bytes(codes, sl)
            for chunk in (pad, data):
                f.write(chunk)
                h.update(chunk)
            pos = sl.offset + len(data)
    return h.hexdigest()


__all__ = ["BLOB_ALIGN", "BLOB_NAME", "STREAMED_MODES", "StreamedLayer", "WEIGHT_MODES", "check_streamed", "layout",
           "legal_streamed_reuse", "parse_weights", "region_bytes", "write_blob"]
