"""The Trainer: one training run of a recipe, epoch by epoch.

The package docstring describes the phases and the run folder; :mod:`.procedure` the hooks
through which a quantiser's own training procedure (ALQ, SQ, yours) joins in. The Trainer
calls those hooks and never names a quantiser method.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from ..data import load_dataset, make_loader, to_tensors
from ..errors import RecipeError, VecQError
from ..nn import set_quantize
from . import dist as D
from . import epoch as E
from .procedure import FLOAT, Phase, check_state_identical, phase_of, plan_phases, procedure_for
from .quantstate import load_quant_state, needs_step_sync, quant_state
from .recipe import build_recipe_model
from .runfiles import (CHECKPOINT, CKPT_VERSION, CURVE_FILE, LOG_FILE, METRICS_FILE, MODEL_FILE,
                       RECIPE_FILE, atomic_text, atomic_torch_save, load_plain, load_weights, open_run_folder,
                       rng_state, set_rng_state, write_curve)
from .runtime import bar_wanted, loader_workers

_EVAL_BATCH = 1000
#: the run's log says what a rerun must keep to get the same bits (the README says it too)
REPRODUCIBLE = ("the same recipe, seed, world size and thread count give bit-identical weights; "
                "another thread count rounds differently (torch's CPU kernels)")


class Trainer:
    """One run of a validated recipe ``rec`` into ``out`` as rank ``d`` on device ``dev``.

    :meth:`run` opens the run folder, builds the model, its quantiser's procedure, the phases
    and the data, continues from a checkpoint if there is one, trains the remaining epochs and
    writes the results. ``base``: the recipe's folder (for a relative ``data.root``).
    """

    def __init__(self, rec: dict, base: Path | None, out: Path, d: D.Dist, dev: torch.device, *,
                 progress: bool = True, plot: bool = True, rank_hook=None, threads_from: str = "the caller"):
        self.rec, self.base, self.out, self.d, self.dev = rec, base, Path(out), d, dev
        self.name = rec["name"] or f"{rec['model']['name']}_{rec['data']['dataset']}"
        self.say = progress and d.is_main
        self.bar = bar_wanted(self.say)
        self.plot, self.rank_hook, self.threads_from = plot, rank_hook, threads_from
        self.history: list[dict] = []
        self.done = 0                 # epochs finished
        self.phase: Phase | None = None
        self.opt = self.sched = None
        self.float_acc: float | None = None
        self.elapsed = 0.0

    def run(self, *, resume: bool = False, overwrite: bool = False, data_root=None,
            stop_after_epochs: int | None = None) -> dict:
        """Train to the end (or ``stop_after_epochs`` epochs of this call); returns the metrics."""
        ckpt, finished = self._open_folder(resume, overwrite)
        if finished is not None:
            return finished
        self._build(data_root)
        if ckpt is not None:
            self._resume(ckpt)
        if self.d.is_main:  # written once everything is checked (the data included): a refusal writes nothing
            if overwrite:  # now delete the earlier run's files
                open_run_folder(self.out, self.rec, resume=False, overwrite=True)
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_text(self.out / RECIPE_FILE, yaml.safe_dump(self.rec, sort_keys=False))
            atomic_text(self.out / LOG_FILE, "".join(json.dumps(h) + "\n" for h in self.history))
        # buffers: averaged per epoch instead of broadcast per forward (see dist.py)
        self.net = D.wrap(self.model, self.dev) if self.d.active else self.model
        if self.say:
            print(f"[{self.name}] {self.d.world} process(es) on {self.dev.type}, {torch.get_num_threads()} "
                  f"thread(s) each (from {self.threads_from}), epochs {self.done + 1}..{self.total_epochs}; "
                  f"{REPRODUCIBLE}", flush=True)
        ran = 0
        while self.done < self.total_epochs:
            if stop_after_epochs is not None and ran >= stop_after_epochs:
                return {"interrupted": True, "epochs_done": self.done, "total_epochs": self.total_epochs}
            self._epoch()
            ran += 1
        return self._finish()

    # ------------------------------------------------------------------------- setting up
    def _open_folder(self, resume: bool, overwrite: bool):
        """(checkpoint or None, finished metrics or None). Rank 0 alone looks at the run folder;
        the others get its verdict (an error or the checkpoint), so every rank fails or resumes
        together and no shared disk is needed."""
        verdict = None
        if self.d.is_main:
            try:
                verdict = ("ok",) + open_run_folder(self.out, self.rec, resume=resume, overwrite=overwrite,
                                                    dry_run=True)
            except VecQError as exc:
                verdict = ("error", exc)
        verdict = D.broadcast_object(self.d, verdict)
        if verdict[0] == "error":
            raise verdict[1]
        return verdict[1], verdict[2]

    def _build(self, data_root) -> None:
        """Seeds, the model (in its first phase's mode), its procedure and phases, the data."""
        seed = self.rec["train"]["seed"]
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        self.model = build_recipe_model(self.rec)
        self.proc = procedure_for(self.rec, self.model)
        self.phases = plan_phases(self.rec, self.proc)
        self.total_epochs = self.phases[-1].start + self.phases[-1].epochs
        set_quantize(self.model, self.phases[0].quantize)
        self._data(data_root)
        self.proc.set_training_data(self.train_ds)
        self.model.to(self.dev)

    def _data(self, data_root) -> None:
        """The datasets (checked against the model and the world size) and their loaders."""
        rec, d, t = self.rec, self.d, self.rec["train"]
        flatten = len(getattr(self.model, "input_shape", (1, 28, 28))) == 1
        train_ds, test_ds = _load_data(rec, resolve_data_root(rec, self.base, data_root), flatten)
        shape = tuple(train_ds.tensors[0].shape[1:])
        in_shape = tuple(getattr(self.model, "input_shape", shape))
        if shape != in_shape:
            raise RecipeError(f"model input shape {in_shape} does not fit {rec['data']['dataset']} "
                              f"samples of shape {shape}", file="<recipe>", field="model.options")
        if d.world > len(train_ds):
            raise RecipeError(f"{d.world} processes for {len(train_ds)} training samples: every process "
                              f"needs at least one", file="<recipe>", field="data.train_limit")
        workers, pin = loader_workers(self.dev, t["workers"]), self.dev.type == "cuda"
        self.sampler = D.EpochSampler(train_ds, num_replicas=d.world, rank=d.rank, seed=t["seed"],
                                      seed_fn=E._epoch_seed)
        self.train_loader = make_loader(train_ds, t["batch_size"] // d.world, sampler=self.sampler,
                                        workers=workers, pin_memory=pin)
        # evaluation: each rank a contiguous-stride shard, no padding (exact counts after reduce)
        test_part = torch.utils.data.Subset(test_ds, range(d.rank, len(test_ds), d.world))
        self.test_loader = make_loader(test_part, _EVAL_BATCH, workers=workers, pin_memory=pin)
        self.steps = len(self.train_loader)
        self.train_ds, self.n_train, self.n_test = train_ds, len(train_ds), len(test_ds)

    def _resume(self, ckpt: dict) -> None:
        """Continue from a checkpoint: weights, quantiser and procedure state, the optimizer and
        schedule of an unfinished phase, the history and the RNG."""
        self.done = int(ckpt["epochs_done"])
        self.history = list(ckpt["history"])
        self.float_acc = ckpt.get("float_test_acc")
        self.elapsed = float(ckpt.get("train_time_s", 0.0))
        last = phase_of(self.phases, self.done - 1)
        set_quantize(self.model, last.quantize)
        load_weights(self.model, ckpt["model"], self.out / CHECKPOINT, "model")
        load_quant_state(self.model, ckpt.get("quant_state", {}))
        if self.proc.key is not None:
            try:
                self.proc.load_state(ckpt.get(self.proc.key), last)
            except VecQError as exc:
                raise VecQError(exc.detail, file=str(self.out / CHECKPOINT), field=exc.field) from None
        if self.done < self.total_epochs and phase_of(self.phases, self.done) is last:
            self.phase = last
            self._new_optimizer(last)
            self.opt.load_state_dict(ckpt["optimizer"])
            self.sched.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])

    def _new_optimizer(self, phase: Phase) -> None:
        """A fresh optimizer and schedule for ``phase``, leaving out what the procedure updates."""
        skip = {id(p) for p in self.proc.excluded_parameters(phase)}
        params = [p for p in self.model.parameters() if id(p) not in skip]
        self.opt, self.sched = E._make_optimizer(self.rec, self.model, phase.lr, self.steps, phase.epochs,
                                                 params)

    # ------------------------------------------------------------------------- one epoch
    def _epoch(self) -> None:
        p = phase_of(self.phases, self.done)
        if p is not self.phase:  # a new phase: switch the layers, fresh optimizer and schedule
            self.phase = p
            set_quantize(self.model, p.quantize)
            self.proc.start_phase(p)
            self._new_optimizer(p)
        k = self.done - p.start  # the epoch within the phase, from 0
        self.sampler.set_epoch(self.done)
        self.proc.start_epoch(p, k)
        t0 = time.perf_counter()
        lr = self.opt.param_groups[0]["lr"]
        sums = self._train_pass(p, k)
        self.proc.end_epoch(p, last=k + 1 == p.epochs)
        tr_loss_s, tr_ok, tr_n, te_loss_s, te_ok, te_n = self._evaluate(sums)
        dt = time.perf_counter() - t0
        self.elapsed += dt
        self.done += 1
        fields = self.proc.progress(p)
        line = {"epoch": self.done, "phase": p.name, "phase_epoch": k + 1, "lr": lr,
                "train_loss": tr_loss_s / max(tr_n, 1), "train_acc": tr_ok / max(tr_n, 1),
                "test_loss": te_loss_s / max(te_n, 1), "test_acc": te_ok / max(te_n, 1),
                "time_s": round(dt, 3), **fields}
        self.history.append(line)
        if p.name == FLOAT and k + 1 == p.epochs:
            self.float_acc = line["test_acc"]
        if self.d.is_main:
            self._save_checkpoint(p, line)
        D.barrier(self.d)  # the checkpoint is on disk before any rank moves on (or stops)
        if self.rank_hook is not None:
            self.rank_hook(self.model, self.d, self.done)
        if self.say:
            self._print(p, line, dt, self.proc.progress_text(fields) if fields else "")

    def _train_pass(self, p: Phase, k: int) -> tuple[float, int, int]:
        """One pass over the training data with the procedure's step hooks; a quantiser state
        that shapes the next forward is broadcast from rank 0 after every step (dist.py)."""
        proc, sync = self.proc, None
        if self.d.active and needs_step_sync(self.model):
            sync = D.sync_quant_state

        def after_step(lr: float) -> None:
            proc.after_step(lr)
            if sync is not None:
                sync(self.d, self.model)

        return E._train_one_epoch(self.net, self.train_loader, self.opt, self.sched, progress=self.bar,
                                  device=self.dev, before_step=proc.before_step, after_step=after_step,
                                  loss_fn=proc.loss(p), penalty=proc.penalty,
                                  desc=f"{self.name} {p.name} {k + 1}/{p.epochs}")

    def _evaluate(self, sums) -> list[float]:
        """The test pass, then what every rank must agree on (BatchNorm statistics, quantiser
        and procedure state); returns the training and test sums over every rank."""
        d, model = self.d, self.model
        D.average_bn_stats(d, model)
        sums += E._eval_sums(model, self.test_loader, self.dev)
        D.sync_quant_state(d, model)
        totals = D.reduce_sums(d, list(sums))
        D.check_identical(d, model)
        check_state_identical(d, self.proc)
        return totals

    def _save_checkpoint(self, p: Phase, line: dict) -> None:
        atomic_torch_save({
            "version": CKPT_VERSION, "recipe": self.rec, "epochs_done": self.done,
            "phase": p.name, "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(), "rng": rng_state(), "history": self.history,
            "quant_state": quant_state(self.model), "world_size": self.d.world,
            "threads": torch.get_num_threads(),
            "float_test_acc": self.float_acc, "train_time_s": self.elapsed, "finished": False,
            **({self.proc.key: self.proc.state()} if self.proc.key is not None else {}),
        }, self.out / CHECKPOINT)
        with open(self.out / LOG_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    def _print(self, p: Phase, line: dict, dt: float, extra: str) -> None:
        text = (f"[{self.name}] epoch {self.done}/{self.total_epochs} ({p.name}): train loss "
                f"{line['train_loss']:.4f} acc {line['train_acc']:.4f} | test loss {line['test_loss']:.4f} "
                f"acc {line['test_acc']:.4f} | {dt:.1f}s{extra}")
        if self.bar:
            from tqdm.auto import tqdm

            tqdm.write(text)
        else:
            print(text, flush=True)

    # ------------------------------------------------------------------------- the end
    def _finish(self) -> dict:
        rec, t, last = self.rec, self.rec["train"], self.history[-1]
        metrics = _merge({
            "name": self.name, "model": rec["model"]["name"], "dataset": rec["data"]["dataset"],
            "quant": dict(rec["quant"]),
            "float_test_acc": self.float_acc, "qat_test_acc": last["test_acc"],
            "float_test_accuracy": self.float_acc, "qat_test_accuracy": last["test_acc"],  # aliases
            "test_acc": last["test_acc"], "test_loss": last["test_loss"],
            "train_acc": last["train_acc"], "train_loss": last["train_loss"],
            "float_epochs": t["float_epochs"], "qat_epochs": t["epochs"],
            "n_train": self.n_train, "n_test": self.n_test, "seed": t["seed"],
            "train_time_s": round(self.elapsed, 3), "threads": torch.get_num_threads(),
            "world_size": self.d.world, "device": self.dev.type,
        }, self.proc.metrics(), "metrics")
        if self.d.is_main:
            self._write_results(metrics)
        D.barrier(self.d)
        return metrics

    def _write_results(self, metrics: dict) -> None:
        rec, out, last = self.rec, self.out, self.history[-1]
        cpu_state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        blob = _merge({"version": CKPT_VERSION, "recipe": rec, "state_dict": cpu_state},
                      self.proc.model_extras(), "model_extras")
        atomic_torch_save(blob, out / MODEL_FILE)
        atomic_text(out / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
        if self.plot:
            write_curve(self.history, out / CURVE_FILE, f"{self.name}: {rec['quant']['method']} "
                        f"w{rec['quant']['bits']} (test acc {100 * last['test_acc']:.2f}%)")
        ck = load_plain(out / CHECKPOINT, "checkpoint")
        ck["finished"] = True
        atomic_torch_save(ck, out / CHECKPOINT)


def _merge(ours: dict, theirs: dict, hook: str) -> dict:
    """``ours`` then a procedure's entries, which may add but not replace."""
    clash = sorted(set(ours) & set(theirs))
    if clash:
        raise TypeError(f"the training procedure's {hook}() would replace {', '.join(clash)}")
    return {**ours, **theirs}


def resolve_data_root(rec: dict, base: Path | None, data_root) -> Path | None:
    if data_root is not None:
        return Path(data_root)
    root = rec["data"]["root"]
    if root is None:
        return None
    p = Path(root)
    return p if p.is_absolute() or base is None else base / p


def _load_data(rec: dict, root, flatten: bool):
    d = rec["data"]
    xtr, ytr = to_tensors(*load_dataset(d["dataset"], "train", root, d["train_limit"]), flatten=flatten)
    xte, yte = to_tensors(*load_dataset(d["dataset"], "test", root, d["test_limit"]), flatten=flatten)
    return torch.utils.data.TensorDataset(xtr, ytr), torch.utils.data.TensorDataset(xte, yte)
