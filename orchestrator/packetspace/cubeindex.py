"""An append-only list of cubes that finds the ones meeting a query cube without testing them all."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import chain

from orchestrator.packetspace.cubes import ADDRESS_BITS, DST, SRC, Cube, cubes_meet, family_of


def _prefix_level(lo: int, hi: int, bits: int, step: int) -> int:
    """The longest prefix length, a multiple of ``step``, whose block holds both ``lo`` and ``hi``."""
    common = bits - (lo ^ hi).bit_length()
    return common - common % step


def _blocks(values: Sequence[tuple[int, int]], bits: int, step: int) -> list[tuple[int, int]]:
    """(low end, block prefix length) of each interval, or of the whole range past ``_SPLIT_UP_TO`` intervals."""
    if len(values) == 1 or len(values) > _SPLIT_UP_TO:
        low = values[0][0]
        return [(low, _prefix_level(low, values[-1][1], bits, step))]
    return [(low, _prefix_level(low, high, bits, step)) for low, high in values]


_LEVELS = {4: (8, tuple(range(0, 33, 8))), 6: (16, tuple(range(0, 129, 16)))}  # prefix-length step, levels
_INDEX_FROM = 48  # cubes; below this many a scan is cheaper than the index
_SCANS_BEFORE_INDEXING = 8  # queries answered by a scan before the index is built
_SPLIT_UP_TO = 64  # intervals filed one by one; a dimension with more is filed under its whole range
_INTERSECT_FROM = 8  # candidates; with more, only the cubes found under both source and destination are tested


class CubeIndex:
    """An append-only list of cubes that answers "which of you meet this cube?" quickly.

    Once the list is long enough, each cube is filed under the smallest aligned
    address block (prefix lengths in steps of 8 bits for IPv4, 16 for IPv6)
    that holds each interval of its source addresses, and likewise of its
    destination addresses — per interval, so that a cube of many scattered
    prefixes (a merged rule) is not filed at the root and met by every query;
    past :data:`_SPLIT_UP_TO` intervals, under the block of its whole range.
    A query looks, per interval of its own, at the cubes filed at the blocks
    enclosing that interval's block plus every cube filed inside it, on
    source and on destination, and tests exactly the cubes found on both (or,
    when one side finds few, those).
    Aligned blocks are nested or disjoint, so two overlapping intervals always
    meet in one of those lookups.
    """

    __slots__ = ("_at_block", "_cubes", "_filed", "_scans", "_single_filed", "_under_block")

    def __init__(self, cubes: Iterable[Cube] = ()) -> None:
        self._cubes: list[Cube] = list(cubes)
        self._filed = 0
        self._scans = 0
        self._single_filed = True  # every cube filed under one block per dimension: buckets hold no position twice
        # per (src|dst, IPv4|IPv6): block key (block number * 256 + prefix length) → positions
        self._at_block: tuple[dict[int, list[int]], ...] = ({}, {}, {}, {})
        self._under_block: tuple[dict[int, list[int]], ...] = ({}, {}, {}, {})

    def __len__(self) -> int:
        return len(self._cubes)

    def __getitem__(self, position: int) -> Cube:
        return self._cubes[position]

    def add(self, cube: Cube) -> int:
        """Append ``cube``; returns its position (positions grow by one per call)."""
        self._cubes.append(cube)
        return len(self._cubes) - 1

    def meeting(self, cube: Cube) -> list[int]:
        """Positions (ascending) of the cubes that share a flow with ``cube``."""
        cubes = self._cubes
        if len(cubes) < _INDEX_FROM or self._scans < _SCANS_BEFORE_INDEXING:
            self._scans += 1
            return [position for position, other in enumerate(cubes) if cubes_meet(cube, other)]
        while self._filed < len(cubes):
            self._file(self._filed)
            self._filed += 1
        src, dst = self._buckets(cube, SRC), self._buckets(cube, DST)
        src_size, dst_size = sum(map(len, src)), sum(map(len, dst))
        best, other = (src, dst) if src_size <= dst_size else (dst, src)
        candidates: Iterable[int]
        if min(src_size, dst_size) <= _INTERSECT_FROM:
            candidates = best[0] if len(best) == 1 and self._single_filed else {p for bucket in best for p in bucket}
        else:  # a cube that meets the query is in both lookups: test only those (set operations run in C)
            candidates = set(chain.from_iterable(best)).intersection(chain.from_iterable(other))
        found = [position for position in candidates if cubes_meet(cube, cubes[position])]
        found.sort()
        return found

    def meeting_cubes(self, cube: Cube) -> list[Cube]:
        """The cubes that share a flow with ``cube``, in list order."""
        cubes = self._cubes
        return [cubes[position] for position in self.meeting(cube)]

    def _file(self, position: int) -> None:
        cube = self._cubes[position]
        family = family_of(cube)
        bits = ADDRESS_BITS[family]
        step, levels = _LEVELS[family]
        for dim_slot, dim in ((0, SRC), (2, DST)):
            slot = dim_slot + (family == 6)
            at_keys: set[int] = set()
            under_keys: set[int] = set()
            for low, level in _blocks(cube[dim], bits, step):
                at_keys.add(((low >> (bits - level)) << 8) | level)
                for outer in levels:
                    if outer > level:
                        break
                    under_keys.add(((low >> (bits - outer)) << 8) | outer)
            if len(at_keys) > 1:
                self._single_filed = False
            at_block, under_block = self._at_block[slot], self._under_block[slot]
            for key in at_keys:
                at_block.setdefault(key, []).append(position)
            for key in under_keys:
                under_block.setdefault(key, []).append(position)

    def _buckets(self, cube: Cube, dim: int) -> list[list[int]]:
        family = family_of(cube)
        bits = ADDRESS_BITS[family]
        step, levels = _LEVELS[family]
        slot = (0 if dim == SRC else 2) + (family == 6)
        at_block, under_block = self._at_block[slot], self._under_block[slot]
        keys: dict[int, list[int]] = {}  # one lookup per block, however many of the query's intervals share it
        for low, level in _blocks(cube[dim], bits, step):
            for outer in levels:
                if outer == level:
                    break
                key = ((low >> (bits - outer)) << 8) | outer
                if key not in keys and (bucket := at_block.get(key)):
                    keys[key] = bucket
            key = ((low >> (bits - level)) << 8) | level
            if -key - 1 not in keys and (bucket := under_block.get(key)):
                keys[-key - 1] = bucket
        return list(keys.values())


def meeting_function(cubes: Sequence[Cube]) -> Callable[[Cube], list[Cube]]:
    """A lookup of the cubes of ``cubes`` that meet a given cube, in list order."""
    if len(cubes) < _INDEX_FROM:
        return lambda cube: [other for other in cubes if cubes_meet(cube, other)]
    return CubeIndex(cubes).meeting_cubes
