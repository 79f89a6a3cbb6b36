"""C-simulation wall time per number of testbench processes, idle and with one core busy (issue 23).

    .venv/bin/python benchmarks/csim_jobs.py HLS_PROJECT [--jobs 2 3 4] [--reps 2]

HLS_PROJECT: a project written by ``vecq-hw hls`` or the demo (e.g. DEMO/hls_prj), built once
beforehand by this script. Every run simulates all its test vectors from scratch
(``restart=True``: no kept shards) with ``jobs`` processes; the configurations run round-robin,
each once idle and once beside a Python loop that never sleeps, with the CPU time other
processes used meanwhile (/proc/stat). Shards are scheduled dynamically (a free process takes
the next one), so ``jobs`` above the core count only changes how the cores are shared.
Writes benchmarks/results/csim_jobs.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from demo_busy import beside, idle_busy_table, line, others_cores, round_robin, save_idle_busy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def measure(prj: Path, jobs: int, busy: bool) -> dict:
    from vecq_hw.hls.csim import csim

    r, wall, spent = beside(lambda: csim(prj, jobs=jobs, restart=True, check_synthesis=False), busy)
    assert r.cached and r.ok, r.summary()
    return {"wall_s": round(wall, 2), "cpu_s": round(r.run_cpu_seconds, 2),
            "others_cores": others_cores(spent, r.run_cpu_seconds, wall)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("project")
    ap.add_argument("--jobs", type=int, nargs="+", default=[2, 3, 4])
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args(argv)
    from vecq_hw.hls.csim import csim

    prj = Path(args.project).resolve()
    first = csim(prj, check_synthesis=False)  # the build (cached for every measured run)
    raw = round_robin(args.jobs, args.reps, lambda j, busy: measure(prj, j, busy),
                      lambda j, kind, m: f"{j} jobs {kind}: {line(m)}")
    save_idle_busy("csim_jobs", raw, "jobs", markdown, samples=first.n, reps=args.reps)


def markdown(o: dict) -> str:
    return idle_busy_table(
        "C simulation per number of testbench processes (`benchmarks/csim_jobs.py`)",
        f"{o['cpus']} CPUs; the demo's HLS project, {o['samples']} samples simulated from scratch per run, "
        f"median of {o['reps']} interleaved reps. \"busy\": beside a Python loop that never sleeps; "
        "\"others\": cores other processes kept busy meanwhile.", "processes", "jobs", o["rows"])


if __name__ == "__main__":
    main()
