"""The one YAML reader for every file a user hands us (model.yaml, recipes).

``yaml.safe_load`` semantics, stricter: explicit tags, anchors/aliases and duplicate mapping
keys are refused (an anchor or a second ``bits:`` would otherwise silently change what a file
means). Errors are one line of the caller's error class, naming the file and the line.
"""

from __future__ import annotations

from typing import Any

import yaml

from .errors import VecQError

# libyaml's parser when available (the checks are the same; it is ~10x faster)
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _YamlProblem(Exception):
    def __init__(self, msg: str, line: int | None = None):
        super().__init__(msg)
        self.msg, self.line = msg, line


class _StrictLoader(_SafeLoader):
    """SafeLoader that refuses duplicate mapping keys."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    dup = key in seen
                except TypeError:
                    raise _YamlProblem("unhashable mapping key", key_node.start_mark.line + 1)
                if dup:
                    raise _YamlProblem(f"duplicate key '{key}'", key_node.start_mark.line + 1)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _parse(text: str) -> Any:
    for ev in yaml.parse(text, Loader=_SafeLoader):
        line = ev.start_mark.line + 1 if ev.start_mark else None
        if isinstance(ev, yaml.AliasEvent) or getattr(ev, "anchor", None) is not None:
            raise _YamlProblem("YAML anchors and aliases are not allowed", line)
        tag = getattr(ev, "tag", None)
        if tag is not None and isinstance(ev, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
            raise _YamlProblem(f"explicit YAML tag '{tag}' is not allowed", line)
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass


def load_strict_yaml(text: str, *, file: str, error: type[VecQError] = VecQError) -> Any:
    """Parse ``text`` strictly; any problem raises ``error`` (one line naming ``file``)."""
    try:
        return _parse(text)
    except _YamlProblem as e:
        raise error(f"{e.msg}" + (f" (line {e.line})" if e.line else ""), file=file) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        loc = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise error(f"unparseable YAML{loc}: {problem}", file=file) from None
    except RecursionError:
        raise error("YAML nested too deeply", file=file) from None
