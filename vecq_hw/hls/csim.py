"""C simulation with g++: build the project's top function + our exact testbench and run it.

* Compiles ``firmware/<project>.cpp`` and ``<project>_test.cpp`` against the project's copy of
  the ap_types headers and hls4ml's nnet_utils (both written into the project by hls4ml), in
  parallel, and links them. Objects and the executable are cached under ``.vecq_build/`` keyed
  by a hash of every source/header of the project plus the compiler and flags: an unchanged
  project is never rebuilt.
* Type-checks the synthesis-only code path too: a wrapper includes ap_types first, then
  defines ``__SYNTHESIS__`` and includes the top function source, compiled with
  ``-fsyntax-only`` (this is what sees e.g. the weight initialiser lists).
* Runs the testbench in shards (``csim_run``): no time limit unless asked for, progress on
  stderr, Ctrl-C kills the children, and finished shards are kept under ``.vecq_build/``
  keyed by the content hash of the build and of everything the testbench reads, so a re-run
  continues where the last one stopped. Each shard's ``MISMATCHES: m of n`` is parsed.

Optimisation level ``DEFAULT_OPT``: the time goes into the ap_types arithmetic of the kernels
(``ap_private`` works through ``volatile`` members, so every operation is a store and a load);
see ``benchmarks/results/csim_fullset.md`` for the profile and the levels measured (-O3: 1.3x
less CPU per image than -O1, identical outputs). No
``-march=native``: the cached executable must stay valid on any x86-64 machine sharing the
project.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import tempfile
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ToolError, VecQError
from . import csim_cache
from .csim_run import (DeadlineExceeded, Progress, Shard, ShardStore, plan, run_commands,
                       shard_size)
from .offchip import BLOB_NAME
from .synth_check import FULL_VALUES, synthesis_sources

STD = "-std=c++11"
BUILD_DIR = ".vecq_build"
#: the optimisation level of the C simulation (OLD_OPT until issue 16; kept for the benchmark)
DEFAULT_OPT = "-O3"
OLD_OPT = "-O1"
#: bump when the kept shard results change meaning
RESULTS_FORMAT = "csim-shards-1"
_MISMATCH = re.compile(r"^MISMATCHES: (\d+) of (\d+)\s*$", re.M)
_VALUE_MISMATCH = re.compile(r"^VALUE MISMATCHES: (\d+) of (\d+)\s*$", re.M)
#: what hls4ml's hls::stream prints when a kernel reads an empty stream (it then returns a zero)
_EMPTY_READ = "is read while empty"


class CsimError(ToolError):
    """The C simulation could not be built or run (compiler error, crash, bad test data, timeout)."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(" ".join(message.split()))  # one line
        self.log = log


class CsimInterrupted(KeyboardInterrupt):
    """Ctrl-C: the children were killed; the message says how far the run got (finished shards are kept)."""


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
    #: weight tables the synthesis-path check compiled by their first synth_check.FULL_VALUES values
    synthesis_cut: int = 0
    #: samples whose results were kept from an earlier, unfinished run of the same content
    resumed: int = 0
    #: CPU seconds of the testbench processes of this call (user + system)
    run_cpu_seconds: float = 0.0
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
                f"{f' ({self.resumed} samples kept from an earlier run)' if self.resumed else ''}"
                f"{'; synthesis path type-checked' if self.synthesis_checked else ''}"
                f"{self._cut_note() if self.synthesis_checked and self.synthesis_cut else ''}")

    def _cut_note(self) -> str:
        return (f" ({self.synthesis_cut} weight tables above {FULL_VALUES:,} values by their first {FULL_VALUES:,}, "
                "the rest range-checked)")


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


