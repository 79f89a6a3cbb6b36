"""The HLS strategy distributed_arithmetic (issue 21) against ``vecq-hw rtl`` and our old HLS estimate.

Per model and k (MLP 16-64-32-32-5 and a 12x12x1 CNN conv3x3x4 -> pool -> conv3x3x4 -> pool ->
dense 5, random VecQ-style weights, odd codes, 8-bit activations; the models of
benchmarks/hardware.py):
  * the HLS project with --strategy distributed_arithmetic, C-simulated with g++ on 1,000 inputs
    against the simulator (io_parallel; io_stream too with --stream);
  * yosys LUTs of every DA layer (flow.da_layer_luts): the adder graph alone, and the graph with
    the layer's scale, bias and requantisation ("layer"), both from da4ml's Verilog of the
    CombLogic the C++ was emitted from;
  * ``vecq-hw rtl`` of the same model mapped by yosys (fully unrolled: every conv pixel has its
    own graph), and the DA layers counted the same way (layer LUTs x output pixels); rtl's count
    is taken from results/hardware.json where that run mapped the same design (same model, RTL
    settings and da4ml cost of the trace), else mapped here;
  * the pre-synthesis estimate: the old per-product model (strategy Latency) and the DA strategy
    (da4ml's cost of each adder graph).
yosys counts are technology-mapping counts, not Vivado post-route results; what Vitis HLS makes
of the C++ needs Vitis. Writes benchmarks/results/da_strategy.md and .json.
Usage: python benchmarks/da_strategy.py [--quick] [--stream] [--resume] [--keep DIR] [--only MODEL ...]
       [--no-rtl-synth]
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

from vecq_hw import rtl
from vecq_hw.flow import da_layer_luts, write_hls_project
from vecq_hw.hls import HlsOptions, csim
from vecq_hw.hls.estimate import estimate
from vecq_hw.hls.options import DISTRIBUTED_ARITHMETIC as DA
from vecq_hw.ir.examples import random_cnn, random_inputs, random_mlp

RESULTS = Path(__file__).resolve().parent / "results"
N_INPUTS = 1000


def models(quick: bool):
    ks = (2,) if quick else (1, 2, 4)
    out = [random_mlp(k, sizes=(16, 64, 32, 32, 5), seed=k, name=f"mlp_k{k}") for k in ks]
    return out + [random_cnn(k, seed=k, size=12, channels=(4, 4), n_out=5, name=f"cnn12_k{k}") for k in ks]


def csim_row(model, work: Path, io_type: str) -> dict:
    t0 = time.perf_counter()
    x = random_inputs(model, N_INPUTS, seed=5)
    prj = write_hls_project(model, work / f"hls_{io_type}", HlsOptions(io_type=io_type, strategy=DA),
                            model.input.out_type.to_float(x), overwrite=True)
    gen = time.perf_counter() - t0
    r = csim(prj)
    return {"io_type": io_type, "n": r.n, "mismatches": r.mismatches, "value_mismatches": r.value_mismatches,
            "generate_s": round(gen, 1), "build_s": round(r.build_seconds, 1), "run_s": round(r.run_seconds, 1)}


def rtl_luts(model, work: Path, known: dict, synth: bool = True) -> dict:
    """yosys LUTs of ``vecq-hw rtl`` on the model; taken from benchmarks/results/hardware.json when
    that run mapped the same design (same model name, settings and da4ml cost of the trace), else
    mapped here (``synth``; without it: None, not measured)."""
    t0 = time.perf_counter()
    prj = rtl.write(model, work / "rtl", overwrite=True)
    old = known.get(model.name)
    if old and old.get("luts") and old["da4ml_luts"] == round(prj.manifest["da4ml_cost"]):
        return {"rtl_luts": old["luts"], "rtl_carry": old["carry4"], "rtl_yosys_s": old["yosys_s"],
                "rtl_from": "results/hardware.json (same design)"}
    if not synth:
        return {"rtl_luts": None, "rtl_carry": None, "rtl_yosys_s": None, "rtl_from": "not mapped (--no-rtl-synth)"}
    s = rtl.synth(prj)
    return {"rtl_luts": s.luts, "rtl_carry": s.carry, "rtl_yosys_s": round(time.perf_counter() - t0, 1),
            "rtl_from": "this run"}


def known_rtl(ropts) -> dict:
    """hardware.json's model rows, when that run used these RTL settings."""
    path = RESULTS / "hardware.json"
    if not path.is_file():
        return {}
    d = json.loads(path.read_text())
    if d.get("latency_cutoff") != ropts.latency_cutoff or d.get("part") != ropts.part:
        return {}
    return {r["model"]: r for r in d.get("models", [])}


