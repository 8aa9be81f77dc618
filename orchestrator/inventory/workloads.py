"""Workload sources: the pluggable interface that discovers workloads, its registry, and the static YAML source.

A workload source is any class registered under the entry-point group
:data:`WORKLOAD_SOURCE_ENTRY_POINT_GROUP` that follows :class:`WorkloadSource`.
The built-in one is ``static`` (:class:`StaticWorkloadSource`); cloud (EC2,
Azure, GCP) and NetBox sources plug in the same way from their own packages.
The :class:`~orchestrator.inventory.scope.Workload` model itself lives in the pure
module :mod:`orchestrator.inventory.scope` (so the compiler can use it without I/O) and
is re-exported here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Protocol, get_args

from pydantic import BaseModel, RootModel, ValidationError
from pydantic_core import ErrorDetails

from orchestrator.inventory.scope import Workload
from orchestrator.model.errors import Diagnostic, InventoryError, Location, Severity
from orchestrator.model.suggest import closest as closest_name
from orchestrator.model.suggest import name_hint
from orchestrator.policy.yamlsource import PathKey, PositionMap, load_yaml

__all__ = [
    "WORKLOAD_SOURCE_ENTRY_POINT_GROUP",
    "StaticWorkloadSource",
    "Workload",
    "WorkloadLoad",
    "WorkloadSource",
    "available_sources",
    "get_source",
    "load_workload_sources",
    "validation_diagnostics",
]

WORKLOAD_SOURCE_ENTRY_POINT_GROUP = "microseg.workload_sources"
DEFAULT_WORKLOADS_FILE = "workloads.yaml"
SOURCES_FILE = "sources.yaml"


@dataclass(frozen=True, slots=True)
class WorkloadLoad:
    """What one source found: its workloads and the problems it met (errors and warnings)."""

    workloads: tuple[Workload, ...]
    diagnostics: tuple[Diagnostic, ...] = ()
    locations: Mapping[str, Location] = field(default_factory=dict)
    """Optional: where each workload was defined (by name), for messages about duplicates."""


class WorkloadSource(Protocol):
    """A pluggable source of workloads.

    ``__init__`` only checks ``config`` (no I/O) and raises InventoryError when
    it is unusable; ``load`` does the I/O, reports per-workload problems as
    diagnostics and keeps going, and raises InventoryError only when the whole
    source fails.  Diagnostics without a location are attributed by the caller
    to the source's entry in ``sources.yaml``.
    """

    name: str

    def __init__(self, config: Mapping[str, Any], base_dir: Path) -> None: ...

    def load(self) -> WorkloadLoad: ...


# --------------------------------------------------------------------------- registry


def label_mapping(value: object, what: str = "label_tags") -> dict[str, str] | None:
    """A source's tag → label setting: None (every tag), a list of tag names, or a mapping tag → label name.

    Raises ValueError naming ``what`` otherwise (each source wraps it in its own InventoryError)."""
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return {v: v for v in value}
    if isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return dict(value)
    raise ValueError(f"'{what}' must be a list of tag names or a mapping of tag name to label, not {value!r}")


def _load_entry_point(entry: EntryPoint) -> type[WorkloadSource]:
    try:
        loaded = entry.load()
    except Exception as exc:  # a third-party plugin may fail in any way: report it as ours
        raise InventoryError(f"workload source {entry.name!r} ({entry.value}) cannot be loaded: {exc}") from exc
    if not isinstance(loaded, type) or not callable(getattr(loaded, "load", None)):
        raise InventoryError(f"workload source {entry.name!r} ({entry.value}) is not a WorkloadSource class")
    source: type[WorkloadSource] = loaded
    return source


def available_sources() -> dict[str, type[WorkloadSource]]:
    """Every registered workload source type, by type name."""
    found: dict[str, type[WorkloadSource]] = {}
    for entry in entry_points(group=WORKLOAD_SOURCE_ENTRY_POINT_GROUP):
        found.setdefault(entry.name, _load_entry_point(entry))
    return dict(sorted(found.items()))


def get_source(type_name: str) -> type[WorkloadSource]:
    """The workload source class registered as ``type_name``; unknown types raise InventoryError."""
    matches = list(entry_points(group=WORKLOAD_SOURCE_ENTRY_POINT_GROUP, name=type_name))
    if not matches:
        known = sorted({e.name for e in entry_points(group=WORKLOAD_SOURCE_ENTRY_POINT_GROUP)})
        close = closest_name(type_name, known)
        hint = f"known workload source types: {', '.join(known) or 'none'}"
        if close is not None:
            hint = f"did you mean {close!r}? {hint[0].upper()}{hint[1:]}"
        message = f"unknown workload source type {type_name!r}"
        raise InventoryError(f"{message} ({hint})", [Diagnostic(message, code="unknown-source", hint=hint)])
    return _load_entry_point(matches[0])


# --------------------------------------------------------------------------- pydantic errors → diagnostics


def _dotted(path: Sequence[str | int], root: str = "") -> str:
    text = root
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _nested_model(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and not issubclass(annotation, RootModel):
        return annotation
    for arg in get_args(annotation):
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def _field_names(model: type[BaseModel] | None, path: Sequence[str | int]) -> list[str]:
    """The field names (aliases where set) of the model found at ``path`` inside ``model``."""
    for part in path:
        if model is None or not isinstance(part, str):
            return []
        info = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        model = _nested_model(info.annotation) if info is not None else None
    if model is None:
        return []
    return [f.alias or n for n, f in model.model_fields.items()]


def _message(err: ErrorDetails) -> str:
    """Pydantic's message, with the offending value when the message does not already show it."""
    if err["type"] == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "too_short":
        return "must not be empty"
    value = err["input"]
    if isinstance(value, str | int | float | bool) or value is None:
        shown = "null" if value is None else str(value).lower() if isinstance(value, bool) else repr(value)
        return f"{err['msg']}, got {shown}"
    return str(err["msg"])


