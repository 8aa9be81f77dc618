"""The secret references written in an inventory, checked where they were written (file:line), never resolved."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from orchestrator.engine.secrets import (
    FileBackend,
    Reference,
    SecretBackend,
    SecretReferenceError,
    backend_names,
    field_name,
    has_embedded_reference,
    is_secret_field,
    load_backend,
    parse_reference,
)
from orchestrator.inventory.inventory import DEFAULTS_FILE, GROUPS_FILE, HOSTS_FILE
from orchestrator.inventory.scope import PluginData
from orchestrator.model.errors import Diagnostic, InventoryError, Location, Severity
from orchestrator.model.suggest import name_hint
from orchestrator.policy.yamlsource import PathKey, PositionMap, load_yaml

CONNECTION_FIELDS = ("username", "password")
WHERE_RESOLVED = ("references are resolved only in username, password, connection_options.<driver>.extras and "
                  "data.microseg.settings fields whose name says password, secret, token, passphrase, private key, "
                  "API key or credential")


def check_references(directory: Path, backends: Mapping[str, SecretBackend] | None = None) -> list[Diagnostic]:
    """Every problem of the secret references in ``directory``'s hosts, groups and defaults files.

    Malformed references, unknown backends and references a backend calls malformed are errors; a
    reference where nothing resolves it is an error too (it would be used as written).  A ``file``
    reference to a file others can read is a warning.  Unreadable files are left to the inventory loader.
    """
    checker = _Checker(dict(backends or {}))
    for name in (HOSTS_FILE, GROUPS_FILE, DEFAULTS_FILE):
        path = directory / name
        if not path.is_file():
            continue
        data, positions, problems = load_yaml(path, display=str(path))
        if not problems:
            checker.file(name, data, positions)
    return checker.diagnostics


def check_plugin_references(plugin: PluginData, backends: Mapping[str, SecretBackend] | None = None,
                            *, known: Iterable[Diagnostic] = ()) -> list[Diagnostic]:
    """The same checks on what a Nornir inventory plugin built (its hosts, groups and defaults: a CMDB's values
    are written by someone too), named by the plugin's config file, host or group and field — there are no
    lines; a problem ``known`` already reports (a SimpleInventory file the transform function read) is left out."""
    checker = _Checker(dict(backends or {}))
    for name in (HOSTS_FILE, GROUPS_FILE, DEFAULTS_FILE):
        checker.file(name, plugin.files.get(name), PositionMap(plugin.origin))
    seen = {d.message for d in known}
    return [d for d in checker.diagnostics if d.message not in seen]


def _strings(value: Any, path: PathKey = ()) -> Iterator[tuple[PathKey, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))
    elif isinstance(value, str):
        yield path, value


def resolved_here(path: PathKey) -> bool:
    """Whether the run resolves a reference at ``path`` of a host, group or defaults entry."""
    if path in (("username",), ("password",)):
        return True
    if len(path) >= 4 and path[0] == "connection_options" and path[2] == "extras":
        return is_secret_field(path[3:])
    if len(path) >= 4 and path[:3] == ("data", "microseg", "settings"):
        return is_secret_field(path[3:])
    return False


class _Checker:
    def __init__(self, backends: dict[str, SecretBackend]) -> None:
        self.backends = backends
        self.failures: dict[str, str | None] = {}
        self.diagnostics: list[Diagnostic] = []

    def file(self, name: str, data: Any, positions: PositionMap) -> None:
        """Every host, group or the defaults of one (SimpleInventory-shaped) file's data."""
        if not isinstance(data, dict):
            return
        if name == DEFAULTS_FILE:
            self.element("defaults", (), data, positions)
            return
        kind = "host" if name == HOSTS_FILE else "group"
        for element, value in data.items():
            if isinstance(value, dict):
                self.element(f"{kind} {element!r}", (element,), value, positions)

    def element(self, subject: str, prefix: PathKey, value: Mapping[str, Any], positions: PositionMap) -> None:
        for path, text in _strings(value):
            where = positions.locate((*prefix, *path))
            field = field_name(str(path[0]), path[1:]) if path else "(value)"
            self.value(f"{subject}: {field}", text, resolved_here(path), where)

    def value(self, subject: str, text: str, resolved: bool, where: Location) -> None:
        try:
            reference = parse_reference(text)
        except InventoryError as exc:
            if resolved:
                self.add(f"{subject}: {exc.message}", where, "secret-reference")
            return
        if reference is None:
            if resolved and has_embedded_reference(text):
                self.add(f"{subject}: a secret reference must be the whole value (nothing is resolved inside a "
                         f"longer text)", where, "secret-reference")
            return
        if not resolved:
            self.add(f"{subject}: {reference} would be used as written: {WHERE_RESOLVED}", where,
                     "secret-reference-place")
            return
        self.reference(subject, reference, where)

    def reference(self, subject: str, reference: Reference, where: Location) -> None:
        backend = self.backend(reference.scheme)
        if isinstance(backend, str):
            self.add(f"{subject}: {backend}", where, "secret-backend")
            return
        if backend is None:
            known = sorted({*self.backends, *backend_names()})
            self.add(f"{subject}: unknown secret backend {reference.scheme!r}", where, "unknown-secret-backend",
                     hint=name_hint(reference.scheme, known, noun="secret backends"))
            return
        problem = backend.check(reference.reference)
        if problem is not None:
            self.add(f"{subject}: {reference}: {problem}", where, "secret-reference")
        elif isinstance(backend, FileBackend):
            loose = backend.loose_permissions(reference.reference)
            if loose is not None:
                self.add(f"{subject}: {loose}", where, "secret-file-mode", severity=Severity.WARNING)

    def backend(self, name: str) -> SecretBackend | str | None:
        """The backend ``name`` (loaded once), None when none is installed, or why it cannot be loaded."""
        if name not in self.backends and name not in self.failures:
            try:
                self.backends[name] = load_backend(name)
            except SecretReferenceError:
                self.failures[name] = None
            except InventoryError as exc:
                self.failures[name] = exc.message
        return self.backends.get(name) or self.failures.get(name)

    def add(self, message: str, where: Location, code: str, *, hint: str | None = None,
            severity: Severity = Severity.ERROR) -> None:
        self.diagnostics.append(Diagnostic(message, where, severity, code, hint))
