"""An append-only list of cubes that finds the ones meeting a query cube without testing them all."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from orchestrator.packetspace.cubes import ADDRESS_BITS, DST, SRC, Cube, cubes_meet, family_of


def _prefix_level(lo: int, hi: int, bits: int, step: int) -> int:
    """The longest prefix length, a multiple of ``step``, whose block holds both ``lo`` and ``hi``."""
    common = bits - (lo ^ hi).bit_length()
    return common - common % step


_LEVELS = {4: (8, tuple(range(0, 33, 8))), 6: (16, tuple(range(0, 129, 16)))}  # prefix-length step, levels
_INDEX_FROM = 48  # cubes; below this many a scan is cheaper than the index
_SCANS_BEFORE_INDEXING = 8  # queries answered by a scan before the index is built


class CubeIndex:
    """An append-only list of cubes that answers "which of you meet this cube?" quickly.

    Once the list is long enough, each cube is filed under the smallest aligned
    address block (prefix lengths in steps of 8 bits for IPv4, 16 for IPv6)
    that holds its source range, and likewise its destination range.  A query
    looks at the cubes filed at the blocks enclosing its own block plus every
    cube filed inside its block, on whichever of source or destination gives
    fewer, and tests those exactly.
    """

    __slots__ = ("_at_block", "_cubes", "_filed", "_scans", "_under_block")

    def __init__(self, cubes: Iterable[Cube] = ()) -> None:
        self._cubes: list[Cube] = list(cubes)
        self._filed = 0
        self._scans = 0
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
        best: list[list[int]] = []
        best_size = -1
        for dim in (SRC, DST):
            buckets = self._buckets(cube, dim)
            size = sum(len(bucket) for bucket in buckets)
            if best_size < 0 or size < best_size:
                best, best_size = buckets, size
        if len(best) == 1:
            return [position for position in best[0] if cubes_meet(cube, cubes[position])]
        found = [position for bucket in best for position in bucket if cubes_meet(cube, cubes[position])]
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
            values = cube[dim]
            low = values[0][0]
            level = _prefix_level(low, values[-1][1], bits, step)
            self._at_block[slot].setdefault(((low >> (bits - level)) << 8) | level, []).append(position)
            under = self._under_block[slot]
            for outer in levels:
                if outer > level:
                    break
                under.setdefault(((low >> (bits - outer)) << 8) | outer, []).append(position)

    def _buckets(self, cube: Cube, dim: int) -> list[list[int]]:
        family = family_of(cube)
        bits = ADDRESS_BITS[family]
        step, levels = _LEVELS[family]
        slot = (0 if dim == SRC else 2) + (family == 6)
        values = cube[dim]
        low = values[0][0]
        level = _prefix_level(low, values[-1][1], bits, step)
        at_block = self._at_block[slot]
        buckets = []
        for outer in levels:
            if outer == level:
                break
            bucket = at_block.get(((low >> (bits - outer)) << 8) | outer)
            if bucket:
                buckets.append(bucket)
        bucket = self._under_block[slot].get(((low >> (bits - level)) << 8) | level)
        if bucket:
            buckets.append(bucket)
        return buckets


def meeting_function(cubes: Sequence[Cube]) -> Callable[[Cube], list[Cube]]:
    """A lookup of the cubes of ``cubes`` that meet a given cube, in list order."""
    if len(cubes) < _INDEX_FROM:
        return lambda cube: [other for other in cubes if cubes_meet(cube, other)]
    return CubeIndex(cubes).meeting_cubes
