"""One call registers an hls4ml layer class with hls4ml: the class, its C++ templates, its headers.

    register_hls_layer(layer_class, config_template, function_template, headers, params=None)
    unregister_hls_layer(layer_class)        # undo it (tests clean up with this)
    registered_headers() -> [Path, ...]      # every header a written project receives

hls4ml's extension API takes three steps per backend ('Vivado' and 'Vitis' here): the class by
name (``register_layer``), a config-struct and a function-call template (``register_template``),
and each C++ source file (``register_source``, copied flat into ``firmware/nnet_utils/``). Our
own kernels (:mod:`.layers`) use this function, and so can a layer defined outside the package
(a test with its own header in a temporary folder).

``headers`` are the layer's own headers: the generated top function includes them. Each header's
``#include "name"`` of a file beside it is copied too (recursively), so a kernel header names its
helpers once, in C++. A header may not share a file name with hls4ml's own ``nnet_utils`` headers
or with another registered header (the writer would overwrite one with the other).
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import hls4ml
from hls4ml.backends import get_backend
from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
from hls4ml.model import layers as hls_layers
from hls4ml.model.optimizer import optimizer as hls_optimizer

from ..errors import VecQError
from .options import BACKENDS

#: where a registered header lands in a written project (hls4ml's register_source default)
DEST_DIR = "nnet_utils"
_INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)
_HLS4ML_TEMPLATES = Path(hls4ml.__file__).parent / "templates"


@dataclass(frozen=True)
class HlsLayerKind:
    """What :func:`register_hls_layer` registered for one layer class."""

    layer_class: type
    config_template: str
    function_template: str
    #: the layer's own headers (included by the top function), absolute
    headers: tuple[Path, ...]
    #: every file copied into the project: the headers and the files beside them they include
    sources: tuple[Path, ...]
    #: extra ``str.format`` keys for both templates, from the hls4ml node (None: none)
    params: Callable | None = None

    @property
    def include_list(self) -> list[str]:
        return [f"{DEST_DIR}/{h.name}" for h in self.headers]


_REGISTRY: dict[str, HlsLayerKind] = {}


def _filled(kind: HlsLayerKind, template: str, params: dict, node) -> str:
    """A template filled with hls4ml's default parameters, updated by the kind's own (``params(node)``)."""
    return template.format(**{**params, **(kind.params(node) if kind.params else {})})


class _ConfigTemplate(LayerConfigTemplate):
    def __init__(self, kind: HlsLayerKind):
        super().__init__(kind.layer_class)
        self.kind = kind

    def format(self, node):
        return _filled(self.kind, self.kind.config_template, self._default_config_params(node), node)


class _FunctionTemplate(FunctionCallTemplate):
    def __init__(self, kind: HlsLayerKind):
        super().__init__(kind.layer_class, include_header=kind.include_list)
        self.kind = kind

    def format(self, node):
        return _filled(self.kind, self.kind.function_template, self._default_function_params(node), node)


def _hls4ml_header_names() -> set[str]:
    return {p.name for p in _HLS4ML_TEMPLATES.glob("*/nnet_utils/*") if p.is_file()}


def _sources(headers: tuple[Path, ...]) -> tuple[Path, ...]:
    """The headers and, recursively, every file beside a header that it includes by name."""
    found: dict[Path, None] = {}
    todo = list(headers)
    while todo:
        path = todo.pop(0)
        if path in found:
            continue
        found[path] = None
        for name in _INCLUDE.findall(path.read_text(errors="replace")):
            dep = (path.parent / name).resolve()
            if dep.is_file() and "/" in name:
                raise VecQError(f"includes '{name}' from a subfolder; registered headers are copied flat into "
                                f"{DEST_DIR}/, so include files beside it by name only", file=path)
            if dep.is_file():
                todo.append(dep)
    return tuple(found)


def _checked_headers(layer_class: type, headers) -> tuple[Path, ...]:
    paths = tuple(Path(h).resolve() for h in ([headers] if isinstance(headers, (str, Path)) else headers))
    if not paths:
        raise VecQError(f"register_hls_layer({layer_class.__name__}): expected at least one header",
                        field="headers")
    for p in paths:
        if not p.is_file():
            raise VecQError(f"register_hls_layer({layer_class.__name__}): header file not found", file=p)
    return paths


def _check_names(kind: HlsLayerKind) -> None:
    """No file name of hls4ml's nnet_utils, none that another registered layer copies from elsewhere."""
    taken = {src.name: (src, k.layer_class.__name__) for k in _REGISTRY.values() for src in k.sources}
    hls4ml_names = _hls4ml_header_names()
    for src in kind.sources:
        if src.name in hls4ml_names:
            raise VecQError(f"'{src.name}' is the name of one of hls4ml's own {DEST_DIR} headers; rename it",
                            file=src)
        other = taken.setdefault(src.name, (src, kind.layer_class.__name__))
        if other[0] != src:
            raise VecQError(f"'{src.name}' is also the name of {other[0]} (registered for {other[1]}); both "
                            f"would land in {DEST_DIR}/{src.name}", file=src)


