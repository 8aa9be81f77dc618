"""The minimal in-place edit of one ACL: which entries to delete, which to add where (vendor-neutral).

Entries common to the current and the target ACL (the longest matching
subsequence) keep their sequence numbers or term names; every other target
entry is added in a free slot between its kept neighbours, every other current
entry is deleted — so the lines sent grow with the delta, not the ACL.  When a
gap has no free number the ACL is resequenced first (10, 20, …) where the
platform can; failing that the target is rebuilt after the current entries
(add the new, then delete the old).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher

from drivers.netacl.ace import Ace, AclLine

STEP = 10


@dataclass(frozen=True, slots=True)
class Add:
    """Add ``ace`` (an entry, or a remark on numbered platforms) as ``key`` (sequence number or term name), before
    the existing entry ``before`` (None: at end)."""

    key: int | str
    ace: AclLine
    before: int | str | None = None


@dataclass(frozen=True, slots=True)
class EditScript:
    """What one ACL needs: create it, resequence it, adds and deletes (in that order)."""

    name: str
    family: int
    create: bool = False
    resequence: bool = False
    adds: tuple[Add, ...] = ()
    deletes: tuple[int | str, ...] = field(default=())
    deletes_first: bool = False  # an exact restore reuses numbers: the old entry must go before the new one comes

    @property
    def empty(self) -> bool:
        return not (self.create or self.resequence or self.adds or self.deletes)


def _kept(current: Sequence[AclLine], target: Sequence[AclLine]) -> list[tuple[int, int]]:
    """(current index, target index) of the entries both keep, in order."""
    return _kept_pairs(list(enumerate(current)), list(enumerate(target)), by_value=True)


def plan_numbered(name: str, family: int, current: Sequence[tuple[int, AclLine]] | None, target: Sequence[AclLine], *,
                  max_seq: int, can_resequence: bool) -> EditScript:
    """The edit for a sequence-numbered ACL (IOS, NX-OS, EOS)."""
    if current is None:
        return EditScript(name, family, create=True,
                          adds=tuple(Add(STEP * (i + 1), ace) for i, ace in enumerate(target)))
    seqs = [s for s, _ in current]
    kept = _kept([a for _, a in current], target)
    adds = _allocate(seqs, kept, target, max_seq)
    resequence = False
    if adds is None and can_resequence:
        seqs, resequence = [STEP * (i + 1) for i in range(len(current))], True
        adds = _allocate(seqs, kept, target, max_seq)
    if adds is None:  # rebuild: the whole target after the current entries, then the old ones go
        start = max(seqs, default=0)
        if start + STEP * len(target) > max_seq:
            raise ValueError(f"{name}: no room to rebuild {len(target)} entries below sequence {max_seq}")
        return EditScript(name, family, resequence=resequence,
                          adds=tuple(Add(start + STEP * (i + 1), a) for i, a in enumerate(target)),
                          deletes=tuple(seqs))
    kept_current = {c for c, _ in kept}
    deletes = tuple(s for i, s in enumerate(seqs) if i not in kept_current)
    return EditScript(name, family, resequence=resequence, adds=tuple(adds), deletes=deletes)


def _allocate(seqs: Sequence[int], kept: list[tuple[int, int]], target: Sequence[AclLine],
              max_seq: int) -> list[Add] | None:
    """Free sequence numbers for every added entry, between its kept neighbours; None when a gap is too small."""
    used = set(seqs)
    kept_by_target = {t: seqs[c] for c, t in kept}
    adds: list[Add] = []
    run: list[int] = []
    low = 0
    for index in range(len(target) + 1):
        if index < len(target) and index not in kept_by_target:
            run.append(index)
            continue
        high = kept_by_target[index] if index < len(target) else None
        numbers = _free_numbers(low, high, len(run), used, max_seq)
        if numbers is None:
            return None
        adds.extend(Add(n, target[i], high) for n, i in zip(numbers, run, strict=True))
        run = []
        if high is not None:
            low = high
    return adds


def _free_numbers(low: int, high: int | None, count: int, used: set[int], max_seq: int) -> list[int] | None:
    """``count`` increasing unused numbers strictly between low and high (high None: after low, step 10)."""
    if not count:
        return []
    out: list[int] = []
    if high is None:
        candidate = low
        while len(out) < count:
            candidate += STEP
            if candidate > max_seq:
                return None
            if candidate not in used:
                out.append(candidate)
        return out
    step = max(1, (high - low) // (count + 1))
    candidate = low
    for i in range(count):
        candidate = max(candidate + 1, low + step * (i + 1))
        while candidate in used and candidate < high:
            candidate += 1
        if candidate >= high:
            return None
        out.append(candidate)
    return out


def plan_named(name: str, family: int, current: Sequence[tuple[str, Ace]] | None, target: Sequence[Ace], *,
               new_name: Callable[[int, str | None], str],
               labels: Sequence[str | None] | None = None) -> EditScript:
    """The edit for a filter of named, ordered terms (Junos): adds name the kept term they go before.  A new
    term's name is ``new_name(n, label)``: the first free n, with the target entry's label (None: none)."""
    existing = [k for k, _ in current] if current is not None else []
    kept = _kept([a for _, a in current], target) if current is not None else []
    kept_by_target = {t: existing[c] for c, t in kept}
    taken, counter = set(existing), 0
    following_kept: list[str | None] = [None] * len(target)  # the first kept term after each position
    upcoming: str | None = None
    for index in range(len(target) - 1, -1, -1):
        following_kept[index] = upcoming
        upcoming = kept_by_target.get(index, upcoming)
    adds: list[Add] = []
    for index, ace in enumerate(target):
        if index in kept_by_target:
            continue
        label = labels[index] if labels is not None and index < len(labels) else None
        counter += 1
        while new_name(counter, label) in taken:
            counter += 1
        key = new_name(counter, label)
        taken.add(key)
        adds.append(Add(key, ace, following_kept[index]))
    kept_current = {c for c, _ in kept}
    deletes = tuple(k for i, k in enumerate(existing) if i not in kept_current)
    return EditScript(name, family, create=current is None, adds=tuple(adds), deletes=deletes)


def plan_exact(name: str, family: int, current: Sequence[tuple[int | str, AclLine]] | None,
               target: Sequence[tuple[int | str, AclLine]]) -> EditScript:
    """The edit back to exactly ``target`` — same numbers or term names, same order (a rollback)."""
    now = list(current or ())
    kept = _kept_pairs(now, target)
    kept_target = {t for _, t in kept}
    kept_current = {c for c, _ in kept}
    adds = []
    for index, (key, ace) in enumerate(target):
        if index not in kept_target:
            following = next((target[t][0] for t in range(index + 1, len(target)) if t in kept_target), None)
            adds.append(Add(key, ace, following))
    deletes = tuple(k for i, (k, _) in enumerate(now) if i not in kept_current)
    return EditScript(name, family, create=current is None, adds=tuple(adds), deletes=deletes, deletes_first=True)


def _kept_pairs(current: Sequence[tuple[int | str, AclLine]], target: Sequence[tuple[int | str, AclLine]], *,
                by_value: bool = False) -> list[tuple[int, int]]:
    """(current index, target index) of the entries both keep: equal (key, ace) pairs, or equal aces."""
    a = [ace for _, ace in current] if by_value else list(current)
    b = [ace for _, ace in target] if by_value else list(target)
    matcher = SequenceMatcher(None, a, b, autojunk=False)
    return [(b.a + i, b.b + i) for b in matcher.get_matching_blocks() for i in range(b.size)]
