"""Raw NSG JSON → the owned, normalized Ruleset and the unmanaged rules (pure; fails closed on what it cannot read).

The ARM JSON is untrusted input: fields are type-checked before use and quoted through :func:`shown` (bounded),
so whatever its shape, reading it ends in an Observed or a ParseError — never a TypeError or RecursionError.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from drivers.azure_nsg.asgs import AsgIndex, effective, side_members
from drivers.azure_nsg.layout import (
    DIRECTION_OF,
    DRIVER,
    MONITOR_MARK,
    MONITOR_REST,
    PROTOCOL_OF,
    NsgSettings,
    Unreadable,
    rule_name,
    security_rules,
    writable_nsg,
)
from orchestrator.model import (
    ANY_ADDRESS,
    ANY_PORTS,
    PORT_PROTOCOLS,
    Action,
    AddressSet,
    Direction,
    IPNetwork,
    Mode,
    Observed,
    Ordering,
    ParseError,
    PortRange,
    PortSet,
    Provenance,
    Rule,
    Ruleset,
    Unmanaged,
    normalize_ports,
    shown,
)

ACCESS_OF: Mapping[str, Action] = {"allow": Action.PERMIT, "deny": Action.DENY}
"""At most this many characters of a field's JSON are quoted in an error message."""



@dataclass(frozen=True, slots=True)
class OwnedRule:
    """One rule of the owned scope: its native name, priority and raw JSON, and what it means."""

    name: str
    priority: int
    rule: Rule
    raw: Mapping[str, Any]
    catch_all: bool = False
    monitored: bool = False  # written for monitor mode: a would-deny Allow (``rule`` denies), or the allow-rest


@dataclass(frozen=True, slots=True)
class NsgView:
    """A fetched NSG split by ownership (``exists`` False when there is no NSG yet)."""

    exists: bool
    etag: str | None
    nsg: Mapping[str, Any] | None
    owned: tuple[OwnedRule, ...]
    unmanaged: tuple[Mapping[str, Any], ...]
    asgs: AsgIndex = field(default_factory=AsgIndex)

    def owned_in(self, direction: Direction) -> list[OwnedRule]:
        """The owned rules of one direction, ascending priority."""
        return sorted((o for o in self.owned if o.rule.direction is direction), key=lambda o: o.priority)

    def default_deny(self, directions: frozenset[Direction]) -> bool:
        """Whether every direction the point filters has its catch-all deny (the others own nothing)."""
        return {o.rule.direction for o in self.owned if o.catch_all and not o.monitored} == directions

    def monitoring(self, directions: frozenset[Direction]) -> bool:
        """Whether the owned rules are written for monitor mode, all of them: every direction the point filters
        ends in the allow-the-rest catch-all and every deny rule is a would-deny Allow."""
        return ({o.rule.direction for o in self.owned if o.catch_all and o.monitored} == directions
                and all(o.monitored for o in self.owned if o.rule.action is Action.DENY))


def _error(point: str, message: str) -> ParseError:
    return ParseError(message, point=point, driver=DRIVER)


def split_view(native: Any, settings: NsgSettings, point: str) -> NsgView:
    """Decode a snapshot's ``native`` ({exists, etag, nsg}) and split its rules into owned and unmanaged."""
    if not isinstance(native, Mapping) or "exists" not in native:
        raise _error(point, f"not an {DRIVER} snapshot: {shown(native)}")
    nsg = native.get("nsg")
    asgs = AsgIndex.from_native(native.get("asgs"), point)
    if not native["exists"]:
        return NsgView(False, None, None, (), (), asgs)
    if not isinstance(nsg, Mapping) or not isinstance(nsg.get("properties"), Mapping):
        raise _error(point, f"NSG {settings.nsg_name}: the ARM answer has no 'properties' object")
    owned_raw, unmanaged = partition_rules(nsg, settings, point)
    owned = [parse_owned(raw, settings, point, asgs) for raw in owned_raw]
    etag = native.get("etag")
    if etag and not isinstance(etag, str):
        raise _error(point, f"NSG {settings.nsg_name}: the ETag {shown(etag)} is not a string")
    return NsgView(True, etag or None, nsg, tuple(owned), tuple(unmanaged), asgs)


