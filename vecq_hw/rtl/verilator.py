"""``build``, ``predict_rtl`` and ``predict_interp``: output mantissas of the Verilated design and
of the traced graph (executed exactly by :mod:`.interp`) for given input mantissas.

The harness is da4ml's own binder (``hdl/sim/<top>_wrapper_binder.cc``: bit packing, clocking
a pipelined design for its latency) behind a small ``main`` of ours that reads and writes
int32 files, built into one executable with ``verilator --exe --build``. The executable is
keyed by a hash of every HDL source, so an unchanged project is never rebuilt and an edited
one always is.

Nothing here runs the simulator or compares: ``vecq_hw.flow.simulate_rtl`` compares both
predictions with the simulator's outputs exactly (as the HLS C simulation's expectation comes
from the flow).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ToolError, VecQError
from .project import RtlProject, load_project

_MAIN = r"""// vecq_hw RTL harness: int32 mantissas in, int32 raw output fields out (da4ml binder packing)
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "%(binder)s"

int main(int argc, char **argv) {
    if (argc != 4) { std::fprintf(stderr, "usage: %%s IN OUT N\n", argv[0]); return 2; }
    size_t n = std::strtoull(argv[3], nullptr, 10);
    typedef %(top)s_wrapper_config C;
    std::vector<int32_t> inp(n * C::N_inp), out(n * C::N_out);
    FILE *f = std::fopen(argv[1], "rb");
    if (!f || std::fread(inp.data(), 4, inp.size(), f) != inp.size()) { std::fprintf(stderr, "bad input file\n"); return 2; }
    std::fclose(f);
    batch_inference<C>(inp.data(), out.data(), n, 1);
    f = std::fopen(argv[2], "wb");
    if (!f || std::fwrite(out.data(), 4, out.size(), f) != out.size()) { std::fprintf(stderr, "cannot write output\n"); return 2; }
    std::fclose(f);
    return 0;
}
"""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolError(f"{name} not found on PATH (install it: apt-get install -y {name}, or `make install`)")
    return path


def _source_hash(prj: RtlProject) -> str:
    h = hashlib.sha256()
    for p in prj.sources() + [prj.hdl / "sim" / f"{prj.manifest['top']}_wrapper_binder.cc"]:
        h.update(str(p.relative_to(prj.path)).encode())
        h.update(p.read_bytes())
    h.update(_MAIN.encode())
    return h.hexdigest()[:16]


@dataclass
class BuildResult:
    executable: Path
    seconds: float
    cached: bool


def build(project, *, jobs: int = 2, timeout: float = 3600) -> BuildResult:
    """Verilate and compile the project's harness (cached on the sources' hash)."""
    prj = project if isinstance(project, RtlProject) else load_project(project)
    if prj.options.flavor != "verilog":
        raise VecQError("rtlsim needs the Verilog flavor (VHDL would need GHDL)", file=str(prj.path),
                        field="options.flavor")
    verilator = _tool("verilator")
    top = prj.manifest["top"]
    wrapper = f"{top}_wrapper"
    sim = prj.hdl / "sim"
    stamp = _source_hash(prj)
    exe = sim / f"vecq_harness_{stamp}"
    if exe.is_file():
        return BuildResult(exe, 0.0, True)
    for old in sim.glob("vecq_harness_*"):
        old.unlink()
    t0 = time.perf_counter()
    main = sim / "vecq_main.cpp"
    main.write_text(_MAIN % {"binder": f"{wrapper}_binder.cc", "top": top})
    obj = sim / "obj_vecq"
    shutil.rmtree(obj, ignore_errors=True)
    # -O0 everywhere: a build of many small adders is dominated by compile time, and the run
    # is a few thousand vectors; -Wno-fatal: lint warnings in generated code are not failures
    cmd = [verilator, "--cc", "--exe", "--build", "-j", str(jobs), "-Wno-fatal", "--Mdir", str(obj),
           "--prefix", f"V{wrapper}", "-o", exe.name, "-CFLAGS", f"-std=c++17 -I{sim}",
           "-MAKEFLAGS", "OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0",
           f"-I{prj.hdl / 'src'}", f"-I{prj.hdl / 'src' / 'static'}", f"{wrapper}.v", str(main)]
    try:
        r = subprocess.run(cmd, cwd=sim, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolError(f"verilator build timed out after {timeout:.0f} s") from None
    built = obj / exe.name
    if r.returncode != 0 or not built.is_file():
        log = (r.stdout + r.stderr).strip().splitlines()
        first = next((ln for ln in log if "%Error" in ln or "error:" in ln), log[-1] if log else "")
        (sim / "verilator_build.log").write_text(r.stdout + r.stderr)
        raise ToolError(f"verilator build failed: {first.strip()} (log: {sim / 'verilator_build.log'})")
    built.rename(exe)
    shutil.rmtree(obj, ignore_errors=True)
    return BuildResult(exe, time.perf_counter() - t0, False)


def _kifs(qints):
    from da4ml.types import minimal_kif
    return np.array([minimal_kif(q) for q in qints], dtype=np.int64).reshape(-1, 3)


def predict_rtl(project, x_mantissa: np.ndarray, *, build_result: BuildResult | None = None,
                timeout: float = 3600) -> np.ndarray:
    """Output mantissas (N, n_out) int64 of the Verilated design for input mantissas."""
    prj = project if isinstance(project, RtlProject) else load_project(project)
    exe = (build_result or build(prj)).executable
    comb = prj.comb()
    n = x_mantissa.shape[0]
    x = np.asarray(x_mantissa, dtype=np.int64).reshape(n, -1)
    model_in = prj.manifest["input_type"]
    from ..fixed import FixedType
    tin, tout = FixedType.parse(model_in), FixedType.parse(prj.manifest["output_type"])
    # the binder takes floor(value * 2**f_in) with f_in the widest input grid: our mantissas,
    # shifted if da4ml tracks a different grid (never coarser: inputs are quantised to tin)
    f_in = int(_kifs(comb.inp_qint)[:, 2].max())
    shift_in = f_in - tin.frac
    raw_in = x << shift_in if shift_in >= 0 else x >> -shift_in
    k, i, f = _kifs(comb.out_qint).max(axis=0)
    bw = int(k + i + f)
    work = prj.hdl / "sim"
    fin, fout = work / "vecq_inputs.bin", work / "vecq_outputs.bin"
    raw_in.astype(np.int32).tofile(fin)
    try:
        r = subprocess.run([str(exe), str(fin), str(fout), str(n)], capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolError(f"RTL simulation timed out after {timeout:.0f} s") from None
    if r.returncode != 0:
        raise ToolError(f"RTL simulation failed (exit {r.returncode}): {(r.stderr or r.stdout).strip()[:300]}")
    raw = np.fromfile(fout, dtype=np.int32).astype(np.int64).reshape(n, -1)
    fin.unlink()
    fout.unlink()
    # each output is a bw-bit field (sign-extended inside the wrapper when signed) at grid 2**-f
    raw &= (1 << bw) - 1
    if k:
        raw = np.where(raw >= 1 << (bw - 1), raw - (1 << bw), raw)
    sh = int(tout.frac - f)
    if sh >= 0:
        return raw << sh
    if np.any(raw & ((1 << -sh) - 1)):
        raise ToolError(f"RTL outputs are not on the grid of {tout}")
    return raw >> -sh


def predict_interp(project, x_mantissa: np.ndarray) -> np.ndarray:
    """Output mantissas (N, n_out) of the traced graph (``comb.json``), executed exactly by
    :func:`.interp.run_comb` (da4ml's own C++ interpreter wraps values over 32 bits wrongly)."""
    from ..fixed import FixedType
    from .interp import run_comb
    prj = project if isinstance(project, RtlProject) else load_project(project)
    tin, tout = FixedType.parse(prj.manifest["input_type"]), FixedType.parse(prj.manifest["output_type"])
    n = x_mantissa.shape[0]
    return run_comb(prj.comb(), np.asarray(x_mantissa, dtype=np.int64).reshape(n, -1), tin.frac, tout.frac)
