"""One exception family for bad input.

Every error a user can cause by handing us a bad file, recipe or argument is a
``VecQError``: one line naming the file, the field and what was expected. The CLI
prints that line and exits 2 with no traceback.
"""

from __future__ import annotations


class VecQError(ValueError):
    """Bad input: the message is a single line fit to show a user."""

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None):
        self.file = None if file is None else str(file)
        self.field = field
        self.detail = message
        parts = []
        if self.file:
            parts.append(self.file)
        if field:
            parts.append(f"field '{field}'")
        prefix = ": ".join(parts)
        line = f"{prefix}: {message}" if prefix else message
        super().__init__(" ".join(line.split()))  # always one line


class FixedTypeError(VecQError):
    """A malformed or unsupported ap_types spelling."""


class FormatError(VecQError):
    """A model folder (model.yaml + tables) that fails validation."""


class ExportError(VecQError):
    """A PyTorch model that cannot be exported exactly."""


class RecipeError(VecQError):
    """A training recipe that fails validation."""


class DatasetError(VecQError):
    """A dataset file that is missing or corrupt."""


class ToolError(Exception):
    """A tool we run failed (compiler, simulator, mismatch): exit 3."""