def partition_rules(nsg: Mapping[str, Any], settings: NsgSettings,
                    point: str) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """(owned, unmanaged) raw rules, by name prefix AND priority band AND direction (nothing else is read): a
    rule of a direction the point does not filter is unmanaged, left alone like a foreign one."""
    owned: list[Mapping[str, Any]] = []
    unmanaged: list[Mapping[str, Any]] = []
    for index, raw in enumerate(security_rules(nsg)):
        if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
            raise _error(point, f"securityRules[{index}] has no name: cannot tell whether microseg owns it")
        props = raw.get("properties")
        priority = props.get("priority") if isinstance(props, Mapping) else None
        if raw["name"].startswith(settings.prefix) and (isinstance(priority, bool) or not isinstance(priority, int)):
            raise _error(point, f"rule {raw['name']!r}: priority {shown(priority)} is not a number "
                                f"(cannot tell whether it is inside the owned band)")
        direction = props.get("direction") if isinstance(props, Mapping) else None
        (owned if settings.owns(raw["name"], priority, direction) else unmanaged).append(raw)
    return owned, unmanaged


def parse_owned(raw: Mapping[str, Any], settings: NsgSettings, point: str,
                asgs: AsgIndex | None = None) -> OwnedRule:
    """One owned rule → normalized; anything that does not fit the model raises ParseError naming the rule.

    An ASG reference stands for the ASG's current members (``asgs``); one it cannot resolve fails closed.
    """
    name = str(raw["name"])
    props = raw["properties"]
    priority = int(props["priority"])
    try:
        direction = lookup(DIRECTION_OF, props.get("direction"), "direction")
        rule = rule_from_props(props, direction, asgs or AsgIndex())
    except Unreadable as exc:
        raise _error(point, f"rule {name!r} (priority {priority}): {exc}") from exc
    description = props.get("description") if isinstance(props.get("description"), str) else ""
    allows = rule.action is Action.PERMIT
    whole = rule.protocol is None and rule.src == ANY_ADDRESS and rule.dst == ANY_ADDRESS
    at_end = name == settings.catch_all_name(direction) and priority == settings.priority_max
    if allows and at_end and whole and description.startswith(MONITOR_REST):  # monitoring: what it stands for
        default = Action.DENY if description.endswith("(default deny)") else Action.PERMIT
        return OwnedRule(name, priority, replace(rule, action=default), raw, True, monitored=True)
    if allows and description.startswith(MONITOR_MARK):  # a deny rule being monitored: let through
        provenance = Provenance(rules=_policy_names(description[len(MONITOR_MARK):].lstrip(";")))
        return OwnedRule(name, priority, replace(rule, action=Action.DENY, provenance=provenance), raw,
                         monitored=True)
    return OwnedRule(name, priority, rule, raw, at_end and whole and rule.action is Action.DENY)


def _policy_names(text: str) -> tuple[str, ...]:
    """The policy rules a description names (render writes them comma-separated)."""
    return tuple(p.strip() for p in text.split(",") if p.strip())


def lookup(table: Mapping[str, Any], value: object, what: str) -> Any:
    if not isinstance(value, str) or value.lower() not in table:
        raise Unreadable(f"{what} {shown(value)} is not one of {', '.join(sorted(table))}")
    return table[value.lower()]


def read_rule(props: Mapping[str, Any], direction: Direction, asgs: AsgIndex) -> Rule | None:
    """What native rule properties mean (None when microseg cannot model them): render's read-back check."""
    try:
        return rule_from_props(props, direction, asgs)
    except Unreadable:
        return None


