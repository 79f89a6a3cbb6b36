"""The two orchestration steps the CLI wraps: a model folder to a .onnx file, and back."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from ..errors import VecQError
from ..ir.io import SaveReport, load_model, save_model
from .importer import from_qonnx
from .writer import write_graph


@dataclass
class QonnxExport:
    """What :func:`export_qonnx` wrote: the file, what the graph does not keep, and per layer the
    bound (output LSBs) on a float32 executor's error (0: it computes the layer exactly)."""

    path: Path
    nodes: int
    notes: list[str] = field(default_factory=list)
    f32_error: dict[str, float] = field(default_factory=dict)

    def text(self) -> str:
        inexact = {k: v for k, v in self.f32_error.items() if v}
        lines = [f"wrote {self.path} ({self.nodes} nodes, QONNX: Quant/BipolarQuant + ONNX opset 13)"]
        lines += [f"note: {n}" for n in self.notes]
        if inexact:
            worst = max(inexact, key=inexact.get)
            lines.append(f"a float32 executor is exact on all but {len(inexact)} layers; its error there is at most "
                         f"{inexact[worst]:.3g} output LSB ({worst}), i.e. a rare off-by-one at a rounding boundary")
        else:
            lines.append("a float32 executor (onnxruntime, qonnx) computes every layer exactly")
        return "\n".join(lines)


def save(proto: onnx.ModelProto, path) -> Path:
    """Write ``proto`` to ``path`` atomically (a temporary sibling, then a rename)."""
    path = Path(path)
    if path.is_dir():
        raise VecQError("is a folder, expected a file name", file=path)
    data = proto.SerializeToString()
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise VecQError(f"cannot write ({exc.strerror or exc})", file=path) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return path


def export_qonnx(model_dir, out_path) -> QonnxExport:
    """The model folder ``model_dir`` as a QONNX file ``out_path``."""
    model = load_model(model_dir)
    graph = write_graph(model, where=str(model_dir))
    path = save(graph.proto, out_path)
    return QonnxExport(path, len(graph.proto.graph.node), graph.notes, graph.f32_error)


def import_qonnx(onnx_path, out_dir, *, overwrite: bool = False) -> SaveReport:
    """The QONNX file ``onnx_path`` as a model folder ``out_dir`` (written atomically)."""
    return save_model(from_qonnx(onnx_path), out_dir, overwrite=overwrite)
