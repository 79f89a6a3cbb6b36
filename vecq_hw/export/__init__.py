"""Export: PyTorch -> integer model (``torch_export``).

The integer model's file format lives in :mod:`vecq_hw.ir.io`; the names below are kept here
for code written against earlier releases. Import-light on purpose: nothing here pulls in
torch until ``torch_export`` is used.
"""

from __future__ import annotations

_MODEL_IO = ("save_model", "load_model", "weight_memory_report", "SaveReport", "FORMAT_VERSION")
_PACKING = ("pack_codes", "unpack_codes", "packed_size")

__all__ = list(_MODEL_IO + _PACKING)


def __getattr__(name: str):
    if name in _MODEL_IO:
        from ..ir import io
        return getattr(io, name)
    if name in _PACKING:
        from ..ir import packing
        return getattr(packing, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