def rule_from_props(props: Mapping[str, Any], direction: Direction, asgs: AsgIndex,
                    tags: Mapping[str, AddressSet] | None = None) -> Rule:
    """What native rule properties mean.  A side naming service tags raises :class:`ServiceTag` unless ``tags``
    (tag, lower case → addresses) expands every one of them; an expanded side matches like an ASG side: the
    addresses of the packet's family."""
    action: Action = lookup(ACCESS_OF, props.get("access"), "access")
    protocol: int | None = lookup(PROTOCOL_OF, props.get("protocol"), "protocol")
    _check_asg_references(props, "source")
    _check_asg_references(props, "destination")
    src_members, dst_members = side_members(props, "source", asgs), side_members(props, "destination", asgs)
    sides = {"source": None if src_members is None else Side(src_members, True),
             "destination": None if dst_members is None else Side(dst_members, True)}
    read: dict[str, _Values] = {}
    for side, known in sides.items():  # a side naming tags is resolved as it is read; the others after both
        if known is None:
            read[side] = _read_side(props, side)
            if read[side].named:
                read[side].check_tags(side, tags)
                sides[side] = read[side].addresses(side, tags)
    src_side, dst_side = (known or read[side].addresses(side, tags) for side, known in sides.items())
    src, dst = src_side.addresses, dst_side.addresses
    src_ports, dst_ports = _ports(props, "source"), _ports(props, "destination")
    if protocol not in PORT_PROTOCOLS and (src_ports != ANY_PORTS or dst_ports != ANY_PORTS):
        raise Unreadable(f"ports on protocol {shown(props.get('protocol'))} (Azure applies them to TCP/UDP only): "
                         f"not modelled")
    prefixes = {v for side in (src_side, dst_side)
                if not side.any_family and side.addresses != ANY_ADDRESS for v in side.addresses.families}
    if len(prefixes) > 1:
        raise Unreadable("IPv4 and IPv6 prefixes in one rule")
    src, dst = effective(src, dst, src_side.any_family, dst_side.any_family)
    families = {v for side in (src, dst) if side != ANY_ADDRESS for v in side.families}
    if protocol == 1 and 6 in families:
        raise Unreadable("protocol Icmp with IPv6 prefixes (ICMPv6 semantics are not modelled)")
    description = props.get("description")
    names = _policy_names(description) if isinstance(description, str) else ()
    try:
        return Rule(action, direction, protocol, src, dst, src_ports, dst_ports, provenance=Provenance(rules=names))
    except ValueError as exc:
        raise Unreadable(str(exc)) from exc


def _check_asg_references(props: Mapping[str, Any], side: str) -> None:
    """The ASG references of one side are ``[{"id": "…"}, …]`` (absent or empty: none)."""
    refs = props.get(f"{side}ApplicationSecurityGroups")
    if not refs:
        return
    if not isinstance(refs, list):
        raise Unreadable(f"{side}ApplicationSecurityGroups is not a list")
    for ref in refs:
        ref_id = ref.get("id") if isinstance(ref, Mapping) else None
        if not isinstance(ref_id, str) or not ref_id:
            raise Unreadable(f"{side}ApplicationSecurityGroups entry {shown(ref)} has no id")


def _values(props: Mapping[str, Any], single_key: str, plural_key: str) -> list[object]:
    single, plural = props.get(single_key), props.get(plural_key)
    if plural is not None and not isinstance(plural, list):
        raise Unreadable(f"{plural_key} is not a list")
    if single and plural:
        raise Unreadable(f"both {single_key} and {plural_key} are set")
    values: list[object] = [single] if single else list(plural or [])
    if not values:
        raise Unreadable(f"neither {single_key} nor {plural_key} is set")
    return values


class ServiceTag(Unreadable):
    """A rule side names service tags (or words that are no address prefix) that were not expanded."""

    def __init__(self, message: str, tags: tuple[str, ...]) -> None:
        super().__init__(message)
        self.tags = tags


@dataclass(frozen=True, slots=True)
class Side:
    """One rule side's addresses; ``any_family``: an ASG's members or a service tag's expansion, which match the
    addresses of the packet's family (a prefix side pins its family)."""

    addresses: AddressSet
    any_family: bool = False