def _precompiled_header(prj: Path, cxx: str, flags: list[str], headers, tag: str, deadline,
                        kernels=frozenset(), cache: Path | None = None) -> Path | None:
    """A shared precompiled header of hls4ml's ap_types + nnet_utils (their parsing dominates g++ time).

    Keyed by the compiler, flags and the headers' content; built once into the user cache
    (:mod:`.csim_cache`: ``cache``, else $VECQ_HW_CACHE, else ~/.cache/vecq_hw; bounded). The
    project's own copies of these headers are then skipped by their include guards. ``kernels``:
    the file names of the registered kernel headers in nnet_utils (vecq_project.json), left out
    of the key: the PCH never includes them, so editing a kernel does not rebuild it. Any failure
    just means no PCH (slower, same result).
    """
    h = hashlib.sha256((" ".join([_compiler_id(cxx), tag] + flags + list(headers))).encode())
    srcs = sorted(p for d in ("ap_types", "nnet_utils") for p in (prj / "firmware" / d).rglob("*")
                  if p.is_file() and p.name not in kernels)
    for p in srcs:
        h.update(str(p.relative_to(prj)).encode())
        h.update(p.read_bytes())
    key = h.hexdigest()[:20]
    root = csim_cache.cache_dir(cache)
    final = root / f"pch-{tag}-{key}"
    if (final / "vecq_pch.h.gch").is_file():
        csim_cache.touch(final)
        return final / "vecq_pch.h"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".pch-{key}.", dir=final.parent))
        shutil.copytree(prj / "firmware" / "ap_types", tmp / "ap_types")
        shutil.copytree(prj / "firmware" / "nnet_utils", tmp / "nnet_utils")
        (tmp / "vecq_pch.h").write_text("".join(f"#include {x}\n" for x in headers))
        try:
            rc, out = _run([cxx, *flags, "-I.", "-Iap_types", "-x", "c++-header", "vecq_pch.h", "-o",
                            "vecq_pch.h.gch"], tmp, deadline)
        except BaseException:  # Ctrl-C or the deadline: leave no half-built folder behind
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if rc != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        try:
            os.replace(tmp, final)
        except OSError:  # someone else built it meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
        csim_cache.prune(root, keep=final)  # the cache stays within its bound
        return final / "vecq_pch.h" if (final / "vecq_pch.h.gch").is_file() else None
    except OSError:
        return None


def _run(cmd, cwd, deadline=None, env=None) -> tuple[int, str]:
    """One command, killed on Ctrl-C or at the deadline (DeadlineExceeded)."""
    got = {}
    run_commands([(0, cmd)], cwd=cwd, parallel=1, deadline=deadline, env=env,
                  on_done=lambda key, rc, out: got.update(rc=rc, out=out))
    return got["rc"], got["out"]


