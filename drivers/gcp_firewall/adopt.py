"""The firewall rules someone else wrote in the point's network that apply to its members, for ``microseg adopt``
(read-only).

GCP evaluates the rules of a VPC network that apply to an instance by priority (the lowest number first; at one
priority a deny wins over an allow), then its implied rules: deny every ingress, allow every egress (both
stateful).  A rule applies to the point's members when it targets every instance (no target tags or service
accounts) or one of the point's own targets (``target_tags`` / ``target_service_accounts``: what its members
carry, the same assumption microseg's own rules make); a disabled rule does nothing (GCP ignores it).

What cannot be read exactly is listed in ``unreadable`` naming the rule — a rule targeting only other tags or
accounts (whether the members carry them is not read), ``sourceTags`` / ``sourceServiceAccounts`` (instances
whose addresses are not read), a field adopt does not know, no source or destination ranges, a protocol or ports
it cannot read — so no proposal is proven equivalent while there is any.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from drivers.gcp_firewall.native import ACTION_FIELD, UNDERSTOOD, VOLATILE, RuleReader
from drivers.gcp_firewall.settings import GcpSettings
from orchestrator.model import (
    ANY_OF_FAMILY,
    Action,
    AddressSet,
    Direction,
    Existing,
    Mode,
    Ordering,
    ParseError,
    Rule,
    Ruleset,
)

IMPLIED_PRIORITY = 65535
FOREIGN_FIELDS = UNDERSTOOD | VOLATILE | {"sourceTags", "sourceServiceAccounts"}  # the last two: named unreadable


def foreign_enforcement(rules: Sequence[Mapping[str, Any]], settings: GcpSettings, members: AddressSet,
                        directions: frozenset[Direction], point: str) -> Existing:
    """What the network's other rules and the implied rules decide for the point's members (module docstring)."""
    found: list[tuple[int, int, str, Rule]] = []
    unreadable: list[str] = []
    for raw in rules:
        if not isinstance(raw, Mapping):
            unreadable.append(f"a firewall rule the list returned is not an object: {raw!r:.200}")
            continue
        name = str(raw.get("name"))
        if settings.read_name(name) is not None or not settings.network_matches(raw.get("network")):
            continue  # microseg's own rules of this point, or another network's
        try:
            found += _read(RuleReader(raw, settings, name), raw, settings, members, directions)
        except ParseError as exc:  # the rule is named in the message; the point is the adoption's own
            unreadable.append(exc.message.removeprefix(f"{exc.point} ({exc.driver}): "))
    found.sort(key=lambda item: item[:3])
    out = [rule for *_, rule in found]
    origins = [f"firewall rule {name} (priority {priority})" for priority, _, name, _ in found]
    if Direction.EGRESS in directions:
        for family in (4, 6):
            mine = AddressSet(members.v4 if family == 4 else members.v6)
            if mine:
                out.append(Rule(Action.PERMIT, Direction.EGRESS, None, mine, ANY_OF_FAMILY[family]))
                origins.append(f"GCP's implied rule: allow all egress (priority {IMPLIED_PRIORITY})")
    ruleset = Ruleset(point, Ordering.FIRST_MATCH, Action.DENY, tuple(out), Mode.ENFORCE, stateful=True)
    return Existing(ruleset, tuple(origins), tuple(unreadable))


def _read(reader: RuleReader, raw: Mapping[str, Any], settings: GcpSettings, members: AddressSet,
          directions: frozenset[Direction]) -> list[tuple[int, int, str, Rule]]:
    """(priority, 0 deny / 1 allow, name, rule) of each protocol entry of one rule that applies to the members."""
    disabled = raw.get("disabled", False)
    if not isinstance(disabled, bool):
        raise reader.fail(f"has disabled {disabled!r}")
    direction = reader.direction()
    if disabled or direction not in directions:
        return []
    unknown = sorted(k for k, v in raw.items() if k not in FOREIGN_FIELDS and v not in (None, [], "", {}))
    if unknown:
        raise reader.fail(f"uses {', '.join(unknown)}, which adopt does not read")
    tags, accounts = reader.strings("targetTags"), reader.strings("targetServiceAccounts")
    if (tags or accounts) and not (set(tags) & set(settings.target_tags)
                                   or set(accounts) & set(settings.target_service_accounts)):
        # it applies to the instances with those tags or accounts: whether the members are among them is not read
        raise reader.fail(f"targets {'tags ' + str(tags) if tags else 'service accounts ' + str(accounts)}, not "
                          "the point's own targets: whether its members carry them is not read — give the point "
                          "the targets its members carry (target_tags / target_service_accounts) or adopt by hand")
    for key in ("sourceTags", "sourceServiceAccounts"):
        if reader.strings(key):
            raise reader.fail(f"matches {key} {reader.strings(key)}: the addresses of those instances are not read")
    entries = {action: raw.get(field) or [] for action, field in ACTION_FIELD.items()}
    present = [(action, listed) for action, listed in entries.items() if listed]
    if len(present) != 1 or not isinstance(present[0][1], list):
        raise reader.fail("must hold allowed or denied entries, not both or neither")
    action, listed = present[0]
    peer_key, own_key = ("sourceRanges", "destinationRanges") if direction is Direction.INGRESS else (
        "destinationRanges", "sourceRanges")
    peer, own = AddressSet.of(reader.ranges(peer_key)), AddressSet.of(reader.ranges(own_key))
    if not peer:
        raise reader.fail(f"has no {peer_key}: whom it matches is not written in the rule")
    priority = reader.priority()
    out: list[tuple[int, int, str, Rule]] = []
    for entry in listed:
        if not isinstance(entry, Mapping):
            raise reader.fail(f"has an entry {entry!r}, not an object")
        protocol, ports = reader.protocol(entry)
        for family in (4, 6):
            theirs = AddressSet(peer.v4 if family == 4 else peer.v6)
            mine = AddressSet(members.v4 if family == 4 else members.v6)
            mine = mine.intersection(own) if own else mine
            if theirs and mine:
                src, dst = (theirs, mine) if direction is Direction.INGRESS else (mine, theirs)
                out.append((priority, 0 if action is Action.DENY else 1, reader.name,
                            Rule(action, direction, protocol, src, dst, dst_ports=ports)))
    return out
