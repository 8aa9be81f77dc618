"""Stable priority allocation for one direction of the owned band (pure).

Rules already in place keep their priority; new rules go between their
neighbours; when a gap is too small, the fewest existing rules are
renumbered (a longest feasible chain of kept rules, found by dynamic
programming); fresh allocations leave gaps of :data:`FRESH_STEP`.
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from itertools import pairwise

from drivers.azure_nsg.layout import FRESH_STEP


class BandFull(ValueError):
    """More rules than free priorities in the band."""

    def __init__(self, wanted: int, free: int) -> None:
        super().__init__(f"{wanted} rules do not fit in {free} free priorities")
        self.wanted = wanted
        self.free = free


@dataclass(frozen=True, slots=True)
class Allocation:
    """Priorities for the intended rules, in order, and which intended rules kept an existing priority."""

    priorities: tuple[int, ...]
    kept: frozenset[int]  # indexes into the intended sequence
    matched: dict[int, int]  # intended index → priority of the existing rule it matches (kept or renumbered)


def allocate(existing: Sequence[tuple[Hashable, int]], intended: Sequence[Hashable], low: int, high: int,
             blocked: frozenset[int] = frozenset()) -> Allocation:
    """Priorities in ``low..high`` (minus ``blocked``) for ``intended`` keys, reusing ``existing`` (key, priority).

    ``existing`` must be in ascending priority.  Raises :class:`BandFull` when the band cannot hold them.
    """
    free = [p for p in range(low, high + 1) if p not in blocked]
    if len(intended) > len(free):
        raise BandFull(len(intended), len(free))
    usable = [(k, p) for k, p in existing if low <= p <= high and p not in blocked]
    matcher = SequenceMatcher(a=[k for k, _ in usable], b=list(intended), autojunk=False)
    anchors = [(block.b + i, usable[block.a + i][1]) for block in matcher.get_matching_blocks()
               for i in range(block.size)]
    kept = _longest_feasible_chain(anchors, len(intended), free, low, high)
    priorities: dict[int, int] = dict(kept)
    bounds = [(-1, low - 1), *kept, (len(intended), high + 1)]
    for (left_i, left_p), (right_i, right_p) in pairwise(bounds):
        count = right_i - left_i - 1
        if count:
            slots = free[bisect.bisect_right(free, left_p):bisect.bisect_left(free, right_p)]
            chosen = _spread(slots, count, left_open=left_i == -1, right_open=right_i == len(intended))
            priorities.update(zip(range(left_i + 1, right_i), chosen, strict=True))
    return Allocation(tuple(priorities[i] for i in range(len(intended))), frozenset(i for i, _ in kept),
                      dict(anchors))


def _free_between(free: Sequence[int], left: int, right: int) -> int:
    """How many free priorities lie strictly between ``left`` and ``right``."""
    return max(0, bisect.bisect_left(free, right) - bisect.bisect_right(free, left))


def _longest_feasible_chain(anchors: Sequence[tuple[int, int]], total: int, free: Sequence[int], low: int,
                            high: int) -> list[tuple[int, int]]:
    """The largest subset of anchors (intended index, priority) whose every gap can hold the rules it must."""
    start, end = (-1, low - 1), (total, high + 1)
    nodes = [start, *anchors, end]

    def fits(a: tuple[int, int], b: tuple[int, int]) -> bool:
        return _free_between(free, a[1], b[1]) >= b[0] - a[0] - 1

    if all(fits(a, b) for a, b in pairwise(nodes)):
        return list(anchors)
    best = [0] * len(nodes)
    back = [-1] * len(nodes)
    for j in range(1, len(nodes)):
        best[j] = -1
        for k in range(j - 1, -1, -1):
            if best[k] >= 0 and best[k] + 1 > best[j] and fits(nodes[k], nodes[j]):
                best[j], back[j] = best[k] + 1, k
    chain: list[tuple[int, int]] = []
    j = back[-1]
    while j > 0:
        chain.append(nodes[j])
        j = back[j]
    return chain[::-1]


def _spread(slots: Sequence[int], count: int, *, left_open: bool, right_open: bool) -> list[int]:
    """``count`` ascending priorities from ``slots``: step :data:`FRESH_STEP` at open ends, centred in closed gaps."""
    size = len(slots)
    step = max(1, min(FRESH_STEP, size // count))
    if left_open and right_open:
        indexes = [t * step for t in range(count)]
    elif right_open:  # appended after an existing rule
        indexes = [step - 1 + t * step for t in range(count)]
    elif left_open:  # inserted before the first existing rule
        indexes = [size - step * (count - t) for t in range(count)]
    else:  # between two existing rules: evenly spaced so both sides keep room
        indexes = [(t + 1) * (size + 1) // (count + 1) - 1 for t in range(count)]
    return [slots[i] for i in indexes]