_KERNEL_LUT_PER_MAC: dict = {}


def kernel_lut_per_mac(layer) -> float:
    """yosys LUTs per MAC of our current HLS kernel form at R = 1 (constant weights: 8 codes of
    the layer's level table folded in, 8-bit activations; the figure of results/methods.md)."""
    from vecq_hw.hls.estimate.calibrate import kernel_lut_per_mac as measure_form

    key = (int(layer.bits), tuple(int(v) for v in layer.levels))
    if key not in _KERNEL_LUT_PER_MAC:
        _KERNEL_LUT_PER_MAC[key] = round(measure_form(layer.levels, int(layer.bits), constant=True), 2)
    return _KERNEL_LUT_PER_MAC[key]


def per_mac(row: dict, model) -> None:
    """LUTs per multiply-accumulate: the DA graphs (per graph's products), rtl (per MAC of the
    unrolled frame) and our current kernel form; products per layer from the model."""
    sizes = {lyr.name: int(lyr.codes.size) for lyr in model.layers if lyr.name in {r["layer"] for r in row["layers"]}}
    for lyr in row["layers"]:
        lyr["products"] = sizes[lyr["layer"]]
    graph = sum(r["products"] for r in row["layers"])  # products of one pass through every graph
    frame = sum(r["products"] * r["pixels"] for r in row["layers"])  # MACs per frame
    row.update(products=graph, macs_per_frame=frame, da_adder_lut_per_mac=round(row["da_adder_luts"] / graph, 2),
               da_layer_lut_per_mac=round(row["da_layer_luts"] / graph, 2),
               rtl_lut_per_mac=round(row["rtl_luts"] / frame, 2) if row["rtl_luts"] else None,
               kernel_lut_per_mac=kernel_lut_per_mac(model.layers[1]))


def measure(model, work: Path, stream: bool, known: dict, rtl_synth: bool = True) -> dict:
    bits = int(model.layers[1].bits)
    row = {"model": model.name, "bits": bits}
    ios = ("io_parallel",) + (("io_stream",) if stream and bits == 2 else ())
    row["csim"] = [csim_row(model, work, io) for io in ios]
    t0 = time.perf_counter()
    layers = da_layer_luts(model, work / "da")
    row["da_yosys_s"] = round(time.perf_counter() - t0, 1)
    row["layers"] = [r.to_dict() for r in layers]
    old, new = estimate(model, part="xc7z020"), estimate(model, part="xc7z020", strategy=DA)
    row.update(estimate_old_luts=round(old.total("luts")), estimate_da_luts=round(new.total("luts")),
               estimate_dsps=int(new.total("dsps")))
    row.update(rtl_luts(model, work, known, rtl_synth))
    row["da_adder_luts"] = sum(r.adder_luts for r in layers)
    row["da_layer_luts"] = sum(r.layer_luts for r in layers)  # one graph per layer: the HLS design
    row["da_layer_luts_unrolled"] = sum(r.layer_luts * r.pixels for r in layers)  # as vecq-hw rtl
    row["da_over_rtl"] = round(row["da_layer_luts_unrolled"] / row["rtl_luts"], 3) if row["rtl_luts"] else None
    per_mac(row, model)
    print(json.dumps({k: v for k, v in row.items() if k != "layers"}), flush=True)
    return row


def _n(v, fmt=",") -> str:
    return "-" if v is None else format(v, fmt)


