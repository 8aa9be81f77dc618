"""Change requests as policy: the change a ticket asks for, and the effective policy every run works from.

The effective policy is the policy directory plus every *applied* change
request: their added rules (one ``zz-change-<id>.yaml`` each, after the
directory's own files) and their removed rules (filtered out of the files
that hold them).  It is written to a temporary directory and loaded through
the normal loader, so a change request is validated exactly like a policy
edit — and ``plan``, ``apply`` and ``reconcile`` keep ticket rules instead
of reverting them.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Protocol

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from orchestrator.compiler.compiler import Compilation
from orchestrator.engine.project import Project, load_project
from orchestrator.model.errors import Diagnostic, Location, PolicyError
from orchestrator.model.policy import API_VERSION, NAME_PATTERN, is_name
from orchestrator.model.suggest import name_hint
from orchestrator.policy.loader import LoadedPolicy, policy_files
from orchestrator.policy.sources import Positions, Source, SourceIndex

MAX_RULES = 50
CHANGE_FILE = "zz-change-{id}.yaml"
HEADER_LINES = 3  # apiVersion, description, "rules:" — rule i is written on line HEADER_LINES + 1 + i
_CHANGE_FILE = re.compile(r"zz-change-(?P<id>[A-Za-z0-9_.-]+)\.yaml\Z")


def _rule_name(value: str) -> str:
    if not is_name(value):  # the policy model's own check (re.fullmatch)
        raise ValueError(f"invalid rule name {value!r}: use letters, digits, '_', '.', '-'")
    return value


RuleName = Annotated[str, StringConstraints(pattern=NAME_PATTERN), AfterValidator(_rule_name)]
"""A rule name to remove: exactly what a policy rule's ``name`` accepts (the same check, no tighter length
limit), so every rule a change request adds — or a policy file holds — can be removed through the API too.
The request body limit (``serve.max_body_bytes``) bounds its length."""


class ChangeSpec(BaseModel):
    """The policy change of a request: rules to add (policy rule documents) and names of rules to remove."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    add: Annotated[list[dict[str, Any]], Field(max_length=MAX_RULES)] = Field(
        default_factory=list, description="Policy rules in the policy file format (name, from, to, services, "
                                          "action, priority, expires …); `ticket` is set to the request's ticket.")
    remove: Annotated[list[RuleName], Field(max_length=MAX_RULES)] = Field(
        default_factory=list, description="Names of rules to remove (of the policy directory or of earlier "
                                          "change requests).")

    @model_validator(mode="after")
    def _not_empty(self) -> ChangeSpec:
        if not self.add and not self.remove:
            raise ValueError("a change needs rules to add or rules to remove")
        return self


