"""Return-path rules for stateless enforcement points (plain switch ACLs, Junos filters).

A stateful point lets replies of permitted connections back by itself.  A
stateless one needs, in each direction it filters, a permit for the replies
of what the *other* direction permits: the same flows with source and
destination (and their ports) swapped, ICMP requests answered by their
replies.  These rules go first in the direction they serve, are computed
from the exact permitted flow space (never from rules a deny shadows), and
carry the note ``return path`` in their provenance.

Where the platform matches TCP flags (capability ``tcp_established``) a TCP
reply permit matches only segments with ACK or RST set (``established``):
``permit tcp DB eq 5432 APP established`` lets the database answer but not
open a connection from source port 5432 to any port of APP, which the plain
port-swapped permit would allow.  The replies of a permit of every protocol
(``permit ip A B``) stay ``permit ip B A``: it lets B open TCP connections to
A as well, which only a deny ahead of the direction's own rules could take
back; a policy that means TCP should say so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from orchestrator.compiler.optimize import attribute, merge_set
from orchestrator.model.rules import (
    ICMP_PROTOCOLS,
    RETURN_NOTE,
    TCP,
    Action,
    Direction,
    Ordering,
    Provenance,
    Rule,
    TcpFlags,
)
from orchestrator.packetspace.packetspace import permitted

ICMP_REPLIES: Mapping[tuple[int, int], int] = {
    (1, 8): 0,  # echo request → echo reply
    (1, 13): 14,  # timestamp
    (1, 15): 16,  # information
    (1, 17): 18,  # address mask
    (58, 128): 129,  # ICMPv6 echo
}


def opposite(direction: Direction) -> Direction:
    return Direction.EGRESS if direction is Direction.INGRESS else Direction.INGRESS


def reverse_rule(rule: Rule, *, established: bool = False) -> Rule | None:
    """The rule that lets the replies of ``rule``'s flows back, or None when there are none (``established``:
    TCP replies as segments with ACK or RST set only)."""
    icmp_type = rule.icmp_type
    if rule.protocol in ICMP_PROTOCOLS and icmp_type is not None:
        reply = ICMP_REPLIES.get((rule.protocol or 0, icmp_type))
        if reply is None or rule.icmp_code not in (None, 0):
            return None
        icmp_type = reply
    return Rule(
        Action.PERMIT,
        opposite(rule.direction),
        rule.protocol,
        rule.dst,
        rule.src,
        rule.dst_ports,
        rule.src_ports,
        icmp_type,
        None if icmp_type is None else rule.icmp_code,
        False,
        Provenance(rules=rule.provenance.rules, note=RETURN_NOTE),
        TcpFlags.ESTABLISHED if established and rule.protocol == TCP else None,
    )


def replies_of(rules: Sequence[Rule], default: Action, *, established: bool = False) -> list[Rule]:
    """Permit rules for the replies of every flow ``rules`` (one direction, first-match) permit."""
    if not rules:
        return []
    direction = rules[0].direction
    space = permitted(rules, default, Ordering.FIRST_MATCH)
    forward = attribute(space.to_rules(Action.PERMIT, direction), [r for r in rules if r.action is Action.PERMIT])
    return merge_set([rev for r in forward if (rev := reverse_rule(r, established=established)) is not None])


def with_return_rules(
    per_direction: Mapping[Direction, list[Rule]], enforced: frozenset[Direction], default: Action,
    *, established: bool = False,
) -> dict[Direction, list[Rule]]:
    """Each enforced direction's rules, preceded by the replies of the opposite direction's permits."""
    out: dict[Direction, list[Rule]] = {}
    for direction in sorted(enforced, key=lambda d: d.value):
        own = per_direction.get(direction, [])
        replies = replies_of(per_direction.get(opposite(direction), []), default, established=established)
        out[direction] = [*replies, *own]
    return out
