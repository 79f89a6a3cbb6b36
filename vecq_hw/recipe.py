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
quant:
  method: vecq                     # vecq | ul2q
  bits: 2                          # 1..8
  per_channel: false
  adaptive: false                  # optional, vecq only: searched step instead of the table (issue #6)
  refresh_every: 1                 # optional, vecq only: adaptive search on every N-th forward
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

import yaml

from .errors import RecipeError

FORMAT_VERSION = 1

__all__ = ["FORMAT_VERSION", "load_recipe", "validate_recipe", "recipe_model_options"]

_REQ = object()  # marker: required field


class _Spec:
    """One field: a type check plus an optional extra check, and a default."""

    def __init__(self, kind: str, default: Any = _REQ, *, choices=None, lo=None, hi=None,
                 lo_open=False, hi_open=False, nullable=False, check=None, expect=None):
        self.kind, self.default, self.choices = kind, default, choices
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open
        self.nullable, self.check, self.expect = nullable, check, expect


def _fixed_spelling(value: str) -> str | None:
    """None if ``value`` is a valid ap_fixed/ap_ufixed spelling, else why not."""
    try:
        from .fixed import FixedType
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


_SCHEMA: dict[str, Any] = {
    "format_version": _Spec("int", choices=(FORMAT_VERSION,)),
    "name": _Spec("str", None, nullable=True),
    "description": _Spec("str", None, nullable=True),
    "model": {
        "name": _Spec("str", choices=None),  # checked against the registry below
        "options": _Spec("dict", {}),
    },
    "data": {
        "dataset": _Spec("str", choices=("mnist", "fashion-mnist")),
        "root": _Spec("str", None, nullable=True),
        "train_limit": _Spec("int", None, lo=1, nullable=True),
        "test_limit": _Spec("int", None, lo=1, nullable=True),
    },
    "quant": {
        "method": _Spec("str", choices=("vecq", "ul2q")),
        "bits": _Spec("int", lo=1, hi=8),
        "per_channel": _Spec("bool", False),
        "adaptive": _Spec("bool", False),
        "refresh_every": _Spec("int", 1, lo=1),
        "act_type": _Spec("str", "ap_ufixed<8,3,AP_RND,AP_SAT>", check=_fixed_spelling),
        "in_type": _Spec("str", "ap_ufixed<8,0,AP_RND,AP_SAT>", check=_fixed_spelling),
        "out_type": _Spec("str", "ap_fixed<16,6,AP_RND_CONV,AP_SAT>", check=_fixed_spelling),
    },
    "train": {
        "optimizer": _Spec("str", "adam", choices=("adam", "sgd")),
        "lr": _Spec("float", lo=0.0, lo_open=True, hi=10.0),
        "qat_lr": _Spec("float", None, lo=0.0, lo_open=True, hi=10.0, nullable=True),
        "momentum": _Spec("float", 0.9, lo=0.0, hi=1.0, hi_open=True),
        "weight_decay": _Spec("float", 0.0, lo=0.0, hi=1.0),
        "batch_size": _Spec("int", lo=1, hi=65536),
        "epochs": _Spec("int", lo=1, hi=10000),
        "float_epochs": _Spec("int", 0, lo=0, hi=10000),
        "lr_schedule": _Spec("str", "cosine", choices=("cosine", "step", "none")),
        "step_size": _Spec("int", 1, lo=1),
        "gamma": _Spec("float", 0.1, lo=0.0, lo_open=True, hi=1.0),
        "seed": _Spec("int", 0, lo=0, hi=2**32 - 1),
    },
}

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


def _check_value(spec: _Spec, v: Any, where: str, fail) -> Any:
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


def _walk(schema: dict, data: Any, prefix: str, fail) -> dict:
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
            out[key] = _walk(spec, data[key], where + ".", fail)
            continue
        if key not in data:
            if spec.default is _REQ:
                fail(where, f"missing required field; expected {_KIND_WORDS[spec.kind]}")
            out[key] = copy.deepcopy(spec.default)
            continue
        out[key] = _check_value(spec, data[key], where, fail)
    return out


def validate_recipe(data: Any, file: str | Path = "<recipe>") -> dict:
    """Validate a parsed recipe; returns a normalised copy with defaults filled in."""
    file = str(file)

    def fail(field: str, msg: str):
        raise RecipeError(msg, file=file, field=field)

    if not isinstance(data, dict):
        fail("(top level)", f"expected a mapping with format_version: {FORMAT_VERSION}, "
                            f"got {type(data).__name__}")
    if "format_version" in data and data["format_version"] != FORMAT_VERSION:
        fail("format_version", f"expected {FORMAT_VERSION}, got {data['format_version']!r}")
    rec = _walk(_SCHEMA, data, "", fail)

    from .models import MODELS, QUANT_OPTIONS, canonical_name, model_options

    try:
        rec["model"]["name"] = canonical_name(rec["model"]["name"])
    except KeyError:
        fail("model.name", f"expected one of {', '.join(MODELS)}, got {rec['model']['name']!r}")
    allowed = model_options(rec["model"]["name"])
    for k, v in rec["model"]["options"].items():
        where = f"model.options.{k}"
        if k in QUANT_OPTIONS:
            fail(where, "set this in the quant section (as quant.method/bits/per_channel/"
                        "adaptive/refresh_every/act_type/in_type/out_type), not as a model option")
        if k not in allowed:
            fail(where, f"unknown option for model {rec['model']['name']!r}; expected some of "
                        f"{', '.join(o for o in allowed if o not in QUANT_OPTIONS)}")
        default = allowed[k]
        if isinstance(default, bool):
            ok = isinstance(v, bool)
        elif isinstance(default, int):
            ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0
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
    if rec["quant"]["method"] != "vecq":
        if rec["quant"]["adaptive"]:
            fail("quant.adaptive", f"adaptive only applies to method 'vecq', got method "
                                   f"{rec['quant']['method']!r}")
        if rec["quant"]["refresh_every"] != 1:
            fail("quant.refresh_every", f"refresh_every only applies to method 'vecq', got method "
                                        f"{rec['quant']['method']!r}")
    if rec["data"]["root"] is not None and not rec["data"]["root"].strip():
        fail("data.root", "expected a folder path, got an empty string")
    if rec["train"]["qat_lr"] is None:
        rec["train"]["qat_lr"] = rec["train"]["lr"]
    return rec


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
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(f"invalid YAML{where}: {problem}", file=str(path)) from None
    return validate_recipe(data, file=str(path)), path.resolve().parent


def recipe_model_options(rec: dict, *, bits="recipe") -> dict:
    """Keyword options for :func:`vecq_hw.models.build_model` from a validated recipe."""
    q = rec["quant"]
    opts = dict(rec["model"]["options"])
    for k, v in list(opts.items()):
        if isinstance(v, list):
            opts[k] = tuple(tuple(e) if isinstance(e, list) else e for e in v)
    opts.update(bits=q["bits"] if bits == "recipe" else bits, quantizer=q["method"],
                per_channel=q["per_channel"], act_type=q["act_type"], in_type=q["in_type"],
                out_type=q["out_type"], adaptive=q["adaptive"], refresh_every=q["refresh_every"])
    return opts
