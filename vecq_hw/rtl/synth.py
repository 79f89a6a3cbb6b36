"""``synth``: yosys ``synth_xilinx`` on the generated Verilog -> LUT/carry/FF/DSP/BRAM counts.

These are yosys technology-mapping counts for a Xilinx family, not Vivado post-route
results: no placement, routing, timing closure or Vivado's own optimisations. They are
comparable between designs (the 1-bit model against the 4-bit one), and they are what we can
measure without a vendor licence.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from ..errors import ToolError, VecQError
from .options import family
from .project import RTL_DESIGN, RtlProject, load_project

DISCLAIMER = "yosys synth_xilinx mapping counts, not Vivado post-route results (no place, route or timing)"
_LTP = re.compile(r"Longest topological path in \S+ \(length=(\d+)\)")


@dataclass
class SynthReport:
    part: str
    family: str
    top: str
    luts: int
    luts_by_size: dict[str, int]
    carry: int
    carry_cells: dict[str, int]
    ffs: int
    srls: int
    dsps: int
    brams: int
    logic_depth: int | None
    cells: dict[str, int]
    seconds: float
    da4ml_cost: float
    note: str = DISCLAIMER
    design: str = RTL_DESIGN
    options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        by = ", ".join(f"{k}: {v}" for k, v in sorted(self.luts_by_size.items()))
        rows = [("LUTs", f"{self.luts}  ({by})" if by else str(self.luts)),
                ("carry cells", f"{self.carry}  " + ", ".join(f"{k}: {v}" for k, v in self.carry_cells.items())),
                ("flip-flops", str(self.ffs)),
                ("SRL shift registers", f"{self.srls} (pipeline delay lines; LUTs used as memory)"),
                ("DSPs", str(self.dsps)), ("BRAMs", str(self.brams)),
                ("logic depth", "n/a" if self.logic_depth is None else
                 f"{self.logic_depth} cells on the longest register-to-register path (LUTs and CARRY cells)"),
                ("da4ml estimate", f"{self.da4ml_cost:.0f} LUTs")]
        w = max(len(r[0]) for r in rows)
        lines = [f"yosys synth_xilinx -family {self.family} ({self.part}), top '{self.top}', {self.seconds:.1f} s",
                 f"  of the {self.design}"]
        lines += [f"  {k:<{w}}  {v}" for k, v in rows]
        lines.append(f"NOTE: {self.note}")
        return "\n".join(lines)


def _count(cells: dict[str, int], pred) -> int:
    return sum(v for k, v in cells.items() if pred(k))


def synth(project, *, part: str | None = None, dsp: bool | None = None, retime: bool | None = None,
          timeout: float = 3600, write_files: bool = True) -> SynthReport:
    """Run yosys on the project's Verilog; write ``synth/report.json`` + ``synth/yosys.log``."""
    prj = project if isinstance(project, RtlProject) else load_project(project)
    opts = prj.options
    if opts.flavor != "verilog":
        raise VecQError("synth reads the Verilog flavor", file=str(prj.path), field="options.flavor")
    yosys = shutil.which("yosys")
    if yosys is None:
        raise ToolError("yosys not found on PATH (install it: apt-get install -y yosys, or `make install`)")
    part = part or opts.part
    fam = family(part)
    dsp = opts.synth_dsp if dsp is None else dsp
    retime = opts.synth_retime if retime is None else retime
    top = prj.manifest["top"]
    design = [p for p in prj.sources() if p.parent.name != "static" and not p.name.endswith("_wrapper.v")]
    text = "".join(p.read_text() for p in design)
    # da4ml copies every primitive; read only those instantiated (lookup_table.v would want
    # memory files this design does not have)
    static = [p for p in prj.sources() if p.parent.name == "static" and re.search(rf"\b{p.stem}\s+#", text)]
    srcs = static + design
    # -noiopad: the design is a kernel inside a larger one (out of context), not a chip top
    flags = (f"-top {top} -family {fam} -flatten -noiopad" + ("" if dsp else " -nodsp")
             + (" -retime" if retime else ""))
    # logic depth: ltp -noff only knows yosys' own flip-flop types, not the mapped FD*/SRL*
    # cells, so those are deleted (after counting) to cut paths at the registers
    script = "\n".join([f"read_verilog -sv {' '.join(str(p) for p in srcs)}",
                        f"synth_xilinx {flags}",
                        "tee -o stat.json stat -json",
                        "delete t:FD* t:SRL*",
                        "ltp -noff", ""])
    out = prj.path / "synth"
    out.mkdir(exist_ok=True)
    (out / "synth.ys").write_text(script)
    t0 = time.perf_counter()
    try:
        r = subprocess.run([yosys, "-q", "-l", "yosys.log", "-s", "synth.ys"], cwd=out, capture_output=True,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolError(f"yosys timed out after {timeout:.0f} s") from None
    secs = time.perf_counter() - t0
    log = (out / "yosys.log").read_text() if (out / "yosys.log").is_file() else r.stdout + r.stderr
    if r.returncode != 0 or not (out / "stat.json").is_file():
        err = next((ln for ln in log.splitlines() if "ERROR" in ln), (r.stderr or log).strip()[-300:])
        raise ToolError(f"yosys failed: {err.strip()} (log: {out / 'yosys.log'})")
    stat = json.loads((out / "stat.json").read_text())
    design = stat.get("design") or next(iter(stat["modules"].values()))
    cells = {k: int(v) for k, v in design.get("num_cells_by_type", {}).items()}
    m = _LTP.search(log)
    lut = {k: v for k, v in cells.items() if re.fullmatch(r"LUT\d", k)}
    carry = {k: v for k, v in cells.items() if k.startswith("CARRY")}
    report = SynthReport(
        part=part, family=fam, top=top, luts=sum(lut.values()), luts_by_size=lut, carry=sum(carry.values()),
        carry_cells=carry, ffs=_count(cells, lambda k: re.fullmatch(r"FD[A-Z]*", k) is not None),
        srls=_count(cells, lambda k: k.startswith("SRL")),
        dsps=_count(cells, lambda k: k.startswith("DSP")),
        brams=_count(cells, lambda k: k.startswith("RAMB")),
        logic_depth=int(m.group(1)) if m else None, cells=cells, seconds=round(secs, 2),
        da4ml_cost=float(prj.manifest["da4ml_cost"]), options={"dsp": dsp, "retime": retime, "flags": flags})
    if write_files:
        (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report
