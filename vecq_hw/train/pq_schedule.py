"""PQ's procedure inside ``vecq-hw train`` (issue 24): :class:`PQProcedure`, the hooks of
:class:`.procedure.QuantProcedure` registered for the :class:`~vecq_hw.quant.pq.PQ` quantiser.

A recipe with ``quant.method: pq`` trains in two phases (:meth:`PQProcedure.phases`):

1. ``float``: ``train.float_epochs`` of float training (PQ quantises a trained network);
2. ``pq``: ``train.epochs`` of codeword fine-tuning at ``train.qat_lr``. At its start
   (``start_phase``) the float network is kept as the teacher, and every PQ layer is quantised in
   forward order by activation-weighted EM on ``train.pq.samples`` training images (a seeded
   sample, labels unused) with the layers before it already quantised
   (:func:`.pq_steps.quantize_layers`). Each step's loss is the distillation loss from the teacher
   (KL divergence of the softmax outputs; ``train.pq.distill: false``: cross-entropy with the
   labels); after it, the codewords take one Adam step from the gradients averaged over the
   weights assigned to each (:class:`.pq_steps.CodebookTuner`). The run's optimizer trains the
   rest (biases, BatchNorm) and leaves the float weights of the PQ layers alone.

State kept in the checkpoint (``state`` / ``load_state``, under ``pq``): the stage, the EM
timings, every layer's codebook and indices, the tuner's Adam state and the teacher's weights; a
resumed run continues bit for bit. model.pt carries the codebooks and indices (``pq_state``: they
are not in the state_dict).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from ..errors import VecQError
from ..quant.pq import PQ
from ..quant.registry import register_procedure
from .pq_steps import (CodebookTuner, distillation_loss, frozen_copy, load_pq_state, pq_layers, pq_state,
                       quantize_layers)
from .procedure import QAT, Phase, QuantProcedure
from .recipe import Spec, walk

STAGES = ("float", "finetune")


@register_procedure(PQ)
class PQProcedure(QuantProcedure):
    """Drives :mod:`.pq_steps` from the Trainer (see the module)."""

    key = "pq"
    title = "PQ"
    #: train.pq (d, K, the EM rounds and the codeword width are the quantiser's options, quant.*)
    SCHEMA = {"samples": Spec("int", 1024, lo=1, hi=1 << 20), "distill": Spec("bool", True)}

    def __init__(self, model: nn.Module, recipe: dict):
        super().__init__(model, recipe)
        if not pq_layers(model):
            raise VecQError("quant.method is pq but the model has no PQ layer", field="quant.method")
        self.stage = "float"
        self.em: dict[str, dict] = {}
        self.tuner: CodebookTuner | None = None
        self.teacher: nn.Module | None = None
        self.train_data = None

    @classmethod
    def check_options(cls, options, recipe: dict, fail) -> dict:
        """train.pq, always filled in (defaults)."""
        if options is not None and not isinstance(options, dict):
            fail("train.pq", f"expected a mapping with fields {', '.join(cls.SCHEMA)}, got {type(options).__name__}")
        cfg = walk(cls.SCHEMA, {} if options is None else options, "train.pq.", fail)
        _check_blocks(recipe, fail)
        return cfg

    def set_training_data(self, train) -> None:
        self.train_data = train

    # --- the phases ---------------------------------------------------------------------------
    def phases(self, phases: list[Phase]) -> list[Phase]:
        """QAT becomes ``pq``: EM at its start, then codeword fine-tuning."""
        return [replace(p, name="pq") if p.name == QAT else p for p in phases]

    def start_phase(self, phase: Phase) -> None:
        if phase.name != "pq":
            return
        self.teacher = frozen_copy(self.model)
        images = self._sample()
        self.em = quantize_layers(self.model, images.to(next(self.model.parameters()).device))
        self.tuner = CodebookTuner(self.model, phase.lr)
        self.stage = "finetune"

    def _sample(self) -> torch.Tensor:
        """``train.pq.samples`` training images, drawn with the run's seed (labels unused)."""
        if self.train_data is None:
            raise VecQError("the PQ procedure needs the training data (set_training_data)", field="train.pq")
        x = self.train_data.tensors[0]
        n = min(self.options["samples"], len(x))
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.recipe["train"]["seed"]))
        return x[order[:n].sort().values]

    def excluded_parameters(self, phase: Phase) -> list[nn.Parameter]:
        """The PQ layers' float weights: the codewords are trained instead."""
        return [m.weight for m in pq_layers(self.model).values()] if phase.name == "pq" else []

    def loss(self, phase: Phase):
        return distillation_loss(self.teacher) if phase.name == "pq" and self.options["distill"] else None

    def before_step(self) -> None:
        if self.stage == "finetune":
            self.tuner.clear_gradients()

    def after_step(self, lr: float) -> None:
        if self.stage == "finetune":
            self.tuner.step(lr)

    # --- progress, results --------------------------------------------------------------------
    def progress(self, phase: Phase) -> dict:
        return {"em_s": round(sum(r["seconds"] for r in self.em.values()), 1)} if phase.name == "pq" else {}

    def progress_text(self, fields: dict) -> str:
        return f" | EM {fields['em_s']:.1f}s" if "em_s" in fields else ""

    def metrics(self) -> dict:
        return {"pq_em": self.em, "pq_em_seconds": round(sum(r["seconds"] for r in self.em.values()), 3)}

    def model_extras(self) -> dict:
        return {"pq_state": pq_state(self.model)}

    def load_model_extras(self, blob: dict) -> None:
        if "pq_state" in blob:
            load_pq_state(self.model, blob["pq_state"])

    # --- checkpoint ---------------------------------------------------------------------------
    def state(self) -> dict:
        s = {"stage": self.stage, "em": self.em, "layers": pq_state(self.model)}
        if self.stage == "finetune":
            s["tuner"] = self.tuner.state_dict()
            s["teacher"] = {k: v.detach().cpu().clone() for k, v in self.teacher.state_dict().items()}
        return s

    def load_state(self, state, phase: Phase) -> None:
        """Continue from :meth:`state` (after the model's state_dict is loaded)."""
        if not isinstance(state, dict) or state.get("stage") not in STAGES:
            raise VecQError("the checkpoint has no valid PQ state (stage)", field="pq.stage")
        self.stage, self.em = state["stage"], dict(state.get("em", {}))
        load_pq_state(self.model, state.get("layers", {}), "pq.layers")
        if self.stage == "finetune":
            self.teacher = frozen_copy(self.model)
            self.teacher.load_state_dict(state["teacher"])
            self.tuner = CodebookTuner(self.model, phase.lr)
            self.tuner.load_state_dict(state["tuner"])


def _check_blocks(recipe: dict, fail) -> None:
    """Refuse, before any training, a block size that does not tile some layer's filter (naming the
    option and the layer); a model the recipe cannot build is left to the recipe's own check."""
    from ..models import build_model, canonical_name
    from ..quant import quantizer_from_config
    from .recipe import recipe_model_options

    try:
        opts = {**recipe_model_options(recipe), "weight_quant": None}
        model = build_model(canonical_name(recipe["model"]["name"]), **opts)
    except (KeyError, TypeError, ValueError):
        return
    q = quantizer_from_config({k: v for k, v in recipe["quant"].items() if k not in ("act_type", "in_type", "out_type")})
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            try:
                q.block_for(m.weight.shape)
            except VecQError as exc:
                fail(f"quant.{exc.field}", f"{exc.detail} (layer {name})")
