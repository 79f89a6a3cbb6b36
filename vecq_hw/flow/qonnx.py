"""QONNX steps of the flow: ``vecq-hw qonnx`` (a model folder to a QONNX file) and
``vecq-hw import-qonnx`` (a QONNX file, e.g. Brevitas's, to a model folder); docs/QONNX.md.

Both refuse before writing anything: an existing output needs ``overwrite``, and a graph or a
model that has no exact counterpart is one ``VecQError`` line naming the file and the node or
layer (``vecq_hw.qonnx`` builds everything in memory first and writes atomically).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import VecQError


def _qonnx():
    """``vecq_hw.qonnx``, or one line saying how to install what it needs (onnx, qonnx)."""
    try:
        from .. import qonnx
    except ImportError as exc:
        raise VecQError(f"QONNX needs the 'qonnx' extra (pip install 'vecq_hw[qonnx]'): {exc}") from None
    return qonnx


def export_qonnx_file(model_dir, out_path, *, overwrite: bool = False) -> str:
    """``vecq-hw qonnx``: the model folder as a QONNX .onnx file; what the file does not keep."""
    out = Path(out_path)
    if out.is_dir():
        raise VecQError("is a folder, expected a .onnx file name", file=out)
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise VecQError("already exists; pass --overwrite (overwrite=True) to replace it", file=out)
    return _qonnx().export_qonnx(model_dir, out).text()


def import_qonnx_file(onnx_path, out_dir, *, overwrite: bool = False) -> str:
    """``vecq-hw import-qonnx``: the QONNX file as a model folder; its layers in one line."""
    out = Path(out_dir)
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise VecQError("already exists; pass --overwrite (overwrite=True) to replace it", file=out)
    from ..ir.io import load_model
    saved = _qonnx().import_qonnx(onnx_path, out, overwrite=overwrite)
    model = load_model(saved.path)
    kinds = sorted({layer.kind for layer in model.layers[1:]})
    return "\n".join([f"wrote {saved.path}: {len(model.layers) - 1} layers ({', '.join(kinds)}), input "
                      f"{model.input.out_type} {tuple(model.input.shape)}, output {model.output_type}",
                      f"next: vecq-hw check {saved.path}   (then sim, hls, rtl, estimate, fit)"])
