"""Where training runs: thread count, device choice, DataLoader workers, progress output."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import pytest
import torch
import yaml
from click.testing import CliRunner

from vecq_hw.cli import cli
from vecq_hw.errors import VecQError
from vecq_hw.train import CHECKPOINT, default_threads, train
from vecq_hw.train import runtime, trainer

ROOT = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((ROOT / "configs" / "tiny_test.yaml").read_text())


def test_default_threads_follow_available_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(runtime, "cgroup_cpu_quota", lambda *a: None)
    assert default_threads() == 4
    assert default_threads(local_world=2) == 2  # shared among this machine's ranks
    assert default_threads(local_world=8) == 1
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert default_threads() == 1  # e.g. taskset -c 3
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "zero")  # not a count: ignored
    assert default_threads() == 1


def _cgroup(tmp_path, proc_line: str, files: dict) -> tuple[str, str]:
    """A fake /proc/self/cgroup holding ``proc_line`` and a cgroup tree with ``files``."""
    for rel, text in files.items():
        (tmp_path / "fs" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "fs" / rel).write_text(text)
    (tmp_path / "cgroup").write_text(proc_line + "\n")
    return str(tmp_path / "cgroup"), str(tmp_path / "fs")


@pytest.mark.parametrize("proc_line,files,cores", [
    ("0::/user/job", {"user/job/cpu.max": "max 100000\n", "user/cpu.max": "250000 100000\n"}, 2.5),
    ("0::/job", {"job/cpu.max": "max 100000\n"}, None),                        # v2, no quota
    ("4:cpu,cpuacct:/docker/x", {"cpu,cpuacct/docker/x/cpu.cfs_quota_us": "150000\n",
                                 "cpu,cpuacct/docker/x/cpu.cfs_period_us": "100000\n"}, 1.5),
    ("1:cpu:/", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ("3:cpuset:/a", {"cpuset/a/cpu.cfs_quota_us": "100000\n"}, None),          # not the cpu controller
])
def test_cgroup_quota_v1_and_v2(tmp_path, proc_line, files, cores):
    assert runtime.cgroup_cpu_quota(*_cgroup(tmp_path, proc_line, files)) == cores


def test_cgroup_quota_caps_threads(monkeypatch, tmp_path):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    paths = _cgroup(tmp_path, "0::/job", {"job/cpu.max": "250000 100000\n"})  # 2.5 CPUs
    assert runtime.available_cores(*paths) == 2
    monkeypatch.setattr(runtime, "cgroup_cpu_quota", lambda *a: 0.5)
    assert default_threads() == 1


def test_threads_from_default_recipe_and_cli(tmp_path, mnist, monkeypatch, capsys):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    before = torch.get_num_threads()
    m = train(TINY, tmp_path / "a", plot=False, stop_after_epochs=None)  # progress on, not a tty
    assert m["threads"] == 1 and torch.get_num_threads() == before  # restored afterwards
    out, err = capsys.readouterr()
    lines = [s for s in out.splitlines() if s.startswith("[tiny_test] epoch")]
    assert len(lines) == 3 and "\r" not in out + err  # one line per epoch, no redrawn bar
    # the log says where the count came from and that results depend on it; the folder records it
    assert "1 thread(s) each (from the 1 core this process may use" in out and trainer.REPRODUCIBLE in out
    assert yaml.safe_load((tmp_path / "a" / "recipe.yaml").read_text())["train"]["threads"] == 1
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


def test_resume_keeps_the_thread_count(tmp_path, mnist, monkeypatch):
    train(TINY, tmp_path, progress=False, plot=False, threads=1, stop_after_epochs=1)
    assert torch.load(tmp_path / CHECKPOINT, weights_only=True)["threads"] == 1
    from vecq_hw.train import loop

    monkeypatch.setattr(loop, "default_threads", lambda *a, **k: 2)  # e.g. moved to a bigger machine
    m = train(TINY, tmp_path, progress=False, plot=False, resume=True)
    assert m["threads"] == 1


def test_resume_with_another_thread_count_says_so(tmp_path, mnist, capsys):
    train(TINY, tmp_path, progress=False, plot=False, threads=1, stop_after_epochs=1)
    m = train(TINY, tmp_path, plot=False, resume=True, threads=2)  # asked for: done, and logged
    assert m["threads"] == 2
    assert "the checkpoint was trained with 1: the resumed run will not equal" in capsys.readouterr().out


#: a Python loop that never sleeps, and ends with its parent
HOG = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    pass\n"


def _tables(run: Path) -> dict:
    """The integer model exported from a run: every layer's integer tables."""
    from vecq_hw.export.torch_export import export_model
    from vecq_hw.train import load_run

    model, _ = load_run(run)
    imodel = export_model(model, model.input_shape)
    return {f"{layer.name}.{f}": getattr(layer, f) for layer in imodel.layers
            for f in ("codes", "levels", "scale", "bias") if getattr(layer, f, None) is not None}


def test_same_weights_with_a_busy_core(tmp_path, mnist, monkeypatch):
    """The default thread count does not follow the load: a recipe trained beside a process that
    keeps a core busy gives the same bits as on a quieter machine (model.pt and integer tables)."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    train(TINY, tmp_path / "quiet", progress=False, plot=False)
    hog = subprocess.Popen([sys.executable, "-c", HOG])
    try:
        time.sleep(0.5)  # the busy loop runs before training starts
        busy = train(TINY, tmp_path / "busy", progress=False, plot=False)
    finally:
        hog.kill()
        hog.wait()
    assert busy["threads"] == default_threads() == runtime.available_cores()
    a, b = (torch.load(tmp_path / r / "model.pt", weights_only=True)["state_dict"] for r in ("quiet", "busy"))
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].numpy().tobytes() == b[k].numpy().tobytes(), k
    ta, tb = _tables(tmp_path / "quiet"), _tables(tmp_path / "busy")
    assert ta.keys() == tb.keys() and any(k.endswith(".codes") for k in ta)
    for k in ta:
        assert ta[k].dtype == tb[k].dtype and np.array_equal(ta[k], tb[k]), k
    if busy["threads"] > 1:  # what a count that followed the load would give: other bits, seen here
        train(TINY, tmp_path / "one", progress=False, plot=False, threads=1)
        c = torch.load(tmp_path / "one" / "model.pt", weights_only=True)["state_dict"]
        assert any(a[k].numpy().tobytes() != c[k].numpy().tobytes() for k in a)


def test_vecq_hw_sets_a_passive_openmp_wait_unless_the_user_did(monkeypatch):
    """Spinning OpenMP threads took 9x the CPU per training step and beside a busy process made
    steps 10x slower (benchmarks/results/train_threads_policy.md): `vecq-hw` sets
    OMP_WAIT_POLICY=PASSIVE for itself before anything loads torch, and keeps a user's choice."""
    import vecq_hw.cli as cli_module

    seen = []
    monkeypatch.setattr(cli_module.cli, "main", lambda **kw: seen.append(os.environ.get("OMP_WAIT_POLICY")))
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    cli_module.main(["--help"])
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    cli_module.main(["--help"])
    assert seen == ["PASSIVE", "ACTIVE"]
