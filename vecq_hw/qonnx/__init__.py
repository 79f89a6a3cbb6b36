"""QONNX out and in: the integer model as a QONNX graph (hls4ml, FINN) and QONNX graphs
(Brevitas) as integer models (docs/QONNX.md). Reads only ``vecq_hw.ir``; needs the ``qonnx``
extra (onnx, qonnx).

    to_qonnx(model) / write_graph(model)     ir.Model -> onnx.ModelProto (+ notes, float32 bounds)
    from_qonnx(proto_or_path)                QONNX -> ir.Model (one VecQError line per refusal)
    export_qonnx(model_dir, out.onnx), import_qonnx(file.onnx, out_dir)
    hls4ml_precisions(cleaned_proto)         the hls4ml config entries that keep it exact
"""

from .api import QonnxExport, export_qonnx, import_qonnx, save
from .hls4ml_config import hls4ml_convert, hls4ml_precisions
from .importer import from_qonnx
from .writer import QonnxGraph, to_qonnx, write_graph

__all__ = ["QonnxExport", "QonnxGraph", "export_qonnx", "from_qonnx", "hls4ml_convert", "hls4ml_precisions", "import_qonnx", "save",
           "to_qonnx", "write_graph"]
