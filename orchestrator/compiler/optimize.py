"""Ruleset optimization and shaping: fewer, wider rules that decide exactly the same flows.

Every transformation here is exact by construction, and the compiler verifies
the result against the unoptimized rules with the packet-space module anyway:

* ``merge_same_action`` — rules that differ in one dimension only (source,
  destination or destination ports) are merged; this is only done inside a
  *run* of consecutive rules with the same action, where order is irrelevant.
* ``drop_shadowed`` — rules that can never decide a flow are removed.
* ``drop_redundant_default`` — a rule whose action equals the default action
  and that no later rule of the other action overlaps is removed (unless it
  logs, since logging is observable).
* ``shape_rules`` — splits rules into the shapes a platform accepts
  (prefixes per rule, port ranges per rule, one address family per rule).
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from itertools import groupby, product
from typing import Any

from orchestrator.model.capabilities import Capabilities
from orchestrator.model.rules import (
    ANY_OF_FAMILY,
    ANY_PORTS,
    CARVE_OUT_NOTE,
    PORT_PROTOCOLS,
    Action,
    AddressSet,
    Direction,
    IPNetwork,
    Provenance,
    Rule,
    normalize_ports,
)
from orchestrator.packetspace.flowset import FlowSet
from orchestrator.packetspace.packetspace import overlapped_by_later, overlapping_rules, shadowed_rules

_Key = Callable[[Rule], tuple[Any, ...]]


def _without_dst(r: Rule) -> tuple[Any, ...]:
    return (r.protocol, r.src, r.src_ports, r.dst_ports, r.icmp_type, r.icmp_code, r.tcp_flags, r.log, r.direction)


def _without_src(r: Rule) -> tuple[Any, ...]:
    return (r.protocol, r.dst, r.src_ports, r.dst_ports, r.icmp_type, r.icmp_code, r.tcp_flags, r.log, r.direction)


def _without_dst_ports(r: Rule) -> tuple[Any, ...]:
    return (r.protocol, r.src, r.dst, r.src_ports, r.icmp_type, r.icmp_code, r.tcp_flags, r.log, r.direction)


def _merge_group(rules: list[Rule], dimension: str) -> Rule:
    first = rules[0]
    provenance = first.provenance
    for other in rules[1:]:
        provenance = provenance.merge(other.provenance)
    src, dst, dst_ports = first.src, first.dst, first.dst_ports
    if dimension == "dst":
        dst = AddressSet.of(n for r in rules for n in r.dst.networks)
    elif dimension == "src":
        src = AddressSet.of(n for r in rules for n in r.src.networks)
    else:
        dst_ports = normalize_ports(p for r in rules for p in r.dst_ports)
    return replace(first, src=src, dst=dst, dst_ports=dst_ports, provenance=provenance)


def _merge_pass(rules: list[Rule], key: _Key, dimension: str) -> list[Rule]:
    groups: dict[tuple[Any, ...], list[Rule]] = {}
    for rule in rules:
        if dimension == "dst_ports" and rule.protocol not in PORT_PROTOCOLS:
            groups.setdefault(("unmergeable", id(rule)), []).append(rule)
            continue
        groups.setdefault(key(rule), []).append(rule)
    return [_merge_group(g, dimension) if len(g) > 1 else g[0] for g in groups.values()]


def merge_set(rules: Sequence[Rule]) -> list[Rule]:
    """Merge an order-irrelevant set of same-action rules until nothing merges further."""
    current = list(dict.fromkeys(rules))  # drop exact duplicates, keep first
    for _ in range(4):
        before = len(current)
        current = _merge_pass(current, _without_dst_ports, "dst_ports")
        current = _merge_pass(current, _without_dst, "dst")
        current = _merge_pass(current, _without_src, "src")
        if len(current) == before:
            break
    return current


def merge_same_action(rules: Sequence[Rule]) -> list[Rule]:
    """Merge inside each maximal run of consecutive rules with the same action."""
    out: list[Rule] = []
    for _, run in groupby(rules, key=lambda r: r.action):
        out.extend(merge_set(list(run)))
    return out


def drop_shadowed(rules: Sequence[Rule]) -> list[Rule]:
    """Remove rules that can never decide a flow (covered by earlier rules)."""
    dead = {s.index for s in shadowed_rules(rules)}
    return [r for i, r in enumerate(rules) if i not in dead]


def drop_redundant_default(rules: Sequence[Rule], default: Action) -> list[Rule]:
    """Remove non-logging rules with the default action that no later rule of the other action overlaps."""
    overlapped = overlapped_by_later(rules, default)
    return [rule for rule, needed in zip(rules, overlapped, strict=True)
            if rule.action is not default or rule.log or needed]


def optimize_first_match(rules: Sequence[Rule], default: Action) -> list[Rule]:
    """The optimizations for an ordered (first-match / priority) ruleset."""
    merged = merge_same_action(rules)
    live = drop_shadowed(merged)
    return merge_same_action(drop_redundant_default(live, default))


# --------------------------------------------------------------------------- carve-outs



def carve_out(rules: Sequence[Rule], default: Action, per_rule: int = 1) -> list[Rule]:
    """The same first-match list, shorter where a permit's address set is most of its family's space.

    ``permit S`` (``internet``: everything but 19 special-purpose ranges, 145 prefixes) becomes ``deny C;
    permit any`` with C the complement of S (the 19 ranges).  Exact when the flows C adds are denied anyway:
    the default is deny and no later permit shares a flow with the carved-out part (earlier rules decide as
    before).  When a later permit does share some, the permit moves last first if no later deny shares a
    flow with it (a permit that only later permits overlap decides the same anywhere after its place).  Only
    when it takes fewer entries (``per_rule`` prefixes per entry); the compiler verifies the result
    equivalent to its input.
    """
    if default is not Action.DENY:
        return list(rules)
    out = list(rules)
    position, end = 0, len(out)  # out[end:] holds the rules moved last
    while position < end:
        rule = out[position]
        pieces = _carved(rule, out[position + 1:], per_rule) if rule.action is Action.PERMIT else None
        if pieces is not None:
            out[position:position + 1] = pieces
            position, end = position + len(pieces), end + len(pieces) - 1
            continue
        pieces = _carved(rule, (), per_rule) if rule.action is Action.PERMIT else None  # would it pay, last?
        if pieces is not None and _movable_last(rule, out[position + 1:]):
            del out[position]  # a permit no later deny overlaps decides the same last: carve it there
            out.extend(pieces)
            end -= 1
            continue
        position += 1
    return out


def _movable_last(rule: Rule, later: Sequence[Rule]) -> bool:
    """Whether permit ``rule`` decides the same at the end of the list: no later deny shares a flow with it."""
    denies = [r for r in later if r.action is Action.DENY]
    return not denies or not overlapping_rules([rule], denies)[0]


def _carved(rule: Rule, later: Sequence[Rule], per_rule: int) -> list[Rule] | None:
    def entries(addresses: AddressSet) -> int:
        return sum(-(-len([n for n in addresses.networks if n.version == f]) // per_rule) for f in (4, 6))

    for side in ("src", "dst"):
        addresses: AddressSet = getattr(rule, side)
        if len(addresses.networks) < 4:
            continue
        families = sorted(addresses.families)
        complement = sum(-(-_complement_prefixes(addresses, f) // per_rule) for f in families)
        if complement + len(families) >= entries(addresses):  # counted on integers: most sets stop here
            continue
        whole = AddressSet(tuple(n for family in families for n in ANY_OF_FAMILY[family].networks))
        rest = whole.difference(addresses)
        if entries(rest) + entries(whole) >= entries(addresses):
            continue
        carved = replace(_with_side(rule, side, rest), action=Action.DENY, log=False)
        later_permits = [r for r in later if r.action is Action.PERMIT]
        if later_permits and overlapping_rules([carved], later_permits)[0]:
            continue  # a later permit decides some of those flows: denying them here would change that
        note = "; ".join(sorted({n for n in (rule.provenance.note, CARVE_OUT_NOTE) if n}))
        return [carved.with_provenance(replace(rule.provenance, note=note)), _with_side(rule, side, whole)]
    return None


def _complement_prefixes(addresses: AddressSet, family: int) -> int:
    """How many prefixes the family's addresses outside ``addresses`` take (what ``difference`` would build)."""
    top = (1 << (32 if family == 4 else 128)) - 1
    count, start = 0, 0
    for lo, hi in sorted(addresses.intervals(family)):
        if lo > start:
            count += _prefixes_between(start, lo - 1)
        start = max(start, hi + 1)
    if start <= top:
        count += _prefixes_between(start, top)
    return count


