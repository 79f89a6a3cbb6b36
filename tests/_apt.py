"""g++ + hls4ml's ap_types headers as an oracle for vecq_hw.fixed.

One generated C++ file holds every conversion under test as a template instance in a
function table; the binary reads a job list (one line per conversion: table, index,
count, input file, output file) so a whole test session needs one compile and one run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from vecq_hw.fixed import FixedType


def ap_types_dir() -> str | None:
    try:
        import hls4ml
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(hls4ml.__file__), "templates/vivado/ap_types")
    return path if os.path.isfile(os.path.join(path, "ap_fixed.h")) else None


def oracle_available() -> str | None:
    """None if g++ and the headers are there, else why not."""
    if shutil.which("g++") is None:
        return "g++ not found"
    if ap_types_dir() is None:
        return "hls4ml ap_types headers not found"
    return None


_PRELUDE = r"""
#include <ap_fixed.h>
#include <ap_int.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
typedef unsigned long long u64;
typedef long long i64;
template <class T> u64 bits(const T& t) { return t.range(T::width - 1, 0).to_uint64(); }
template <class T> void fd(const double* x, u64* o, long n) {
  for (long i = 0; i < n; i++) { T t = x[i]; o[i] = bits(t); }
}
template <class S, class T> void ff(const double* xd, u64* o, long n) {
  const i64* x = (const i64*)xd;
  for (long i = 0; i < n; i++) { S s; s.setBits((u64)x[i]); T t = s; o[i] = bits(t); }
}
static const char* qn(int q) {
  switch (q) { case AP_RND: return "AP_RND"; case AP_RND_ZERO: return "AP_RND_ZERO";
    case AP_RND_MIN_INF: return "AP_RND_MIN_INF"; case AP_RND_INF: return "AP_RND_INF";
    case AP_RND_CONV: return "AP_RND_CONV"; case AP_TRN: return "AP_TRN";
    case AP_TRN_ZERO: return "AP_TRN_ZERO"; } return "?"; }
static const char* on(int o) {
  switch (o) { case AP_SAT: return "AP_SAT"; case AP_SAT_ZERO: return "AP_SAT_ZERO";
    case AP_SAT_SYM: return "AP_SAT_SYM"; case AP_WRAP: return "AP_WRAP";
    case AP_WRAP_SM: return "AP_WRAP_SM"; } return "?"; }
