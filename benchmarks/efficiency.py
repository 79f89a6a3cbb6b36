"""Efficiency per method: LUTs per MAC, weight memory, GOPS per 1k LUTs (issue 21, item 5).

Reads the yosys measurements other benchmarks stored (no synthesis here):
* benchmarks/results/products.json (benchmarks/products.py): VecQ k = 1..5 and ESB b = 3..5
  (k = b - 2 significant bits) on the folded slot array (4 inputs x 16 outputs, 8-bit
  activations), run-time codes (the kernels' select form) and constant codes (R = 1, the best
  spelling);
* benchmarks/results/alq_native.json (benchmarks/alq_native.py): ALQ's basis-MAC (8-term dot
  products, not the array) and LeNet-5's native weight memory;
* benchmarks/results/pq.json (benchmarks/pq.py): PQ's bits per weight (no LUT/MAC: a PQ layer
  looks products up, it has no MAC to count).
and plans two whole designs with `fit` (pre-synthesis estimates, headroom 80 %): the paper-size
LeNet-5 (2-bit VecQ) on xc7z020 and a ResNet-style net (ir.examples.random_resnet, 2-bit VecQ,
32 x 32 input, 32 and 64 channels) on xczu3eg.

GOPS per 1k LUTs of the product array = 2 ops x 200 MHz / (LUT/MAC) x 1000: every MAC slot does
one MAC a cycle; the array alone (no weight ROM, requantisation or control). 200 MHz is an
assumption; Vivado/Vitis were not run.
Writes benchmarks/results/efficiency.md and efficiency.json.
Usage: python benchmarks/efficiency.py
"""

from __future__ import annotations

import json
from pathlib import Path

from products import fitted, whole_design  # benchmarks/products.py (this script's folder is on sys.path)

from vecq_hw.ir.examples import random_resnet

RESULTS = Path(__file__).resolve().parent / "results"
CLOCK_GHZ = 0.2  # assumed
#: published figures (each with its source; nothing here is measured by us)
PUBLISHED = [
    {"what": "ESB accelerator (Gong et al.)", "figure": "10.95 GOPS per 1k LUTs (peak, no DSPs)",
     "gops_per_klut": 10.95, "platform": "Xilinx ZCU102 (xczu9eg)",
     "source": "Gong et al., Elastic Significant Bit Quantization and Acceleration for Deep Neural Networks, "
               "arXiv:2109.03513, abstract"},
    {"what": "FINN (Umuroglu et al.), binarized networks", "gops_per_klut": None, "platform": "ZC706, < 25 W",
     "figure": "12.3 M classifications/s on MNIST (0.31 us latency, 95.8 %); 21,906 classifications/s on CIFAR-10 "
               "(283 us, 80.1 %); the abstract gives no LUT count, so no GOPS per 1k LUTs",
     "source": "Umuroglu et al., FINN: A Framework for Fast, Scalable Binarized Neural Network Inference, "
               "arXiv:1612.07119, abstract"},
    {"what": "FINN dataflow ResNet-50 (w1a2)", "gops_per_klut": None, "platform": "Alveo U250",
     "figure": "2,000 frames/s max, 2 ms batch-1 latency, 70 W at max frames/s (no LUT count given)",
     "source": "'ResNet50 Dataflow Inference with PYNQ on Alveo', discuss.pynq.io/t/1003 (as cited in "
               "benchmarks/results/big_networks.md)"},
]


def _load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def _row(rows, **kw):
    return next((r for r in rows if all(r.get(k) == v for k, v in kw.items())), None)


def per_mac(lut_per_mac: float | None) -> float | None:
    """GOPS per 1k LUTs of a slot array at CLOCK_GHZ spending ``lut_per_mac`` per MAC slot."""
    return None if lut_per_mac is None else round(2 * CLOCK_GHZ * 1000 / lut_per_mac, 1)


def array_methods(products: dict, alq: dict, pq: dict) -> list[dict]:
    rows = products["rows"]
    out = []

    def add(method, setting, run_time, constant, bits, note=""):
        out.append({"method": method, "setting": setting, "run_time_lut_per_mac": run_time,
                    "constant_lut_per_mac": constant, "weight_bits": bits, "gops_per_klut_run_time": per_mac(run_time),
                    "gops_per_klut_constant": per_mac(constant), "note": note})

    def const(**kw):  # the best spelling measured (select chained, one macc, or the previous kernels')
        c = [r["lut_per_mac"] for r in rows if r["mode"] == "constant" and all(r.get(k) == v for k, v in kw.items())]
        return min(c, default=None)

    for k in range(1, 6):
        rt = _row(rows, table="vecq", bits=k, form="select", mode="run-time")
        add("VecQ", f"k = {k}", rt and rt["lut_per_mac"], const(table="vecq", bits=k), k)
    for b in (3, 4, 5):
        rt = _row(rows, table="esb", bits=b, ks=b - 2, form="select", mode="run-time")
        add("ESB", f"b = {b} (k = {b - 2} significant bits)", rt and rt["lut_per_mac"],
            const(table="esb", bits=b, ks=b - 2), b)
    a = alq["lut_per_mac"]["alq_basis_mac"]
    mem = alq["lenet5"]["memory"]
    add("ALQ", "per basis (native bit-planes)", a["run_time"], a["constant"],
        round((mem["native_plane_bits"] + mem["alpha_bits"]) / mem["n_weights"], 3),
        f"8-term dot products, not the array (alq_native.md); LeNet-5 at {mem['bases_per_weight']:.2f} bases/weight: "
        "bits/weight = planes + alpha tables; a weight with n bases costs n basis-MACs")
    for name, run in pq["runs"].get("lenet5", {}).items():
        if run.get("method") == "pq":
            add("PQ", name, None, None, round(run["bits_per_weight"], 3),
                "LeNet-5 (pq.md); products are looked up, no MAC: no LUT/MAC")
    return out