def register_hls_layer(layer_class: type, config_template: str, function_template: str, headers,
                       params: Callable | None = None) -> HlsLayerKind:
    """Register an hls4ml ``Layer`` subclass, its templates and headers with every backend we build.

    ``config_template`` / ``function_template``: ``str.format`` templates filled with hls4ml's
    default config / function-call parameters (``{index}``, ``{input_t}``, ``{output_t}``,
    ``{config}``, ``{input}``, ``{output}``, the node's attributes) plus ``params(node)``.
    ``headers``: the layer's header file(s). Registering the same thing again does nothing; a
    different registration under a taken class name is refused (unregister it first).
    """
    paths = _checked_headers(layer_class, headers)
    kind = HlsLayerKind(layer_class, config_template, function_template, paths, _sources(paths), params)
    name = layer_class.__name__
    if name in _REGISTRY:
        if _REGISTRY[name] == kind:
            return kind
        raise VecQError(f"an hls4ml layer named '{name}' is already registered differently; call "
                        f"unregister_hls_layer first", field="layer_class")
    _check_names(kind)
    hls_layers.register_layer(name, layer_class)
    for backend_name in BACKENDS:
        backend = get_backend(backend_name)
        backend.register_template(functools.partial(_ConfigTemplate, kind))
        backend.register_template(functools.partial(_FunctionTemplate, kind))
        for src in kind.sources:
            backend.register_source(src, destination_dir=DEST_DIR)
    _REGISTRY[name] = kind
    return kind


def unregister_hls_layer(layer_class: type) -> None:
    """Undo :func:`register_hls_layer` (the class, both templates per backend, headers no one else uses)."""
    name = layer_class.__name__
    kind = _REGISTRY.pop(name, None)
    if kind is None:
        return
    if hls_layers.layer_map.get(name) is layer_class:
        del hls_layers.layer_map[name]
    still_used = {src for k in _REGISTRY.values() for src in k.sources}
    for backend_name in BACKENDS:
        backend = get_backend(backend_name)
        for suffix in ("config_template", "function_template"):
            hls_optimizer.optimizer_map.pop(f"{backend_name.lower()}:{name.lower()}_{suffix}", None)
        for src in kind.sources:
            if src not in still_used:
                backend.custom_source.pop(DEST_DIR + os.path.sep + src.name, None)  # register_source's key


def registered_kinds() -> dict[str, HlsLayerKind]:
    """The registered layer classes by name (a copy)."""
    return dict(_REGISTRY)


def registered_headers() -> list[Path]:
    """Every file a written project receives in ``firmware/nnet_utils/``, in registration order."""
    return list(dict.fromkeys(src for k in _REGISTRY.values() for src in k.sources))
