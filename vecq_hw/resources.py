"""Where the project's non-Python files are: HLS templates and example recipes.

In a checkout (and an editable install) they are the repository's top-level ``hls_templates/``
and ``configs/``; a wheel installs the same folders inside the package (pyproject.toml maps
them there), so both layouts work without copying files around.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """``vecq_hw/<name>`` when installed from a wheel, else ``<checkout>/<name>``."""
    for base in (_PACKAGE / name, _PACKAGE.parent / name):
        if base.is_dir():
            return base
    raise FileNotFoundError(f"vecq_hw's {name}/ folder is missing: looked in {_PACKAGE} and "
                            f"{_PACKAGE.parent} (a broken install?)")


TEMPLATE_DIR = resource_dir("hls_templates")
CONFIG_DIR = resource_dir("configs")
