"""Running the C simulation: no fixed time limit, --timeout, Ctrl-C, resuming kept shards, progress.

One small CNN project (real g++, built once) with enough samples that its run takes seconds;
the timed-out and the interrupted runs are checked against one uninterrupted run of the same
project and against the simulator, value for value.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vecq_hw.hls import csim, write_project
from vecq_hw.hls.csim import BUILD_DIR
from vecq_hw.hls.csim_run import Progress, Shard, ShardStore, plan
from vecq_hw.ir.examples import random_cnn, random_inputs
from vecq_hw.sim import simulate

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")

N = 1500  # a 16x16 CNN: ~2 ms a sample, so one process needs seconds for them all
PROGRESS_LINE = re.compile(r"^csim: \d+/1500 samples")


def vecq_hw(*args, **kw):
    return subprocess.run([sys.executable, "-m", "vecq_hw.cli", *map(str, args)], capture_output=True, text=True,
                          **kw)


def _drop_kept_results(prj: Path) -> None:
    for d in (prj / BUILD_DIR).glob("results-*"):
        shutil.rmtree(d)


def _kept_shards(prj: Path) -> list[Path]:
    return sorted((prj / BUILD_DIR).glob("results-*/shard-*.json"))


def _running_children(exe_dir: Path) -> list[int]:
    """pids of processes running an executable from the project's build folder."""
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if Path(os.readlink(p / "exe")).parent == exe_dir:
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    model = random_cnn(2, seed=3, size=16, channels=(8, 24))
    x = random_inputs(model, N, seed=4)
    y = np.asarray(simulate(model, x_mantissa=x).output, dtype=np.int64)
    prj = write_project(model, tmp_path_factory.mktemp("csim_run") / "prj", expected=(x, y))
    ref = csim(prj, jobs=2)  # uninterrupted, no time limit (builds the executable once)
    assert ref.n == N and ref.resumed == 0 and ref.mismatches == 0 and ref.value_mismatches == 0, ref.log[-2000:]
    np.testing.assert_array_equal(ref.outputs, y.reshape(N, -1))
    return prj, ref


def test_timeout_fails_with_one_line_and_a_rerun_completes(project):
    prj, ref = project
    _drop_kept_results(prj)
    res = vecq_hw("csim", prj, "--timeout", "1", "--jobs", "1")
    assert res.returncode == 3, res.stderr
    err = [line for line in res.stderr.splitlines() if not PROGRESS_LINE.match(line)]
    assert len(err) == 1 and err[0].startswith("error: ") and "--timeout of 1 s" in err[0], res.stderr
    done = int(re.search(r"with (\d+) of 1500 samples simulated", err[0]).group(1))
    assert done < N
    assert sum(int(p.stem.split("-")[2]) for p in _kept_shards(prj)) == done
    assert not _running_children(prj / BUILD_DIR)
    # without --timeout the same command completes, starting from the kept samples
    res = vecq_hw("csim", prj)
    assert res.returncode == 0, res.stderr
    assert "0 mismatching samples of 1500 (0 of 15000 output values): bit-exact" in res.stdout
    assert (f"({done} samples kept from an earlier run)" in res.stdout) == (done > 0)


def test_interrupted_run_resumes_to_the_same_totals(project):
    prj, ref = project
    _drop_kept_results(prj)
    proc = subprocess.Popen([sys.executable, "-m", "vecq_hw.cli", "csim", str(prj), "--jobs", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while not _kept_shards(prj) and proc.poll() is None and time.monotonic() - t0 < 300:
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    last = err.splitlines()[-1]
    m = re.match(r"interrupted: .* with (\d+) of 1500 samples simulated \(kept: run again to continue\)$", last)
    assert m, err
    done = int(m.group(1))
    assert 0 < done < N
    assert not _running_children(prj / BUILD_DIR)  # the testbench processes were stopped
    # stderr is a pipe here: progress is plain lines, no carriage-return redraws
    assert "\r" not in err
    lines = err.splitlines()[:-1]
    assert lines and all(PROGRESS_LINE.match(line) for line in lines), err
    assert lines[0] == "csim: 0/1500 samples"
    # the re-run simulates only the rest and gives exactly the uninterrupted run's totals
    again = csim(prj, jobs=2)
    assert again.resumed == done
    assert (again.n, again.mismatches, again.value_mismatches) == (ref.n, ref.mismatches, ref.value_mismatches)
    np.testing.assert_array_equal(again.outputs, ref.outputs)
    # and a third call reuses everything
    third = csim(prj, jobs=2)
    assert third.resumed == N and third.cached
    np.testing.assert_array_equal(third.outputs, ref.outputs)


def test_plan_covers_exactly_the_samples_not_kept():
    kept = [Shard(2, 3), Shard(7, 1)]
    assert plan(10, kept, 2) == [(0, 2), (5, 2), (8, 2)]
    assert plan(4, [], 3) == [(0, 3), (3, 1)]
    assert plan(5, [Shard(0, 5)], 2) == []


def test_store_ignores_malformed_and_overlapping_shards(tmp_path):
    store = ShardStore(tmp_path / "r", n=10, n_out=2)
    store.save(Shard(0, 2, 0, 0, np.array([[1, 2], [3, 4]])))
    store.save(Shard(1, 2, 0, 0, np.array([[5, 6], [7, 8]])))  # overlaps the first one: dropped
    store.save(Shard(8, 2, 1, 1, np.array([[9, 9], [9, 9]])))
    (tmp_path / "r" / "shard-000000004-2.json").write_text('{"first": 4, "count": 2')  # cut short
    kept = store.load()
    assert [(s.first, s.count) for s in kept] == [(0, 2), (8, 2)]
    assert kept[1].mismatches == 1 and kept[1].outputs.tolist() == [[9, 9], [9, 9]]


def test_progress_lines_when_not_a_terminal():
    stream = io.StringIO()  # not a tty
    p = Progress(100, 20, stream=stream, interval=0.0)
    for _ in range(4):
        p.update(20)
    p.close()
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0] == "csim: 20/100 samples (20 kept from an earlier run)"
    assert [int(re.match(r"csim: (\d+)/100 samples \(", line).group(1)) for line in lines[1:]] == [40, 60, 80, 100]
    assert all("samples/s" in line and "ETA" in line for line in lines[1:])


def test_error_lines_are_cut_at_a_word_boundary():
    """#11 item 7: a compiler's long assertion line must not end mid-word."""
    from vecq_hw.hls.csim import _first_error

    words = "nnet_pooling.h:42: assertion failed: " + " ".join(f"word{i:03d}" for i in range(80))
    line = _first_error("note: something\n" + words + "\n")
    assert len(line) <= 300 and line.endswith(" ...")
    kept = line[:-4].split(" ")
    assert all(w in words.split(" ") for w in kept)  # every word kept whole
    assert _first_error("short error: x\n") == "short error: x"


def test_default_jobs_are_twice_the_usable_cores(monkeypatch):
    """A free testbench process takes the next shard, so more processes than cores cost no CPU,
    and beside a busy process they get a larger share of the machine
    (benchmarks/results/csim_jobs.md): twice the cores of the affinity mask, not of the machine."""
    from vecq_hw.hls.csim import default_jobs

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 5, 6}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert default_jobs() == 6
