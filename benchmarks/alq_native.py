"""ALQ in its native form (issue 21 item 3): weight memory, bit-exactness, LUTs per basis-MAC.

    .venv/bin/python benchmarks/alq_native.py                      # the default budget (tens of minutes)
    .venv/bin/python benchmarks/alq_native.py --reuse-runs         # keep trained runs in --work

1. LUTs per MAC (yosys ``synth_xilinx -family xc7 -nodsp`` technology-mapping counts, not Vivado
   post-route; 8-bit signed activations; dot products of 8 terms; LUT cells / 8), each form proved
   equal to its function by yosys SAT:
   * ALQ's basis-MAC as ``nnet_vecq_alq.h`` writes it (the XOR form of +-x, the -1 signs' ulps
     preloaded): run-time signs (R > 1, from the plane ROM) and constant signs (R = 1);
   * VecQ at 1 bit in our kernels' form (``calibrate.kernel_lut_per_mac``, the named odd table);
   * the previous ALQ deployment: 8-bit codes of the 'int' table, a multiplier per MAC.
2. LeNet-5 as ``configs/lenet5_mnist_alq.yaml`` (32C5-64C5-FC512-FC10, max 3 bases per group)
   at 0.4 bases/weight, trained by ``vecq-hw train``'s ALQ procedure on a SHORT budget (below):
   exported (native kinds), weight memory before (8-bit codes) and after (bit-planes + alphas)
   against the run's own count sum_g I_g x fan-in; the HLS project with the folding ``fit``
   chooses for xc7z020, C-simulated on --csim-images MNIST test images against the simulator.
   Fully unrolled RTL of LeNet-5 is beyond the RTL path's size budget (reported); the RTL
   simulation runs on an ALQ MLP 784-32-10 trained the same way, on 2,000 MNIST test images.

Writes benchmarks/results/alq_native.md and .json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vecq_hw import ir  # noqa: E402
from vecq_hw.ir.levels import named_levels  # noqa: E402


def lut_table() -> dict:
    """LUTs per MAC of the three forms at w = 8, n = 8 (module docstring), with their SAT proofs."""
    from vecq_hw.hls.estimate.alq_form import basis_lut_per_mac, prove_basis_form
    from vecq_hw.hls.estimate.calibrate import kernel_lut_per_mac, prove_kernel_form

    odd1, int8 = named_levels("odd", 1), named_levels("int", 8)
    return {
        "alq_basis_mac": {"run_time": basis_lut_per_mac(8), "constant": basis_lut_per_mac(8, constant=True),
                          "proved": prove_basis_form()},
        "vecq_1bit": {"run_time": kernel_lut_per_mac(odd1, 1), "constant": kernel_lut_per_mac(odd1, 1, constant=True),
                      "proved": prove_kernel_form(odd1, 1)},
        "alq_8bit_codes_before": {"run_time": kernel_lut_per_mac(int8, 8),
                                  "constant": kernel_lut_per_mac(int8, 8, constant=True),
                                  "proved": prove_kernel_form(int8, 8, w=4, n=1)},
    }


def recipe(network: str, args) -> dict:
    """configs/lenet5_mnist_alq.yaml at --target bases/weight on the short budget (an MLP
    784-32-10 for the RTL cell)."""
    import yaml

    rec = yaml.safe_load((ROOT / "configs" / "lenet5_mnist_alq.yaml").read_text())
    rec["quant"]["target_bits"] = args.target
    rec["data"].update(train_limit=args.train_limit, test_limit=args.csim_images)
    rec["train"].update(float_epochs=args.float_epochs, epochs=args.epochs, seed=0)
    rec["train"]["alq"] = {"loss_aware_epochs": max(1, args.epochs // 2), "prune_every": args.prune_every}
    if network == "mlp":
        rec["name"], rec["model"] = "mlp_mnist_alq", {"name": "mlp", "options": {"hidden": [32]}}
    return rec


def train_and_export(network: str, args) -> tuple:
    """(run dir, exported integer model, export report, the run's native bits sum_g I_g x fan-in)."""
    from vecq_hw.flow import export_run
    from vecq_hw.ir.io import load_model
    from vecq_hw.train import load_run, train

    run = args.work / f"{network}_run"
    if not (args.reuse_runs and (run / "model.pt").is_file()):
        train(recipe(network, args), run, overwrite=True, plot=False)
    model, _ = load_run(run)
    native = sum(int(np.sum(m.weight_quant.counts)) * m.weight[0].numel() for m in model.modules()
                 if getattr(m, "weight_quant", None) is not None and m.weight_quant.counts is not None)
    rep = export_run(run, args.work / f"{network}_model", overwrite=True, eval_limit=args.csim_images)
    return run, load_model(args.work / f"{network}_model"), rep, native


def memory(imodel, rep, native: int) -> dict:
    t = rep.memory["total"]
    n = t["n_weights"]
    before = 8 * n  # the previous deployment: 8-bit codes of the 'int' table
    return {"n_weights": n, "bases_per_weight": t["code_bits"] / n, "before_8bit_code_bits": before,
            "native_plane_bits": t["code_bits"], "alpha_bits": t["alpha_bits"],
            "scale_bias_bits": t["scale_bias_bits"], "run_native_count": native,
            "planes_equal_run_count": t["code_bits"] == native, "ratio_before_over_native": before / t["code_bits"],
            "layers": [{k: r[k] for k in ("name", "kind", "n_weights", "bases", "code_bits", "alpha_bits")}
                       for r in rep.memory["layers"]]}


def lenet_csim(imodel, args) -> dict:
    """The fitted HLS design of LeNet-5, C-simulated on MNIST test images against the simulator."""
    from vecq_hw.data import load_dataset
    from vecq_hw.flow.inputs import images_to_inputs
    from vecq_hw.hls import HlsOptions, csim, write_project
    from vecq_hw.hls.estimate import fit
    from vecq_hw.sim import simulate

    f = fit(imodel, "xc7z020")
    plan = f.plan or f.closest
    images, labels = load_dataset("mnist", "test", limit=args.csim_images)
    x = imodel.input.out_type.from_float(images_to_inputs(images, imodel)).astype(np.int64)
    y = simulate(imodel, x_mantissa=x).output
    t0 = time.perf_counter()
    prj = write_project(imodel, args.work / "lenet_hls", HlsOptions(io_type="io_parallel", reuse=plan.reuse()),
                        expected=(x, y), overwrite=True)
    out = csim(prj, progress="lines")
    return {"images": int(out.n), "mismatches": int(out.mismatches), "value_mismatches": int(out.value_mismatches),
            "seconds": round(time.perf_counter() - t0, 1), "reuse": plan.reuse(), "fits_xc7z020": f.ok,
            "estimate": {"luts": round(plan.total("luts")), "bram18": plan.total("bram18"), "dsps": plan.total("dsps"),
                         "fps_at_200MHz": round(plan.fps)},
            "deployed_accuracy": float(np.mean(y.reshape(len(labels), -1).argmax(1) == labels))}


def plain_interp_mismatches(mlp, x: np.ndarray) -> int:
    """The MLP's first layer rebuilt as a plain ``dense`` layer (2-bit codes, levels -1/0/+1: the
    same multipliers d, where every channel has at most one basis of alpha 1) with the same
    constants: da4ml's interpreter against the simulator on ``x``. Non-zero: the interpreter's
    discrepancy predates ALQ's kinds."""
    from vecq_hw.rtl import trace_model

    a = mlp.layers[1]
    d = a.multipliers()
    if np.abs(d).max() > 1:
        return -1  # not expressible with these levels
    # code c stands for levels[c + 2]: d = -1, 0, +1 are the codes -2, -1, 0
    dense = ir.Dense(name="fc", out_type=a.out_type, bits=2, levels=np.array([-1, 0, 1, 0]),
                     codes=(d - 1).astype(np.int8), scale=a.scale.copy(), scale_type=a.scale_type,
                     bias=a.bias.copy(), bias_type=a.bias_type, accum_type=a.accum_type)
    sub = ir.Model(name="plain", layers=[mlp.layers[0], dense]).check()
    got = trace_model(sub).comb.predict(np.ldexp(x.astype(np.float64), -sub.input.out_type.frac), n_threads=1)
    return int((np.ldexp(got, sub.output_type.frac) != simulate_model(sub, x)).sum())


def simulate_model(model, x):
    from vecq_hw.sim import simulate

    return simulate(model, x_mantissa=x).output


def rtl_cells(lenet, mlp, args) -> dict:
    """LeNet-5: the RTL path's size budget (fully unrolled); the MLP: Verilator vs the simulator."""
    from vecq_hw import rtl
    from vecq_hw.data import load_dataset
    from vecq_hw.flow import simulate_rtl
    from vecq_hw.flow.inputs import images_to_inputs
    from vecq_hw.rtl.options import RtlOptions

    out = {"lenet5_adder_bits_estimate": int(rtl.estimate_adder_bits(lenet)),
           "rtl_budget_adder_bits": RtlOptions().max_adder_bits}
    images, _ = load_dataset("mnist", "test", limit=2000)
    x = mlp.input.out_type.from_float(images_to_inputs(images, mlp)).astype(np.int64)
    prj = rtl.write(mlp, args.work / "mlp_rtl", RtlOptions(latency_cutoff=0), overwrite=True)
    r = simulate_rtl(prj, x)
    out.update(mlp_inputs=int(r.n), mlp_rtl_mismatches=int(r.rtl_mismatches),
               mlp_interp_mismatches=int(r.interp_mismatches), mlp_verilator_build_s=round(r.build.seconds, 1),
               plain_dense_interp_mismatches=plain_interp_mismatches(mlp, x))
    return out


def write(args, res: dict) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "alq_native.json").write_text(json.dumps(res, indent=1))
    lut, mem, cs, rt = res["lut_per_mac"], res["lenet5"]["memory"], res["lenet5"]["csim"], res["rtl"]
    lines = ["# ALQ in its native form (issue 21 item 3)", "",
             f"Written by benchmarks/alq_native.py ({' '.join(res['argv']) or 'default options'}). "
             f"Budget: {res['budget']}.", "",
             "## LUTs per MAC (yosys synth_xilinx -family xc7 -nodsp, 8-bit signed activations, 8-term dot "
             "products, LUT cells / 8; mapping counts, not Vivado post-route)", "",
             "| form | run-time weights (R > 1) | constant weights (R = 1) | SAT-proved |", "|---|---|---|---|"]
    names = {"alq_basis_mac": "ALQ native: one basis-MAC (+-x, XOR form)", "vecq_1bit": "VecQ 1 bit (our kernels' form)",
             "alq_8bit_codes_before": "ALQ before: 8-bit codes, a multiplier"}
    for key, row in lut.items():
        lines.append(f"| {names[key]} | {row['run_time']:.1f} | {row['constant']:.1f} | {row['proved']} |")
    lines += ["", f"ALQ per basis vs VecQ 1 bit: {lut['alq_basis_mac']['run_time']:.1f} vs "
              f"{lut['vecq_1bit']['run_time']:.1f} (run-time), {lut['alq_basis_mac']['constant']:.1f} vs "
              f"{lut['vecq_1bit']['constant']:.1f} (constant). A weight of a channel with n_j bases costs n_j "
              "basis-MACs, plus per output n_j alpha products (once per output, not per weight).", "",
             "## LeNet-5 at 0.4 bases/weight", "",
             f"{mem['n_weights']:,} weights, {mem['bases_per_weight']:.3f} bases/weight stored.", "",
             "| weight memory | bits |", "|---|---|",
             f"| before: 8-bit codes | {mem['before_8bit_code_bits']:,} |",
             f"| native: bit-planes (n_j bits per weight) | {mem['native_plane_bits']:,} |",
             f"| native: alpha tables | {mem['alpha_bits']:,} |",
             f"| the run's count sum_g I_g x fan-in | {mem['run_native_count']:,} |",
             f"| per-channel scale + bias (both forms) | {mem['scale_bias_bits']:,} |", "",
             f"Planes = the run's native count: {mem['planes_equal_run_count']}; before / native = "
             f"{mem['ratio_before_over_native']:.1f}x.", "",
             f"C simulation of the HLS project (folding by `fit` for xc7z020: {cs['reuse']}; estimate "
             f"{cs['estimate']['luts']:,} LUTs, {cs['estimate']['bram18']} BRAM18, {cs['estimate']['dsps']} DSPs, "
             f"{cs['estimate']['fps_at_200MHz']:,} frames/s at 200 MHz, pre-synthesis; fits: {cs['fits_xc7z020']}): "
             f"{cs['images']} MNIST test images, {cs['mismatches']} mismatches ({cs['value_mismatches']} values) against "
             f"the simulator, {cs['seconds']} s. Deployed accuracy on them: {100 * cs['deployed_accuracy']:.1f} % "
             "(short training budget, not a converged number).", "",
             "## RTL", "",
             f"LeNet-5 fully unrolled: {rt['lenet5_adder_bits_estimate']:,} adder bits estimated, above the RTL path's "
             f"budget of {rt['rtl_budget_adder_bits']:,}: not traced. ALQ MLP 784-32-10 (same procedure and budget): "
             f"Verilator RTL on {rt['mlp_inputs']} MNIST test images, {rt['mlp_rtl_mismatches']} mismatches; da4ml's "
             f"interpreter {rt['mlp_interp_mismatches']} (build {rt['mlp_verilator_build_s']} s)."]
    if rt["mlp_interp_mismatches"]:
        lines += ["", "The Verilated RTL is exact; da4ml's interpreter (its software execution of the same traced "
                  "graph) is not, on this model. The MLP's first layer rebuilt as a plain `dense` layer (levels "
                  "-1/0/+1, the same multipliers and constants, traced by the existing dense op): "
                  f"{rt.get('plain_dense_interp_mismatches', 'n/a')} interpreter mismatches on the same images, so "
                  "the discrepancy predates the ALQ kinds."]
    (args.out / "alq_native.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", type=float, default=0.4, help="average bases per weight")
    ap.add_argument("--train-limit", type=int, default=8000)
    ap.add_argument("--float-epochs", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=2, help="ALQ epochs: half loss-aware with pruning, half STE")
    ap.add_argument("--prune-every", type=int, default=6)
    ap.add_argument("--csim-images", type=int, default=1000)
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "alq_native")
    ap.add_argument("--reuse-runs", action="store_true", help="keep trained runs found in --work")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--render", action="store_true", help="only rewrite the .md from --out/alq_native.json")
    args = ap.parse_args(argv)
    if args.render:
        return write(args, json.loads((args.out / "alq_native.json").read_text()))
    args.work.mkdir(parents=True, exist_ok=True)
    budget = (f"ALQ procedure of `vecq-hw train` on the first {args.train_limit} MNIST training images: "
              f"{args.float_epochs} float epoch(s), {args.epochs} ALQ epoch(s) (loss-aware with a pruning round every "
              f"{args.prune_every} steps, then STE), batch 128, seed 0")
    res = {"budget": budget, "argv": list(sys.argv[1:] if argv is None else argv), "lut_per_mac": lut_table()}
    print(json.dumps(res["lut_per_mac"]), flush=True)
    _, lenet, rep, native = train_and_export("lenet5", args)
    res["lenet5"] = {"memory": memory(lenet, rep, native), "qat_accuracy": rep.qat_accuracy,
                     "deployed_accuracy_export": rep.deployed_accuracy, "equivalence": rep.equivalence}
    res["lenet5"]["csim"] = lenet_csim(lenet, args)
    print(json.dumps(res["lenet5"]["csim"]), flush=True)
    _, mlp, _, _ = train_and_export("mlp", args)
    res["rtl"] = rtl_cells(lenet, mlp, args)
    write(args, res)


if __name__ == "__main__":
    main()
