"""Data-parallel training with torch.distributed (DDP), launched by torchrun.

``torchrun --nproc-per-node N -m vecq_hw.cli train RECIPE --out DIR`` (or ``vecq-hw train
--nproc N``, which runs torchrun itself) starts N processes; each reads its rank from the
environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
MASTER_PORT). Backend: gloo on CPU, nccl on GPUs.

How the ranks stay one model:

* the same seed builds the same initial weights everywhere, and DDP broadcasts rank 0's
  parameters when it wraps the model; gradients are averaged by DDP every step, so every
  rank applies the same update (``check_identical`` verifies it after every epoch);
* ``train.batch_size`` is the *global* batch: each rank takes ``batch_size / world`` of it
  (``EpochSampler``), so the union of the ranks' batches is the single-process batch;
* BatchNorm running statistics: DDP's per-forward broadcast of rank 0's buffers is turned
  off; instead they are ALL-REDUCED (averaged) at the end of every epoch, so the stored
  statistics are estimated from every rank's data, not from rank 0's shard only;
* quantiser running state (adaptive VecQ's cached step and call counter, SQ's sampling
  generator, :mod:`.quantstate`): BROADCAST from rank 0, after every optimizer step when a
  layer's forward reads it (``refresh_every`` > 1, SQ) and after every evaluation. A cached
  step is a deterministic function of weights that are already identical and the generators
  start from the same seed, so rank 0's copy is the right value (an average of steps would be
  the search result of no rank, an average of generator states no state at all); the
  broadcast makes that hold even where ranks ran a different number of forward passes
  (uneven evaluation shards);
* metrics (loss and accuracy sums and counts) are all-reduced: every rank reports the same;
* only rank 0 writes files (atomically); resuming reads rank 0's checkpoint and hands it to
  the other ranks, so any world size can continue any checkpoint.
"""

from __future__ import annotations

import datetime
import hashlib
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as tdist
from torch import nn
from torch.utils.data import DistributedSampler

from ..errors import ToolError, VecQError
from .quantstate import load_quant_state, quant_state

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
_TIMEOUT = datetime.timedelta(minutes=30)