def designs() -> list[dict]:
    lenet = whole_design()
    resnet = fitted(random_resnet(2, size=32, channels=(32, 64), name="resnet_style"), "xczu3eg")
    return [{**lenet, "what": "paper-size LeNet-5 (32C5-64C5-FC512-FC10), 2-bit VecQ"},
            {**resnet, "what": "ResNet-style (random_resnet: stem, identity block, stride-2 projection block, GAP, "
                               "dense; 32 x 32 x 1, 32/64 channels), 2-bit VecQ"}]


def _f(v, fmt="{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def markdown(result: dict) -> str:
    out = ["# Efficiency per method (issue 21)\n",
           "Generated by `python benchmarks/efficiency.py` from products.json, alq_native.json and pq.json, "
           "and `fit`.\n",
           "**Read this first.** LUT/MAC are yosys `synth_xilinx -family xc7 -nodsp` technology-mapping counts "
           "(not Vivado); whole-design LUTs and frames/s are this project's pre-synthesis estimates; 200 MHz is an "
           "assumption; Vivado/Vitis were not run. GOPS = 2 ops per MAC.\n",
           "## Product arrays\n",
           f"Array: {result['array']['m']} inputs x {result['array']['n']} outputs, {result['array']['w']}-bit "
           "activations (products.md). GOPS per 1k LUTs of the array alone = 2 x 0.2 GHz x 1000 / (LUT/MAC). "
           "Constant codes: the best spelling products.md measured (R = 1 layers go to the distributed-arithmetic "
           "strategy: da4ml's adder graph, da_strategy.md).\n",
           "| method | setting | LUT/MAC run-time codes | LUT/MAC constant codes (R = 1) | weight bits / weight | "
           "GOPS/1k LUTs run-time | GOPS/1k LUTs constant | note |", "|---|---|---|---|---|---|---|---|"]
    for r in result["methods"]:
        out.append(f"| {r['method']} | {r['setting']} | {_f(r['run_time_lut_per_mac'])} | "
                   f"{_f(r['constant_lut_per_mac'])} | {r['weight_bits']} | {_f(r['gops_per_klut_run_time'])} | "
                   f"{_f(r['gops_per_klut_constant'])} | {r['note']} |")
    out += ["", "## Whole fitted designs (`vecq-hw fit`, headroom 80 %, 200 MHz assumed)\n",
            "| design | part | plan (R per layer) | fits | LUTs | frames/s | MACs/frame | GOPS | GOPS per 1k LUTs |",
            "|---|---|---|---|---|---|---|---|---|"]
    for d in result["designs"]:
        out.append(f"| {d['what']} | {d['part']} | {d['reuse']} | {'yes' if d['fits'] else 'no'} | {d['luts']:,.0f} | "
                   f"{d['fps']:,.0f} | {d['macs_per_frame']:,} | {d['gops']} | **{d['gops_per_klut']}** |")
    lenet = result["designs"][0]
    b = lenet["before_overlap"]
    out += ["", f"LeNet-5 before each conv pixel's requantisation overlapped the next pixel's products "
            f"(main ca90dc3, plan conv1 5, conv2 32, fc1 12544, fc2 5120): {b['luts']:,} LUTs, {b['fps']:,} frames/s, "
            f"{b['gops_per_klut']} GOPS per 1k LUTs (conv2 then took 196 pixels x (32 product + 32 requantisation + "
            "3 fill cycles) + 196 input cycles = 13,328 cycles a frame). Cycle counts are the kernels' loop trips "
            "(nnet_vecq_fold.h, vecq_fold_row), not co-simulation."]
    out += ["", "The whole design spends LUTs beyond the product array: weight ROMs in LUTRAM, requantisation, "
            "pooling, line buffers, FIFOs and control; its GOPS per 1k LUTs is therefore below the array's.\n",
            "## Published figures (cited, not measured here)\n", "| what | platform | figure | source |",
            "|---|---|---|---|"]
    out += [f"| {p['what']} | {p['platform']} | {p['figure']} | {p['source']} |" for p in result["published"]]
    out += ["", "The ESB figure is a peak on a larger part (ZCU102) for its own accelerator; ours is a whole "
            "LeNet-5 pipeline on an xc7z020, estimated: the comparison is indicative, not like for like.", ""]
    return "\n".join(out)


def main():
    products = _load("products.json")
    methods = array_methods(products, _load("alq_native.json"), _load("pq.json"))
    result = {"array": products["array"], "methods": methods,
              "designs": designs(), "published": PUBLISHED, "clock_ghz_assumed": CLOCK_GHZ}
    (RESULTS / "efficiency.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    (RESULTS / "efficiency.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