def validation_diagnostics(
    exc: ValidationError,
    positions: PositionMap,
    *,
    subject: str,
    model: type[BaseModel] | None = None,
    prefix: PathKey = (),
    root: str = "",
) -> list[Diagnostic]:
    """Turn a pydantic error into located diagnostics, one per offending value.

    ``prefix`` is where the validated data sits in the YAML document of
    ``positions``; ``root`` names it in messages (``microseg.protects…``);
    ``model`` (the validated model) lets unknown fields get a did-you-mean.
    The alternatives of a union that all failed on one value become one diagnostic.
    """
    grouped: dict[PathKey, list[tuple[Diagnostic, object]]] = {}
    errors = exc.errors(include_url=False)
    for err in errors:
        loc = tuple(err["loc"])
        full = (*prefix, *loc)
        parent_known = full[:-1] in positions.values
        if err["type"] == "too_short" and any(len(e["loc"]) > len(loc) and e["loc"][:len(loc)] == loc for e in errors):
            continue  # empty only because its items failed: the item errors say why
        if err["type"] == "extra_forbidden" and parent_known:
            hint = name_hint(str(loc[-1]), _field_names(model, loc[:-1]), noun="fields")
            diag = Diagnostic(f"{subject}: unknown field {_dotted(loc, root)!r}", positions.locate_key(full),
                              code="unknown-field", hint=hint)
        elif err["type"] == "missing" and parent_known:
            diag = Diagnostic(f"{subject}: missing required field {_dotted(loc, root)!r}",
                              positions.locate(full[:-1]), code="missing")
        else:
            depth = len(full)
            while depth > len(prefix) and full[:depth] not in positions.values:
                depth -= 1  # drop union-member tags that pydantic adds to the path
            full = full[:depth]
            shown = _dotted(full[len(prefix):], root)
            diag = Diagnostic(f"{subject}: {shown + ': ' if shown else ''}{_message(err)}", positions.locate(full))
        grouped.setdefault(full, []).append((diag, err["input"]))
    out: list[Diagnostic] = []
    for path, found in grouped.items():
        diag, value = found[0]
        if len(found) > 1:
            shown = _dotted(path[len(prefix):], root)
            diag = Diagnostic(f"{subject}: {shown + ': ' if shown else ''}invalid value {value!r}", diag.location)
        out.append(diag)
    return out


# --------------------------------------------------------------------------- the static source


