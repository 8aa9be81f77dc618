"""Compute API firewall JSON ↔ normalized rules: the one module that knows the fields of a GCP firewall rule.

Reading is fail-closed on untrusted JSON: every field is type-checked before use and quoted through
:func:`shown` (bounded), so a malformed rule is a ParseError naming it — never a TypeError or RecursionError.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from drivers.gcp_firewall.settings import (
    DEFAULT_RULE_PRIORITY,
    DEFAULT_RULES,
    DRIVER,
    GCP_DEFAULT_PRIORITY,
    GcpSettings,
    OwnedName,
)
from orchestrator.model import (
    ANY_OF_FAMILY,
    ANY_PORTS,
    ICMP_PROTOCOLS,
    PORT_PROTOCOLS,
    Action,
    AddressSet,
    Direction,
    IPNetwork,
    ParseError,
    PermanentDriverError,
    PortSet,
    Rule,
    normalize_ports,
    shown,
)

MAX_RANGES = 256  # source or destination ranges of one rule
# Monitor mode: what leads the description (after ``microseg POINT: ``) of a rule written for it.
MONITOR_WOULD_DENY = "monitor, would deny"
MONITOR_REST = "monitor, allows the rest"
DESCRIPTION_MAX = 2048
VOLATILE = frozenset({"id", "kind", "selfLink", "creationTimestamp"})
UNDERSTOOD = frozenset({
    "name", "network", "description", "direction", "priority", "allowed", "denied", "sourceRanges",
    "destinationRanges", "targetTags", "targetServiceAccounts", "logConfig", "disabled",
})
PROTOCOL_NAMES: Mapping[int, str] = {1: "icmp", 4: "ipip", 6: "tcp", 17: "udp", 50: "esp", 51: "ah", 132: "sctp"}
NAMED_PROTOCOLS: Mapping[str, int] = {v: k for k, v in PROTOCOL_NAMES.items()}
"""At most this many characters of a field's JSON are quoted in an error message."""
API_DIRECTION: Mapping[Direction, str] = {Direction.INGRESS: "INGRESS", Direction.EGRESS: "EGRESS"}
ACTION_FIELD: Mapping[Action, str] = {Action.PERMIT: "allowed", Action.DENY: "denied"}
Targets = Mapping[int, AddressSet]
"""The addresses the rules' targets stand for, per address family (the point's members)."""


class RenderError(PermanentDriverError):
    """The intended ruleset holds something a GCP VPC firewall rule cannot express."""


@dataclass(frozen=True, slots=True)
class Piece:
    """One enabled owned rule, read field by field."""

    name: str
    owned: OwnedName
    priority: int
    action: Action
    protocol: int | None
    ports: PortSet
    peer: AddressSet
    protected: AddressSet | None  # explicit ranges on the members' side; None: the targets alone
    log: bool
    family: int
    monitored: bool = False  # written for monitor mode (see :func:`unit_bodies`): ``action`` is what it stands for
    rest: bool = False  # an allow-the-rest rule (monitor mode's default rules)


@dataclass(frozen=True, slots=True)
class Unit:
    """One normalized rule as written: the native rules (chunks) sharing one number."""

    direction: Direction
    number: int
    priority: int
    rule: Rule
    names: tuple[str, ...]
    explicit: bool  # the members' side is written as ranges
    monitored: bool = False  # a deny rule written for monitor mode: a logged allow


