"""Training entry points: :func:`train` (one rank of a run, through the :class:`.trainer.Trainer`),
:func:`preflight` (a launcher's checks), :func:`load_run` (a trained model back from its folder)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..errors import RecipeError, VecQError
from . import dist as D
from .gcn_recipe import is_gcn_recipe, load_gcn_run, train_gcn_recipe
from .procedure import procedure_for
from .recipe import build_recipe_model, load_recipe
from .runfiles import MODEL_FILE, checkpoint_threads, load_plain, load_weights, open_run_folder
from .runtime import default_threads, default_threads_reason, determinism, resolve_device
from .trainer import Trainer, resolve_data_root


def check_world(rec: dict, world: int, file: str = "<recipe>") -> None:
    """Refuse a world size the recipe's global batch cannot be split over."""
    b = rec["train"]["batch_size"]
    if world > 1 and b % world:
        raise RecipeError(f"the global batch size {b} cannot be split evenly over {world} processes; "
                          f"use a world size that divides it or change the batch size",
                          file=file, field="train.batch_size")


def preflight(recipe, out_dir, *, resume: bool, overwrite: bool, world: int, data_root=None) -> None:
    """The checks a launcher makes before starting ``world`` processes (nothing is written): the
    recipe, the run folder and the dataset (present and md5-checked), so that a refusal is one
    line here rather than one per process and torchrun's report."""
    from ..data import load_dataset
    rec, base = load_recipe(recipe)
    if is_gcn_recipe(rec):  # one process, its own data (train/gcn_recipe.py)
        if world > 1:
            raise RecipeError("a GCN trains full-batch in one process; leave out --nproc",
                              file=str(recipe) if not isinstance(recipe, dict) else "<recipe dict>", field="train")
        open_run_folder(Path(out_dir), rec, resume=resume, overwrite=overwrite, dry_run=True)
        return
    check_world(rec, world, str(recipe) if not isinstance(recipe, dict) else "<recipe dict>")
    open_run_folder(Path(out_dir), rec, resume=resume, overwrite=overwrite, dry_run=True)
    d = rec["data"]
    root = resolve_data_root(rec, base, data_root)
    for split in ("train", "test"):
        load_dataset(d["dataset"], split, root, d[f"{split}_limit"])


def train(recipe, out_dir, *, resume: bool = False, overwrite: bool = False, data_root=None,
          progress: bool = True, threads: int | None = None, device: str | None = None,
          stop_after_epochs: int | None = None, plot: bool = True, _rank_hook=None) -> dict:
    """Train a recipe (YAML path or dict) into ``out_dir``; returns the metrics dict.

    ``resume=True`` continues from ``out_dir/checkpoint.pt`` if there is one (and returns the
    stored metrics if the run had finished). Without it, a folder that already holds run files
    is refused unless ``overwrite=True`` (which deletes them). ``data_root`` overrides the
    recipe's ``data.root``. ``threads`` (torch intra-op threads) and ``device`` ('cpu',
    'cuda', 'auto') override the recipe's ``train.threads``/``train.device``; a resumed run
    keeps its checkpoint's count, else the default is a fixed function of the cores this
    process may use (:func:`.runtime.default_threads`), never of the load. The same recipe,
    seed, world size and thread count give bit-identical weights; another thread count gives
    other float rounding (torch's CPU kernels). The count is recorded in the run folder.
    ``progress``: one line per epoch, plus a per-batch bar when stderr is a terminal.
    ``stop_after_epochs`` stops after that many epochs of this call, as an interruption would
    (for tests and time-boxed runs); the result then has ``"interrupted": True``.
    ``plot=False`` skips the training-curve PNG.

    Under torchrun (RANK/WORLD_SIZE/MASTER_ADDR... in the environment) this is one rank of a
    data-parallel run (:mod:`.dist`); every rank returns the same metrics, rank 0 writes.
    ``_rank_hook(model, dist, epochs_done)``, for tests, is called on every rank after every
    epoch (the last call sees the final model).
    """
    rec, base = load_recipe(recipe)
    if is_gcn_recipe(rec):  # one graph, full batch: its own loop (train/gcn.py), on the CPU
        if device not in (None, "cpu", "auto"):
            raise RecipeError(f"a GCN trains on the CPU (one small graph, full batch), got device {device!r}",
                              field="train.device")
        root = resolve_data_root(rec, base, data_root)
        rec["train"]["threads"] = int(threads or rec["train"]["threads"] or default_threads(1))  # in recipe.yaml
        with determinism(rec["train"]["threads"]):
            return train_gcn_recipe(rec, out_dir, data_root=root, resume=resume, overwrite=overwrite,
                                    progress=progress)
    src = str(recipe) if not isinstance(recipe, dict) else "<recipe dict>"
    t = rec["train"]
    d = D.from_env()
    check_world(rec, d.world, src)
    dev = resolve_device(device or t["device"], d.local_rank)
    out = Path(out_dir)
    D.init(d, dev)
    try:
        n_threads, why = _thread_count(threads, t["threads"], out if resume else None, d)
        t["threads"] = n_threads  # recorded with the recipe in the run folder (recipe.yaml, model.pt)
        with determinism(n_threads):
            trainer = Trainer(rec, base, out, d, dev, progress=progress, plot=plot, rank_hook=_rank_hook,
                              threads_from=why)
            return trainer.run(resume=resume, overwrite=overwrite, data_root=data_root,
                               stop_after_epochs=stop_after_epochs)
    finally:
        D.shutdown(d)


def _thread_count(given: int | None, recipe: int | None, resume_from: Path | None, d: D.Dist) -> tuple[int, str]:
    """(torch threads per process, where the count came from): the caller's, the recipe's, a
    resumed checkpoint's (rank 0 reads it and tells the others), else :func:`default_threads`.
    Never the machine's load: results depend on the count, and the same recipe and seed must
    give the same weights whatever else runs."""
    kept = checkpoint_threads(resume_from) if resume_from is not None and d.is_main else None
    kept = D.broadcast_object(d, kept)
    if given or recipe:
        n = int(given or recipe)
        why = "--threads" if given else "the recipe's train.threads"
        if kept is not None and kept != n:
            why += (f"; the checkpoint was trained with {kept}: the resumed run will not equal an "
                    f"uninterrupted one")
        return n, why
    if kept is not None:
        return kept, "the checkpoint (as the run started)"
    return default_threads(d.local_world), default_threads_reason(d.local_world)


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
    if is_gcn_recipe(rec):
        return load_gcn_run(blob, rec, path)[0], rec
    model = build_recipe_model(rec)
    load_weights(model, state, path, "state_dict")
    try:  # e.g. ALQ: the bases each group kept after pruning (not in the state_dict)
        procedure_for(rec, model).load_model_extras(blob)
    except VecQError as exc:
        raise VecQError(exc.detail, file=str(path), field=exc.field) from None
    model.eval()
    return model, rec
