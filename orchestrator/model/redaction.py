"""Secret redaction: which keys name a secret, and the one gate every document passes before the store keeps it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

REDACTED = "***"

# Matched against the key with case and separators removed, so "X-Api-Key", "db_password",
# "aws_secret_access_key" and "sshPrivateKey" are all caught.
_SECRET_KEY = re.compile(r"password|passwd|secret|token|passphrase|privatekey|apikey|authorization|credential")
_SEPARATORS = re.compile(r"[^a-z0-9]")


def is_secret_key(key: object) -> bool:
    """Whether a mapping key names a secret (case-insensitive, ignoring ``-``/``_``/spaces)."""
    return _secret_name(str(key))


@lru_cache(maxsize=4096)
def _secret_name(key: str) -> bool:  # documents repeat the same few keys thousands of times
    return bool(_SECRET_KEY.search(_SEPARATORS.sub("", key.lower())))


_SCALARS = (str, int, float, bool, type(None))


def redact(value: Any) -> Any:
    """A copy of ``value`` in which the value of every secret-named key, at any depth, is ``"***"``.

    Mappings become dicts with string keys; lists, tuples and sets become lists; other values
    are returned unchanged.  The input is never modified.
    """
    if type(value) in _SCALARS:  # the common case, without the abstract-class checks below
        return value
    if isinstance(value, Mapping):
        return {str(k): REDACTED if _secret_name(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, set | frozenset):
        return [redact(v) for v in sorted(value, key=repr)]
    return value
