"""LUTs per MAC of the folded slot array's product forms on yosys (issue 21, items 2 and 4).

One cycle of a folded layer's slot array: m inputs (8-bit signed activations) each shared by n
output channels whose k-bit codes come from the weight ROM (module inputs; 'constant': the codes
folded in as constants, R = 1), every product added into its channel's accumulator
(vecq_hw/hls/estimate/array_forms.py). yosys ``synth_xilinx -family xc7 -nodsp`` LUTs / (m n),
CARRY4 cells, and a yosys SAT proof of each form against x * levels[c] (one stage: one input shared
by two outputs, 6-bit x, every code and accumulator value; two chained inputs at k <= 2, 4-bit x).

* VecQ (the odd table d = 2c + 1), k = 1..5 (--vecq-bits): the kernels' select form (x and 3x once per input,
  one select and add/sub per two code bits), the previous kernels' forms (one shifted copy of x
  per code bit, k <= 4; the ROM multiplier, k >= 5), and the select spellings tried and dropped.
* ESB at b = 3, 4, 5 bits, every significant-bit count: the kernels' form (select for sign and
  magnitude, k = b - 2; signed-digit columns otherwise) and the previous one, beside VecQ at b.

These are yosys technology-mapping counts, not Vivado results.
Writes benchmarks/results/products.md and products.json.
SAT proofs: the kernels' forms (run-time codes).
Usage: python benchmarks/products.py [--m 4] [--n 16] [--jobs 2] [--resume] [--quick] [--no-prove]
       [--vecq-bits 1,2,3,4,5] [--report-only]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vecq_hw.hls.estimate import fit
from vecq_hw.hls.estimate.array_forms import ArrayWriter, array_luts, prove_array_form
from vecq_hw.hls.estimate.examples import paper_lenet5
from vecq_hw.hls.mappings import mapping_for
from vecq_hw.hls.estimate.calibrate import kernel_product
from vecq_hw.hls.select import SelectPlan, adder_luts, find_plan, multiple_luts, named_plan
from vecq_hw.ir.levels import named_levels
from vecq_hw.quant.esb import esb_levels

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {2: 16, 4: 30}  # issue 21, LUT/MAC at 8-bit activations
DROPPED = ("select_naive", "select_macc", "select_cat")
PREVIOUS_DOT = {1: 22.2, 2: 33.9, 3: 48.1, 4: 68.1}  # methods.md before issue 21: 8-term dot products
#: the ESB paper's accelerator (Gong et al., TPDS 2022), without DSPs; and our fitted LeNet-5 before
#: the select form (estimate.md on main da8c452, the fit plan: 35,945 LUTs at 5,206 frames/s)
ESB_PAPER_GOPS_PER_KLUT = 10.95
BEFORE = {"luts": 35945, "fps": 5206}
#: the select form without partial sums (products.md on main 39c8b23: plan conv1 5, conv2 40)
BEFORE_PSUM = {"luts": 40508, "fps": 13426}
#: partial sums, each conv pixel's requantisation after its products (main ca90dc3: plan conv1 5,
#: conv2 32, fc1 12544, fc2 5120; conv2 196 pixels x (32 + 32 + 3) + 196 input cycles = 13,328)
BEFORE_OVERLAP = {"luts": 41216, "fps": 15006}
#: partial sums on a conv-like slot array: PSUM_M inputs a cycle into PSUM_ACC-bit accumulators
PSUM_M, PSUM_ACC = 8, 20


class FixedSigns(SelectPlan):
    """A plan whose zero entries never subtract (before their signs were free): a group's sign may
    then need a LUT of two code bits."""

    def negates(self, t: int) -> list[bool]:
        return [neg for _, _, neg in self.picks(t)]


#: ESB(5, 3) (levels p - 15 s, p the low four code bits, s the sign bit) plans measured on the array
ESB5_PLANS = {
    "one copy per bit (the plan before)": SelectPlan(5, ((0, 4), (1, 2), (3,)),
                                                     ((0, 1, -15, -14), (0, 2, 4, 6), (0, 8))),
    "sign in two groups, -15 = -16 + 1": SelectPlan(5, ((0, 4), (1, 2), (3, 4)),
                                                    ((0, 1, 1, 2), (0, 2, 4, 6), (0, 8, -16, -8))),
    "sign in two groups, -15 = -8 - 7, zero signs fixed": FixedSigns(5, ((0, 4), (1, 2), (3, 4)),
                                                                    ((0, 1, -7, -6), (0, 2, 4, 6), (0, 8, -8, 0))),
    "sign in two groups, -15 = -8 - 7, zero signs free (kernels now)": find_plan(esb_levels(5, 3), 5),
}


def measure_plan(name: str, args) -> dict:
    plan, levels = ESB5_PLANS[name], esb_levels(5, 3)
    r = array_luts(levels, 5, "select", plan, w=args.w, m=args.m, n=args.n)
    W = ArrayWriter(levels, 5, args.w, args.m, args.n, plan).W
    row = {"table": "esb5_plan", "bits": 5, "form": name, "mode": "run-time", "m": args.m, "n": args.n, "w": args.w,
           "W": W, "luts": r["luts"], "carry": r["carry"], "lut_per_mac": round(r["lut_per_mac"], 2),
           "groups": [list(g) for g in plan.groups], "entries": [list(e) for e in plan.entries],
           "multiples": list(plan.multiples),
           "adder_bits_per_mac": sum(W - plan.shift(t) for t in range(len(plan.groups)))}
    print(json.dumps(row), flush=True)
    return row


def measure_psum(form: str, args) -> dict:
    """VecQ 2-bit, PSUM_M inputs x n outputs into PSUM_ACC-bit accumulators: the products chained
    into the accumulator ('select') or summed at their own width first ('select_psum')."""
    levels, plan = named_levels("odd", 2), named_plan("odd", 2)
    r = array_luts(levels, 2, form, plan, w=args.w, m=PSUM_M, n=args.n, acc_width=PSUM_ACC)
    aw = ArrayWriter(levels, 2, args.w, PSUM_M, args.n, plan, acc_width=PSUM_ACC)
    model = (args.n * PSUM_M * adder_luts(plan, aw.W if form == "select" else aw.Wn)
             + PSUM_M * multiple_luts(plan, args.w))
    model += args.n * aw.W if form == "select_psum" else 0
    row = {"table": "psum", "bits": 2, "form": form, "mode": "run-time", "m": PSUM_M, "n": args.n, "w": args.w,
           "W": aw.W, "Wn": aw.Wn, "luts": r["luts"], "carry": r["carry"], "lut_per_mac": round(r["lut_per_mac"], 2),
           "estimator_luts": model}
    print(json.dumps(row), flush=True)
    return row


def table(name: str, bits: int, ks: int | None = None):
    """(levels, select plan or None) of VecQ's odd table or ESB(b, ks)."""
    if name == "vecq":
        return named_levels("odd", bits), named_plan("odd", bits)
    levels = esb_levels(bits, ks)
    return levels, find_plan(levels, bits)