def stable_rule(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A fetched rule without server bookkeeping (ids, links, timestamps) and without empty fields."""
    return {k: v for k, v in sorted(raw.items()) if k not in VOLATILE and v not in (None, [], {}, "")}


def targets_for(members: AddressSet) -> dict[int, AddressSet]:
    """Per family, what the target instances stand for: the members (or any address when none are known)."""
    if not members:
        return dict(ANY_OF_FAMILY)
    return {v: AddressSet(tuple(n for n in members.networks if n.version == v)) for v in (4, 6)}


# ---------------------------------------------------------------------------------------------------- reading



def _strings(value: Any) -> list[str] | None:
    """A JSON list of strings (absent or null: empty); None when it is anything else."""
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


class RuleReader:
    """Reads one owned rule; every problem is a ParseError naming the rule (fail closed)."""

    def __init__(self, raw: Mapping[str, Any], settings: GcpSettings, name: str) -> None:
        self.raw = raw
        self.settings = settings
        self.name = name

    def fail(self, message: str) -> ParseError:
        return ParseError(f"firewall rule {self.name}: {message}", point=self.settings.point, driver=DRIVER)

    def check_fields(self) -> None:
        extra = sorted(k for k, v in self.raw.items() if k not in UNDERSTOOD | VOLATILE and v not in (None, [], ""))
        if extra:
            raise self.fail(f"uses {', '.join(extra)}, which microseg never writes; fix or delete the rule")
        network = self.raw.get("network")
        if not self.settings.network_matches(network):
            shown_network = network if isinstance(network, str) else shown(network)
            raise self.fail(f"is named like a rule of this point but belongs to network {shown_network} "
                            f"(the point's is {self.settings.network})")
        wanted = self.settings.targets()
        for key in ("targetTags", "targetServiceAccounts"):
            have = self.strings(key)
            if sorted(have) != sorted(wanted.get(key, [])):
                raise self.fail(f"applies to {key} {sorted(have)} instead of the point's targets {wanted}")

    def strings(self, key: str) -> list[str]:
        """A field that is a list of strings (``[]`` when absent); ParseError when it is not one."""
        value = _strings(self.raw.get(key))
        if value is None:
            raise self.fail(f"has {key} {shown(self.raw.get(key))}, not a list of strings")
        return value

    def priority(self) -> int:
        value = self.raw.get("priority", GCP_DEFAULT_PRIORITY)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
            raise self.fail(f"has priority {shown(value)}")
        return value

    def direction(self) -> Direction:
        text = self.raw.get("direction", "INGRESS")
        found = next((d for d, t in API_DIRECTION.items() if t == text), None)
        if found is None:
            raise self.fail(f"has direction {shown(text)}")
        return found

    def action_entry(self) -> tuple[Action, Mapping[str, Any]]:
        lists = {a: self.raw.get(f) or [] for a, f in ACTION_FIELD.items()}
        for action, entries in lists.items():
            if not isinstance(entries, list):
                raise self.fail(f"has {ACTION_FIELD[action]} {shown(entries)}, not a list")
        present = [(a, entries) for a, entries in lists.items() if entries]
        if len(present) != 1 or len(present[0][1]) != 1 or not isinstance(present[0][1][0], Mapping):
            raise self.fail("must hold exactly one allowed or denied entry (one protocol), as microseg writes it")
        return present[0][0], present[0][1][0]

    def protocol(self, entry: Mapping[str, Any]) -> tuple[int | None, PortSet]:
        value = entry.get("IPProtocol", "")
        if not isinstance(value, str):
            raise self.fail(f"has protocol {shown(value)}")
        text = value.strip().lower()
        if text == "all":
            protocol: int | None = None
        elif text in NAMED_PROTOCOLS:
            protocol = NAMED_PROTOCOLS[text]
        elif _is_number(text) and int(text) <= 255:
            protocol = int(text)
        else:
            raise self.fail(f"has protocol {text!r}")
        ports = _strings(entry.get("ports"))
        if ports is None:
            raise self.fail(f"has ports {shown(entry.get('ports'))}, not a list of strings")
        if not ports:
            return protocol, ANY_PORTS
        if protocol not in PORT_PROTOCOLS:
            raise self.fail(f"has ports {ports} on protocol {text}")
        ranges = []
        for port in ports:
            low, dash, high = port.partition("-")
            if not _is_number(low) or (dash and not _is_number(high)):
                raise self.fail(f"has ports {shown(ports)}: {port!r} is not N or N-M")
            ranges.append((int(low), int(high) if dash else int(low)))
        try:
            return protocol, normalize_ports(ranges)
        except ValueError as exc:
            raise self.fail(f"has ports {shown(ports)}: {exc}") from exc

    def ranges(self, key: str) -> list[IPNetwork]:
        texts = self.strings(key)
        try:
            return [ipaddress.ip_network(text, strict=False) for text in texts]
        except ValueError as exc:
            raise self.fail(f"has {key} {shown(texts)}: {exc}") from exc

    def log(self) -> bool:
        config = self.raw.get("logConfig") or {}
        enable = config.get("enable", False) if isinstance(config, Mapping) else None
        if not isinstance(enable, bool):
            raise self.fail(f"has logConfig {shown(config)}")
        return enable

    def piece(self, owned: OwnedName) -> Piece | None:
        """The rule read exactly; None when it is disabled (GCP then behaves as if it did not exist)."""
        self.check_fields()
        direction = self.direction()
        if direction is not owned.direction:
            raise self.fail(f"is named as an {owned.direction.value} rule but is {direction.value}")
        disabled = self.raw.get("disabled", False)
        if not isinstance(disabled, bool):
            raise self.fail(f"has disabled {shown(disabled)}")
        action, entry = self.action_entry()
        protocol, ports = self.protocol(entry)
        peer_key, own_key = ("sourceRanges", "destinationRanges") if direction is Direction.INGRESS else (
            "destinationRanges", "sourceRanges")
        peer, protected = self.ranges(peer_key), self.ranges(own_key)
        families = {n.version for n in (*peer, *protected)}
        if not peer or len(families) != 1:
            raise self.fail(f"needs {peer_key} of one address family (has {peer_key} {shown(self.raw.get(peer_key))}, "
                            f"{own_key} {shown(self.raw.get(own_key))})")
        if disabled:
            return None
        log, (monitored, rest) = self.log(), self.monitor_meaning()
        if monitored is not None and (action is not Action.PERMIT or not log):
            monitored, rest = None, False  # marked, but edited into something else: read as what it does
        return Piece(self.name, owned, self.priority(), action if monitored is None else monitored, protocol, ports,
                     AddressSet.of(peer), AddressSet.of(protected) if protected else None,
                     False if monitored else log, families.pop(), monitored is not None, rest)

    def monitor_meaning(self) -> tuple[Action | None, bool]:
        """What a rule written for monitor mode stands for (its description says) and whether it is an
        allow-the-rest rule: a would-deny rule or a default-deny allow-the-rest rule denies, a default-permit one
        permits; (None, False) for a rule not written so."""
        text = self.raw.get("description")
        if not isinstance(text, str):
            return None, False
        head = _author(self.settings)
        if text.startswith(head + MONITOR_WOULD_DENY):
            return Action.DENY, False
        if text.startswith(head + MONITOR_REST):
            return (Action.DENY if text.endswith("(default deny)") else Action.PERMIT), True
        return None, False


def _is_number(text: str) -> bool:
    """ASCII digits only (``str.isdigit`` alone also takes ``²``, which ``int`` refuses)."""
    return text.isascii() and text.isdigit()


def _merge(pieces: Sequence[Piece], settings: GcpSettings, targets: Targets) -> Unit:
    """The chunks of one number as one normalized rule (they must differ only in one side's ranges)."""
    first = pieces[0]

    def fail(message: str) -> ParseError:
        return ParseError(f"firewall rules {', '.join(p.name for p in pieces)}: {message}", point=settings.point,
                          driver=DRIVER)

    same = {(p.priority, p.action, p.protocol, p.ports, p.log, p.family, p.protected is None, p.monitored)
            for p in pieces}
    if len(same) != 1:
        raise fail("are chunks of one rule but differ in priority, action, protocol, ports, logging, family or "
                   "mode")
    if all(p.protected == first.protected for p in pieces):
        peer, protected = AddressSet.of(n for p in pieces for n in p.peer.networks), first.protected
    elif all(p.peer == first.peer for p in pieces):
        peer = first.peer
        protected = AddressSet.of(n for p in pieces if p.protected is not None for n in p.protected.networks)
    else:
        raise fail("are chunks of one rule but differ on both sides, which is not one rule")
    members = targets[first.family]
    own = members if protected is None else members.intersection(protected)
    src, dst = (peer, own) if first.owned.direction is Direction.INGRESS else (own, peer)
    try:
        rule = Rule(first.action, first.owned.direction, first.protocol, src, dst, dst_ports=first.ports,
                    log=first.log)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    names = tuple(p.name for p in sorted(pieces, key=lambda p: p.owned.chunk))
    return Unit(first.owned.direction, first.owned.number, first.priority, rule, names,
                protected is not None, first.monitored)


def _is_default(piece: Piece, kind: str) -> bool:
    direction, action = DEFAULT_RULES[kind]
    monitored = piece.rest and kind in ("allow-ingress", "allow-egress")  # monitor mode's allow-the-rest rules
    return (piece.owned.direction is direction and piece.protocol is None
            and (monitored or (not piece.monitored and piece.action is action and kind != "allow-egress"))
            and piece.ports == ANY_PORTS and piece.peer == ANY_OF_FAMILY[piece.family] and piece.protected is None
            and piece.priority == DEFAULT_RULE_PRIORITY and not piece.log and piece.family == piece.owned.family)


Defaults = dict[tuple[str, int], Action | None]
"""The default rules present, by (kind, family): None for one written for enforcing, else (monitor mode's
allow-the-rest rules) the default action it stands for."""


def read_owned(rules: Sequence[Mapping[str, Any]], settings: GcpSettings,
               targets: Targets) -> tuple[list[Unit], Defaults]:
    """The enabled owned policy rules (one Unit per number) and the default rules present."""
    groups: dict[tuple[Direction, int], list[Piece]] = {}
    defaults: Defaults = {}
    for raw in rules:
        name = raw.get("name")
        if not isinstance(name, str):
            raise ParseError(f"an owned firewall rule has the name {shown(name)}, not a string", point=settings.point,
                             driver=DRIVER)
        owned = settings.parse_name(name)
        if owned is None:
            continue
        piece = RuleReader(raw, settings, name).piece(owned)
        if piece is None:
            continue
        if owned.default is not None:
            if not _is_default(piece, owned.default):
                raise ParseError(f"firewall rule {piece.name}: microseg's default rule was changed; delete it and "
                                 "plan again", point=settings.point, driver=DRIVER)
            defaults[(owned.default, owned.family)] = piece.action if piece.monitored else None
            continue
        groups.setdefault((owned.direction, owned.number), []).append(piece)
    units = [_merge(pieces, settings, targets) for pieces in groups.values()]
    units.sort(key=lambda u: (u.direction.value, u.priority, u.rule.action is not Action.DENY, u.number))
    return units, defaults


# ---------------------------------------------------------------------------------------------------- writing


def _family(rule: Rule, settings: GcpSettings, where: str) -> int:
    families = rule.src.families | rule.dst.families
    if len(families) != 1:
        raise RenderError(f"{where}: one GCP firewall rule holds IPv4 or IPv6 ranges, not both (nor none)",
                          point=settings.point, driver=DRIVER)
    return next(iter(families))


def _entry(rule: Rule, family: int, settings: GcpSettings, where: str) -> dict[str, Any]:
    def refuse(message: str) -> RenderError:
        return RenderError(f"{where}: {message}", point=settings.point, driver=DRIVER)

    if rule.icmp_type is not None:
        raise refuse("GCP VPC firewall rules match ICMP as a whole protocol, not by ICMP type/code; "
                     "allow the whole protocol in the policy or protect these members with another control")
    if rule.src_ports != ANY_PORTS:
        raise refuse("GCP VPC firewall rules cannot match source ports")
    if rule.protocol in ICMP_PROTOCOLS and {1: 4, 58: 6}[rule.protocol] != family:
        raise refuse(f"protocol {rule.protocol} does not fit IPv{family} ranges (icmp is IPv4, 58 is ICMPv6)")
    if rule.protocol is None:
        return {"IPProtocol": "all"}
    entry: dict[str, Any] = {"IPProtocol": PROTOCOL_NAMES.get(rule.protocol, str(rule.protocol))}
    if rule.protocol in PORT_PROTOCOLS and rule.dst_ports != ANY_PORTS:
        entry["ports"] = [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in rule.dst_ports]
    return entry


def _chunks(networks: Sequence[IPNetwork]) -> list[list[str]]:
    return [[str(n) for n in networks[i:i + MAX_RANGES]] for i in range(0, len(networks), MAX_RANGES)]


def _author(settings: GcpSettings) -> str:
    """What every description microseg writes starts with (monitor-mode marks follow it)."""
    return f"microseg {settings.point}: "


def description(settings: GcpSettings, names: Sequence[str], *, would_deny: bool = False) -> str:
    """Who wrote the rule and from which policy rules (for people reading the console); a rule written for
    monitor mode says so first."""
    mark = f"{MONITOR_WOULD_DENY}; " if would_deny else ""
    text = f"{_author(settings)}{mark}{', '.join(names) or 'policy'}"
    return text[:DESCRIPTION_MAX]


def unit_bodies(rule: Rule, number: int, priority: int, settings: GcpSettings, targets: Targets,
                where: str, *, monitoring: bool = False) -> list[dict[str, Any]]:
    """The native rules (chunks of at most 256 ranges) that write one normalized rule.

    ``monitoring``: a deny rule is written as a logged allow marked ``monitor, would deny`` in its description —
    the firewall rules logs name it for every connection it lets through, the would-deny evidence."""
    would_deny = monitoring and rule.action is Action.DENY
    if would_deny:
        rule = replace(rule, action=Action.PERMIT, log=True)
    family = _family(rule, settings, where)
    ingress = rule.direction is Direction.INGRESS
    peer, protected = (rule.src, rule.dst) if ingress else (rule.dst, rule.src)
    members = targets[family]
    if not protected or protected.difference(members):
        raise RenderError(f"{where}: a GCP rule applies to its targets only, whose IPv{family} addresses are "
                          f"{members or 'none'}; this rule protects {protected or 'nothing'}",
                          point=settings.point, driver=DRIVER)
    peer_chunks = _chunks(peer.networks)
    own_chunks: list[list[str] | None] = [None] if protected == members else list(_chunks(protected.networks))
    if len(peer_chunks) > 1 and len(own_chunks) > 1:
        raise RenderError(f"{where}: more than {MAX_RANGES} ranges on both sides cannot be split into rules",
                          point=settings.point, driver=DRIVER)
    peer_key, own_key = ("sourceRanges", "destinationRanges") if ingress else ("destinationRanges", "sourceRanges")
    common: dict[str, Any] = {
        "network": settings.network, "direction": API_DIRECTION[rule.direction], "priority": priority,
        ACTION_FIELD[rule.action]: [_entry(rule, family, settings, where)], **settings.targets(),
        "logConfig": {"enable": rule.log}, "disabled": False,
        "description": description(settings, rule.provenance.rules, would_deny=would_deny),
    }
    bodies: list[dict[str, Any]] = []
    for chunk, (peers, own) in enumerate(((p, o) for p in peer_chunks for o in own_chunks), start=1):
        body = {"name": settings.unit_name(rule.direction, number, chunk), **common, peer_key: peers}
        if own is not None:
            body[own_key] = own
        bodies.append(body)
    return bodies


def default_body(kind: str, family: int, settings: GcpSettings, *, monitoring: Action | None = None) -> dict[str, Any]:
    """The lowest-priority rule that turns GCP's implied default of one direction and family around; while
    monitoring (``monitoring``: the default it stands for) a logged allow-the-rest rule, in each direction."""
    direction, action = DEFAULT_RULES[kind]
    peer_key = "sourceRanges" if direction is Direction.INGRESS else "destinationRanges"
    text = (f"{MONITOR_REST} (default {monitoring.value})" if monitoring is not None
            else f"default {action.value} ({direction.value})")
    return {
        "name": settings.default_name(kind, family), "network": settings.network,
        "direction": API_DIRECTION[direction], "priority": DEFAULT_RULE_PRIORITY,
        ACTION_FIELD[action]: [{"IPProtocol": "all"}], peer_key: [str(ANY_OF_FAMILY[family].networks[0])],
        **settings.targets(), "logConfig": {"enable": monitoring is not None}, "disabled": False,
        "description": _author(settings) + text,
    }
