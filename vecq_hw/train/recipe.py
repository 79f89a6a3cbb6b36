"""Training recipes: YAML files naming a model, a dataset, a quantiser and a training schedule.

```yaml
format_version: 1
name: lenet5_mnist_w2a8            # optional
description: ...                   # optional
model:
  name: lenet5                     # lenet5 | vgg_small | mlp (aliases lenet, vgg)
  options: {}                      # builder options other than the quant ones (hidden, ...)
data:
  dataset: mnist                   # mnist | fashion-mnist
  root: null                       # optional data folder (relative to the recipe's folder)
  train_limit: null                # optional: first N training samples
  test_limit: null                 # optional: first N test samples
quant:                             # the weight quantiser: {method, ...its options}, checked
  method: vecq                     #   against vecq_hw.quant's registry (vecq | ul2q | any
  bits: 2                          #   registered method); bits 1..8
  per_channel: false               # vecq: per_channel, adaptive (searched step, issue #6),
  adaptive: false                  #   refresh_every (adaptive search on every N-th forward);
  refresh_every: 1                 #   ul2q: per_channel, offset (default false here)
  act_type: ap_ufixed<8,3,AP_RND,AP_SAT>       # ReLU outputs
  in_type: ap_ufixed<8,0,AP_RND,AP_SAT>        # optional, input quantiser
  out_type: ap_fixed<16,6,AP_RND_CONV,AP_SAT>  # logits
train:
  optimizer: adam                  # adam | sgd
  lr: 0.001
  qat_lr: 0.0005                   # optional, learning rate of the QAT phase (default lr)
  momentum: 0.9                    # optional, sgd only
  weight_decay: 0.0
  batch_size: 128
  float_epochs: 2                  # float pre-training epochs (0 = QAT from the start)
  epochs: 3                        # QAT epochs (after float_epochs)
  lr_schedule: cosine              # cosine | step | none (restarted for each phase)
  step_size: 1                     # optional, step schedule: epochs per decay
  gamma: 0.1                       # optional, step schedule: decay factor
  seed: 0
  device: auto                     # optional: auto (cuda if available) | cpu | cuda
  threads: null                    # optional: torch threads per process (null: the cores
                                   #   this process may use, $OMP_NUM_THREADS if set)
  workers: null                    # optional: DataLoader workers (null: 0 on CPU, a few on GPU)
  alq:                             # optional: the section of the quantiser's training procedure
                                   #   (train.<key>, checked by it: vecq_hw.train.procedure);
                                   #   here quant.method alq only (ALQ's procedure, issue 14):
    loss_aware_epochs: 2           #   the first N of `epochs` run ALQ's loss-aware steps and
                                   #   pruning (null: half of them, at least 1); the rest: STE
    prune_every: 10                #   optimizer steps between pruning rounds (null: one round
                                   #   per loss-aware epoch); the last loss-aware epoch prunes
                                   #   to quant.target_bits
  pq:                              # optional, quant.method pq only (PQ's procedure, issue 24:
                                   #   EM at the start of the `epochs`, then codeword fine-tuning):
    samples: 1024                  #   training images (labels unused) for the layers' Gram matrices
    distill: true                  #   fine-tune on the float network's outputs (false: the labels)
```

:func:`load_recipe` validates and returns a plain dict with every optional field filled in.
Any problem is one :class:`vecq_hw.errors.RecipeError` line naming the file, the dotted field
and what was expected.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

from ..errors import RecipeError
from ..strict_yaml import load_strict_yaml
from .procedure import procedure_keys, procedure_options, procedure_type

FORMAT_VERSION = 1

__all__ = ["DATASET_RECIPES", "FORMAT_VERSION", "RUNTIME_KEYS", "Spec", "build_recipe_model", "load_recipe",
           "recipe_model_options", "register_dataset_recipe", "validate_recipe", "walk"]

_REQ = object()  # marker: required field


class Spec:
    """One field: a type check plus an optional extra check, and a default (a procedure's
    ``check_options`` describes its section with these and :func:`walk`)."""

    def __init__(self, kind: str, default: Any = _REQ, *, choices=None, lo=None, hi=None,
                 lo_open=False, hi_open=False, nullable=False, check=None, expect=None):
        self.kind, self.default, self.choices = kind, default, choices
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open
        self.nullable, self.check, self.expect = nullable, check, expect


def _fixed_spelling(value: str) -> str | None:
    """None if ``value`` is a valid ap_fixed/ap_ufixed spelling, else why not."""
    try:
        from ..fixed import FixedType
    except ImportError:  # fixed.py not available: a structural check only
        ok = re.fullmatch(r"\s*ap_u?fixed\s*<\s*\d+\s*,\s*-?\d+\s*(,\s*AP_\w+\s*){0,2}(,\s*\d+\s*)?>\s*",
                          value)
        return None if ok else "not an ap_fixed<W,I,...>/ap_ufixed<W,I,...> spelling"
    try:
        t = FixedType.parse(value)
    except Exception as exc:  # FixedTypeError, ValueError
        return getattr(exc, "detail", str(exc))
    if not str(value).strip().startswith(("ap_fixed", "ap_ufixed")):
        return "an ap_fixed<...> or ap_ufixed<...> type is needed here"
    del t
    return None


def _act_type_unexportable(value: str) -> str | None:
    """Why an activation type cannot be exported, or None.

    In every model a recipe builds, ``act_type`` quantises a ReLU output; the exporter folds
    ReLU-then-quantise into requantise-then-ReLU, which is exact only for saturating overflow
    (``MONOTONE_OVERFLOW`` in vecq_hw/export/handlers.py). Checked here so that such a recipe is
    refused before training, not after it.
    """
    from ..export.handlers import MONOTONE_OVERFLOW as _MONOTONE_OVERFLOW  # the exporter's rule
    from ..fixed import FixedType

    t = FixedType.parse(value)
    if t.overflow in _MONOTONE_OVERFLOW:
        return None
    sat = f"ap_{'' if t.signed else 'u'}fixed<{t.width},{t.integer},{t.rounding},AP_SAT>"
    return (f"expected a saturating overflow mode ({', '.join(_MONOTONE_OVERFLOW)}) for the type "
            f"that follows each ReLU, got {value!r} (overflow {t.overflow}), which the exporter "
            f"cannot fold exactly; e.g. {sat}")


_SCHEMA: dict[str, Any] = {
    "format_version": Spec("int", choices=(FORMAT_VERSION,)),
    "name": Spec("str", None, nullable=True),
    "description": Spec("str", None, nullable=True),
    "model": {
        "name": Spec("str", choices=None),  # checked against the registry below
        "options": Spec("dict", {}),
    },
    "data": {
        "dataset": Spec("str", choices=("mnist", "fashion-mnist")),
        "root": Spec("str", None, nullable=True),
        "train_limit": Spec("int", None, lo=1, nullable=True),
        "test_limit": Spec("int", None, lo=1, nullable=True),
    },
    "quant": {  # plus the weight quantiser's method and options (_weight_quant)
        "act_type": Spec("str", "ap_ufixed<8,3,AP_RND,AP_SAT>", check=_fixed_spelling),
        "in_type": Spec("str", "ap_ufixed<8,0,AP_RND,AP_SAT>", check=_fixed_spelling),
        "out_type": Spec("str", "ap_fixed<16,6,AP_RND_CONV,AP_SAT>", check=_fixed_spelling),
    },
    "train": {
        "optimizer": Spec("str", "adam", choices=("adam", "sgd")),
        "lr": Spec("float", lo=0.0, lo_open=True, hi=10.0),
        "qat_lr": Spec("float", None, lo=0.0, lo_open=True, hi=10.0, nullable=True),
        "momentum": Spec("float", 0.9, lo=0.0, hi=1.0, hi_open=True),
        "weight_decay": Spec("float", 0.0, lo=0.0, hi=1.0),
        "batch_size": Spec("int", lo=1, hi=65536),
        "epochs": Spec("int", lo=1, hi=10000),
        "float_epochs": Spec("int", 0, lo=0, hi=10000),
        "lr_schedule": Spec("str", "cosine", choices=("cosine", "step", "none")),
        "step_size": Spec("int", 1, lo=1),
        "gamma": Spec("float", 0.1, lo=0.0, lo_open=True, hi=1.0),
        "seed": Spec("int", 0, lo=0, hi=2**32 - 1),
        # where the run executes (RUNTIME_KEYS): not part of the model; a run may resume
        # with other values
        "device": Spec("str", "auto", choices=("auto", "cpu", "cuda")),
        "threads": Spec("int", None, lo=1, hi=1024, nullable=True),
        "workers": Spec("int", None, lo=0, hi=64, nullable=True),
    },
}

#: train.* keys that say where a run executes, not what it computes
RUNTIME_KEYS = ("device", "threads", "workers")

_KIND_WORDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
               "dict": "a mapping"}


def _type_ok(kind: str, v: Any) -> bool:
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "float":
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if kind == "str":
        return isinstance(v, str)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "dict":
        return isinstance(v, dict)
    raise AssertionError(kind)


def _check_value(spec: Spec, v: Any, where: str, fail) -> Any:
    if v is None and spec.nullable:
        return None
    if not _type_ok(spec.kind, v):
        fail(where, f"expected {_KIND_WORDS[spec.kind]}" + (", or null" if spec.nullable else "")
             + f", got {v!r} ({type(v).__name__})")
    if spec.kind == "float":
        v = float(v)
    if spec.choices is not None and v not in spec.choices:
        fail(where, f"expected one of {', '.join(repr(c) for c in spec.choices)}, got {v!r}")
    if spec.lo is not None and (v < spec.lo or (spec.lo_open and v == spec.lo)):
        fail(where, f"expected a value {'>' if spec.lo_open else '>='} {spec.lo}, got {v!r}")
    if spec.hi is not None and (v > spec.hi or (spec.hi_open and v == spec.hi)):
        fail(where, f"expected a value {'<' if spec.hi_open else '<='} {spec.hi}, got {v!r}")
    if spec.check is not None:
        why = spec.check(v)
        if why:
            fail(where, f"expected a valid fixed-point type, got {v!r}: {why}")
    return v


def walk(schema: dict, data: Any, prefix: str, fail) -> dict:
    """``data`` checked against ``schema`` (field -> :class:`Spec`, or a nested schema), with
    every default filled in; ``prefix`` starts each field name (``"train.alq."``)."""
    if not isinstance(data, dict):
        fail(prefix or "(top level)", f"expected a mapping, got {type(data).__name__}")
    out = {}
    for key in data:
        if not isinstance(key, str) or key not in schema:
            fail(f"{prefix}{key}", f"unknown field; expected some of {', '.join(schema)}")
    for key, spec in schema.items():
        where = f"{prefix}{key}"
        if isinstance(spec, dict):
            if key not in data:
                fail(where, f"missing section; expected a mapping with fields {', '.join(spec)}")
            out[key] = walk(spec, data[key], where + ".", fail)
            continue
        if key not in data:
            if spec.default is _REQ:
                fail(where, f"missing required field; expected {_KIND_WORDS[spec.kind]}")
            out[key] = copy.deepcopy(spec.default)
            continue
        out[key] = _check_value(spec, data[key], where, fail)
    return out


def _weight_quant(config: dict, fail, file: str) -> dict:
    """The quant section's weight-quantiser keys, checked by the quantiser registry; returns
    its full config ``{method, bits, ...every option}`` (defaults filled)."""
    from ..errors import VecQError
    from ..nn import MAX_LAYER_BITS
    from ..quant import QUANTIZERS, quantizer_from_config

    for key, what in (("method", f"one of {', '.join(sorted(QUANTIZERS))}"), ("bits", "an integer")):
        if key not in config:
            fail(f"quant.{key}", f"missing required field; expected {what}")
    try:
        q = quantizer_from_config(config, max_bits=MAX_LAYER_BITS, prefix="quant.", file=file)
    except VecQError as exc:
        raise RecipeError(exc.detail, file=file, field=exc.field) from None
    return q.get_config()


#: data.dataset -> the validator of recipes for it, where they are not image recipes (a graph's:
#: train/gcn_recipe.py registers cora and citeseer); it returns the normalised recipe
DATASET_RECIPES: dict[str, Any] = {}


def register_dataset_recipe(names, validator) -> None:
    """Recipes whose ``data.dataset`` is one of ``names`` are validated by ``validator(data, file)``."""
    for name in names:
        DATASET_RECIPES[name] = validator
    _SCHEMA["data"]["dataset"].choices = ("mnist", "fashion-mnist", *DATASET_RECIPES)


def validate_recipe(data: Any, file: str | Path = "<recipe>") -> dict:
    """Validate a parsed recipe; returns a normalised copy with defaults filled in."""
    file = str(file)

    def fail(field: str, msg: str):
        raise RecipeError(msg, file=file, field=field)

    if not isinstance(data, dict):
        fail("(top level)", f"expected a mapping with format_version: {FORMAT_VERSION}, "
                            f"got {type(data).__name__}")
    dataset = data["data"].get("dataset") if isinstance(data.get("data"), dict) else None
    if isinstance(dataset, str) and dataset in DATASET_RECIPES:
        return DATASET_RECIPES[dataset](data, file)
    if "format_version" in data and data["format_version"] != FORMAT_VERSION:
        fail("format_version", f"expected {FORMAT_VERSION}, got {data['format_version']!r}")
    quant = data.get("quant")
    weight_quant = None
    if isinstance(quant, dict):  # split off the weight quantiser's keys: the registry checks them
        weight_quant = {k: v for k, v in quant.items() if k not in _SCHEMA["quant"]}
        data = {**data, "quant": {k: v for k, v in quant.items() if k in _SCHEMA["quant"]}}
    sections, fields = {}, tuple(_SCHEMA["train"])
    if isinstance(data.get("train"), dict):  # procedure sections (train.alq, ...): checked below
        sections = {k: v for k, v in data["train"].items() if k in procedure_keys(fields)}
        data = {**data, "train": {k: v for k, v in data["train"].items() if k not in sections}}
    rec = walk(_SCHEMA, data, "", fail)
    rec["quant"] = {**_weight_quant(weight_quant, fail, file), **rec["quant"]}
    procedure_options(rec, sections, fail, fields)

    from ..models import MODELS, canonical_name, model_options

    try:
        rec["model"]["name"] = canonical_name(rec["model"]["name"])
    except KeyError:
        fail("model.name", f"expected one of {', '.join(MODELS)}, got {rec['model']['name']!r}")
    allowed = model_options(rec["model"]["name"])
    for k, v in rec["model"]["options"].items():
        where = f"model.options.{k}"
        if k in _quant_keys():
            fail(where, "set this in the quant section (quant.method and the quantiser's options "
                        "such as bits/per_channel, or act_type/in_type/out_type), not as a model option")
        if k not in allowed:
            fail(where, f"unknown option for model {rec['model']['name']!r}; expected some of "
                        f"{', '.join(o for o in allowed if o not in _quant_keys())}")
        default = allowed[k]
        if isinstance(default, bool):
            ok = isinstance(v, bool)
        elif isinstance(default, int):
            ok = isinstance(v, int) and not isinstance(v, bool) and v >= 1  # every int option is a size
        elif isinstance(default, (tuple, list)):
            ok = isinstance(v, list) and len(v) > 0 and all(
                (isinstance(e, int) and not isinstance(e, bool) and e >= 1)
                or (isinstance(e, list) and e and all(isinstance(i, int) and not isinstance(i, bool)
                                                      and i >= 1 for i in e))
                for e in v)
        else:
            ok = True
        if not ok:
            fail(where, f"expected a value like the default {default!r}, got {v!r}")
    why = _act_type_unexportable(rec["quant"]["act_type"])
    if why:
        fail("quant.act_type", why)
    _check_model_builds(rec, fail)
    if rec["data"]["root"] is not None and not rec["data"]["root"].strip():
        fail("data.root", "expected a folder path, got an empty string")
    if rec["train"]["qat_lr"] is None:
        rec["train"]["qat_lr"] = rec["train"]["lr"]
    return rec


#: every recipe dataset (MNIST, Fashion-MNIST) holds 28 x 28 single-channel images
DATASET_IMAGE = {"image_size": 28, "in_channels": 1}


def _check_model_builds(rec: dict, fail) -> None:
    """Refuse, before any training, options the dataset or the model builder cannot take."""
    from ..models import build_model

    opts = rec["model"]["options"]
    for key, want in DATASET_IMAGE.items():
        if key in opts and opts[key] != want:
            fail(f"model.options.{key}", f"expected {want}: the {rec['data']['dataset']} images have {key} {want}, got {opts[key]}")
    import torch

    try:  # float layers, one forward pass on two blank images: every shape the builder makes
        model = build_model(rec["model"]["name"], **{**recipe_model_options(rec), "weight_quant": None}).eval()
        with torch.no_grad():
            model(torch.zeros((2,) + tuple(model.input_shape)))
    except (ValueError, TypeError, RuntimeError, IndexError) as exc:
        fail("model.options", f"expected options the model can be built with: {' '.join(str(exc).split())}")


def load_recipe(source, *, base_dir: str | Path | None = None) -> tuple[dict, Path | None]:
    """Load and validate a recipe from a YAML path or an already parsed dict.

    Returns ``(recipe, folder)``: ``folder`` is the recipe file's folder (``base_dir`` for a
    dict), against which a relative ``data.root`` is resolved.
    """
    if isinstance(source, dict):
        return validate_recipe(copy.deepcopy(source), file="<recipe dict>"), (
            Path(base_dir) if base_dir is not None else None)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"cannot read recipe ({exc.strerror or exc})", file=str(path)) from None
    data = load_strict_yaml(text, file=str(path), error=RecipeError)  # the model files' reader
    return validate_recipe(data, file=str(path)), path.resolve().parent


def recipe_model_options(rec: dict) -> dict:
    """Keyword options for :func:`vecq_hw.models.build_model` from a validated recipe: the
    model options plus ``weight_quant`` (the quant section's ``{method, ...options}``) and the
    activation types."""
    q = rec["quant"]
    opts = dict(rec["model"]["options"])
    for k, v in list(opts.items()):
        if isinstance(v, list):
            opts[k] = tuple(tuple(e) if isinstance(e, list) else e for e in v)
    types = ("act_type", "in_type", "out_type")
    opts.update(weight_quant={k: v for k, v in q.items() if k not in types},
                **{k: q[k] for k in types})
    return opts


def build_recipe_model(rec: dict):
    """The recipe's model, every weighted layer quantising with the recipe's quantiser (as its
    training procedure prepares it: :meth:`.procedure.QuantProcedure.prepare_model`)."""
    from ..models import build_model

    model = build_model(rec["model"]["name"], **recipe_model_options(rec))
    procedure_type(rec["quant"]["method"]).prepare_model(model, rec)
    return model


def _quant_keys() -> set[str]:
    """Keys that belong in the quant section: the builders' quant options, ``method`` and every
    option of a registered quantiser (a model option of that name is refused with a hint)."""
    from ..models import QUANT_OPTIONS
    from ..quant import QUANTIZERS

    return {"method", *QUANT_OPTIONS, *(o for cls in QUANTIZERS.values() for o in cls.options())}
