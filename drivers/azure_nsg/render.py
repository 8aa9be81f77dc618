"""Intended Ruleset → one whole-NSG PUT (pure): the owned rules with stable priorities, the rest kept verbatim."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from drivers.azure_nsg.asgs import AsgIndex, choices
from drivers.azure_nsg.layout import (
    CHANGE_FORMAT,
    DESCRIPTION_MAX,
    DRIVER,
    MAX_ASGS_PER_RULE_SIDE,
    MAX_PREFIXES_PER_NSG,
    MAX_RULES_PER_NSG,
    MONITOR_MARK,
    MONITOR_REST,
    NATIVE_DIRECTION,
    NATIVE_PROTOCOL,
    RULE_NAME,
    NsgSettings,
    writable_nsg,
    writable_rule,
)
from drivers.azure_nsg.parse import NsgView, OwnedRule, read_rule, split_view
from drivers.azure_nsg.priorities import Allocation, BandFull, allocate
from orchestrator.model import (
    ANY_ADDRESS,
    ANY_PORTS,
    Action,
    AddressSet,
    Direction,
    Mode,
    NativeChange,
    Ordering,
    PermanentDriverError,
    PortSet,
    RenderRequest,
    Rule,
    Ruleset,
    protocol_name,
)


class RenderError(PermanentDriverError):
    """The ruleset holds something an Azure NSG cannot express (refused at plan time, before any call)."""


Writer = Callable[[Rule, str, int], dict[str, Any]]


@dataclass(slots=True)
class _Direction:
    """What rendering one direction produced: its native rules and the review notes."""

    rules: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    kept: int = 0


def rule_problem(rule: Rule) -> str | None:
    """Why ``rule`` cannot be written as an NSG security rule (None when it can)."""
    if rule.icmp_type is not None or rule.icmp_code is not None:
        return (f"Azure NSG rules cannot match an ICMP type/code ({rule.service_text()}): allow or deny all of "
                f"{protocol_name(rule.protocol)} in the policy instead")
    if rule.protocol not in NATIVE_PROTOCOL:
        return (f"Azure NSG protocols are Tcp, Udp, Icmp, Esp, Ah and * (any): protocol "
                f"{protocol_name(rule.protocol)} ({rule.protocol}) cannot be expressed")
    if rule.log:
        return "Azure NSG rules have no per-rule log flag (use NSG flow logs)"
    if not rule.src or not rule.dst:
        return "a side with no address matches nothing and cannot be written"
    families = {v for side in (rule.src, rule.dst) if side != ANY_ADDRESS for v in side.families}
    if len(families) > 1:
        return "IPv4 and IPv6 prefixes in one rule (capabilities: mixed_families_per_rule=false)"
    if rule.protocol == 1 and families == {6}:
        return "protocol Icmp with IPv6 prefixes: Azure's ICMPv6 semantics are not modelled"
    return None


def _prefixes(addresses: AddressSet) -> list[str]:
    return ["*"] if addresses == ANY_ADDRESS else addresses.to_list()


def _port_texts(ports: PortSet) -> list[str]:
    if ports == ANY_PORTS:
        return ["*"]
    return [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ports]


def _side(props: dict[str, Any], side: str, kind: str, values: list[str]) -> None:
    """``*`` goes in the singular field (Azure refuses it in the lists), everything else in the list."""
    if values == ["*"]:
        props[f"{side}{kind}"] = "*"
    else:
        props[f"{side}{kind}{'es' if kind.endswith('Prefix') else 's'}"] = values


def native_rule(rule: Rule, name: str, priority: int, *, monitoring: bool = False) -> dict[str, Any]:
    """One normalized rule as an ARM security rule (``rule`` must have passed :func:`rule_problem`).

    ``monitoring``: a deny rule is written as Allow, its description led by :data:`MONITOR_MARK` — NSG flow logs
    name the rule that let each flow through, so its records are the would-deny evidence."""
    would_deny = monitoring and rule.action is Action.DENY
    props: dict[str, Any] = {
        "access": "Allow" if rule.action is Action.PERMIT or would_deny else "Deny",
        "direction": NATIVE_DIRECTION[rule.direction],
        "priority": priority,
        "protocol": NATIVE_PROTOCOL[rule.protocol],
    }
    _side(props, "source", "AddressPrefix", _prefixes(rule.src))
    _side(props, "destination", "AddressPrefix", _prefixes(rule.dst))
    _side(props, "source", "PortRange", _port_texts(rule.src_ports))
    _side(props, "destination", "PortRange", _port_texts(rule.dst_ports))
    names = ", ".join(rule.provenance.rules)
    if would_deny:
        props["description"] = f"{MONITOR_MARK}; {names}"[:DESCRIPTION_MAX] if names else MONITOR_MARK
    elif names:
        props["description"] = names[:DESCRIPTION_MAX]
    return {"name": name, "properties": props}


def with_asgs(rule: Rule, native: dict[str, Any], asgs: AsgIndex, location: str | None) -> dict[str, Any]:
    """``native`` with an ASG in place of the prefixes of a side whose addresses are exactly its members.

    A choice is kept only when the rule it writes reads back (members expanded) as ``rule`` itself.
    """
    for choice in choices(rule, asgs, location):
        props = dict(native["properties"])
        for side, asg in choice.items():
            props.pop(f"{side}AddressPrefix", None)
            props.pop(f"{side}AddressPrefixes", None)
            props[f"{side}ApplicationSecurityGroups"] = [{"id": asg.id}]
        if read_rule(props, rule.direction, asgs) == rule:
            return {**native, "properties": props}
    return native


def catch_all_rule(settings: NsgSettings, direction: Direction, *, monitoring: bool = False,
                   default: Action = Action.DENY) -> dict[str, Any]:
    """The explicit deny-everything rule at the band's last priority that stands for default_action=deny; while
    monitoring, an allow-everything rule there whatever the default (it says which one), so that what the band
    leaves undecided passes and shows in the flow logs under its name."""
    if monitoring:
        allow = Rule(Action.PERMIT, direction, None, ANY_ADDRESS, ANY_ADDRESS)
        rule = native_rule(allow, settings.catch_all_name(direction), settings.priority_max)
        rule["properties"]["description"] = f"{MONITOR_REST} (default {default.value})"
        return rule
    deny = Rule(Action.DENY, direction, None, ANY_ADDRESS, ANY_ADDRESS)
    rule = native_rule(deny, settings.catch_all_name(direction), settings.priority_max)
    rule["properties"]["description"] = "microseg default deny (overrides Azure's AllowVnet*/AllowInternetOutBound)"
    return rule


def summary(rule: Mapping[str, Any]) -> str:
    """``mseg-in-0100 Inbound 100 Allow Tcp 10.0.0.0/8 -> 10.1.0.0/24 ports 443``: one rule for review."""
    p = rule.get("properties") or {}

    def pick(key: str) -> str:
        asgs = p.get(key.replace("AddressPrefix", "ApplicationSecurityGroups")) if key.endswith("Prefix") else None
        if asgs:
            return ",".join(f"asg:{str(a.get('id', '?')).rsplit('/', 1)[-1]}" for a in asgs if isinstance(a, Mapping))
        value = p.get(key) or p.get(key + "es" if key.endswith("Prefix") else key + "s") or "?"
        return ",".join(value) if isinstance(value, list) else str(value)

    return (f"{rule.get('name')} {p.get('direction')} {p.get('priority')} {p.get('access')} {p.get('protocol')} "
            f"{pick('sourceAddressPrefix')} -> {pick('destinationAddressPrefix')} ports {pick('destinationPortRange')}")


class Renderer:
    """Renders one point's intended ruleset against the NSG it fetched."""

    def __init__(self, settings: NsgSettings, point: str) -> None:
        self.settings = settings
        self.point = point

    def _error(self, message: str) -> RenderError:
        return RenderError(message, point=self.point, driver=DRIVER)

    def render(self, request: RenderRequest) -> NativeChange:
        """The change: one ``PUT`` of the whole NSG (conditional on its ETag) with every security rule."""
        self._check_ruleset(request.intended)
        view = split_view(request.snapshot.native, self.settings, self.point)
        if not view.exists and not self.settings.location:
            raise self._error(f"NSG {self.settings.nsg_name} does not exist: set 'location' to let microseg create "
                              f"it, or create and attach it first")
        directions = self.settings.ordered_directions  # the others are unmanaged: kept verbatim, no catch-all
        allocations = {d: self._allocate(view, request.intended, d) for d in directions}
        taken = {str(r.get("name")) for r in view.unmanaged}
        for alloc, existing in allocations.values():
            by_priority = {o.priority: o.name for o in existing}
            taken.update(by_priority[alloc.priorities[i]] for i in alloc.kept)
        location = (view.nsg or {}).get("location") or self.settings.location

        monitoring = request.intended.mode is Mode.MONITOR

        def write(rule: Rule, name: str, priority: int) -> dict[str, Any]:
            return with_asgs(rule, native_rule(rule, name, priority, monitoring=monitoring), view.asgs, location)

        parts = [self._emit(request.intended, d, *allocations[d], taken, write, view.owned_in(d)) for d in directions]
        owned = [r for part in parts for r in part.rules]
        rules = [writable_rule(r) for r in view.unmanaged] + owned
        self._check_limits(rules)
        if view.exists and view.nsg is not None:
            body = writable_nsg(view.nsg)
            condition = f"If-Match: {view.etag or '*'}"
        else:
            body = {"location": self.settings.location, "properties": {}}
            condition = "If-None-Match: *"
        body["properties"].pop("securityRules", None)
        kept = sum(p.kept for p in parts)
        head = (f"# NSG {self.settings.nsg_name}: {len(owned)} owned rules ({kept} unchanged), "
                f"{len(view.unmanaged)} unmanaged rules kept verbatim")
        lines = [f"PUT {self.settings.path} {condition}", head, *(n for p in parts for n in p.notes),
                 f"nsg {_dumps(body)}", *(f"rule {_dumps(r)}" for r in rules)]
        return NativeChange(self.point, DRIVER, CHANGE_FORMAT, tuple(lines), mutating_calls=1)

    def _check_ruleset(self, ruleset: Ruleset) -> None:
        if ruleset.ordering is not Ordering.PRIORITY:
            raise self._error(f"Azure NSG rules are evaluated by priority, not {ruleset.ordering.value}")
        if not ruleset.stateful:
            raise self._error("Azure NSG rules are always stateful")
        for position, rule in enumerate(ruleset.rules, start=1):
            problem = rule_problem(rule) if rule.direction in self.settings.directions else (
                f"the point does not filter {rule.direction.value} (inventory directions): its "
                f"{NATIVE_DIRECTION[rule.direction]} rules are left alone")
            if problem is not None:
                raise self._error(f"rule {position} ({rule.direction.value} {rule.service_text()} {rule.src} → "
                                  f"{rule.dst}; policy {', '.join(rule.provenance.rules) or '?'}): {problem}")

    def _allocate(self, view: NsgView, ruleset: Ruleset, direction: Direction) -> tuple[Allocation, list[OwnedRule]]:
        """Priorities for one direction's intended rules (unchanged rules keep theirs)."""
        s = self.settings
        native = NATIVE_DIRECTION[direction]
        monitoring = ruleset.mode is Mode.MONITOR
        # a deny rule written for the other mode is rewritten, not kept (permits read the same in both)
        existing = [o for o in view.owned_in(direction) if o.rule.action is Action.PERMIT or o.monitored == monitoring]
        blocked = frozenset(p for p in _priorities(view.unmanaged, native) if s.in_band(p))
        if (ruleset.default_action is Action.DENY or monitoring) and s.priority_max in blocked:
            raise self._error(f"{native} priority {s.priority_max} (the band's last, for the catch-all) is "
                              f"taken by an unmanaged rule: free it or change priority_max")
        try:
            alloc = allocate([(o.rule.key(), o.priority) for o in existing],
                             [r.key() for r in ruleset.for_direction(direction)],
                             s.priority_min, s.last_ordinary, blocked)
        except BandFull as exc:
            raise self._error(
                f"{native}: {exc.wanted} rules do not fit in the band {s.priority_min}-{s.last_ordinary} "
                f"({exc.free} free priorities; {len(blocked)} taken by unmanaged rules, {s.priority_max} kept "
                f"for the catch-all): widen priority_min/priority_max or merge rules") from exc
        return alloc, existing

    def _emit(self, ruleset: Ruleset, direction: Direction, alloc: Allocation, existing: list[OwnedRule],
              taken: set[str], write: Writer, everything: Sequence[OwnedRule]) -> _Direction:
        """The native rules and review notes of one direction (``existing``: the owned rules it may keep;
        ``everything``: all owned rules of the direction, the catch-all and those of the other mode too)."""
        by_priority = {o.priority: o for o in existing}
        deny = ruleset.default_action is Action.DENY
        monitoring = ruleset.mode is Mode.MONITOR
        out = _Direction()
        for index, (rule, priority) in enumerate(zip(ruleset.for_direction(direction), alloc.priorities,
                                                     strict=True)):
            if index in alloc.kept:
                out.rules.append(writable_rule(by_priority[priority].raw))
                out.kept += 1
                continue
            generated = write(rule, self._name(direction, priority, taken), priority)
            out.rules.append(generated)
            old = alloc.matched.get(index)
            verb = f"renumber (was {by_priority[old].name} {old})" if old is not None else "add"
            out.notes.append(f"# {verb}: {summary(generated)}")
        used = {by_priority[p].name for p in alloc.matched.values()}
        wanted = catch_all_rule(self.settings, direction, monitoring=monitoring, default=ruleset.default_action) if (
            deny or monitoring) else None
        current = next((o for o in everything if o.catch_all), None)
        # the catch-all it has stands for what is wanted: the same mode, the same default
        same = (current is not None and wanted is not None and current.monitored == monitoring
                and current.rule.action is (ruleset.default_action if monitoring else Action.DENY))
        out.notes += [f"# remove: {summary(o.raw)}" for o in everything
                      if o.name not in used and not (same and o.catch_all)]
        if wanted is not None:
            out.rules.append(writable_rule(current.raw) if same and current is not None else wanted)
            if not same:
                out.notes.append(f"# add: {summary(wanted)}")
        return out

    def _name(self, direction: Direction, priority: int, taken: set[str]) -> str:
        base = self.settings.rule_name(direction, priority)
        name, n = base, 1
        while name in taken or name in (self.settings.catch_all_name(d) for d in Direction):
            n += 1
            name = f"{base}-{n}"
        if not RULE_NAME.match(name):
            raise self._error(f"rule name {name!r} is not a valid Azure rule name (check rule_name_prefix)")
        taken.add(name)
        return name

    def _check_limits(self, rules: Sequence[Mapping[str, Any]]) -> None:
        if len(rules) > MAX_RULES_PER_NSG:
            raise self._error(f"the NSG would hold {len(rules)} security rules; Azure allows {MAX_RULES_PER_NSG} "
                              f"per NSG")
        prefixes = sum(_prefix_count(r) for r in rules)
        if prefixes > MAX_PREFIXES_PER_NSG:
            raise self._error(f"the NSG would hold {prefixes} address prefixes; Azure allows "
                              f"{MAX_PREFIXES_PER_NSG} per NSG")
        for rule in rules:
            props = rule.get("properties") or {}
            for side in ("source", "destination"):
                count = len(props.get(f"{side}ApplicationSecurityGroups") or [])
                if count > MAX_ASGS_PER_RULE_SIDE:
                    raise self._error(f"rule {rule.get('name')} would reference {count} {side} application "
                                      f"security groups; Azure allows {MAX_ASGS_PER_RULE_SIDE} per side")


