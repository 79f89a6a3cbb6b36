"""VecQ, µL2Q, ESB, ALQ, SQ+VecQ and SQ+TWN side by side (issue 14).

    .venv/bin/python benchmarks/methods.py                                  # small default budget
    .venv/bin/python benchmarks/methods.py --networks lenet5 vgg_small --bits 1 2 3 4 --steps 3000

Per network (lenet5/MNIST, vgg_small/Fashion-MNIST, or the tiny mlp/MNIST for a smoke run) and
target bits/weight b in --bits, one cell per method, all with THE SAME budget: --steps Adam
steps (batch 64, lr 5e-3, seed 0) from scratch on the first --train-limit training images.
ALQ spends them as 1/2 float pre-training, 1/4 loss-aware steps with pruning, 1/4 STE; SQ
steps its ratio 50 -> 75 -> 87.5 -> 100 % over its steps. Cells:

* VecQ, µL2Q (offset off, the hardware form), SQ+VecQ: k = b bits;
* ESB: b bits with k = b - 2 significant bits (b >= 2; b = 2 is {0, ±1});
* ALQ: target b bases per weight on average (max_bases = b + 1, capped at 4), deployed in its
  native form (docs/FORMAT.md "ALQ layers"): the weight memory is its bit-planes (sum of I_g sign
  bits); its LUTs per MAC are per basis (a weight of a channel with I_g bases costs I_g of them);
* SQ+TWN: 2 bits (levels -1, 0, +1), shown in the b = 2 row only.

Accuracy AS DEPLOYED: exported (tracing, BatchNorm folded), run through the bit-accurate
simulator on --test-limit test images. Weight memory: codes (sum of n_weights * code bits).
LUTs per MAC, measured by yosys (``synth_xilinx -family xc7 -nodsp``, technology-mapping
counts, not Vivado post-route): a dot product of 8 terms x_i * levels[c_i], 8-bit signed x,
in the form our HLS kernels write the method's product (shift-and-add over the code bits for
the named tables k <= 4, add/subtract/skip for {-1, 0, +1}, one shifted copy of x per signed
digit for ESB's tables, a multiplier by the ROM level otherwise; each form proven equal to
x * levels[c] by yosys SAT, ``vecq_hw.hls.estimate.calibrate.prove_kernel_form``), LUTs / 8: one
product with its share of the adder tree. Two columns: run-time codes (R > 1, the code comes
from a ROM: the form matters) and constant weights (R = 1, 8 codes drawn uniformly, seed 0:
synthesis folds the constants, the form no longer matters, the level values do). The product
name and a hand count (``lut_per_mac`` in the JSON: w LUT6 per w-bit adder) are kept beside.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vecq_hw.data import load_dataset
from vecq_hw.export.torch_export import export
from vecq_hw.hls.products import choose_product
from vecq_hw.ir.io import weight_memory_report
from vecq_hw.ir.levels import level_width
from vecq_hw.models.lenet import lenet5
from vecq_hw.models.mlp import mlp
from vecq_hw.models.vgg import vgg_small
from vecq_hw.sim import simulate
from vecq_hw.train.alq_steps import ALQTrainer, alq_layers
from vecq_hw.train.sq_schedule import set_sq_ratio, stage_ratio

NETWORKS = {"mlp": ("mnist", lambda wq: mlp(weight_quant=wq, hidden=(64,)), True),
            "lenet5": ("mnist", lambda wq: lenet5(weight_quant=wq), False),
            "vgg_small": ("fashion-mnist", lambda wq: vgg_small(weight_quant=wq), False)}
METHODS = ("vecq", "ul2q", "esb", "alq", "sq_vecq", "sq_twn")


def config(method: str, b: int):
    """The weight_quant config of a cell, or None when the method has no such cell."""
    if method == "vecq":
        return {"method": "vecq", "bits": b}
    if method == "ul2q":
        return {"method": "ul2q", "bits": b}
    if method == "esb":
        return None if b < 2 else {"method": "esb", "bits": b, "significant_bits": b - 2, "per_channel": True}
    if method == "alq":  # b may be a float below 1 (--alq-targets)
        return {"method": "alq", "bits": 8, "max_bases": min(4, int(b) + 1), "target_bits": float(b),
                "per_channel": True}
    if method == "sq_vecq":
        return {"method": "sq", "base": "vecq", "bits": b}
    if method == "sq_twn":
        return None if b != 2 else {"method": "sq", "base": "twn", "bits": 2, "per_channel": True}
    raise ValueError(method)


def _fit(model, params, batches, steps, before=None, after=None):
    opt = torch.optim.Adam(params, lr=5e-3)
    model.train()
    for s in range(steps):
        if before:
            before(s)
        xb, yb = next(batches)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if after:
            after(s)


def train_cell(model, method, batches, steps) -> dict:
    extra = {}
    if method == "alq":
        for m in alq_layers(model):
            m.quantize = False
        _fit(model, model.parameters(), batches, steps // 2)
        tr = ALQTrainer(model, lr=5e-3)
        tr.init()
        n = steps // 4
        _fit(model, tr.other_parameters(), batches, n,
             after=lambda s: (tr.step(), tr.prune(rounds=1) if s % max(1, n // 5) == 0 else None))
        extra["alq_avg_bases"] = tr.prune()
        tr.finish()
        extra["alq_native_bits"] = int(sum(int(np.sum(m.weight_quant.counts)) * m.weight[0].numel()
                                           for m in tr.layers))
        _fit(model, model.parameters(), batches, steps - steps // 2 - n)
    elif method.startswith("sq"):
        _fit(model, model.parameters(), batches, steps, before=lambda s: set_sq_ratio(model, stage_ratio(s, steps)))
    else:
        _fit(model, model.parameters(), batches, steps)
    return extra


_YOSYS: dict = {}


def yosys_lut_per_mac(wq: dict) -> tuple[float, float]:
    """(run-time codes, constant weights) yosys LUTs per MAC of the product of this weight_quant
    config's level table (8-bit activations), measured once per table."""
    from vecq_hw.hls.estimate.calibrate import kernel_lut_per_mac
    from vecq_hw.quant import quantizer_from_config

    if wq["method"] == "alq":  # per basis-MAC, the native kernel's form (hls/estimate/alq_form.py)
        from vecq_hw.hls.estimate.alq_form import basis_lut_per_mac

        if "alq" not in _YOSYS:
            _YOSYS["alq"] = (round(basis_lut_per_mac(8), 1), round(basis_lut_per_mac(8, constant=True), 1))
        return _YOSYS["alq"]
    q = quantizer_from_config(dict(wq))
    levels, bits = np.asarray(q.levels(), dtype=np.int64), int(q.bits)
    key = (bits, tuple(int(v) for v in levels))
    if key not in _YOSYS:
        _YOSYS[key] = (round(kernel_lut_per_mac(levels, bits), 1), round(kernel_lut_per_mac(levels, bits, constant=True), 1))
    return _YOSYS[key]


