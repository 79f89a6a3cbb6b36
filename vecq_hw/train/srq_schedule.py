"""SRQ in ``vecq-hw train``: its activation quantisers, DropBits, and the width search against
the estimated cost of the design ``fit`` would build.

Recipe (``quant: {method: srq, bits: 8, min_bits: 2, learn_bits: true, drop_rate, tau, ...}``
and its section ``train.srq``)::

    train:
      srq:
        search_epochs: null   # the first N QAT epochs learn the widths (null: all but the last)
        width_lr: 0.05        # Adam's step for the keep logits θ
        quant_lr: null        # Adam's step for the steps α and noise τ (null: train.qat_lr)
        cost: luts            # luts (estimated LUTs of the HLS design) | bits (average weight bits)
        part: xc7z020         # the part (configs/hardware/parts.yaml)
        fps: null             # frame rate: fixes each layer's folding (null: fit's folding at
        clock_period: 5.0     #   the starting widths)
        io_type: io_stream
        headroom: 0.8
        lut_budget: null      # cost luts: the LUT budget (null: part LUTs x headroom)
        bits_budget: null     # cost bits: the average weight bits allowed
        budget_weight: 1.0    # μ: penalty μ·max(0, E[cost]/budget - 1) + λ·E[cost]/budget
        cost_weight: 0.0      # λ
        fill_budget: true     # after deciding (q > 1/2), raise widths while the design fits the budget
        act_learn: false      # learn the activation widths too (the act_type quantisers)
        act_min_bits: 3       #   (3..8: the export's check allows 1 LSB, at most 1/8 of the values)
        act_drop_rate: 0.0    # DropBits on the activations
        layers: {}            # pins by module path: {"1": {bits: 3}, "4": {act_type: ap_ufixed<5,2,AP_RND,AP_SAT>}}

The model: every FixedQuant of the recipe's ``act_type`` (not the input's nor the output's)
becomes an :class:`vecq_hw.nn.SRQActivation` (:meth:`SRQProcedure.prepare_model`); a pinned
layer keeps its width. The procedure trains the quantisers' own parameters (α, τ, θ) with its
own Adam (no weight decay; the trainer's optimizer leaves them out). During the search
epochs each step draws widths (DropBits from the learned keep probabilities) and adds the
penalty on E[cost] (:mod:`.srq_cost`) to the loss; at the end of the last search epoch the
widths are decided (each bit kept when q > 1/2), lowered while the decided design's cost is
above the budget (the least confident top level first: ours, so the result never exceeds the
budget it was trained for), raised while it stays within it (``fill_budget``, the most
confident next level first: ours, since the decided widths land well below the budget the
expected cost met: benchmarks/results/mixed_precision.md), frozen, and each weight step α
re-fitted to the new width (least squares, ours); the remaining epochs fine-tune at those widths (DropBits below them if
``drop_rate`` > 0). Checkpoints keep the priced tables, the Adam state and, in the state_dict,
every quantiser's parameters, widths and DropBits counter: ``--resume`` is bit-identical.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import VecQError
from ..fixed import FixedType
from ..nn import FixedQuant, SRQActivation
from ..quant import SRQ
from ..quant.registry import register_procedure
from ..quant.srq_grid import width_probs
from .procedure import Phase, QuantProcedure
from .recipe import Spec, walk
from .srq_cost import WidthCost, learning_quantizers, price_model

_SCHEMA = {
    "search_epochs": Spec("int", None, lo=0, hi=10000, nullable=True),
    "width_lr": Spec("float", 0.05, lo=0.0, lo_open=True, hi=10.0),
    "quant_lr": Spec("float", None, lo=0.0, lo_open=True, hi=10.0, nullable=True),
    "cost": Spec("str", "luts", choices=("luts", "bits")),
    "part": Spec("str", "xc7z020"),
    "fps": Spec("float", None, lo=0.0, lo_open=True, nullable=True),
    "clock_period": Spec("float", 5.0, lo=0.1, hi=1e6),
    "io_type": Spec("str", "io_stream", choices=("io_parallel", "io_stream")),
    "headroom": Spec("float", 0.8, lo=0.0, lo_open=True, hi=1.0),
    "lut_budget": Spec("float", None, lo=1.0, nullable=True),
    "bits_budget": Spec("float", None, lo=1.0, hi=8.0, nullable=True),
    "budget_weight": Spec("float", 1.0, lo=0.0, hi=1e6),
    "cost_weight": Spec("float", 0.0, lo=0.0, hi=1e6),
    "fill_budget": Spec("bool", True),
    "act_learn": Spec("bool", False),
    "act_min_bits": Spec("int", 3, lo=3, hi=8),
    "act_drop_rate": Spec("float", 0.0, lo=0.0, hi=0.95),
    "layers": Spec("dict", {}),
}
#: the range of every width SRQ learns or a pin names (codes are int8; activations up to 8 bits)
WIDTH_RANGE = (1, 8)
#: the narrowest activation: the export's check allows 1 LSB for the rounding of a layer's
#: constants and refuses a tolerance above 1/8 of the type's values (vecq_hw.export.equivalence)
MIN_ACT_WIDTH = 3


def _check_pin(layer: str, pin, fail) -> dict:
    """One ``train.srq.layers`` entry: {bits: 1..8} and/or {act_type: a buildable type}."""
    where = f"train.srq.layers.{layer}"
    if not isinstance(pin, dict) or not pin or set(pin) - {"bits", "act_type"}:
        fail(where, f"layer '{layer}': expected a mapping with bits and/or act_type, got {pin!r}")
    bits = pin.get("bits")
    if bits is not None and (isinstance(bits, bool) or not isinstance(bits, int)
                             or not WIDTH_RANGE[0] <= bits <= WIDTH_RANGE[1]):
        fail(f"{where}.bits", f"layer '{layer}': expected a width in {WIDTH_RANGE[0]}..{WIDTH_RANGE[1]}, got {bits!r}")
    if "act_type" in pin:
        why = act_type_problem(pin["act_type"])
        if why:
            fail(f"{where}.act_type", f"layer '{layer}': {why}")
    return dict(pin)


def act_type_problem(value) -> str | None:
    """Why ``value`` cannot be a learned activation's type that every back end builds, or None."""
    from ..export.handlers import MONOTONE_OVERFLOW

    try:
        t = FixedType.parse(value) if isinstance(value, str) else None
    except Exception as exc:  # FixedTypeError
        return f"expected an ap_fixed/ap_ufixed type, got {value!r}: {getattr(exc, 'detail', exc)}"
    if t is None or t.kind != "fixed":
        return f"expected an ap_fixed<W,I,...> or ap_ufixed<W,I,...> type, got {value!r}"
    if t.overflow not in MONOTONE_OVERFLOW or t.sat_bits:
        return (f"{t} cannot be built after a ReLU: the exporter folds ReLU-then-quantise exactly only for "
                f"saturating overflow ({', '.join(MONOTONE_OVERFLOW)}), and no back end builds {t.overflow}")
    if not MIN_ACT_WIDTH <= t.width <= WIDTH_RANGE[1]:
        return (f"expected a width in {MIN_ACT_WIDTH}..{WIDTH_RANGE[1]} (the export's check needs 8 values per LSB "
                f"it allows), got {t}")
    return None


