""""Did you mean …?" hints: the closest valid name to a misspelt one."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate most similar to ``word`` (difflib ratio ≥ 0.6), or None."""
    pool = sorted({c for c in candidates if c != word})
    matches = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """``"did you mean 'X'?"`` for the closest candidate, or None when nothing is close."""
    match = closest(word, candidates)
    return f"did you mean {match!r}?" if match is not None else None


def name_hint(word: str, candidates: Collection[str], *, noun: str = "names") -> str:
    """``did you mean 'x'?``, or the list of valid names when none is close."""
    close = did_you_mean(word, candidates)
    if close is not None:
        return close
    if not candidates:
        return f"no {noun} are defined"
    return f"known {noun}: {', '.join(sorted(candidates))}"
