"""The dataflow check: the generated io_stream C++ with FIFOs of their pragma depths, one thread per
process, so a FIFO too shallow for the schedule deadlocks here as it would in hardware (issue 28).

The C simulation runs the top function's processes one after the other over unbounded streams: it
proves the arithmetic, never the FIFO depths (neither does Vitis HLS's own C simulation; only
C/RTL co-simulation or the board would show a deadlock). This check builds a variant of the
project: every ``#pragma HLS STREAM variable=V depth=D`` of the top function becomes
``V.vecq_set_depth(D)`` (or the depth given in ``depths``), every process call after hls4ml's
"insert layers" marker runs in its own thread, and ``hls_templates/dataflow_check/hls_stream.h``
replaces hls::stream with a blocking FIFO of that depth that reports when every running process
waits on a FIFO (a deadlock; exit status 4, see the header for why one run decides it). The
testbench and its test data are the project's own: a run that completes also compares the
outputs exactly.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import VecQError
from .csim import BUILD_DIR, STD, CsimError, _first_error, _run
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


def threaded_top(source: str, depths: dict[str, int] | None = None) -> str:
    """The top function's source with sized FIFOs and one thread per process."""
    depths = dict(depths or {})
    if source.count(_MARKER) != 1:
        raise VecQError("internal: the top function has no hls4ml layers marker")
    head, body = source.split(_MARKER)
    lines, unused = [], set(depths)
    for line in body.splitlines():
        m = _PRAGMA.match(line)
        if m:
            unused.discard(m.group(2))
            line = f"{m.group(1)}{m.group(2)}.vecq_set_depth({int(depths.get(m.group(2), m.group(3)))});"
        m = _CALL.match(line)
        if m:
            name = m.group(3) or m.group(2).split("<", 1)[0]
            line = f'{m.group(1)}vecq_df::spawn("{name}", [&]() {{ {m.group(2)} }});'
        lines.append(line)
    if unused:
        raise VecQError(f"dataflow check: no stream named {', '.join(sorted(unused))} in the top function")
    end = max(i for i, line in enumerate(lines) if line.strip() == "}")
    lines.insert(end, "    vecq_df::join_all();")
    return head + _MARKER + "\n".join(lines) + "\n"


def dataflow_check(prj_dir, *, depths: dict[str, int] | None = None, samples: int = 2, cxx: str = "g++",
                   timeout: float = 600.0) -> DataflowResult:
    """Build the threaded variant of an io_stream project and run ``samples`` of its test vectors.

    ``depths``: {stream variable: depth} replacing the pragma depths (e.g. one FIFO a token too
    shallow). Raises CsimError when it cannot be built or fails other than by a deadlock."""
    prj = Path(prj_dir).resolve()
    meta = json.loads((prj / "vecq_project.json").read_text())
    if meta.get("io_type") != "io_stream":
        raise VecQError("the dataflow check needs an io_stream project", file=prj)
    project = meta["project"]
    work = prj / BUILD_DIR / CHECK_DIR
    shutil.rmtree(work, ignore_errors=True)
    (work / "include").mkdir(parents=True)
    shutil.copy(TEMPLATE_DIR / CHECK_DIR / "hls_stream.h", work / "include" / "hls_stream.h")
    top = work / f"{project}.cpp"
    top.write_text(threaded_top((prj / "firmware" / f"{project}.cpp").read_text(), depths))
    exe = work / "check"
    flags = [STD, "-O2", "-pthread", f"-I{work / 'include'}", "-Ifirmware", "-Ifirmware/ap_types",
             '-DWEIGHTS_DIR="firmware/weights"']
    deadline = time.monotonic() + float(timeout)
    try:
        rc, out = _run([cxx, *flags, str(top), f"{project}_test.cpp", "-o", str(exe)], prj, deadline)
        if rc != 0:
            raise CsimError(f"{prj}: dataflow check build failed: {_first_error(out)}", log=out)
        rc, out = _run([str(exe), "tb_data", "0", str(int(samples))], prj, deadline)
    except DeadlineExceeded:
        raise CsimError(f"{prj}: dataflow check did not finish in {timeout:g} s") from None
    if rc == 4 and "DEADLOCK" in out:
        return DataflowResult(True, None, int(samples), out)
    m = _MISMATCHES.search(out)
    if rc not in (0, 1) or m is None:
        raise CsimError(f"{prj}: dataflow check failed (exit {rc}): {_first_error(out)}", log=out)
    return DataflowResult(False, int(m.group(1)), int(m.group(2)), out)


__all__ = ["DataflowResult", "dataflow_check", "threaded_top"]
