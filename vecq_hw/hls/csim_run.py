"""Running the C simulation's processes: a kill-safe scheduler, resumable shards and progress.

* :func:`run_commands` runs argv lists, at most ``parallel`` at once, each in its own process
  group (a Ctrl-C in the terminal reaches only us; we then kill every child we started, so a
  child never dies half-way and gets mistaken for a failed shard), with an optional deadline.
  While it runs, SIGINT only sets a flag that the loop checks between steps: a KeyboardInterrupt
  raised inside ``Popen`` would leave a just-started child unknown to us, and running.
* :class:`ShardStore` keeps every finished shard of a run as one JSON file in a folder named by
  the content hash of everything the testbench executable reads (build key, test data,
  runtime weights). A re-run loads them and simulates only the samples not covered yet.
* :class:`Progress`: tqdm on a terminal; otherwise one plain line at most every
  ``interval`` seconds (and a last one), never a ``\\r`` redraw, so CI logs stay readable.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: samples per shard: about 8 shards per worker, at most this many (a shard is also the unit a
#: re-run resumes from and the progress step; each testbench process loads the weights once)
MAX_SHARD = 200
SHARDS_PER_JOB = 8


class DeadlineExceeded(Exception):
    """The caller's deadline passed; every child was killed."""


def run_commands(tasks, *, cwd, parallel: int, on_done, deadline: float | None = None, poll: float = 0.02,
                 env: dict | None = None) -> None:
    """Run ``tasks`` (key, argv) with at most ``parallel`` running; ``on_done(key, rc, output)``
    is called in this thread as each ends (stdout and stderr together, as text).

    Raises :class:`DeadlineExceeded` once ``time.monotonic()`` passes ``deadline``. On that, on
    KeyboardInterrupt or on any exception from ``on_done``, every running child is killed and
    reaped before the exception propagates.
    """
    pending = list(tasks)
    running: dict = {}
    interrupted: list[int] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    except ValueError:  # not the main thread: SIGINT is not ours to handle
        previous = False
    try:
        while pending or running:
            if interrupted:
                raise KeyboardInterrupt()
            while pending and len(running) < max(1, parallel):
                key, argv = pending.pop(0)
                log = tempfile.TemporaryFile()
                proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
                running[key] = (proc, log)
            finished = [key for key, (proc, _) in running.items() if proc.poll() is not None]
            for key in finished:
                proc, log = running.pop(key)
                log.seek(0)
                out = log.read().decode(errors="replace")
                log.close()
                on_done(key, proc.returncode, out)
            if deadline is not None and time.monotonic() > deadline and (pending or running):
                raise DeadlineExceeded()
            if not finished:
                time.sleep(poll)
        if interrupted:  # the last child ended as Ctrl-C came: still an interruption
            raise KeyboardInterrupt()
    finally:
        for proc, log in running.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            log.close()
        if previous is not False:
            signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


# --------------------------------------------------------------------------- shards

@dataclass
class Shard:
    first: int
    count: int
    mismatches: int = 0
    value_mismatches: int = 0
    outputs: np.ndarray | None = None  # (count, n_out) int64
    log: str = ""


def shard_size(n: int, jobs: int) -> int:
    return max(1, min(MAX_SHARD, math.ceil(n / (max(1, jobs) * SHARDS_PER_JOB))))


def plan(n: int, done: list[Shard], size: int) -> list[tuple[int, int]]:
    """(first, count) runs of at most ``size`` covering the samples no kept shard covers."""
    todo, pos = [], 0
    for s in sorted(done, key=lambda s: s.first) + [Shard(n, 0)]:
        while pos < s.first:
            count = min(size, s.first - pos)
            todo.append((pos, count))
            pos += count
        pos = max(pos, s.first + s.count)
    return todo


class ShardStore:
    """Finished shards of one content hash, one JSON file each, written atomically."""

    def __init__(self, folder: Path, n: int, n_out: int):
        self.folder, self.n, self.n_out = folder, n, n_out

    def load(self) -> list[Shard]:
        """Every readable, well-formed kept shard; overlapping or malformed files are ignored
        (their samples are simulated again)."""
        shards: list[Shard] = []
        if not self.folder.is_dir():
            return shards
        for f in sorted(self.folder.glob("shard-*.json")):
            try:
                d = json.loads(f.read_text())
                s = Shard(int(d["first"]), int(d["count"]), int(d["mismatches"]), int(d["value_mismatches"]),
                          np.asarray(d["outputs"], dtype=np.int64).reshape(int(d["count"]), self.n_out), d["log"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if s.count > 0 and 0 <= s.first and s.first + s.count <= self.n:
                shards.append(s)
        shards.sort(key=lambda s: s.first)
        kept, end = [], 0
        for s in shards:  # a kept set never overlaps: drop any shard that would
            if s.first >= end:
                kept.append(s)
                end = s.first + s.count
        return kept

    def save(self, s: Shard) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / f"shard-{s.first:09d}-{s.count}.json"
        tmp = self.folder / f".{final.name}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"first": s.first, "count": s.count, "mismatches": s.mismatches,
                                   "value_mismatches": s.value_mismatches, "outputs": s.outputs.tolist(),
                                   "log": s.log}))
        os.replace(tmp, final)


# --------------------------------------------------------------------------- progress

def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


class Progress:
    """Samples done / total, rate and ETA on stderr (or ``stream``).

    ``mode``: "bar" (tqdm), "lines" (plain lines, at most one per ``interval`` s, plus the last
    one) or "off"; default: "bar" when the stream is a terminal, else "lines".
    """

    def __init__(self, total: int, done: int, *, mode: str | None = None, stream=None, interval: float = 10.0,
                 desc: str = "csim"):
        self.stream = stream if stream is not None else sys.stderr
        if mode is None:
            isatty = getattr(self.stream, "isatty", None)
            mode = "bar" if isatty is not None and isatty() else "lines"
        self.mode, self.total, self.done, self.start_done = mode, total, done, done
        self.interval, self.desc = interval, desc
        self.t0 = self.last = time.monotonic()
        self.bar = None
        if mode == "bar":
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=done, unit="sample", desc=desc, file=self.stream,
                            dynamic_ncols=True, smoothing=0.1)
        elif mode == "lines":
            kept = f" ({done} kept from an earlier run)" if done else ""
            self._line(f"{desc}: {done}/{total} samples{kept}")

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def line(self) -> str:
        elapsed = time.monotonic() - self.t0
        new = self.done - self.start_done
        rate = new / elapsed if elapsed > 0 else 0.0
        eta = _clock((self.total - self.done) / rate) if rate > 0 else "?"
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return (f"{self.desc}: {self.done}/{self.total} samples ({pct:.1f} %), {rate:.1f} samples/s, "
                f"elapsed {_clock(elapsed)}, ETA {eta}")

    def update(self, k: int) -> None:
        self.done += k
        if self.bar is not None:
            self.bar.update(k)
        elif self.mode == "lines":
            now = time.monotonic()
            if now - self.last >= self.interval and self.done < self.total:
                self.last = now
                self._line(self.line())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.mode == "lines":
            self._line(self.line())
            self.mode = "off"