def per_mac_table(result: dict) -> list[str]:
    lines = ["## LUTs per multiply-accumulate (yosys, constant weights, 8-bit activations)", "",
             "| model | k | products per pass (DA graphs) | DA adder graphs | DA layers with tail | `vecq-hw rtl` "
             "(da4ml, whole unrolled model) | our current kernel form (R = 1) | kernel / DA adder graph |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["models"]:
        lines.append(f"| {r['model']} | {r['bits']} | {r['products']:,} | {r['da_adder_lut_per_mac']:.2f} | "
                     f"{r['da_layer_lut_per_mac']:.2f} | {_n(r['rtl_lut_per_mac'], '.2f')} | "
                     f"{r['kernel_lut_per_mac']:.2f} | {r['kernel_lut_per_mac'] / r['da_adder_lut_per_mac']:.1f}x |")
    return lines + ["", "- *DA adder graphs*: yosys LUTs of the layers' adder graphs (x -> acc) over their products "
                    "(weights), one graph per layer; *with tail*: plus each layer's scale, bias and requantisation. "
                    "*`vecq-hw rtl`*: da4ml's own design of the whole model (adder graphs, tails, ReLUs, pools, "
                    "pipeline registers) over the MACs of a frame (conv products x output pixels). *our current "
                    "kernel form*: `hls/estimate/calibrate.kernel_lut_per_mac(levels, k, constant=True)`, an "
                    "8-term dot product in our kernels' form with the codes folded in as constants, per product "
                    "with its share of the adder tree (the figure of results/methods.md).", ""]


def markdown(result: dict) -> str:
    lines = ["# HLS strategy distributed_arithmetic (da4ml adder graphs) vs `vecq-hw rtl`", "",
             f"Generated by `benchmarks/da_strategy.py` on {result['machine']}; yosys `synth_xilinx` "
             f"for {result['part']} without DSPs, da4ml pipelining at latency cutoff {result['latency_cutoff']}.", "",
             "**yosys mapping counts, not Vivado post-route results.** The DA figure is da4ml's Verilog of the "
             "very adder graph (`CombLogic`) the HLS C++ was emitted from; what Vitis HLS makes of that C++ "
             "needs Vitis and is not measured here.", "",
             "| model | k | C sim mismatches / inputs | DA adder graphs (yosys LUTs) | DA layers with tail | "
             "DA layers x pixels | `vecq-hw rtl` (yosys LUTs) | DA / rtl | old HLS estimate | DA estimate | "
             "DA estimate DSPs |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["models"]:
        cs = ", ".join(f"{c['mismatches']} / {c['n']:,} ({c['io_type']})" for c in r["csim"])
        lines.append(f"| {r['model']} | {r['bits']} | {cs} | {r['da_adder_luts']:,} | {r['da_layer_luts']:,} | "
                     f"{r['da_layer_luts_unrolled']:,} | {_n(r['rtl_luts'])} | {_n(r['da_over_rtl'], '.2f')} | "
                     f"{r['estimate_old_luts']:,} | {r['estimate_da_luts']:,} | {r['estimate_dsps']} |")
    lines += ["", "- *DA adder graphs*: the products alone (x -> acc), summed over the weighted layers, one graph "
              "per layer. *DA layers with tail*: each graph followed by the layer's scale, bias and ONE "
              "requantisation as `vecq-hw rtl` builds them: the HLS design's weighted layers in LUTs (a conv "
              "graph serves one output pixel per cycle). *x pixels*: each conv layer counted once per output "
              "pixel, as the fully unrolled `vecq-hw rtl` design builds it; *DA / rtl* is that over rtl's count "
              "(rtl also holds the ReLUs and pools, and drops the zero-padding taps of border pixels).",
              "- *old HLS estimate*: `vecq-hw estimate` before issue 21 (the calibrated per-product LUT model, "
              "strategy Latency); *DA estimate*: `vecq-hw estimate --strategy distributed_arithmetic` (da4ml's own "
              "LUT estimate of each adder graph); both put the requantisation's multiplies on DSPs and count the HLS "
              "design (one conv graph per layer, one pixel per cycle): compare them with *DA layers with tail*, "
              "not with the unrolled rtl design.", ""] + per_mac_table(result) + [
              "## Per layer", "",
              "| model | layer | kind | pixels | products | adders | da4ml est. LUTs | adder graph LUTs | "
              "LUT/MAC | CARRY4 | layer LUTs (with tail) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["models"]:
        for lyr in r["layers"]:
            lines.append(f"| {r['model']} | {lyr['layer']} | {lyr['kind']} | {lyr['pixels']} | {lyr['products']:,} | "
                         f"{lyr['adders']:,} | {lyr['da4ml_cost']:,.0f} | {lyr['adder_luts']:,} | "
                         f"{lyr['adder_luts'] / lyr['products']:.2f} | {lyr['adder_carry']:,} | "
                         f"{lyr['layer_luts']:,} |")
    lines += ["", "## Times (s)", "", "| model | generate | g++ build | C sim run | DA yosys | rtl write + yosys |",
              "|---|---|---|---|---|---|"]
    for r in result["models"]:
        c = r["csim"][0]
        lines.append(f"| {r['model']} | {c['generate_s']} | {c['build_s']} | {c['run_s']} | {r['da_yosys_s']} | "
                     f"{_n(r['rtl_yosys_s'])} ({r['rtl_from']}) |")
    lines += ["", f"Wall-clock on a shared machine (load average {result['load_avg']} at the start)."]
    if any(r["csim"][0]["build_s"] == 0 for r in result["models"]):
        lines.append("A g++ build of 0 s: the C simulation's content-keyed cache already held this very project's "
                     "result (the same project C-simulated by an interrupted run, kept with --keep).")
    lines.append("")
    return "\n".join(lines)


def _save(result: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    result["models"].sort(key=lambda r: (r["model"].rsplit("_k", 1)[0], r["bits"]))  # rows in a stable order
    (RESULTS / "da_strategy.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "da_strategy.md").write_text(markdown(result))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="k = 2 only")
    ap.add_argument("--stream", action="store_true", help="C-simulate the io_stream project too (k = 2)")
    ap.add_argument("--resume", action="store_true", help="keep the rows already in results/da_strategy.json")
    ap.add_argument("--keep", type=Path, help="keep the projects here")
    ap.add_argument("--only", nargs="+", metavar="MODEL", help="only these models (e.g. mlp_k2 cnn12_k2)")
    ap.add_argument("--no-rtl-synth", action="store_true",
                    help="do not map `vecq-hw rtl` designs that results/hardware.json lacks (hours on a busy machine)")
    args = ap.parse_args(argv)
    ropts = rtl.RtlOptions()
    work = args.keep or Path(tempfile.mkdtemp(prefix="vecq_hw_da_"))
    result = {"machine": f"{platform.node()} ({platform.machine()}, Python {platform.python_version()})",
              "part": ropts.part, "latency_cutoff": ropts.latency_cutoff, "n_inputs": N_INPUTS,
              "load_avg": round(os.getloadavg()[0], 1),
              "note": "yosys synth_xilinx mapping counts, not Vivado post-route results", "models": []}
    old = RESULTS / "da_strategy.json"
    if args.resume and old.is_file():
        result["models"] = json.loads(old.read_text()).get("models", [])
    done = {r["model"] for r in result["models"]}
    order = {name: i for i, name in enumerate(args.only or [])}  # --only's order: the cheap ones first
    for model in sorted(models(args.quick), key=lambda m: order.get(m.name, 0)):
        if model.name in done or (args.only and model.name not in order):
            continue
        result["models"].append(measure(model, work / model.name, args.stream, known_rtl(ropts),
                                        rtl_synth=not args.no_rtl_synth))
        _save(result)
    _save(result)
    print(markdown(result))
    bad = [r["model"] for r in result["models"] for c in r["csim"] if c["mismatches"] or c["value_mismatches"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
