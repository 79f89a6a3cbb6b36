"""The training loop (see the package docstring for the phases and the run folder)."""

from __future__ import annotations

import contextlib
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from ..data import load_dataset, make_loader, to_tensors
from ..errors import RecipeError, VecQError
from ..models import build_model
from ..recipe import RUNTIME_KEYS, load_recipe, recipe_model_options
from . import dist as D
from .alq_schedule import ALQSchedule, alq_counts, load_alq_counts
from .alq_schedule import check_identical as alq_check_identical
from .quantstate import load_quant_state, needs_step_sync, quant_state
from .sq_schedule import set_sq_ratio, stage_ratio
from .runfiles import (CHECKPOINT, CKPT_VERSION, CURVE_FILE, LOG_FILE, METRICS_FILE, MODEL_FILE,
                       RECIPE_FILE, RUN_FILES, atomic_text, atomic_torch_save, load_plain,
                       rng_state, set_rng_state)
from .runtime import (bar_wanted, default_threads, determinism, loader_workers, resolve_device)

_EVAL_BATCH = 1000


# ----------------------------------------------------------------------------- helpers

def set_weight_bits(model: nn.Module, bits: int | None) -> int:
    """Set the weight bit width of every VecQ layer (None = float); returns how many."""
    n = 0
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)) and hasattr(m, "bits"):
            setter = getattr(m, "set_bits", None)
            if callable(setter):
                setter(bits)
            elif bits is None and hasattr(m, "quantize"):
                m.quantize = False  # float mode, keeping the layer's configured bits
            else:
                m.bits = bits
                if hasattr(m, "quantize"):
                    m.quantize = bits is not None
            n += 1
    return n


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 1) % (2**63 - 1)


def _phases(rec: dict) -> list[dict]:
    t = rec["train"]
    out = []
    if t["float_epochs"]:
        out.append({"name": "float", "epochs": t["float_epochs"], "lr": t["lr"], "bits": None})
    bits = rec["quant"]["bits"]
    if rec["quant"]["method"] == "alq":  # ALQ's loss-aware steps + pruning, then STE (alq_schedule.py)
        la = t["alq"]["loss_aware_epochs"]
        out.append({"name": "alq", "epochs": la, "lr": t["qat_lr"], "bits": bits})
        if t["epochs"] > la:
            out.append({"name": "qat", "epochs": t["epochs"] - la, "lr": t["qat_lr"], "bits": bits})
    else:
        out.append({"name": "qat", "epochs": t["epochs"], "lr": t["qat_lr"], "bits": bits})
    start = 0
    for p in out:
        p["start"] = start
        start += p["epochs"]
    return out


def _phase_of(phases: list[dict], epoch: int) -> dict:
    for p in phases:
        if p["start"] <= epoch < p["start"] + p["epochs"]:
            return p
    raise AssertionError(epoch)


