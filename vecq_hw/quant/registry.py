"""The quantiser registry: method name -> WeightQuantizer subclass.

Recipes, model builders and layers name a quantiser as a config ``{method: name, **options}``
(QKeras-style); :func:`quantizer_from_config` looks the method up here and lets the class
validate its own options (``WeightQuantizer.from_config``), so no option is relayed through
other modules. A new quantiser registers itself with :func:`register_quantizer`.

A quantiser with its own training procedure (ALQ's loss-aware steps and pruning, SQ's staged
ratio) names it here too: :func:`register_procedure` puts a procedure class (the hooks of
:class:`vecq_hw.train.procedure.QuantProcedure`) beside the quantiser class, and
:func:`procedure_class` is how ``vecq-hw train`` finds it from ``quant.method``; a subclass
inherits its parent's procedure, and a quantiser without one trains with plain STE QAT.
"""

from __future__ import annotations

from typing import Any

from vecq_hw.errors import VecQError
from vecq_hw.quant.base import MAX_QUANT_BITS, WeightQuantizer

#: method name -> quantiser class
QUANTIZERS: dict[str, type[WeightQuantizer]] = {}
#: quantiser class -> its training procedure class (registered by vecq_hw.train for ALQ and SQ)
PROCEDURES: dict[type[WeightQuantizer], type] = {}


def register_quantizer(cls: type[WeightQuantizer], *, replace: bool = False) -> type[WeightQuantizer]:
    """Add ``cls`` under ``cls.name`` (usable as a class decorator); returns ``cls``.

    Refuses a name taken by another class unless ``replace=True``.
    """
    if not (isinstance(cls, type) and issubclass(cls, WeightQuantizer)):
        raise VecQError(f"expected a WeightQuantizer subclass, got {cls!r}", field="quantizer")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.isidentifier() or name != name.lower() or name == "base":
        raise VecQError(f"expected a lower-case identifier as {cls.__name__}.name, got {name!r}",
                        field="name")
    old = QUANTIZERS.get(name)
    if old is not None and old is not cls and not replace:
        raise VecQError(f"method {name!r} is already registered to {old.__module__}.{old.__qualname__}",
                        field="name")
    QUANTIZERS[name] = cls
    return cls


def quantizer_class(method: Any, *, prefix: str = "", file: str | None = None,
                    field: str | None = None) -> type[WeightQuantizer]:
    """The registered class for ``method`` (case-insensitive), or a one-line VecQError whose
    field is ``field`` (default ``prefix + "method"``)."""
    cls = QUANTIZERS.get(method.lower()) if isinstance(method, str) else None
    if cls is None:
        raise VecQError(f"unknown quantiser method {method!r}; expected one of {', '.join(sorted(QUANTIZERS))}",
                        file=file, field=field or prefix + "method")
    return cls


def quantizer_from_config(config: Any, *, max_bits: int = MAX_QUANT_BITS, prefix: str = "",
                          file: str | None = None) -> WeightQuantizer:
    """A new quantiser from ``{"method": name, **options}``.

    Unknown method -> VecQError listing the known ones; unknown option -> naming it and
    listing the accepted ones; a value of the wrong type or range -> naming the option.
    ``prefix`` is put before the option in the error's field (a recipe passes ``"quant."``).
    """
    if isinstance(config, WeightQuantizer):
        config = config.get_config()
    if not isinstance(config, dict) or "method" not in config:
        raise VecQError(f"expected a mapping with a method ({', '.join(sorted(QUANTIZERS))}) and its "
                        f"options, got {config!r}", file=file, field=prefix + "method")
    cls = quantizer_class(config["method"], prefix=prefix, file=file)
    return cls.from_config({**config, "method": cls.name}, max_bits=max_bits, prefix=prefix, file=file)


def register_procedure(quantizer: type[WeightQuantizer], *, replace: bool = False):
    """Class decorator: the decorated class is ``quantizer``'s training procedure (a subclass of
    :class:`vecq_hw.train.procedure.QuantProcedure`, which the trainer checks). Refuses a second
    procedure for the same quantiser class unless ``replace=True``."""
    if not (isinstance(quantizer, type) and issubclass(quantizer, WeightQuantizer)):
        raise VecQError(f"expected a WeightQuantizer subclass, got {quantizer!r}", field="quantizer")

    def add(procedure: type) -> type:
        if not isinstance(procedure, type):
            raise VecQError(f"expected a procedure class, got {procedure!r}", field="procedure")
        old = PROCEDURES.get(quantizer)
        if old is not None and old is not procedure and not replace:
            raise VecQError(f"{quantizer.__name__} already has the training procedure "
                            f"{old.__module__}.{old.__qualname__}", field="procedure")
        PROCEDURES[quantizer] = procedure
        return procedure

    return add


def procedure_class(method: Any, *, prefix: str = "", file: str | None = None) -> type | None:
    """The training procedure registered for ``method``'s quantiser class or the nearest base
    class that has one; None: plain STE QAT."""
    for cls in quantizer_class(method, prefix=prefix, file=file).__mro__:
        if cls in PROCEDURES:
            return PROCEDURES[cls]
    return None
