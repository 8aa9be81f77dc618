"""Endpoints that credentials are sent to: plain HTTP only to loopback (every cloud driver checks the same way)."""

from __future__ import annotations

import ipaddress
import re
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
