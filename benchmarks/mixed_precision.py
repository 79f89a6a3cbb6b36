"""Learned bit-widths (issue 25): SRQ uniform k = 2, 3, 4 against SRQ with weight widths learned
against the estimated LUTs of uniform 3 bits, and against uniform 3 bits' average weight bits, on a
SHORT budget (minutes per run on 2 shared cores), over several seeds.

    .venv/bin/python benchmarks/mixed_precision.py [--networks lenet5 vgg_small] [--seeds 0 1 2]
        [--train-limit 6000] [--epochs 2] [--reuse-runs]

Networks: a narrow LeNet-5 (8C5-16C5-FC64-FC10) on MNIST and a narrow VGG-small
(16C3-16C3-P-32C3-32C3-P-FC64-FC10, --vgg-stages/--vgg-hidden) on Fashion-MNIST, both with
ap_ufixed<8,3> activations, trained on the first --train-limit training images: 1 float epoch,
then --epochs QAT epochs (each learned run searches its widths from 6 bits down to 2 in all but
the last epoch, then fine-tunes at the frozen widths). Per seed and network five runs: uniform
2, 3 and 4 bits; 'learned_luts' (train.srq.cost luts, budget = that seed's uniform 3-bit
price); 'learned_bits' (cost bits, budget 3.0 average code bits per weight). Every run is
exported (the per-layer check against PyTorch) and its deployed accuracy measured by the
simulator on all 10,000 test images. The LUT price is the HLS estimator's at one folding, fixed
by a frame rate (--fps: every layer's largest reuse that keeps up with it, the same for every
run, io_stream). Each design is also fitted to xc7z020 (``fit``: its own folding search).

Writes benchmarks/results/mixed_precision.md and .json (per-seed rows and mean/std per run). The
pages on main were made by

    python benchmarks/mixed_precision.py --act-learn            # both networks, seeds 0-2, short budget
    python benchmarks/mixed_precision.py --networks lenet5 --seeds 0 1 2 3 4 --train-limit 20000 \
        --epochs 3 --act-learn --out benchmarks/results/mixed_precision_long
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from vecq_hw import ir  # noqa: E402

IO = "io_stream"  # the io type fit picks for these designs (io_parallel: over the FFs unfolded)
RUNS = ("w2", "w3", "w4", "learned_luts", "learned_bits")
ACT_RUN = "learned_luts_act"  # --act-learn: weight AND activation widths against uniform 3 bits' LUTs
BITS_BUDGET = 3.0  # learned_bits: uniform 3 bits' average code bits per weight


def network(name: str, args) -> tuple[dict, str, str]:
    """(model section, dataset, label) of a benchmark network."""
    if name == "lenet5":
        return ({"name": "lenet5", "options": {"conv_channels": [8, 16], "hidden": 64}}, "mnist",
                "narrow LeNet-5 8C5-16C5-FC64-FC10 / MNIST")
    stages = [list(map(int, s.split(","))) for s in args.vgg_stages]
    convs = "-P-".join("-".join(f"{c}C3" for c in st) for st in stages)
    return ({"name": "vgg_small", "options": {"stages": stages, "hidden": args.vgg_hidden}}, "fashion-mnist",
            f"narrow VGG-small {convs}-P-FC{args.vgg_hidden}-FC10 / Fashion-MNIST")


def recipe(net: str, run: str, seed: int, args, lut_budget: float | None) -> dict:
    model, dataset, _ = network(net, args)
    learn = run.startswith("learned")
    srq = {"cost": "bits" if run == "learned_bits" else "luts", "io_type": IO, "fps": args.fps,
           "lut_budget": lut_budget if run in ("learned_luts", ACT_RUN) else None, "act_learn": run == ACT_RUN,
           "bits_budget": BITS_BUDGET if run == "learned_bits" else None, "width_lr": args.width_lr}
    return {
        "format_version": 1, "name": f"srq_{net}_s{seed}_{run}", "model": model,
        "data": {"dataset": dataset, "train_limit": args.train_limit, "test_limit": 2000},
        "quant": {"method": "srq", "bits": 6 if learn else int(run[1:]), "min_bits": 2, "per_channel": True,
                  "learn_bits": learn, "in_type": "ap_ufixed<8,0,AP_RND,AP_SAT>",
                  "act_type": "ap_ufixed<8,3,AP_RND,AP_SAT>", "out_type": "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"},
        "train": {"optimizer": "adam", "lr": 0.002, "qat_lr": 0.001, "weight_decay": 0.0, "batch_size": 64,
                  "float_epochs": 1, "epochs": args.epochs, "lr_schedule": "cosine", "seed": seed, "srq": srq},
    }


def run_one(name: str, rec: dict, work: Path, args) -> dict:
    from vecq_hw.flow import export_run
    from vecq_hw.hls.estimate import estimate, fit
    from vecq_hw.hls.estimate.widths import rate_folding
    from vecq_hw.ir.io import load_model
    from vecq_hw.train import train

    if args.reuse_runs and (work / name / "row.json").exists():  # exported and measured before
        return json.loads((work / name / "row.json").read_text())
    t0 = time.time()
    if args.reuse_runs and (work / name / "metrics.json").exists():  # the recipes are fixed by the arguments
        metrics = json.loads((work / name / "metrics.json").read_text())
    else:
        metrics = train(rec, work / name, progress=False, plot=False, threads=args.threads, overwrite=True)
    t_train = metrics.get("train_time_s", time.time() - t0)
    rep = export_run(work / name, work / f"{name}_model", overwrite=True, eval_limit=10000)
    imodel = load_model(work / f"{name}_model")
    weighted = [layer for layer in imodel.layers if isinstance(layer, ir.Weighted)]
    n_weights = sum(int(layer.codes.size) for layer in weighted)
    reuse = rate_folding(imodel, args.fps, 5.0, IO)
    luts = estimate(imodel, reuse, io_type=IO).total("luts")
    fitted = fit(imodel, "xc7z020", io_type=IO)
    best = fitted.closest
    row = {"name": name, "weight_bits": [layer.bits for layer in weighted],
            "act_bits": [int(layer.out_type.width) for layer in imodel.layers if layer.kind == "relu"],
            "avg_weight_bits": round(sum(layer.bits * int(layer.codes.size) for layer in weighted) / n_weights, 3),
            "est_luts_at_fps": round(luts, 1), "train_s": round(t_train, 1),
            "qat_acc_2000": metrics.get("test_acc"), "deployed_acc_10000": rep.deployed_accuracy,
            "agreement": rep.agreement, "fit_ok": bool(fitted.ok), "fit_luts": round(best.total("luts"), 1),
            "fit_ii": int(best.ii), "fit_over": fitted.over_budget(), "srq_cost": metrics.get("srq_cost"),
            "srq_budget": metrics.get("srq_budget")}
    (work / name / "row.json").write_text(json.dumps(row) + "\n")
    return row


def run_seed(net: str, seed: int, args) -> dict[str, dict]:
    """The five runs of one network and seed; learned_luts' budget is this seed's uniform 3-bit price."""
    rows: dict[str, dict] = {}
    for run in runs(args):
        budget = rows["w3"]["est_luts_at_fps"] if run in ("learned_luts", ACT_RUN) else None
        rows[run] = run_one(f"{net}_s{seed}_{run}", recipe(net, run, seed, args, budget), args.work, args)
        print(json.dumps(rows[run]), flush=True)
    return rows


def _widths(row: dict) -> str:
    """Weight bits per layer, and the ReLU outputs' widths where activation widths were learned."""
    w = "/".join(map(str, row["weight_bits"]))
    return w if not row["name"].endswith(ACT_RUN) else f"{w} (activations {'/'.join(map(str, row['act_bits']))})"