def lut_per_mac(layer, in_type) -> tuple[str, int]:
    if layer.kind.startswith("alq_"):  # per basis: one add/subtract of x
        return "alq_basis(+-x)", in_type.width + 1
    p = choose_product(layer, in_type)
    w = p.term.width
    if p.kind == "addsub":
        return p.kind, w
    if p.kind in ("shift_add", "shift_add_n"):
        terms = 2 if p.kind == "shift_add" else int(p.config.split("n_terms = ")[1].split(";")[0])
        return f"{p.kind}({terms})", terms * w
    if p.kind == "named" and layer.bits <= 4:
        return f"shift_add_bits({layer.bits})", layer.bits * w
    return "multiply", in_type.width * level_width(layer.levels)


def run_cell(net, method, b, data, args) -> dict | None:
    wq = config(method, b)
    if wq is None:
        return None
    (x, y), (tx, ty) = data
    torch.manual_seed(0)
    model = NETWORKS[net][1](wq)
    gen = torch.Generator().manual_seed(0)

    def batches():
        while True:
            idx = torch.randint(0, len(x), (64,), generator=gen)
            yield x[idx], y[idx]

    t0 = time.perf_counter()
    extra = train_cell(model, method, batches(), args.steps)
    model.eval()
    res = export(model, model.input_shape, samples=tx[:128])
    xm = res.model.input.out_type.from_float(_ir_layout(tx).double().numpy()).astype(np.int64)
    sim = simulate(res.model, x_mantissa=xm)
    acc = float(np.mean(sim.output.reshape(len(ty), -1).argmax(1) == ty))
    mem, kinds, luts = weight_memory_report(res.model)["total"]["code_bits"], set(), []
    for layer in res.model.layers:
        if getattr(layer, "levels", None) is None and not layer.kind.startswith("alq_"):
            continue
        kind, lut = lut_per_mac(layer, res.model.layers[res.model.layers.index(layer) - 1].out_type)
        kinds.add(kind)
        luts.append(lut)
    return {"network": net, "method": method, "bits": b, "config": wq, "accuracy": acc, "weight_bits": mem,
            "product": "/".join(sorted(kinds)), "lut_per_mac": max(luts), "seconds": time.perf_counter() - t0,
            **extra}


