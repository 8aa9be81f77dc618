"""Integer sets as sorted, disjoint, non-adjacent closed intervals: the one-dimensional packet-space primitive.

Every function takes and returns *canonical* interval sets (sorted, disjoint,
adjacent intervals merged), except :func:`normalize`, which makes one.  The
set operations other than :func:`normalize` and :func:`union` expect their
arguments to be non-empty; callers (the cube algebra) never hold empty sets.
Single-interval sets, by far the most common case, take fast paths.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from typing import TypeAlias

Interval: TypeAlias = tuple[int, int]
Intervals: TypeAlias = tuple[Interval, ...]

_ABOVE_ANY_VALUE = 1 << 129  # larger than any IPv6 address, port or protocol


def normalize(items: Iterable[Interval]) -> Intervals:
    """Sorted intervals with overlapping and adjacent ones merged."""
    merged: list[list[int]] = []
    for lo, hi in sorted(items):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return tuple((lo, hi) for lo, hi in merged)


def union(a: Intervals, b: Intervals) -> Intervals:
    """Every value in ``a`` or ``b``."""
    if not a:
        return b
    if not b:
        return a
    return normalize((*a, *b))


def overlaps(a: Intervals, b: Intervals) -> bool:
    """Whether ``a`` and ``b`` share a value."""
    if a[0][0] > b[-1][1] or b[0][0] > a[-1][1]:
        return False
    if len(a) == 1 and len(b) == 1:
        return True
    if len(a) < len(b):
        a, b = b, a
    if len(b) * 8 < len(a):  # few probes into a long set: binary search
        for low, high in b:
            index = bisect_right(a, (high, _ABOVE_ANY_VALUE)) - 1
            if index >= 0 and a[index][1] >= low:
                return True
        return False
    # Leapfrog: from an interval that ends before the other side's, jump (binary search) to the first
    # interval that does not; a gap of many intervals costs one search, not a step each.
    i = j = 0
    len_a, len_b = len(a), len(b)
    while i < len_a and j < len_b:
        a_lo, a_hi = a[i]
        b_lo, b_hi = b[j]
        if a_hi < b_lo:
            i = _first_ending_at_or_after(a, b_lo, i)
        elif b_hi < a_lo:
            j = _first_ending_at_or_after(b, a_lo, j)
        else:
            return True
    return False


def _first_ending_at_or_after(values: Intervals, value: int, current: int) -> int:
    """The first position past ``current`` whose interval ends at or after ``value`` (``values[current]`` ends
    before it); ``len(values)`` when none does."""
    index = bisect_right(values, (value, _ABOVE_ANY_VALUE), current + 1) - 1  # the last one starting at or before
    return index if index > current and values[index][1] >= value else max(index, current) + 1


def is_subset(a: Intervals, b: Intervals) -> bool:
    """Whether every value of ``a`` is in ``b``."""
    if len(b) == 1:
        return b[0][0] <= a[0][0] and a[-1][1] <= b[0][1]
    j = 0
    for lo, hi in a:
        while j < len(b) and b[j][1] < lo:
            j += 1
        if j == len(b) or b[j][0] > lo or b[j][1] < hi:
            return False
    return True


def intersect(a: Intervals, b: Intervals) -> Intervals:
    """The values in both ``a`` and ``b`` (possibly empty)."""
    if len(a) == 1 and len(b) == 1:
        lo = max(a[0][0], b[0][0])
        hi = min(a[0][1], b[0][1])
        return ((lo, hi),) if lo <= hi else ()
    out: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        a_lo, a_hi = a[i]
        b_lo, b_hi = b[j]
        lo = max(a_lo, b_lo)
        hi = min(a_hi, b_hi)
        if lo <= hi:
            out.append((lo, hi))
        if a_hi < b_hi:
            i += 1
        else:
            j += 1
    return tuple(out)


def subtract(a: Intervals, b: Intervals) -> Intervals:
    """The values of ``a`` that are not in ``b`` (possibly empty)."""
    out: list[Interval] = []
    j = 0
    for lo, hi in a:
        current = lo
        while j < len(b) and b[j][1] < current:
            j += 1
        k = j
        while k < len(b) and b[k][0] <= hi:
            if b[k][0] > current:
                out.append((current, b[k][0] - 1))
            current = max(current, b[k][1] + 1)
            if current > hi:
                break
            k += 1
        if current <= hi:
            out.append((current, hi))
    return tuple(out)


def contains(a: Intervals, value: int) -> bool:
    """Whether ``value`` is in ``a``."""
    if len(a) == 1:
        return a[0][0] <= value <= a[0][1]
    index = bisect_right(a, (value, _ABOVE_ANY_VALUE)) - 1
    return index >= 0 and a[index][1] >= value


def bounds(a: Intervals) -> Interval:
    """The smallest single interval holding ``a``."""
    return (a[0][0], a[-1][1])
