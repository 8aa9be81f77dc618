"""Loads a policy directory: reads every YAML file, validates, merges and cross-checks it, reporting all problems."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import yaml

from orchestrator.model.errors import Diagnostic, Location, PolicyError, collect_errors
from orchestrator.model.policy import Policy
from orchestrator.policy.merge import merge_files
from orchestrator.policy.references import check_policy
from orchestrator.policy.sources import Kind, Positions, SourceIndex
from orchestrator.policy.validation import FileContent, validate_file
from orchestrator.policy.yamlsource import PositionMap, load_yaml

__all__ = ["Kind", "LoadedPolicy", "SourceIndex", "load_policy", "policy_files", "sort_diagnostics"]

SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class LoadedPolicy:
    """A valid policy, where each part of it was written, and the warnings found while loading it."""

    policy: Policy
    sources: SourceIndex
    diagnostics: tuple[Diagnostic, ...]  # warnings only: any error raises PolicyError
    files: tuple[str, ...]  # the files read, as shown in diagnostics, in merge order


def load_policy(directory: Path, *, today: date) -> LoadedPolicy:
    """Read, validate and merge every ``*.yaml``/``*.yml`` file under ``directory``.

    Rules that expired before ``today`` stay in the policy (the compiler skips them) and are
    reported as warnings.  Raises :class:`PolicyError` carrying *all* diagnostics, sorted by
    file, line and column, when anything is an error.
    """
    paths = policy_files(directory)
    files = tuple(_display(path) for path in paths)
    diagnostics: list[Diagnostic] = []
    loaded: list[tuple[FileContent, Positions]] = []
    for path, shown in zip(paths, files, strict=True):
        content, positions, found = _load_file(path, shown)
        diagnostics += found
        if content is not None:
            loaded.append((content, positions))
    merged = merge_files(loaded)
    diagnostics += merged.diagnostics
    diagnostics += check_policy(
        merged.policy, merged.sources, today=today, broken=merged.broken, broken_refs=merged.broken_refs,
    )
    ordered = sort_diagnostics(diagnostics, files)
    errors = len(collect_errors(ordered))
    if errors:
        raise PolicyError(f"policy {directory} has {errors} error{'s' if errors != 1 else ''}", ordered)
    return LoadedPolicy(merged.policy, merged.sources, tuple(ordered), files)


def policy_files(directory: Path) -> list[Path]:
    """The YAML files under ``directory`` (recursively, hidden ones skipped), sorted by relative path."""
    where = Location(str(directory))
    if not directory.exists():
        raise PolicyError(f"policy directory {directory} does not exist",
                          [Diagnostic("no such directory", where, code="io")])
    if not directory.is_dir():
        raise PolicyError(f"policy directory {directory} is not a directory",
                          [Diagnostic("not a directory", where, code="io", hint="pass the directory that holds it")])
    found = [
        path for path in directory.rglob("*")
        if path.suffix in SUFFIXES and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(directory).parts)
    ]
    if not found:
        raise PolicyError(f"policy directory {directory} has no policy files",
                          [Diagnostic("no *.yaml or *.yml files here", where, code="io")])
    return sorted(found, key=lambda path: path.relative_to(directory).parts)


def _display(path: Path) -> str:
    """The path as the user typed it, or relative to the current directory when it is below it."""
    if path.is_absolute():
        try:
            return str(path.relative_to(Path.cwd()))
        except (ValueError, OSError):
            return str(path)
    return str(path)


def _load_file(path: Path, shown: str) -> tuple[FileContent | None, Positions, list[Diagnostic]]:
    try:
        data, positions, diagnostics = load_yaml(path, shown)
    except yaml.MarkedYAMLError as exc:  # raised while building values (e.g. an unknown !tag)
        mark = exc.problem_mark or exc.context_mark
        where = Location(shown, mark.line + 1, mark.column + 1) if mark else Location(shown)
        return None, PositionMap(shown), [Diagnostic(f"YAML error: {exc.problem or exc}", where, code="yaml")]
    except ValueError as exc:  # a scalar YAML cannot build, e.g. the date 2026-13-01
        return None, PositionMap(shown), [Diagnostic(f"YAML error: {exc}", Location(shown), code="yaml")]
    if data is None and diagnostics:  # unreadable, or a YAML syntax error: nothing to validate
        return None, positions, diagnostics
    content, problems = validate_file(data, positions)
    return content, positions, [*diagnostics, *problems]


def sort_diagnostics(diagnostics: Iterable[Diagnostic], files: Sequence[str] = ()) -> list[Diagnostic]:
    """By file (in ``files`` order, then by name), line and column; stable for equal positions."""
    rank = {name: i for i, name in enumerate(files)}

    def key(d: Diagnostic) -> tuple[int, str, int, int]:
        loc = d.location
        if loc is None:
            return (-1, "", 0, 0)
        return (rank.get(loc.file, len(rank)), loc.file, loc.line or 0, loc.column or 0)

    return sorted(diagnostics, key=key)
