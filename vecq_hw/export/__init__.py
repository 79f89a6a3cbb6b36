"""Export: PyTorch -> integer model (``torch_export``), integer model <-> folder (``model_io``).

Import-light on purpose: the submodules (numpy, PyYAML, torch) load on first use, so
``from vecq_hw.export import load_model`` never pulls in torch.
"""

from __future__ import annotations

_MODEL_IO = ("save_model", "load_model", "weight_memory_report", "SaveReport", "FORMAT_VERSION")
_PACKING = ("pack_codes", "unpack_codes", "packed_size")

__all__ = list(_MODEL_IO + _PACKING)


def __getattr__(name: str):
    if name in _MODEL_IO:
        from . import model_io
        return getattr(model_io, name)
    if name in _PACKING:
        from . import packing
        return getattr(packing, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