def designs(quick: bool, vecq_bits=range(1, 6)) -> list[dict]:
    """Run-time: the kernels' form, the previous one, the ROM multiplier (and the dropped select
    spellings at k = 2, 4); constant codes: the select form in both adder spellings and the
    previous form."""
    out = []
    for k in ((2, 4) if quick else vecq_bits):
        prev = "shift_add_bits" if k <= 4 else "multiply"
        run_time = ["select", prev] + (["multiply"] if k <= 4 else []) + (list(DROPPED) if k in (2, 4) else [])
        out += [dict(table="vecq", bits=k, form=f, mode="run-time") for f in run_time]
        out += [dict(table="vecq", bits=k, form=f, mode="constant") for f in ("select", "select_macc", prev)]
    for b in ((4,) if quick else (3, 4, 5)):
        for ks in range(b - 1):
            now = kernel_product(table("esb", b, ks)[0], b)[0]
            before = "digits" if now == "select" else now
            out += [dict(table="esb", bits=b, ks=ks, form=f, mode="run-time") for f in dict.fromkeys((now, before))]
            const = (now, "select_macc") if now == "select" else (now,)
            out += [dict(table="esb", bits=b, ks=ks, form=f, mode="constant") for f in const]
    return out


def key(d: dict, args) -> str:
    return f"{d['table']}|{d['bits']}|{d.get('ks')}|{d['form']}|{d['mode']}|{args.m}x{args.n}|w{args.w}"