@dataclass(frozen=True, slots=True)
class _Values:
    """A side's address fields, read once: the prefixes, the words that are no prefix (service tags), and the
    values that are neither (a non-string; ``*`` among other values), in order."""

    networks: tuple[IPNetwork, ...]
    named: tuple[str, ...]
    odd: tuple[object, ...]
    everything: bool  # the side is ``*`` alone

    def check_tags(self, side: str, tags: Mapping[str, AddressSet] | None) -> None:
        """ServiceTag when the side names a tag ``tags`` does not expand (None: none is expanded)."""
        missing = tuple(v for v in self.named if tags is None or v.lower() not in tags)
        if missing:
            words = ", ".join(repr(v) for v in missing)
            raise ServiceTag(f"{side} {words} is a service tag or not an address prefix: not modelled"
                             if tags is None else f"{side} {words}: no expansion of it at the members' NICs", missing)

    def addresses(self, side: str, tags: Mapping[str, AddressSet] | None) -> Side:
        """The side's addresses (its tags expanded: :meth:`check_tags` passed); Unreadable for a value that is
        no address."""
        if self.everything:
            return Side(ANY_ADDRESS)
        if not self.named:
            if self.odd:
                raise _no_address(side, self.odd[0])
            return Side(AddressSet.of(self.networks))
        not_text = [v for v in self.odd if not isinstance(v, str)]
        if not_text:
            raise _no_address(side, not_text[0])
        if self.odd:  # ``*`` beside a tag: every address
            return Side(ANY_ADDRESS, True)
        expanded = [n for word in self.named for n in (tags or {})[word.lower()].networks]  # check_tags passed
        return Side(AddressSet.of([*self.networks, *expanded]), True)


def _no_address(side: str, value: object) -> Unreadable:
    return Unreadable(f"{side} {value!r} is a service tag or not an address prefix: not modelled"
                      if isinstance(value, str) else f"{side} {shown(value)} is not an address prefix")


def _read_side(props: Mapping[str, Any], side: str) -> _Values:
    values = _values(props, f"{side}AddressPrefix", f"{side}AddressPrefixes")
    if values == ["*"]:
        return _Values((), (), (), True)
    networks: list[IPNetwork] = []
    named: list[str] = []
    odd: list[object] = []
    for value in values:
        if isinstance(value, str):
            try:
                networks.append(ipaddress.ip_network(value, strict=False))
                continue
            except ValueError:
                if value != "*":
                    named.append(value)
                    continue
        odd.append(value)
    return _Values(tuple(networks), tuple(named), tuple(odd), False)


def _ports(props: Mapping[str, Any], side: str) -> PortSet:
    values = _values(props, f"{side}PortRange", f"{side}PortRanges")
    if values == ["*"]:
        return ANY_PORTS
    ranges: list[PortRange] = []
    for value in values:
        lo, sep, hi = value.partition("-") if isinstance(value, str) else ("", "", "")
        if not _is_number(lo) or (sep and not _is_number(hi)):
            raise Unreadable(f"{side} port range {shown(value)} is not N or N-M")
        ranges.append((int(lo), int(hi) if sep else int(lo)))
    try:
        return normalize_ports(ranges)
    except ValueError as exc:
        raise Unreadable(f"{side} ports: {exc}") from exc


def _is_number(text: str) -> bool:
    """ASCII digits only (``str.isdigit`` alone also takes ``²``, which ``int`` refuses)."""
    return text.isascii() and text.isdigit()


def _unmanaged_detail(raw: Mapping[str, Any], settings: NsgSettings) -> str:
    props = raw.get("properties")
    props = props if isinstance(props, Mapping) else {}
    priority = props.get("priority")
    direction, access = props.get("direction", "?"), props.get("access", "?")
    where = " ".join(v if isinstance(v, str) else shown(v) for v in (direction, priority, access))
    if settings.leaves_alone(direction):
        return f"{where}: {direction} traffic is not filtered by this point (inventory directions), left alone"
    if isinstance(priority, bool) or not isinstance(priority, int):
        return where
    if priority < settings.priority_min:
        return f"{where}: before the owned band {settings.priority_min}-{settings.priority_max}, evaluated first"
    if priority > settings.priority_max:
        return f"{where}: after the owned band, reached only by traffic microseg's rules leave undecided"
    return f"{where}: inside the owned band without the {settings.prefix!r} prefix, evaluated among microseg's rules"


