"""Data-parallel training (vecq_hw.train.dist): 2 gloo processes on CPU, 1 thread each.

Successful runs: 2 ranks hold identical weights after every epoch, and a run stopped after an
epoch and resumed ends with the same bits as an uninterrupted one. The ranks are started the
way torchrun starts them (RANK, WORLD_SIZE, MASTER_ADDR/PORT in the environment) by
tests/_dist_worker.py, without torchrun's own start-up cost; the CLI's ``--nproc`` path (which
runs torchrun) is checked for its refusals only.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from vecq_hw.cli import cli
from vecq_hw.data import make_loader
from vecq_hw.errors import RecipeError, VecQError
from vecq_hw.train import train
from vecq_hw.train.dist import EpochSampler
from vecq_hw.train.epoch import _epoch_seed
from vecq_hw.train.quantstate import state_equal

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "_dist_worker.py"
TINY = yaml.safe_load((ROOT / "configs" / "tiny_test.yaml").read_text())
# a few hundred images; adaptive VecQ with a cached step, so quantiser state is exercised
DIST = copy.deepcopy(TINY)
DIST["data"].update(train_limit=320, test_limit=51)  # 26 / 25 test images on ranks 0 / 1
DIST["quant"].update(adaptive=True, refresh_every=2)
DIST["train"].update(batch_size=64, float_epochs=1, epochs=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(args: list[str], world: int = 2, timeout: float = 300) -> None:
    port = str(_free_port())
    procs = []
    for rank in range(world):
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
        env.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                   LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                   OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
        procs.append(subprocess.Popen([sys.executable, str(WORKER), *args], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=timeout)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    for p, o in zip(procs, outs):
        assert p.returncode == 0, o[-3000:]


def _run(tmp: Path, name: str, rec: dict, stop: int | None = None) -> tuple[Path, Path]:
    recipe = tmp / f"{name}.json"
    recipe.write_text(json.dumps(rec))
    out, dump = tmp / name / "run", tmp / name / "dump"
    _launch(["train", str(recipe), str(out), str(dump)] + ([str(stop)] if stop else []))
    return out, dump


def _load(p: Path) -> dict:
    return torch.load(p, map_location="cpu", weights_only=False)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def two_runs(mnist, tmp_path_factory):
    """An uninterrupted 2-rank run ``a``, and a 2-rank run ``c`` stopped after its first epoch (a
    copy of that folder is kept for a 1-process resume) and then resumed by 2 ranks."""
    tmp = tmp_path_factory.mktemp("dist")
    a = _run(tmp, "a", DIST)
    c = _run(tmp, "c", DIST, stop=1)  # interrupted after the float epoch
    shutil.copytree(c[0], tmp / "c1" / "run")
    _run(tmp, "c", DIST)  # resumed (the worker passes --resume when the folder holds a checkpoint)
    return a, c, tmp


def _epoch(dump: Path, rank: int, epoch: int) -> dict:
    return _load(dump / f"rank{rank}-epoch{epoch}.pt")


def test_two_ranks_identical_every_epoch_and_a_resumed_run_equal(two_runs):
    (out_a, dump_a), (out_c, dump_c), _ = two_runs
    for epoch in (1, 2):
        r0, r1 = _epoch(dump_a, 0, epoch), _epoch(dump_a, 1, epoch)
        assert r0["world"] == r1["world"] == 2
        assert _same(r0["state"], r1["state"])  # weights and BatchNorm statistics
        assert state_equal(r0["quant"], r1["quant"])  # (none in the float epoch)
        # the same recipe run again (epoch 1) and resumed from its checkpoint (epoch 2): the same bits
        assert _same(_epoch(dump_c, 0, epoch)["state"], r0["state"])
        assert _same(_epoch(dump_c, 1, epoch)["state"], r0["state"])
        assert state_equal(_epoch(dump_c, 0, epoch)["quant"], r0["quant"])
    assert not _same(_epoch(dump_a, 0, 1)["state"], _epoch(dump_a, 0, 2)["state"])  # it trained
    final = _epoch(dump_a, 0, 2)
    assert any(s["step"] is not None for s in final["quant"].values())  # a cached step was kept
    # the run folders (written by rank 0) hold those weights
    for out in (out_a, out_c):
        assert _same(torch.load(out / "model.pt", weights_only=True)["state_dict"], final["state"])
    m0 = json.loads(_load(dump_a / "metrics0.pt")["metrics"])
    m1 = json.loads(_load(dump_a / "metrics1.pt")["metrics"])
    m0.pop("train_time_s"), m1.pop("train_time_s")  # each rank's own clock
    assert m0 == m1 and m0["world_size"] == 2 and m0["n_test"] == 51
    mc = json.loads(_load(dump_c / "metrics0.pt")["metrics"])
    assert {k: v for k, v in mc.items() if k != "train_time_s"} == m0
    log = [json.loads(s) for s in (out_a / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and log[-1]["test_acc"] == m0["test_acc"]
    # metrics are reduced over ranks: test accuracy counts all 51 images (k / 51)
    assert abs(m0["test_acc"] * 51 - round(m0["test_acc"] * 51)) < 1e-9


def test_resume_two_rank_checkpoint_into_one_process(two_runs):
    (out_a, _), _, tmp = two_runs
    out = tmp / "c1" / "run"  # the 2-rank run as it was after its first epoch
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["epochs_done"] == 1 and ck["world_size"] == 2 and not (out / "model.pt").exists()
    with pytest.raises(VecQError, match="--resume"):  # never thrown away without being asked
        train(DIST, out, progress=False, plot=False, threads=1, device="cpu")
    m = train(DIST, out, resume=True, progress=False, plot=False, threads=1, device="cpu")
    assert m["world_size"] == 1 and m["qat_epochs"] == 1
    log = [json.loads(s) for s in (out / "log.jsonl").read_text().splitlines()]
    first = json.loads((out_a / "log.jsonl").read_text().splitlines()[0])
    assert len(log) == 2 and {k: v for k, v in log[0].items() if k != "time_s"} == \
        {k: v for k, v in first.items() if k != "time_s"}  # the 2-rank epoch, kept
    assert torch.load(out / "checkpoint.pt", weights_only=True)["finished"]


def test_quant_state_equal_across_ranks_after_a_step(tmp_path):
    _launch(["quantstate", str(tmp_path)])
    r0, r1 = _load(tmp_path / "rank0.pt"), _load(tmp_path / "rank1.pt")
    # the ranks ran a different number of forwards (uneven evaluation), so before the
    # synchronisation their adaptive step counters differ; after it they are equal
    assert not state_equal(r0["before"], r1["before"])
    assert state_equal(r0["after"], r1["after"])
    assert _same(r0["params"], r1["params"])  # (BatchNorm statistics: averaged per epoch)


# ----------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("env,field", [
    ({"WORLD_SIZE": "2", "RANK": "0"}, "MASTER_ADDR"),                        # no rendezvous
    ({"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "127.0.0.1"}, "MASTER_PORT"),
    ({"WORLD_SIZE": "two", "RANK": "0"}, "WORLD_SIZE"),
    ({"WORLD_SIZE": "0", "RANK": "0"}, "WORLD_SIZE"),
    ({"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "RANK"),
    ({"RANK": "0"}, "WORLD_SIZE"),
])
def test_bad_world_or_missing_rendezvous_is_one_line(tmp_path, monkeypatch, env, field):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(VecQError) as ei:
        train(TINY, tmp_path / "run", progress=False, threads=1)
    msg = str(ei.value)
    assert f"${field}" in msg or f"field '{field}'" in msg, msg
    assert "\n" not in msg and not (tmp_path / "run").exists()
    res = CliRunner().invoke(cli, ["train", str(ROOT / "configs" / "tiny_test.yaml"), "--out",
                                   str(tmp_path / "run")])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and field in res.output, res.output


def test_world_size_must_split_the_batch(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "1")  # never contacted: refused before the rendezvous
    with pytest.raises(RecipeError, match=r"field 'train.batch_size'.*32.*3 processes"):
        train(TINY, tmp_path / "run", progress=False, threads=1)
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("RANK")
    recipe = str(ROOT / "configs" / "tiny_test.yaml")
    res = CliRunner().invoke(cli, ["train", recipe, "--out", str(tmp_path / "r"), "--nproc", "3"])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "train.batch_size" in res.output
    assert not (tmp_path / "r").exists()  # refused before torchrun starts
    res = CliRunner().invoke(cli, ["train", recipe, "--out", str(tmp_path / "r"), "--nproc", "0"])
    assert res.exit_code == 2


# ----------------------------------------------------------------------------- the sampler

def test_epoch_sampler_one_rank_is_the_single_process_order():
    ds = torch.utils.data.TensorDataset(torch.arange(37))
    for epoch in (0, 3):
        single = [int(v) for b in make_loader(ds, 8, shuffle=True, seed=_epoch_seed(5, epoch)) for v in b[0]]
        s = EpochSampler(ds, num_replicas=1, rank=0, seed=5, seed_fn=_epoch_seed)
        s.set_epoch(epoch)
        assert list(s) == single


def test_epoch_sampler_ranks_split_each_global_batch():
    n, world, batch = 37, 2, 8  # global batch 8 = 2 ranks x 4
    ds = torch.utils.data.TensorDataset(torch.arange(n))
    g = torch.Generator().manual_seed(_epoch_seed(5, 1))
    torch.empty((), dtype=torch.int64).random_(generator=g)  # as a shuffling DataLoader does
    perm = torch.randperm(n, generator=g).tolist()
    parts = []
    for r in range(world):
        s = EpochSampler(ds, num_replicas=world, rank=r, seed=5, seed_fn=_epoch_seed)
        s.set_epoch(1)
        parts.append(list(s))
    assert len(parts[0]) == len(parts[1]) == 19
    padded = perm + perm[:1]
    for i in range(0, 19, batch // world):
        union = sorted(parts[0][i:i + 4] + parts[1][i:i + 4])
        assert union == sorted(padded[2 * i: 2 * i + 8])
    s0 = EpochSampler(ds, num_replicas=world, rank=0, seed=5, seed_fn=_epoch_seed)
    s0.set_epoch(2)
    assert list(s0) != parts[0]  # a new order every epoch