def measure(d: dict, args) -> dict:
    levels, plan = table(d["table"], d["bits"], d.get("ks"))
    t0 = time.perf_counter()
    r = array_luts(levels, d["bits"], d["form"], plan, w=args.w, m=args.m, n=args.n,
                   constant=d["mode"] == "constant")
    row = {**d, "m": args.m, "n": args.n, "w": args.w,
           "W": ArrayWriter(levels, d["bits"], args.w, args.m, args.n, plan).W,  # the same W for every form
           "luts": r["luts"], "carry": r["carry"], "lut_per_mac": round(r["lut_per_mac"], 2),
           "synth_s": round(time.perf_counter() - t0, 1)}
    if d["form"].startswith("select"):  # one LUT per adder bit: sum over groups of (W - shift)
        row["adder_bits_per_mac"] = sum(row["W"] - plan.shift(t) for t in range(len(plan.groups)))
    print(json.dumps(row), flush=True)
    return row


def prove(d: dict, timeout: float) -> dict:
    levels, plan = table(d["table"], d["bits"], d.get("ks"))
    out = {}
    instances = [("stage", dict(w=6, m=1, n=2))] + ([("chain", dict(w=4, m=2, n=2))] if d["bits"] <= 2 else [])
    for name, inst in instances:
        t0 = time.perf_counter()
        try:
            ok = prove_array_form(levels, d["bits"], d["form"], plan, timeout=timeout, **inst)
        except subprocess.TimeoutExpired:
            ok = None
        out[name] = {"proven": ok, "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps({**d, "sat": out}), flush=True)
    return out


def run(args) -> dict:
    """The run-time rows (ESB first), the proofs of the kernels' forms, then the constant rows;
    saved after each, so that --resume goes on where an interrupted run stopped."""
    path = RESULTS / "products.json"
    old = json.loads(path.read_text()) if args.resume and path.is_file() else {}
    rows = {key(r, args): r for r in old.get("rows", [])}
    proofs = dict(old.get("proofs", {}))
    wanted = designs(args.quick, args.vecq_bits)
    todo = [d for d in wanted if key(d, args) not in rows]
    run_time = sorted((d for d in todo if d["mode"] == "run-time"), key=lambda d: d["table"] != "esb")
    # the kernels' forms only: the dropped and previous forms have their counts, not proofs
    forms = {f"{d['table']}|{d['bits']}|{d.get('ks')}|{d['form']}": d for d in wanted if d["mode"] == "run-time"
             and d["form"] == kernel_product(table(d["table"], d["bits"], d.get("ks"))[0], d["bits"])[0]}
    to_prove = [] if args.no_prove else [(k, d) for k, d in forms.items() if k not in proofs]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for row in pool.map(lambda d: measure(d, args), run_time):
            rows[key(row, args)] = row
            save(path, args, rows, proofs)
        plans = [n for n in ESB5_PLANS if key({"table": "esb5_plan", "bits": 5, "form": n, "mode": "run-time"}, args)
                 not in rows] if not args.quick else []
        for row in pool.map(lambda n: measure_plan(n, args), plans):
            rows[key(row, args)] = row
            save(path, args, rows, proofs)
        psum = [f for f in ("select", "select_psum") if key({"table": "psum", "bits": 2, "form": f, "mode": "run-time"},
                                                            args) not in rows] if not args.quick else []
        for row in pool.map(lambda f: measure_psum(f, args), psum):
            rows[key(row, args)] = row
            save(path, args, rows, proofs)
        for (k, _), res in zip(to_prove, pool.map(lambda kd: prove(kd[1], args.prove_timeout), to_prove)):
            proofs[k] = res
            save(path, args, rows, proofs)
        for row in pool.map(lambda d: measure(d, args), [d for d in todo if d["mode"] != "run-time"]):
            rows[key(row, args)] = row
            save(path, args, rows, proofs)
    return save(path, args, rows, proofs)


def fitted(model, part: str) -> dict:
    """``model`` as `vecq-hw fit` plans it on ``part`` (headroom 80 %, 200 MHz): LUTs, frames/s
    and GOPS per 1k LUTs (2 ops per MAC), pre-synthesis estimates."""
    plan = fit(model, part, headroom=0.8, clock_period=5.0).plan
    macs = 0
    for node in model.nodes():
        m = mapping_for(node)
        p = m.products_per_input(node)
        macs += 0 if p is None else p * m.inputs_per_frame(node)
    luts, fps = plan.totals()["luts"], plan.fps
    return {"model": model.name, "part": part, "reuse": dict(plan.reuse()), "macs_per_frame": macs,
            "luts": luts, "fps": round(fps, 1), "gops": round(2 * macs * fps / 1e9, 1),
            "gops_per_klut": round(2 * macs * fps / 1e9 / (luts / 1e3), 2), "fits": plan.fits(0.8)}


def whole_design(bits: int = 2, part: str = "xc7z020") -> dict:
    """The paper-size LeNet-5 as `vecq-hw fit` plans it, beside the plans before."""
    d = fitted(paper_lenet5(bits), part)

    def gops_per_klut(luts, fps):
        return round(2 * d["macs_per_frame"] * fps / 1e9 / (luts / 1e3), 2)

    return {**d,
            "before": {**BEFORE, "gops_per_klut": gops_per_klut(BEFORE["luts"], BEFORE["fps"])},
            "before_psum": {**BEFORE_PSUM, "gops_per_klut": gops_per_klut(BEFORE_PSUM["luts"], BEFORE_PSUM["fps"])},
            "before_overlap": {**BEFORE_OVERLAP,
                               "gops_per_klut": gops_per_klut(BEFORE_OVERLAP["luts"], BEFORE_OVERLAP["fps"])},
            "esb_paper_gops_per_klut": ESB_PAPER_GOPS_PER_KLUT}


def save(path: Path, args, rows: dict, proofs: dict) -> dict:
    version = subprocess.run(["yosys", "-V"], capture_output=True, text=True).stdout.strip()
    result = {"machine": f"{platform.node()} ({platform.machine()}, Python {platform.python_version()})",
              "yosys": version, "array": {"m": args.m, "n": args.n, "w": args.w},
              "rows": sorted(rows.values(), key=lambda r: (r["table"], r["bits"], r.get("ks") or 0, r["form"], r["mode"])),
              "proofs": proofs, "whole_design": whole_design()}
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "products.md").write_text(markdown(result))
    return result