@dataclass
class Dist:
    """This process's place in the run; ``world == 1`` is plain single-process training."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    owns_group: bool = False  # we initialised the process group (and destroy it)
    comm_device: torch.device = torch.device("cpu")

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int | None, low: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        if default is None:
            raise VecQError(f"torch.distributed: ${name} is not set; launch with torchrun "
                            f"(or vecq-hw train --nproc N)", field=name)
        return default
    if not (raw.isascii() and raw.strip().isdigit()) or int(raw) < low:
        raise VecQError(f"torch.distributed: expected ${name} to be an integer >= {low}, got {raw!r}",
                        field=name)
    return int(raw)


def from_env() -> Dist:
    """The rank layout torchrun put in the environment (or none: a single process).

    Refuses, with one line, a bad or partial layout: WORLD_SIZE/RANK that are not integers,
    RANK outside 0..WORLD_SIZE-1, or a multi-process world without a rendezvous address
    (MASTER_ADDR/MASTER_PORT), which would otherwise hang waiting for peers.
    """
    if tdist.is_available() and tdist.is_initialized():  # the caller set up the group
        return Dist(rank=tdist.get_rank(), world=tdist.get_world_size(),
                    local_rank=_env_int("LOCAL_RANK", 0, 0),
                    local_world=_env_int("LOCAL_WORLD_SIZE", 1, 1))
    if not any(os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")):
        return Dist()
    world = _env_int("WORLD_SIZE", None, 1)
    rank = _env_int("RANK", None, 0)
    if rank >= world:
        raise VecQError(f"torch.distributed: RANK {rank} is outside the world of WORLD_SIZE {world} "
                        f"processes (0..{world - 1})", field="RANK")
    local_rank = _env_int("LOCAL_RANK", 0, 0)
    local_world = _env_int("LOCAL_WORLD_SIZE", 1, 1)
    if world > 1:
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
        if missing:
            raise VecQError(f"torch.distributed: WORLD_SIZE={world} but no rendezvous "
                            f"(${' and $'.join(missing)} not set); launch with torchrun "
                            f"(multi-node: --nnodes, --node-rank/--rdzv-endpoint) or vecq-hw train "
                            f"--nproc N", field=missing[0])
    return Dist(rank=rank, world=world, local_rank=local_rank, local_world=local_world)


def quiet_rank() -> bool:
    """True on ranks other than 0 of a valid multi-process layout: the checks that can refuse
    a run give every rank the same verdict, so only rank 0 needs to print it."""
    try:
        d = from_env()
    except VecQError:
        return False
    return d.active and not d.is_main


def init(d: Dist, device: torch.device) -> Dist:
    """Join the process group of a multi-process world (gloo on CPU, nccl on CUDA)."""
    if not d.active:
        return d
    if not tdist.is_available():
        raise VecQError("torch.distributed is not available in this torch build", field="WORLD_SIZE")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        d.comm_device = device
    if not tdist.is_initialized():
        tdist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://",
                                 rank=d.rank, world_size=d.world, timeout=_TIMEOUT)
        d.owns_group = True
    return d


def shutdown(d: Dist) -> None:
    if d.owns_group and tdist.is_initialized():
        tdist.destroy_process_group()
        d.owns_group = False


def barrier(d: Dist) -> None:
    if d.active:
        tdist.barrier()


def broadcast_object(d: Dist, obj, src: int = 0):
    """rank ``src``'s ``obj`` on every rank (internal traffic between our own processes)."""
    if not d.active:
        return obj
    box = [obj if d.rank == src else None]
    tdist.broadcast_object_list(box, src=src, device=d.comm_device if d.comm_device.type == "cuda" else None)
    return box[0]


def reduce_sums(d: Dist, values: list[float]) -> list[float]:
    """Element-wise sum over ranks, in float64 (counts stay exact)."""
    if not d.active:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=d.comm_device)
    tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
    return t.cpu().tolist()


def average_bn_stats(d: Dist, model: nn.Module) -> None:
    """ALL-REDUCE: BatchNorm running mean/var averaged over ranks (see the module docstring)."""
    if not d.active:
        return
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            for buf in (m.running_mean, m.running_var):
                if buf is not None:
                    tdist.all_reduce(buf.data, op=tdist.ReduceOp.SUM)
                    buf.data.div_(d.world)


def sync_quant_state(d: Dist, model: nn.Module) -> None:
    """BROADCAST from rank 0: the quantisers' running state (see the module docstring)."""
    if not d.active:
        return
    state = broadcast_object(d, quant_state(model) if d.is_main else None)
    if not d.is_main:
        load_quant_state(model, state)