def _prefixes_between(lo: int, hi: int) -> int:
    """The number of CIDR blocks exactly covering ``[lo, hi]`` (the fewest: largest aligned block first)."""
    count = 0
    while lo <= hi:
        size = lo & -lo if lo else 1 << (hi + 1).bit_length()
        while size > hi - lo + 1:
            size >>= 1
        lo += size
        count += 1
    return count


def _with_side(rule: Rule, side: str, addresses: AddressSet) -> Rule:
    return replace(rule, src=addresses) if side == "src" else replace(rule, dst=addresses)


# --------------------------------------------------------------------------- covers

COVER_NOTE = "outside the protected addresses"
# a cover is for members scattered in a subnet; peers scattered over a /8 leave thousands of gaps, whose denies
# would fill a TCAM and whose proof costs rules × gaps: not tried
MAX_GAPS = 64


def cover_gaps(rules: Sequence[Rule], default: Action, per_rule: int = 1, ports_per_rule: int | None = 1,
               scope: AddressSet | None = None) -> list[Rule]:
    """The same first-match list, shorter where one side's addresses are a few prefixes of one block.

    A point's members are rarely one prefix (``10.20.1.11-14`` is ``.11/32, .12/31, .14/32``), and on a platform
    that pays per prefix every rule naming them costs three entries.  When no permit (and no logging rule) names
    an address of the gaps G between them in a block that holds them all (``.8/31, .10/32, .15/32`` of
    ``10.20.1.8/29``), every flow from or to G is denied anyway (default deny), unseen; so ``deny`` G first, then
    each rule's side widened into G where that merges prefixes (``10.20.1.8/29``), decides every flow as before:
    a flow of G is denied by the new first entry, any other flow meets the same rules with the same outcome.

    The blocks: the ``scope`` prefixes (the subnets the point protects) holding the side's addresses, when the
    gaps they leave pay — a member added later then changes the leading denies only, not every entry (a plan
    that rewrites most of an ACL for one new host would be refused as a mass removal); else the smallest prefix
    holding them all.  Per side and family, only when it takes fewer entries; ``check_cover`` proves each
    result in O(rules).
    """
    if default is not Action.DENY or not rules:
        return list(rules)
    out = list(rules)
    for side in ("dst", "src"):
        for family in (4, 6):
            out = _covered(out, side, family, per_rule, ports_per_rule, scope) or out
    return out


