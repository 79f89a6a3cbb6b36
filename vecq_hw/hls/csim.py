"""C simulation with g++: build the project's top function + our exact testbench and run it.

* Compiles ``firmware/<project>.cpp`` and ``<project>_test.cpp`` against the project's copy of
  the ap_types headers and hls4ml's nnet_utils (both written into the project by hls4ml), in
  parallel, and links them. Objects and the executable are cached under ``.vecq_build/`` keyed
  by a hash of every source/header of the project plus the compiler and flags: an unchanged
  project is never rebuilt.
* Type-checks the synthesis-only code path too: a wrapper includes ap_types first, then
  defines ``__SYNTHESIS__`` and includes the top function source, compiled with
  ``-fsyntax-only`` (this is what sees e.g. the weight initialiser lists).
* Runs the testbench and parses ``MISMATCHES: m of n``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import VecQError

STD = "-std=c++11"
BUILD_DIR = ".vecq_build"
_MISMATCH = re.compile(r"^MISMATCHES: (\d+) of (\d+)\s*$", re.M)
_VALUE_MISMATCH = re.compile(r"^VALUE MISMATCHES: (\d+) of (\d+)\s*$", re.M)


class CsimError(VecQError):
    """The C simulation could not be built or run (compiler error, crash, bad test data)."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log


@dataclass
class CsimResult:
    mismatches: int
    n: int
    value_mismatches: int
    build_seconds: float
    run_seconds: float
    log: str
    cached: bool = False
    synthesis_checked: bool = False
    #: the C simulation's output mantissas, (n, n_out) int64
    outputs: np.ndarray | None = None
    n_out: int = 0

    @property
    def ok(self) -> bool:
        return self.mismatches == 0 and self.n > 0

    @property
    def n_values(self) -> int:
        return self.n * self.n_out

    def summary(self) -> str:
        verdict = "bit-exact" if self.ok else "MISMATCH"
        return (f"C simulation: {self.mismatches} mismatching samples of {self.n} "
                f"({self.value_mismatches} of {self.n_values} output values): {verdict}; "
                f"build {self.build_seconds:.1f} s{' (cached)' if self.cached else ''}, run {self.run_seconds:.1f} s"
                f"{'; synthesis path type-checked' if self.synthesis_checked else ''}")


def _compiler_id(cxx: str) -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    except (OSError, subprocess.CalledProcessError) as exc:
        raise CsimError(f"C++ compiler '{cxx}' not usable: {exc}") from None


