"""Cubes (products of interval sets over the seven flow dimensions) and exact set algebra on lists of them.

A cube is a tuple of seven non-empty canonical interval sets, one per
dimension in the order of :data:`DIMENSIONS`.  The family dimension always
holds exactly one family (4 or 6), so the address dimensions of a cube are
integers of that family and no cube ever spans IPv4 and IPv6.

The subtraction of many cubes from one (:func:`subtract_all`) is a
depth-first split: a piece is cut only by the first remaining cube that
meets it, its fragments inherit just the remaining cubes that met it, and a
fragment no cube meets is part of the answer.  The same walk answers "is
this piece covered?" and stops at the first uncovered fragment.
:class:`CubeIndex` finds the cubes of a large list that can meet a query
without scanning them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeAlias

from orchestrator import intervals
from orchestrator.intervals import Intervals
from orchestrator.rules import ANY_PORTS

Cube: TypeAlias = tuple[Intervals, ...]

DIMENSIONS = ("family", "protocol", "src", "dst", "src_port", "dst_port", "icmp")
FAMILY, PROTOCOL, SRC, DST, SRC_PORT, DST_PORT, ICMP = range(7)
_TEST_ORDER = (DST, SRC, PROTOCOL, DST_PORT, FAMILY, SRC_PORT, ICMP)  # most selective first
ADDRESS_BITS = {4: 32, 6: 128}

# Shared value objects: identical dimensions are usually the *same* tuple, which the tests below short-cut.
ALL_PROTOCOLS: Intervals = ((0, 255),)
ALL_PORTS: Intervals = ANY_PORTS
ALL_ICMP: Intervals = ((0, 0xFFFF),)
FAMILY_DIMENSION: dict[int, Intervals] = {4: ((4, 4),), 6: ((6, 6),)}
ALL_ADDRESSES: dict[int, Intervals] = {family: ((0, (1 << bits) - 1),) for family, bits in ADDRESS_BITS.items()}


def cubes_meet(a: Cube, b: Cube) -> bool:
    """Whether cubes ``a`` and ``b`` share a flow."""
    overlaps = intervals.overlaps
    for dim in _TEST_ORDER:
        x = a[dim]
        y = b[dim]
        if x is not y and not overlaps(x, y):
            return False
    return True


def cube_contains(outer: Cube, inner: Cube) -> bool:
    """Whether every flow of ``inner`` is in ``outer``."""
    is_subset = intervals.is_subset
    for dim in _TEST_ORDER:
        x = outer[dim]
        y = inner[dim]
        if x is not y and not is_subset(y, x):
            return False
    return True


def cube_intersection(a: Cube, b: Cube) -> Cube | None:
    """The flows in both cubes, or None."""
    out: list[Intervals] = []
    for x, y in zip(a, b, strict=True):
        common = intervals.intersect(x, y)
        if not common:
            return None
        out.append(common)
    return tuple(out)


def cube_volume(cube: Cube) -> int:
    """The number of flows in ``cube``."""
    volume = 1
    for values in cube:
        volume *= sum(hi - lo + 1 for lo, hi in values)
    return volume


def cube_difference(a: Cube, b: Cube) -> list[Cube]:
    """``a`` minus ``b`` as at most seven disjoint cubes (``b`` must meet ``a``).

    Piece *i* keeps ``a ∩ b`` in the dimensions before *i*, ``a \\ b`` in
    dimension *i* and ``a`` after it; dimensions where ``a ⊆ b`` add no piece.
    """
    pieces: list[Cube] = []
    current = list(a)
    for dim, (x, y) in enumerate(zip(a, b, strict=True)):
        if x is y or intervals.is_subset(x, y):
            continue
        current[dim] = intervals.subtract(x, y)
        pieces.append(tuple(current))
        current[dim] = intervals.intersect(x, y)
    return pieces


def subtract_all(cube: Cube, others: list[Cube], *, first_only: bool = False) -> list[Cube]:
    """``cube`` minus the union of ``others``, as disjoint cubes.

    With ``first_only`` the walk stops at the first uncovered piece, so an
    empty answer proves coverage and a non-empty one holds a witness.
    """
    result: list[Cube] = []
    stack: list[tuple[Cube, list[Cube]]] = [(cube, others)]
    while stack:
        piece, candidates = stack.pop()
        cutter_at = next((k for k, other in enumerate(candidates) if cubes_meet(piece, other)), -1)
        if cutter_at < 0:
            result.append(piece)
            if first_only:
                return result
            continue
        cutter = candidates[cutter_at]
        if cube_contains(cutter, piece):
            continue
        remaining = [other for other in candidates[cutter_at + 1 :] if cubes_meet(piece, other)]
        stack.extend((fragment, remaining) for fragment in reversed(cube_difference(piece, cutter)))
    return result


def is_covered(cube: Cube, others: list[Cube]) -> bool:
    """Whether the union of ``others`` holds every flow of ``cube``."""
    if any(cube_contains(other, cube) for other in others):
        return True
    return not subtract_all(cube, others, first_only=True)


def merge_cubes(cubes: Iterable[Cube]) -> list[Cube]:
    """The same flows in fewer cubes: cubes equal in all dimensions but one are fused, until none are.

    Exact for any list; keeps pairwise-disjoint input disjoint.  Sorted output.
    """
    current = list(dict.fromkeys(cubes))
    changed = True
    while changed and len(current) > 1:
        changed = False
        for dim in range(len(DIMENSIONS)):
            groups: dict[Cube, list[Intervals]] = {}
            for cube in current:
                groups.setdefault(cube[:dim] + cube[dim + 1 :], []).append(cube[dim])
            if len(groups) == len(current):
                continue
            changed = True
            current = [
                (*rest[:dim], values[0] if len(values) == 1 else intervals.normalize(_chain(values)), *rest[dim:])
                for rest, values in groups.items()
            ]
    return sorted(current)


def _chain(sets: list[Intervals]) -> Iterator[tuple[int, int]]:
    for values in sets:
        yield from values


def family_of(cube: Cube) -> int:
    return cube[FAMILY][0][0]


def _prefix_level(lo: int, hi: int, bits: int, step: int) -> int:
    """The longest prefix length, a multiple of ``step``, whose block holds both ``lo`` and ``hi``."""
    common = bits - (lo ^ hi).bit_length()
    return common - common % step


class CubeIndex:
    """An append-only list of cubes that answers "which of you meet this cube?" quickly.

    Each cube is filed under the smallest aligned address block (levels every
    8 bits for IPv4, 16 for IPv6) that holds its source range, and likewise
    its destination range.  A query looks at the cubes filed at the blocks
    enclosing its own block plus every cube filed inside its block, on
    whichever of source or destination gives fewer, then tests them exactly.
    """

    __slots__ = ("_at_block", "_cubes", "_under_block")

    def __init__(self, cubes: Iterable[Cube] = ()) -> None:
        self._cubes: list[Cube] = []
        self._at_block: dict[tuple[int, int, int, int], list[int]] = {}
        self._under_block: dict[tuple[int, int, int, int], list[int]] = {}
        for cube in cubes:
            self.add(cube)

    def __len__(self) -> int:
        return len(self._cubes)

    def __getitem__(self, position: int) -> Cube:
        return self._cubes[position]

    def add(self, cube: Cube) -> int:
        """File ``cube``; returns its position (positions grow by one per call)."""
        position = len(self._cubes)
        self._cubes.append(cube)
        family = family_of(cube)
        bits = ADDRESS_BITS[family]
        step = 8 if family == 4 else 16
        for dim in (SRC, DST):
            lo, hi = intervals.bounds(cube[dim])
            level = _prefix_level(lo, hi, bits, step)
            self._at_block.setdefault((dim, family, level, lo >> (bits - level)), []).append(position)
            for outer in range(0, level + 1, step):
                self._under_block.setdefault((dim, family, outer, lo >> (bits - outer)), []).append(position)
        return position

    def meeting(self, cube: Cube) -> list[int]:
        """Positions (ascending) of the filed cubes that share a flow with ``cube``."""
        best: list[list[int]] | None = None
        best_size = -1
        for dim in (SRC, DST):
            buckets = self._buckets(cube, dim)
            size = sum(len(bucket) for bucket in buckets)
            if best is None or size < best_size:
                best, best_size = buckets, size
        if not best_size:
            return []
        cubes = self._cubes
        found = [position for bucket in best or () for position in bucket if cubes_meet(cube, cubes[position])]
        found.sort()
        return found

    def meeting_cubes(self, cube: Cube) -> list[Cube]:
        """The filed cubes that share a flow with ``cube``, in filing order."""
        return [self._cubes[position] for position in self.meeting(cube)]

    def _buckets(self, cube: Cube, dim: int) -> list[list[int]]:
        family = family_of(cube)
        bits = ADDRESS_BITS[family]
        step = 8 if family == 4 else 16
        lo, hi = intervals.bounds(cube[dim])
        level = _prefix_level(lo, hi, bits, step)
        empty: list[int] = []
        buckets = [
            self._at_block.get((dim, family, outer, lo >> (bits - outer)), empty) for outer in range(0, level, step)
        ]
        buckets.append(self._under_block.get((dim, family, level, lo >> (bits - level)), empty))
        return [bucket for bucket in buckets if bucket]