def _covered(rules: list[Rule], side: str, family: int, per_rule: int, ports_per_rule: int | None,
             scope: AddressSet | None) -> list[Rule] | None:
    # rules share their sides' network objects (resolved once per group): each object collapsed once
    seen = AddressSet.of({id(n): n for r in rules if r.action is Action.PERMIT or r.log
                          for n in getattr(r, side).networks if n.version == family}.values())
    if len(seen.networks) < 2:
        return None
    before = [_entries(r, per_rule, ports_per_rule) for r in rules]
    # what covering could save at most: every rule's side down to one prefix of the family
    ceiling = sum(was - _entries(_with_side(r, side, _one_prefix(getattr(r, side), family)), per_rule, ports_per_rule)
                  for r, was in zip(rules, before, strict=True))
    best: tuple[int, list[Rule]] | None = None
    for blocks in _blocks(seen, family, scope):
        gaps = AddressSet(blocks).difference(seen)
        deny_cost = -(-len(gaps.networks) // per_rule)
        if not gaps or deny_cost >= ceiling or len(gaps.networks) > MAX_GAPS:
            continue  # counted before widening anything: most candidates stop here
        lookup = _Gaps(gaps, family, blocks, seen)
        widened = [_with_side(r, side, _widened(getattr(r, side), lookup, family)) for r in rules]
        after = deny_cost + sum(_entries(r, per_rule, ports_per_rule) for r in widened)
        if after < sum(before) and (best is None or after < best[0]):
            deny = Rule(Action.DENY, rules[0].direction, None, src=gaps if side == "src" else ANY_OF_FAMILY[family],
                        dst=gaps if side == "dst" else ANY_OF_FAMILY[family], provenance=Provenance(note=COVER_NOTE))
            best = (after, [deny, *widened])
        if best is not None:
            break  # the scope's blocks paid: the stable choice wins over a few entries less
    return best[1] if best is not None else None


def _blocks(seen: AddressSet, family: int, scope: AddressSet | None) -> Iterator[tuple[IPNetwork, ...]]:
    """The candidate blocks holding ``seen``: the scope prefixes that hold it, then the smallest common prefix."""
    if scope is not None:
        holding = tuple(n for n in scope.networks if n.version == family and AddressSet((n,)).overlaps(seen))
        if holding and not seen.difference(AddressSet(holding)):
            yield holding
    lo, hi = seen.intervals(family)[0][0], seen.intervals(family)[-1][1]
    bits = 32 if family == 4 else 128
    length = bits - (lo ^ hi).bit_length()
    kind = ipaddress.IPv4Network if family == 4 else ipaddress.IPv6Network  # a small IPv6 integer is no IPv4
    yield (kind((lo >> (bits - length) << (bits - length), length)),)


def _one_prefix(addresses: AddressSet, family: int) -> AddressSet:
    nets = [n for n in addresses.networks if n.version == family]
    if len(nets) < 2:
        return addresses
    return AddressSet(tuple(n for n in addresses.networks if n.version != family or n is nets[0]))


def _widened(addresses: AddressSet, gaps: _Gaps, family: int) -> AddressSet:
    """``addresses`` plus the parts of ``gaps`` that merge its prefixes of ``family`` into fewer (never more).

    The gaps inside the smallest prefix holding the side's addresses of ``family`` are merged in (looked up by
    bisection: a point with a /8 scope has thousands of gaps); when that leaves one prefix and the side holds
    every address the rules name in its block, the side becomes the whole block — the same one entry, and one
    that a member added to the block later leaves as it is."""
    if sum(1 for n in addresses.networks if n.version == family) < 2:
        return addresses  # one prefix cannot become fewer
    own = addresses.intervals(family)
    lo, hi = _hull(own[0][0], own[-1][1])
    near = gaps.within(lo, hi)
    if not near:
        return addresses
    merged = AddressSet.of([*addresses.networks, *near])
    kept: list[IPNetwork] = []
    position = 0
    for net in merged.networks:  # sorted, disjoint: one sweep keeps those that hold some of ``addresses``
        if net.version != family:
            kept.append(net)
            continue
        start, end = int(net.network_address), int(net.broadcast_address)
        while position < len(own) and own[position][1] < start:
            position += 1
        if position < len(own) and own[position][0] <= end:
            kept.append(net)
    if len(kept) >= len(addresses.networks):
        return addresses
    mine = [n for n in kept if n.version == family]
    block = gaps.block_of(mine[0]) if len(mine) == 1 else None
    if block is not None:
        kept = [block if n is mine[0] else n for n in kept]
    return AddressSet.of(kept)


def _hull(lo: int, hi: int) -> tuple[int, int]:
    """The first and last address of the smallest prefix holding ``[lo, hi]``."""
    size = (lo ^ hi).bit_length()
    return lo >> size << size, (lo >> size << size) | ((1 << size) - 1)


class _Gaps:
    """A cover's gaps of one family, sorted, to look up the ones inside a range by bisection; and its blocks with
    the range of the addresses the rules name in each."""

    def __init__(self, gaps: AddressSet, family: int, blocks: Sequence[IPNetwork], seen: AddressSet) -> None:
        self.networks = [n for n in gaps.networks if n.version == family]
        self.starts = [int(n.network_address) for n in self.networks]
        self.blocks = sorted(blocks, key=lambda n: int(n.network_address))
        self.block_starts = [int(n.network_address) for n in self.blocks]
        self.seen: list[tuple[int, int] | None] = []
        for block in self.blocks:
            inside = seen.intersection(AddressSet((block,))).intervals(family)
            self.seen.append((inside[0][0], inside[-1][1]) if inside else None)

    def within(self, lo: int, hi: int) -> list[IPNetwork]:
        """The gap prefixes that start inside ``[lo, hi]`` (an aligned prefix's range, so they lie in it, or hold it
        when they start where it does; one that holds it and starts before is missed: a merge left undone, never
        a wrong one)."""
        return self.networks[bisect.bisect_left(self.starts, lo):bisect.bisect_right(self.starts, hi)]

    def block_of(self, prefix: IPNetwork) -> IPNetwork | None:
        """The block holding ``prefix`` when every address the rules name in it lies in ``prefix`` (the rest of the
        block is gaps), else None."""
        start, end = int(prefix.network_address), int(prefix.broadcast_address)
        index = bisect.bisect_right(self.block_starts, start) - 1
        if index < 0 or int(self.blocks[index].broadcast_address) < end:
            return None
        seen = self.seen[index]
        return self.blocks[index] if seen is not None and start <= seen[0] and seen[1] <= end else None


def _entries(rule: Rule, per_rule: int, ports_per_rule: int | None) -> int:
    """How many platform entries ``rule`` shapes into (see ``shape_rule``)."""
    def chunks(count: int, size: int | None) -> int:
        return 1 if size is None else -(-count // size)

    ports = 1
    for side_ports in (rule.src_ports, rule.dst_ports):
        if side_ports != ANY_PORTS:
            ports *= chunks(len(side_ports), ports_per_rule)
    total = 0
    for family in (4, 6):
        src = sum(1 for n in rule.src.networks if n.version == family)
        dst = sum(1 for n in rule.dst.networks if n.version == family)
        if src and dst:
            total += chunks(src, per_rule) * chunks(dst, per_rule)
    return total * ports


def check_cover(before: Sequence[Rule], after: Sequence[Rule], default: Action) -> None:
    """A proof, in O(rules), that ``cover_gaps`` kept every decision — or AssertionError.

    With default deny, ``after`` must be leading non-logging denies, each of one family f with one side all of f
    and the other its gaps G (addresses of f), then ``before`` rule for rule with each side widened only into
    the gaps of that side; and no permit or logging rule of ``before`` names an address of G on that side.
    Then a flow of G is denied first, unseen, as it was (nothing let it through or logged it); any other flow
    meets rules that match it exactly as before.
    """
    lead = len(after) - len(before)
    if lead > 0 and default is not Action.DENY:
        raise AssertionError("covering needs default deny: the gaps' flows must have been denied")
    gaps_by_side = {"src": AddressSet(), "dst": AddressSet()}
    for deny in after[:lead]:
        side = _gap_side(deny)
        plain = (deny.protocol, deny.src_ports, deny.dst_ports, deny.icmp_type, deny.tcp_flags)
        if side is None or deny.action is not Action.DENY or deny.log or plain != (
                None, ANY_PORTS, ANY_PORTS, None, None) or any(r.direction is not deny.direction for r in before):
            raise AssertionError(f"covering added {deny.action.value} {deny.src} -> {deny.dst}, not a plain deny of "
                                 "one family's gaps")
        gaps: AddressSet = getattr(deny, side)
        for old in before:
            if (old.action is Action.PERMIT or old.log) and getattr(old, side).overlaps(gaps):
                raise AssertionError(f"covering denies {gaps}, which {old.service_text()} {old.src} -> {old.dst} "
                                     "decides")
        gaps_by_side[side] = gaps_by_side[side].union(gaps)
    for old, new in zip(before, after[lead:], strict=True):
        for side in ("src", "dst"):
            was, now = getattr(old, side), getattr(new, side)
            if was.difference(now) or now.difference(was).difference(gaps_by_side[side]):
                raise AssertionError(f"covering changed {old.service_text()} {was} into {now} beyond the gaps")
        if replace(new, src=old.src, dst=old.dst) != old:
            raise AssertionError(f"covering changed more than addresses of {old.service_text()} {old.src}")


def _gap_side(deny: Rule) -> str | None:
    """Which side of a leading cover deny holds the gaps: the one that is not all of its family, when the other
    is all of that same family and neither mixes families; else None (not a cover deny)."""
    for side, other in (("dst", deny.src), ("src", deny.dst)):
        gaps: AddressSet = getattr(deny, side)
        families = gaps.families
        if len(families) == 1 and other == ANY_OF_FAMILY[next(iter(families))] and gaps != other:
            return side
    return None


# --------------------------------------------------------------------------- shaping


def _chunks(items: Sequence[Any], size: int | None) -> Iterator[tuple[Any, ...]]:
    if size is None or len(items) <= size:
        yield tuple(items)
        return
    for start in range(0, len(items), size):
        yield tuple(items[start : start + size])


def _split_families(rule: Rule) -> Iterable[Rule]:
    if len(rule.src.families | rule.dst.families) <= 1:
        yield rule
        return
    for version in (4, 6):
        src = AddressSet(tuple(n for n in rule.src.networks if n.version == version))
        dst = AddressSet(tuple(n for n in rule.dst.networks if n.version == version))
        if src and dst:
            yield replace(rule, src=src, dst=dst)


def _fits(rule: Rule, caps: Capabilities) -> bool:
    """Whether ``rule`` is already in a shape the platform accepts (``shape_rule`` would return it as is)."""
    if not caps.mixed_families_per_rule and len(rule.src.families | rule.dst.families) > 1:
        return False
    limit, ports = caps.max_prefixes_per_rule, caps.max_port_ranges_per_rule
    implicit = caps.scope_implicit
    if limit is not None and (
        (len(rule.src.networks) > limit and not (implicit and rule.direction is Direction.EGRESS))
        or (len(rule.dst.networks) > limit and not (implicit and rule.direction is Direction.INGRESS))
    ):
        return False
    return ports is None or (len(rule.dst_ports) <= ports and len(rule.src_ports) <= ports)


def shape_rule(rule: Rule, caps: Capabilities) -> list[Rule]:
    """Split one rule into rules that each fit the platform's per-rule limits (exact: same action, consecutive)."""
    if _fits(rule, caps):
        return [rule]
    pieces = list(_split_families(rule)) if not caps.mixed_families_per_rule else [rule]
    out: list[Rule] = []
    implicit_src = caps.scope_implicit and rule.direction is Direction.EGRESS
    implicit_dst = caps.scope_implicit and rule.direction is Direction.INGRESS
    for piece in pieces:
        srcs = _chunks(piece.src.networks, None if implicit_src else caps.max_prefixes_per_rule)
        dsts = list(_chunks(piece.dst.networks, None if implicit_dst else caps.max_prefixes_per_rule))
        dports = list(_chunks(piece.dst_ports, caps.max_port_ranges_per_rule)) if piece.dst_ports != ANY_PORTS else [
            piece.dst_ports
        ]
        sports = list(_chunks(piece.src_ports, caps.max_port_ranges_per_rule)) if piece.src_ports != ANY_PORTS else [
            piece.src_ports
        ]
        src_sets, dst_sets = [AddressSet(s) for s in srcs], [AddressSet(d) for d in dsts]
        out.extend(piece.with_match(s, d, sp, dp) for s, d, dp, sp in product(src_sets, dst_sets, dports, sports))
    return out


def shape_rules(rules: Iterable[Rule], caps: Capabilities) -> list[Rule]:
    return [shaped for rule in rules for shaped in shape_rule(rule, caps)]


def shape_rules_proved(rules: Iterable[Rule], caps: Capabilities,
                       ) -> tuple[list[Rule], Callable[[], str | None], int]:
    """``shape_rules``, the proof that every split is exact in packet space (None, or what it changed: run it now
    or later, it reads nothing but the rules and their pieces), and how many pieces it checks.

    Replacing one rule by consecutive rules with its action whose matches add up to exactly its match
    decides every flow as before under first match (a flow the earlier rules miss is decided by the first
    piece holding it, with the rule's action; one no piece holds goes on, as it went past the rule) and
    under unordered allow.  So a list verified equivalent before shaping, shaped with this proof, is
    equivalent after it — at the cost of each split rule against its own pieces, not of the whole list.
    """
    out: list[Rule] = []
    splits: list[tuple[Rule, list[Rule]]] = []
    for rule in rules:
        pieces = shape_rule(rule, caps)
        if len(pieces) > 1 or pieces[0] is not rule:
            splits.append((rule, pieces))
        out.extend(pieces)

    def proof() -> str | None:
        for rule, pieces in splits:
            if not _exact_pieces(rule, pieces):
                return f"shaping changed the flows of {rule.service_text()} {rule.src} -> {rule.dst}"
        return None

    return out, proof, sum(len(pieces) for _, pieces in splits)


def _exact_pieces(rule: Rule, pieces: Sequence[Rule]) -> bool:
    same = all(p.action is rule.action and p.direction is rule.direction and p.log == rule.log for p in pieces)
    return same and (_is_grid(rule, pieces) or FlowSet.from_rules(pieces) == FlowSet.from_rule(rule))


def _is_grid(rule: Rule, pieces: Sequence[Rule]) -> bool:
    """A proof, in O(pieces), that ``pieces`` match exactly what ``rule`` matches — or False (not a proof).

    Per address family, a rule matches the product src × dst × source ports × destination ports (of that
    family's networks).  When, per family, the pieces' four sides each take their values from a set of chunks
    whose union is the rule's side, and every combination of chunks is a piece, the union of the pieces is the
    product of the unions: the rule's match.  Pieces must otherwise equal the rule.  Anything else (not a
    grid): False, and the caller compares the flow sets instead.
    """
    rest = (rule.protocol, rule.icmp_type, rule.icmp_code, rule.tcp_flags)
    if any((p.protocol, p.icmp_type, p.icmp_code, p.tcp_flags) != rest for p in pieces):
        return False
    # Values are compared by identity (shaping slices the rule's own tuples, and hashing ipaddress objects is
    # slow): an equal value held by another object only makes the proof fail, never succeed wrongly.
    for family in (4, 6):
        src = {id(n) for n in rule.src.networks if n.version == family}
        dst = {id(n) for n in rule.dst.networks if n.version == family}
        cells: set[tuple[Any, ...]] = set()
        for piece in pieces:
            s = tuple(id(n) for n in piece.src.networks if n.version == family)
            d = tuple(id(n) for n in piece.dst.networks if n.version == family)
            if s and d:
                cells.add((s, d, piece.src_ports, piece.dst_ports))
        if not (src and dst):
            if cells:
                return False
            continue
        sides = [{cell[k] for cell in cells} for k in range(4)]
        if len(cells) != len(sides[0]) * len(sides[1]) * len(sides[2]) * len(sides[3]):
            return False  # some combination of chunks is missing
        wanted = (src, dst, set(rule.src_ports), set(rule.dst_ports))
        if any({v for chunk in chunks for v in chunk} != whole for chunks, whole in zip(sides, wanted, strict=True)):
            return False
    return True


def attribute(rules: Sequence[Rule], sources: Sequence[Rule], note: str | None = None) -> list[Rule]:
    """Give each rule the provenance of the ``sources`` rules whose flows it overlaps."""
    out = []
    for rule, hits in zip(rules, overlapping_rules(rules, sources), strict=True):
        provenance = Provenance(note=note)
        for position in hits:
            provenance = provenance.merge(sources[position].provenance)
        out.append(rule.with_provenance(provenance))
    return out
