"""The CLI is a shell over the flow: vecq_hw/cli.py imports, anywhere in the file (module level
or inside a command), only ``vecq_hw.flow``, ``vecq_hw.errors`` and the back ends' option
modules (``hls/options.py``, ``rtl/options.py``: the defaults and choices of its options).
A command that reaches past the flow into a back end, the IR or the trainer fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CLI = Path(__file__).resolve().parents[1] / "vecq_hw" / "cli.py"
ALLOWED = ("vecq_hw.flow", "vecq_hw.errors", "vecq_hw.hls.options", "vecq_hw.rtl.options")


def _allowed(module: str) -> bool:
    return any(module == a or module.startswith(a + ".") for a in ALLOWED)


def _resolve(node: ast.ImportFrom) -> str:
    """The absolute module of a ``from X import ...`` inside the package ``vecq_hw``."""
    if not node.level:
        return node.module or ""
    base = ["vecq_hw"][: max(0, 2 - node.level)]  # cli.py sits directly in vecq_hw/
    return ".".join(base + ([node.module] if node.module else []))


def forbidden_imports(source: str) -> list[str]:
    """Every vecq_hw module ``source`` (the text of a module of the package ``vecq_hw``) imports
    outside ALLOWED, as 'line N: module'."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node)
            # `from vecq_hw import flow` imports the module vecq_hw.flow; `from .flow import x` a name of it
            targets = [base if _allowed(base) else f"{base}.{a.name}" for a in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)):
            targets = [str(node.args[0].value)]
        bad += [f"line {node.lineno}: {t}" for t in targets
                if (t == "vecq_hw" or t.startswith("vecq_hw.")) and not _allowed(t)]
    return bad


def test_cli_imports_only_the_flow_the_options_and_the_errors():
    assert forbidden_imports(CLI.read_text()) == []


@pytest.mark.parametrize("snippet, module", [
    ("from .rtl import write", "vecq_hw.rtl.write"),
    ("def f():\n    from .hls.csim import csim", "vecq_hw.hls.csim.csim"),
    ("def f():\n    from .ir.io import load_model", "vecq_hw.ir.io.load_model"),
    ("from . import report", "vecq_hw.report"),
    ("import vecq_hw.train", "vecq_hw.train"),
    ("from vecq_hw.sim import simulate", "vecq_hw.sim.simulate"),
    ("importlib.import_module('vecq_hw.rtl.verilator')", "vecq_hw.rtl.verilator"),
])
def test_the_check_sees_a_back_end_import_anywhere(snippet, module):
    assert [b.split(": ", 1)[1] for b in forbidden_imports(snippet)] == [module]


@pytest.mark.parametrize("snippet", ["from .flow import run_demo", "from . import flow", "from .errors import VecQError",
                                     "from .hls import options", "from .rtl.options import RtlOptions",
                                     "import click", "from vecq_hw.flow.rtl import synth_rtl"])
def test_the_check_lets_the_flow_options_and_errors_through(snippet):
    assert forbidden_imports(snippet) == []