class StaticWorkloadSource:
    """Workloads listed in a YAML file: ``workloads: [{name, addresses, labels}, …]``.

    Config: ``path`` (relative to the inventory directory; default ``workloads.yaml``).
    """

    def __init__(self, config: Mapping[str, Any], base_dir: Path) -> None:
        unknown = sorted(str(k) for k in config if k != "path")
        if unknown:
            hint = name_hint(unknown[0], ["path"], noun="settings")
            raise InventoryError(f"static workload source: unknown setting {unknown[0]!r} ({hint})",
                                 [Diagnostic(f"static workload source: unknown setting {unknown[0]!r}",
                                             code="unknown-field", hint=hint)])
        path = config.get("path", DEFAULT_WORKLOADS_FILE)
        if not isinstance(path, str) or not path.strip():
            message = f"static workload source: 'path' must be a file name, not {path!r}"
            raise InventoryError(message, [Diagnostic(message)])
        self.path = base_dir / path
        self.name = f"static:{self.path}"

    def load(self) -> WorkloadLoad:
        """Read the file; every bad entry is a diagnostic, the good ones are kept."""
        data, positions, diagnostics = load_yaml(self.path, display=str(self.path))
        entries = self._entries(data, positions, diagnostics)
        workloads: dict[str, Workload] = {}
        locations: dict[str, Location] = {}
        indexes: dict[str, int] = {}
        for index, entry in entries:
            where = positions.locate(("workloads", index))
            workload = self._workload(entry, index, positions, diagnostics)
            if workload is None:
                continue
            if workload.name in workloads:
                diagnostics.append(Diagnostic(
                    f"workload {workload.name!r} is defined twice: at {locations[workload.name]} and at {where}",
                    positions.locate(("workloads", index, "name")), code="duplicate"))
                continue
            workloads[workload.name] = workload
            locations[workload.name] = where
            indexes[workload.name] = index
        diagnostics.extend(_shared_addresses(workloads, locations, indexes, positions))
        return WorkloadLoad(tuple(workloads.values()), tuple(diagnostics), locations)

    def _entries(
        self, data: object, positions: PositionMap, diagnostics: list[Diagnostic]
    ) -> list[tuple[int, object]]:
        if data is None:
            if not diagnostics:
                diagnostics.append(Diagnostic(f"{self.path} defines no workloads", Location(str(self.path)),
                                              severity=Severity.WARNING, code="empty"))
            return []
        if not isinstance(data, dict):
            diagnostics.append(Diagnostic("a workloads file must be a mapping with a 'workloads' list",
                                          positions.locate(())))
            return []
        diagnostics.extend(_unknown_keys(data, "workloads", positions, "unknown top-level key {key!r}"))
        items = data.get("workloads")
        if items is None:
            return []
        if not isinstance(items, list):
            diagnostics.append(Diagnostic("'workloads' must be a list", positions.locate(("workloads",))))
            return []
        return list(enumerate(items))

    @staticmethod
    def _workload(
        entry: object, index: int, positions: PositionMap, diagnostics: list[Diagnostic]
    ) -> Workload | None:
        path: PathKey = ("workloads", index)
        if not isinstance(entry, dict):
            diagnostics.append(Diagnostic("a workload must be a mapping with name, addresses and labels",
                                          positions.locate(path)))
            return None
        try:
            return Workload.model_validate(entry)
        except ValidationError as exc:
            name = entry.get("name")
            subject = f"workload {name!r}" if isinstance(name, str) else f"workload #{index + 1}"
            diagnostics.extend(validation_diagnostics(exc, positions, subject=subject, model=Workload, prefix=path))
            return None


def _unknown_keys(data: Mapping[Any, Any], allowed: str, positions: PositionMap, message: str) -> list[Diagnostic]:
    """A diagnostic at every top-level key but ``allowed``; ``message`` is formatted with ``key``."""
    return [
        Diagnostic(message.format(key=key), positions.locate_key((key,)), code="unknown-field",
                   hint=name_hint(str(key), [allowed]))
        for key in data if key != allowed
    ]


def _shared_addresses(
    workloads: Mapping[str, Workload],
    locations: Mapping[str, Location],
    indexes: Mapping[str, int],
    positions: PositionMap,
) -> list[Diagnostic]:
    """A warning for every address that a second workload uses too."""
    owner: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, str] = {}
    out: list[Diagnostic] = []
    for name, workload in workloads.items():
        for position, address in enumerate(workload.addresses):
            first = owner.setdefault(address, name)
            if first != name:
                out.append(Diagnostic(
                    f"address {address} is used by workload {first!r} ({locations[first]}) and by {name!r}",
                    positions.locate(("workloads", indexes[name], "addresses", position)),
                    severity=Severity.WARNING, code="shared-address"))
    return out