def _make_optimizer(rec: dict, model: nn.Module, lr: float, steps_per_epoch: int, epochs: int,
                    params=None):
    """``params``: what the optimizer trains (default every parameter of ``model``; ALQ's
    loss-aware phase leaves out the ALQ weights, which its own steps update)."""
    t = rec["train"]
    params = list(model.parameters()) if params is None else params
    if t["optimizer"] == "adam":
        opt = torch.optim.Adam(params, lr=lr, weight_decay=t["weight_decay"])
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=t["momentum"],
                              weight_decay=t["weight_decay"])
    total = max(1, steps_per_epoch * epochs)
    kind, step_size, gamma = t["lr_schedule"], t["step_size"], t["gamma"]

    def factor(it: int) -> float:  # stepped once per batch; a Python float: the lr lands in
        if kind == "cosine":       # the checkpoint, which holds plain data only
            return float(0.5 * (1.0 + np.cos(np.pi * min(it, total) / total)))
        if kind == "step":
            return float(gamma ** ((it // max(1, steps_per_epoch)) // step_size))
        return 1.0

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return opt, sched


def _eval_sums(model: nn.Module, loader, device=None) -> tuple[float, int, int]:
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    n = 0
    with torch.no_grad():
        for x, y in loader:
            if device is not None:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            out = model(x)
            loss_sum += nn.functional.cross_entropy(out, y, reduction="sum").double()
            correct += (out.argmax(1) == y).sum()
            n += int(y.numel())
    model.train(was_training)
    return float(loss_sum), int(correct), n


def evaluate(model: nn.Module, loader, device=None) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` in eval mode over ``loader``."""
    loss_sum, correct, n = _eval_sums(model, loader, device)
    return loss_sum / max(n, 1), correct / max(n, 1)


def _train_one_epoch(model, loader, opt, sched, *, desc: str, progress: bool, device=None,
                     after_step=None) -> tuple[float, int, int]:
    """One pass over ``loader``; returns (sum of per-sample losses, correct, samples).

    The sums stay on the device (no host sync per batch); the loss sum is float64 and adds
    the same terms in the same order as summing ``float(loss) * batch`` on the host.
    ``progress`` draws a per-batch bar (the caller decides: terminals only).
    """
    from tqdm.auto import tqdm

    model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    n = 0
    bar = tqdm(loader, desc=desc, leave=False, disable=not progress, unit="batch", dynamic_ncols=True)
    for i, (x, y) in enumerate(bar):
        if device is not None:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = nn.functional.cross_entropy(out, y)
        loss.backward()
        opt.step()
        sched.step()
        if after_step is not None:
            after_step()
        b = int(y.numel())
        loss_sum += loss.detach().double() * b
        correct += (out.detach().argmax(1) == y).sum()
        n += b
        if progress and i % 10 == 0:
            bar.set_postfix(loss=f"{float(loss_sum) / n:.4f}", acc=f"{int(correct) / n:.4f}",
                            refresh=False)
    bar.close()
    return float(loss_sum), int(correct), n


def _alq_after_step(alq, opt, then):
    """After each optimizer step of ALQ's loss-aware phase: one ALQ step with the learning rate
    that optimizer step used (the scheduler has already moved on), then ``then``."""
    lr = [opt.param_groups[0]["lr"]]

    def after():
        alq.after_step(lr[0])
        lr[0] = opt.param_groups[0]["lr"]
        if then is not None:
            then()

    return after


def _plot(history: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from .runfiles import atomic_write

    fig = Figure(figsize=(9, 3.6))
    ax1, ax2 = fig.subplots(1, 2)
    ep = [h["epoch"] for h in history]
    ax1.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    ax1.plot(ep, [h["test_loss"] for h in history], "s-", label="test")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy")
    ax2.plot(ep, [100 * h["train_acc"] for h in history], "o-", label="train")
    ax2.plot(ep, [100 * h["test_acc"] for h in history], "s-", label="test")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy (%)")
    qat = [h["epoch"] for h in history if h["phase"] == "qat"]
    if qat and any(h["phase"] == "float" for h in history):
        for ax in (ax1, ax2):
            ax.axvline(min(qat) - 0.5, color="grey", ls="--", lw=1)
            ax.text(min(qat) - 0.45, ax.get_ylim()[1], " QAT", va="top", fontsize=8, color="grey")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def _resolve_data_root(rec: dict, base: Path | None, data_root) -> Path | None:
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


def _build(rec: dict, bits) -> nn.Module:
    return build_model(rec["model"]["name"], **recipe_model_options(rec, bits=bits))


def _comparable(rec: dict) -> dict:
    """The recipe minus where-it-runs keys (device, threads, workers): a run may resume on
    another device or thread count."""
    out = json.loads(json.dumps(rec))
    for k in RUNTIME_KEYS:
        out["train"].pop(k, None)
    return out


def _checkpoint_threads(out: Path) -> int | None:
    path = out / CHECKPOINT
    if not path.exists():
        return None
    try:
        v = load_plain(path, "checkpoint").get("threads")
    except (VecQError, AttributeError):
        return None  # open_run_folder reports what is wrong with it
    return int(v) if isinstance(v, int) and v > 0 else None


def check_world(rec: dict, world: int, file: str = "<recipe>") -> None:
    """Refuse a world size the recipe's global batch cannot be split over."""
    b = rec["train"]["batch_size"]
    if world > 1 and b % world:
        raise RecipeError(f"the global batch size {b} cannot be split evenly over {world} processes; "
                          f"use a world size that divides it or change the batch size",
                          file=file, field="train.batch_size")


def preflight(recipe, out_dir, *, resume: bool, overwrite: bool, world: int) -> None:
    """The checks a launcher makes before starting ``world`` processes (nothing is written)."""
    rec, _ = load_recipe(recipe)
    check_world(rec, world, str(recipe) if not isinstance(recipe, dict) else "<recipe dict>")
    out = Path(out_dir)
    if out.is_dir():
        open_run_folder(out, rec, resume=resume, overwrite=overwrite, dry_run=True)


def open_run_folder(out: Path, rec: dict, *, resume: bool, overwrite: bool, dry_run: bool = False):
    """Look at what ``out`` holds; returns (checkpoint or None, finished metrics or None).

    Without ``resume``, a folder that already holds run files is refused unless
    ``overwrite`` (then they are deleted): an interrupted run is never thrown away silently.
    """
    ckpt_path = out / CHECKPOINT
    if resume and overwrite:
        raise VecQError("--resume and --overwrite exclude each other: continue the run or start over",
                        file=str(out))
    if resume and ckpt_path.exists():
        ckpt = load_plain(ckpt_path, "checkpoint")
        if not isinstance(ckpt, dict) or ckpt.get("version") != CKPT_VERSION:
            v = ckpt.get("version") if isinstance(ckpt, dict) else None
            # a plain scalar is shown; anything else by its type only (no object reprs in messages)
            v = repr(v) if isinstance(v, (int, str, float, type(None))) else f"of type {type(v).__name__}"
            raise VecQError(f"unsupported checkpoint version {v} (this vecq_hw writes "
                            f"{CKPT_VERSION}); start over with --overwrite", file=str(ckpt_path))
        if _comparable(ckpt["recipe"]) != _comparable(rec):
            raise RecipeError("recipe differs from the one the checkpoint was trained with; "
                              "resume with the same recipe or start a new run folder",
                              file=str(ckpt_path), field="recipe")
        if ckpt.get("finished") and (out / METRICS_FILE).exists():
            return ckpt, json.loads((out / METRICS_FILE).read_text())
        return ckpt, None
    if not resume:
        present = [f for f in RUN_FILES if (out / f).exists()]
        if present and not overwrite:
            what = "an interrupted run" if CHECKPOINT in present and MODEL_FILE not in present else "a run"
            raise VecQError(f"already holds {what} ({', '.join(present)}); pass --resume to continue "
                            f"it or --overwrite to start over", file=str(out))
        for f in present if not dry_run else ():
            with contextlib.suppress(FileNotFoundError):
                (out / f).unlink()
    return None, None


# ----------------------------------------------------------------------------- public API

def train(recipe, out_dir, *, resume: bool = False, overwrite: bool = False, data_root=None,
          progress: bool = True, threads: int | None = None, device: str | None = None,
          stop_after_epochs: int | None = None, plot: bool = True, _rank_hook=None) -> dict:
    """Train a recipe (YAML path or dict) into ``out_dir``; returns the metrics dict.

    ``resume=True`` continues from ``out_dir/checkpoint.pt`` if there is one (and returns the
    stored metrics if the run had finished). Without it, a folder that already holds run files
    is refused unless ``overwrite=True`` (which deletes them). ``data_root`` overrides the
    recipe's ``data.root``. ``threads`` (torch intra-op threads) and ``device`` ('cpu',
    'cuda', 'auto') override the recipe's ``train.threads``/``train.device``; the default
    thread count follows the cores this process may use and, in a single process, leaves out
    cores other work keeps busy at the start (:func:`.runtime.default_threads`); a resumed
    run keeps its checkpoint's count. Results depend on the count: pin it for reproducibility.
    ``progress``: one line per epoch, plus a per-batch bar when stderr is a terminal.
    ``stop_after_epochs`` stops after that many epochs of this call, as an interruption would
    (for tests and time-boxed runs); the result then has ``"interrupted": True``.
    ``plot=False`` skips the training-curve PNG.

    Under torchrun (RANK/WORLD_SIZE/MASTER_ADDR... in the environment) this is one rank of a
    data-parallel run (:mod:`.dist`); every rank returns the same metrics, rank 0 writes.
    ``_rank_hook(model, dist)``, for tests, is called on every rank with the final model.
    """
    rec, base = load_recipe(recipe)
    src = str(recipe) if not isinstance(recipe, dict) else "<recipe dict>"
    t = rec["train"]
    d = D.from_env()
    check_world(rec, d.world, src)
    dev = resolve_device(device or t["device"], d.local_rank)
    out = Path(out_dir)
    n_threads = threads or t["threads"]
    if not n_threads and resume and d.is_main and not d.active:
        n_threads = _checkpoint_threads(out)  # results depend on it: continue as started
    n_threads = int(n_threads or default_threads(d.local_world, measure_load=not d.active))
    D.init(d, dev)
    try:
        with determinism(n_threads):
            return _train(rec, base, out, d, dev, resume=resume, overwrite=overwrite,
                          data_root=data_root, progress=progress, stop_after_epochs=stop_after_epochs,
                          plot=plot, rank_hook=_rank_hook)
    finally:
        D.shutdown(d)


def _train(rec, base, out: Path, d: D.Dist, dev, *, resume, overwrite, data_root, progress,
           stop_after_epochs, plot, rank_hook) -> dict:
    name = rec["name"] or f"{rec['model']['name']}_{rec['data']['dataset']}"
    t = rec["train"]
    say = progress and d.is_main
    bar = bar_wanted(say)

    # rank 0 alone looks at the run folder; the others get its verdict (an error or the
    # checkpoint), so every rank fails or resumes together and no shared disk is needed
    verdict = None
    if d.is_main:
        try:
            out.mkdir(parents=True, exist_ok=True)
            verdict = ("ok",) + open_run_folder(out, rec, resume=resume, overwrite=overwrite)
            atomic_text(out / RECIPE_FILE, yaml.safe_dump(rec, sort_keys=False))
        except VecQError as exc:
            verdict = ("error", exc)
    verdict = D.broadcast_object(d, verdict)
    if verdict[0] == "error":
        raise verdict[1]
    _, ckpt, finished = verdict
    if finished is not None:
        return finished

    seed = t["seed"]
    phases = _phases(rec)
    total_epochs = phases[-1]["start"] + phases[-1]["epochs"]
    root = _resolve_data_root(rec, base, data_root)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    model = _build(rec, phases[0]["bits"])
    flatten = len(getattr(model, "input_shape", (1, 28, 28))) == 1
    train_ds, test_ds = _load_data(rec, root, flatten)
    in_shape = tuple(getattr(model, "input_shape", train_ds.tensors[0].shape[1:]))
    if tuple(train_ds.tensors[0].shape[1:]) != in_shape:
        raise RecipeError(f"model input shape {in_shape} does not fit {rec['data']['dataset']} "
                          f"samples of shape {tuple(train_ds.tensors[0].shape[1:])}",
                          file="<recipe>", field="model.options")
    if d.world > len(train_ds):
        raise RecipeError(f"{d.world} processes for {len(train_ds)} training samples: every process "
                          f"needs at least one", file="<recipe>", field="data.train_limit")
    model.to(dev)
    workers = loader_workers(dev, t["workers"])
    pin = dev.type == "cuda"
    local_batch = t["batch_size"] // d.world
    sampler = D.EpochSampler(train_ds, num_replicas=d.world, rank=d.rank, seed=seed, seed_fn=_epoch_seed)
    train_loader = make_loader(train_ds, local_batch, sampler=sampler, workers=workers, pin_memory=pin)
    # evaluation: each rank a contiguous-stride shard, no padding (exact counts after reduce)
    test_part = torch.utils.data.Subset(test_ds, range(d.rank, len(test_ds), d.world))
    test_loader = make_loader(test_part, _EVAL_BATCH, workers=workers, pin_memory=pin)
    steps = len(train_loader)
    alq = ALQSchedule(model, t["alq"]["prune_every"]) if rec["quant"]["method"] == "alq" else None

    history: list[dict] = []
    done = 0
    opt = sched = None
    phase = None
    float_acc = None
    elapsed = 0.0
    if ckpt is not None:
        done = int(ckpt["epochs_done"])
        history = list(ckpt["history"])
        float_acc = ckpt.get("float_test_acc")
        elapsed = float(ckpt.get("train_time_s", 0.0))
        last_phase = _phase_of(phases, done - 1)
        set_weight_bits(model, last_phase["bits"])
        model.load_state_dict(ckpt["model"])
        load_quant_state(model, ckpt.get("quant_state", {}))
        if alq is not None:  # bases, alphas, Adam moments, pruning progress (alq_schedule.py)
            try:
                alq.load(ckpt.get("alq"), last_phase["lr"])
            except VecQError as exc:
                raise VecQError(exc.detail, file=str(out / CHECKPOINT), field=exc.field) from None
        if done < total_epochs and _phase_of(phases, done) is last_phase:
            phase = last_phase
            opt, sched = _make_optimizer(rec, model, phase["lr"], steps, phase["epochs"],
                                         alq.parameters() if phase["name"] == "alq" else None)
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
    if d.is_main:
        atomic_text(out / LOG_FILE, "".join(json.dumps(h) + "\n" for h in history))

    net = model
    if d.active:  # buffers: averaged per epoch instead of broadcast per forward (see dist.py)
        net = D.wrap(model, dev)
    step_sync = (lambda: D.sync_quant_state(d, model)) if d.active else None

    if say:
        print(f"[{name}] {d.world} process(es) on {dev.type}, {torch.get_num_threads()} thread(s) each, "
              f"epochs {done + 1}..{total_epochs}", flush=True)
    ran = 0
    while done < total_epochs:
        if stop_after_epochs is not None and ran >= stop_after_epochs:
            return {"interrupted": True, "epochs_done": done, "total_epochs": total_epochs}
        p = _phase_of(phases, done)
        if p is not phase:  # a new phase: switch bits, fresh optimizer and schedule
            phase = p
            set_weight_bits(model, p["bits"])
            if p["name"] == "alq":
                alq.start(p["lr"])  # greedy init; then the layers run in float mode on w_hat
            opt, sched = _make_optimizer(rec, model, p["lr"], steps, p["epochs"],
                                         alq.parameters() if p["name"] == "alq" else None)
        sampler.set_epoch(done)
        if p["name"] == "qat":  # issue 14: SQ's ratio 50 -> 75 -> 87.5 -> 100 % over the QAT epochs
            set_sq_ratio(model, stage_ratio(done - p["start"], p["epochs"]))
        k = done - p["start"] + 1
        t0 = time.perf_counter()
        lr = opt.param_groups[0]["lr"]
        after = step_sync if needs_step_sync(model) else None
        if p["name"] == "alq":
            after = _alq_after_step(alq, opt, after)
        sums = _train_one_epoch(
            net, train_loader, opt, sched, progress=bar, device=dev, after_step=after,
            desc=f"{name} {p['name']} {k}/{p['epochs']}")
        if p["name"] == "alq":
            alq.end_epoch(last=k == p["epochs"])  # the last one prunes to the target, then STE
        D.average_bn_stats(d, model)
        sums += _eval_sums(model, test_loader, dev)
        D.sync_quant_state(d, model)
        tr_loss_s, tr_ok, tr_n, te_loss_s, te_ok, te_n = D.reduce_sums(d, list(sums))
        D.check_identical(d, model)
        alq_check_identical(d, alq)
        tr_loss, tr_acc = tr_loss_s / max(tr_n, 1), tr_ok / max(tr_n, 1)
        te_loss, te_acc = te_loss_s / max(te_n, 1), te_ok / max(te_n, 1)
        dt = time.perf_counter() - t0
        elapsed += dt
        done += 1
        ran += 1
        rec_line = {"epoch": done, "phase": p["name"], "phase_epoch": k, "lr": lr,
                    "train_loss": tr_loss, "train_acc": tr_acc, "test_loss": te_loss,
                    "test_acc": te_acc, "time_s": round(dt, 3)}
        if alq is not None and p["name"] != "float":
            rec_line["avg_bits"] = alq.average_bits()  # ALQ: average bases per weight
        history.append(rec_line)
        if p["name"] == "float" and k == p["epochs"]:
            float_acc = te_acc
        if d.is_main:
            atomic_torch_save({
                "version": CKPT_VERSION, "recipe": rec, "epochs_done": done,
                "phase": p["name"], "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "rng": rng_state(), "history": history,
                "quant_state": quant_state(model), "world_size": d.world,
                "threads": torch.get_num_threads(),
                "float_test_acc": float_acc, "train_time_s": elapsed, "finished": False,
                **({"alq": alq.state()} if alq is not None else {}),
            }, out / CHECKPOINT)
            with open(out / LOG_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec_line) + "\n")
        D.barrier(d)  # the checkpoint is on disk before any rank moves on (or stops)
        if say:
            line = (f"[{name}] epoch {done}/{total_epochs} ({p['name']}): train loss {tr_loss:.4f} "
                    f"acc {tr_acc:.4f} | test loss {te_loss:.4f} acc {te_acc:.4f} | {dt:.1f}s")
            if "avg_bits" in rec_line:
                line += f" | {rec_line['avg_bits']:.3f} bits/weight"
            if bar:
                from tqdm.auto import tqdm

                tqdm.write(line)
            else:
                print(line, flush=True)

    last = history[-1]
    metrics = {
        "name": name, "model": rec["model"]["name"], "dataset": rec["data"]["dataset"],
        "quant": dict(rec["quant"]),
        "float_test_acc": float_acc, "qat_test_acc": last["test_acc"],
        "float_test_accuracy": float_acc, "qat_test_accuracy": last["test_acc"],  # aliases
        "test_acc": last["test_acc"], "test_loss": last["test_loss"],
        "train_acc": last["train_acc"], "train_loss": last["train_loss"],
        "float_epochs": t["float_epochs"], "qat_epochs": t["epochs"],
        "n_train": len(train_ds), "n_test": len(test_ds), "seed": seed,
        "train_time_s": round(elapsed, 3), "threads": torch.get_num_threads(),
        "world_size": d.world, "device": dev.type,
    }
    if alq is not None:
        metrics["alq_average_bits"] = alq.average_bits()
    if rank_hook is not None:
        rank_hook(model, d)
    if d.is_main:
        cpu_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        atomic_torch_save({"version": CKPT_VERSION, "recipe": rec, "state_dict": cpu_state,
                           **({"alq_counts": alq_counts(model)} if alq is not None else {})},
                          out / MODEL_FILE)
        atomic_text(out / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
        if plot:
            _plot(history, out / CURVE_FILE, f"{name}: {rec['quant']['method']} w{rec['quant']['bits']} "
                                              f"(test acc {100 * last['test_acc']:.2f}%)")
        ck = load_plain(out / CHECKPOINT, "checkpoint")
        ck["finished"] = True
        atomic_torch_save(ck, out / CHECKPOINT)
    D.barrier(d)
    return metrics


def load_run(out_dir) -> tuple[nn.Module, dict]:
    """Rebuild a trained model (eval mode, quantised weights) and its recipe from a run folder.

    ``out_dir`` may also be the path of a ``model.pt`` file. The file is read as plain data
    only (``torch.load(weights_only=True)``); one holding other pickled objects is refused.
    """
    p = Path(out_dir)
    path = p if p.is_file() else p / MODEL_FILE
    if not path.exists():
        raise VecQError("no trained model here (model.pt missing; did training finish?)", file=str(path))
    blob = load_plain(path, "trained model")
    try:
        rec = blob["recipe"]
        state = blob["state_dict"]
    except (TypeError, KeyError) as exc:
        raise VecQError(f"cannot read trained model (no {exc} entry)", file=str(path)) from None
    rec, _ = load_recipe(rec)
    model = _build(rec, rec["quant"]["bits"])
    model.load_state_dict(state)
    if "alq_counts" in blob:  # ALQ: the bases each group kept after pruning (not in the state_dict)
        try:
            load_alq_counts(model, blob["alq_counts"])
        except VecQError as exc:
            raise VecQError(exc.detail, file=str(path), field=exc.field) from None
    model.eval()
    return model, rec