def runs(args) -> tuple[str, ...]:
    return RUNS + ((ACT_RUN,) if args.act_learn else ())


def summary(per_seed: dict[int, dict[str, dict]]) -> dict[str, dict]:
    """Mean and sample standard deviation over the seeds, per run."""
    out = {}
    for run in per_seed[min(per_seed)]:
        rows = [per_seed[s][run] for s in sorted(per_seed)]
        acc = np.array([r["deployed_acc_10000"] for r in rows])
        out[run] = {"acc_mean": float(acc.mean()), "acc_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                    "acc_min": float(acc.min()), "acc_max": float(acc.max()),
                    "est_luts_mean": float(np.mean([r["est_luts_at_fps"] for r in rows])),
                    "avg_bits_mean": float(np.mean([r["avg_weight_bits"] for r in rows])),
                    "fit_luts_mean": float(np.mean([r["fit_luts"] for r in rows])),
                    "train_s_mean": float(np.mean([r["train_s"] for r in rows])),
                    "widths": [_widths(r) for r in rows]}
        if run.startswith("learned"):  # paired by seed: the same data order and initialisation
            for ref in ("w3", "w4"):
                d = acc - np.array([per_seed[s][ref]["deployed_acc_10000"] for s in sorted(per_seed)])
                out[run][f"minus_{ref}"] = {"mean": float(d.mean()), "std": float(d.std(ddof=1)) if len(d) > 1 else 0.0,
                                            "wins": int((d >= 0).sum()), "seeds": len(d)}
    return out


