"""Identities: the one canonical spelling of who someone is, and whether a free-text name could be them.

An identity (an API token's name, a role holder in ``serve.roles``, the target of a ticket-user mapping) is
lower case ASCII: letters, digits and ``. _ @ -``, starting and ending with a letter or digit, at most 64
characters — ``alice``, ``alice@example.net``, ``jira-bot``.  Anything else (upper case, whitespace, control,
bidi or other format characters, look-alike letters) is refused where an identity is created, so two
spellings can never name one person.  Free text from outside (a ticket's requester display name or email)
is never an identity: :func:`could_be` says whether such text might name a given identity, so that the
four-eyes rule errs on the side of refusing.
"""

from __future__ import annotations

import getpass
import re
import unicodedata

UNKNOWN = "(unknown)"
"""The requester of a ticket whose user is mapped to no identity (no identity can be spelled like this)."""
MAX_IDENTITY = 64
IDENTITY_PATTERN = r"[a-z0-9](?:[a-z0-9._@-]{0,62}[a-z0-9])?"
_IDENTITY = re.compile(IDENTITY_PATTERN)
_INVISIBLE = frozenset({"Cc", "Cf", "Co", "Cs", "Zl", "Zp"})
_WORD = re.compile(r"[^0-9a-z]+")


def identity_problem(name: str) -> str | None:
    """Why ``name`` is not a canonical identity, or None when it is one."""
    if not name:
        return "it is empty"
    if len(name) > MAX_IDENTITY:
        return f"it is longer than {MAX_IDENTITY} characters"
    for char in name:
        category = unicodedata.category(char)
        if category in _INVISIBLE:
            return f"it contains the control or format character U+{ord(char):04X}"
        if char.isspace():
            return "it contains whitespace"
    if not name.isascii():
        return "it contains non-ASCII characters (identities are ASCII, so look-alike letters cannot pose as others)"
    if name != name.lower():
        return f"it has upper case letters (the identity is {name.lower()!r})"
    if not _IDENTITY.fullmatch(name):
        return "use letters, digits and . _ @ -, starting and ending with a letter or digit"
    return None


def require_identity(name: str, what: str = "identity") -> str:
    """``name`` itself when it is a canonical identity; ValueError saying why not otherwise."""
    problem = identity_problem(name)
    if problem is not None:
        raise ValueError(f"{what} {name!r} is not a valid identity: {problem}")
    return name


def fold(text: str) -> str:
    """Text as comparisons of people see it: compatibility-normalized, case-folded, invisible characters
    and surrounding whitespace removed (``' ALICE\\u200b '`` → ``'alice'``)."""
    normal = unicodedata.normalize("NFKC", text).casefold()
    return "".join(c for c in normal if unicodedata.category(c) not in _INVISIBLE).strip()


def _forms(text: str) -> set[str]:
    folded = fold(text)
    local = folded.split("@", 1)[0]
    forms = {folded, local, _WORD.sub("", folded), _WORD.sub("", local)}
    return {f for f in forms if f}


def same_identity(a: str, b: str) -> bool:
    """Whether two names are one identity however they are spelled (case, width, invisible characters)."""
    return fold(a) == fold(b)


def could_be(identity: str, text: str) -> bool:
    """Whether free ``text`` (a display name, an email, a login) might name ``identity``.

    True when, after :func:`fold`, the two are equal, or equal without their email domains, or equal once
    every character but letters and digits is dropped (``"A. Lice" ~ "alice"``).
    """
    return bool(_forms(identity) & _forms(text))


def login_name() -> str:
    """Who runs this by default: the login name ("unknown" when the system cannot say)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
