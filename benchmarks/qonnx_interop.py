"""QONNX out and in, measured (issue 26): writes benchmarks/results/qonnx.json and qonnx.md.

Part 1, out: a LeNet-5 (6C5-16C5-FC84-FC10, 2-bit VecQ weights, BatchNorm folded, 8-bit
activations) trained ``--steps`` seeded Adam steps on MNIST here (one torch thread), exported
with ``vecq_hw.flow.export_torch``, written by ``vecq_hw.qonnx.to_qonnx``; then on the MNIST test
set (``--images``, default all 10,000):
  * qonnx's executor (``execute_onnx``) against our simulator: output values that differ, and the
    per-layer float32 error bounds ``write_graph`` states;
  * hls4ml 1.3.0's conversion (``vecq_hw.qonnx.hls4ml_convert``: its documented QONNX flow plus
    the precisions ``hls4ml_precisions`` pins), per io type: convert, compile and predict times,
    output values and images that differ from the simulator (must be 0).
Part 2, in: which Brevitas quantisers import exactly. A small Brevitas CNN (tests/brevitas_nets.py)
per quantiser set, trained ``--survey-steps`` steps (so learned scales are what training makes of
them), exported by Brevitas: refused (with the one-line reason) or imported, and then compared on
``--survey-images`` MNIST test images with (a) Brevitas's own forward in float64 (exact with
power-of-two scales; with float scales or biases it rounds at 2^-53 relative, far below an output
LSB) and (b) qonnx's float32 executor.

Usage: python benchmarks/qonnx_interop.py [--images 10000] [--steps 300] [--io io_stream io_parallel]
       [--survey-images 1000] [--survey-steps 100] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "tests"))  # brevitas_nets: the networks the tests use

from vecq_hw.data import load_dataset  # noqa: E402
from vecq_hw.flow import export_torch, images_to_inputs  # noqa: E402
from vecq_hw.models import build_model  # noqa: E402
from vecq_hw.quant import VecQ  # noqa: E402
from vecq_hw.qonnx import from_qonnx, hls4ml_convert, write_graph  # noqa: E402
from vecq_hw.sim import simulate  # noqa: E402


def load() -> str:
    return f"{os.getloadavg()[0]:.1f} (1-min load, {os.cpu_count()} CPUs)"


def qonnx_run(proto_or_path, x_nchw: np.ndarray, clean: bool = False, full: bool = False):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.util.cleanup import cleanup_model
    mw = ModelWrapper(proto_or_path)
    mw = cleanup_model(mw) if clean else mw
    mw = mw.transform(ChangeBatchSize(len(x_nchw))).transform(InferShapes())
    ctx = execute_onnx(mw, {mw.graph.input[0].name: x_nchw.astype(np.float32)}, return_full_exec_context=full)
    return ctx if full else ctx[mw.graph.output[0].name]


def train_lenet(steps: int):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = build_model("lenet5", weight_quant=VecQ(bits=2), conv_channels=(6, 16), hidden=84)
    images, labels = load_dataset("mnist", "train")
    x = torch.tensor(images, dtype=torch.float32).unsqueeze(1) / 256
    y = torch.tensor(labels)
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    gen = torch.Generator().manual_seed(0)
    net.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=gen)
        loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return export_torch(net.eval())


def executor_vs_sim(model, proto, x: np.ndarray, chunk: int = 1000) -> dict:
    """qonnx's executor against the simulator: output values that differ, and per layer (judged on
    the samples whose inputs to it agree, tests/qonnx_compare.py) values that differ and by how much."""
    from qonnx_compare import layer_diffs
    t, differ, layers = time.time(), 0, {}
    for i in range(0, len(x), chunk):
        xc = x[i:i + chunk]
        sim = simulate(model, x_mantissa=xc, trace=True)
        ctx = qonnx_run(proto, model.input.out_type.to_float(xc).transpose(0, 3, 1, 2), full=True)
        out = ctx[proto.graph.output[0].name].astype(np.float64) * 2.0 ** model.output_type.frac
        differ += int(np.sum(out != sim.output))
        for name, d in layer_diffs(model, ctx, sim.trace).items():
            acc = layers.setdefault(name, {"differ": 0, "max": 0, "samples": 0})
            acc.update(differ=acc["differ"] + d["differ"], max=max(acc["max"], d["max"]),
                       samples=acc["samples"] + d["samples"])
    return {"s": round(time.time() - t, 1), "values_differing": differ, "values": int(len(x) * np.prod(model.output_shape)),
            "layers": layers}


def part_out(args, work: Path) -> dict:
    t = time.time()
    model = train_lenet(args.steps)
    res = {"model": "LeNet-5 6C5-16C5-FC84-FC10, 2-bit VecQ, BatchNorm folded", "train_steps": args.steps,
           "train_export_s": round(time.time() - t, 1)}
    images, labels = load_dataset("mnist", "test", limit=args.images)
    x = model.input.out_type.from_float(images_to_inputs(images, model))
    sim = simulate(model, x_mantissa=x).output
    res.update(images=len(x), accuracy=float(np.mean(np.argmax(sim, axis=1) == labels)))
    g = write_graph(model)
    res["f32_error_bound_lsb"] = {k: v for k, v in g.f32_error.items() if v}
    res["qonnx_executor"] = executor_vs_sim(model, g.proto, x)
    res["hls4ml"] = {}
    for io in args.io:
        r, t = {"load_before": load()}, time.time()
        hm = hls4ml_convert(g.proto, work / f"hls4ml_{io}", io_type=io)
        r["convert_s"], t = round(time.time() - t, 1), time.time()
        hm.compile()
        r["compile_s"], t = round(time.time() - t, 1), time.time()
        y = hm.predict(np.ascontiguousarray(model.input.out_type.to_float(x).reshape(len(x), -1)))
        r["predict_s"] = round(time.time() - t, 1)
        y = np.round(np.asarray(y, dtype=np.float64).reshape(sim.shape) * 2.0 ** model.output_type.frac)
        r.update(values_differing=int(np.sum(y != sim)), images_differing=int(np.sum(np.any(y != sim, axis=1))))
        res["hls4ml"][io] = r
        print(io, r, flush=True)
    return res


def survey_configs() -> dict:
    from brevitas.quant import (Int8ActPerTensorFixedPoint, Int8ActPerTensorFloat, Int8Bias, Int8WeightPerTensorFloat,
                                Int32Bias, SignedBinaryWeightPerTensorConst, SignedTernaryWeightPerTensorConst,
                                Uint8ActPerTensorFloat)
    from brevitas.quant.fixed_point import Int8WeightPerChannelFixedPoint
    from brevitas.quant.scaled_int import Int8WeightPerChannelFloat
    from brevitas.quant import Int8WeightPerTensorFixedPoint as PT
    return {
        "FixedPoint weights: 4-bit per-tensor, 3-bit per-channel, 2-bit per-tensor; Int16Bias (the tests')": {},
        "Int8WeightPerTensorFixedPoint, 8 bit": {"w1": (PT, 8), "w2": (PT, 8), "w3": (PT, 8)},
        "Int8WeightPerChannelFixedPoint, 8 bit": {f"w{i}": (Int8WeightPerChannelFixedPoint, 8) for i in (1, 2, 3)},
        "Int8WeightPerTensorFloat, 8 bit": {f"w{i}": (Int8WeightPerTensorFloat, 8) for i in (1, 2, 3)},
        "Int8WeightPerChannelFloat, 4 bit": {f"w{i}": (Int8WeightPerChannelFloat, 4) for i in (1, 2, 3)},
        "SignedBinaryWeightPerTensorConst (scale 0.1), conv2": {"w2": (SignedBinaryWeightPerTensorConst, 1)},
        "SignedTernaryWeightPerTensorConst, conv2": {"w2": (SignedTernaryWeightPerTensorConst, 2)},
        "bias_quant=None (float bias)": {"bias_quant": None},
        "Int8Bias": {"bias_quant": Int8Bias},
        "Int32Bias": {"bias_quant": Int32Bias},
        "Int8ActPerTensorFixedPoint input (signed)": {"in_quant": Int8ActPerTensorFixedPoint},
        "no output quantiser (float y out)": {"out_quant": None},
        "Uint8ActPerTensorFloat activations": {"act": Uint8ActPerTensorFloat},
        "Int8ActPerTensorFloat output": {"out_quant": Int8ActPerTensorFloat},
    }


def survey_one(name: str, kw: dict, images: np.ndarray, train: tuple, path: Path) -> dict:
    """``train``: (images, labels, steps): a short training run first, so that learned scales
    (the float quantisers') are what training makes of them, not their initial values."""
    import brevitas_nets
    from vecq_hw.errors import VecQError
    torch.manual_seed(0)
    net = brevitas_nets.SmallCNN(**kw)
    brevitas_nets.train(net, train[0], train[1], steps=train[2], seed=0)
    brevitas_nets.export(net, path)
    try:
        model = from_qonnx(path)
    except VecQError as e:
        return {"quantisers": name, "imported": False, "reason": e.detail, "where": e.field}
    x = images.reshape(-1, 28, 28, 1).astype(np.float64) / 256
    sim = simulate(model, x=x)
    with torch.no_grad():
        ref64 = net.double()(torch.tensor(x.transpose(0, 3, 1, 2))).numpy()
    ex = qonnx_run(str(path), x.transpose(0, 3, 1, 2), clean=True)
    tables = [f"{w.encoding}{w.bits}" for w in model.layers if hasattr(w, "encoding")]
    return {"quantisers": name, "imported": True, "tables": tables, "out_type": str(model.output_type),
            "values": int(sim.output.size), "differ_from_brevitas_float64": int(np.sum(sim.values() != ref64)),
            "differ_from_qonnx_float32_executor": int(np.sum(sim.values() != ex))}


def part_in(args, work: Path) -> list[dict]:
    torch.set_num_threads(1)
    images, _ = load_dataset("mnist", "test", limit=args.survey_images)
    train = load_dataset("mnist", "train", limit=4000) + (args.survey_steps,)
    rows = []
    for i, (name, kw) in enumerate(survey_configs().items()):
        rows.append(survey_one(name, kw, images, train, work / f"survey_{i}.onnx"))
        print(rows[-1], flush=True)
    return rows


def markdown(res: dict) -> str:
    o = res["out"]
    lines = ["# QONNX out and in (benchmarks/qonnx_interop.py)", "",
             f"Machine: {res['machine']}; load before: {res['load_before']}, after: {res['load_after']}.", "",
             "## Out: our QONNX in qonnx's executor and in hls4ml 1.3.0", "",
             f"{o['model']}, trained {o['train_steps']} steps here; MNIST test images: {o['images']}, "
             f"accuracy of the integer model {100 * o['accuracy']:.2f} %.", "",
             "float32 error bounds `write_graph` states (output LSBs; layers not listed: 0, exact): "
             + (", ".join(f"{k} {v:.2g}" for k, v in o["f32_error_bound_lsb"].items()) or "none"), "",
             f"qonnx executor vs simulator: {o['qonnx_executor']['values_differing']} of "
             f"{o['qonnx_executor']['values']} output values differ ({o['qonnx_executor']['s']} s). Per layer, "
             "judged on the images whose inputs to that layer agree (values differing / largest difference "
             "in LSBs / images judged): " + "; ".join(
                 f"{k} {d['differ']}/{d['max']}/{d['samples']}" for k, d in o["qonnx_executor"]["layers"].items()
                 if k in o["f32_error_bound_lsb"] or d["differ"]), "",
             "| hls4ml io_type | convert s | compile s | predict s | values differing | images differing |",
             "|---|---|---|---|---|---|"]
    for io, r in o["hls4ml"].items():
        lines.append(f"| {io} | {r['convert_s']} | {r['compile_s']} | {r['predict_s']} | {r['values_differing']} | "
                     f"{r['images_differing']} |")
    lines += ["", "## In: which Brevitas quantisers import exactly", "",
              f"Small Brevitas CNN (tests/brevitas_nets.py) trained {res['survey_steps']} steps per row, "
              f"{res['survey_images']} MNIST test images. "
              "'float64' = Brevitas's own forward in float64 (exact with power-of-two scales; with float scales "
              "or biases it rounds at 2^-53 relative, far below an output LSB), "
              "'executor' = qonnx's float32 executor; both count output values that differ from our simulator.", "",
              "| quantisers | result | tables | vs float64 | vs executor |", "|---|---|---|---|---|"]
    for r in res["in"]:
        if r["imported"]:
            lines.append(f"| {r['quantisers']} | imported | {' '.join(r['tables'])} | "
                         f"{r['differ_from_brevitas_float64']}/{r['values']} | "
                         f"{r['differ_from_qonnx_float32_executor']}/{r['values']} |")
        else:
            lines.append(f"| {r['quantisers']} | refused: {r['where']}: {r['reason']} | | | |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--io", nargs="*", default=["io_stream", "io_parallel"])
    ap.add_argument("--survey-images", type=int, default=1000)
    ap.add_argument("--survey-steps", type=int, default=100)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--skip-in", action="store_true", help="only part 1")
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="qonnx_bench_"))
    res = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "load_before": load(),
           "survey_images": args.survey_images, "survey_steps": args.survey_steps}
    res["in"] = [] if args.skip_in else part_in(args, work)
    res["out"] = part_out(args, work)
    res["load_after"] = load()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "qonnx.json").write_text(json.dumps(res, indent=1) + "\n")
    (RESULTS / "qonnx.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
