"""Names of a package that load their module on first use (PEP 562 module ``__getattr__``).

The back ends' packages export verbs whose modules import heavy libraries (hls4ml, da4ml); the
CLI reads only their option modules, so those names load when first asked for.
"""

from __future__ import annotations

from importlib import import_module


def lazy_names(package: str, exports: dict[str, str]):
    """A module ``__getattr__`` for ``package``: name -> relative module it is loaded from."""
    namespace = vars(import_module(package))

    def __getattr__(name):
        if name in exports:
            value = getattr(import_module(exports[name], package), name)
            namespace[name] = value  # later look-ups skip this function
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
