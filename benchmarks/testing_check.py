"""What ``vecq_hw.testing.check`` costs a user's CI (issue 26 item 3): writes
benchmarks/results/testing_check.json and testing_check.md.

Per model: ``check(model_dir, x)`` over sim, csim and rtlsim with an empty ProjectCache (the
first test of a fresh CI job: the HLS project is written and compiled with g++, the RTL written
and Verilated), then again on the same cache (every later test, and every later session that
keeps the cache folder), each stage's seconds; then one weight bit flipped in the first layer's
two table copies of a copy of the cached project (recompiled) and the seconds until check names
that layer. Inputs: edge_inputs + saturating_inputs(8) + random_inputs(``--n``). The machine's
load average is recorded with the times (a shared machine makes them upper bounds).

Usage: python benchmarks/testing_check.py [--n 200] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "tests"))  # test_testing's table helpers: the same flip the test makes

from vecq_hw.ir.examples import random_mlp  # noqa: E402
from vecq_hw.ir.io import load_model, save_model  # noqa: E402
from vecq_hw.testing import ProjectCache, check, edge_inputs, random_inputs, saturating_inputs  # noqa: E402

MODELS = {"mlp 12-8-4, k=2": dict(bits=2, seed=11, sizes=(12, 8, 4)),
          "mlp 32-16-10, k=2": dict(bits=2, seed=3, sizes=(32, 16, 10)),
          "mlp 64-32-10, k=4": dict(bits=4, seed=5, sizes=(64, 32, 10))}


def stage_seconds(result) -> dict:
    return {s.stage: round(s.seconds, 2) for s in result.stages.values()}


def flipped(model_dir: Path, cache: ProjectCache, x: np.ndarray, work: Path) -> dict:
    from test_testing import _flip_bit, _table_of
    prj = work / "flipped"
    shutil.copytree(cache.hls(model_dir), prj, symlinks=True)
    first = load_model(model_dir).layers[1].name
    txt = _table_of(prj, load_model(model_dir), first)
    _flip_bit(txt.with_suffix(".h"), _flip_bit(txt))
    t0 = time.perf_counter()
    try:
        check(model_dir, x, ["csim"], hls_project=prj, cache=cache)
        message = None
    except AssertionError as exc:
        message = str(exc)
    return {"seconds": round(time.perf_counter() - t0, 2), "names_first_layer":
            bool(message and message.startswith(f"csim: layer '{first}' (the first layer that differs")),
            "message": message}


def measure(name: str, spec: dict, n: int, work: Path) -> dict:
    bits = spec.pop("bits")
    model = random_mlp(bits, **spec)
    model_dir = save_model(model, work / "model").path
    cache = ProjectCache(work / "cache")
    x = np.concatenate([edge_inputs(model), saturating_inputs(model, 8), random_inputs(model, n)])
    row = {"model": name, "inputs": len(x), "load_before": round(os.getloadavg()[0], 1)}
    for label in ("cold", "cached"):
        t0 = time.perf_counter()
        result = check(model_dir, x, cache=cache, on_missing="report")
        row[label] = {"total": round(time.perf_counter() - t0, 2), **stage_seconds(result),
                      "status": {s.stage: s.status for s in result.stages.values()}}
    row["flipped_bit"] = flipped(model_dir, cache, x, work)
    row["load_after"] = round(os.getloadavg()[0], 1)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| model | inputs | cold: total (csim, rtlsim) s | cached: total (csim, rtlsim) s | flipped bit: s, names layer | load |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        c, w, f = r["cold"], r["cached"], r["flipped_bit"]
        lines.append(f"| {r['model']} | {r['inputs']} | {c['total']} ({c.get('csim')}, {c.get('rtlsim')}) | "
                     f"{w['total']} ({w.get('csim')}, {w.get('rtlsim')}) | {f['seconds']}, "
                     f"{'yes' if f['names_first_layer'] else 'NO'} | {r['load_before']} -> {r['load_after']} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="random inputs besides the edge and saturating ones")
    ap.add_argument("--work", default=None, help="work folder (default: a temporary one, removed)")
    args = ap.parse_args(argv)
    rows = []
    for name, spec in MODELS.items():
        work = Path(tempfile.mkdtemp(prefix="vecq_bench_check_", dir=args.work))
        try:
            rows.append(measure(name, dict(spec), args.n, work))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    out = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
           "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "testing_check.json").write_text(json.dumps(out, indent=1) + "\n")
    md = ["# vecq_hw.testing.check: what a user's CI pays", "",
          "`python benchmarks/testing_check.py` (cold = empty project cache: HLS written and compiled with g++, RTL "
          "written and Verilated; cached = the same call again; flipped bit = one code of the first layer flipped "
          "in both table copies of a copy of the project, recompiled, until check names the layer). Wall seconds "
          f"on a shared {os.cpu_count()}-CPU machine whose 1-minute load average is given: upper bounds.", "",
          table(rows), ""]
    (RESULTS / "testing_check.md").write_text("\n".join(md))
    print(table(rows))


if __name__ == "__main__":
    main()