def observed(view: NsgView, settings: NsgSettings, point: str) -> Observed:
    """The normalized owned ruleset (ingress then egress, ascending priority) and the unmanaged rules.

    Written for monitor mode throughout: mode ``monitor``, each would-deny Allow read as the deny it stands for,
    the default the allow-the-rest rule names.  Partly (a hand edit; microseg's own PUT replaces the whole NSG):
    mode ``enforce`` and every rule as what it does now, so that either plan rewrites it."""
    monitoring = view.monitoring(settings.directions)
    if monitoring:
        catch_alls = [o for o in view.owned if o.catch_all]
        deny = all(o.rule.action is Action.DENY for o in catch_alls)
    else:
        deny = view.default_deny(settings.directions)
    rules: list[Rule] = []
    names: list[tuple[str, ...]] = []
    scopes = _log_scopes(view, settings)
    for direction in settings.ordered_directions:
        for o in view.owned_in(direction):
            if o.catch_all and (monitoring or deny):
                continue
            rules.append(replace(o.rule, action=Action.PERMIT) if o.monitored and not monitoring else o.rule)
            names.append(tuple(rule_name(scope, logged) for scope, forms in scopes for logged in forms(o.name)))
    ruleset = Ruleset(point, Ordering.PRIORITY, Action.DENY if deny else Action.PERMIT, tuple(rules),
                      Mode.MONITOR if monitoring else Mode.ENFORCE, stateful=True)
    unmanaged = tuple(Unmanaged("nsg-rule", str(r.get("name")), _unmanaged_detail(r, settings))
                      for r in view.unmanaged)
    return Observed(ruleset, unmanaged, log_names=tuple(names))


def _log_scopes(view: NsgView, settings: NsgSettings) -> tuple[tuple[str, Callable[[str], tuple[str, ...]]], ...]:
    """How flow logs name this NSG's rules: NSG flow logs by its resource ID and ``UserRule_NAME`` (Microsoft's
    samples); VNet flow logs by its ``resourceGuid`` (``aclID``), the rule as ``UserRule_NAME`` or by its bare
    name (Microsoft's VNet sample shows only default and admin rules, so both forms are taken; rule names are
    unique in an NSG).  See :func:`drivers.azure_nsg.layout.rule_name`."""
    props = view.nsg.get("properties") if isinstance(view.nsg, Mapping) else None
    guid = props.get("resourceGuid") if isinstance(props, Mapping) else None
    scopes: list[tuple[str, Callable[[str], tuple[str, ...]]]] = [(settings.path, lambda name: (f"UserRule_{name}",))]
    if isinstance(guid, str) and guid:
        scopes.append((guid, lambda name: (f"UserRule_{name}", name)))
    return tuple(scopes)


def stable_state(native: Any, settings: NsgSettings) -> dict[str, Any]:
    """What the fingerprint covers: the NSG's writable body (every rule, sorted by name), no ETag or states, and
    the configured ASGs with their members.

    The whole body, not only the owned rules: apply writes the whole NSG, so a concurrent change to an
    unmanaged rule or a tag must make a plan stale rather than be overwritten.
    """
    nsg = native.get("nsg") if isinstance(native, Mapping) else None
    asgs = native.get("asgs") if isinstance(native, Mapping) else None
    out: dict[str, Any]
    if not isinstance(native, Mapping) or not native.get("exists") or not isinstance(nsg, Mapping):
        out = {"nsg": settings.path, "exists": bool(isinstance(native, Mapping) and native.get("exists")),
               "raw": None if nsg is None else str(nsg)[:2000]}
    else:
        body = writable_nsg(nsg)
        body["properties"]["securityRules"] = sorted(
            body["properties"]["securityRules"], key=lambda r: str(r.get("name")) if isinstance(r, Mapping) else "")
        out = {"nsg": settings.path, "exists": True, "body": body}
    if asgs is not None:  # the ASGs' members: a NIC joining or leaving one changes what its rules match (drift)
        out["asgs"] = asgs
    return out

