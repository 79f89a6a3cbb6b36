"""Quantisation-aware training from a recipe (see :mod:`vecq_hw.train.recipe`).

Two phases: ``float_epochs`` of float pre-training (the weighted layers in float mode,
:func:`vecq_hw.nn.set_quantize`; the input, activation and logit quantisers are active
throughout, with their straight-through gradients), then ``epochs`` of QAT with the recipe's
weight quantiser. Each phase starts a fresh optimizer and learning-rate schedule (``qat_lr`` for
the QAT phase). A quantiser with its own training procedure rearranges the phases and hooks
into every epoch and step through :class:`.procedure.QuantProcedure`, registered beside the
quantiser (:func:`vecq_hw.quant.register_procedure`): ALQ splits the QAT epochs into its
loss-aware steps with pruning, then STE post-training (:mod:`.alq_schedule`); SQ stages the
quantised fraction (:mod:`.sq_schedule`); PQ quantises the trained float network by
activation-weighted EM, then fine-tunes its codewords by distillation (:mod:`.pq_schedule`).

Run folder (``out_dir``)::

    recipe.yaml        the normalised recipe (every default filled in)
    checkpoint.pt      latest epoch: model, optimizer, scheduler, epoch, RNG, quantiser and
                       procedure state, history (plain data: read with torch.load(weights_only=True))
    log.jsonl          one JSON record per epoch (loss, accuracy, lr, time, procedure progress)
    model.pt           final weights + recipe (+ the procedure's extras)  (load with load_run)
    metrics.json       float-phase and QAT test accuracy, sizes, timings
    training_curve.png training curves

Everything is written atomically (temp file, then ``os.replace``), by rank 0 only in a
distributed run (:mod:`.dist`). Training is deterministic for a given seed on a given machine,
thread count and world size: the initial weights come from ``torch.manual_seed(seed)``, the
data order of epoch ``e`` from a generator seeded with ``(seed, e)``, and deterministic
algorithms are requested. ``train(..., resume=True)`` continues from the last checkpoint and
ends with the same weights as an uninterrupted run (same world size); a checkpoint can also be
continued with any other world size.

Modules: :mod:`.loop` (entry points), :mod:`.trainer` (the Trainer), :mod:`.procedure` (the
quantiser hook protocol), :mod:`.epoch` (optimizer, training and evaluation passes),
:mod:`.recipe` (recipes), :mod:`.dist` (torch.distributed), :mod:`.runtime` (threads, device,
progress), :mod:`.runfiles` (files, safe loading), :mod:`.quantstate` (quantiser running state).
"""

from __future__ import annotations

# the procedures of ALQ, SQ, PQ and SRQ register themselves beside their quantisers on import
from . import alq_schedule as _alq_schedule  # noqa: F401
from . import sq_schedule as _sq_schedule  # noqa: F401
from . import pq_schedule as _pq_schedule  # noqa: F401
from . import srq_schedule as _srq_schedule  # noqa: F401
# the GCN's recipes (data.dataset: cora | citeseer) register themselves with the recipe validator
from . import gcn_recipe as _gcn_recipe  # noqa: F401
from .epoch import _epoch_seed, _make_optimizer, _train_one_epoch, evaluate
from .loop import check_world, load_run, train
from .procedure import Phase, QuantProcedure
from .runfiles import (CHECKPOINT, CURVE_FILE, LOG_FILE, METRICS_FILE, MODEL_FILE, RECIPE_FILE,
                       atomic_torch_save as _atomic_torch_save, load_plain)
from .runtime import available_cores, default_threads
from .trainer import Trainer

__all__ = ["train", "load_run", "evaluate", "check_world", "load_plain", "Trainer", "QuantProcedure",
           "Phase", "default_threads", "available_cores", "CHECKPOINT", "MODEL_FILE", "METRICS_FILE",
           "LOG_FILE", "CURVE_FILE", "RECIPE_FILE"]
