"""Quantisation-aware training from a recipe (see :mod:`vecq_hw.recipe`).

Two phases: ``float_epochs`` of float pre-training (weighted layers with ``bits=None``; the
input, activation and logit quantisers are active throughout, with their straight-through
gradients), then ``epochs`` of QAT with the recipe's weight quantiser. Each phase starts a
fresh optimizer and learning-rate schedule (``qat_lr`` for the QAT phase). ALQ recipes split
the QAT epochs into ALQ's loss-aware steps with pruning, then STE post-training
(:mod:`.alq_schedule`); SQ recipes stage the quantised fraction (:mod:`.sq_schedule`).

Run folder (``out_dir``)::

    recipe.yaml        the normalised recipe (every default filled in)
    checkpoint.pt      latest epoch: model, optimizer, scheduler, epoch, RNG and quantiser
                       state, history (plain data: read with torch.load(weights_only=True))
    log.jsonl          one JSON record per epoch (loss, accuracy, lr, time)
    model.pt           final weights + recipe  (load with load_run)
    metrics.json       float-phase and QAT test accuracy, sizes, timings
    training_curve.png training curves

Everything is written atomically (temp file, then ``os.replace``), by rank 0 only in a
distributed run (:mod:`.dist`). Training is deterministic for a given seed on a given machine,
thread count and world size: the initial weights come from ``torch.manual_seed(seed)``, the
data order of epoch ``e`` from a generator seeded with ``(seed, e)``, and deterministic
algorithms are requested. ``train(..., resume=True)`` continues from the last checkpoint and
ends with the same weights as an uninterrupted run (same world size); a checkpoint can also be
continued with any other world size.

Modules: :mod:`.loop` (the loop), :mod:`.dist` (torch.distributed), :mod:`.runtime` (threads,
device, progress), :mod:`.runfiles` (files, safe loading), :mod:`.quantstate` (quantiser
running state).
"""

from __future__ import annotations

from .loop import (_epoch_seed, _make_optimizer, _train_one_epoch, check_world, evaluate,
                   set_weight_bits, train, load_run)
from .runfiles import (CHECKPOINT, CURVE_FILE, LOG_FILE, METRICS_FILE, MODEL_FILE, RECIPE_FILE,
                       atomic_torch_save as _atomic_torch_save, load_plain)
from .runtime import available_cores, default_threads

__all__ = ["train", "load_run", "evaluate", "set_weight_bits", "check_world", "load_plain",
           "default_threads", "available_cores", "CHECKPOINT", "MODEL_FILE", "METRICS_FILE",
           "LOG_FILE", "CURVE_FILE", "RECIPE_FILE"]
