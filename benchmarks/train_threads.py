"""Training speed and bits per torch thread count and OpenMP wait policy, idle and with one core busy (issue 23).

    .venv/bin/python benchmarks/train_threads.py [--threads 1 2 3 4] [--steps 40] [--reps 3]

What it answers: which fixed thread count and wait policy ``vecq-hw train`` should use by
default. The count must not follow the load (the weights depend on it), so it has to do well
both on an idle machine and beside a process that keeps one core busy. Each measurement is a
fresh process (libgomp reads its wait policy when torch loads) that builds the demo recipe's
model and runs ``--steps`` Adam steps of the float phase and as many of the QAT phase (VecQ
weights, fixed-point activations) on fixed random batches of 128 MNIST-sized images, after 3
warm-up steps; it reports wall and CPU seconds per step and a hash of the final weights. The
configurations run round-robin, ``--reps`` times, each rep once idle and once beside a Python
loop that never sleeps, so that all of them see the same machine; medians are reported with
the CPU time that other processes used meanwhile (/proc/stat), which says how idle "idle" was.
Writes benchmarks/results/train_threads.{json,md} (``--name``: another name).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

from demo_busy import NOTE, RESULTS, beside, others_cores, round_robin, save

ROOT = Path(__file__).resolve().parent.parent
POLICIES = {"default": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}}

CHILD = r"""
import hashlib, json, sys, time, resource
import torch, yaml
from vecq_hw.nn import set_quantize
from vecq_hw.train.recipe import build_recipe_model, load_recipe
threads, steps = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
torch.use_deterministic_algorithms(True, warn_only=True)
torch.manual_seed(0)
rec, _ = load_recipe(sys.argv[3])
model = build_recipe_model(rec)
g = torch.Generator().manual_seed(1)
batches = [(torch.rand(128, 1, 28, 28, generator=g), torch.randint(0, 10, (128,), generator=g)) for _ in range(4)]
out = {}
for phase, quantize in (("float", False), ("qat", True)):
    set_quantize(model, quantize)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    def step(i):
        x, y = batches[i % len(batches)]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for i in range(3):
        step(i)
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for i in range(steps):
        step(i)
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    out[phase] = {"wall": (t1 - t0) / steps,
                  "cpu": (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / steps}
h = hashlib.sha256()
for v in model.state_dict().values():
    h.update(v.detach().numpy().tobytes())
out["hash"] = h.hexdigest()[:12]
r = resource.getrusage(resource.RUSAGE_SELF)
out["process_cpu"] = r.ru_utime + r.ru_stime
print(json.dumps(out))
"""


def measure(threads: int, policy: str, steps: int, busy: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **POLICIES[policy])
    env.pop("OMP_NUM_THREADS", None)
    r, wall, spent = beside(lambda: subprocess.run(
        [sys.executable, "-c", CHILD, str(threads), str(steps), str(ROOT / "configs" / "demo_lenet5_mnist_w2a8.yaml")],
        env=env, capture_output=True, text=True, check=True), busy)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["others_cores"] = others_cores(spent, out["process_cpu"], wall)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--name", default="train_threads", help="results/NAME.{json,md}")
    args = ap.parse_args(argv)
    configs = [(t, p) for t in args.threads for p in args.policies]

    def say(c, kind, m):
        return (f"{c[0]} threads, {c[1]:7s} {kind}: float {1e3 * m['float']['wall']:.0f} ms/step, "
                f"qat {1e3 * m['qat']['wall']:.0f} ms/step, others {m['others_cores']} cores, hash {m['hash']}")

    # written after every configuration: an interrupted run keeps what it measured
    round_robin(configs, args.reps, lambda c, busy: measure(c[0], c[1], args.steps, busy), say,
                after=lambda raw: write(args, raw))
    print((RESULTS / f"{args.name}.md").read_text())


def write(args, raw) -> None:
    rows = [summary(t, p, r) for (t, p), r in raw.items() if r["busy"]]
    out = {"cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "machine": platform.machine(),
           "torch": _torch_version(), "steps": args.steps, "reps": args.reps, "rows": rows,
           "raw": {f"{t} {p}": r for (t, p), r in raw.items()}}
    save(args.name, out, markdown)


def _torch_version() -> str:
    r = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True)
    return r.stdout.strip()


def summary(t: int, p: str, runs: dict) -> dict:
    def med(kind, phase, what):
        return statistics.median(m[phase][what] for m in runs[kind]) * 1e3

    row = {"threads": t, "policy": p, "hashes": sorted({m["hash"] for k in runs for m in runs[k]}),
           "others_idle": statistics.median(m["others_cores"] for m in runs["idle"]),
           "others_busy": statistics.median(m["others_cores"] for m in runs["busy"])}
    for kind in ("idle", "busy"):
        for phase in ("float", "qat"):
            row[f"{kind}_{phase}_ms"] = round(med(kind, phase, "wall"), 1)
            row[f"{kind}_{phase}_cpu_ms"] = round(med(kind, phase, "cpu"), 1)
    row["ratio"] = round((row["busy_float_ms"] + row["busy_qat_ms"]) / (row["idle_float_ms"] + row["idle_qat_ms"]), 2)
    return row


def markdown(o: dict) -> str:
    lines = ["# Training speed per torch thread count and OpenMP wait policy (`benchmarks/train_threads.py`)", "",
             f"{o['cpus']} CPUs ({o['affinity']} available), {o['machine']}, torch {o['torch']}. The demo recipe's "
             f"model, {o['steps']} Adam steps per phase on batches of 128, median of {o['reps']} interleaved reps; "
             "ms per step (CPU ms per step of the training process). \"busy\": beside a Python loop that never "
             "sleeps. \"others\": cores that other processes kept busy meanwhile (median, idle / busy runs).", "",
             "| threads | OMP wait policy | idle float | idle QAT | busy float | busy QAT | busy/idle | others | "
             "weights hash |",
             "|---:|---|---:|---:|---:|---:|---:|---|---|"]
    for r in o["rows"]:
        lines.append(f"| {r['threads']} | {r['policy']} | {r['idle_float_ms']} ({r['idle_float_cpu_ms']}) | "
                     f"{r['idle_qat_ms']} ({r['idle_qat_cpu_ms']}) | {r['busy_float_ms']} ({r['busy_float_cpu_ms']}) | "
                     f"{r['busy_qat_ms']} ({r['busy_qat_cpu_ms']}) | {r['ratio']}x | {r['others_idle']} / "
                     f"{r['others_busy']} | {', '.join(r['hashes'])} |")
    lines += ["", NOTE]
    lines += ["", "One hash per thread count (whatever the policy and the load) is what determinism needs; "
              "different counts give different hashes (torch's CPU kernels sum in a thread-count-dependent order).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
