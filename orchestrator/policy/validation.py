"""Validation of one parsed policy file: its valid parts, and every problem as a located, human diagnostic."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from orchestrator.model.errors import Diagnostic, Location
from orchestrator.model.policy import API_VERSION, Defaults, Group, PolicyFile, PolicyRule, RuleAction, Service
from orchestrator.model.rules import Mode
from orchestrator.policy.pydantic_errors import describe_errors
from orchestrator.policy.references import REFERENCE_FIELDS, Reference
from orchestrator.policy.sources import SECTIONS, Kind, PathKey, Positions

ItemValue = Group | Service | tuple[str, ...] | PolicyRule


@dataclass(frozen=True)
class Entry:
    """One named definition written in a file; ``value`` is None when the definition is invalid."""

    kind: Kind
    name: str
    path: PathKey
    value: ItemValue | None
    refs: tuple[Reference, ...] = ()
    """The well-formed references of an invalid definition (those of a valid one are in its value)."""


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
    entries += [Entry("rule", rule.name, ("rules", i), _with_file_mode(rule, parsed.mode))
                for i, rule in enumerate(parsed.rules)]
    return FileContent(tuple(entries), parsed.defaults, parsed.defaults is not None)


def _with_file_mode(rule: PolicyRule, mode: Mode | None) -> PolicyRule:
    """A deny rule of a file with a ``mode`` takes it unless it sets its own (allow rules never block: none)."""
    if mode is None or rule.mode is not None or rule.action is not RuleAction.DENY:
        return rule
    return rule.model_copy(update={"mode": mode})


def _try(section: str, value: object) -> tuple[PolicyFile | None, list[PathKey]]:
    """Validate one section (or one item of it) exactly as the whole file would be validated.

    Returns the parsed file, or None and where each error was found.
    """
    try:
        return PolicyFile.model_validate({"apiVersion": API_VERSION, section: value}), []
    except ValidationError as exc:
        return None, [tuple(error["loc"]) for error in exc.errors(include_url=False)]


def _salvage(data: dict[Any, Any]) -> FileContent:
    """The valid items of an invalid file (their errors were already reported for the whole file)."""
    entries: list[Entry] = []
    for kind in ("group", "service", "service_group"):
        section = SECTIONS[kind]
        items = data.get(section)
        if not isinstance(items, dict):
            continue
        entries += [_item(kind, name, (section, name), raw) for name, raw in items.items() if isinstance(name, str)]
    rules = data.get("rules")
    parsed_mode, _ = _try("mode", data.get("mode"))
    mode = parsed_mode.mode if parsed_mode is not None else None
    for i, raw in enumerate(rules if isinstance(rules, list) else []):
        name = raw.get("name") if isinstance(raw, dict) else None
        if isinstance(name, str):
            entry = _item("rule", name, ("rules", i), raw)
            if isinstance(entry.value, PolicyRule):  # the file's mode holds for its valid rules here too
                entry = replace(entry, value=_with_file_mode(entry.value, mode))
            entries.append(entry)
    parsed_defaults, _ = _try("defaults", data.get("defaults"))
    defaults = parsed_defaults.defaults if parsed_defaults is not None else None
    return FileContent(tuple(entries), defaults, data.get("defaults") is not None)


def _item(kind: Kind, name: str, path: PathKey, raw: object) -> Entry:
    """One item of an invalid file, validated on its own; when it is invalid, its well-formed references."""
    section = SECTIONS[kind]
    parsed, errors = _try(section, [raw] if kind == "rule" else {name: raw})
    if parsed is not None:
        value: ItemValue = parsed.rules[0] if kind == "rule" else getattr(parsed, section)[name]
        return Entry(kind, name, path, value)
    # error paths relative to the item (below ("rules", 0) or (section, name)); an invalid name is not a field
    failed = [loc[2:] for loc in errors if loc[2:3] != ("[key]",)]
    return Entry(kind, name, path, None, _raw_references(kind, name, raw, failed))


def _raw_references(kind: Kind, name: str, raw: object, failed: Sequence[PathKey]) -> tuple[Reference, ...]:
    """The references of an invalid item, from its raw data, in the fields that are well-formed.

    A field is well-formed when it is a string or a list of strings and no validation error was
    found in it: the references of a field that failed were not understood, so they are not checked.
    """
    if kind == "service_group":  # a plain list: its entries are the field "members"
        fields: dict[Any, Any] = {"members": raw}
        failed = [("members", *loc) for loc in failed]
    else:
        fields = raw if isinstance(raw, dict) else {}
    refs: list[Reference] = []
    for field in REFERENCE_FIELDS.get(kind, ()):
        value = fields.get(field)
        names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        if all(isinstance(ref, str) for ref in names) and not any(loc[:1] == (field,) for loc in failed):
            refs += [Reference(kind, name, field, i, ref) for i, ref in enumerate(names)]
    return tuple(refs)