def _ir_layout(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 2, 3, 1) if t.ndim == 4 else t


def load(net, args):
    name, _, flat = NETWORKS[net]
    (x, y), (tx, ty) = load_dataset(name, "train", limit=args.train_limit), load_dataset(name, "test",
                                                                                           limit=args.test_limit)

    def to(a):
        t = torch.from_numpy(a.astype(np.float32) / 256.0)
        return t.reshape(len(a), -1) if flat else t.unsqueeze(1)

    return (to(x), torch.from_numpy(y.astype(np.int64))), (to(tx), ty)


def scale_table(rows_in) -> list[str]:
    """ESB's two scales on Gaussian and Laplace weights: relative L2 error of the DDA scale
    (our Gaussian-prior reconstruction) and of our L2 search, per (b, k)."""
    from vecq_hw.quant import ESB

    rng = np.random.default_rng(0)
    dists = {"gaussian": rng.normal(size=(64, 512)), "laplace": rng.laplace(size=(64, 512))}
    lines = ["", "ESB scale: relative squared error ||w - w_hat||^2 / ||w||^2, 64 channels x 512 weights, "
             "per channel", "", "| b | k | dist | dda (alpha = r(b,k) sigma) | l2 search | r(b,k) |",
             "|---|---|---|---|---|---|"]
    for b, k in ((3, 1), (4, 2), (5, 2), (5, 3), (6, 3), (8, 5)):
        for name, w in dists.items():
            errs = []
            for scale in ("dda", "l2"):
                q = ESB(b, True, k, scale)
                errs.append(float(((q.quantize(w).value() - w) ** 2).sum() / (w**2).sum()))
            rows_in.append({"b": b, "k": k, "dist": name, "dda": errs[0], "l2": errs[1], "ratio": q.ratio})
            lines.append(f"| {b} | {k} | {name} | {errs[0]:.5f} | {errs[1]:.5f} | {q.ratio:.4f} |")
    return lines


