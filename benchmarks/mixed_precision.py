"""Learned bit-widths (issue 25): SRQ uniform k = 2, 3, 4 against SRQ with weight widths learned
against the estimated LUTs of uniform 3 bits, on a SHORT budget (minutes on 2 shared cores).

    .venv/bin/python benchmarks/mixed_precision.py [--train-limit 6000] [--epochs 2] [--reuse-runs]

A narrow LeNet-5 (8C5-16C5-FC64-FC10, ap_ufixed<8,3> activations) on the first --train-limit
MNIST training images: 1 float epoch, then --epochs QAT epochs (each learned run, one per
--width-lr, searches its widths from 6 bits down to 2 in all but the last epoch, then
fine-tunes at the frozen widths). Every run is exported
(the per-layer check against PyTorch) and its deployed accuracy measured by the simulator on
all 10,000 MNIST test images. The LUT price is the HLS estimator's at one folding, fixed by a
frame rate (--fps: every layer's largest reuse that keeps up with it, the same for every run,
io_stream); the learned runs' budget is the uniform 3-bit run's price at that folding. Each
design is also fitted to xc7z020 (``fit``: its own folding search).

Writes benchmarks/results/mixed_precision.md and .json.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vecq_hw import ir  # noqa: E402

IO = "io_stream"  # the io type fit picks for these designs (io_parallel: over the FFs unfolded)


def recipe(bits: int, learn: bool, args, budget: float | None, width_lr: float = 0.1) -> dict:
    return {
        "format_version": 1, "name": f"srq_{f'learned_lr{width_lr}' if learn else f'w{bits}'}",
        "model": {"name": "lenet5", "options": {"conv_channels": [8, 16], "hidden": 64}},
        "data": {"dataset": "mnist", "train_limit": args.train_limit, "test_limit": 2000},
        "quant": {"method": "srq", "bits": bits, "min_bits": 2, "per_channel": True, "learn_bits": learn,
                  "in_type": "ap_ufixed<8,0,AP_RND,AP_SAT>", "act_type": "ap_ufixed<8,3,AP_RND,AP_SAT>",
                  "out_type": "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"},
        "train": {"optimizer": "adam", "lr": 0.002, "qat_lr": 0.001, "weight_decay": 0.0, "batch_size": 64,
                  "float_epochs": 1, "epochs": args.epochs, "lr_schedule": "cosine", "seed": 0,
                  "srq": {"cost": "luts", "io_type": IO, "fps": args.fps, "lut_budget": budget, "width_lr": width_lr}},
    }


def run_one(name: str, rec: dict, work: Path, args) -> dict:
    from vecq_hw.flow import export_run
    from vecq_hw.hls.estimate import estimate, fit
    from vecq_hw.hls.estimate.widths import rate_folding
    from vecq_hw.ir.io import load_model
    from vecq_hw.train import train

    t0 = time.time()
    if args.reuse_runs and (work / name / "metrics.json").exists():  # the recipes are fixed by the arguments
        metrics = json.loads((work / name / "metrics.json").read_text())
    else:
        metrics = train(rec, work / name, progress=False, plot=False, threads=args.threads, overwrite=True)
    t_train = metrics.get("train_time_s", time.time() - t0)
    rep = export_run(work / name, work / f"{name}_model", overwrite=True, eval_limit=10000)
    imodel = load_model(work / f"{name}_model")
    reuse = rate_folding(imodel, args.fps, 5.0, IO)
    luts = estimate(imodel, reuse, io_type=IO).total("luts")
    fitted = fit(imodel, "xc7z020", io_type=IO)
    best = fitted.closest
    return {"name": name, "weight_bits": [layer.bits for layer in imodel.layers if isinstance(layer, ir.Weighted)],
            "est_luts_at_fps": round(luts, 1), "train_s": round(t_train, 1),
            "qat_acc_2000": metrics.get("test_acc"), "deployed_acc_10000": rep.deployed_accuracy,
            "agreement": rep.agreement, "fit_ok": bool(fitted.ok), "fit_luts": round(best.total("luts"), 1),
            "fit_ii": int(best.ii), "fit_over": fitted.over_budget(), "srq_cost": metrics.get("srq_cost"), "srq_budget": metrics.get("srq_budget")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-limit", type=int, default=6000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--fps", type=float, default=20000.0)
    ap.add_argument("--width-lr", type=float, nargs="+", default=[0.1, 0.03],
                    help="train.srq.width_lr of each learned run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reuse-runs", action="store_true", help="keep finished runs in --work (same arguments)")
    ap.add_argument("--work", type=Path, default=ROOT / "scratch" / "mixed_precision")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = [run_one(f"w{k}", recipe(k, False, args, None), args.work, args) for k in (2, 3, 4)]
    budget = rows[1]["est_luts_at_fps"]
    for lr in args.width_lr:
        rows.append(run_one(f"learned_lr{lr}", recipe(6, True, args, budget, lr), args.work, args))
    out = {"budget": {"train_limit": args.train_limit, "float_epochs": 1, "qat_epochs": args.epochs,
                      "batch_size": 64, "threads": args.threads, "fps": args.fps, "io_type": IO},
           "lut_budget_learned": budget, "rows": rows}
    res = ROOT / "benchmarks" / "results"
    (res / "mixed_precision.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = ["# Learned bit-widths (SRQ + DropBits, issue 25): short budget", "",
             f"Narrow LeNet-5 8C5-16C5-FC64-FC10, ap_ufixed<8,3> activations; {args.train_limit} MNIST training "
             f"images, 1 float + {args.epochs} QAT epochs, batch 64, {args.threads} thread(s) on a shared 2-core "
             f"machine. Deployed accuracy: the simulator on all 10,000 test images. Est. LUTs: the HLS "
             f"estimator at the folding of {args.fps:,.0f} frames/s at 5 ns ({IO}), the same for every run; the "
             f"learned run's budget = uniform 3 bits' price ({budget:,.0f}). fit: xc7z020, its own folding search.",
             "", "| run | weight bits per layer | est. LUTs @fps | deployed acc | agreement | fit xc7z020 (LUTs, II, fits) | train s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {'/'.join(map(str, r['weight_bits']))} | {r['est_luts_at_fps']:,.0f} | "
                     f"{r['deployed_acc_10000']:.4f} | {r['agreement']:.4f} | {r['fit_luts']:,.0f}, {r['fit_ii']}, "
                     f"{'yes' if r['fit_ok'] else 'no'} | {r['train_s']} |")
    (res / "mixed_precision.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
