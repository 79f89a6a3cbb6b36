"""What FINN makes of the QONNX graph vecq_hw writes (issue 26's note): writes
benchmarks/results/finn_ingest.json and finn_ingest.md.

NEEDS A SEPARATE VENV WITH finn-plus. FINN is NOT a dependency of vecq_hw, and finn-plus 1.6.1's
pins (onnx 1.21.0, onnxruntime 1.25.1, brevitas 0.13.0, protobuf 5.29.6) differ from vecq_hw's
qonnx extra (onnx 1.23.2, onnxruntime 1.32.0, brevitas 0.13.4). A plain ``pip install
finn-plus==1.6.1`` next to torch 2.13.0+cpu makes pip re-resolve torch from PyPI and pull CUDA
wheels (brevitas's ``torch>=1.12``), so the venv is made like this (what the results were run in):

    python3 -m venv /work/finn_venv && /work/finn_venv/bin/pip install torch==2.13.0   # +cpu here
    echo "torch==2.13.0+cpu" > c.txt
    /work/finn_venv/bin/pip install --no-deps finn-plus==1.6.1 brevitas==0.13.0
    /work/finn_venv/bin/pip install -c c.txt qonnx==1.0.0 onnx==1.21.0 onnxruntime==1.25.1 \
        protobuf==5.29.6 onnx-ir onnx-passes onnxoptimizer onnxscript bitstring click mashumaro[yaml] \
        "matplotlib<3.11" "pandas<2.4" "rich<14" pydantic pyyaml scikit-learn scipy "termcolor<3" \
        dependencies packaging "setuptools<70" sympy typing-extensions unfoldNd tqdm Jinja2 threadpoolctl
    /work/finn_venv/bin/pip install --no-deps -e .          # vecq_hw itself (hls4ml/da4ml not needed)

(mip and cmake, two more finn-plus requirements, are not installed: no step run here needs them.)
Only FINN's pure-Python parts run (no Vivado, no cppsim/rtlsim): per model, the steps FINN's
builder takes (builder/build_dataflow_steps.py: step_qonnx_to_finn, step_tidy_up,
step_streamline, step_convert_to_hw with its defaults; the builder's conversions whose op types
these graphs lack are left out), one transformation at a time; after each the graph is run
with FINN's ``execute_onnx`` (python exec mode for HW layers) on ``--images`` MNIST test images and
compared with our simulator: output values that differ and the largest difference in output LSBs.
A transformation that raises is recorded with its message and the FINN/qonnx source line; the
steps after it run on the graph as it was before it. At the end, step_create_dataflow_partition's
own check (finn.analysis.fpgadataflow.unsupported_layers) says whether the builder would go on.
Variant (``--wide-mt``): ConvertQONNXtoFINN with max_multithreshold_bit_width=16, so that the
requantising Quants become thresholds too, with a probe of what it computes.

Models (untrained weights, BatchNorm statistics from 500 MNIST images, as tests/test_qonnx.py's
small_lenet): an MLP 784-32-10 at k = 2 VecQ, a LeNet-5-shaped 2C5-4C5-FC16-FC10 at k = 2, and the
same LeNet at k = 1 (its weights are written as BipolarQuant).

Usage: /work/finn_venv/bin/python benchmarks/finn_ingest.py [--images 300] [--models mlp_k2 ...]
"""

from __future__ import annotations

import sys

try:
    import finn  # noqa: F401
    from finn.core.onnx_exec import execute_onnx
except ImportError:
    sys.exit("benchmarks/finn_ingest.py: finn is not importable; run it in a separate venv with finn-plus==1.6.1 "
             "(see this file's docstring); FINN is not a vecq_hw dependency")

import argparse
import json
import os
import platform
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from qonnx.core.modelwrapper import ModelWrapper

from vecq_hw.data import load_dataset
from vecq_hw.flow import export_torch, images_to_inputs
from vecq_hw.models import build_model
from vecq_hw.quant import VecQ
from vecq_hw.qonnx import write_graph
from vecq_hw.sim import simulate

HW_DOMAIN = "finn.custom_op.fpgadataflow"
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

