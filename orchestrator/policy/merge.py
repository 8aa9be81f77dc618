"""Merges the validated files of a policy directory into one Policy, reporting names defined twice."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from orchestrator.model.errors import Diagnostic, Location
from orchestrator.model.policy import Defaults, Group, Policy, PolicyRule, Service
from orchestrator.policy.references import Reference
from orchestrator.policy.sources import Kind, Positions, Source, SourceIndex
from orchestrator.policy.validation import Entry, FileContent

KIND_TEXT: dict[Kind, str] = {"group": "group", "service": "service", "service_group": "service group", "rule": "rule"}


@dataclass(frozen=True)
class Merged:
    """The merged policy, where everything was defined, and what merging found wrong."""

    policy: Policy
    sources: SourceIndex
    broken: frozenset[tuple[Kind, str]]
    """Names whose (first) definition is invalid: already reported, so not 'unknown' to references."""
    diagnostics: tuple[Diagnostic, ...]
    broken_refs: tuple[Reference, ...] = ()
    """The well-formed references of the invalid definitions, to be checked like those of valid ones."""


def merge_files(files: Sequence[tuple[FileContent, Positions]]) -> Merged:
    """Merge in the given (file) order; the first definition of a name wins, later ones are errors."""
    merger = _Merger()
    for content, positions in files:
        if content.has_defaults:
            merger.add_defaults(content.defaults, positions.locate_key(("defaults",)))
        for entry in content.entries:
            merger.add(entry, Source(positions, entry.path))
    return merger.result()


@dataclass
class _Merger:
    diagnostics: list[Diagnostic] = field(default_factory=list)
    sources: dict[tuple[Kind, str], Source] = field(default_factory=dict)
    broken: set[tuple[Kind, str]] = field(default_factory=set)
    broken_refs: list[Reference] = field(default_factory=list)
    groups: dict[str, Group] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    service_groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    rules: list[PolicyRule] = field(default_factory=list)
    defaults: Defaults | None = None
    defaults_at: Location | None = None

    def add_defaults(self, defaults: Defaults | None, here: Location) -> None:
        if self.defaults_at is not None:
            self.diagnostics.append(Diagnostic(
                "defaults are defined in more than one file", here, code="duplicate",
                hint=f"first defined at {self.defaults_at}; keep a single defaults section",
            ))
            return
        self.defaults, self.defaults_at = defaults, here

    def add(self, entry: Entry, source: Source) -> None:
        key = (entry.kind, entry.name)
        if key in self.sources:
            first = self.sources[key].definition(entry.kind)
            self.diagnostics.append(Diagnostic(
                f"duplicate {KIND_TEXT[entry.kind]} {entry.name!r}", source.definition(entry.kind),
                code="duplicate", hint=f"first defined at {first}",
            ))
            return
        self.sources[key] = source
        value = entry.value
        if value is None:
            self.broken.add(key)
            self.broken_refs += entry.refs
        elif isinstance(value, PolicyRule):
            self.rules.append(value)
        elif isinstance(value, Group):
            self.groups[entry.name] = value
        elif isinstance(value, Service):
            self.services[entry.name] = value
        else:
            self.service_groups[entry.name] = value

    def result(self) -> Merged:
        policy = Policy(
            defaults=self.defaults or Defaults(),
            groups=self.groups,
            services=self.services,
            service_groups=self.service_groups,
            rules=tuple(self.rules),
        )
        index = SourceIndex(self.sources, self.defaults_at)
        return Merged(policy, index, frozenset(self.broken), tuple(self.diagnostics), tuple(self.broken_refs))
