"""ALQ's basis-MAC as our kernel writes it (``hls_templates/nnet_vecq_alq.h``), in Verilog: its
yosys LUT count and a SAT proof that it computes sum_i x_i * beta_i.

The XOR form of an add/subtract: +x is x, -x is ~x + 1 (two's complement), and the n carry-in
ones are not added per term but once, as the count of -1 signs (the kernel preloads it into the
accumulator). A dot product of n terms, w-bit signed x, summed exactly::

    y = sum_i (beta_i ? x_i : ~x_i) + #{i : beta_i = -1}

Two modes like :mod:`.calibrate`'s: 'var', the signs are inputs (R > 1: read from the plane
ROM), and 'const', the signs are constants (R = 1: the tool folds them). LUTs / n is the cost of
one basis-MAC with its share of the adder tree (yosys ``synth_xilinx -family xc7 -nodsp``
technology-mapping counts, not Vivado post-route numbers).

    python -m vecq_hw.hls.estimate.alq_form   # re-measure, refit, write configs/hardware/alq_calibration.yaml

The fit is lut = a + b * w per mode on FIT_WIDTHS (n = N_FIT), checked on HELD_OUT widths.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ...errors import ToolError
from .calibrate import yosys_luts

MODES = ("const", "var")
FIT_WIDTHS, N_FIT = (4, 6, 8, 12, 16), 8
HELD_OUT = (5, 10, 14)


def _sum_width(w: int, n: int) -> int:
    """Exact two's-complement width of a sum of n terms +-x, x a w-bit signed value."""
    return w + max(n, 1).bit_length()


def basis_dot_verilog(w: int, n: int, top: str = "dot", *, signs=None, form: str = "xor") -> str:
    """y = sum_i x_i * beta_i, w-bit signed x; sign bits b_i (1 = +1) as inputs, or the constant
    ``signs`` (+1/-1). ``form``: 'xor' (the kernel's), 'addsub' (b ? x : -x, the reference) or
    'masked' (b ? x : 0, a different function)."""
    ow = _sum_width(w, n)
    ports = [f"input signed [{w - 1}:0] x{i}" for i in range(n)]
    body = []
    if signs is None:
        ports.append(f"input [{n - 1}:0] b")
    else:
        bits = "".join("1" if s > 0 else "0" for s in reversed(list(signs)))
        body.append(f"  wire [{n - 1}:0] b = {n}'b{bits};")
    ports.append(f"output signed [{ow - 1}:0] y")
    body += [f"  wire signed [{ow - 1}:0] xs{i} = x{i};" for i in range(n)]
    if form == "xor":
        terms = [f"(b[{i}] ? xs{i} : ~xs{i})" for i in range(n)]
        ones = " + ".join(f"{{{ow - 1}'d0, ~b[{i}]}}" for i in range(n))
        body.append(f"  assign y = {' + '.join(terms)} + $signed({ones});")
    elif form in ("addsub", "masked"):  # the reference, and a wrong one (b ? x : 0) for the tests
        other = "-" if form == "addsub" else "0 * "
        body.append("  assign y = " + " + ".join(f"(b[{i}] ? xs{i} : {other}xs{i})" for i in range(n)) + ";")
    else:
        raise ValueError(f"unknown form {form!r}")
    return f"module {top}(\n  " + ",\n  ".join(ports) + "\n);\n" + "\n".join(body) + "\nendmodule\n"


def basis_lut_per_mac(w: int = 8, n: int = N_FIT, *, constant: bool = False, seed: int = 0) -> float:
    """yosys LUTs per basis-MAC of the kernel's form; ``constant``: n signs drawn uniformly (seeded)."""
    signs = np.random.default_rng(seed + 31 * w + n).choice([-1, 1], size=n) if constant else None
    return yosys_luts(basis_dot_verilog(w, n, signs=signs))["luts"] / n


