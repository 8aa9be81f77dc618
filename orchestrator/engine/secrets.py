"""Secret references in the inventory (``${env:NAME}``, ``${file:/path}``, ``${vault:…}``), resolved at run time.

A value that is, as a whole, ``${BACKEND:REFERENCE}`` names a secret instead of
holding it.  It is resolved only when a run builds the driver of its point
(:mod:`orchestrator.engine.sessions`), once per point and run, and only in the
fields that carry credentials (:func:`is_secret_field`)::

    env     ${env:NAME}                      an environment variable of the microseg process
    file    ${file:/run/secrets/sw1}         a file's content, trailing newlines stripped
    vault   ${vault:secret/net/sw1#password} a key of a Vault KV v2 secret (orchestrator.engine.vault)

More backends plug in through the entry-point group ``microseg.secret_backends``::

    [project.entry-points."microseg.secret_backends"]
    keyring = "my_package.secrets:KeyringBackend"

The entry point names a class (or any callable) that takes no argument, does no
I/O, and returns an object with ``check(reference) -> str | None`` (pure: what
is wrong with the reference's syntax) and ``resolve(reference) -> str`` (I/O;
raises :class:`SecretLookupError`), and optionally ``close()``.  ``$${`` at the
start of a value writes a literal ``${``.  A resolved value is a
:class:`SecretText`: a ``str`` whose ``repr`` never shows it; error messages name
the point, the field and the reference, never a value.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from orchestrator.engine.retry import RetryPolicy, with_retries
from orchestrator.model.errors import (
    InventoryError,
    MicrosegError,
    PermanentDriverError,
    TransientDriverError,
)
from orchestrator.model.redaction import REDACTED, is_secret_key

SECRET_BACKEND_ENTRY_POINT_GROUP = "microseg.secret_backends"
ESCAPE = "$${"
MAX_SECRET_FILE_BYTES = 64 * 1024
CONNECTION_SECRETS = ("password",)
"""Connection fields that always hold a secret; ``username`` may be a reference too but is no secret."""

_REFERENCE = re.compile(r"\$\{(?P<scheme>[A-Za-z][A-Za-z0-9_.-]*):(?P<reference>.+)\}", re.DOTALL)
_EMBEDDED = re.compile(r"(?<!\$)\$\{[A-Za-z][A-Za-z0-9_.-]*:[^}]+\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

PathKey = tuple[str | int, ...]


class SecretText(str):
    """A secret's value: a ``str`` for every use, but its ``repr`` (in reprs, ``!r``, dataclasses) never shows it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(REDACTED)


class SecretReferenceError(InventoryError):
    """A value written as a secret reference is malformed or names no installed backend."""


class SecretLookupError(MicrosegError):
    """A backend could not produce a secret: ``transient`` ones (throttled, unreachable, 5xx) are retried.

    The message says what went wrong and what to do; it never contains a secret.
    """

    def __init__(self, message: str, *, transient: bool = False, delay: float = 1.0) -> None:
        super().__init__(message)
        self.transient = transient
        self.delay = delay


@runtime_checkable
class SecretBackend(Protocol):
    """One kind of secret store (the part after ``${`` and before ``:`` names it)."""

    def check(self, reference: str) -> str | None:
        """What is wrong with ``reference``'s syntax, or None (pure: no I/O)."""
        ...

    def resolve(self, reference: str) -> str:
        """The secret ``reference`` names (I/O); SecretLookupError when it cannot be had."""
        ...


@dataclass(frozen=True, slots=True)
class Reference:
    """``${scheme:reference}``, parsed."""

    scheme: str
    reference: str

    def __str__(self) -> str:
        return f"${{{self.scheme}:{self.reference}}}"


# --------------------------------------------------------------------------- syntax (pure)


def parse_reference(value: str) -> Reference | None:
    """The reference ``value`` is as a whole, or None for a plain value; malformed → SecretReferenceError.

    The message of the error never repeats the value (it may be a literal password).
    """
    if not value.startswith("${"):
        return None
    match = _REFERENCE.fullmatch(value)
    if match is not None:
        return Reference(match["scheme"], match["reference"])
    if not value.endswith("}"):
        problem = "a value starting with '${' is a secret reference and must end with '}'"
    elif ":" not in value:
        problem = "a secret reference is ${BACKEND:REFERENCE} (e.g. ${env:NAME}): the ':' is missing"
    elif value.startswith("${:"):
        problem = "a secret reference needs a backend name before ':' (e.g. ${env:NAME})"
    elif value[2:].split(":", 1)[1] == "}":
        problem = "a secret reference needs something after the backend name (e.g. ${env:NAME})"
    else:
        problem = "a secret reference's backend name is letters, digits, '_', '.', '-', starting with a letter"
    raise SecretReferenceError(f"{problem} (write '$${{' for a literal '${{')")


