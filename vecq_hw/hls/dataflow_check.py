"""The dataflow check: the generated io_stream C++ with FIFOs of their pragma depths, one thread per
process, so a FIFO too shallow for the schedule deadlocks here as it would in hardware (issue 28).

The C simulation runs the top function's processes one after the other over unbounded streams: it
proves the arithmetic, never the FIFO depths (neither does Vitis HLS's own C simulation; only
C/RTL co-simulation or the board would show a deadlock). This check builds a variant of the
project: every ``#pragma HLS STREAM variable=V depth=D`` of the top function becomes
``V.vecq_set_depth(D)`` (D, or the depth ``depths`` gives for this run), every process call after hls4ml's
"insert layers" marker runs in its own thread, and ``hls_templates/dataflow_check/hls_stream.h``
replaces hls::stream with a blocking FIFO of that depth that reports when every running process
waits on a FIFO (a deadlock; exit status 4, see the header for why one run decides it). The
testbench and its test data are the project's own: a run that completes also compares the
outputs exactly.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import VecQError
from .csim import (BUILD_DIR, PCH_HEADERS, STD, CsimError, _content_hash, _first_error, _precompiled_header, _run,
                   default_jobs)
from .csim_run import run_commands
from .csim_run import DeadlineExceeded
from .layers import TEMPLATE_DIR

CHECK_DIR = "dataflow_check"
_MARKER = "// hls-fpga-machine-learning insert layers"
_CALL = re.compile(r"^(\s*)(nnet::\w+<.*>\(.*\);)\s*(?://\s*(\S+))?\s*$")
_PRAGMA = re.compile(r"^(\s*)#pragma HLS STREAM variable=(\w+) depth=(\d+)\s*$")
_MISMATCHES = re.compile(r"^MISMATCHES: (\d+) of (\d+)\s*$", re.M)


@dataclass
class DataflowResult:
    deadlock: bool
    mismatches: int | None  # None when it did not complete
    n: int
    log: str

    @property
    def ok(self) -> bool:
        return not self.deadlock and self.mismatches == 0


def threaded_top(source: str) -> tuple[str, list[str]]:
    """The top function's source with sized FIFOs and one thread per process, and the names of
    its FIFOs (each one's depth is its pragma's unless VECQ_DF_DEPTHS overrides it at run time)."""
    if source.count(_MARKER) != 1:
        raise VecQError("internal: the top function has no hls4ml layers marker")
    head, body = source.split(_MARKER)
    lines, fifos = [], []
    for line in body.splitlines():
        m = _PRAGMA.match(line)
        if m:
            fifos.append(m.group(2))
            line = f'{m.group(1)}{m.group(2)}.vecq_set_depth(vecq_df::depth("{m.group(2)}", {m.group(3)}));'
        m = _CALL.match(line)
        if m:
            name = m.group(3) or m.group(2).split("<", 1)[0]
            line = f'{m.group(1)}vecq_df::spawn("{name}", [&]() {{ {m.group(2)} }});'
        lines.append(line)
    end = max(i for i, line in enumerate(lines) if line.strip() == "}")
    lines.insert(end, "    vecq_df::join_all();")
    return head + _MARKER + "\n".join(lines) + "\n", fifos


def _build(prj: Path, project: str, work: Path, *, cxx: str, opt: str, deadline, kernels) -> Path:
    """Compile the threaded top and the testbench (in parallel, with a precompiled header of
    ap_types, nnet_utils and our hls_stream.h) and link them; cached by the sources' content."""
    header = TEMPLATE_DIR / CHECK_DIR / "hls_stream.h"
    flags = [STD, opt, "-pthread", f"-I{work / 'include'}", "-Ifirmware", "-Ifirmware/ap_types",
             '-DWEIGHTS_DIR="firmware/weights"']
    digest = hashlib.sha256(header.read_bytes()).hexdigest()[:12]
    key = _content_hash(prj, project, " ".join([cxx, digest] + flags))
    exe = work / f"check-{key}"
    if exe.is_file():
        return exe
    shutil.rmtree(work, ignore_errors=True)
    (work / "include").mkdir(parents=True)
    shutil.copy(header, work / "include" / "hls_stream.h")
    (work / f"{project}.cpp").write_text(threaded_top((prj / "firmware" / f"{project}.cpp").read_text())[0])
    pch = _precompiled_header(prj, cxx, flags, PCH_HEADERS, f"dfcheck-{digest}", deadline, kernels)
    inc = ["-include", str(pch)] if pch else []
    objs = {"top": work / "top.o", "tb": work / "tb.o"}
    tasks = {"top": [cxx, *flags, *inc, "-c", str(work / f"{project}.cpp"), "-o", str(objs["top"])],
             "tb": [cxx, *flags, *inc, "-c", f"{project}_test.cpp", "-o", str(objs["tb"])]}
    results = {}
    run_commands(tasks.items(), cwd=prj, parallel=default_jobs(), deadline=deadline,
                 on_done=lambda name, rc, out: results.__setitem__(name, (rc, out)))
    for name, (rc, out) in results.items():
        if rc != 0:
            raise CsimError(f"{prj}: dataflow check: {name} compilation failed: {_first_error(out)}", log=out)
    rc, out = _run([cxx, "-pthread", str(objs["top"]), str(objs["tb"]), "-o", str(exe)], prj, deadline)
    if rc != 0:
        raise CsimError(f"{prj}: dataflow check: link failed: {_first_error(out)}", log=out)
    return exe


def dataflow_check(prj_dir, *, depths: dict[str, int] | None = None, samples: int = 2, cxx: str = "g++",
                   opt: str = "-O0", timeout: float = 600.0) -> DataflowResult:
    """Build (cached) the threaded variant of an io_stream project and run ``samples`` of its test
    vectors. ``depths``: {stream variable: depth} replacing pragma depths for this run (e.g. one
    FIFO a token too shallow). Raises CsimError when it cannot be built or fails other than by a
    deadlock."""
    prj = Path(prj_dir).resolve()
    meta = json.loads((prj / "vecq_project.json").read_text())
    if meta.get("io_type") != "io_stream":
        raise VecQError("the dataflow check needs an io_stream project", file=prj)
    project = meta["project"]
    streams = threaded_top((prj / "firmware" / f"{project}.cpp").read_text())[1]
    unknown = sorted(set(depths or {}) - set(streams))
    if unknown:
        raise VecQError(f"dataflow check: no FIFO named {', '.join(unknown)} in the top function", file=prj)
    deadline = time.monotonic() + float(timeout)
    env = dict(os.environ, VECQ_DF_DEPTHS=",".join(f"{k}={int(v)}" for k, v in (depths or {}).items()))
    try:
        exe = _build(prj, project, prj / BUILD_DIR / CHECK_DIR, cxx=cxx, opt=opt, deadline=deadline,
                     kernels=frozenset(meta.get("kernel_headers", ())))
        rc, out = _run([str(exe), "tb_data", "0", str(int(samples))], prj, deadline, env=env)
    except DeadlineExceeded:
        raise CsimError(f"{prj}: dataflow check did not finish in {timeout:g} s") from None
    if rc == 4 and "DEADLOCK" in out:
        return DataflowResult(True, None, int(samples), out)
    m = _MISMATCHES.search(out)
    if rc not in (0, 1) or m is None:
        raise CsimError(f"{prj}: dataflow check failed (exit {rc}): {_first_error(out)}", log=out)
    return DataflowResult(False, int(m.group(1)), int(m.group(2)), out)


__all__ = ["DataflowResult", "dataflow_check", "threaded_top"]