def default_jobs() -> int:
    """Processes run at once: twice the CPUs this process may use. A free process takes the next
    shard, so more processes than cores cost no CPU (the same CPU seconds), and beside another
    busy process they hold a larger share of the machine: with one of 2 cores busy, 4 processes
    get 8/5 cores and 2 get 4/3 (``benchmarks/results/csim_jobs.md``)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return 2 * max(1, n)


def csim(prj_dir, *, jobs: int | None = None, opt: str = DEFAULT_OPT, cxx: str = "g++", check_synthesis: bool = True,
         timeout: float | None = None, pch: bool = True, progress: bool | str = False,
         restart: bool = False, cache_dir=None) -> CsimResult:
    """Build (cached) and run the exact testbench of a project written by :func:`write_project`.

    ``jobs``: processes at once (default: :func:`default_jobs`, twice the CPUs we may use). ``timeout``: seconds for the
    whole call, build included (default: none); when it passes the children are killed and a
    :class:`CsimError` says how far it got. ``progress``: samples done / total, rate and ETA on
    stderr (True: a tqdm bar on a terminal, else a plain line at most every 10 s; or "bar",
    "lines", "off"). Shards that finished are kept, keyed by the content hash of the build and of
    the test data and weights: a call after an interrupted or timed-out one simulates only the
    rest (``restart=True`` discards them). Ctrl-C kills the children and raises
    :class:`CsimInterrupted` (a KeyboardInterrupt) saying how many samples are done.
    ``cache_dir``: where the shared precompiled headers live (:mod:`.csim_cache`; default
    $VECQ_HW_CACHE, else ~/.cache/vecq_hw); ``pch=False`` uses none.
    """
    deadline = time.monotonic() + timeout if timeout is not None else None
    jobs = default_jobs() if jobs is None else max(1, int(jobs))
    csim_cache.limit_bytes()  # a bad $VECQ_HW_CACHE_MB is refused before any work
    prj = Path(prj_dir).resolve()
    meta = read_project_meta(prj)
    project = meta["project"]
    t0 = time.perf_counter()
    try:
        exe, key, cached, log, cut = _build(prj, project, cxx=cxx, opt=opt, jobs=jobs,
                                            check_synthesis=check_synthesis, pch=pch, deadline=deadline,
                                            kernels=frozenset(meta.get("kernel_headers", ())), cache=cache_dir)
    except DeadlineExceeded:
        raise CsimError(f"{prj}: stopped by the --timeout of {timeout:g} s while compiling (no sample simulated); "
                        f"run again without --timeout or with a longer one") from None
    except KeyboardInterrupt:
        raise CsimInterrupted(f"{prj}: C simulation interrupted while compiling; no sample simulated") from None
    build_seconds = time.perf_counter() - t0
    try:
        return _run_shards(prj, exe, key, jobs=jobs, deadline=deadline, timeout=timeout, progress=progress,
                           restart=restart, log=log, build_seconds=build_seconds, cached=cached,
                           synthesis_checked=check_synthesis, synthesis_cut=cut)
    except CsimInterrupted:
        raise
    except KeyboardInterrupt:  # before the testbench processes started (hashing, loading kept shards)
        raise CsimInterrupted(f"{prj}: C simulation interrupted before it started; nothing lost") from None


def read_project_meta(prj: Path) -> dict:
    """``vecq_project.json`` of a project, checked: the names csim puts into g++ command lines and
    file paths (the top function, the kernel headers) must be what ``write_project`` writes."""
    from ..names import check_identifier
    meta_file = prj / "vecq_project.json"
    if not meta_file.is_file():
        raise VecQError("not a vecq_hw HLS project (no vecq_project.json); expected a folder written by "
                        "`vecq-hw hls`", file=prj)
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError) as exc:  # truncated, not UTF-8, not JSON
        raise VecQError(f"unreadable project description ({' '.join(str(exc).split())[:200]}); regenerate the "
                        "project with `vecq-hw hls`", file=meta_file) from None
    if not isinstance(meta, dict):
        raise VecQError("expected a JSON object", file=meta_file)
    check_identifier(meta.get("project"), "project", file=meta_file)
    headers = meta.get("kernel_headers", [])
    if not isinstance(headers, list) or not all(isinstance(h, str) and re.fullmatch(r"[\w.-]+\.h", h)
                                                for h in headers):
        raise VecQError("expected a list of header file names", file=meta_file, field="kernel_headers")
    return meta


def _build(prj: Path, project: str, *, cxx, opt, jobs, check_synthesis, pch, deadline, kernels=frozenset(),
           cache=None):
    """(executable, build key, cached?, log lines): compile and link unless the key is cached."""
    flags = [STD, opt, "-Ifirmware", "-Ifirmware/ap_types", '-DWEIGHTS_DIR="firmware/weights"']
    key = _content_hash(prj, project, " ".join([_compiler_id(cxx)] + flags))
    bdir = prj / BUILD_DIR
    bdir.mkdir(exist_ok=True)
    exe = bdir / f"csim-{key}"
    synth_ok = bdir / f"synth-{key}.ok"
    log: list[str] = []
    if exe.is_file() and (synth_ok.is_file() or not check_synthesis):
        return exe, key, True, log, _cut_tables(synth_ok)
    for stale in bdir.iterdir():  # other builds and their kept results
        if key not in stale.name:
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink()
    wrapper = bdir / "vecq_synthesis_check.cpp"
    cut = synthesis_sources(prj, project, bdir / "synth") if check_synthesis and not synth_ok.is_file() else 0
    wrapper.write_text(
        "// synthesis-only code path: ap_types as g++ sees them, then everything Vivado would see\n"
        "// (the top function's files copied to synth/, weight tables above "
        f"{FULL_VALUES} values cut: hls/synth_check.py)\n"
        '#include "ap_fixed.h"\n#include "ap_int.h"\n#include "hls_stream.h"\n'
        "#define __SYNTHESIS__\n"
        f'#include "synth/{project}.cpp"\n')
    synth_flags = [STD, "-I.", "-Ifirmware", "-Ifirmware/ap_types"]
    inc, synth_inc = [], []
    if pch:
        hdr = _precompiled_header(prj, cxx, flags, PCH_HEADERS, "csim", deadline, kernels, cache)
        inc = ["-include", str(hdr)] if hdr else []
        if check_synthesis and not synth_ok.is_file():
            hdr = _precompiled_header(prj, cxx, synth_flags, SYNTH_PCH_HEADERS, "synth", deadline, kernels,
                                      cache)
            synth_inc = ["-include", str(hdr)] if hdr else []
    tasks = {
        "top": [cxx, *flags, *inc, "-c", f"firmware/{project}.cpp", "-o", str(bdir / f"top-{key}.o")],
        "tb": [cxx, *flags, *inc, "-c", f"{project}_test.cpp", "-o", str(bdir / f"tb-{key}.o")],
    }
    if check_synthesis and not synth_ok.is_file():
        tasks["synthesis check"] = [cxx, *synth_flags, *synth_inc, "-fsyntax-only", str(wrapper.relative_to(prj))]
    results = {}
    run_commands(tasks.items(), cwd=prj, parallel=jobs, deadline=deadline,
                 on_done=lambda name, rc, out: results.__setitem__(name, (rc, out)))
    for name in tasks:
        rc, out = results[name]
        log.append(f"$ {' '.join(tasks[name])}\n{out}")
        if rc != 0:
            raise CsimError(f"{prj}: {name} compilation failed (g++ exit {rc}): {_first_error(out)}",
                            log="\n".join(log))
    if "synthesis check" in tasks:
        synth_ok.write_text(f"{cut}\n")
    rc, out = _run([cxx, str(bdir / f"top-{key}.o"), str(bdir / f"tb-{key}.o"), "-o", str(exe)], prj, deadline)
    log.append(out)
    if rc != 0:
        raise CsimError(f"{prj}: link failed: {_first_error(out)}", log="\n".join(log))
    return exe, key, False, log, _cut_tables(synth_ok)


def _cut_tables(synth_ok: Path) -> int:
    """How many tables the synthesis check compiled by a prefix (its marker file holds the count)."""
    try:
        return int(synth_ok.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _results_key(prj: Path, build_key: str) -> str:
    """Hash of the build and of every file the executable reads at run time (test data, weights)."""
    h = hashlib.sha256(f"{RESULTS_FORMAT} {build_key}".encode())
    files = sorted(p for d in ("tb_data", "firmware/weights") if (prj / d).is_dir()
                   for p in (prj / d).rglob("*") if p.is_file())
    files += [p for p in (prj / BLOB_NAME,) if p.is_file()]  # the streamed layers' codes
    for p in files:
        h.update(str(p.relative_to(prj)).encode())
        h.update(b"\0")
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:20]


def _run_shards(prj: Path, exe: Path, key: str, *, jobs, deadline, timeout, progress, restart, log, build_seconds,
                cached, synthesis_checked, synthesis_cut=0) -> CsimResult:
    bdir = prj / BUILD_DIR
    n, n_out = _data_shape(prj)
    folder = bdir / f"results-{key}-{_results_key(prj, key)}"
    for stale in bdir.glob(f"results-{key}-*"):  # the same build on other test data or weights
        if stale != folder:
            shutil.rmtree(stale, ignore_errors=True)
    store = ShardStore(folder, n, n_out)
    if restart:
        shutil.rmtree(folder, ignore_errors=True)
    kept = store.load()
    resumed = sum(s.count for s in kept)
    todo = plan(n, kept, shard_size(n, jobs))
    t1 = time.perf_counter()
    cpu0 = _children_cpu()
    mode = ("auto" if progress is True else "off" if progress is False else str(progress))
    bar = Progress(n, resumed, mode=None if mode == "auto" else mode)
    shards = list(kept)
    tmp = Path(tempfile.mkdtemp(prefix=f"run-{key}-", dir=bdir))

    def out_file(first):
        return tmp / f"output-{first}.dat"

    def finished(job, rc, out):
        first, count = job
        m = _MISMATCH.search(out)
        if _EMPTY_READ in out:  # a kernel read more than was written: the dataflow is broken
            raise CsimError(f"{prj}: samples {first}..{first + count - 1}: {_first_line_with(out, _EMPTY_READ)}",
                            log="\n".join(log + [out]))
        if m is None or rc not in (0, 1) or int(m.group(2)) != count:
            raise CsimError(f"{prj}: testbench failed on samples {first}..{first + count - 1} (exit {rc}): "
                            f"{_first_error(out) or 'no MISMATCHES line'}", log="\n".join(log + [out]))
        v = _VALUE_MISMATCH.search(out)
        text = out_file(first).read_text() if out_file(first).is_file() else ""
        outputs = np.array(text.split(), dtype=np.int64)
        if outputs.size != count * n_out:
            raise CsimError(f"{prj}: testbench wrote {outputs.size} output values for samples {first}.."
                            f"{first + count - 1}, expected {count * n_out}", log="\n".join(log + [out]))
        shard = Shard(first, count, int(m.group(1)), int(v.group(1)) if v else 0, outputs.reshape(count, n_out), out)
        store.save(shard)
        shards.append(shard)
        bar.update(count)

    tasks = [((first, count), [str(exe), "tb_data", str(first), str(count), str(out_file(first))])
             for first, count in todo]
    try:
        run_commands(tasks, cwd=prj, parallel=jobs, deadline=deadline, on_done=finished)
    except DeadlineExceeded:
        bar.close()
        done = sum(s.count for s in shards)
        raise CsimError(f"{prj}: stopped by the --timeout of {timeout:g} s with {done} of {n} samples simulated "
                        f"(finished shards are kept: run again to continue)", log="\n".join(log)) from None
    except KeyboardInterrupt:
        bar.close()
        done = sum(s.count for s in shards)
        raise CsimInterrupted(f"{prj}: C simulation interrupted with {done} of {n} samples simulated "
                              f"(kept: run again to continue)") from None
    finally:
        bar.close()
        shutil.rmtree(tmp, ignore_errors=True)
    shards.sort(key=lambda s: s.first)
    if sum(s.count for s in shards) != n:  # plan() covers every sample; this would be our bug
        raise CsimError(f"{prj}: internal error: shards cover {sum(s.count for s in shards)} of {n} samples")
    log += [s.log for s in shards]
    return CsimResult(mismatches=sum(s.mismatches for s in shards), n=n,
                      value_mismatches=sum(s.value_mismatches for s in shards), build_seconds=build_seconds,
                      run_seconds=time.perf_counter() - t1, log="\n".join(log), cached=cached,
                      synthesis_checked=synthesis_checked, synthesis_cut=synthesis_cut,
                      outputs=np.concatenate([s.outputs for s in shards]) if shards
                      else np.zeros((0, n_out), dtype=np.int64),
                      n_out=n_out, resumed=resumed, run_cpu_seconds=_children_cpu() - cpu0)


def _children_cpu() -> float:
    """CPU seconds of every reaped child process so far (only the testbench runs meanwhile)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _data_shape(prj: Path) -> tuple[int, int]:
    """(samples, outputs per sample) from the first line of the expected-output file.

    Both data files must hold a header line and then one sample a line: the testbench finds a
    shard's first sample by skipping lines."""
    shape = {}
    for name in ("vecq_input.dat", "vecq_expected.dat"):
        path = prj / "tb_data" / name
        try:
            with open(path, "rb") as f:
                head = f.readline().split()
                rows, newlines, last = 0, 0, b"\n"
                for block in iter(lambda: f.read(1 << 20), b""):
                    newlines += block.count(b"\n")
                    last = block[-1:]
                rows = newlines + (last != b"\n")
            n, width = (int(v) for v in head)
        except (OSError, ValueError) as exc:
            raise CsimError(f"{path}: unreadable test data (expected a header line 'N values_per_sample'): "
                            f"{exc}") from None
        if rows != n:
            raise CsimError(f"{path}: {rows} data lines after the header, expected {n} (one sample a line)")
        shape[name] = (n, width)
    return shape["vecq_expected.dat"]


def _first_line_with(out: str, text: str) -> str:
    return _shorten(next(line for line in out.splitlines() if text in line))


def _first_error(out: str) -> str:
    for line in out.splitlines():
        if "error" in line.lower():
            return _shorten(line)
    lines = [line for line in out.splitlines() if line.strip()]
    return _shorten(lines[-1]) if lines else ""


def _shorten(line: str, limit: int = 300) -> str:
    """The line, cut at a word boundary (never mid-word) with '...' when longer than ``limit``."""
    line = " ".join(line.split())
    if len(line) <= limit:
        return line
    cut = line.rfind(" ", 0, limit - 3)
    return line[:cut if cut > 0 else limit - 3] + " ..."


def clean(prj_dir) -> None:
    shutil.rmtree(Path(prj_dir) / BUILD_DIR, ignore_errors=True)
