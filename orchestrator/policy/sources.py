"""Where each named part of a merged policy was written (file:line:column), for diagnostics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from orchestrator.model.errors import Location

Kind = Literal["group", "service", "service_group", "rule"]
PathKey = tuple[str | int, ...]

#: The top-level section of a policy file that defines each kind of name.
SECTIONS: Mapping[Kind, str] = {
    "group": "groups",
    "service": "services",
    "service_group": "service_groups",
    "rule": "rules",
}


class Positions(Protocol):
    """Positions of one YAML document (``orchestrator.policy.yamlsource.PositionMap`` is one)."""

    @property
    def file(self) -> str: ...

    def locate(self, path: Sequence[str | int]) -> Location: ...

    def locate_key(self, path: Sequence[str | int]) -> Location: ...


@dataclass(frozen=True)
class Source:
    """One definition: the document it was written in and its path there (``("rules", 3)``)."""

    positions: Positions
    path: PathKey

    def definition(self, kind: Kind) -> Location:
        """Where the name was written: a rule's ``name:`` value, or the key of a group/service/service group."""
        if kind == "rule":
            return self.positions.locate((*self.path, "name"))
        return self.positions.locate_key(self.path)


class SourceIndex:
    """Maps ``(kind, name)`` to where the name was defined, and references to where they were written."""

    def __init__(self, entries: Mapping[tuple[Kind, str], Source], defaults: Location | None = None) -> None:
        self._entries = dict(entries)
        self.defaults = defaults
        """Where the ``defaults`` section was written, if any file has one."""

    def locate(self, kind: Kind, name: str) -> Location | None:
        """Where ``name`` was defined: a rule's ``name:`` value, or the key of a group/service/service group."""
        src = self._entries.get((kind, name))
        return None if src is None else src.definition(kind)

    def locate_field(self, kind: Kind, name: str, field: str) -> Location | None:
        """Where a field of a definition was written, e.g. ``("rule", "web-to-app", "expires")``.

        Falls back to the definition itself when the field was not written.
        """
        src = self._entries.get((kind, name))
        return None if src is None else src.positions.locate((*src.path, field))

    def locate_ref(self, kind: Kind, name: str, field: str, index: int) -> Location | None:
        """Where the ``index``-th entry of a list field was written, e.g. ``("rule", "web-to-app", "from", 0)``.

        Service groups are plain lists: their ``field`` is ignored (pass ``"members"``).
        A scalar written where a list is allowed (``from: web``) is its own entry 0.
        """
        src = self._entries.get((kind, name))
        if src is None:
            return None
        if kind == "service_group":
            return src.positions.locate((*src.path, index))
        return src.positions.locate((*src.path, field, index))