template <int W, bool S> void pt(const ap_int_base<W, S>&) { printf("int %d %d %d AP_TRN AP_WRAP 0\n", W, W, (int)S); }
template <int W, int I, bool S, ap_q_mode Q, ap_o_mode O, int N>
void pt(const ap_fixed_base<W, I, S, Q, O, N>&) { printf("fixed %d %d %d %s %s %d\n", W, I, (int)S, qn(Q), on(O), N); }
template <class A, class B> void ar() { A a = 0; B b = 0; pt(a * b); pt(a + b); }
template <class A> void sp() { A a = 0; pt(a); }
typedef void (*Conv)(const double*, u64*, long);
typedef void (*Info)();
"""

_MAIN = r"""
int main(int argc, char** argv) {
  FILE* jobs = fopen(argv[1], "r");
  char tab, in[4096], out[4096];
  long idx, n;
  while (fscanf(jobs, " %c %ld %ld %4095s %4095s", &tab, &idx, &n, in, out) == 5) {
    if (tab == 'A' || tab == 'P') {
      (tab == 'A' ? arith : spell)[idx]();
      continue;
    }
    std::vector<double> x(n);
    std::vector<u64> y(n);
    FILE* f = fopen(in, "rb");
    if (fread(x.data(), 8, n, f) != (size_t)n) return 3;
    fclose(f);
    (tab == 'D' ? from_double : from_fixed)[idx](x.data(), y.data(), n);
    f = fopen(out, "wb");
    fwrite(y.data(), 8, n, f);
    fclose(f);
  }
  return 0;
}
"""


def cpp(t: FixedType) -> str:
    """C++ spelling with all template parameters explicit."""
    u = "" if t.signed else "u"
    if t.kind == "int":
        return f"ap_{u}int<{t.width}>"
    return f"ap_{u}fixed<{t.width},{t.integer},{t.rounding},{t.overflow},{t.sat_bits}>"


class Oracle:
    """Collect conversions, build once, run once, hand back the raw target bits."""

    def __init__(self):
        self.doubles: list[str] = []          # C++ target types
        self.fixeds: list[tuple[str, str]] = []
        self.ariths: list[tuple[str, str]] = []
        self.spells: list[str] = []
        self._jobs: list[tuple] = []

    def from_double(self, target: FixedType, x: np.ndarray) -> int:
        self.doubles.append(cpp(target))
        self._jobs.append(("D", len(self.doubles) - 1, np.asarray(x, np.float64)))
        return len(self._jobs) - 1

    def from_fixed(self, src: FixedType, target: FixedType, m: np.ndarray) -> int:
        self.fixeds.append((cpp(src), cpp(target)))
        self._jobs.append(("F", len(self.fixeds) - 1, np.asarray(m, np.int64).view(np.float64)))
        return len(self._jobs) - 1

    def arith(self, a: FixedType, b: FixedType) -> int:
        self.ariths.append((cpp(a), cpp(b)))
        self._jobs.append(("A", len(self.ariths) - 1, None))
        return len(self._jobs) - 1

    def spelling(self, text: str) -> int:
        self.spells.append(text)
        self._jobs.append(("P", len(self.spells) - 1, None))
        return len(self._jobs) - 1

    def _sources(self, parts: int) -> list[str]:
        """The program as `parts` translation units (compiled in parallel) plus main.

        Instances are grouped by target width: g++ spends most of its time
        instantiating ap_private for each width, so a width is best built once."""
        inst = [(t.split("<")[1].split(",")[0].rstrip(">"),
                 f"void fd_{i}(const double* x, u64* o, long n) {{ fd<{t} >(x, o, n); }}")
                for i, t in enumerate(self.doubles)]
        inst += [(t.split("<")[1].split(",")[0].rstrip(">"),
                  f"void ff_{i}(const double* x, u64* o, long n) {{ ff<{s}, {t} >(x, o, n); }}")
                 for i, (s, t) in enumerate(self.fixeds)]
        inst += [("0", f"void ar_{i}() {{ ar<{a}, {b} >(); }}") for i, (a, b) in enumerate(self.ariths)]
        inst += [("0", f"void sp_{i}() {{ sp<{s} >(); }}") for i, s in enumerate(self.spells)]
        inst.sort(key=lambda item: int(item[0]))
        size = -(-len(inst) // parts)
        units = [_PRELUDE + "\n".join(code for _, code in inst[p * size:(p + 1) * size])
                 for p in range(parts)]
        decl = [_PRELUDE]
        decl += [f"void fd_{i}(const double*, u64*, long);" for i in range(len(self.doubles))]
        decl += [f"void ff_{i}(const double*, u64*, long);" for i in range(len(self.fixeds))]
        decl += [f"void ar_{i}();" for i in range(len(self.ariths))]
        decl += [f"void sp_{i}();" for i in range(len(self.spells))]
        for name, kind, pre, count in (("from_double", "Conv", "fd", len(self.doubles)),
                                       ("from_fixed", "Conv", "ff", len(self.fixeds)),
                                       ("arith", "Info", "ar", len(self.ariths)),
                                       ("spell", "Info", "sp", len(self.spells))):
            decl.append(f"static const {kind} {name}[] = {{0, "
                        + ", ".join(f"{pre}_{i}" for i in range(count)) + "};")
        return units + ["\n".join(decl) + _MAIN.replace("[idx]", "[idx + 1]")]

    def build(self, workdir: Path, parts: int | None = None) -> Path:
        """Compile (or reuse a cached build of) the oracle program."""
        parts = parts or max(2, min(8, os.cpu_count() or 1))
        srcs = self._sources(parts)
        gxx = subprocess.run(["g++", "--version"], capture_output=True, text=True).stdout
        key = hashlib.sha256("\0".join([gxx, ap_types_dir(), *srcs]).encode()).hexdigest()[:20]
        cache = Path(os.environ.get("VECQ_HW_APT_CACHE",
                                    Path.home() / ".cache" / "vecq_hw" / "apt"))
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError:
            cache = Path(workdir)
        exe = cache / f"oracle_{key}"
        if exe.exists():
            return exe
        build = Path(tempfile.mkdtemp(prefix="build_", dir=cache))
        flags = ["-O1", "-std=c++14", "-w", "-I", ap_types_dir()]
        objs = [build / f"u{i}.o" for i in range(len(srcs))]
        for i, src in enumerate(srcs):
            (build / f"u{i}.cpp").write_text(src)

        def compile_one(i):
            r = subprocess.run(["g++", *flags, "-c", str(build / f"u{i}.cpp"), "-o", str(objs[i])],
                               capture_output=True, text=True)
            if r.returncode:
                raise RuntimeError(f"g++ failed on {build / f'u{i}.cpp'}:\n{r.stderr[-4000:]}")

        with ThreadPoolExecutor(max_workers=max(1, min(len(srcs), os.cpu_count() or 1))) as pool:
            list(pool.map(compile_one, range(len(srcs))))
        r = subprocess.run(["g++", *map(str, objs), "-o", str(build / "oracle")],
                           capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"link failed:\n{r.stderr[-4000:]}")
        os.replace(build / "oracle", exe)      # atomic: a half-built binary is never cached
        shutil.rmtree(build, ignore_errors=True)
        return exe

    def run(self, workdir: Path, parts: int | None = None) -> tuple[list, list[str]]:
        """Build and run; returns (per job: uint64 bits or None, printed type lines)."""
        workdir = Path(workdir)
        exe = self.build(workdir, parts)
        lines = []
        for j, (tab, idx, data) in enumerate(self._jobs):
            if data is None:
                lines.append(f"{tab} {idx} 0 - -")
            else:
                data.tofile(workdir / f"in{j}.bin")
                lines.append(f"{tab} {idx} {len(data)} {workdir / f'in{j}.bin'} {workdir / f'out{j}.bin'}")
        (workdir / "jobs.txt").write_text("\n".join(lines) + "\n")
        r = subprocess.run([str(exe), str(workdir / "jobs.txt")], capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"oracle run failed ({r.returncode}): {r.stderr[-2000:]}")
        out = [None if data is None else np.fromfile(workdir / f"out{j}.bin", dtype=np.uint64)
               for j, (_, _, data) in enumerate(self._jobs)]
        return out, r.stdout.splitlines()