def _act_quantizers(model: nn.Module, act_type: str) -> list[tuple[str, FixedQuant]]:
    """The plain FixedQuants of ``act_type``, the model's first and last FixedQuant (the input's
    and the logits') left out."""
    fq = [(p, m) for p, m in model.named_modules() if isinstance(m, FixedQuant)]
    want = FixedType.parse(act_type)
    return [(p, m) for p, m in fq[1:-1] if type(m) is FixedQuant and m.fixed_type == want]


def _replace(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


def _srq_config(rec: dict) -> dict:
    q = rec["quant"]
    return {k: v for k, v in q.items() if k not in ("act_type", "in_type", "out_type")}


def _srq_layers(model: nn.Module) -> dict[str, object]:
    """{module path: quantiser} of every SRQ quantiser (weights under their layer's path)."""
    out = {}
    for path, m in model.named_modules():
        q = m if isinstance(m, SRQActivation) else getattr(m, "weight_quant", None)
        if isinstance(q, (SRQ, SRQActivation)):
            out[path] = q
    return out


def _apply_pins(model: nn.Module, rec: dict, acts: dict[str, str]) -> None:
    """Pinned widths and types (train.srq.layers): a pinned quantiser does not learn."""
    opts, cfg = rec["train"]["srq"], _srq_config(rec)
    layers = dict(model.named_modules())
    weighted = [p for p, m in layers.items() if isinstance(getattr(m, "weight_quant", None), SRQ)]
    for path, pin in opts["layers"].items():
        where = f"train.srq.layers.{path}"
        if "bits" in pin:
            if path not in weighted:
                raise VecQError(f"layer '{path}': bits pins a weighted SRQ layer; the model's are "
                                f"{', '.join(weighted)}", field=where)
            k = int(pin["bits"])
            layers[path].weight_quant = {**cfg, "bits": k, "learn_bits": False, "min_bits": min(cfg["min_bits"], k)}
        if "act_type" in pin:
            if path not in acts:
                raise VecQError(f"layer '{path}': act_type pins an activation quantiser; the model's are "
                                f"{', '.join(acts)}", field=where)
            acts[path] = pin["act_type"]


@register_procedure(SRQ)
class SRQProcedure(QuantProcedure):
    """SRQ with DropBits and the width search (see the module)."""

    key = "srq"
    title = "SRQ"

    @classmethod
    def check_options(cls, options, recipe, fail):
        opts = walk(_SCHEMA, {} if options is None else options, "train.srq.", fail)
        for layer, pin in opts["layers"].items():
            opts["layers"][str(layer)] = _check_pin(str(layer), pin, fail)
        if opts["cost"] == "bits" and opts["bits_budget"] is None:
            fail("train.srq.bits_budget", "expected the average weight bits allowed (cost: bits)")
        from ..hls.estimate import get_part

        try:
            get_part(opts["part"])
        except VecQError as exc:
            fail("train.srq.part", exc.detail)
        return opts

    @classmethod
    def prepare_model(cls, model: nn.Module, recipe: dict) -> None:
        """The act_type FixedQuants become SRQActivations; pins applied; DropBits streams set."""
        opts, cfg = recipe["train"]["srq"], _srq_config(recipe)
        acts = {p: recipe["quant"]["act_type"] for p, _ in _act_quantizers(model, recipe["quant"]["act_type"])}
        _apply_pins(model, recipe, acts)
        for path, spelling in acts.items():
            t = FixedType.parse(spelling)
            learn = opts["act_learn"] and "act_type" not in opts["layers"].get(path, {})
            _replace(model, path, SRQActivation(t, min_bits=min(opts["act_min_bits"], t.width),
                                                drop_rate=opts["act_drop_rate"], learn_bits=learn, tau=cfg["tau"],
                                                window=cfg["window"], seed=cfg["seed"], init_keep=cfg["init_keep"]))
        for stream, q in enumerate(_srq_layers(model).values()):
            q.stream = stream

    def __init__(self, model: nn.Module, recipe: dict):
        super().__init__(model, recipe)
        self.quantizers = _srq_layers(model)
        qat = recipe["train"]["epochs"]
        learns = any(q.widths.learn for q in self.quantizers.values())
        s = self.options["search_epochs"]
        self.search_epochs = 0 if not learns else (max(1, qat - 1) if s is None else min(int(s), qat))
        groups = [{"params": self._params("keep_logits"), "lr": self.options["width_lr"]},
                  {"params": self._params("log_alpha", "log_tau"),
                   "lr": self.options["quant_lr"] or recipe["train"]["qat_lr"]}]
        self.opt = torch.optim.Adam([g for g in groups if g["params"]], weight_decay=0.0)
        self.cost: WidthCost | None = None
        self.searching, self.epoch = False, 0

    def _params(self, *names) -> list[nn.Parameter]:
        return [p for q in self.quantizers.values() for n, p in q.named_parameters() if n.split(".")[-1] in names]

    def excluded_parameters(self, phase: Phase) -> list[nn.Parameter]:
        return self._params("keep_logits", "log_alpha", "log_tau")

    def start_epoch(self, phase: Phase, epoch: int) -> None:
        self.epoch = epoch
        self.searching = phase.quantize and epoch < self.search_epochs and bool(learning_quantizers(self.model))
        for q in self.quantizers.values():
            q.widths.enabled = phase.quantize  # no DropBits in float pre-training
        if self.searching and self.cost is None:
            self.cost = price_model(self.model, self.model.input_shape, self.options)

    def expected_cost(self) -> torch.Tensor:
        probs = {v: width_probs(q.widths.keep_probs()) for v, q in learning_quantizers(self.model).items()}
        return self.cost.expected(probs)

    def penalty(self) -> torch.Tensor | None:
        if not self.searching:
            return None
        ratio = self.expected_cost() / self.cost.budget
        o = self.options
        return (o["budget_weight"] * torch.relu(ratio - 1.0) + o["cost_weight"] * ratio).float()

    def after_step(self, lr: float) -> None:
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def end_epoch(self, phase: Phase, last: bool) -> None:
        if self.searching and self.epoch + 1 == self.search_epochs:
            self.freeze()

    # -- deciding the widths -------------------------------------------------------------------
    def decide(self) -> dict[str, int]:
        """Each searching quantiser's width: its bits kept while q > 1/2, then lowered while the
        design's cost is above the budget, the least confident top level first; with
        ``fill_budget``, then raised while the design stays within the budget, the most
        confident next level first (the hinge on E[cost] leaves the q > 1/2 widths below it)."""
        learning = learning_quantizers(self.model)
        widths = {v: q.widths.deployed() for v, q in learning.items()}

        def q_of(v: str, level: int) -> float:  # the keep probability of ``level`` (> low)
            return float(learning[v].widths.keep_probs()[level - learning[v].widths.low - 1])

        while self.cost.at(widths) > self.cost.budget:
            lower = [v for v in learning if widths[v] > learning[v].widths.low]
            if not lower:
                break
            widths[min(lower, key=lambda n: q_of(n, widths[n]))] -= 1
        while self.options["fill_budget"]:
            up = [v for v in learning if widths[v] < learning[v].widths.high
                  and self.cost.at({**widths, v: widths[v] + 1}) <= self.cost.budget]
            if not up:
                break
            widths[max(up, key=lambda n: q_of(n, widths[n] + 1))] += 1
        return widths

    @torch.no_grad()
    def freeze(self) -> None:
        """Fix the decided widths; re-fit each weight step to its width."""
        learning = learning_quantizers(self.model)
        for v, k in self.decide().items():
            q = learning[v]
            q.widths.freeze(k)
            if isinstance(q, SRQ):
                q.init_step(self.model.get_submodule(v).weight, k)
        self.searching = False

    def widths(self) -> dict[str, object]:
        """{module path: deployed weight bits (int) or activation type (str)}."""
        return {p: (q.deployed_bits() if isinstance(q, SRQ) else str(q.fixed_type)) for p, q in self.quantizers.items()}

    def _cost_now(self) -> float | None:
        if self.cost is None:
            return None
        if self.searching:
            with torch.no_grad():
                return float(self.expected_cost())
        return self.cost.at({v: self.quantizers[v].widths.deployed() for v in self.cost.low})

    # -- log, checkpoint, results --------------------------------------------------------------
    def progress(self, phase: Phase) -> dict:
        if not phase.quantize:
            return {}
        cost = self._cost_now()
        w = [str(q.deployed_bits()) for q in self.quantizers.values() if isinstance(q, SRQ)]
        a = [str(q.widths.deployed()) for q in self.quantizers.values() if isinstance(q, SRQActivation)]
        out = {"srq_w": "/".join(w), "srq_a": "/".join(a)}
        if cost is not None:
            out.update(srq_cost=round(cost, 3), srq_budget=self.cost.budget)
        return out

    def progress_text(self, fields: dict) -> str:
        text = f" | widths w {fields['srq_w']} a {fields['srq_a']}"
        if "srq_cost" in fields:
            unit = "LUTs" if self.cost.metric == "luts" else "bits/weight"
            text += f" | {unit} {fields['srq_cost']:,.1f} (budget {fields['srq_budget']:,.1f})"
        return text

    def state(self) -> dict:
        return {"cost": None if self.cost is None else self.cost.state(), "opt": self.opt.state_dict()}

    def load_state(self, state, phase: Phase) -> None:
        if not isinstance(state, dict) or set(state) != {"cost", "opt"}:
            raise VecQError("expected the SRQ procedure state {cost, opt}", field="srq")
        self.cost = None if state["cost"] is None else WidthCost.from_state(state["cost"])
        self.opt.load_state_dict(state["opt"])

    def metrics(self) -> dict:
        out = {"srq_widths": self.widths()}
        if self.cost is not None:
            out.update(srq_cost=self._cost_now(), srq_cost_metric=self.cost.metric, srq_budget=self.cost.budget,
                       srq_reuse=dict(self.cost.reuse))
        return out

    def model_extras(self) -> dict:
        return {"srq_widths": self.widths()}

    def load_model_extras(self, blob: dict) -> None:
        """Refuse a model whose learned widths no back end can build, naming the layer."""
        for path, q in self.quantizers.items():
            w = q.widths
            k = int(w.width) if bool(w.frozen) else w.deployed()
            if not (WIDTH_RANGE[0] <= k <= WIDTH_RANGE[1] and w.low <= k <= w.high):
                raise VecQError(f"layer '{path}': expected a learned width in {WIDTH_RANGE[0]}..{WIDTH_RANGE[1]} "
                                f"(this layer's {w.low}..{w.high}), got {k}", field=f"state_dict.{path}")