def _content_hash(prj: Path, project: str, extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    files = [prj / f"{project}_test.cpp"]
    files += sorted(p for p in (prj / "firmware").rglob("*") if p.is_file() and p.suffix in (".h", ".cpp", ".hpp"))
    for p in files:
        h.update(str(p.relative_to(prj)).encode())
        h.update(b"\0")
        h.update(p.read_bytes())
    return h.hexdigest()[:20]


PCH_HEADERS = (
    "<iostream>", "<fstream>", "<string>", "<map>", "<vector>", '"ap_fixed.h"', '"ap_int.h"', '"hls_stream.h"',
    '"nnet_utils/nnet_types.h"', '"nnet_utils/nnet_common.h"', '"nnet_utils/nnet_helpers.h"',
    '"nnet_utils/nnet_code_gen.h"', '"nnet_utils/nnet_activation.h"', '"nnet_utils/nnet_activation_stream.h"',
    '"nnet_utils/nnet_pooling.h"', '"nnet_utils/nnet_pooling_stream.h"',
)
SYNTH_PCH_HEADERS = ("<iostream>", "<fstream>", "<string>", '"ap_fixed.h"', '"ap_int.h"', '"hls_stream.h"')


def cache_dir() -> Path:
    return Path(os.environ.get("VECQ_HW_CACHE", Path.home() / ".cache" / "vecq_hw"))


def _precompiled_header(prj: Path, cxx: str, flags: list[str], headers, tag: str, timeout) -> Path | None:
    """A shared precompiled header of hls4ml's ap_types + nnet_utils (their parsing dominates g++ time).

    Keyed by the compiler, flags and the headers' content; built once into the user cache. The
    project's own copies of these headers are then skipped by their include guards. Any failure
    just means no PCH (slower, same result).
    """
    h = hashlib.sha256((" ".join([_compiler_id(cxx), tag] + flags + list(headers))).encode())
    srcs = sorted(p for d in ("ap_types", "nnet_utils") for p in (prj / "firmware" / d).rglob("*")
                  if p.is_file() and p.name != "nnet_vecq.h")
    for p in srcs:
        h.update(str(p.relative_to(prj)).encode())
        h.update(p.read_bytes())
    key = h.hexdigest()[:20]
    final = cache_dir() / f"pch-{tag}-{key}"
    if (final / "vecq_pch.h.gch").is_file():
        return final / "vecq_pch.h"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".pch-{key}.", dir=final.parent))
        shutil.copytree(prj / "firmware" / "ap_types", tmp / "ap_types")
        shutil.copytree(prj / "firmware" / "nnet_utils", tmp / "nnet_utils")
        (tmp / "vecq_pch.h").write_text("".join(f"#include {x}\n" for x in headers))
        rc, out = _run([cxx, *flags, "-I.", "-Iap_types", "-x", "c++-header", "vecq_pch.h", "-o", "vecq_pch.h.gch"],
                       tmp, timeout)
        if rc != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        try:
            os.replace(tmp, final)
        except OSError:  # someone else built it meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
        return final / "vecq_pch.h" if (final / "vecq_pch.h.gch").is_file() else None
    except OSError:
        return None