# --------------------------------------------------------------------------- every source of an inventory


@dataclass(frozen=True, slots=True)
class _SourceEntry:
    type_name: str
    config: dict[str, Any]
    location: Location
    type_location: Location


def _source_entries(directory: Path, diagnostics: list[Diagnostic]) -> list[_SourceEntry]:
    """The entries of ``sources.yaml``; without that file, a static source on ``workloads.yaml`` if it exists."""
    path = directory / SOURCES_FILE
    if not path.is_file():
        default = directory / DEFAULT_WORKLOADS_FILE
        where = Location(str(default))
        return [_SourceEntry("static", {"path": DEFAULT_WORKLOADS_FILE}, where, where)] if default.is_file() else []
    data, positions, problems = load_yaml(path, display=str(path))
    diagnostics.extend(problems)
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("workload_sources", []), list):
        diagnostics.append(Diagnostic(f"{SOURCES_FILE} must hold 'workload_sources: [{{type: ..., ...}}]'",
                                      positions.locate(())))
        return []
    diagnostics.extend(_unknown_keys(data, "workload_sources", positions, f"unknown key {{key!r}} in {SOURCES_FILE}"))
    entries: list[_SourceEntry] = []
    for index, item in enumerate(data.get("workload_sources") or []):
        here: PathKey = ("workload_sources", index)
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            diagnostics.append(Diagnostic("a workload source needs a 'type' (e.g. type: static)",
                                          positions.locate(here)))
            continue
        config = {str(k): v for k, v in item.items() if k != "type"}
        entries.append(_SourceEntry(item["type"], config, positions.locate(here), positions.locate((*here, "type"))))
    return entries


def _located(diagnostics: Iterable[Diagnostic], where: Location) -> list[Diagnostic]:
    return [d if d.location is not None else replace(d, location=where) for d in diagnostics]


def _run_source(entry: _SourceEntry, directory: Path, diagnostics: list[Diagnostic]) -> tuple[str, WorkloadLoad] | None:
    try:
        source_class = get_source(entry.type_name)
    except InventoryError as exc:
        diagnostics.extend(_located(exc.diagnostics or [Diagnostic(exc.message)], entry.type_location))
        return None
    try:
        source = source_class(entry.config, directory)
        result = source.load()
    except InventoryError as exc:
        diagnostics.extend(_located(exc.diagnostics or [Diagnostic(exc.message)], entry.location))
        return None
    diagnostics.extend(_located(result.diagnostics, entry.location))
    return source.name, result


def load_workload_sources(directory: Path) -> WorkloadLoad:
    """Run every workload source of an inventory directory and merge what they found.

    A name defined by two sources is an error; an address used by workloads of
    two different sources is a warning (each source checks its own workloads).
    Diagnostics a source leaves without a location point at its entry in ``sources.yaml``.
    """
    diagnostics: list[Diagnostic] = []
    workloads: dict[str, Workload] = {}
    origin: dict[str, tuple[str, Location]] = {}
    owners: dict[object, tuple[str, str]] = {}
    for entry in _source_entries(directory, diagnostics):
        loaded = _run_source(entry, directory, diagnostics)
        if loaded is None:
            continue
        source, result = loaded
        for workload in result.workloads:
            where = result.locations.get(workload.name, entry.location)
            if workload.name in workloads:
                first_source, first_where = origin[workload.name]
                diagnostics.append(Diagnostic(
                    f"workload {workload.name!r} is defined twice: by {first_source} at {first_where} "
                    f"and by {source} at {where}", where, code="duplicate"))
                continue
            workloads[workload.name] = workload
            origin[workload.name] = (source, where)
            for address in workload.addresses:
                other = owners.setdefault(address, (workload.name, source))
                if other[1] != source:
                    diagnostics.append(Diagnostic(
                        f"address {address} is used by workload {other[0]!r} ({other[1]}) and by "
                        f"{workload.name!r} ({source})", where, severity=Severity.WARNING, code="shared-address"))
    return WorkloadLoad(tuple(workloads.values()), tuple(diagnostics), {n: w for n, (_, w) in origin.items()})