def fingerprint(model: nn.Module) -> str:
    """A hash of every parameter, buffer and quantiser state: equal iff identical bits."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    _hash_state(h, quant_state(model))
    return h.hexdigest()


def _hash_state(h, obj) -> None:
    if isinstance(obj, dict):
        for k in sorted(obj):
            h.update(f"{k}:".encode())
            _hash_state(h, obj[k])
    elif isinstance(obj, torch.Tensor):
        h.update(obj.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    else:
        h.update(repr(obj).encode())


def check_identical(d: Dist, model: nn.Module) -> None:
    """Raise ToolError unless every rank holds bit-identical weights and quantiser state."""
    if not d.active:
        return
    prints = [None] * d.world
    tdist.all_gather_object(prints, fingerprint(model))
    if len(set(prints)) != 1:
        bad = [r for r, p in enumerate(prints) if p != prints[0]]
        raise ToolError(f"distributed training: ranks {bad} hold different weights or quantiser "
                        f"state than rank 0; refusing to continue")


class EpochSampler(DistributedSampler):
    """A DistributedSampler whose epoch ``e`` permutation is ``torch.randperm(n)`` drawn from a
    generator seeded with ``seed_fn(seed, e)`` (``set_epoch(e)`` selects it), padded to a
    multiple of the world size as DistributedSampler pads, and dealt ``rank::world``.

    With one process this is exactly the order of ``make_loader(shuffle=True,
    seed=seed_fn(seed, e))``, the single-process order; with W processes and a per-rank
    batch of B/W, the W batches of step i together are positions [i*B, (i+1)*B) of that
    same permutation, i.e. the single-process batch of step i.
    """

    def __init__(self, dataset, *, num_replicas: int, rank: int, seed: int, seed_fn):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed,
                         drop_last=False)
        self._seed_fn = seed_fn

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(int(self._seed_fn(self.seed, self.epoch)))
        # a shuffling DataLoader first draws its workers' base seed from this generator, then
        # the permutation: drawn the same way, one process keeps the order (and results) of
        # the single-process trainer this replaces
        torch.empty((), dtype=torch.int64).random_(generator=g)
        n = len(self.dataset)
        idx = torch.randperm(n, generator=g).tolist()
        pad = self.total_size - n
        if pad > 0:
            idx += (idx * math.ceil(pad / n))[:pad]
        return iter(idx[self.rank:self.total_size:self.num_replicas])


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DDP around ``model``; buffers are not broadcast per forward (averaged per epoch)."""
    import warnings

    with warnings.catch_warnings():  # torch 2.13 deprecates the name, not the behaviour we use
        warnings.filterwarnings("ignore", message=".*broadcast_buffers.*", category=FutureWarning)
        return nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False)


def launch(nproc: int, child_args: list[str], threads: int | None = None) -> int:
    """Run ``torchrun --standalone --nproc-per-node nproc -m vecq_hw.cli train <child_args>``
    on this machine; returns its exit status. Each process gets ``threads`` intra-op threads
    (default: the available cores shared among the processes) through OMP_NUM_THREADS."""
    from .runtime import default_threads

    env = dict(os.environ)
    for k in _ENV:  # a stale layout must not leak into the launcher's children
        env.pop(k, None)
    env["OMP_NUM_THREADS"] = str(threads or default_threads(nproc))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={int(nproc)}", "-m", "vecq_hw.cli", "train", *child_args]
    return _torchrun(cmd, env)


#: torchrun's own log lines ("E1206 12:07:47.378000 13888 torch/distributed/elastic/...] ..."); its
#: report of a failed process begins with one that says "failed (exitcode: N)"
_TORCHRUN_LOG = re.compile(r"^[EWI]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ torch/distributed/")
_TORCHRUN_FAILED = re.compile(r"failed \(exitcode: ")
_EXITCODE = re.compile(r"exitcode\s*:\s*(-?\d+)")


def _torchrun(cmd: list[str], env: dict) -> int:
    """Run torchrun, passing the processes' output through as it comes and holding back its own
    log and report; when the process that failed first exited 2 (bad input: rank 0 has printed
    its one line), that report (a traceback and a summary of ~40 lines, exit 1) is dropped and
    the status is 2, as in one process. Otherwise it is printed and torchrun's status returned."""
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True, errors="replace")
    report: list[str] = []
    failed = False
    for line in proc.stderr:
        failed = failed or bool(_TORCHRUN_LOG.match(line) and _TORCHRUN_FAILED.search(line))
        if failed or _TORCHRUN_LOG.match(line):
            report.append(line)
        else:
            sys.stderr.write(line)
            sys.stderr.flush()
    rc = proc.wait()
    text = "".join(report)
    root = text.split("Root Cause", 1)[1] if "Root Cause" in text else text
    codes = _EXITCODE.findall(root)
    if rc != 0 and codes and int(codes[0]) == 2:
        return 2
    sys.stderr.write(text)
    return rc