class ChangeLike(Protocol):
    """What the effective policy needs of a change request."""

    @property
    def id(self) -> str: ...

    @property
    def change(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class PendingChange:
    """A change request that is not in the store (yet): the one being validated or applied."""

    id: str
    change: dict[str, Any] = field(default_factory=dict)


class AppliedSource(Protocol):
    """A store that lists change requests."""

    def changes(self, statuses: Sequence[str] | None = None) -> Sequence[ChangeLike]: ...


def stamp(spec: ChangeSpec, ticket: str) -> dict[str, Any]:
    """The change as stored: every added rule carries the request's ticket (a different one is an error)."""
    problems = [Diagnostic(f"rule {i} carries ticket {rule['ticket']!r}, not the request's {ticket!r}",
                           Location(f"add[{i}]"), code="ticket")
                for i, rule in enumerate(spec.add) if rule.get("ticket") not in (None, ticket)]
    if problems:
        raise PolicyError("added rules must carry the request's ticket", problems)
    return {"add": [{**rule, "ticket": ticket} for rule in spec.add], "remove": list(spec.remove)}


def expiring(change: Mapping[str, Any]) -> list[tuple[str, date]]:
    """``(rule name, expiry)`` of the added rules that have an expiry date."""
    out: list[tuple[str, date]] = []
    for rule in change.get("add", ()):
        value = rule.get("expires")
        if value:
            try:
                out.append((str(rule.get("name")), date.fromisoformat(str(value))))
            except ValueError:
                continue  # the loader reports it when the change is validated
    return out


# ------------------------------------------------------------------------------ the effective policy


def _rule_names(data: Any) -> list[str]:
    rules = data.get("rules") if isinstance(data, dict) else None
    return [str(r.get("name")) for r in rules or () if isinstance(r, dict)]


def _write_base(base_dir: Path, target: Path, removed: set[str]) -> set[str]:
    """Copy the policy files, leaving out removed rules; the rule names found."""
    found: set[str] = set()
    for path in policy_files(base_dir):
        destination = target / path.relative_to(base_dir)
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            shutil.copyfile(path, destination)  # the loader reports what is wrong with it
            continue
        names = _rule_names(data)
        found.update(names)
        if removed & set(names):
            data["rules"] = [r for r in data["rules"] if not (isinstance(r, dict) and r.get("name") in removed)]
            destination.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
        else:
            shutil.copyfile(path, destination)
    return found


def _write_change(target: Path, change: ChangeLike, removed: set[str]) -> list[str]:
    """One file per change request, one rule per line (so a diagnostic's line names the rule); the names it adds."""
    added = [str(r.get("name")) for r in change.change.get("add", ())]
    rules = [r for r in change.change.get("add", ()) if r.get("name") not in removed]
    if not rules:
        return added
    lines = [f"apiVersion: {API_VERSION}", "description: " + json.dumps(f"change request {change.id}"), "rules:"]
    lines += ["- " + json.dumps(rule, sort_keys=False, default=str) for rule in rules]
    (target / CHANGE_FILE.format(id=change.id)).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return added


def write_effective_policy(base_dir: Path, target: Path, changes: Sequence[ChangeLike]) -> None:
    """Write the effective policy of ``changes`` (in order) into ``target``; PolicyError for unknown removals."""
    removed: set[str] = set()
    for change in changes:
        removed.update(change.change.get("remove", ()))
    known = _write_base(base_dir, target, removed)
    problems: list[Diagnostic] = []
    for change in changes:
        for index, name in enumerate(change.change.get("remove", ())):
            if name not in known:
                problems.append(Diagnostic(f"no rule named {name!r} to remove", Location(f"remove[{index}]"),
                                           code="unknown-rule", hint=name_hint(name, known, noun="rules")))
        known.update(_write_change(target, change, removed))
    if problems:
        raise PolicyError("the change removes rules that do not exist", problems)


@contextmanager
def effective_policy(base_dir: Path, store: AppliedSource | None,
                     extra: Iterable[ChangeLike] = ()) -> Iterator[Path]:
    """A temporary directory holding the policy directory + every applied change request (+ ``extra``)."""
    changes = [*(store.changes(["applied"]) if store is not None else ()), *extra]
    target = Path(tempfile.mkdtemp(prefix="microseg-effective-"))
    try:
        write_effective_policy(base_dir, target, changes)
        yield target
    finally:
        shutil.rmtree(target, ignore_errors=True)


def _shown(directory: Path) -> str:
    """``directory`` as the loader shows it: relative to the working directory when below it."""
    try:
        return str(directory.relative_to(Path.cwd()))
    except (ValueError, OSError):
        return str(directory)


class Relocator:
    """Tells locations in the temporary directory by the policy file or the change request they came from."""

    def __init__(self, temp: Path, base_dir: Path) -> None:
        self.temp, self.base_dir = _shown(temp), base_dir

    def location(self, loc: Location) -> Location:
        """Where ``loc`` really is: the policy file, or ``[change request ID: ]add[i]``."""
        if not loc.file.startswith(self.temp):
            return loc
        match = _CHANGE_FILE.search(loc.file)
        if match is None:
            return replace(loc, file=str(self.base_dir) + loc.file[len(self.temp):])
        rule = (loc.line or 0) - HEADER_LINES - 1
        where = f"add[{rule}]" if rule >= 0 else "change"
        return Location(where if match["id"] == "new" else f"change request {match['id']}: {where}")

    def diagnostic(self, diagnostic: Diagnostic) -> Diagnostic:
        loc = diagnostic.location
        return diagnostic if loc is None else replace(diagnostic, location=self.location(loc))

    def loaded(self, loaded: LoadedPolicy) -> LoadedPolicy:
        """``loaded`` with every location (sources, diagnostics, files) told where it came from."""
        entries = {key: Source(_RelocatedPositions(src.positions, self), src.path)
                   for key, src in loaded.sources._entries.items()}  # the index has no public iterator
        defaults = None if loaded.sources.defaults is None else self.location(loaded.sources.defaults)
        return LoadedPolicy(loaded.policy, SourceIndex(entries, defaults),
                            tuple(self.diagnostic(d) for d in loaded.diagnostics),
                            tuple(self.location(Location(f)).file for f in loaded.files))


@dataclass(frozen=True)
class _RelocatedPositions:
    """Positions of a temporary file, reported where the content came from."""

    inner: Positions
    relocator: Relocator

    @property
    def file(self) -> str:
        return self.relocator.location(Location(self.inner.file)).file

    def locate(self, path: Sequence[str | int]) -> Location:
        return self.relocator.location(self.inner.locate(path))

    def locate_key(self, path: Sequence[str | int]) -> Location:
        return self.relocator.location(self.inner.locate_key(path))


def load_effective_project(base_dir: Path, inventory: Path, *, today: date, store: AppliedSource | None,
                           extra: Iterable[ChangeLike] = ()) -> Project:
    """The project over the effective policy; every location names the policy file or the request's rule."""
    with effective_policy(base_dir, store, extra) as directory:
        relocator = Relocator(directory, base_dir)
        try:
            project = load_project(directory, inventory, today=today)
        except PolicyError as exc:
            message = exc.message.replace(relocator.temp, str(base_dir))
            raise PolicyError(message, [relocator.diagnostic(d) for d in exc.diagnostics]) from exc
        return Project(relocator.loaded(project.loaded), project.inventory, project.today)


def affected_points(before: Compilation, after: Compilation) -> list[str]:
    """The points whose intended rules differ between two compilations (provenance aside)."""
    names = set(before.points) | set(after.points)

    def intent(compilation: Compilation, name: str) -> Any:
        compiled = compilation.points.get(name)
        return None if compiled is None else compiled.ruleset.to_dict(with_provenance=False)

    return sorted(n for n in names if intent(before, n) != intent(after, n))
