"""Cubes (products of interval sets over the seven flow dimensions) and exact set algebra on lists of them.

A cube is a tuple of seven non-empty canonical interval sets, one per
dimension in the order of :data:`DIMENSIONS`.  The family dimension always
holds exactly one family (4 or 6), so the address dimensions of a cube are
integers of that family and no cube ever spans IPv4 and IPv6.

The subtraction of many cubes from one (:func:`subtract_all`) is a
depth-first split: a piece is cut only by the first remaining cube that
meets it, its fragments inherit just the remaining cubes that met it, and a
fragment no cube meets is part of the answer.  The same walk answers "is
this piece covered?" and stops at the first uncovered fragment.  Callers hand
it only the cubes that can meet the piece (see :mod:`orchestrator.packetspace.cubeindex`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeAlias

from orchestrator.model.rules import ANY_PORTS
from orchestrator.packetspace import intervals
from orchestrator.packetspace.intervals import Intervals

Cube: TypeAlias = tuple[Intervals, ...]

DIMENSIONS = ("family", "protocol", "src", "dst", "src_port", "dst_port", "icmp")
FAMILY, PROTOCOL, SRC, DST, SRC_PORT, DST_PORT, ICMP = range(7)
_TEST_ORDER = (DST, SRC, PROTOCOL, DST_PORT, FAMILY, SRC_PORT, ICMP)  # most selective first
_FUSIBLE_DIMENSIONS = (PROTOCOL, SRC, DST, SRC_PORT, DST_PORT, ICMP)  # never FAMILY: a cube holds one family
ADDRESS_BITS = {4: 32, 6: 128}

# Shared values: equal dimensions are often the *same* tuple object, which the cube tests short-cut with `is`.
ALL_PROTOCOLS: Intervals = ((0, 255),)
ALL_PORTS: Intervals = ANY_PORTS
ALL_ICMP: Intervals = ((0, 0xFFFF),)
FAMILY_DIMENSION: dict[int, Intervals] = {4: ((4, 4),), 6: ((6, 6),)}
ALL_ADDRESSES: dict[int, Intervals] = {family: ((0, (1 << bits) - 1),) for family, bits in ADDRESS_BITS.items()}
_FULL_DIMENSION: dict[int, Intervals] = {
    PROTOCOL: ALL_PROTOCOLS, SRC_PORT: ALL_PORTS, DST_PORT: ALL_PORTS, ICMP: ALL_ICMP
}


def cubes_meet(a: Cube, b: Cube) -> bool:
    """Whether cubes ``a`` and ``b`` share a flow."""
    for dim in _TEST_ORDER:
        x = a[dim]
        y = b[dim]
        if x is y:
            continue
        if x[0][0] > y[-1][1] or y[0][0] > x[-1][1]:
            return False
        if (len(x) > 1 or len(y) > 1) and not intervals.overlaps(x, y):
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


_FUSE_CUTTERS_FROM = 16  # cutters; with more, a walk that runs long restarts with the cutters fused
_WORK_BEFORE_FUSING = 8  # × cutters: the cutter tests a walk may spend before it restarts with fused cutters


def subtract_all(cube: Cube, others: list[Cube], *, first_only: bool = False) -> list[Cube]:
    """``cube`` minus the union of ``others``, as disjoint cubes.

    With ``first_only`` the walk stops at the first uncovered piece, so an
    empty answer proves coverage and a non-empty one holds a witness.  When
    many cutters are pieces of larger cubes (one rule per prefix, protocol or
    ICMP type, as platforms with narrow rules need) cutting by them one at a
    time is quadratic; such a walk is noticed by its cost and restarted with
    the cutters fused (:func:`merge_cubes`).
    """
    if len(others) > _FUSE_CUTTERS_FROM:
        found = _walk(cube, others, first_only=first_only, max_work=_WORK_BEFORE_FUSING * len(others))
        if found is not None:
            return found
        others = merge_cubes(others)
    found = _walk(cube, others, first_only=first_only, max_work=None)
    assert found is not None  # an unbounded walk always finishes
    return found


def _walk(cube: Cube, others: list[Cube], *, first_only: bool, max_work: int | None) -> list[Cube] | None:
    """The depth-first split behind :func:`subtract_all`; None once it has tested ``max_work`` cutters."""
    result: list[Cube] = []
    stack: list[tuple[Cube, list[Cube]]] = [(cube, others)]
    work = 0
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
        work += len(candidates)
        if max_work is not None and work > max_work:
            return None
        remaining = [other for other in candidates[cutter_at + 1 :] if cubes_meet(piece, other)]
        stack.extend((fragment, remaining) for fragment in reversed(cube_difference(piece, cutter)))
    return result


def is_covered(cube: Cube, others: list[Cube]) -> bool:
    """Whether the union of ``others`` holds every flow of ``cube``."""
    if any(cube_contains(other, cube) for other in others):
        return True
    return not subtract_all(cube, others, first_only=True)


def full_dimension(cube: Cube, dim: int) -> Intervals:
    """Every value dimension ``dim`` can take in ``cube``'s family."""
    if dim in (SRC, DST):
        return ALL_ADDRESSES[family_of(cube)]
    return _FULL_DIMENSION[dim]