MODELS = {
    "mlp_k2": ("mlp", 2, {"hidden": (32,)}),
    "lenet_k2": ("lenet5", 2, {"conv_channels": (2, 4), "hidden": 16}),
    "lenet_k1_bipolar": ("lenet5", 1, {"conv_channels": (2, 4), "hidden": 16}),
}


def make_model(arch: str, bits: int, options: dict, calib: np.ndarray):
    """As tests/test_qonnx.py's small_lenet: untrained, BatchNorm statistics from ``calib``."""
    torch.manual_seed(1)
    net = build_model(arch, weight_quant=VecQ(bits=bits), **options)
    net.train()
    with torch.no_grad():
        x = torch.tensor(calib, dtype=torch.float32) / 256
        net(x.reshape(len(x), -1) if arch == "mlp" else x.unsqueeze(1))
    return export_torch(net.eval())


# -- the steps --------------------------------------------------------------------------------

def steps(max_mt_bits: int = 8):
    """(step, transformation name, factory) in the order FINN's builder applies them."""
    from finn.transformation.qonnx.quant_act_to_multithreshold import default_filter_function_generator
    from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
    from finn.transformation.qonnx.give_unique_node_names_recursive import GiveUniqueNodeNamesRecursive
    import finn.transformation.streamline.absorb as absorb
    from finn.transformation.streamline import Streamline
    from finn.transformation.streamline.reorder import MakeMaxPoolNHWC
    from finn.transformation.fpgadataflow.convert_to_hw.shuffle import InferShuffle
    from finn.transformation.fpgadataflow.convert_to_hw.duplicate_streams import InferDuplicateStreamsLayer
    from finn.transformation.fpgadataflow.absorb_into_requant import AbsorbElementwiseOpsIntoRequant
    from finn.transformation.fpgadataflow.convert_to_hw.reshape import InferReshape
    from finn.transformation.move_reshape import RemoveCNVtoFCFlatten
    from qonnx.transformation.bipolar_to_xnor import ConvertBipolarMatMulToXnorPopcount
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.transformation.general import GiveReadableTensorNames, RemoveStaticGraphInputs, RemoveUnusedTensors
    from qonnx.transformation.infer_data_layouts import InferDataLayouts
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul
    from qonnx.util.cleanup import cleanup_model
    from finn.transformation.fpgadataflow.convert_to_hw.binary_matrix_vector_activation import \
        InferBinaryMatrixVectorActivation
    from finn.transformation.fpgadataflow.convert_to_hw.conv_inp_gen import InferConvInpGen
    from finn.transformation.fpgadataflow.convert_to_hw.elementwise_binary_operation import \
        InferElementwiseBinaryOperation
    from finn.transformation.fpgadataflow.convert_to_hw.pool import InferPool
    from finn.transformation.fpgadataflow.convert_to_hw.quantized_matrix_vector_activation import \
        InferQuantizedMatrixVectorActivation
    from finn.transformation.fpgadataflow.convert_to_hw.requant import InferRequantLayer
    from finn.transformation.fpgadataflow.convert_to_hw.thresholding import InferThresholdingLayer
    from finn.transformation.fpgadataflow.convert_to_hw.vector_vector_activation import InferVectorVectorActivation
    from finn.transformation.fpgadataflow.convert_to_hw.fm_padding import InferFMPadding
    from finn.transformation.fpgadataflow.convert_to_hw.relu_as_elementwise_max import InferReLUAsElementwiseMax

    class Cleanup:  # qonnx's cleanup_model is a function, not a Transformation
        def apply(self, mw):
            return cleanup_model(mw), False

    filt = default_filter_function_generator(max_multithreshold_bit_width=max_mt_bits)  # builder default: 8
    return [
        ("step_qonnx_to_finn", "qonnx cleanup_model", Cleanup),
        ("step_qonnx_to_finn", "ConvertQONNXtoFINN", lambda: ConvertQONNXtoFINN(filter_function=filt)),
        ("step_tidy_up", "InferShapes", InferShapes),
        ("step_tidy_up", "FoldConstants", FoldConstants),
        ("step_tidy_up", "GiveUniqueNodeNamesRecursive", GiveUniqueNodeNamesRecursive),
        ("step_tidy_up", "GiveReadableTensorNames", GiveReadableTensorNames),
        ("step_tidy_up", "InferDataTypes", InferDataTypes),
        ("step_tidy_up", "RemoveStaticGraphInputs", RemoveStaticGraphInputs),
        ("step_streamline", "AbsorbScalarBiasIntoMultiThreshold", absorb.AbsorbScalarBiasIntoMultiThreshold),
        ("step_streamline", "Streamline", Streamline),
        ("step_streamline", "LowerConvsToMatMul", LowerConvsToMatMul),
        ("step_streamline", "MakeMaxPoolNHWC", MakeMaxPoolNHWC),
        ("step_streamline", "AbsorbTransposeIntoMultiThreshold", absorb.AbsorbTransposeIntoMultiThreshold),
        ("step_streamline", "MakeMaxPoolNHWC (again)", MakeMaxPoolNHWC),
        ("step_streamline", "AbsorbConsecutiveTransposes", absorb.AbsorbConsecutiveTransposes),
        ("step_streamline", "ConvertBipolarMatMulToXnorPopcount", ConvertBipolarMatMulToXnorPopcount),
        ("step_streamline", "Streamline (again)", Streamline),
        ("step_streamline", "InferDataLayouts", InferDataLayouts),
        ("step_streamline", "RemoveUnusedTensors", RemoveUnusedTensors),
        # step_convert_to_hw with the builder's defaults (standalone_thresholds=False), in its order
        ("step_convert_to_hw", "InferBinaryMatrixVectorActivation", InferBinaryMatrixVectorActivation),
        ("step_convert_to_hw", "InferQuantizedMatrixVectorActivation", InferQuantizedMatrixVectorActivation),
        ("step_convert_to_hw", "InferVectorVectorActivation", InferVectorVectorActivation),
        ("step_convert_to_hw", "InferRequantLayer(bitwidth_threshold=9)", lambda: InferRequantLayer(bitwidth_threshold=9)),
        ("step_convert_to_hw", "InferThresholdingLayer", InferThresholdingLayer),
        ("step_convert_to_hw", "InferFMPadding", InferFMPadding),
        ("step_convert_to_hw", "InferPool", InferPool),
        ("step_convert_to_hw", "InferConvInpGen", InferConvInpGen),
        ("step_convert_to_hw", "InferElementwiseBinaryOperation", InferElementwiseBinaryOperation),
        ("step_convert_to_hw", "InferReLUAsElementwiseMax", InferReLUAsElementwiseMax),
        ("step_convert_to_hw", "InferDuplicateStreamsLayer", InferDuplicateStreamsLayer),
        ("step_convert_to_hw", "AbsorbElementwiseOpsIntoRequant", AbsorbElementwiseOpsIntoRequant),
        ("step_convert_to_hw", "AbsorbConsecutiveTransposes", absorb.AbsorbConsecutiveTransposes),
        ("step_convert_to_hw", "RemoveCNVtoFCFlatten", RemoveCNVtoFCFlatten),
        ("step_convert_to_hw", "GiveUniqueNodeNamesRecursive", GiveUniqueNodeNamesRecursive),
        ("step_convert_to_hw", "InferDataLayouts", InferDataLayouts),
        ("step_convert_to_hw", "InferDataTypes", InferDataTypes),
        ("step_convert_to_hw", "InferShapes", InferShapes),
        ("step_convert_to_hw", "InferReshape", InferReshape),
        ("step_convert_to_hw", "InferShuffle", InferShuffle),  # builder default: infer_shuffle_skip_first
    ]


