"""Validation of one parsed policy file: its valid parts, and every problem as a located, human diagnostic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from orchestrator.errors import Diagnostic, Location
from orchestrator.policy import API_VERSION, Defaults, Group, PolicyFile, PolicyRule, Service
from orchestrator.pydantic_errors import describe_errors
from orchestrator.sources import SECTIONS, Kind, PathKey, Positions

ItemValue = Group | Service | tuple[str, ...] | PolicyRule


@dataclass(frozen=True)
class Entry:
    """One named definition written in a file; ``value`` is None when the definition is invalid."""

    kind: Kind
    name: str
    path: PathKey
    value: ItemValue | None


@dataclass(frozen=True)
class FileContent:
    """What one policy file defines, in written order (invalid items kept by name only)."""

    entries: tuple[Entry, ...] = ()
    defaults: Defaults | None = None
    has_defaults: bool = False


def validate_file(data: object, positions: Positions) -> tuple[FileContent | None, list[Diagnostic]]:
    """Validate the data of one YAML file; all problems are reported, and every valid item is kept.

    Returns no content for a file that is empty or not a mapping.  When the file as a whole is
    invalid, each group, service, service group and rule is validated on its own, so one bad
    rule neither hides the problems of the others nor the definitions that are fine.
    """
    file = positions.file
    if data is None:
        hint = f"a policy file starts with 'apiVersion: {API_VERSION}'; delete the file if it is not needed"
        return None, [Diagnostic("the file is empty", Location(file), code="empty-file", hint=hint)]
    if not isinstance(data, dict):
        message = f"a policy file must be a mapping (apiVersion, groups, services, …), got {_kind_of(data)}"
        return None, [Diagnostic(message, positions.locate(()), code="not-a-mapping")]
    try:
        parsed = PolicyFile.model_validate(data)
    except ValidationError as exc:
        return _salvage(data), describe_errors(exc, data, positions)
    return _content(parsed), []


def _kind_of(data: object) -> str:
    if isinstance(data, list):
        return "a list"
    if isinstance(data, str):
        return f"the text {data!r}" if len(data) <= 40 else "a text"
    return f"{type(data).__name__} {data!r}"


def _content(parsed: PolicyFile) -> FileContent:
    entries: list[Entry] = []
    entries += [Entry("group", name, ("groups", name), group) for name, group in parsed.groups.items()]
    entries += [Entry("service", name, ("services", name), svc) for name, svc in parsed.services.items()]
    entries += [
        Entry("service_group", name, ("service_groups", name), members)
        for name, members in parsed.service_groups.items()
    ]
    entries += [Entry("rule", rule.name, ("rules", i), rule) for i, rule in enumerate(parsed.rules)]
    return FileContent(tuple(entries), parsed.defaults, parsed.defaults is not None)


def _try(section: str, value: object) -> PolicyFile | None:
    """Validate one section (or one item of it) exactly as the whole file would be validated."""
    try:
        return PolicyFile.model_validate({"apiVersion": API_VERSION, section: value})
    except ValidationError:
        return None


def _salvage(data: dict[Any, Any]) -> FileContent:
    """The valid items of an invalid file (their errors were already reported for the whole file)."""
    entries: list[Entry] = []
    for kind in ("group", "service", "service_group"):
        section = SECTIONS[kind]
        items = data.get(section)
        if not isinstance(items, dict):
            continue
        for name, raw in items.items():
            if isinstance(name, str):
                parsed = _try(section, {name: raw})
                value = getattr(parsed, section)[name] if parsed is not None else None
                entries.append(Entry(kind, name, (section, name), value))
    rules = data.get("rules")
    for i, raw in enumerate(rules if isinstance(rules, list) else []):
        name = raw.get("name") if isinstance(raw, dict) else None
        if isinstance(name, str):
            parsed = _try("rules", [raw])
            entries.append(Entry("rule", name, ("rules", i), parsed.rules[0] if parsed is not None else None))
    parsed_defaults = _try("defaults", data.get("defaults"))
    defaults = parsed_defaults.defaults if parsed_defaults is not None else None
    return FileContent(tuple(entries), defaults, data.get("defaults") is not None)