def _get(result, **kw):
    for r in result["rows"]:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def _sat(result, tab, bits, ks, form) -> str:
    p = result["proofs"].get(f"{tab}|{bits}|{ks}|{form}")
    if not p:
        return "-"
    return ", ".join(f"{k} {'proven' if v['proven'] else ('timeout' if v['proven'] is None else 'FAILED')}"
                     for k, v in p.items())


def _cell(r) -> str:
    return "-" if r is None else f"{r['lut_per_mac']:.1f}"


def markdown(result: dict) -> str:
    a = result["array"]
    out = [f"# Product forms on the folded slot array (issue 21)\n",
           f"Generated by `benchmarks/products.py` on {result['machine']}; {result['yosys']}.\n",
           f"**yosys `synth_xilinx -family xc7 -nodsp` technology-mapping counts, not Vivado results.** "
           f"The array: {a['m']} inputs x {a['n']} output channels, {a['w']}-bit signed activations, k-bit codes "
           f"from the weight ROM (run-time) or folded in as constants (R = 1), every product added into its "
           f"channel's W-bit accumulator; LUT/MAC = LUTs / {a['m'] * a['n']}. SAT: yosys proves each form equal "
           f"to acc + x * levels[c] for every input, code and accumulator (stage: one input shared by two "
           f"outputs, 6-bit x; chain: two inputs, 4-bit x; '-': not run here -- tests/test_products_array.py and "
           f"tests/test_estimate.py prove the kernels' forms of VecQ k = 1..4 and ESB(4, 2), ESB(4, 1), ESB(5, 3)).\n",
           "## VecQ (odd table d = 2c + 1), run-time codes\n",
           "| k | W | select (kernels now) | carry4 | one LUT per adder bit | previous kernels | "
           "ROM multiplier | previous, 8-term dot (methods.md) | target | SAT (select) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for k in range(1, 9):
        new = _get(result, table="vecq", bits=k, form="select", mode="run-time")
        if new is None:
            continue
        prev = _get(result, table="vecq", bits=k, form="shift_add_bits" if k <= 4 else "multiply", mode="run-time")
        mul = _get(result, table="vecq", bits=k, form="multiply", mode="run-time")
        bound = f"{new['adder_bits_per_mac']} + shared x, 3x"
        out.append(f"| {k} | {new['W']} | **{_cell(new)}** | {new['carry']} | {bound} | {_cell(prev)} | {_cell(mul)} | "
                   f"{PREVIOUS_DOT.get(k, '-')} | {TARGETS.get(k, '-')} | {_sat(result, 'vecq', k, None, 'select')} |")
    out += ["", "previous kernels: one shifted copy of x per code bit (k <= 4), the ROM multiplier (k >= 5). "
            "'one LUT per adder bit': the select form's adder bits per MAC, sum over its groups of (W - shift), "
            "plus its share of the per-input multiples: what LUT6 + CARRY4 primitives would spend, so no "
            "primitive-level reference is needed.\n",
            "## VecQ, constant codes (R = 1)\n",
            "| k | select, chained adders | select, one macc (select_macc) | previous kernels |", "|---|---|---|---|"]
    for k in range(1, 9):
        new = _get(result, table="vecq", bits=k, form="select", mode="constant")
        if new is not None:
            macc = _get(result, table="vecq", bits=k, form="select_macc", mode="constant")
            prev = _get(result, table="vecq", bits=k, form="shift_add_bits" if k <= 4 else "multiply", mode="constant")
            out.append(f"| {k} | {_cell(new)} | {_cell(macc)} | {_cell(prev)} |")
    out += ["", "With constant codes the selects are wires and yosys sums the terms best as one multi-operand "
            "macc (the chained spelling keeps one W-bit adder per group); R = 1 layers are the distributed-"
            "arithmetic strategy's (issue 21 item 1).\n"]
    out += ["", "## Forms tried (run-time codes)\n", "| k | form | LUT/MAC | carry4 | SAT | note |",
            "|---|---|---|---|---|---|"]
    notes = {"select": "kept: re-sliced adder, accumulator on CARRY4's DI (array_forms.py)",
             "select_naive": "acc + sum(n ? -s : s): a negation per term",
             "select_macc": "acc + (s ^ n) + n chained: yosys merges the chain into one macc (compressor tree)",
             "select_cat": "re-sliced adder, operand order left to alumacc's hash: some terms get their own LUTs",
             "shift_add_bits": "previous kernels", "multiply": "x * levels[c] (ROM multiplier)"}
    for k in (2, 4):
        for form in ("select",) + DROPPED + ("shift_add_bits", "multiply"):
            r = _get(result, table="vecq", bits=k, form=form, mode="run-time")
            if r is not None:
                out.append(f"| {k} | {form} | {_cell(r)} | {r['carry']} | {_sat(result, 'vecq', k, None, form)} | "
                           f"{notes[form]} |")
    out += ["", "## ESB at b bits (k significant bits) against VecQ at b bits, run-time codes\n",
            "| b | k | form now | LUT/MAC now | constant (best spelling) | previous form | LUT/MAC before | VecQ at b (select) | "
            "now <= VecQ | SAT (now) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for b in (3, 4, 5):
        vq = _get(result, table="vecq", bits=b, form="select", mode="run-time")
        for ks in range(b - 1):
            rows = [r for r in result["rows"] if r["table"] == "esb" and r["bits"] == b and r.get("ks") == ks
                    and r["mode"] == "run-time"]
            if not rows:
                continue
            now_form = kernel_product(table("esb", b, ks)[0], b)[0]
            now = next((r for r in rows if r["form"] == now_form), None)
            if now is None:  # not measured yet (a run in progress)
                continue
            before = next((r for r in rows if r["form"] != now_form), now)
            const = min((r for r in result["rows"] if r["table"] == "esb" and r["bits"] == b and r.get("ks") == ks
                         and r["mode"] == "constant"), key=lambda r: r["lut_per_mac"], default=None)
            ok = "-" if vq is None else ("yes" if now["lut_per_mac"] <= vq["lut_per_mac"] else "no")
            out.append(f"| {b} | {ks} | {now_form} | **{_cell(now)}** | {_cell(const)} | {before['form']} | "
                       f"{_cell(before)} | {_cell(vq)} | {ok} | {_sat(result, 'esb', b, ks, now_form)} |")
    out += ["", "benchmarks/methods.py (issue 14) deploys ESB at b bits with k = b - 2 significant bits. "
            "ESB with k = b - 2 (one exponent bit: the hidden bit, no shift) is sign and magnitude, levels "
            "c + [c < 0]: a select plan (vecq_hw/hls/select.py). With more exponent bits the exponent's shift "
            "multiplies the significand (the code bits interact), no plan exists, and the signed-digit columns "
            "remain.", ""]
    out += esb5_plans_table(result) + psum_table(result)
    d = result["whole_design"]
    out += ["## Whole design: paper-size LeNet-5 (2-bit VecQ, 8-bit activations), `fit` on " + d["part"] + "\n",
            "Pre-synthesis estimates (`vecq-hw fit`, headroom 80 %); 200 MHz is an assumption; 2 ops per MAC, "
            f"{d['macs_per_frame']:,} MACs per frame. The estimator costs a folded layer's select-form slot array as "
            "one LUT per accumulator bit of each group's adder plus the shared multiples (hls/mappings.py; within "
            "10 % of yosys on the array, tests/test_products_array.py), with per-cycle partial sums where cheaper.\n",
            "| | LUTs | frames/s | GOPS | GOPS per 1k LUTs |", "|---|---|---|---|---|",
            f"| before (estimate.md, product model 'var') | {d['before']['luts']:,} | {d['before']['fps']:,} | "
            f"{2 * d['macs_per_frame'] * d['before']['fps'] / 1e9:.1f} | {d['before']['gops_per_klut']} |",
            "| select form, chained into the accumulators (main 39c8b23), plan conv2 40 | "
            f"{d['before_psum']['luts']:,} | "
            f"{d['before_psum']['fps']:,} | {2 * d['macs_per_frame'] * d['before_psum']['fps'] / 1e9:.1f} | "
            f"{d['before_psum']['gops_per_klut']} |",
            "| select form + per-cycle partial sums, requantisation after each pixel's products (main ca90dc3), "
            f"plan conv1 5, conv2 32 | {d['before_overlap']['luts']:,} | {d['before_overlap']['fps']:,} | "
            f"{2 * d['macs_per_frame'] * d['before_overlap']['fps'] / 1e9:.1f} | {d['before_overlap']['gops_per_klut']} |",
            "| now (+ each conv pixel requantised during the next pixel's products, hold registers priced), "
            f"plan {d['reuse']} | {d['luts']:,.0f} | {d['fps']:,.0f} | {d['gops']} | **{d['gops_per_klut']}** |",
            f"| ESB paper's accelerator (no DSPs, published) | | | | {d['esb_paper_gops_per_klut']} |", ""]
    return "\n".join(out) + "\n"


def psum_table(result: dict) -> list[str]:
    rows = {r["form"]: r for r in result["rows"] if r["table"] == "psum"}
    if len(rows) < 2:
        return []
    c, p = rows["select"], rows["select_psum"]
    return ["## Per-cycle partial sums (hls/partial_sums.py)\n",
            f"A folded cycle gives each output several products (conv2 of LeNet-5 at R = 32: 25 a cycle). "
            f"Measured: VecQ 2-bit, {c['m']} inputs x {c['n']} outputs a cycle, {c['W']}-bit accumulators "
            f"(a conv layer's fan-in).\n",
            "| form | LUTs | LUT/MAC | estimator's model | model / yosys |", "|---|---|---|---|---|",
            f"| chained into the {c['W']}-bit accumulator (select) | {c['luts']} | {_cell(c)} | "
            f"{c['estimator_luts']} | "
            f"{c['estimator_luts'] / c['luts']:.3f} |",
            f"| summed at {p['Wn']} bits, then one add into the accumulator (select_psum) | {p['luts']} | "
            f"**{_cell(p)}** | "
            f"{p['estimator_luts']} | {p['estimator_luts'] / p['luts']:.3f} |", "",
            "The kernel (nnet_vecq_fold.h) turns partial sums on where the estimator's model says they are cheaper; "
            "select_psum is SAT-proved and the kernel C-simulated in tests/test_products_array.py.", ""]


def esb5_plans_table(result: dict) -> list[str]:
    rows = [r for r in result["rows"] if r["table"] == "esb5_plan"]
    if not rows:
        return []
    out = ["### ESB at b = 5 (k = 3): the plans tried\n",
           "Levels p - 15 s (p: the four low code bits, s: the sign bit), a linear table: three groups of two "
           "code bits, the fifth bit's free slot taken by a second copy of s. Each group is one LUT per "
           "accumulator bit from its shift up; a term past +/-15 widens the accumulator W, a sign that is "
           "a function of two code bits costs a LUT per product, each extra multiple an adder per input.\n",
           "| plan | groups: entries | multiples | W | adder bits/MAC | LUT/MAC |", "|---|---|---|---|---|---|"]
    for r in rows:
        ge = "; ".join(f"{tuple(g)}: {tuple(e)}" for g, e in zip(r["groups"], r["entries"]))
        out.append(f"| {r['form']} | {ge} | {', '.join(map(str, r['multiples']))} | {r['W']} | "
                   f"{r['adder_bits_per_mac']} | **{_cell(r)}** |")
    vq = _get(result, table="vecq", bits=5, form="select", mode="run-time")
    return out + ["", f"VecQ 5-bit (select): {_cell(vq)}. Also tried by the session before (not kept here): a hand "
                  "plan with multiples {1, 3, 15}: 41.0. Proof and cost test of the kernels' plan: "
                  "tests/test_products_array.py (SAT, <= VecQ 5-bit on a 1 x 16 array, C simulation).", ""]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", type=int, default=4, help="inputs of the array")
    ap.add_argument("--n", type=int, default=16, help="output channels sharing each input")
    ap.add_argument("--w", type=int, default=8, help="activation bits")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--resume", action="store_true", help="keep the rows and proofs already in products.json")
    ap.add_argument("--quick", action="store_true", help="VecQ k = 2, 4 and ESB b = 4 only")
    ap.add_argument("--vecq-bits", type=lambda s: [int(v) for v in s.split(",")], default=list(range(1, 6)),
                    help="VecQ code widths, comma-separated (default 1,2,3,4,5; 6..8 take tens of minutes)")
    ap.add_argument("--no-prove", action="store_true", help="skip the SAT proofs")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite products.md (and the whole-design figure) from the rows and proofs in products.json")
    ap.add_argument("--prove-timeout", type=float, default=600, help="seconds per SAT proof")
    args = ap.parse_args(argv)
    if args.report_only:
        old = json.loads((RESULTS / "products.json").read_text())
        args.m, args.n, args.w = (old["array"][k] for k in ("m", "n", "w"))
        save(RESULTS / "products.json", args, {key(r, args): r for r in old["rows"]}, old["proofs"])
    else:
        run(args)


if __name__ == "__main__":
    main()
