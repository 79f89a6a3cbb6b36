"""The package's structure as docs/ARCHITECTURE.md states it: no import cycles, no upward
imports between the layers of the package, and no function over 80 lines (issue #20).

The import graph is read from the source (module-level and function-level imports alike, as
``python3 ../shared/tools/import_cycles.py vecq_hw`` reads it), so a lazy import inside a
function counts: it is still a dependency.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "vecq_hw"

#: what each part of the package may import (besides itself and the foundation modules);
#: a part not listed may import only the foundation
FOUNDATION = {"errors", "strict_yaml", "resources", "fixed", "outputs", "names", "batch", "lazy", "plots"}
ALLOWED = {
    "ir": set(),
    "fixed_torch": set(),
    "data": set(),
    "planetoid": {"data"},  # the graph datasets, with data.py's folder search and md5 check
    "quant": {"fixed_torch", "ir"},  # a quantiser's levels table is the integer model's
    "nn": {"quant", "fixed_torch", "ir"},
    "models": {"nn", "quant", "fixed_torch", "ir"},
    "sim": {"ir"},
    "hls": {"ir"},
    "rtl": {"ir"},
    "qonnx": {"ir"},
    "report": {"ir"},
    "export": {"ir", "nn", "quant", "fixed_torch", "sim"},
    "train": {"nn", "quant", "fixed_torch", "models", "data", "planetoid", "export", "ir", "hls"},  # hls: SRQ prices widths
    "testing": {"flow", "ir", "sim", "hls", "rtl"},
    "flow": {"ir", "sim", "hls", "rtl", "qonnx", "export", "train", "nn", "quant", "fixed_torch", "models",
             "data", "planetoid", "report"},
    "cli": {"flow"},
}
#: single modules a part may import beyond ALLOWED: the CLI reads the back ends' option
#: classes (defaults and choices) without importing the back ends
ALLOWED_MODULES = {"cli": {"vecq_hw.hls.options", "vecq_hw.rtl.options"}}


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def _targets(mods, mod: str, node) -> list[str]:
    base = mod.split(".")
    if mods[mod].name != "__init__.py":
        base = base[:-1]
    if isinstance(node, ast.ImportFrom):
        target = node.module or ""
        if node.level:
            target = ".".join(base[: len(base) - (node.level - 1)] + ([node.module] if node.module else []))
        return [f"{target}.{a.name}" if f"{target}.{a.name}" in mods else target for a in node.names]
    return [a.name for a in node.names]


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for t in _targets(mods, m, node):
                while t and t not in mods and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t in mods and t != m and not m.startswith(t + ".") and t != "vecq_hw":
                    edges[m].add(t)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter[0]; counter[0] += 1; stack.append(root); on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]; counter[0] += 1; stack.append(w); on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop(); on.discard(w); comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def _part(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_cycle_finder_finds_a_cycle():
    """The check could fail: a hand-made graph with a cycle is reported, one without is not."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_upward_import_is_caught(monkeypatch):
    """The layer check could fail: an ir module importing sim is reported."""
    graph = {"vecq_hw.ir.layers": {"vecq_hw.sim.kernels"}, "vecq_hw.sim.kernels": {"vecq_hw.ir.layers"}}
    monkeypatch.setattr(sys.modules[__name__], "import_graph", lambda: graph)
    with pytest.raises(AssertionError):
        test_no_upward_imports()


def test_no_upward_imports():
    bad = []
    for m, targets in import_graph().items():
        part = _part(m)
        if part in FOUNDATION or not part:
            continue
        allowed = ALLOWED.get(part, set()) | FOUNDATION | {part}
        extra = ALLOWED_MODULES.get(part, set())
        bad += [f"{m} -> {t}" for t in sorted(targets) if _part(t) not in allowed and t not in extra]
    assert bad == []


def _long_functions(limit: int = 80) -> list[str]:
    out = []
    for f in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    out.append(f"{f.relative_to(PKG.parent)}:{node.lineno} {node.name} ({n} lines)")
    return out


def test_no_function_over_80_lines():
    assert _long_functions() == []
