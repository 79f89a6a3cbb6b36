"""The quantiser registry: method name -> WeightQuantizer subclass.

Recipes, model builders and layers name a quantiser as a config ``{method: name, **options}``
(QKeras-style); :func:`quantizer_from_config` looks the method up here and lets the class
validate its own options (``WeightQuantizer.from_config``), so no option is relayed through
other modules. A new quantiser registers itself with :func:`register_quantizer`.
"""

from __future__ import annotations

from typing import Any

from vecq_hw.errors import VecQError
from vecq_hw.quant.base import MAX_QUANT_BITS, WeightQuantizer

#: method name -> quantiser class
QUANTIZERS: dict[str, type[WeightQuantizer]] = {}


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