def _priorities(rules: Sequence[Mapping[str, Any]], direction: str) -> list[int]:
    out: list[int] = []
    for rule in rules:
        props = rule.get("properties")
        if isinstance(props, Mapping) and str(props.get("direction", "")).lower() == direction.lower():
            priority = props.get("priority")
            if isinstance(priority, int):
                out.append(priority)
    return out


def _prefix_count(rule: Mapping[str, Any]) -> int:
    props = rule.get("properties")
    if not isinstance(props, Mapping):
        return 0
    count = 0
    for side in ("source", "destination"):
        single, plural = props.get(f"{side}AddressPrefix"), props.get(f"{side}AddressPrefixes")
        count += len(plural) if isinstance(plural, list) else 0
        count += 1 if single and single != "*" else 0
    return count


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class ParsedChange:
    """A rendered change read back for apply: the conditional header and the body to PUT."""

    headers: dict[str, str]
    body: dict[str, Any]
    rules: int


def parse_change(change: NativeChange, settings: NsgSettings, point: str) -> ParsedChange:
    """Read a change rendered by :class:`Renderer` back; anything else (another NSG, edited lines) is refused."""
    def refuse(message: str) -> PermanentDriverError:
        return PermanentDriverError(f"cannot apply this change: {message}", point=point, driver=DRIVER)

    if change.driver != DRIVER or change.format != CHANGE_FORMAT or change.point != point:
        raise refuse(f"a {change.format} change of driver {change.driver} for {change.point}")
    request, *rest = change.commands
    verb, _, tail = request.partition(" ")
    path, _, condition = tail.partition(" ")
    header, _, value = condition.partition(": ")
    if verb != "PUT" or path != settings.path or header not in ("If-Match", "If-None-Match") or not value:
        raise refuse(f"its request line {request!r} is not a conditional PUT of {settings.path}")
    bodies: list[dict[str, Any]] = []
    rules: list[dict[str, Any]] = []
    for number, line in enumerate(rest, start=2):
        kind, _, text = line.partition(" ")
        if kind == "#":
            continue
        try:
            decoded = json.loads(text)
        except ValueError as exc:
            raise refuse(f"line {number} is not JSON: {exc}") from exc
        if kind not in ("nsg", "rule") or not isinstance(decoded, dict):
            raise refuse(f"line {number} is neither a comment, an nsg nor a rule line: {line[:80]!r}")
        (bodies if kind == "nsg" else rules).append(decoded)
    if len(bodies) != 1 or not isinstance(bodies[0].get("properties"), dict):
        raise refuse("it must hold exactly one 'nsg' line with a properties object")
    body = bodies[0]
    body["properties"]["securityRules"] = rules
    return ParsedChange({header: value}, body, len(rules))