def literal(value: str) -> str:
    """A plain value of a secret field as meant: ``$${…`` is the literal ``${…``."""
    return value[1:] if value.startswith(ESCAPE) else value


def has_embedded_reference(value: str) -> bool:
    """Whether ``value`` holds a reference somewhere inside without being one as a whole (never resolved)."""
    return not value.startswith(("${", ESCAPE)) and _EMBEDDED.search(value) is not None


def is_secret_field(path: PathKey) -> bool:
    """Whether a value at ``path`` (below connection extras or driver settings) carries a credential.

    True when any mapping key on the way names a secret (password, secret, token, passphrase, private key,
    API key, credential …: the keys the store redacts too).
    """
    return any(isinstance(key, str) and is_secret_key(key) for key in path)


def field_name(base: str, path: PathKey) -> str:
    """``settings.auth[0].token`` for ``("auth", 0, "token")`` under ``settings``."""
    out = base
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else f".{key}"
    return out


# --------------------------------------------------------------------------- the built-in backends


class EnvBackend:
    """``${env:NAME}``: an environment variable of the microseg process."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def check(self, reference: str) -> str | None:
        if _ENV_NAME.fullmatch(reference):
            return None
        return f"{reference!r} is not an environment variable name (letters, digits, '_'; not starting with a digit)"

    def resolve(self, reference: str) -> str:
        value = self._environ.get(reference)
        if value is None:
            raise SecretLookupError(f"environment variable {reference} is not set (export it before running microseg)")
        if not value:
            raise SecretLookupError(f"environment variable {reference} is empty")
        return value


class FileBackend:
    """``${file:/path}``: the content of a file (UTF-8, at most 64 KiB), trailing newlines stripped."""

    def check(self, reference: str) -> str | None:
        if not reference.startswith(("/", "~")):
            return f"{reference!r} is not an absolute path (a relative one would depend on where microseg runs)"
        return None

    def resolve(self, reference: str) -> str:
        path = _expanded(reference)
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_SECRET_FILE_BYTES + 1)
        except FileNotFoundError as exc:
            raise SecretLookupError(f"file {path} does not exist") from exc
        except IsADirectoryError as exc:
            raise SecretLookupError(f"{path} is a directory, not a file") from exc
        except PermissionError as exc:
            raise SecretLookupError(f"file {path} is not readable by this user (check its owner and mode)") from exc
        except OSError as exc:
            raise SecretLookupError(f"file {path} cannot be read: {exc.strerror or type(exc).__name__}") from exc
        if len(data) > MAX_SECRET_FILE_BYTES:
            raise SecretLookupError(f"file {path} is larger than {MAX_SECRET_FILE_BYTES // 1024} KiB: not a secret")
        try:
            text = data.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            raise SecretLookupError(f"file {path} is not UTF-8 text") from exc
        if not text:
            raise SecretLookupError(f"file {path} is empty")
        return text

    @staticmethod
    def loose_permissions(reference: str) -> str | None:
        """Why the file is readable by others than its owner, or None (also when it does not exist here)."""
        try:
            path = _expanded(reference)
            mode = path.stat().st_mode
        except (OSError, SecretLookupError):
            return None
        if not mode & 0o044:
            return None
        who = "every user" if mode & 0o004 else "its group"
        return f"secret file {path} is readable by {who} (mode {mode & 0o777:o}): chmod 600 it"


def _expanded(reference: str) -> Path:
    """The path a ``file`` reference names (``~`` is the home directory); SecretLookupError when there is none."""
    try:
        return Path(reference).expanduser()
    except RuntimeError as exc:  # no home directory to expand ~ to
        raise SecretLookupError(f"{reference}: {exc}") from exc


BUILTIN_BACKENDS: Mapping[str, Callable[[], SecretBackend]] = {"env": EnvBackend, "file": FileBackend}


# --------------------------------------------------------------------------- discovery


def available_backends() -> dict[str, EntryPoint]:
    """Installed secret backends by name (the built-in ``env`` and ``file`` are not entry points)."""
    return {ep.name: ep for ep in entry_points(group=SECRET_BACKEND_ENTRY_POINT_GROUP)
            if ep.name not in BUILTIN_BACKENDS}


def backend_names() -> list[str]:
    return sorted({*BUILTIN_BACKENDS, *available_backends()})


def load_backend(name: str) -> SecretBackend:
    """A new instance of the backend ``name``; SecretReferenceError when none is installed under that name."""
    factory: Any = BUILTIN_BACKENDS.get(name)
    if factory is None:
        ep = available_backends().get(name)
        if ep is None:
            raise SecretReferenceError(f"unknown secret backend {name!r} (installed: {', '.join(backend_names())})")
        try:
            factory = ep.load()
        except (ImportError, AttributeError) as exc:
            raise InventoryError(f"secret backend {name!r} ({ep.value}) cannot be loaded: {exc}") from exc
    backend = factory() if callable(factory) else None
    if not isinstance(backend, SecretBackend):
        raise InventoryError(f"secret backend {name!r} does not provide check(reference) and resolve(reference)")
    return backend


# --------------------------------------------------------------------------- resolution (run time)


class SecretResolver:
    """Resolves the references of one run: each backend is created on first use and closed by :meth:`close`.

    Thread-safe; transient backend failures are retried with ``retry``.
    """

    def __init__(self, retry: RetryPolicy | None = None, backends: Mapping[str, SecretBackend] | None = None) -> None:
        self._retry = retry or RetryPolicy()
        self._backends: dict[str, SecretBackend] = dict(backends or {})
        self._lock = threading.Lock()

    def backend(self, name: str) -> SecretBackend:
        with self._lock:
            if name not in self._backends:
                self._backends[name] = load_backend(name)
            return self._backends[name]

    def value(self, value: object, field: str, *, point: str, driver: str, secret: bool = True) -> Any:
        """``value`` with its reference resolved; every text of a secret field comes back as a SecretText."""
        if not isinstance(value, str):
            return value
        try:
            reference = parse_reference(value)
            backend = None if reference is None else self.backend(reference.scheme)
        except InventoryError as exc:
            raise PermanentDriverError(f"{field}: {exc.message}", point=point, driver=driver) from exc
        if reference is None or backend is None:
            text = literal(value)
        else:
            text = self._resolve(backend, reference, field, point=point, driver=driver)
        return SecretText(text) if secret else text

    def _resolve(self, backend: SecretBackend, reference: Reference, field: str, *, point: str, driver: str) -> str:
        problem = backend.check(reference.reference)
        if problem is not None:
            raise PermanentDriverError(f"{field}: {reference}: {problem}", point=point, driver=driver)

        def attempt() -> str:
            try:
                text = backend.resolve(reference.reference)
            except SecretLookupError as exc:
                message = f"{field}: {reference}: {exc.message}"
                if exc.transient:
                    raise TransientDriverError(message, point=point, driver=driver, delay=exc.delay) from exc
                raise PermanentDriverError(message, point=point, driver=driver) from exc
            if not isinstance(text, str):
                raise PermanentDriverError(f"{field}: {reference}: the {reference.scheme!r} backend returned no text",
                                           point=point, driver=driver)
            return text

        return with_retries(attempt, self._retry)

    def tree(self, value: Any, base: str, *, point: str, driver: str, path: PathKey = ()) -> Any:
        """A copy of ``value`` (extras, settings) with every secret field resolved (:func:`is_secret_field`)."""
        if isinstance(value, Mapping):
            return {k: self.tree(v, base, point=point, driver=driver, path=(*path, k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            items = [self.tree(v, base, point=point, driver=driver, path=(*path, i)) for i, v in enumerate(value)]
            return items if isinstance(value, list) else tuple(items)
        if isinstance(value, str) and is_secret_field(path):
            return self.value(value, field_name(base, path), point=point, driver=driver)
        return value

    def close(self) -> list[str]:
        """Close every backend that has ``close``; returns the problems met (never raises)."""
        with self._lock:
            backends, self._backends = self._backends, {}
        problems: list[str] = []
        for name, backend in backends.items():
            close = getattr(backend, "close", None)
            if not callable(close):
                continue
            try:
                close()
            except (MicrosegError, OSError) as exc:
                problems.append(f"secret backend {name}: {exc}")
        return problems
