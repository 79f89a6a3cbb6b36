"""The simulator with numpy's BLAS on 1 or 2 threads, idle and with one core busy (issue 23).

    .venv/bin/python benchmarks/sim_blas.py [--n 8192] [--reps 3]

The simulator accumulates in float32/float64 GEMMs (exact: every partial sum is an integer the
float holds) on chunks of about a hundred samples, so its GEMMs are small. ``simulate`` runs
them on one BLAS thread (``vecq_hw.sim.simulator.one_blas_thread``); this measures why: the
paper-size LeNet-5 of ``sim_throughput.py`` on ``--n`` random inputs, counting overflows as the
demo does, with the BLAS limited to 1 and to 2 threads, round-robin, each once idle and once
beside a Python loop that never sleeps. Wall and CPU seconds (the process's threads), and the
CPU time other processes used meanwhile (/proc/stat). The outputs are checked equal.
Writes benchmarks/results/sim_blas.{json,md}.
"""

from __future__ import annotations

import argparse
import resource
import sys

import numpy as np
from threadpoolctl import threadpool_limits

from demo_busy import beside, idle_busy_table, line, others_cores, round_robin, save_idle_busy
from sim_throughput import lenet5

from vecq_hw.sim import simulator



def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(model, x, threads: int, busy: bool) -> tuple[dict, np.ndarray]:
    simulator.one_blas_thread = lambda: threadpool_limits(limits=threads, user_api="blas")
    c0 = cpu()
    out, wall, spent = beside(lambda: simulator.simulate(model, x, count_overflow=True).output, busy)
    used = cpu() - c0
    return {"wall_s": round(wall, 2), "cpu_s": round(used, 2), "others_cores": others_cores(spent, used, wall)}, out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    model = lenet5(rng)
    t = model.input.out_type
    x = rng.uniform(t.min_value, t.max_value, size=(args.n,) + tuple(model.input.shape))
    outputs = []

    def checked(n, busy):
        m, out = measure(model, x, n, busy)
        outputs.append(out)
        assert np.array_equal(out, outputs[0]), "the BLAS thread count changed the simulator's integers"
        return m

    raw = round_robin((1, 2), args.reps, checked, lambda n, kind, m: f"{n} BLAS thread(s) {kind}: {line(m)}")
    save_idle_busy("sim_blas", raw, "blas_threads", markdown, n=args.n, reps=args.reps)


def markdown(o: dict) -> str:
    return idle_busy_table(
        "The simulator's BLAS threads (`benchmarks/sim_blas.py`)",
        f"{o['cpus']} CPUs; paper-size LeNet-5 (32C5-64C5-FC512 as in `sim_throughput.py`), {o['n']} random "
        f"inputs, overflows counted (the demo's call); median of {o['reps']} interleaved reps. \"busy\": "
        "beside a Python loop that never sleeps; \"others\": cores other processes kept busy meanwhile. "
        "Identical outputs in every run.", "BLAS threads", "blas_threads", o["rows"])


if __name__ == "__main__":
    sys.exit(main())
