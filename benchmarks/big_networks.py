"""Networks bigger than the chip (issue 28): ResNet-18 and MobileNetV2 at ImageNet shape with random
2-bit weights, on xczu9eg (ZCU102), xczu7ev (ZCU104) and xcu250 (Alveo U250).

For each network: export it from PyTorch (big_networks_torch.py), build the integer model directly and
save it (model.yaml + tables: what an export writes),
simulate a few images, estimate the fully folded design (memory per kind), and ``fit`` it to each
part (the plan, its frontier of fitting plans, the DDR it reads). For the (network, part) pairs
given with ``--csim`` (default: ResNet-18 on xczu9eg): write the fitted HLS project, build its C
simulation in a fresh process with an empty compiler cache (so the precompiled headers are built
too: the cold cost), recording wall time, CPU time and the peak memory of the compiler processes,
then C-simulate ``--images`` images against the simulator, exactly.

    python benchmarks/big_networks.py [--csim resnet18:xczu9eg ...] [--images 2] [--jobs 2]
    python benchmarks/big_networks.py --markdown-only   # the page again from the JSON

Writes benchmarks/results/big_networks.json and big_networks.md. The resource numbers are this
project's pre-synthesis estimate (no Vivado here), not synthesis results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vecq_hw import ir  # noqa: E402
from vecq_hw.hls.estimate import estimate, fit  # noqa: E402
from vecq_hw.hls.folding import inputs_per_frame, products_per_input, weighted_nodes  # noqa: E402
from vecq_hw.ir.examples import random_inputs  # noqa: E402
from vecq_hw.ir.imagenet import mobilenet_v2, resnet18  # noqa: E402
from vecq_hw.ir.io import save_model  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PARTS = ("xczu9eg", "xczu7ev", "xcu250")
#: ResNet-18 on the ZCU102 once more with the codes of stage 4 and the classifier (76 % of the weights) kept
#: in DDR (`fit --weights LAYER=offchip`): the BRAM they free, the DDR bandwidth they cost
STREAMED = {"resnet18": {"xczu9eg+ddr": ("xczu9eg", {name: "offchip" for name in (
    "l4b1_conv1", "l4b1_conv2", "l4b1_proj", "l4b2_conv1", "l4b2_conv2", "fc")})}}
MODELS = {"resnet18": resnet18, "mobilenet_v2": mobilenet_v2}
HEADROOM = 0.8
#: variants at another headroom {network: {label: (part, headroom)}} (none now)
HEADROOMS: dict = {}


def macs(model: ir.Model) -> int:
    return sum(products_per_input(n) * inputs_per_frame(n) for n in weighted_nodes(model))


def plan_row(model, e) -> dict:
    t, u = e.totals(), e.utilisation()
    gops = 2 * macs(model) * e.fps / 1e9
    return {"fps": e.fps, "ii": e.ii, "io_type": e.io_type, "luts": t["luts"], "ffs": t["ffs"], "dsps": t["dsps"],
            "bram18": t["bram18"], "uram": t["uram"], "utilisation": u, "ddr_gbps": e.ddr_gbps,
            "ddr_mb_per_frame": e.ddr_bytes / 1e6, "gops": gops, "gops_per_klut": gops / (t["luts"] / 1e3),
            "weights_off_chip": e.weights(), "memory": e.memory(), "reuse": e.reuse(), "packs": dict(e.packs)}


def export_times(name: str) -> dict:
    """Export the PyTorch ResNet-18 / MobileNetV2 written with our layers (big_networks_torch.py):
    trace, quantise, build the integer model and check it against PyTorch on 2 images."""
    import torch

    from big_networks_torch import TORCH_MODELS
    from vecq_hw.export.torch_export import export

    module = TORCH_MODELS[name]().eval()
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)) * 2 - 1
    t0, c0 = time.perf_counter(), time.process_time()
    r = export(module, (3, 224, 224), samples=x)
    return {"export_s": time.perf_counter() - t0, "export_cpu_s": time.process_time() - c0,
            "export_exact": r.equivalence.exact, "export_weights": int(sum(
                layer.codes.size for layer in r.model.layers if isinstance(layer, ir.Weighted)))}


def software(name: str, tmp: Path, kept_export: dict | None = None) -> tuple[ir.Model, dict]:
    """The software timings; ``kept_export``: the export fields of an earlier run, not measured again."""
    t0 = time.perf_counter()
    model = MODELS[name]()
    t1 = time.perf_counter()
    save_model(model, tmp / name)
    t2 = time.perf_counter()
    from vecq_hw.sim import simulate
    x = random_inputs(model, 8, seed=1)
    t3 = time.perf_counter()
    simulate(model, x_mantissa=x)
    t4 = time.perf_counter()
    weights = sum(layer.codes.size for layer in model.layers if isinstance(layer, ir.Weighted))
    return model, {"weights": int(weights), "macs": macs(model), "build_s": t1 - t0, "save_s": t2 - t1,
                   "sim_8_images_s": t4 - t3, **(kept_export or export_times(name)), "load_average": os.getloadavg()}


def _targets(name: str) -> dict:
    """{label: (part, pinned weights, headroom)}: every part, and the streamed and headroom variants."""
    return {**{p: (p, {}, HEADROOM) for p in PARTS},
            **{k: (part, pins, HEADROOM) for k, (part, pins) in STREAMED.get(name, {}).items()},
            **{k: (part, {}, h) for k, (part, h) in HEADROOMS.get(name, {}).items()}}


def what_remains(model: ir.Model, e) -> dict:
    """Of a plan: the FFs of the weighted layers' accumulators (every output channel of every conv,
    depthwise and dense layer held in registers), and its conv line buffers as built (one bank per
    channel) beside one bank per input the folded loop reads a cycle."""
    from vecq_hw.hls.costs import bram_or_lutram
    from vecq_hw.hls.mappings import mapping_for
    from vecq_hw.hls.select import block_inputs
    nodes = {n.layer.name: n for n in model.nodes()}
    out = {"acc_ffs": 0, "ffs": e.total("ffs"), "lb_luts": 0.0, "lb_bram18": 0, "lb_fewer_banks_luts": 0.0,
           "lb_fewer_banks_bram18": 0}
    for lyr in e.layers:
        node = nodes[lyr.name]
        if not lyr.reuse:
            continue
        c_out = int(node.out_shape[-1])
        out["acc_ffs"] += c_out * int(node.layer.accum_type.width)
        if node.layer.kind in ("conv2d", "depthwise_conv2d"):
            (_, w, c), kh, width = node.in_shapes[0], int(node.layer.kernel[0]), int(node.in_types[0].width)
            b, lut = bram_or_lutram(c, (kh + 1) * w, width)
            banks = min(c, block_inputs(lyr.slots, mapping_for(node).input_group(node)))
            b2, lut2 = bram_or_lutram(banks, (kh + 1) * w * c // banks, width)
            out["lb_luts"] += lut
            out["lb_bram18"] += b
            out["lb_fewer_banks_luts"] += lut2
            out["lb_fewer_banks_bram18"] += b2
    return out


def fits(model: ir.Model) -> dict:
    folded = {n.layer.name: products_per_input(n) for n in weighted_nodes(model)}
    out = {"fully_folded": {p: plan_row(model, estimate(model, folded, part=p, io_type="io_stream"))
                            for p in ("xczu9eg",)}}
    for label, (part, pins, headroom) in _targets(model.name).items():
        t0 = time.perf_counter()
        r = fit(model, part, headroom=headroom, io_type="io_stream", weights=pins)
        seconds = time.perf_counter() - t0
        whole = fit(model, part, headroom=headroom, io_type="io_stream", weights=pins, slicing=False)
        chosen = r.plan or r.closest
        out[label] = {"ok": r.ok, "fit_s": seconds, "candidates": r.candidates, "plan": plan_row(model, chosen),
                      "over_budget": r.over_budget() if not r.ok else {}, "headroom": headroom,
                      "what_remains": what_remains(model, chosen),
                      "frontier": [plan_row(model, e) for e in r.frontier],
                      "whole_pixels": {"ok": whole.ok, "plan": plan_row(model, whole.plan or whole.closest),
                                       "over_budget": whole.over_budget() if not whole.ok else {}}}
    return out


_STEP = """
import sys
sys.path.insert(0, {root!r})
from vecq_hw.hls import build, csim
if {build_only!r}:
    build({prj!r}, jobs={jobs})
