"""Where training runs: thread count, device choice, DataLoader workers, progress output."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from vecq_hw.cli import cli
from vecq_hw.errors import VecQError
from vecq_hw.train import CHECKPOINT, default_threads, train
from vecq_hw.train import runtime

ROOT = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((ROOT / "configs" / "tiny_test.yaml").read_text())


def test_default_threads_follow_available_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(runtime, "Path", lambda p: Path("/nonexistent/cpu.max"))  # no cgroup quota
    assert default_threads() == 4
    assert default_threads(local_world=2) == 2  # shared among this machine's ranks
    assert default_threads(local_world=8) == 1
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert default_threads() == 1  # e.g. taskset -c 3
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "zero")  # not a count: ignored
    assert default_threads() == 1


def test_cgroup_quota_caps_threads(monkeypatch, tmp_path):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    quota = tmp_path / "cpu.max"
    quota.write_text("250000 100000\n")  # 2.5 CPUs
    monkeypatch.setattr(runtime, "Path", lambda p: quota)
    assert runtime.available_cores() == 2


def test_threads_from_default_recipe_and_cli(tmp_path, mnist, monkeypatch, capsys):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    before = torch.get_num_threads()
    m = train(TINY, tmp_path / "a", plot=False, stop_after_epochs=None)  # progress on, not a tty
    assert m["threads"] == 1 and torch.get_num_threads() == before  # restored afterwards
    out, err = capsys.readouterr()
    lines = [s for s in out.splitlines() if s.startswith("[tiny_test] epoch")]
    assert len(lines) == 3 and "\r" not in out + err  # one line per epoch, no redrawn bar
    rec = copy.deepcopy(TINY)
    rec["train"]["threads"] = 2
    assert train(rec, tmp_path / "b", progress=False, plot=False)["threads"] == 2
    assert train(rec, tmp_path / "c", progress=False, plot=False, threads=1)["threads"] == 1
    res = CliRunner().invoke(cli, ["train", str(ROOT / "configs" / "tiny_test.yaml"), "--out",
                                   str(tmp_path / "d"), "--threads", "0"])
    assert res.exit_code == 2


def test_bar_only_on_a_terminal(monkeypatch):
    class Tty:
        def isatty(self):
            return True

    monkeypatch.setattr(runtime.sys, "stderr", Tty())
    assert runtime.bar_wanted(True) and not runtime.bar_wanted(False)
    monkeypatch.setattr(runtime.sys, "stderr", object())  # a log file / pipe
    assert not runtime.bar_wanted(True)


def test_device_choice(tmp_path):
    assert runtime.resolve_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():
        assert runtime.resolve_device("auto").type == "cuda"
        return
    assert runtime.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(VecQError, match="no CUDA GPU"):
        runtime.resolve_device("cuda")
    res = CliRunner().invoke(cli, ["train", str(ROOT / "configs" / "tiny_test.yaml"), "--out",
                                   str(tmp_path / "r"), "--device", "cuda"])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "cuda" in res.output


def test_loader_workers_do_not_change_results(tmp_path, mnist):
    rec = copy.deepcopy(TINY)
    train(rec, tmp_path / "w0", progress=False, plot=False, threads=1, stop_after_epochs=1)
    rec["train"]["workers"] = 2
    train(rec, tmp_path / "w2", progress=False, plot=False, threads=1, stop_after_epochs=1)
    a = torch.load(tmp_path / "w0" / CHECKPOINT, weights_only=True)
    b = torch.load(tmp_path / "w2" / CHECKPOINT, weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["history"][0]["train_loss"] == b["history"][0]["train_loss"]


def test_default_threads_leave_out_busy_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime, "available_cores", lambda: 2)
    monkeypatch.setattr(runtime, "busy_cores", lambda interval=0.25: 1.0)  # one core kept busy
    assert default_threads(measure_load=True) == 1
    assert default_threads() == 2  # distributed ranks: the share, not a load snapshot
    monkeypatch.setattr(runtime, "busy_cores", lambda interval=0.25: 0.15)  # idle machine
    assert default_threads(measure_load=True) == 2
    monkeypatch.setattr(runtime, "busy_cores", lambda interval=0.25: 2.0)
    assert default_threads(measure_load=True) == 1


def test_busy_cores_reads_proc_stat():
    b = runtime.busy_cores(0.05)
    assert 0.0 <= b <= runtime.available_cores() + 0.01


def test_resume_keeps_the_thread_count(tmp_path, mnist, monkeypatch):
    train(TINY, tmp_path, progress=False, plot=False, threads=1, stop_after_epochs=1)
    assert torch.load(tmp_path / CHECKPOINT, weights_only=True)["threads"] == 1
    from vecq_hw.train import loop

    monkeypatch.setattr(loop, "default_threads", lambda *a, **k: 2)  # the machine got idle
    m = train(TINY, tmp_path, progress=False, plot=False, resume=True)
    assert m["threads"] == 1