def widen(cube: Cube, meeting: Callable[[Cube], list[Cube]], dims: Iterable[int]) -> Cube:
    """``cube`` grown, one dimension after the other, as far as it stays inside a set.

    ``meeting`` returns the cubes of the set (any list whose union is it) that meet a given cube.
    In each dimension the cube takes every value whose whole slice of the cube lies in the set.
    """
    for dim in dims:
        everything = full_dimension(cube, dim)
        if cube[dim] == everything:
            continue
        slab = (*cube[:dim], everything, *cube[dim + 1 :])
        outside = subtract_all(slab, meeting(slab))
        blocked = intervals.normalize(_chain([piece[dim] for piece in outside]))
        grown = intervals.subtract(everything, blocked) if blocked else everything
        cube = (*cube[:dim], grown, *cube[dim + 1 :])
    return cube


def merge_cubes(cubes: Iterable[Cube]) -> list[Cube]:
    """The same flows in fewer cubes: cubes of one family equal in all dimensions but one are fused.

    Repeats until nothing fuses.  Exact for any list; keeps pairwise-disjoint input disjoint;
    deterministic order.  Families are never fused (a cube holds one family).
    """
    by_family: dict[Intervals, list[Cube]] = {}
    for cube in cubes:
        by_family.setdefault(cube[FAMILY], []).append(cube)
    merged: list[Cube] = []
    for family_cubes in by_family.values():
        merged.extend(family_cubes if len(family_cubes) == 1 else _merge_one_family(family_cubes))
    return merged


def _merge_one_family(cubes: list[Cube]) -> list[Cube]:
    """:func:`merge_cubes` for cubes of one family.  Dimension values are numbered first so that
    grouping hashes small integers, not nested tuples."""
    numbers: dict[Intervals, int] = {}
    values: list[Intervals] = []

    def number(value: Intervals) -> int:
        found = numbers.get(value)
        if found is None:
            found = numbers[value] = len(values)
            values.append(value)
        return found

    current = list({tuple(number(value) for value in cube): None for cube in cubes})
    changed = True
    while changed and len(current) > 1:
        changed = False
        for dim in _FUSIBLE_DIMENSIONS:
            groups: dict[tuple[int, ...], list[int]] = {}
            for cube_numbers in current:
                groups.setdefault(cube_numbers[:dim] + cube_numbers[dim + 1 :], []).append(cube_numbers[dim])
            if len(groups) == len(current):
                continue
            changed = True
            current = [
                (*rest[:dim], fused[0] if len(fused) == 1 else number(_fuse(values, fused)), *rest[dim:])
                for rest, fused in groups.items()
            ]
    return [tuple(values[n] for n in cube_numbers) for cube_numbers in current]


def _fuse(values: list[Intervals], fused: list[int]) -> Intervals:
    return intervals.normalize(_chain([values[n] for n in fused]))


def _chain(sets: list[Intervals]) -> Iterator[tuple[int, int]]:
    for values in sets:
        yield from values


def family_of(cube: Cube) -> int:
    return cube[FAMILY][0][0]
