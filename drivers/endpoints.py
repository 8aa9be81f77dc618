"""Endpoints: where credentials may be sent (plain HTTP only to loopback, every cloud driver checks the same way),
and the one wording of "nothing listens there" for every driver."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from urllib.parse import urlsplit


def cleartext_origin(url: str) -> str | None:
    """``http://host:port`` when ``url`` is plain HTTP to a host that is not loopback, else None.

    Loopback is 127.0.0.0/8, ::1 and the name ``localhost``.  An endpoint without a scheme is not plain HTTP:
    the client library then speaks https.  Only scheme, host and port are returned (never userinfo or a
    query): the result goes into error messages.
    """
    if not url.lower().startswith("http://"):
        return None
    authority = re.split(r"[/?#]", url[len("http://"):], maxsplit=1)[0]
    if "@" in authority or "\\" in url or not url.isprintable():  # HTTP libraries disagree on such URLs
        return "http://(a host written with userinfo, a backslash or a control character)"
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:  # e.g. an unclosed "[" of an IPv6 address
        return "http://(unreadable host)"
    if host == "localhost" or _is_loopback_address(host):  # urlsplit lower-cases the host
        return None
    try:
        port = "" if parts.port is None else f":{parts.port}"
    except ValueError:  # a port that is not a number
        port = ""
    return f"http://[{host}]{port}" if ":" in host else f"http://{host}{port}"


def is_loopback_url(url: str) -> bool:
    """``url`` names a loopback host (127.0.0.0/8, ::1, ``localhost``): where ``credentials: anonymous`` may go."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    return "@" not in url and (host == "localhost" or _is_loopback_address(host))


ANONYMOUS_REFUSAL = ("credentials: anonymous sends a placeholder credential, for a test server on loopback only "
                     "(127.0.0.0/8, ::1, localhost); {setting} {url!r} is not one")


def _is_loopback_address(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: only "localhost" is known to stay on this machine
        return False


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it was raised from, once each: its cause and context chain, the per-address
    errors paramiko gathers in a NoValidConnectionsError (netmiko re-raises either as a timeout), and what the
    HTTP stacks of the cloud SDKs wrap."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        errors = getattr(current, "errors", None)  # paramiko's NoValidConnectionsError: {address: error}
        if isinstance(errors, dict):
            pending.extend(e for e in errors.values() if isinstance(e, BaseException))
        # azure-core keeps what it wraps as inner_exception (raised outside the except block), urllib3's
        # MaxRetryError its reason, requests' ConnectionError the MaxRetryError as its first argument
        wrapped = [getattr(current, "inner_exception", None), getattr(current, "reason", None),
                   *(current.args[:1] if isinstance(current, OSError) else ())]
        pending.extend(e for e in wrapped if isinstance(e, BaseException))
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def connection_refused(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is a refused TCP connection — nothing listens there, which
    retrying won't change."""
    return any(isinstance(current, ConnectionRefusedError) for current in causes(exc))


def refused_message(host: str, port: int | str) -> str:
    """What every driver says when nothing listens at ``host:port``."""
    where = f"[{host}]" if ":" in host else host
    return f"cannot connect to {where}:{port}: connection refused (nothing listens there)"


def refused_at(exc: BaseException, url: str) -> str | None:
    """:func:`refused_message` for the API endpoint ``url`` when ``exc`` is a refused connection, else None."""
    if not connection_refused(exc):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return refused_message("(the endpoint)", "?")
    return refused_message(parts.hostname or "?", port)
