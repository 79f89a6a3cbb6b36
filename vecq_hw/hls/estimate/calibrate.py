"""Calibrate the estimator's LUT-per-product model on yosys ``synth_xilinx`` mappings.

The HLS kernels compute x * levels[c] and add it into an accumulator. What one product costs in
LUTs depends on whether the weight is a constant (R = 1: every product has its own weight,
which the HLS tool folds into shifts and adds) or a variable read from a ROM (R > 1: one product
slot serves R weights, so it is a k-bit x w-bit multiplier). We measure both on small Verilog
designs that have exactly that shape: a dot product of N terms x_i * d_i (d = 2c + 1, the VecQ
odd levels), w-bit signed activations, k-bit codes, summed exactly; LUTs / N is the cost of
one product with its share of the adder tree. yosys ``synth_xilinx -family xc7 -nodsp`` counts
are technology-mapping counts, not Vivado post-route numbers (same caveat as ``rtl/synth.py``).

    python -m vecq_hw.hls.estimate.calibrate      # re-measure, refit, write configs/hardware/lut_calibration.yaml

The fit is least squares on lut = a0 + a1 w + a2 k + a3 k w per mode on FIT_BITS x FIT_WIDTHS;
the HELD_OUT designs (other k, w and N) give the stated calibration error.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ...errors import ToolError

MODES = ("const", "var")
#: fitted on this grid ...
FIT_BITS, FIT_WIDTHS, N_FIT = (1, 2, 4, 6, 8), (4, 8, 12, 16), 8
#: ... and checked on designs it never saw: other k, other widths, and a longer dot product
HELD_OUT = [(k, w, 8) for k in (3, 5, 7) for w in (6, 10, 14)] + [(2, 8, 16), (4, 12, 16)]
FEATURES = ("1", "w", "k", "k*w")


def dot_verilog(k: int, w: int, n: int, mode: str, seed: int = 0) -> str:
    """y = sum_i x_i * (2 c_i + 1): w-bit signed x, k-bit codes (constants or inputs), exact sum."""
    rng = np.random.default_rng(seed + 1000 * k + 17 * w + n)
    dw = k + 1  # 2c + 1 for a k-bit signed c needs k + 1 bits
    ow = w + dw + max(n - 1, 1).bit_length()
    ports = [f"input signed [{w - 1}:0] x{i}" for i in range(n)]
    body = []
    for i in range(n):
        if mode == "var":
            ports.append(f"input signed [{k - 1}:0] c{i}")
            body.append(f"  wire signed [{dw - 1}:0] d{i} = {{c{i}, 1'b1}};")
        else:
            c = int(rng.integers(-(1 << (k - 1)), 1 << (k - 1)))
            d = 2 * c + 1
            body.append(f"  wire signed [{dw - 1}:0] d{i} = {'-' if d < 0 else ''}{dw}'sd{abs(d)};")
        body.append(f"  wire signed [{ow - 1}:0] p{i} = x{i} * d{i};")
    ports.append(f"output signed [{ow - 1}:0] y")
    body.append("  assign y = " + " + ".join(f"p{i}" for i in range(n)) + ";")
    return "module dot(\n  " + ",\n  ".join(ports) + "\n);\n" + "\n".join(body) + "\nendmodule\n"


def yosys_luts(verilog: str, family: str = "xc7") -> dict:
    """LUT / CARRY4 / FF counts of one design mapped by ``synth_xilinx -nodsp``."""
    yosys = shutil.which("yosys")
    if yosys is None:
        raise ToolError("yosys not found on PATH (apt-get install -y yosys)")
    with tempfile.TemporaryDirectory(prefix="vecq_cal_") as tmp:
        src = Path(tmp) / "dot.v"
        src.write_text(verilog)
        script = (f"read_verilog {src}\nsynth_xilinx -top dot -family {family} -nodsp -flatten\n"
                  f"tee -o {tmp}/s.json stat -json\n")
        r = subprocess.run([yosys, "-q", "-p", script], capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise ToolError(f"yosys failed: {(r.stderr or r.stdout).strip()[-300:]}")
        stat = json.loads((Path(tmp) / "s.json").read_text())
    design = stat.get("design") or next(iter(stat["modules"].values()))
    cells = design.get("num_cells_by_type", {})
    return {"luts": sum(int(v) for c, v in cells.items() if re.fullmatch(r"LUT\d", c)),
            "carry": sum(int(v) for c, v in cells.items() if c.startswith("CARRY")),
            "ffs": sum(int(v) for c, v in cells.items() if re.fullmatch(r"FD[A-Z]*", c))}


def measure(k: int, w: int, n: int, mode: str) -> float:
    """LUTs per product (with its share of the adder tree) of one measured design."""
    return yosys_luts(dot_verilog(k, w, n, mode))["luts"] / n


def features(k, w) -> np.ndarray:
    k, w = np.asarray(k, dtype=float), np.asarray(w, dtype=float)
    return np.stack([np.ones_like(k), w, k, k * w], axis=-1)


def fit(points: list[dict]) -> dict[str, list[float]]:
    """Least-squares coefficients per mode from measured {mode, k, w, lut_per_product} points."""
    out = {}
    for mode in MODES:
        pts = [p for p in points if p["mode"] == mode]
        a = features([p["k"] for p in pts], [p["w"] for p in pts])
        y = np.array([p["lut_per_product"] for p in pts])
        coef, *_ = np.linalg.lstsq(a, y, rcond=None)
        out[mode] = [round(float(c), 5) for c in coef]
    return out


def _measure_all(designs, jobs: int, progress) -> list[dict]:
    from concurrent.futures import ThreadPoolExecutor

    def one(d):
        mode, k, w, n = d
        return {"mode": mode, "k": k, "w": w, "n": n, "lut_per_product": round(measure(k, w, n, mode), 4)}

    out = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for i, r in enumerate(pool.map(one, designs)):
            out.append(r)
            progress(f"[{i + 1}/{len(designs)}] {r}")
    return out


def errors(coefficients: dict, points: list[dict]) -> dict:
    """Relative errors of the fitted model on measured points: median, worst, per point."""
    rel = []
    for p in points:
        pred = float(features(p["k"], p["w"]) @ np.asarray(coefficients[p["mode"]]))
        rel.append((pred - p["lut_per_product"]) / p["lut_per_product"])
    a = np.abs(rel)
    return {"median_abs_rel": round(float(np.median(a)), 4), "worst_abs_rel": round(float(np.max(a)), 4),
            "rel": [round(float(r), 4) for r in rel]}


def run(out_path: Path | None = None, jobs: int = 3, progress=print) -> dict:
    from ...resources import CONFIG_DIR
    import yaml

    fit_designs = [(m, k, w, N_FIT) for m in MODES for k in FIT_BITS for w in FIT_WIDTHS]
    held_designs = [(m, k, w, n) for m in MODES for k, w, n in HELD_OUT]
    measured = _measure_all(fit_designs + held_designs, jobs, progress)
    points, held = measured[:len(fit_designs)], measured[len(fit_designs):]
    coef = fit(points)
    version = subprocess.run(["yosys", "-V"], capture_output=True, text=True).stdout.strip()
    cal = {"format_version": 1,
           "source": f"{version} synth_xilinx -family xc7 -nodsp; dot products of N terms x_i * (2 c_i + 1), "
                     "w-bit signed x, k-bit codes; LUT cells / N",
           "model": "lut_per_product = a0 + a1*w + a2*k + a3*k*w (w: activation bits, k: weight bits); "
                    "const: weights are constants (R = 1), var: weights read from a ROM (R > 1)",
           "coefficients": coef, "fit_error": {m: errors(coef, [p for p in points if p["mode"] == m]) for m in MODES},
           "held_out_error": {m: errors(coef, [p for p in held if p["mode"] == m]) for m in MODES},
           "points": points, "held_out": held}
    out_path = Path(out_path or CONFIG_DIR / "hardware" / "lut_calibration.yaml")
    out_path.write_text("# written by `python -m vecq_hw.hls.estimate.calibrate`; do not edit by hand\n"
                        + yaml.safe_dump(cal, sort_keys=False, width=120))
    return cal


if __name__ == "__main__":
    run()


# ----------------------------------------------------------------------------- per-method products
# issue 14: LUTs per MAC of each method's product as our HLS kernels write it for run-time codes
# (R > 1: the code arrives from a ROM), measured by yosys on a dot product of that form. The
# structures mirror nnet_vecq_products.h: the named tables' shift-and-add over the code bits (k <= 4),
# add/subtract/skip for {-1, 0, +1} tables, signed-digit shifted copies (shift_add, ESB's
# shift_add_n) and a multiplier by the level read from a ROM otherwise.

def _pattern_levels(levels, bits: int) -> list[tuple[int, int]]:
    """(k-bit code pattern, level): code v (-2^(k-1) first in ``levels``) has pattern v mod 2^k."""
    half = 1 << (bits - 1)
    return [((v + (1 << bits)) % (1 << bits), int(levels[v + half])) for v in range(-half, half)]


def _case_function(name: str, bits: int, width: int, rows: list[tuple[int, int]]) -> str:
    cases = "\n".join(f"      {bits}'d{p}: {name} = {'-' if v < 0 else ''}{width}'sd{abs(v)};" for p, v in rows)
    return (f"  function signed [{width - 1}:0] {name};\n    input [{bits - 1}:0] c;\n    case (c)\n"
            f"{cases}\n      default: {name} = 0;\n    endcase\n  endfunction\n")


def kernel_product(levels, bits: int) -> tuple[str, list]:
    """(kind, data) of the product our kernels build for this table (hls/products.py's choice):
    'odd'/'int' named tables with k <= 4 -> shift-and-add over the code bits; otherwise
    'addsub', 'digits' (canonical signed digits per code) or 'multiply'."""
    from ..products import csd_digits
    from ...ir.levels import levels_name, product_kind

    levels = np.asarray(levels, dtype=np.int64)
    name = levels_name(levels, bits)
    if name in ("odd", "int") and bits <= 4:
        return name, []
    if name is not None:
        return "multiply", []
    kind = product_kind(levels)
    if kind in ("shift_add", "shift_add_n"):
        return "digits", [csd_digits(int(v)) for v in levels]
    return kind, []


def kernel_dot_verilog(levels, bits: int, w: int, n: int, top: str = "dot", *, codes=None,
                       form: str | None = None) -> str:
    """y = sum_i x_i * levels[c_i] in the kernels' form, w-bit signed x; k-bit code inputs, or
    the constant ``codes`` (R = 1: the tool folds them). ``form='multiply'``: the plain
    x * levels[c] (the reference the kernels' form is proven equal to)."""
    from ..products import csd_digits

    levels = np.asarray(levels, dtype=np.int64)
    kind, digits = kernel_product(levels, bits) if form is None else (form, [])
    lw = max(int(np.max(np.abs(levels))).bit_length() + 1, 2)
    shift = max([e for v in levels for _, e in csd_digits(int(v))] + [bits])
    pw = w + max(lw, shift + 1) + 1  # holds every partial sum of one product (any form)
    ow = pw + max(n - 1, 1).bit_length()
    rows = _pattern_levels(levels, bits)
    ports = [f"input signed [{w - 1}:0] x{i}" for i in range(n)]
    if codes is None:
        ports += [f"input [{bits - 1}:0] c{i}" for i in range(n)]
    head, body = [], []
    for i, c in enumerate(codes if codes is not None else []):
        body.append(f"  wire [{bits - 1}:0] c{i} = {bits}'d{(int(c) + (1 << bits)) % (1 << bits)};")
    if kind == "multiply" or kind == "addsub":
        head.append(_case_function("lvl", bits, lw, rows))
    if kind == "digits":
        cols = max(len(d) for d in digits)
        for j in range(cols):
            sgn = [(p, d[j][0] if j < len(d) else 0) for (p, _), d in zip(rows, digits)]
            exp = [(p, d[j][1] if j < len(d) else 0) for (p, _), d in zip(rows, digits)]
            head.append(_case_function(f"sgn{j}", bits, 2, sgn) + _case_function(f"exp{j}", bits, 8, exp))
    for i in range(n):
        x = f"xs{i}"
        body.append(f"  wire signed [{pw - 1}:0] {x} = x{i};")
        if kind == "multiply":
            body.append(f"  wire signed [{pw - 1}:0] p{i} = {x} * lvl(c{i});")
        elif kind == "addsub":
            body.append(f"  wire signed [{lw - 1}:0] l{i} = lvl(c{i});")
            body.append(f"  wire signed [{pw - 1}:0] p{i} = l{i} > 0 ? {x} : (l{i} < 0 ? -{x} : 0);")
        elif kind == "digits":
            terms = []
            for j in range(max(len(d) for d in digits)):
                body.append(f"  wire signed [1:0] s{i}_{j} = sgn{j}(c{i});")
                body.append(f"  wire signed [{pw - 1}:0] t{i}_{j} = {x} <<< exp{j}(c{i});")
                terms.append(f"(s{i}_{j} > 0 ? t{i}_{j} : (s{i}_{j} < 0 ? -t{i}_{j} : 0))")
            body.append(f"  wire signed [{pw - 1}:0] p{i} = " + " + ".join(terms) + ";")
        else:  # named: d = 2c + 1 ('odd') or c ('int') over the code bits, as vecq_shift_add_mac
            e = 1 if kind == "odd" else 0
            terms = [x] if kind == "odd" else []
            terms += [f"(c{i}[{b}] ? ({x} <<< {b + e}) : 0)" for b in range(bits - 1)]
            neg = f"(c{i}[{bits - 1}] ? ({x} <<< {bits - 1 + e}) : 0)"
            body.append(f"  wire signed [{pw - 1}:0] p{i} = {' + '.join(terms) or '0'} - {neg};")
    ports.append(f"output signed [{ow - 1}:0] y")
    body.append("  assign y = " + " + ".join(f"p{i}" for i in range(n)) + ";")
    return f"module {top}(\n  " + ",\n  ".join(ports) + "\n);\n" + "".join(head) + "\n".join(body) + "\nendmodule\n"


def kernel_lut_per_mac(levels, bits: int, w: int = 8, n: int = 8, *, constant: bool = False,
                       seed: int = 0) -> float:
    """yosys LUTs per product (with its share of the adder tree) of the kernels' form; with
    ``constant``, n codes drawn uniformly (seeded) and folded in as constants (R = 1)."""
    codes = None
    if constant:
        half = 1 << (bits - 1)
        codes = np.random.default_rng(seed).integers(-half, half, size=n)
    return yosys_luts(kernel_dot_verilog(levels, bits, w, n, codes=codes))["luts"] / n


def prove_kernel_form(levels, bits: int, w: int = 6, n: int = 2, *, gold_levels=None) -> bool:
    """yosys proves (SAT, every input) the kernels' form equal to x * levels[c] (x * gold_levels[c]
    when given: a check that a wrong reference is caught)."""
    yosys = shutil.which("yosys")
    if yosys is None:
        raise ToolError("yosys not found on PATH (apt-get install -y yosys)")
    with tempfile.TemporaryDirectory(prefix="vecq_eq_") as tmp:
        gold = levels if gold_levels is None else gold_levels
        for top, table, form in (("gate", levels, None), ("gold", gold, "multiply")):
            (Path(tmp) / f"{top}.v").write_text(kernel_dot_verilog(table, bits, w, n, top, form=form))
        script = (f"read_verilog {tmp}/gate.v\nread_verilog {tmp}/gold.v\nproc\nmemory_map\nopt_clean\n"
                  "miter -equiv -flatten -make_outputs gold gate miter\nhierarchy -top miter\n"
                  "sat -verify -prove trigger 0 miter\n")
        r = subprocess.run([yosys, "-q", "-p", script], capture_output=True, text=True, timeout=600)
    return r.returncode == 0
