"""Product quantisation (issue 24, Stock et al. ICLR 2020): accuracy, size, hardware, bit-exactness.

    .venv/bin/python benchmarks/pq.py                       # the default budget (about an hour on 2 cores)
    .venv/bin/python benchmarks/pq.py --networks lenet5 --csim-images 1000

1. ResNet-18 / ResNet-50 sizes from their layer shapes alone (``vecq_hw.quant.pq_size``) next to
   the paper's Table 1 (1.54 / 1.03 MB and 5.09 / 3.19 MB).
2. Per network (LeNet-5 / MNIST, VGG-small / Fashion-MNIST, the ResNet-style net with 16 channels /
   Fashion-MNIST): a float model trained once (--float-epochs over all 60k images, Adam, cosine,
   cached in --work), then from it
   * PQ at several (d, K): activation-weighted EM on --samples training images, layer by layer
     with the quantised ones in place (``train.pq_steps.quantize_layers``, --iterations rounds),
     then codeword fine-tuning by distillation from the float model (``CodebookTuner``) for
     --ft-epochs over the first --train-limit images (Adam --ft-lr; biases and BatchNorm trained
     by the same Adam) -- the steps ``vecq-hw train``'s PQ procedure runs;
   * VecQ (adaptive step) at 1 and 2 bits: QAT for the same epochs on the same images.
   Deployed accuracy: each model exported (``flow.export_torch``) and the integer model run by
   the bit-accurate simulator on ALL 10k test images. Bits per weight: the stored weight bits
   (PQ: indices + integer codebooks; VecQ: k) / weights; per-channel scale and bias are the same
   for both and listed apart. LUT / BRAM18 / DSP: the pre-synthesis estimate
   (``hls.estimate``) of every model of a network at ONE folding plan, the one ``fit`` chooses for
   1-bit VecQ on xc7z020 (io_parallel), so the designs run at the same throughput; the PQ layers
   are built in the form their estimate prefers (lookup / codebook-first), listed per layer.
3. The LeNet-5 PQ model at <= 1 bit/weight: its HLS project at that plan, C-simulated on
   --csim-images MNIST test images against the simulator.

Everything is one seed (0) on 2 shared CPU cores, one torch thread: a short budget, not the
paper's. Writes benchmarks/results/pq.md and .json (after every run; a rerun skips finished runs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from accuracy import BATCH, SEED, TYPES, _fit, _train_cfg  # noqa: E402

from vecq_hw.data import load_dataset, make_loader, to_tensors  # noqa: E402
from vecq_hw.flow import export_torch, predict_sim, predict_torch  # noqa: E402
from vecq_hw.ir.io import load_model, weight_memory_report  # noqa: E402
from vecq_hw.models import build_model  # noqa: E402
from vecq_hw.quant.pq_size import NETWORKS as PAPER_NETS, PAPER, REGIMES, pq_size  # noqa: E402
from vecq_hw.train import _epoch_seed, _make_optimizer, _train_one_epoch, evaluate  # noqa: E402
from vecq_hw.train.pq_steps import CodebookTuner, distillation_loss, frozen_copy, pq_layers, quantize_layers  # noqa: E402

#: network -> (architecture, dataset, builder options, {run: PQ options}); VecQ runs at 1 and 2 bits
PQ_BASE = {"method": "pq", "bits": 8}
NETWORKS = {
    "lenet5": ("lenet5", "mnist", {}, {
        "pq_d5_d16": {"block": 5, "block_linear": 16, "codewords": 256, "codewords_linear": 256},
        "pq_d5_d8_k128": {"block": 5, "block_linear": 8, "codewords": 256, "codewords_linear": 128},
        "pq_d5_d4": {"block": 5, "block_linear": 4, "codewords": 256, "codewords_linear": 256}}),
    "vgg_small": ("vgg_small", "fashion-mnist", {}, {
        "pq_d9_d16": {"block": 9, "block_linear": 16, "codewords": 256, "codewords_linear": 256},
        "pq_d9_d8_k128": {"block": 9, "block_linear": 8, "codewords": 256, "codewords_linear": 128},
        "pq_d9_d4": {"block": 9, "block_linear": 4, "codewords": 256, "codewords_linear": 256}}),
    "resnet_small": ("resnet_small", "fashion-mnist", {"channels": 16}, {
        "pq_d9_pw8_d8": {"block": 9, "block_pointwise": 8, "block_linear": 8, "codewords": 256},
        "pq_d9_pw4_d4": {"block": 9, "block_pointwise": 4, "block_linear": 4, "codewords": 256}}),
}
VECQ_BITS = (1, 2)
PART = "xc7z020"


# ----------------------------------------------------------------------------- training

def float_model(net: str, args) -> tuple[torch.nn.Module, dict]:
    """The float model of ``net`` (trained once, cached in --work) and its record."""
    arch, dataset, opts, _ = NETWORKS[net]
    path = args.work / f"{net}_float_e{args.float_epochs}.pt"
    if not path.exists():
        print(f"[{net}] float training, {args.float_epochs} epoch(s) on 60000 images ...", flush=True)
        torch.manual_seed(SEED)
        model = build_model(arch, weight_quant=None, **TYPES, **opts)
        dt = _fit(model, *to_tensors(*load_dataset(dataset, "train")), args.float_epochs, args.float_lr)
        args.work.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": model.state_dict(), "train_s": round(dt, 1)}, path)
    return torch.load(path, weights_only=True)


def pq_run(net: str, cfg: dict, ckpt: dict, train_xy, args) -> tuple[torch.nn.Module, dict]:
    """EM on --samples images, then --ft-epochs of codeword fine-tuning by distillation."""
    arch, _, opts, _ = NETWORKS[net]
    torch.manual_seed(SEED)
    model = build_model(arch, weight_quant={**PQ_BASE, **cfg, "iterations": args.iterations}, **TYPES, **opts)
    model.load_state_dict(ckpt["state_dict"])
    teacher = frozen_copy(model)
    x, y = train_xy
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SEED))[:args.samples].sort().values
    t0 = time.perf_counter()
    em = quantize_layers(model, x[order])
    t_em = time.perf_counter() - t0
    tuner = CodebookTuner(model, args.ft_lr)
    skip = {id(m.weight) for m in pq_layers(model).values()}
    params = [p for p in model.parameters() if id(p) not in skip]
    ds = torch.utils.data.TensorDataset(x, y)
    opt, sched = _make_optimizer(_train_cfg(args.ft_lr), model, args.ft_lr, -(-len(ds) // BATCH), args.ft_epochs,
                                 params)
    t0 = time.perf_counter()
    for e in range(args.ft_epochs):
        _train_one_epoch(model, make_loader(ds, BATCH, shuffle=True, seed=_epoch_seed(SEED, e)), opt, sched,
                         desc="", progress=False, before_step=tuner.clear_gradients, after_step=tuner.step,
                         loss_fn=distillation_loss(teacher))
    return model, {"em_s": round(t_em, 1), "em_layers": em, "finetune_s": round(time.perf_counter() - t0, 1)}


def vecq_run(net: str, bits: int, ckpt: dict, train_xy, args) -> tuple[torch.nn.Module, dict]:
    arch, _, opts, _ = NETWORKS[net]
    torch.manual_seed(SEED)
    model = build_model(arch, weight_quant={"method": "vecq", "bits": bits, "adaptive": True}, **TYPES, **opts)
    model.load_state_dict(ckpt["state_dict"])
    dt = _fit(model, *train_xy, args.ft_epochs, args.ft_lr)
    return model, {"finetune_s": round(dt, 1)}


# ----------------------------------------------------------------------------- deployment

def deploy(model, test, folder: Path) -> tuple:
    """(integer model, record): exported (saved in ``folder``), run by the simulator on every test image."""
    from vecq_hw.ir.io import save_model

    images, labels = test
    model.eval()
    q = predict_torch(model, images)
    t0 = time.perf_counter()
    imodel = export_torch(model)
    save_model(imodel, folder, overwrite=True)
    d = predict_sim(imodel, images)
    mem = weight_memory_report(imodel)["total"]
    return imodel, {"deployed_acc": float(np.mean(d == labels)), "torch_acc": float(np.mean(q == labels)),
                    "agreement": float(np.mean(q == d)), "n_test": int(len(labels)),
                    "bits_per_weight": mem["code_bits"] / mem["n_weights"],
                    "compression": 32 * mem["n_weights"] / mem["code_bits"], "n_weights": mem["n_weights"],
                    "code_bits": mem["code_bits"], "scale_bias_bits": mem["scale_bias_bits"],
                    "export_sim_s": round(time.perf_counter() - t0, 1)}


def weighted_names(imodel) -> list[str]:
    from vecq_hw.hls.folding import weighted_nodes

    return [n.layer.name for n in weighted_nodes(imodel)]


def plan_for(imodel, ref, plan: dict) -> dict:
    """``plan`` (reuse per weighted layer of ``ref``) for the same network's ``imodel``, layer by
    layer in order: layer names carry the kind (conv2d_1 / pq_conv2d_1), the positions are the same."""
    mine, theirs = weighted_names(imodel), weighted_names(ref)
    if len(mine) != len(theirs):
        raise SystemExit(f"{imodel.name}: {len(mine)} weighted layers against {len(theirs)} in the plan's model")
    return {a: plan[b] for a, b in zip(mine, theirs)}


def hardware(imodel, plan: dict) -> dict:
    """The estimate at ``plan`` (this model's layer names) and the form of every PQ layer there."""
    from vecq_hw.hls.estimate import estimate
    from vecq_hw.hls.mappings import MAPPINGS

    est = estimate(imodel, plan, part=PART, io_type="io_parallel")
    forms = {n.layer.name: MAPPINGS[n.layer.kind].form(n, plan[n.layer.name]) for n in imodel.nodes()
             if n.layer.kind.startswith("pq_")}
    return {"luts": round(est.total("luts")), "bram18": int(est.total("bram18")), "dsps": int(est.total("dsps")),
            "fps_200mhz": round(est.fps), "forms": forms}


def lenet_csim(imodel, plan: dict, args) -> dict:
    from vecq_hw.flow.inputs import images_to_inputs
    from vecq_hw.hls import HlsOptions, csim, write_project
    from vecq_hw.sim import simulate

    images, labels = load_dataset("mnist", "test", limit=args.csim_images)
    x = imodel.input.out_type.from_float(images_to_inputs(images, imodel)).astype(np.int64)
    y = simulate(imodel, x_mantissa=x).output
    t0 = time.perf_counter()
    prj = write_project(imodel, args.work / "lenet_pq_hls", HlsOptions(io_type="io_parallel", reuse=plan),
                        expected=(x, y), overwrite=True)
    out = csim(prj, progress="lines")
    return {"images": int(out.n), "mismatches": int(out.mismatches), "value_mismatches": int(out.value_mismatches),
            "seconds": round(time.perf_counter() - t0, 1),
            "sim_accuracy": float(np.mean(y.reshape(len(labels), -1).argmax(1) == labels))}


# ----------------------------------------------------------------------------- the grid

def run_network(net: str, res: dict, args) -> None:
    from vecq_hw.hls.estimate import fit

    arch, dataset, _, configs = NETWORKS[net]
    ckpt = float_model(net, args)
    train_xy = to_tensors(*load_dataset(dataset, "train", limit=args.train_limit))
    test = load_dataset(dataset, "test")
    runs = res.setdefault("runs", {}).setdefault(net, {})
    models = {}
    fl = build_model(arch, weight_quant=None, **TYPES, **NETWORKS[net][2])
    fl.load_state_dict(ckpt["state_dict"])
    if "float" not in runs:
        _, acc = evaluate(fl, make_loader(torch.utils.data.TensorDataset(*to_tensors(*test)), 1000))
        runs["float"] = {"method": "float", "torch_acc": acc, "train_s": ckpt["train_s"]}
    jobs = [(f"vecq_{b}bit", lambda b=b: vecq_run(net, b, ckpt, train_xy, args)) for b in VECQ_BITS]
    jobs += [(name, lambda c=cfg: pq_run(net, c, ckpt, train_xy, args)) for name, cfg in configs.items()]
    for name, job in jobs:
        folder = args.work / f"{net}_{name}_model"
        if name in runs and not args.fresh and (folder / "model.yaml").is_file():
            models[name] = load_model(folder)
            continue
        print(f"[{net}] {name} ...", flush=True)
        model, rec = job()
        imodel, dep = deploy(model, test, folder)
        models[name] = imodel
        runs[name] = {"method": "pq" if name.startswith("pq") else "vecq", **rec, **dep}
        print(f"[{net}] {name}: {dep['bits_per_weight']:.3f} bits/weight, deployed {100 * dep['deployed_acc']:.2f} %",
              flush=True)
        save(res, args.out)
    if len(models) == len(jobs):  # hardware at one plan: fit for 1-bit VecQ (all of a network's models share P)
        plan = fit(models["vecq_1bit"], PART, io_type="io_parallel").closest.reuse()
        res.setdefault("plans", {})[net] = plan
        for name, imodel in models.items():
            runs[name]["hw"] = hardware(imodel, plan_for(imodel, models["vecq_1bit"], plan))
        if net == "lenet5" and args.csim_images:
            best = min((n for n in models if n.startswith("pq") and runs[n]["bits_per_weight"] <= 1.0),
                       key=lambda n: -runs[n]["deployed_acc"])
            res["lenet_csim"] = {"run": best, **lenet_csim(models[best], plan_for(models[best], models["vecq_1bit"],
                                                                                 plan), args)}
        save(res, args.out)


def paper_sizes() -> list[dict]:
    out = []
    for (net, regime), (mb, ratio) in sorted(PAPER.items()):
        s = pq_size(PAPER_NETS[net], REGIMES[net][regime])
        q = REGIMES[net][regime]
        out.append({"network": net, "regime": regime, "mb": s["mb"], "ratio": s["ratio"], "float_mb": s["float_mb"],
                    "paper_mb": mb, "paper_ratio": ratio, "block_3x3": q.block, "block_1x1": q.block_pointwise,
                    "block_fc": q.block_linear, "codewords": q.codewords, "codewords_fc": q.codewords_linear})
    return out


# ----------------------------------------------------------------------------- outputs

def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def _pairs(runs: dict) -> list[tuple[str, str, float]]:
    """(PQ run, VecQ run, PQ minus VecQ deployed accuracy) for each PQ run at <= k bits/weight,
    against VecQ at the smallest such k."""
    out = []
    for name, r in runs.items():
        if r.get("method") != "pq":
            continue
        k = next((b for b in VECQ_BITS if r["bits_per_weight"] <= b), None)
        v = runs.get(f"vecq_{k}bit")
        if k is not None and v is not None:
            out.append((name, f"vecq_{k}bit", r["deployed_acc"] - v["deployed_acc"]))
    return out


def _network_table(net: str, res: dict) -> list[str]:
    runs, plan = res["runs"][net], res.get("plans", {}).get(net)
    lines = [f"### {net} ({NETWORKS[net][1]})", "",
             f"Float: {_pct(runs['float']['torch_acc'])} % (PyTorch, quantised activations), trained "
             f"{runs['float']['train_s']} s.", "",
             "| run | bits/weight | compression | deployed % (sim, all test) | PyTorch % | agreement | EM s | "
             "fine-tune s | LUTs | BRAM18 | DSPs | PQ forms |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in runs.items():
        if name == "float":
            continue
        hw = r.get("hw", {})
        forms = ", ".join(f"{k}: {v}" for k, v in hw.get("forms", {}).items()) or "-"
        lines.append(f"| {name} | {r['bits_per_weight']:.3f} | {r['compression']:.1f}x | {_pct(r['deployed_acc'])} | "
                     f"{_pct(r['torch_acc'])} | {_pct(r['agreement'])} | {r.get('em_s', '-')} | {r['finetune_s']} | "
                     f"{hw.get('luts', '-'):,} | {hw.get('bram18', '-')} | {hw.get('dsps', '-')} | {forms} |"
                     if hw else
                     f"| {name} | {r['bits_per_weight']:.3f} | {r['compression']:.1f}x | {_pct(r['deployed_acc'])} | "
                     f"{_pct(r['torch_acc'])} | {_pct(r['agreement'])} | {r.get('em_s', '-')} | {r['finetune_s']} | "
                     "- | - | - | - |")
    if plan:
        lines += ["", f"Hardware: the estimate at the plan `fit` chooses for vecq_1bit on {PART} (io_parallel): "
                  f"`{plan}`; every model of the network at that plan (same P per layer, same throughput)."]
    lines += ["", "PQ against VecQ at no more bits per weight (deployed accuracy, points): " + (", ".join(
        f"{p} vs {v}: {100 * d:+.2f}" for p, v, d in _pairs(runs)) or "-"), ""]
    return lines


def _float_gap(res: dict) -> list[str]:
    """Per network, its best PQ run at <= 1 bit/weight against the float model (deployed minus PyTorch float)."""
    lines = []
    for net, runs in res.get("runs", {}).items():
        low = [(r["deployed_acc"], n) for n, r in runs.items() if r.get("method") == "pq" and r["bits_per_weight"] <= 1]
        if low and "float" in runs:
            acc, name = max(low)
            lines.append(f"- {net}: {name} ({runs[name]['bits_per_weight']:.3f} bits/weight) deploys "
                         f"{_pct(acc)} %, {100 * (acc - runs['float']['torch_acc']):+.2f} points from the float model.")
    return (["## PQ at <= 1 bit per weight against float", ""] + lines + [""]) if lines else []


def write_markdown(res: dict, path: Path) -> None:
    a = res["args"]
    lines = ["# Product quantisation (issue 24)", "",
             "Written by benchmarks/pq.py. Stock et al., *And the Bit Goes Down* (ICLR 2020), implemented from the "
             "paper: activation-weighted EM per layer, then codeword fine-tuning by distillation; deployed as "
             "`pq_dense` / `pq_conv2d` (8-bit integer codebooks under a per-layer scale).", "",
             f"**Budget** (2 shared CPU cores, 1 torch thread, seed 0, one run per cell): float model "
             f"{a['float_epochs']} epoch(s) on all 60k training images (Adam {a['float_lr']:g}, cosine); PQ: EM "
             f"({a['iterations']} rounds at most, stopping when the assignments repeat) on {a['samples']} training "
             f"images, then {a['ft_epochs']} epoch(s) of codeword fine-tuning by distillation on the first "
             f"{a['train_limit']} training images (Adam {a['ft_lr']:g}, cosine, batch {BATCH}); VecQ (adaptive step): "
             f"QAT with the same epochs, images and learning rate.", "",
             "## ResNet sizes from layer shapes (vecq_hw.quant.pq_size) against the paper's Table 1", "",
             "| network | regime | d (3x3 / 1x1 / fc) | K (conv / fc) | ours MB | paper MB | ours ratio | paper ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for r in res["paper_sizes"]:
        lines.append(f"| {r['network']} | {r['regime']} | {r['block_3x3']} / {r['block_1x1']} / {r['block_fc']} | "
                     f"{r['codewords']} / {r['codewords_fc']} | {r['mb']:.4f} | {r['paper_mb']} | {r['ratio']:.1f}x | "
                     f"{r['paper_ratio']}x |")
    lines += ["", "Counted as the paper does: log2(K) bits per sub-vector index, codebooks in float16, the first "
              "7x7 conv, the BatchNorm weights and biases and the classifier bias uncompressed in float32; K cut to "
              "the largest power of two <= sub-vectors / 4; MB = 2^20 bytes (ResNet-18: 44.59 MB in float32). "
              "Ours, deployed, store the codebooks as 8-bit integers instead.", "", "## Accuracy, size, hardware", ""]
    for net in res.get("runs", {}):
        lines += _network_table(net, res)
    missing = [net for net in NETWORKS if net not in res.get("runs", {})]
    if missing:
        lines += [f"Not run for this file (time): {', '.join(missing)}.", ""]
    lines += _float_gap(res)
    c = res.get("lenet_csim")
    if c:
        lines += ["## LeNet-5 in C simulation", "",
                  f"{c['run']} (the best PQ run at <= 1 bit/weight), its HLS project at the plan above: {c['images']} "
                  f"MNIST test images, {c['mismatches']} mismatches ({c['value_mismatches']} values) against the "
                  f"simulator, {c['seconds']} s; accuracy on them {_pct(c['sim_accuracy'])} %.", ""]
    path.write_text("\n".join(lines) + "\n")


def save(res: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "pq.json").write_text(json.dumps(res, indent=1) + "\n")
    write_markdown(res, out / "pq.md")


def _args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    ap.add_argument("--float-epochs", type=int, default=1)
    ap.add_argument("--float-lr", type=float, default=2e-3)
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--ft-epochs", type=int, default=1)
    ap.add_argument("--ft-lr", type=float, default=1e-3)
    ap.add_argument("--train-limit", type=int, default=10000)
    ap.add_argument("--csim-images", type=int, default=1000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/vecq_pq_bench"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--fresh", action="store_true", help="redo runs already in pq.json")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = _args(argv)
    torch.set_num_threads(1)
    path = args.out / "pq.json"
    res = json.loads(path.read_text()) if path.is_file() and not args.fresh else {}
    res["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    res["paper_sizes"] = paper_sizes()
    save(res, args.out)
    for net in args.networks:
        run_network(net, res, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