def prove_basis_form(w: int = 6, n: int = 3, *, gold: str = "addsub") -> bool:
    """yosys proves (SAT, every input) the kernel's XOR form equal to the form ``gold`` ('addsub',
    sum b ? x : -x, the reference; 'masked', a different function, must not be proved)."""
    yosys = shutil.which("yosys")
    if yosys is None:
        raise ToolError("yosys not found on PATH (apt-get install -y yosys)")
    with tempfile.TemporaryDirectory(prefix="vecq_alq_eq_") as tmp:
        (Path(tmp) / "gate.v").write_text(basis_dot_verilog(w, n, "gate"))
        (Path(tmp) / "gold.v").write_text(basis_dot_verilog(w, n, "gold", form=gold))
        script = (f"read_verilog {tmp}/gate.v\nread_verilog {tmp}/gold.v\nproc\nopt_clean\n"
                  "miter -equiv -flatten -make_outputs gold gate miter\nhierarchy -top miter\n"
                  "sat -verify -prove trigger 0 miter\n")
        r = subprocess.run([yosys, "-q", "-p", script], capture_output=True, text=True, timeout=600)
    return r.returncode == 0


def fit(points: list[dict]) -> dict[str, list[float]]:
    """Least-squares (a, b) of lut = a + b * w per mode."""
    out = {}
    for mode in MODES:
        pts = [p for p in points if p["mode"] == mode]
        a = np.stack([np.ones(len(pts)), [p["w"] for p in pts]], axis=1)
        coef, *_ = np.linalg.lstsq(a, np.array([p["lut_per_mac"] for p in pts]), rcond=None)
        out[mode] = [round(float(c), 5) for c in coef]
    return out


def _errors(coef: dict, points: list[dict]) -> dict:
    rel = [abs(coef[p["mode"]][0] + coef[p["mode"]][1] * p["w"] - p["lut_per_mac"]) / p["lut_per_mac"]
           for p in points]
    return {"median_abs_rel": round(float(np.median(rel)), 4), "worst_abs_rel": round(float(np.max(rel)), 4)}


def run(out_path: Path | None = None, progress=print) -> dict:
    """Measure every mode and width, fit, check on the held-out widths, write the YAML."""
    import yaml

    from ...resources import CONFIG_DIR

    if not prove_basis_form():
        raise ToolError("yosys could not prove the ALQ basis-MAC form equal to sum x * beta")
    measured = []
    for mode in MODES:
        for w in FIT_WIDTHS + HELD_OUT:
            measured.append({"mode": mode, "w": w, "n": N_FIT,
                             "lut_per_mac": round(basis_lut_per_mac(w, constant=mode == "const"), 4)})
            progress(measured[-1])
    points = [p for p in measured if p["w"] in FIT_WIDTHS]
    held = [p for p in measured if p["w"] in HELD_OUT]
    coef = fit(points)
    version = subprocess.run(["yosys", "-V"], capture_output=True, text=True).stdout.strip()
    cal = {"format_version": 1,
           "source": f"{version} synth_xilinx -family xc7 -nodsp; ALQ basis-MAC in the XOR form of "
                     f"nnet_vecq_alq.h: dot products of {N_FIT} terms x_i * (+-1), w-bit signed x; LUT cells / n; "
                     "proved equal to sum x * beta by yosys SAT",
           "model": "lut_per_basis_mac = a + b*w (w: activation bits); const: signs are constants (R = 1), "
                    "var: signs read from the plane ROM (R > 1)",
           "coefficients": coef, "fit_error": _errors(coef, points), "held_out_error": _errors(coef, held),
           "points": points, "held_out": held}
    out_path = Path(out_path or CONFIG_DIR / "hardware" / "alq_calibration.yaml")
    out_path.write_text("# written by `python -m vecq_hw.hls.estimate.alq_form`; do not edit by hand\n"
                        + yaml.safe_dump(cal, sort_keys=False, width=120))
    return cal


if __name__ == "__main__":
    run()
