"""Where a run executes: thread count, device, and how progress is shown."""

from __future__ import annotations

import contextlib
import math
import os
import sys
from pathlib import Path

import torch

from ..errors import VecQError

DEVICES = ("auto", "cpu", "cuda")


def available_cores(proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> int:
    """CPU cores this process may use: its affinity mask (taskset, cpusets), capped by a CPU
    quota of its cgroup or of any cgroup above it (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``).
    Never the load: the count must not change with what else runs."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    quota = cgroup_cpu_quota(proc_cgroup, root)
    if quota is not None:
        n = min(n, max(1, math.floor(quota)))
    return max(1, n)


def cgroup_cpu_quota(proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> float | None:
    """The smallest CPU quota (in cores) on this process's cgroup path, v1 or v2; None: none."""
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":  # v2: <root>/<path>/cpu.max = "max 100000" or "200000 100000"
            limits += [_quota(d / "cpu.max") for d in _up(Path(root), path)]
        elif "cpu" in controllers.split(","):  # v1: a cpu hierarchy, often mounted as cpu,cpuacct
            for mount in (Path(root) / controllers, Path(root) / "cpu"):
                if mount.is_dir():
                    limits += [_quota(d / "cpu.cfs_quota_us", d / "cpu.cfs_period_us") for d in _up(mount, path)]
                    break
    limits = [q for q in limits if q is not None]
    return min(limits) if limits else None


def _up(mount: Path, path: str) -> list[Path]:
    """The cgroup folder of ``path`` under ``mount`` and every folder above it up to ``mount``."""
    parts = [p for p in path.strip().split("/") if p and p != ".."]
    return [mount.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def _quota(file: Path, period_file: Path | None = None) -> float | None:
    """Cores of one quota file (v2: "quota period" in one file; v1: two files, -1 = none)."""
    try:
        if period_file is None:
            quota, period = file.read_text().split()[:2]
        else:
            quota, period = file.read_text().strip(), period_file.read_text().strip()
        if quota in ("max", "-1"):
            return None
        return int(quota) / int(period) if int(quota) > 0 and int(period) > 0 else None
    except (OSError, ValueError):
        return None


def default_threads(local_world: int = 1) -> int:
    """torch intra-op threads per process when neither the recipe nor the CLI sets them.

    ``OMP_NUM_THREADS`` if set (torchrun and ``vecq-hw train --nproc`` set it), else the
    cores this process may use (:func:`available_cores`: affinity and cgroup quota) shared
    among the ``local_world`` processes of this machine. A fixed function of the machine's
    configuration, never of its load: results depend on the count (torch's CPU kernels sum in a
    thread-count-dependent order), so the same recipe and seed must get the same count whatever
    else runs. The count is recorded in the run folder; a resumed run reuses it.

    Not more threads than cores: on 2 cores, 4 threads cost about 30 % more CPU per training
    step than 2 and were not faster idle or beside a busy process
    (``benchmarks/results/train_threads.md``); what beside a busy process made 2 threads slow was
    OpenMP's spinning wait, which ``vecq-hw`` turns off (``cli.OPENMP_ENV``).
    """
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isascii() and env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, available_cores() // max(1, int(local_world)))


def default_threads_reason(local_world: int = 1) -> str:
    """Where :func:`default_threads` got its count, for the run's log."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isascii() and env.isdigit() and int(env) > 0:
        return "$OMP_NUM_THREADS"
    n = available_cores()
    shared = f", shared by {local_world} processes" if local_world > 1 else ""
    return f"the {n} core{'s' if n > 1 else ''} this process may use{shared} (affinity, cgroup quota)"


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