def network_lines(net: str, label: str, per_seed: dict[int, dict[str, dict]], summ: dict) -> list[str]:
    seeds = sorted(per_seed)
    lines = [f"## {label}", "", f"Seeds {', '.join(map(str, seeds))}: mean ± sample std of the deployed accuracy "
             "on all 10,000 test images (min-max in brackets).", "",
             "| run | widths per seed | avg weight bits | est. LUTs @fps | deployed acc | fit xc7z020 LUTs | train s |",
             "|---|---|---|---|---|---|---|"]
    for run, m in summ.items():
        same = len(set(m["widths"])) == 1
        lines.append(f"| {run} | {m['widths'][0] + ' (every seed)' if same else ', '.join(m['widths'])} | {m['avg_bits_mean']:.2f} | {m['est_luts_mean']:,.0f} | "
                     f"{100 * m['acc_mean']:.2f} ± {100 * m['acc_std']:.2f} ({100 * m['acc_min']:.2f}-"
                     f"{100 * m['acc_max']:.2f}) | {m['fit_luts_mean']:,.0f} | {m['train_s_mean']:.0f} |")
    lines += ["", "Learned against uniform, paired by seed (deployed accuracy difference, points; 'ties or wins': "
              "seeds where the learned run is at least as accurate):", ""]
    for run, m in summ.items():
        for ref in ("w3", "w4"):
            if f"minus_{ref}" in m:
                d = m[f"minus_{ref}"]
                lines.append(f"- {run} - {ref}: {100 * d['mean']:+.2f} ± {100 * d['std']:.2f}, ties or wins "
                             f"{d['wins']}/{d['seeds']}; est. LUTs {m['est_luts_mean']:,.0f} vs "
                             f"{summ[ref]['est_luts_mean']:,.0f}")
    lines += ["", "Per seed:", "", "| seed | run | widths | est. LUTs | deployed acc | agreement | fit (LUTs, II, fits) |",
              "|---|---|---|---|---|---|---|"]
    for s in seeds:
        for run, r in per_seed[s].items():
            lines.append(f"| {s} | {run} | {_widths(r)} | {r['est_luts_at_fps']:,.0f} | "
                         f"{r['deployed_acc_10000']:.4f} | {r['agreement']:.4f} | {r['fit_luts']:,.0f}, "
                         f"{r['fit_ii']}, {'yes' if r['fit_ok'] else 'no'} |")
    return lines + [""]


def merged(path: Path, budget: dict, results: dict) -> dict:
    """``results`` plus the other networks already in ``path`` when they ran on the same budget
    (the networks may run as separate processes, one core each)."""
    if not path.exists():
        return results
    old = json.loads(path.read_text())
    same = {k: v for k, v in old.get("budget", {}).items() if k != "seeds"} == \
        {k: v for k, v in budget.items() if k != "seeds"} and old["budget"].get("seeds") == budget["seeds"]
    return {**(old.get("networks", {}) if same else {}), **results}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", nargs="+", default=["lenet5", "vgg_small"], choices=["lenet5", "vgg_small"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--train-limit", type=int, default=6000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--fps", type=float, default=20000.0)
    ap.add_argument("--width-lr", type=float, default=0.1, help="train.srq.width_lr of the learned runs")
    ap.add_argument("--vgg-stages", nargs="+", default=["16,16", "32,32"], help="VGG-small conv widths per stage")
    ap.add_argument("--vgg-hidden", type=int, default=64)
    ap.add_argument("--act-learn", action="store_true", help=f"add the run '{ACT_RUN}'")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reuse-runs", action="store_true",
                    help="keep finished runs (and their measured rows) in --work: same arguments")
    ap.add_argument("--work", type=Path, default=ROOT / "scratch" / "mixed_precision")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "mixed_precision")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = {}
    for net in args.networks:
        per_seed = {seed: run_seed(net, seed, args) for seed in args.seeds}
        results[net] = {"label": network(net, args)[2], "per_seed": per_seed, "summary": summary(per_seed)}
    budget = {"train_limit": args.train_limit, "float_epochs": 1, "qat_epochs": args.epochs, "batch_size": 64,
              "threads": args.threads, "fps": args.fps, "io_type": IO, "width_lr": args.width_lr,
              "bits_budget": BITS_BUDGET, "seeds": args.seeds, "act_learn": args.act_learn}
    results = merged(args.out.with_suffix(".json"), budget, results)
    args.out.with_suffix(".json").write_text(json.dumps({"budget": budget, "networks": results}, indent=2) + "\n")
    lines = ["# Learned bit-widths (SRQ + DropBits, issue 25): short budget, several seeds", "",
             f"{args.train_limit} training images, 1 float + {args.epochs} QAT epochs, batch 64, {args.threads} "
             f"thread(s) on a shared 2-core machine; weights quantised by SRQ, ap_ufixed<8,3> activations. "
             f"Deployed accuracy: the bit-accurate simulator on all 10,000 test images. Est. LUTs: the HLS "
             f"estimator at the folding of {args.fps:,.0f} frames/s at 5 ns ({IO}), the same for every run. "
             f"learned_luts: widths learned against that estimate with uniform 3 bits' price as the budget; "
             f"learned_bits: against the average code bits per weight, budget {BITS_BUDGET}. fit: xc7z020, "
             f"its own folding search. Written by benchmarks/mixed_precision.py.", ""]
    for net in [n for n in ("lenet5", "vgg_small") if n in results]:
        res = results[net]
        lines += network_lines(net, res["label"], res["per_seed"], res["summary"])
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
