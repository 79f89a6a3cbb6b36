"""Calibrate the estimator's LUT-per-product model on yosys ``synth_xilinx`` mappings.

The HLS kernels compute x * levels[c] and add it into an accumulator. What one product costs in
LUTs depends on whether the weight is a constant (R = 1: every product has its own weight,
which the HLS tool folds into shifts and adds) or a variable read from a ROM (R > 1: one product
slot serves R weights, so it is a k-bit x w-bit multiplier). We measure both on small Verilog
designs that have exactly that shape: a dot product of N terms x_i * d_i (d = 2c + 1, the VecQ
odd levels), w-bit signed activations, k-bit codes, summed exactly; LUTs / N is the cost of
one product with its share of the adder tree. yosys ``synth_xilinx -family xc7 -nodsp`` counts
are technology-mapping counts, not Vivado post-route numbers (same caveat as ``rtl/synth.py``).

    python -m vecq_hw.estimate.calibrate      # re-measure, refit, write configs/hardware/lut_calibration.yaml

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

from ..errors import ToolError

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
    from ..resources import CONFIG_DIR
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
    out_path.write_text("# written by `python -m vecq_hw.estimate.calibrate`; do not edit by hand\n"
                        + yaml.safe_dump(cal, sort_keys=False, width=120))
    return cal


if __name__ == "__main__":
    run()
