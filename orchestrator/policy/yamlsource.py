"""YAML reading that remembers where every value was written (file:line:column).

``load_yaml`` returns plain Python data (dicts, lists, str, int, float, bool,
None, dates) plus a :class:`PositionMap` that maps a path of keys/indexes
(``("rules", 3, "from")``) to the :class:`~orchestrator.model.errors.Location` of
that value.  Duplicate mapping keys — which PyYAML silently overwrites — are
reported as diagnostics instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestrator.model.errors import Diagnostic, Location

PathKey = tuple[str | int, ...]


@dataclass
class PositionMap:
    """Locations of the values (and mapping keys) of one YAML document."""

    file: str
    values: dict[PathKey, Location] = field(default_factory=dict)
    keys: dict[PathKey, Location] = field(default_factory=dict)

    def locate(self, path: Sequence[str | int]) -> Location:
        """The location of ``path``, or of its nearest ancestor that has one."""
        key = tuple(path)
        while key:
            if key in self.values:
                return self.values[key]
            key = key[:-1]
        return self.values.get((), Location(self.file))

    def locate_key(self, path: Sequence[str | int]) -> Location:
        """Where the mapping key that ends ``path`` was written (falls back to :meth:`locate`)."""
        return self.keys.get(tuple(path)) or self.locate(path)


def _loc(file: str, node: yaml.Node) -> Location:
    return Location(file, node.start_mark.line + 1, node.start_mark.column + 1)


_STR_TAG = "tag:yaml.org,2002:str"


class _Builder:
    def __init__(self, file: str) -> None:
        self.positions = PositionMap(file)
        self.diagnostics: list[Diagnostic] = []
        self._scalar = yaml.SafeLoader("")  # only used for its scalar constructors

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        self.positions.values[path] = _loc(self.positions.file, node)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, (*path, i)) for i, child in enumerate(node.value)]
        if node.tag == _STR_TAG:  # most scalars: what SafeLoader's str constructor returns, without its dispatch
            return node.value
        try:
            return self._scalar.construct_object(node, deep=True)
        except ValueError as exc:  # e.g. a date like 2026-13-01
            problem = f"invalid value {node.value!r}: {exc}"
            raise yaml.MarkedYAMLError(problem=problem, problem_mark=node.start_mark) from exc

    def _mapping(self, node: yaml.MappingNode, path: PathKey) -> dict[Any, Any]:
        self._scalar.flatten_mapping(node)  # resolves YAML merge keys (<<)
        out: dict[Any, Any] = {}
        first_seen: dict[Any, Location] = {}
        for key_node, value_node in node.value:
            key = key_node.value if key_node.tag == _STR_TAG else self._scalar.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                self.diagnostics.append(
                    Diagnostic(f"mapping key {key!r} must be a plain value", _loc(self.positions.file, key_node))
                )
                continue
            key_loc = _loc(self.positions.file, key_node)
            if key in first_seen:
                self.diagnostics.append(
                    Diagnostic(
                        f"duplicate key {key!r}",
                        key_loc,
                        code="duplicate",
                        hint=f"first defined at {first_seen[key]}",
                    )
                )
                continue
            first_seen[key] = key_loc
            child: PathKey = (*path, key if isinstance(key, str | int) else str(key))
            self.positions.keys[child] = key_loc
            out[key] = self.build(value_node, child)
        return out


_COMPOSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: the same nodes and marks, ~10× faster


def parse_yaml(text: str, file: str) -> tuple[Any, PositionMap, list[Diagnostic]]:
    """Parse one YAML document; syntax errors become a diagnostic with their position."""
    try:
        try:
            node = yaml.compose(text, Loader=_COMPOSER)
        except yaml.YAMLError:
            node = yaml.compose(text, Loader=yaml.SafeLoader)  # the pure-Python parser says more about errors
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
        problem = exc.problem or exc.context or "invalid YAML"
        return None, PositionMap(file), [Diagnostic(f"YAML syntax error: {problem}", loc, code="yaml")]
    except yaml.YAMLError as exc:
        return None, PositionMap(file), [Diagnostic(f"YAML error: {exc}", Location(file), code="yaml")]
    if node is None:
        return None, PositionMap(file), []
    builder = _Builder(file)
    try:
        data = builder.build(node, ())
    except yaml.MarkedYAMLError as exc:  # unknown !tag and the like
        mark = exc.problem_mark or exc.context_mark
        loc = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
        return None, builder.positions, [Diagnostic(f"YAML error: {exc.problem or exc.context}", loc, code="yaml")]
    return data, builder.positions, builder.diagnostics



def load_yaml(path: Path, display: str | None = None) -> tuple[Any, PositionMap, list[Diagnostic]]:
    """Read and parse ``path``; unreadable files become a diagnostic, never a traceback."""
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, PositionMap(name), [Diagnostic(f"cannot read file: {exc}", Location(name), code="io")]
    return parse_yaml(text, name)
