"""The end-to-end flow: the one orchestrator, and the Python side of every ``vecq-hw`` command.

Everything after export reads the integer model (``ir.Model``), never the PyTorch one: the
simulator, the HLS project and its testbench data, and the RTL project all come from the same
model folder. The back ends (``hls``, ``rtl``) predict; the comparison with the simulator is
made here, and a disagreement is a ``ToolError``. ``report`` only formats what the flow computes.

    inputs     images -> model inputs, .npy arrays, random test vectors, the input-range check
    pytorch    train a recipe, export a run, predict with PyTorch or the simulator
    simulate   ``check`` and ``sim`` on a model folder
    hls        ``hls``, ``estimate``, ``fit``, ``csim``
    da         yosys LUTs of the HLS strategy distributed_arithmetic's adder graphs
    rtl        ``rtl``, ``rtlsim`` (simulator vs da4ml interpreter vs Verilator), ``synth``
    qonnx      ``qonnx`` (a model folder to QONNX) and ``import-qonnx`` (QONNX, e.g. Brevitas's, in)
    deploy     ``demo`` and ``report`` (:class:`DeployReport`)

Every file the flow writes lies inside the output folder or file the caller named.
"""

from ..hls.csim import CsimInterrupted
from .da import DaLayerLuts, da_layer_luts
from .deploy import DEFAULT_RECIPE, DeployReport, check_csim_agrees, deploy_report, report_run, run_demo
from .pytorch import (ExportReport, export_checked, export_run, export_torch, launch_training, predict_sim,
                        predict_torch, quiet_rank, train_recipe)
from .hls import (csim_hls, dataflow_hls, estimate_hls, fit_hls, generate_hls, reuse_map, weights_map,
                  write_hls_project)
from .inputs import (SATURATION_WARN_SHARE, count_input_overflow, images_to_inputs, images_to_torch,
                     input_saturation_warning, load_array, random_inputs)
from .rtl import RtlSimResult, generate_rtl, load_rtl_inputs, simulate_rtl, simulate_rtl_files, synth_rtl
from .qonnx import export_qonnx_file, import_qonnx_file
from .simulate import describe_model_dir, simulate_files

__all__ = ["CsimInterrupted", "DEFAULT_RECIPE", "DaLayerLuts", "DeployReport", "ExportReport", "RtlSimResult",
           "SATURATION_WARN_SHARE", "check_csim_agrees", "count_input_overflow", "csim_hls", "da_layer_luts",
           "dataflow_hls", "deploy_report", "describe_model_dir", "estimate_hls", "export_checked", "export_qonnx_file",
           "export_run", "export_torch", "fit_hls", "generate_hls", "generate_rtl", "images_to_inputs",
           "images_to_torch", "import_qonnx_file", "input_saturation_warning", "launch_training", "load_array",
           "load_rtl_inputs", "predict_sim", "predict_torch", "quiet_rank", "random_inputs", "report_run",
           "reuse_map", "run_demo", "simulate_files", "simulate_rtl", "simulate_rtl_files", "synth_rtl",
           "train_recipe", "weights_map", "write_hls_project"]