# -- running and comparing ----------------------------------------------------------------------

def run_graph(mw: ModelWrapper, x_nchw: np.ndarray) -> np.ndarray:
    """FINN's executor (python exec mode), the graph's input in its own layout (NCHW or NHWC): the
    whole batch at once where the graph allows it, else one sample at a time (FINN's HW layers'
    execute_node and the lowered Im2Col/MaxPoolNHWC graphs are built for batch 1)."""
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes
    inp, outp = mw.graph.input[0].name, mw.graph.output[0].name
    want = tuple(mw.get_tensor_shape(inp))[1:]
    x = x_nchw.reshape(len(x_nchw), -1) if len(want) == 1 else x_nchw
    if len(want) == 3 and want != x.shape[1:]:
        x = x.transpose(0, 2, 3, 1)  # the graph takes NHWC now
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not any(n.domain.startswith(HW_DOMAIN) or n.op_type in ("Im2Col", "MaxPoolNHWC") for n in mw.graph.node):
        batch = mw.transform(ChangeBatchSize(len(x))).transform(InferShapes())
        return np.asarray(execute_onnx(batch, {inp: x})[outp], dtype=np.float64)
    return np.concatenate([execute_onnx(mw, {inp: x[i:i + 1]})[outp] for i in range(len(x))]).astype(np.float64)