else:
    r = csim({prj!r}, jobs={jobs}, progress="off")
    print("RESULT", r.ok, r.n, r.mismatches, r.synthesis_cut)
"""


def _timed(code: str, env: dict) -> dict:
    """Run python code under /usr/bin/time -v: wall time, CPU (user + system, children included)
    and the largest resident set of the process tree (GNU time's 'Maximum resident set size')."""
    out = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-c", code], capture_output=True, text=True,
                         env=env)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark step failed (exit {out.returncode}):\n{out.stdout}\n{out.stderr[-3000:]}")
    v = dict(line.strip().rsplit(": ", 1) for line in out.stderr.splitlines() if ": " in line)
    wall = v["Elapsed (wall clock) time (h:mm:ss or m:ss)"].split(":")
    return {"wall_s": sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall))),
            "cpu_s": float(v["User time (seconds)"]) + float(v["System time (seconds)"]),
            "max_rss_mb": int(v["Maximum resident set size (kbytes)"]) / 1024, "stdout": out.stdout}


def csim_run(model: ir.Model, label: str, images: int, jobs: int, tmp: Path) -> dict:
    """Write the fitted project; build its C simulation (cold compiler cache) under /usr/bin/time -v,
    then C-simulate it (the build cached) under /usr/bin/time -v."""
    from vecq_hw.flow.hls import write_hls_project
    from vecq_hw.hls import HlsOptions
    from vecq_hw.hls.estimate import get_part
    part, pins, headroom = _targets(model.name)[label]
    r = fit(model, part, headroom=headroom, io_type="io_stream", weights=pins)
    if not r.ok:
        return {"skipped": f"nothing fits {part} at {headroom:.0%}"}
    opts = HlsOptions(io_type="io_stream", part=get_part(part).hls_part, reuse=r.plan.reuse(),
                      weights=r.plan.weights(), packs=dict(r.plan.packs))
    x = random_inputs(model, images, seed=5)
    t0 = time.perf_counter()
    prj = write_hls_project(model, tmp / f"{model.name}_{label}", opts, model.input.out_type.to_float(x))
    write_s = time.perf_counter() - t0
    env = dict(os.environ, VECQ_HW_CACHE=str(tmp / "cache"))  # cold: precompiled headers built too
    build = _timed(_STEP.format(root=str(ROOT), prj=str(prj), jobs=jobs, build_only=True), env)
    run = _timed(_STEP.format(root=str(ROOT), prj=str(prj), jobs=jobs, build_only=False), env)
    ok, n, mismatches, cut = run.pop("stdout").split("RESULT")[1].split()
    build.pop("stdout")
    blob = prj / "vecq_weights.bin"
    return {"write_s": write_s, "build": build, "run": run, "ok": ok == "True", "n": int(n),
            "mismatches": int(mismatches), "synthesis_cut": int(cut), "images": images, "jobs": jobs,
            "blob_bytes": blob.stat().st_size if blob.exists() else 0, "load_average": os.getloadavg(),
            "sliced_tensors": len(r.plan.packs)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csim", nargs="*", default=["resnet18:xczu9eg"], metavar="NET:PART",
                    help="PART may be a streamed variant's label, e.g. resnet18:xczu9eg+ddr")
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--keep-csim", action="store_true",
                    help="keep the C-simulation results of results/big_networks.json for the pairs not re-run")
    ap.add_argument("--keep-export", action="store_true",
                    help="keep the PyTorch export figures of results/big_networks.json instead of exporting again")
    ap.add_argument("--markdown-only", action="store_true",
                    help="rewrite results/big_networks.md from results/big_networks.json, measuring nothing")
    args = ap.parse_args(argv)
    if args.markdown_only:
        results = json.loads((RESULTS / "big_networks.json").read_text())
        (RESULTS / "big_networks.md").write_text(markdown(results))
        return results
    results = {"headroom": HEADROOM, "clock_mhz": 200, "networks": {}}
    kept, exports = {}, {}
    old = json.loads((RESULTS / "big_networks.json").read_text()) if (RESULTS / "big_networks.json").is_file() else None
    if args.keep_csim and old:  # the pairs that are still targets
        kept = {name: {k: v for k, v in net.get("csim", {}).items() if k in _targets(name)}
                for name, net in old["networks"].items()}
    if args.keep_export and old:
        exports = {name: {**{k: v for k, v in net["software"].items() if k.startswith("export")}, "export_kept": True}
                   for name, net in old["networks"].items()}
    with tempfile.TemporaryDirectory(prefix="vecq_bignet_") as tmp:
        for name in MODELS:
            model, sw = software(name, Path(tmp), exports.get(name))
            results["networks"][name] = {"software": sw, "fit": fits(model), "csim": dict(kept.get(name, {}))}
            print(f"{name}: {sw['weights']:,} weights, fit done", flush=True)
            for item in args.csim:
                net, part = item.split(":")
                if net == name:
                    results["networks"][name]["csim"][part] = csim_run(model, part, args.images, args.jobs, Path(tmp))
                    print(f"  csim {part}: {results['networks'][name]['csim'][part]}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "big_networks.json").write_text(json.dumps(results, indent=1, default=float))
    (RESULTS / "big_networks.md").write_text(markdown(results))
    return results


# --------------------------------------------------------------------------- the page

#: the estimate of the same ResNet-18 (fully folded, io_stream, xczu9eg) before issue 28, by the
#: estimator of main at commit 9e41df5 (and the numbers issue 28 quotes): every residual add
#: buffered a whole frame on each input
BEFORE = {"bram18": 2456, "bram18_util": 1.35, "weighted_layers_bram18": 1432, "adds_bram18": 1024,
          "fps": 1.68, "fit_xczu9eg": "nothing fits", "fit_xcu250_fps": 970}

PUBLISHED = """\
| design | network, precision | device | frames/s | source |
|---|---|---|---|---|
| FINN dataflow (ResNet-50 accelerator) | ResNet-50, 1-bit weights, 2-bit activations | Alveo U250 | 2,000 max, 2 ms batch-1 latency, 70 W at max fps | "ResNet50 Dataflow Inference with PYNQ on Alveo", discuss.pynq.io/t/resnet50-dataflow-inference-with-pynq-on-alveo/1003 (precision: finn-examples build/resnet50: `resnet50_w1a2`) |
| FINN dataflow (finn-examples) | MobileNet-v1, 4-bit weights and activations (8-bit first layer), 1.1 GMAC, 2 MB of weights | Alveo U250 | "should be able to achieve ~1600 FPS" (the config's expected rate, stated when it was added) | Xilinx/finn pull request #252; finn-examples build/mobilenet-v1/README.md |
| FINN dataflow (finn-examples) | MobileNet-v1 as above | ZCU104 (xczu7ev) | no figure found; it needed run-time-writable weights in UltraRAM | finn-examples pull request #5 ("runtime-writable weights (required for the ZCU104's URAM implementation)") |
| ESB accelerator | ESB-quantised CNNs | FPGA (the issue places it on a ZCU102) | "10.95 GOPS peak performance of 1k LUTs" (no DSPs) | Gong et al., "Elastic Significant Bit Quantization and Acceleration for Deep Neural Networks", arXiv:2109.03513 (TPDS 2022), abstract |

No LUT counts were found for the FINN designs, so no GOPS per 1k LUTs is given for them; ResNet-50
(4.1 GMAC) and MobileNet-v1 are not the networks here (ResNet-18: 1.8 GMAC, MobileNetV2: 0.3 GMAC),
and FINN's are post-route measurements on boards, ours pre-synthesis estimates.
"""


def _num(v, fmt=",.0f"):
    return format(v, fmt)


def _memory_table(mem: dict) -> list[str]:
    rows = ["| kind | Mbit | BRAM18 | URAM | LUTs (LUTRAM, SRL) |", "|---|---|---|---|---|"]
    for kind in ("weights", "line_buffers", "fifos", "axi"):
        m = mem[kind]
        rows.append(f"| {kind.replace('_', ' ')} | {m['bits'] / 1e6:,.2f} | {m['bram18']:,} | {m['uram']:,} | "
                    f"{m['luts']:,.0f} |")
    return rows


def _each_fit(results: dict):
    """(network, part label, its fit result) for every row of the fit table, in order."""
    for name, net in results["networks"].items():
        for part in _targets(name):
            yield name, part, net["fit"][part]


def _fit_rows(results: dict) -> list[str]:
    rows = ["| network | part | fits the headroom | frames/s | LUTs | FFs | BRAM18 | URAM | DDR GB/s | GOPS | "
            "GOPS / 1k LUTs | sliced tensors | codes off chip | fit time |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, part, f in _each_fit(results):
        p = f["plan"]
        u = p["utilisation"]
        verdict = (f"{f.get('headroom', HEADROOM):.0%}: " + ("yes" if f["ok"] else "no, " + ", ".join(
            f"{k} {v:.0%}" for k, v in f["over_budget"].items())))
        rows.append(f"| {name} | {part} | {verdict} | {p['fps']:,.1f} | {p['luts']:,.0f} ({u['luts']:.0%}) | "
                    f"{p['ffs']:,.0f} ({u['ffs']:.0%}) | "
                    f"{p['bram18']:,.0f} ({u['bram18']:.0%}) | {p['uram']:,.0f} | {p['ddr_gbps']:.2f} | "
                    f"{p['gops']:,.1f} | {p['gops_per_klut']:.2f} | {len(p.get('packs', {}))} | "
                    f"{', '.join(f'{k}={v}' for k, v in p['weights_off_chip'].items()) or '-'} | "
                    f"{f['fit_s']:.1f} s |")
    return rows


def _frontier_rows(results: dict) -> list[str]:
    rows = []
    for name, part, f in _each_fit(results):
        if f["frontier"]:
            steps = ", ".join(f"{p['fps']:,.1f} ({p['luts'] / 1e3:,.0f}k LUTs)" for p in f["frontier"])
            rows.append(f"- {name} on {part} ({len(f['frontier'])} plans): {steps}")
    return rows


def _csim_rows(results: dict) -> list[str]:
    rows = ["| network | part | streams | write project | g++ build (cold): wall / CPU / peak memory | C simulation: "
            "wall / CPU / peak memory | images | result | load average |", "|---|---|---|---|---|---|---|---|---|"]
    for name, net in results["networks"].items():
        for part, c in net["csim"].items():
            if "skipped" in c:
                rows.append(f"| {name} | {part} | | {c['skipped']} | | | | | |")
                continue
            b, r = c["build"], c["run"]
            streams = f"{c['sliced_tensors']} tensors sliced" if "sliced_tensors" in c else "whole pixels (earlier run)"
            rows.append(f"| {name} | {part} | {streams} | {c['write_s']:.0f} s | {b['wall_s']:.0f} s / {b['cpu_s']:.0f} s / "
                        f"{b['max_rss_mb']:,.0f} MB | {r['wall_s']:.0f} s / {r['cpu_s']:.0f} s / "
                        f"{r['max_rss_mb']:,.0f} MB | {c['images']} | "
                        f"{'bit-exact' if c['ok'] else 'MISMATCH'} ({c['mismatches']} of {c['n']} differ) | "
                        f"{', '.join(f'{v:.1f}' for v in c['load_average'])} |")
    return rows


def _lut_split(p: dict) -> str:
    fifo, lb = p["memory"]["fifos"]["luts"], p["memory"]["line_buffers"]["luts"]
    return f"{p['luts'] / 1e3:,.0f}k = {fifo / 1e3:,.0f}k + {lb / 1e3:,.0f}k + {(p['luts'] - fifo - lb) / 1e3:,.0f}k"


def _sliced_rows(results: dict) -> list[str]:
    """Each fit with whole-pixel tokens (before) and with the packs fit chose (after)."""
    rows = ["| network | part | whole pixels: fits, frames/s | LUTs = FIFOs + line buffers + logic | FFs | "
            "sliced: fits, frames/s | LUTs = FIFOs + line buffers + logic | FFs | FIFO Mbit before / after |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name, part, f in _each_fit(results):
        if "whole_pixels" not in f:
            continue
        w, p = f["whole_pixels"], f

        def verdict(r):
            return ("yes" if r["ok"] else "no") + f", {r['plan']['fps']:,.1f}"
        rows.append(f"| {name} | {part} | {verdict(w)} | {_lut_split(w['plan'])} | {w['plan']['ffs'] / 1e3:,.0f}k "
                    f"({w['plan']['utilisation']['ffs']:.0%}) | {verdict(p)} | {_lut_split(p['plan'])} | "
                    f"{p['plan']['ffs'] / 1e3:,.0f}k ({p['plan']['utilisation']['ffs']:.0%}) | "
                    f"{w['plan']['memory']['fifos']['bits'] / 1e6:.2f} / {p['plan']['memory']['fifos']['bits'] / 1e6:.2f} |")
    return rows


def _why_not_rows(results: dict) -> list[str]:
    """Where the LUTs of each closest plan that does not fit go: the FIFOs and line buffers (shift
    registers and LUTRAM) against the rest, beside the part's LUT budget."""
    rows = []
    for name, part, f in _each_fit(results):
        if f["ok"] or "luts" not in f["over_budget"]:
            continue
        p = f["plan"]
        mem, budget = p["memory"], p["luts"] / p["utilisation"]["luts"] * results["headroom"]
        fifo, lb = mem["fifos"], mem["line_buffers"]
        rows.append(f"- {name} on {part}: the most folded plan needs {p['luts'] / 1e3:,.0f}k LUTs against "
                    f"{budget / 1e3:,.0f}k allowed: {fifo['luts'] / 1e3:,.0f}k hold the FIFOs between the layers "
                    f"({fifo['bits'] / 1e6:.2f} Mbit), {lb['luts'] / 1e3:,.0f}k the line buffers "
                    f"({lb['bits'] / 1e6:.2f} Mbit), {(p['luts'] - fifo['luts'] - lb['luts']) / 1e3:,.0f}k the "
                    "layers' logic.")
    return rows


def markdown(results: dict) -> str:
    nets = results["networks"]
    r18 = nets["resnet18"]
    lines = ["# Networks bigger than the chip: ResNet-18 and MobileNetV2 (issue 28)", "",
             "Generated by `python benchmarks/big_networks.py`. ImageNet shapes (224 x 224 x 3, 1,000 classes), "
             "random 2-bit VecQ codes (accuracy is not the point), 8-bit activations, io_stream, 200 MHz, "
             f"headroom {results['headroom']:.0%}. Resources are this project's pre-synthesis estimate "
             "(README: how far to trust it), not Vivado results.", "",
             "## 1. The software side", "",
             "| network | weights | MACs / frame | export from PyTorch: wall / CPU | build the integer model "
             "directly | save it (model.yaml + tables) | simulate 8 images | load average |",
             "|---|---|---|---|---|---|---|---|"]
    for name, net in nets.items():
        s = net["software"]
        lines.append(f"| {name} | {s['weights']:,} | {s['macs'] / 1e9:.2f} G | {s['export_s']:.1f} s / "
                     f"{s['export_cpu_s']:.1f} s | {s['build_s']:.1f} s | {s['save_s']:.1f} s | "
                     f"{s['sim_8_images_s']:.1f} s | {', '.join(f'{v:.1f}' for v in s['load_average'])} |")
    lines += ["", "Export: the same networks as PyTorch modules written with our layers "
              "(benchmarks/big_networks_torch.py: VecQ 2-bit convs and dense, BatchNorm, FixedQuant "
              "activations, untrained), traced, quantised, turned into the integer model and checked "
              "against PyTorch on 2 random images (" + ", ".join(
                  f"{name}: {net['software']['export_exact']:.0%} of the outputs exact"
                  for name, net in nets.items()) + "; weight counts "
              + ("equal to" if all(n["software"]["export_weights"] == n["software"]["weights"] for n in nets.values())
                 else "NOT equal to") + " the direct builders'). The rest of this page uses the integer models "
              "`vecq_hw.ir.imagenet` builds directly (random codes, the same shapes). Wall times on a "
              "shared machine (the load average beside them); CPU = user + system of the process."]
    if any(net["software"].get("export_kept") for net in nets.values()):
        lines += ["", "The export figures are an earlier run's (`--keep-export`): not measured again in this run."]
    ff = r18["fit"]["fully_folded"]["xczu9eg"]
    lines += ["", "## 2. Memory: before and after (ResNet-18, fully folded, xczu9eg)", "",
              f"Before (main at 9e41df5, as issue 28 reports it): {BEFORE['bram18']:,} BRAM18 "
              f"({BEFORE['bram18_util']:.0%} of the part): {BEFORE['weighted_layers_bram18']:,} in the weighted "
              f"layers, {BEFORE['adds_bram18']:,} buffering a whole frame on each input of the 8 residual adds "
              "(hls4ml's default stream depth); nothing fit a ZCU102.", "",
              f"After: {ff['bram18']:,.0f} BRAM18 ({ff['utilisation']['bram18']:.0%}), by kind:", ""]
    lines += _memory_table(ff["memory"])
    lines += ["", "The skip FIFOs are as deep as the schedule needs (hls/fifos.py), every other FIFO 2 deep "
              "(1 for a vector); in this fully folded estimate a token is a whole pixel (every channel), so the "
              "shallow FIFOs cost LUTs (shift registers), not BRAM; `fit` slices them (section 3a). The weight ROMs are packed at the best BRAM18/BRAM36 aspect ratio.", "",
              "## 3. `fit` on each part", ""]
    lines += _fit_rows(results)
    lines += ["", "Where a network does not fit, the row is the closest plan (the most folded) and what it exceeds. "
              "GOPS = 2 x MACs x frames/s. `xczu9eg+ddr`: the same part with the codes of ResNet-18's stage 4 and "
              "classifier kept in DDR (`fit --weights LAYER=offchip`, the rest chosen by fit): 76 % of the "
              "weights, read once per output pixel (49 per frame) of each stage-4 conv.", "",
              "Where the LUTs of the plans that do not fit go (the most folded plan; codes moved off chip "
              "free BRAM, not LUTs):", ""]
    lines += _why_not_rows(results)
    lines += ["", "## 3a. Channel-sliced streams: before and after", "",
              "Folding narrows the multipliers, not the streams: with whole-pixel tokens (every channel: up to "
              "1,280 in MobileNetV2) each 2-deep FIFO costs a shift register per bit of its width. `fit` now "
              "gives every io_stream tensor the narrowest pack (k of its C channels a token, k dividing C; "
              "hls/packs.py, `--pack LAYER=K` to set one) that keeps each layer within the plan's II (+ 1/64, "
              "hls/estimate/packed.py SLACK): a pixel of C / k tokens takes C / k cycles to pass, so a layer "
              "slower than that per pixel loses nothing (our line-buffer convs read their input between pixels, "
              "h x w x (C / k - 1) cycles more: the slack). A ReLU or add shares one pack on its inputs and "
              "output (hls4ml's kernels read one pack and write one); hls4ml's own pool (ResNet-18's stem pool) "
              "and vectors keep whole pixels. A plan (reuse factors) keeps its frames/s within 1/64; where the "
              "LUTs saved let `fit` take a faster plan, it does. 'whole pixels' is `fit --no-slicing`:", ""]
    lines += _sliced_rows(results)
    lines += ["", "What remains, after slicing: the line buffers (LUTRAM: each conv's buffer is partitioned into "
              "one bank per channel, hls_templates/nnet_vecq_conv.h, so that an unfolded pixel reads every "
              "channel at once; a bank of (k + 1) x width values of 8 bits is too small for a BRAM18, "
              "hls/costs.py bram_or_lutram; a 1x1 conv keeps two rows too) and the FFs: every folded conv, "
              "depthwise and dense layer holds all its output channels' accumulators (vecq_fold_products). "
              "(The level-table line-buffer convs requantise each output pack as it leaves, "
              "vecq_requant_out, so that a sliced layer holds one pack, not a whole output pixel, in "
              "registers: in MobileNetV2's most folded plan that is 136k FFs fewer, what takes it from 84 % "
              "to 59 % of the ZCU102's FFs (461k to 325k).) What the accumulators and line buffers cost in "
              "the plans above, "
              "and the line buffers with one bank per input the folded loop reads a cycle (the slots' reads, "
              "not the channels'; estimated here, not built):", "",
              "| network | part | FFs | of them accumulators | line buffers as built | with one bank per "
              "input read a cycle |", "|---|---|---|---|---|---|"]
    for name, part, f in _each_fit(results):
        w = f.get("what_remains")
        if w:
            lines.append(f"| {name} | {part} | {w['ffs'] / 1e3:,.0f}k | {w['acc_ffs'] / 1e3:,.0f}k | "
                         f"{w['lb_luts'] / 1e3:,.0f}k LUTs + {w['lb_bram18']} BRAM18 | "
                         f"{w['lb_fewer_banks_luts'] / 1e3:,.0f}k LUTs + {w['lb_fewer_banks_bram18']} BRAM18 |")
    lines += ["", "Output-channel groups (FINN's PE) would keep only a group's accumulators; not built.", "",
              "## 4. The plans `fit` offers, one per halving of frames/s", ""]
    lines += _frontier_rows(results)
    lines += ["", "## 5. C simulation of an ImageNet-size network", ""]
    lines += _csim_rows(results)
    lines += ["", "Measured with `/usr/bin/time -v` around a fresh process each: the build (`vecq_hw.hls.build`, "
              "an empty compiler cache, so the precompiled headers are built too; the C++ compile, link and "
              "synthesis-path type check, 2 jobs), then the C simulation of the images (the build cached, 2 "
              "testbench processes). CPU = user + system of the process tree; peak memory = its largest "
              "process (g++ in the build). The machine is shared: the load average says how many other "
              "processes competed for its 2 cores, so wall times are longer than on an idle machine; CPU "
              "times are not. The synthesis-path type check compiles weight tables longer than 4,096 values by "
              "their first 4,096 (hls/synth_check.py; the rest range-checked in Python).", "",
              "## 6. Published figures", "", PUBLISHED,
              "## 7. What is not verified here", "",
              "No Vivado/Vitis here: the m_axi ports, their bundles and depths, the BIND_STORAGE of the "
              "UltraRAM copies and FIFOs and the DATAFLOW pragmas have only been through g++ (the "
              "`__SYNTHESIS__` type check); burst inference, the AXI adapter's cost and the DDR efficiency "
              "are assumptions of the estimate, and so is how the tool builds the shallow, wide FIFOs and the "
              "line buffers (shift registers, which is what most of the LUTs above are). The DDR bound uses the boards' peak bandwidth "
              "(configs/hardware/parts.yaml)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
