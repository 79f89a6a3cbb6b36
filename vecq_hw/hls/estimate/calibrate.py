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
the HELD_OUT designs (other k, w and N) give the stated calibration error. Mode 'array' (issue 21)
measures the kernels' select form on a folded slot array instead of a lone multiplier (LUTs per
MAC with its share of the per-input multiples; array_forms.py). The estimator reads 'const' (R = 1),
and 'var' for folded products with no select form; a folded select form it costs from its plan
(one LUT per accumulator bit of each group's adder, hls/mappings.py), which this mode checks.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from .array_forms import array_luts, array_verilog, prove_array_form
from .yosys import yosys_luts

#: const: constant weights (R = 1); var: a ROM-fed multiplier (R > 1, the model before issue 21);
#: array: the kernels' select form on a folded slot array (issue 21): N inputs shared by
#: ARRAY_OUTPUTS channels, each product added into its accumulator (array_forms.py)
MODES = ("const", "var", "array")
ARRAY_OUTPUTS = 16
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


def measure(k: int, w: int, n: int, mode: str) -> float:
    """LUTs per product (with its share of the adder tree) of one measured design."""
    if mode == "array":
        return yosys_luts(array_design(k, w, n))["luts"] / (n * ARRAY_OUTPUTS)
    return yosys_luts(dot_verilog(k, w, n, mode))["luts"] / n


def features(k, w) -> np.ndarray:
    k, w = np.asarray(k, dtype=float), np.asarray(w, dtype=float)
    return np.stack([np.ones_like(k), w, k, k * w], axis=-1)


def fit(points: list[dict]) -> dict[str, list[float]]:
    """Least-squares coefficients per mode from measured {mode, k, w, lut_per_product} points."""
    out = {}
    for mode in [m for m in MODES if any(p["mode"] == m for p in points)]:
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
                     f"w-bit signed x, k-bit codes; LUT cells / N (array: LUT cells / (N x {ARRAY_OUTPUTS}), N inputs "
                     f"shared by {ARRAY_OUTPUTS} accumulating channels)",
           "model": "lut_per_product = a0 + a1*w + a2*k + a3*k*w (w: activation bits, k: weight bits); "
                    "const: weights are constants (R = 1), var: weights read from a ROM (R > 1), "
                    "array: the kernels' select form on a folded slot array (R > 1, issue 21)",
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
# issue 14 / 21: LUTs per MAC of each method's product as our HLS kernels write it for run-time codes
# (R > 1: the codes arrive from the weight ROM), measured by yosys on the slot array of that form
# (array_forms.py: m inputs shared by n output channels, each product added into its accumulator):
# the select groups (named tables, and custom tables with a select plan), add/subtract/skip for
# {-1, 0, +1} tables, signed-digit shifted copies (shift_add, shift_add_n) and a multiplier by the
# level read from a ROM otherwise.

def kernel_product(levels, bits: int, multiplier: str = "auto") -> tuple[str, object]:
    """(array form, select plan or None) of the product our kernels build for this table
    (hls/products.py's choice): 'select', 'addsub', 'digits' or 'multiply'."""
    from ..products import kind_and_plan

    kind, plan = kind_and_plan(levels, bits, multiplier)
    if plan is not None:
        return "select", plan
    return {"named": "multiply", "shift_add": "digits", "shift_add_n": "digits"}.get(kind, kind), None


def kernel_lut_per_mac(levels, bits: int, w: int = 8, m: int = 8, n: int = 16, *, constant: bool = False,
                       seed: int = 0) -> float:
    """yosys LUTs per MAC of the kernels' form on an m-input, n-output slot array; with
    ``constant``, m x n codes drawn uniformly (seeded) and folded in as constants (R = 1)."""
    form, plan = kernel_product(levels, bits)
    return array_luts(levels, bits, form, plan, w=w, m=m, n=n, constant=constant, seed=seed)["lut_per_mac"]


def prove_kernel_form(levels, bits: int, w: int = 6, m: int = 1, n: int = 2, *, gold_levels=None) -> bool:
    """yosys proves (SAT, every input, code and accumulator) the kernels' form equal to x *
    levels[c] (x * gold_levels[c] when given: a check that a wrong reference is caught)."""
    form, plan = kernel_product(levels, bits)
    return prove_array_form(levels, bits, form, plan, w=w, m=m, n=n, gold_levels=gold_levels)


def array_design(k: int, w: int, m: int) -> str:
    """The 'array' calibration mode's design: VecQ's odd table in the kernels' select form, m
    inputs shared by ARRAY_OUTPUTS channels."""
    from ...ir.levels import named_levels
    from ..select import named_plan

    return array_verilog(named_levels("odd", k), k, "select", named_plan("odd", k), w=w, m=m, n=ARRAY_OUTPUTS)