def compare(out: np.ndarray, ref: np.ndarray, frac: int) -> dict:
    """``out`` (floats) against ``ref`` (output mantissas): values/images that differ, largest
    difference in output LSBs, values not on the output grid, argmax changes."""
    m = out.reshape(ref.shape) * 2.0 ** frac
    diff = np.abs(m - ref)
    return {"values_differing": int(np.count_nonzero(diff)), "values": int(ref.size),
            "images_differing": int(np.count_nonzero(np.any(diff != 0, axis=1))),
            "max_diff_lsb": float(diff.max()), "values_off_the_output_grid": int(np.count_nonzero(m != np.round(m))),
            "argmax_differing": int(np.count_nonzero(np.argmax(m, axis=1) != np.argmax(ref, axis=1)))}


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {(text[0] if text else '')[:300]}"


def where_it_broke(exc: BaseException) -> str:
    """The innermost frame in FINN's or qonnx's source (site-packages relative), file:line."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "site-packages" in f.filename]
    if not frames:
        return "?"
    f = frames[-1]
    return f"{f.filename.split('site-packages/')[-1]}:{f.lineno} ({f.name})"


def op_census(mw: ModelWrapper) -> dict:
    ops: dict[str, int] = {}
    for n in mw.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return ops


def floor_read_as_round(proto):
    """The graph with every FLOOR Quant set to ROUND: what FINN's threshold conversion computes if
    it ignores rounding_mode (the probe for the max_multithreshold_bit_width=16 variant)."""
    import copy
    from onnx import helper
    p = copy.deepcopy(proto)
    for n in p.graph.node:
        for a in n.attribute:
            if n.op_type == "Quant" and a.name == "rounding_mode" and a.s == b"FLOOR":
                a.CopyFrom(helper.make_attribute("rounding_mode", "ROUND"))
    return p


def partition_check(mw: ModelWrapper) -> dict:
    """step_create_dataflow_partition's own check (finn.analysis.fpgadataflow.unsupported_layers):
    the HW layers must form one contiguous section; it refuses otherwise."""
    from finn.analysis.fpgadataflow.unsupported_layers import unsupported_layers
    from finn.util.basic import getHWCustomOp
    from qonnx.core.datatype import DataType
    ok, node = mw.analysis(unsupported_layers)
    float_io = []  # the same FLOAT32 check step_create_dataflow_partition warns about
    for n in mw.graph.node:
        if n.domain.startswith(HW_DOMAIN):
            op = getHWCustomOp(n)
            try:
                if DataType["FLOAT32"] in [op.get_input_datatype(i) for i in range(len(n.input))] + [op.get_output_datatype(0)]:
                    float_io.append(f"{n.op_type} {n.name}")
            except Exception:  # some inputs carry no datatype (the builder skips them too)
                pass
    mvau = {n.name: {a: getHWCustomOp(n).get_nodeattr(a) for a in ("weightDataType", "inputDataType", "binaryXnorMode", "noActivation")}
            for n in mw.graph.node if n.op_type == "MVAU"}
    return {"mvau": mvau, "float32_hw_nodes": float_io, "one_contiguous_hw_section": bool(ok), "first_unmapped_between_hw": None if ok else f"{node.op_type} {node.name}",
            "non_hw_nodes": [f"{n.op_type} {n.name}" for n in mw.graph.node if not n.domain.startswith(HW_DOMAIN)],
            "hw_ops": sorted({n.op_type for n in mw.graph.node if n.domain.startswith(HW_DOMAIN)})}


def apply_step(mw: ModelWrapper, factory, x_nchw, ref, frac, last: dict) -> tuple[ModelWrapper, dict]:
    """One transformation; the graph run again only when the transformation changed it."""
    row: dict = {}
    t = time.time()
    try:
        new = mw.transform(factory())
    except Exception as exc:  # FINN refusing is the finding: record it, go on without it
        row.update(refused=first_line(exc), where=where_it_broke(exc))
        return mw, row
    row["transform_s"] = round(time.time() - t, 2)
    row["graph_changed"] = new.model.SerializeToString() != mw.model.SerializeToString()
    row["ops"] = op_census(new)
    if not row["graph_changed"] and last:
        return new, {**row, **{k: v for k, v in last.items() if k not in row and k != "exec_s"}, "numbers_from": "previous step"}
    try:
        t = time.time()
        row.update(compare(run_graph(new, x_nchw), ref, frac))
        row["exec_s"] = round(time.time() - t, 2)
    except Exception as exc:
        row.update(exec_failed=first_line(exc), where=where_it_broke(exc))
    return new, row


def ingest(name: str, calib, images, max_mt_bits: int = 8) -> dict:
    arch, bits, options = MODELS[name]
    model = make_model(arch, bits, options, calib)
    frac = model.output_type.frac
    x = model.input.out_type.from_float(images_to_inputs(images, model))
    sim = simulate(model, x_mantissa=x).output
    x_f = model.input.out_type.to_float(x)
    x_nchw = x_f.transpose(0, 3, 1, 2) if x_f.ndim == 4 else x_f
    g = write_graph(model)
    mw = ModelWrapper(g.proto)
    res = {"model": f"{arch} {options} k={bits}", "max_multithreshold_bit_width": max_mt_bits,
           "graph_ops": op_census(mw), "notes": g.notes,
           "f32_error_bound_lsb": {k: v for k, v in g.f32_error.items() if v}, "steps": []}
    res["qonnx_graph_as_written"] = compare(run_graph(mw, x_nchw), sim, frac)
    if max_mt_bits > 8:
        res["floor_read_as_round_vs_sim"] = compare(run_graph(ModelWrapper(floor_read_as_round(g.proto)), x_nchw), sim, frac)
    last: dict = {}
    for step, tname, factory in steps(max_mt_bits):
        mw, row = apply_step(mw, factory, x_nchw, sim, frac, last)
        last = row if "values_differing" in row else last
        res["steps"].append({"step": step, "transformation": tname, **row})
        print(name, max_mt_bits, tname, {k: v for k, v in row.items() if k not in ("ops", "values")}, flush=True)
        if tname == "ConvertQONNXtoFINN" and max_mt_bits > 8:  # FINN's graph against the FLOOR->ROUND graph
            ref = run_graph(ModelWrapper(floor_read_as_round(g.proto)), x_nchw) * 2.0 ** frac
            res["finn_vs_floor_read_as_round"] = compare(run_graph(mw, x_nchw), np.round(ref), frac)
    res["final_ops"] = op_census(mw)
    res["dataflow_partition_check"] = partition_check(mw)
    return res


def cell(row: dict) -> str:
    if "refused" in row:
        return f"REFUSED {row['refused']} ({row['where']})"
    if "exec_failed" in row:
        return f"graph does not execute: {row['exec_failed']} ({row['where']})"
    return f"{row['values_differing']}/{row['values']} values, max {row['max_diff_lsb']:g} LSB, {row['argmax_differing']} argmax"


def last_of(m: dict, step: str) -> dict:
    rows = [r for r in m["steps"] if r["step"] == step and "refused" not in r]
    return rows[-1] if rows else {}


def write_md(res: dict, path: Path) -> None:
    lines = ["# What FINN makes of vecq_hw's QONNX (benchmarks/finn_ingest.py)", "",
             f"finn-plus {res['versions']['finn-plus']}, qonnx {res['versions']['qonnx']}, onnx {res['versions']['onnx']}, "
             f"onnxruntime {res['versions']['onnxruntime']}, torch {res['versions']['torch']} (a separate venv: FINN is not a "
             f"vecq_hw dependency); {res['images']} MNIST test images; Python {res['python']}; 1-min load {res['load']:.1f}.",
             "Only FINN's pure-Python parts: the builder's steps one transformation at a time, each graph run by FINN's "
             "execute_onnx (python exec mode) and compared with vecq_hw's simulator (output values that differ, "
             "largest difference in output LSBs, images whose argmax changes).", "",
             "| model | graph as written (qonnx exec) | after ConvertQONNXtoFINN | after step_streamline | after step_convert_to_hw "
             "| dataflow partition check | non-HW nodes left | FLOAT32 HW nodes |",
             "|---|---|---|---|---|---|---|---|"]
    for name, m in res["models"].items():
        conv = next((r for r in m["steps"] if r["transformation"] == "ConvertQONNXtoFINN"), {})
        part = m["dataflow_partition_check"]
        verdict = "passes (one HW section)" if part["one_contiguous_hw_section"] else \
            f"REFUSES (FINNUserError at {part['first_unmapped_between_hw']})"
        lines.append(f"| {name} | {cell(m['qonnx_graph_as_written'])} | {cell(conv)} | {cell(last_of(m, 'step_streamline'))} "
                     f"| {cell(last_of(m, 'step_convert_to_hw'))} | {verdict} | {', '.join(part['non_hw_nodes']) or '-'} "
                     f"| {len(part['float32_hw_nodes'])} |")
    for name, m in res["models"].items():
        if "finn_vs_floor_read_as_round" in m:
            lines += ["", f"{name}: our graph with every FLOOR Quant read as ROUND, against the simulator: "
                      f"{cell(m['floor_read_as_round_vs_sim'])}; FINN's converted graph against that graph: "
                      f"{cell(m['finn_vs_floor_read_as_round'])}."]
    lines += ["", "## Per transformation (only those that changed the graph, refused, or left a graph that does not run)", ""]
    for name, m in res["models"].items():
        lines += [f"### {name}: {m['model']}, max_multithreshold_bit_width={m['max_multithreshold_bit_width']}", "",
                  f"written graph: {m['graph_ops']}", "", "| step | transformation | vs simulator | ops after |", "|---|---|---|---|"]
        for r in m["steps"]:
            if r.get("graph_changed") or "refused" in r or "exec_failed" in r:
                lines.append(f"| {r['step']} | {r['transformation']} | {cell(r)} | {r.get('ops', '')} |")
        lines += ["", f"final graph: {m['final_ops']}", ""]
        for mv, attrs in m["dataflow_partition_check"].get("mvau", {}).items():
            lines.append(f"- {mv}: weights {attrs['weightDataType']}, inputs {attrs['inputDataType']}, "
                         f"binaryXnorMode {attrs['binaryXnorMode']}, noActivation {attrs['noActivation']}")
        lines.append("")
    lines += findings(res)
    path.write_text("\n".join(lines) + "\n")


def findings(res: dict) -> list[str]:
    """The conclusions, each stated only where this run's numbers bear it out (else it says so)."""
    plain = {k: m for k, m in res["models"].items() if m["max_multithreshold_bit_width"] == 8}
    wide = {k: m for k, m in res["models"].items() if m["max_multithreshold_bit_width"] > 8}
    ran = [r for m in plain.values() for r in m["steps"] if "values_differing" in r]
    exact = bool(ran) and all(r["values_differing"] == 0 for r in ran)
    refused = [k for k, m in plain.items() if not m["dataflow_partition_check"]["one_contiguous_hw_section"]]
    out = ["## Findings (source lines: finn-plus 1.6.1 as installed, site-packages relative)", ""]
    out.append(
        f"1. Builder defaults, {len(plain)} models: every graph FINN produced, step by step, "
        + ("equals the simulator on every output value" if exact else "does NOT always equal the simulator (tables)")
        + " (the 1-bit BipolarQuant weights become an MVAU with BIPOLAR weights, not XNOR-popcount: the activations "
        "are not bipolar). " + (f"But {len(refused)} of {len(plain)} ({', '.join(refused)}) do not become one dataflow "
        "partition: each weighted layer's requantising Quant (9-bit signed, rounding_mode FLOOR, scale 2^-frac; the "
        "16-bit output Quant is ROUND, scale 2^-frac) is over max_multithreshold_bit_width=8, so ConvertQONNXtoFINN "
        "leaves it a Quant (finn/transformation/qonnx/quant_act_to_multithreshold.py:58), and InferRequantLayer "
        "converts a Quant only if rounding_mode is ROUND (finn/transformation/fpgadataflow/convert_to_hw/requant.py:242) "
        "and its scale is 1 (requant.py:257). The Quants stay between HW layers, so step_create_dataflow_partition "
        "raises FINNUserError 'Unsupported/unmapped layer(s) found in between FINN operators' "
        "(finn/builder/build_dataflow_steps.py:1295; its check, finn.analysis.fpgadataflow.unsupported_layers, is what "
        "the partition column ran). The scale/bias Mul/Add in front of each become FLOAT32 ElementwiseMul/"
        "ElementwiseAdd HW layers (the builder warns about FLOAT32 HW nodes, build_dataflow_steps.py:1309)."
        if refused else "All became one dataflow partition."))
    for k, m in wide.items():
        conv = next(r for r in m["steps"] if r["transformation"] == "ConvertQONNXtoFINN")
        probe = m.get("finn_vs_floor_read_as_round", {})
        same = probe.get("values_differing") == 0
        out.append(
            f"2. {k}: thresholding the requantising Quants too (max_multithreshold_bit_width=16) "
            + ("gives one HW partition" if m["dataflow_partition_check"]["one_contiguous_hw_section"] else "still gives no single partition")
            + f", but ConvertQONNXtoFINN already changes the numbers ({cell(conv)}). "
            "QuantIdentityHandler._calculate_thresholds puts the thresholds at half steps "
            "(finn/transformation/qonnx/qonnx_activation_handlers.py:591-635, min_threshold at :632) and never reads "
            "rounding_mode, so a FLOOR Quant is computed as ROUND. "
            + ("Proof of the cause: FINN's converted graph equals our graph with FLOOR rewritten to ROUND on every value "
               f"({cell(probe)})." if same else f"NOT confirmed by the probe: FINN vs the FLOOR->ROUND graph: {cell(probe)}."))
    out.append("3. Harness fact, not a refusal: after LowerConvsToMatMul and in step_convert_to_hw the graphs run one "
               "image at a time (Im2Col/MaxPoolNHWC shapes and the HW layers' execute_node are batch 1, e.g. "
               "finn/custom_op/fpgadataflow/matrixvectoractivation.py:146 reshapes to the layer's normal shape).")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--wide-mt", nargs="*", default=["mlp_k2", "lenet_k2"], choices=list(MODELS),
                    help="models also run with ConvertQONNXtoFINN's max_multithreshold_bit_width=16")
    ap.add_argument("--out", default=str(RESULTS / "finn_ingest"))
    ap.add_argument("--md-from", help="only rewrite the .md from this JSON (no FINN run)")
    args = ap.parse_args(argv)
    if args.md_from:
        write_md(json.loads(Path(args.md_from).read_text()), Path(args.out + ".md"))
        print("wrote", args.out + ".md")
        return 0
    torch.set_num_threads(1)
    calib, _ = load_dataset("mnist", "test", limit=500)
    images, _ = load_dataset("mnist", "test", limit=args.images)
    import importlib.metadata as md
    res = {"versions": {p: md.version(p) for p in ("finn-plus", "qonnx", "onnx", "onnxruntime", "torch", "numpy")},
           "python": platform.python_version(), "images": args.images, "load": os.getloadavg()[0], "models": {}}
    for name in args.models:
        res["models"][name] = ingest(name, calib, images)
    for name in args.wide_mt:  # the variant: FINN asked to turn the >8-bit requantising Quants into thresholds
        res["models"][f"{name} max_multithreshold_bit_width=16"] = ingest(name, calib, images, max_mt_bits=16)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(res, indent=1) + "\n")
    write_md(res, Path(args.out + ".md"))
    print("wrote", args.out + ".json", args.out + ".md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