def _run(cmd, cwd, timeout=None):
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def csim(prj_dir, *, jobs: int = 2, opt: str = "-O1", cxx: str = "g++", check_synthesis: bool = True,
         timeout: float = 600, pch: bool = True) -> CsimResult:
    """Build (cached) and run the exact testbench of a project written by :func:`write_project`."""
    prj = Path(prj_dir).resolve()
    meta_file = prj / "vecq_project.json"
    if not meta_file.is_file():
        raise CsimError(f"{prj}: not a vecq_hw HLS project (no vecq_project.json)")
    meta = json.loads(meta_file.read_text())
    project = meta["project"]
    flags = [STD, opt, "-Ifirmware", "-Ifirmware/ap_types", '-DWEIGHTS_DIR="firmware/weights"']
    key = _content_hash(prj, project, " ".join([_compiler_id(cxx)] + flags))
    bdir = prj / BUILD_DIR
    bdir.mkdir(exist_ok=True)
    exe = bdir / f"csim-{key}"
    synth_ok = bdir / f"synth-{key}.ok"
    t0 = time.perf_counter()
    cached = exe.is_file() and (synth_ok.is_file() or not check_synthesis)
    log = []
    if not cached:
        for stale in bdir.iterdir():
            if key not in stale.name:
                stale.unlink()
        wrapper = bdir / "vecq_synthesis_check.cpp"
        wrapper.write_text(
            "// synthesis-only code path: ap_types as g++ sees them, then everything Vivado would see\n"
            '#include "ap_fixed.h"\n#include "ap_int.h"\n#include "hls_stream.h"\n'
            "#define __SYNTHESIS__\n"
            f'#include "firmware/{project}.cpp"\n')
        synth_flags = [STD, "-I.", "-Ifirmware", "-Ifirmware/ap_types"]
        inc, synth_inc = [], []
        if pch:
            hdr = _precompiled_header(prj, cxx, flags, PCH_HEADERS, "csim", timeout)
            inc = ["-include", str(hdr)] if hdr else []
            if check_synthesis and not synth_ok.is_file():
                hdr = _precompiled_header(prj, cxx, synth_flags, SYNTH_PCH_HEADERS, "synth", timeout)
                synth_inc = ["-include", str(hdr)] if hdr else []
        tasks = {
            "top": [cxx, *flags, *inc, "-c", f"firmware/{project}.cpp", "-o", str(bdir / f"top-{key}.o")],
            "tb": [cxx, *flags, *inc, "-c", f"{project}_test.cpp", "-o", str(bdir / f"tb-{key}.o")],
        }
        if check_synthesis and not synth_ok.is_file():
            tasks["synthesis check"] = [cxx, *synth_flags, *synth_inc, "-fsyntax-only",
                                        str(wrapper.relative_to(prj))]
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futs = {name: pool.submit(_run, cmd, prj, timeout) for name, cmd in tasks.items()}
            results = {name: f.result() for name, f in futs.items()}
        for name, (rc, out) in results.items():
            log.append(f"$ {' '.join(tasks[name])}\n{out}")
            if rc != 0:
                raise CsimError(f"{prj}: {name} compilation failed (g++ exit {rc}): "
                                f"{_first_error(out)}", log="\n".join(log))
        if "synthesis check" in tasks:
            synth_ok.write_text("ok\n")
        rc, out = _run([cxx, str(bdir / f"top-{key}.o"), str(bdir / f"tb-{key}.o"), "-o", str(exe)], prj, timeout)
        log.append(out)
        if rc != 0:
            raise CsimError(f"{prj}: link failed: {_first_error(out)}", log="\n".join(log))
    build_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    n_samples, n_out = _data_shape(prj)
    shards = _shards(n_samples, max(1, jobs))
    procs = []
    for i, (first, count) in enumerate(shards):
        out_file = bdir / f"output-{i}.dat"
        procs.append((out_file, subprocess.Popen([str(exe), "tb_data", str(first), str(count), str(out_file)], cwd=prj,
                                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    mismatches = value_mismatches = n = 0
    outputs = []
    try:
        for out_file, proc in procs:
            try:
                out, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise CsimError(f"{prj}: testbench timed out after {timeout} s", log="\n".join(log)) from None
            log.append(out)
            m = _MISMATCH.search(out)
            if m is None or proc.returncode not in (0, 1):
                raise CsimError(f"{prj}: testbench failed (exit {proc.returncode}): "
                                f"{_first_error(out) or 'no MISMATCHES line'}", log="\n".join(log))
            v = _VALUE_MISMATCH.search(out)
            mismatches += int(m.group(1))
            n += int(m.group(2))
            value_mismatches += int(v.group(1)) if v else 0
            text = out_file.read_text()
            outputs.append(np.array(text.split(), dtype=np.int64).reshape(-1, n_out) if text.strip()
                           else np.zeros((0, n_out), dtype=np.int64))
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                proc.kill()
    run_seconds = time.perf_counter() - t1
    return CsimResult(mismatches=mismatches, n=n, value_mismatches=value_mismatches,
                      build_seconds=build_seconds, run_seconds=run_seconds, log="\n".join(log), cached=cached,
                      synthesis_checked=check_synthesis, outputs=np.concatenate(outputs), n_out=n_out)


def _data_shape(prj: Path) -> tuple[int, int]:
    """(samples, outputs per sample) from the first line of the expected-output file."""
    with open(prj / "tb_data" / "vecq_expected.dat") as f:
        n, n_out = (int(v) for v in f.readline().split())
    return n, n_out


def _shards(n: int, jobs: int) -> list[tuple[int, int]]:
    """Split n samples into at most `jobs` contiguous (first, count) runs."""
    k = max(1, min(jobs, n))
    bounds = [round(i * n / k) for i in range(k + 1)]
    return [(bounds[i], bounds[i + 1] - bounds[i]) for i in range(k)]


def _first_error(out: str) -> str:
    for line in out.splitlines():
        if "error" in line.lower():
            return line.strip()[:300]
    lines = [line for line in out.splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else ""


def clean(prj_dir) -> None:
    shutil.rmtree(Path(prj_dir) / BUILD_DIR, ignore_errors=True)
