"""An index from address space to the items whose address sets touch it.

The compiler asks, for every enforcement point, which policy rules have a
source (or destination) inside the point's scope.  Scanning every rule for
every point is P×R; this index buckets narrow networks by their /24 (IPv4)
or /64 (IPv6) and tests each distinct wide set (few in practice) exactly.
Answers are a superset (callers still intersect exactly); never a subset.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.model.rules import AddressSet

# bits kept of an address for its bucket, and the widest prefix that still fits one bucket
_BUCKET_BITS = {4: 24, 6: 64}
_WIDTH = {4: 32, 6: 128}
# a scope wider than this many buckets is answered with "everything"
_MAX_BUCKETS = 4096


class AddressIndex:
    """Which of a sequence of address sets overlap a query (superset answers)."""

    def __init__(self, sets: Sequence[AddressSet]) -> None:
        self._count = len(sets)
        # Sets with a wide network are kept whole, by distinct value: estates reuse a few wide
        # sets (internet, an environment's supernet) in many rules, so each is tested once.
        self._wide: dict[AddressSet, list[int]] = {}
        self._buckets: dict[tuple[int, int], set[int]] = {}
        for index, addresses in enumerate(sets):
            if any(net.prefixlen < _BUCKET_BITS[net.version] for net in addresses.networks):
                self._wide.setdefault(addresses, []).append(index)
                continue
            for net in addresses.networks:
                v = net.version
                key = (v, int(net.network_address) >> (_WIDTH[v] - _BUCKET_BITS[v]))
                self._buckets.setdefault(key, set()).add(index)

    def overlapping(self, query: AddressSet) -> list[int]:
        """Indexes (sorted) of the sets that may overlap ``query`` (exact for wide sets)."""
        found: set[int] = set()
        for addresses, indexes in self._wide.items():
            if addresses.overlaps(query):
                found.update(indexes)
        for net in query.networks:
            v = net.version
            shift = _WIDTH[v] - _BUCKET_BITS[v]
            first, last = int(net.network_address) >> shift, int(net.broadcast_address) >> shift
            if last - first >= _MAX_BUCKETS:
                return list(range(self._count))
            for key in range(first, last + 1):
                found |= self._buckets.get((v, key), set())
        return sorted(found)
