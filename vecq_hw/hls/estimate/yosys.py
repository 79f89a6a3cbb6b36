"""yosys runs of the estimator's measured designs: ``synth_xilinx -nodsp`` cell counts and SAT
equivalence (a miter of two modules, every input). Technology-mapping counts, not Vivado."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ...errors import ToolError


def _yosys() -> str:
    yosys = shutil.which("yosys")
    if yosys is None:
        raise ToolError("yosys not found on PATH (apt-get install -y yosys)")
    return yosys


def yosys_luts(verilog: str, family: str = "xc7", top: str = "dot") -> dict:
    """LUT / CARRY4 / FF counts of one design mapped by ``synth_xilinx -nodsp -flatten``."""
    with tempfile.TemporaryDirectory(prefix="vecq_cal_") as tmp:
        src = Path(tmp) / "dot.v"
        src.write_text(verilog)
        script = (f"read_verilog {src}\nsynth_xilinx -top {top} -family {family} -nodsp -flatten\n"
                  f"tee -o {tmp}/s.json stat -json\n")
        r = subprocess.run([_yosys(), "-q", "-p", script], capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            raise ToolError(f"yosys failed: {(r.stderr or r.stdout).strip()[-300:]}")
        stat = json.loads((Path(tmp) / "s.json").read_text())
    design = stat.get("design") or next(iter(stat["modules"].values()))
    cells = design.get("num_cells_by_type", {})
    return {"luts": sum(int(v) for c, v in cells.items() if re.fullmatch(r"LUT\d", c)),
            "carry": sum(int(v) for c, v in cells.items() if c.startswith("CARRY")),
            "ffs": sum(int(v) for c, v in cells.items() if re.fullmatch(r"FD[A-Z]*", c))}


#: before the miter: yosys's own equivalence-preserving passes (constant products become
#: shifts and adds), which keep the SAT problems of the arrays small
PROOF_PREP = "flatten; opt; wreduce; techmap; opt -fast"


def yosys_equivalent(gate: str, gold: str, prep: str = "opt_clean", timeout: float = 1800) -> bool:
    """yosys proves (SAT, every input) module ``gate`` equal to module ``gold`` (same ports);
    subprocess.TimeoutExpired after ``timeout`` seconds."""
    with tempfile.TemporaryDirectory(prefix="vecq_eq_") as tmp:
        (Path(tmp) / "gate.v").write_text(gate)
        (Path(tmp) / "gold.v").write_text(gold)
        script = (f"read_verilog {tmp}/gate.v\nread_verilog {tmp}/gold.v\nproc\nmemory_map\n{prep}\n"
                  "miter -equiv -flatten -make_outputs gold gate miter\nhierarchy -top miter\n"
                  "sat -verify -prove trigger 0 miter\n")
        r = subprocess.run([_yosys(), "-q", "-p", script], capture_output=True, text=True, timeout=timeout)
    return r.returncode == 0
