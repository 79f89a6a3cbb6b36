"""Where a run executes: thread count, device, and how progress is shown."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from pathlib import Path

import torch

from ..errors import VecQError

DEVICES = ("auto", "cpu", "cuda")


def available_cores() -> int:
    """CPU cores this process may actually use: its affinity mask (taskset, cgroup cpusets,
    container limits), capped by a cgroup v2 CPU quota when there is one."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.floor(int(quota) / int(period))))
    return max(1, n)


def busy_cores(interval: float = 0.25) -> float:
    """How many of this process's CPUs other work keeps busy right now: the non-idle share of
    their time in /proc/stat over ``interval`` seconds (this process sleeps meanwhile).
    0.0 where /proc/stat cannot be read."""
    try:
        cpus = {f"cpu{i}" for i in os.sched_getaffinity(0)}
    except (AttributeError, OSError):
        cpus = None

    def sample():
        out = {}
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                name, *vals = line.split()
                if name.startswith("cpu") and name != "cpu" and (cpus is None or name in cpus):
                    v = [int(x) for x in vals[:8]]
                    out[name] = (sum(v), v[3] + v[4])  # total, idle + iowait
        return out

    try:
        a = sample()
        time.sleep(interval)
        b = sample()
    except (OSError, ValueError):
        return 0.0
    busy = 0.0
    for name, (tot, idle) in b.items():
        if name in a and tot > a[name][0]:
            dt = tot - a[name][0]
            busy += 1.0 - (idle - a[name][1]) / dt
    return max(0.0, busy)


def default_threads(local_world: int = 1, *, measure_load: bool = False) -> int:
    """torch intra-op threads when neither the recipe nor the CLI sets them.

    ``OMP_NUM_THREADS`` if set (torchrun sets it to 1 per process), else the available cores
    (:func:`available_cores`) shared among the ``local_world`` processes of this machine.
    ``measure_load=True`` (single-process training) also leaves out the cores other work
    keeps busy at the start (:func:`busy_cores`): an intra-op thread that shares a core with a
    busy process stalls every parallel region of the others (measured on 2 cores with one
    busy: 2 threads ran 7x slower than idle, 1 thread 1.7x). The count is recorded in the
    checkpoint and metrics; results depend on it (float summation order), so a resumed run
    reuses the checkpoint's count, and ``threads`` in the recipe or ``--threads`` pins it.
    """
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isascii() and env.isdigit() and int(env) > 0:
        return int(env)
    n = max(1, available_cores() // max(1, int(local_world)))
    if measure_load and n > 1:
        n = max(1, n - math.ceil(busy_cores() - 0.25))
    return n


def resolve_device(choice: str, local_rank: int = 0) -> torch.device:
    """'cpu', 'cuda' (refused without a GPU) or 'auto' (cuda if available) -> torch.device."""
    if choice not in DEVICES:
        raise VecQError(f"expected a device of {', '.join(DEVICES)}, got {choice!r}", field="device")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise VecQError("device 'cuda' requested but torch sees no CUDA GPU "
                        f"(torch {torch.__version__}); use --device cpu or auto", field="device")
    n = torch.cuda.device_count()
    if local_rank >= n:
        raise VecQError(f"local rank {local_rank} needs GPU {local_rank} but this machine has {n}; "
                        f"start at most {n} processes per node", field="device")
    return torch.device("cuda", local_rank)


def loader_workers(device: torch.device, requested: int | None) -> int:
    """DataLoader worker processes: the recipe's, else 0 on CPU (the data is already in
    memory; workers would only compete for the cores) and a few on a GPU."""
    if requested is not None:
        return int(requested)
    return 0 if device.type == "cpu" else min(4, max(1, available_cores() // 2))


def bar_wanted(progress: bool) -> bool:
    """A redrawn per-batch bar only on a terminal; logs and CI get one line per epoch."""
    if not progress:
        return False
    stream = sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


@contextlib.contextmanager
def determinism(threads: int):
    """Deterministic algorithms and ``threads`` intra-op threads for the run, then restore."""
    prev = (torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(), torch.get_num_threads())
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])
        torch.set_num_threads(prev[2])