def write(args, budget, rows, scale_lines, scale_rows):
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "methods.json").write_text(json.dumps({"budget": budget, "rows": rows, "esb_scales": scale_rows},
                                                      indent=1))
    lines = ["# Methods compared (issue 14)", "", f"Budget: {budget}. A SMALL budget: the numbers rank the "
             "methods' deployed form, they are not converged accuracies. Written by benchmarks/methods.py "
             f"({' '.join(args.argv)}).", "",
             "| network | bits/weight | method | deployed acc. % | weight memory (bits) | product | "
             "LUT/MAC yosys, run-time codes | LUT/MAC yosys, constant weights |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mem = str(r["weight_bits"])
        if "alq_native_bits" in r:
            mem += f" (ALQ-native {r['alq_native_bits']}, {r['alq_avg_bases']:.2f} bases/weight)"
        r["lut_per_mac_yosys_rom"], r["lut_per_mac_yosys_const"] = yosys_lut_per_mac(r["config"])
        lines.append(f"| {r['network']} | {r['bits']} | {r['method']} | {100 * r['accuracy']:.1f} | {mem} | "
                     f"{r['product']} | {r['lut_per_mac_yosys_rom']} | {r['lut_per_mac_yosys_const']} |")
    lines += ["", "bits/weight: code bits (VecQ, µL2Q, SQ), b total bits with k = b - 2 (ESB), target bases per "
              "weight (ALQ: its bit-planes, LUT/MAC per basis; docs/FORMAT.md). LUT/MAC: yosys synth_xilinx -nodsp "
              "technology-mapping counts of 8-term dot products in the kernels' form, 8-bit activations, "
              "per product with its share of the adder tree (module docstring); not Vivado post-route numbers."]
    if getattr(args, "skipped", None):
        lines += ["", f"Not run (--time-budget {args.time_budget:g} s exhausted): {', '.join(args.skipped)}."]
    (args.out / "methods.md").write_text("\n".join(lines + scale_lines) + "\n")
    return lines


def main(argv=None):
    import sys

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", nargs="+", default=["mlp"], choices=list(NETWORKS))
    ap.add_argument("--bits", nargs="+", type=int, default=[2])
    ap.add_argument("--alq-targets", nargs="*", type=float, default=[],
                    help="extra ALQ cells at these average bases per weight (e.g. 0.4, the paper's LeNet-5 point)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--train-limit", type=int, default=4000)
    ap.add_argument("--test-limit", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--resume", action="store_true",
                    help="keep the rows of --out/methods.json (same budget) and run only the missing cells")
    ap.add_argument("--time-budget", type=float, default=None,
                    help="seconds; cells not started by then are listed as not run")
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(1)
    budget = (f"{args.steps} Adam steps (batch 64, lr 5e-3, seed 0) from scratch on the first {args.train_limit} "
              f"training images per cell; deployed accuracy on the first {args.test_limit} test images")
    scale_rows: list = []
    scale_lines = scale_table(scale_rows)
    rows = []
    old = args.out / "methods.json"
    if args.resume and old.exists() and json.loads(old.read_text()).get("budget") == budget:
        rows = json.loads(old.read_text())["rows"]
    done = {(r["network"], r["method"], float(r["bits"])) for r in rows}
    args.skipped = []
    t_start = time.perf_counter()
    for net in args.networks:
        data = load(net, args)
        cells = [(t, "alq") for t in args.alq_targets] + [(b, m) for b in args.bits for m in args.methods]
        for b, method in cells:
            if (net, method, float(b)) in done:
                continue
            if args.time_budget is not None and time.perf_counter() - t_start > args.time_budget:
                if config(method, b) is not None:
                    args.skipped.append(f"{net} b={b} {method}")
                write(args, budget, rows, scale_lines, scale_rows)
                continue
            r = run_cell(net, method, b, data, args)
            if r is not None:
                rows.append(r)
                print(f"{net} b={b} {method}: {100 * r['accuracy']:.1f} %, {r['weight_bits']} bits, "
                      f"{r['product']} ~{r['lut_per_mac']} LUT/MAC ({r['seconds']:.0f} s)", flush=True)
                write(args, budget, rows, scale_lines, scale_rows)  # after every cell: a cut run keeps its rows
    print("\n".join(write(args, budget, rows, scale_lines, scale_rows) + scale_lines))


if __name__ == "__main__":
    main()
