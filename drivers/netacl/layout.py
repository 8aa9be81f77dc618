"""What a switch ACL driver owns and how a ruleset maps onto it: ACL names, bindings, the default entry.

Per point up to four ACLs (direction × family) named ``{prefix}{INGRESS|EGRESS}-V{4|6}``.  Ingress
rules (towards the protected subnets) are bound ``out`` on each configured interface (traffic leaving
the gateway into the VLAN), egress rules ``in``.  A permit default is an explicit last ``permit any
any`` entry; a deny default is the platform's implicit deny — except that an ACL with no rules gets an
explicit ``deny any any`` (an empty ACL permits everything on IOS).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from drivers.netacl.ace import (
    NO_RULE_REMARK,
    Ace,
    Acl,
    AclLine,
    Binding,
    DeviceAcls,
    Entry,
    Remark,
    Unsupported,
    any_network,
    remark_continues,
    remark_kind,
    remark_lines,
    remark_rules,
)
from drivers.sshtrust import HostKeyTrust, SshSettings, host_key_trust, settings_error
from orchestrator.model import (
    ANY_OF_FAMILY,
    CARVE_OUT_NOTE,
    RETURN_NOTE,
    Action,
    AddressSet,
    Direction,
    Existing,
    Mode,
    Ordering,
    ParseError,
    Provenance,
    Rule,
    Ruleset,
    Unmanaged,
)

DEVICE_DIRECTION: Mapping[Direction, str] = {Direction.INGRESS: "out", Direction.EGRESS: "in"}
OWNED_KINDS = ("extended", "filter")  # the list kinds microseg writes (Cisco-like ACLs, Junos filters)
ConfigLines = tuple[list[str] | None, list[str]]  # (definition body, other lines naming it) of one ACL
MONITOR_SUFFIX = "-MONITOR"


@dataclass(frozen=True, slots=True)
class AclSettings:
    """The driver settings of one switch point (inventory ``data.microseg.settings``)."""

    prefix: str
    interfaces: tuple[str, ...]
    families: tuple[int, ...]
    directions: tuple[Direction, ...]
    confirm_minutes: int
    max_seq: int
    host_keys: HostKeyTrust | None = None  # settings host_key_policy / known_hosts (see drivers.sshtrust)
    take_over: bool = False  # bind the owned ACLs where someone else's are bound (their ACLs stay defined)
    delete_replaced: bool = False  # … and delete such an ACL when nothing else names it (see replaced_acls)
    # the validated settings model (a platform's own keys, e.g. its transport); not part of equality or hash
    typed: AclSettingsModel | None = field(default=None, compare=False, repr=False)

    def slot(self, binding: Binding) -> tuple[str, int, str]:
        return binding.interface, binding.family, binding.direction

    def managed_slots(self) -> set[tuple[str, int, str]]:
        """(interface, family, device direction) of every binding the point's ACLs need."""
        return {self.slot(b) for b in self.wanted_bindings()}

    def name(self, direction: Direction, family: int, mode: Mode = Mode.ENFORCE) -> str:
        """``{prefix}INGRESS-V4``; in monitor mode ``{prefix}INGRESS-V4-MONITOR`` (the name says the mode)."""
        return f"{self.prefix}{direction.value.upper()}-V{family}{MONITOR_SUFFIX if mode is Mode.MONITOR else ''}"

    def owned_names(self, mode: Mode | None = None) -> dict[str, tuple[Direction, int]]:
        """The owned ACL names of one mode, or (None) of both: a point switching mode owns both kinds."""
        modes = (Mode.ENFORCE, Mode.MONITOR) if mode is None else (mode,)
        return {self.name(d, f, m): (d, f) for m in modes for d in self.directions for f in self.families}

    def wanted_bindings(self, mode: Mode = Mode.ENFORCE) -> tuple[Binding, ...]:
        return tuple(sorted(Binding(i, f, DEVICE_DIRECTION[d], self.name(d, f, mode))
                            for i in self.interfaces for d in self.directions for f in self.families))


class BindingSetting(BaseModel):
    """One interface the point's ACLs are bound to (``vlan``/``unit`` describe it for the lab)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interface: str
    vlan: int | None = Field(default=None, ge=1, le=4094)
    unit: int | None = Field(default=None, ge=0, le=16385)


class AclSettingsModel(SshSettings):
    """The settings of a switch point, typed; a platform subclass names its prefix key and token grammars.

    Interface names and the name prefix become tokens of configuration lines, so each must match the
    platform's grammar for that token (``INTERFACE``, ``PREFIX``: its syntax module's patterns) — a
    control byte or ``? ; $()`` never reaches a device.
    """

    INTERFACE: ClassVar[str] = r"[A-Za-z][A-Za-z0-9/.:-]*"
    PREFIX: ClassVar[str] = r"[A-Za-z][A-Za-z0-9_.-]*"
    PREFIX_KEY: ClassVar[str] = "acl_name_prefix"

    bindings: list[BindingSetting | str] = Field(min_length=1, description="interfaces the ACLs are bound to")
    families: list[Literal[4, 6]] | None = None
    confirm_minutes: int = Field(default=5, ge=1, le=60)
    take_over: bool = Field(default=False, description=(
        "bind the owned ACLs in place of someone else's bound where microseg binds (make-before-break: the "
        "owned ACL is written first, then one binding line replaces the old one; the old ACL stays defined, "
        "and a rollback binds it again); by default such a binding refuses the plan"))
    delete_replaced: bool = Field(default=False, description=(
        "with take_over: delete the old ACL in the same change, after the binding lines, when nothing but its "
        "definition and the point's binding lines names it in the running configuration and a rollback can write "
        "it back exactly (every entry modelled; no remark, comment, per-entry counting or Junos count); otherwise "
        "it stays defined and the plan says why. A rollback writes it back, entry for entry, and binds it again"))

    @model_validator(mode="after")
    def _delete_needs_take_over(self) -> AclSettingsModel:
        if self.delete_replaced and not self.take_over:
            raise ValueError("delete_replaced deletes the ACL a take-over replaced: it needs take_over: true")
        return self

    @field_validator("bindings")
    @classmethod
    def _interfaces(cls, value: list[BindingSetting | str]) -> list[BindingSetting | str]:
        for item in value:
            name = item.interface if isinstance(item, BindingSetting) else item
            if not re.fullmatch(cls.INTERFACE, name):
                raise ValueError(f"interface {name!r} is not an interface name on this platform")
        return value

    @classmethod
    def _checked_prefix(cls, value: str) -> str:
        if not re.fullmatch(cls.PREFIX, value):
            raise ValueError(f"{value!r} is not a name prefix on this platform (letters, digits, _ . -; "
                             "a letter first)")
        return value

    def interfaces(self) -> tuple[str, ...]:
        return tuple(b.interface if isinstance(b, BindingSetting) else b for b in self.bindings)

    def prefix(self) -> str:
        return str(getattr(self, self.PREFIX_KEY))


class CiscoAclSettings(AclSettingsModel):
    """IOS, NX-OS and EOS: named ACLs with a name prefix."""

    acl_name_prefix: str = "MSEG-"

    @field_validator("acl_name_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return cls._checked_prefix(value)


class CountingAclSettings(CiscoAclSettings):
    """NX-OS and EOS: named ACLs that count per entry only when told to (the syntax module's
    ``ENTRY_COUNTERS`` line in the ACL)."""

    entry_counters: bool = Field(default=True, description=(
        "write the platform's per-entry counter line (NX-OS `statistics per-entry`, EOS `counters per-entry`) "
        "into every owned ACL a change edits, so that the listing shows each entry's hit count (rule hit "
        "evidence); false (where hardware counter resources are scarce) writes its `no` form instead"))


class JunosFilterSettings(AclSettingsModel):
    """Junos: firewall filters with a name prefix."""

    PREFIX_KEY: ClassVar[str] = "filter_name_prefix"
    filter_name_prefix: str = "MSEG-"

    @field_validator("filter_name_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return cls._checked_prefix(value)


def parse_settings(settings: Mapping[str, Any], point: str, driver: str, members: AddressSet, *,
                   model: type[AclSettingsModel] = CiscoAclSettings, max_seq: int = 2147483647,
                   directions: Iterable[Direction] = (Direction.INGRESS, Direction.EGRESS)) -> AclSettings:
    """Validate the point's settings; ``families`` defaults to those of the protected subnets."""
    try:
        typed = model.model_validate(dict(settings))
    except ValidationError as exc:
        raise settings_error(exc, point=point, driver=driver) from exc
    families = tuple(sorted(typed.families or (members.families or (4, 6))))
    owned = tuple(d for d in (Direction.INGRESS, Direction.EGRESS) if d in set(directions))
    host_keys = host_key_trust(typed, point=point)
    return AclSettings(typed.prefix(), typed.interfaces(), families, owned, typed.confirm_minutes, max_seq,
                       host_keys, typed.take_over, typed.delete_replaced, typed)


# ---------------------------------------------------------------- ruleset → target ACLs

def target_aces(intended: Ruleset, settings: AclSettings,
                labels: dict[str, list[str | None]] | None = None,
                remarks: dict[str, list[tuple[str, ...]]] | None = None) -> dict[str, list[Ace]]:
    """Every owned ACL's entries, in order, for the intended ruleset (the default entry included).

    In monitor mode the ACLs are the ``…-MONITOR`` ones and nothing in them blocks: a would-deny entry is a
    ``permit … log`` in the deny's place, a permit stays a permit (without log: the log marks would-deny
    evidence), and a deny default becomes a last ``permit any any log``.

    ``labels``, when given, is filled beside: per ACL, per entry, :func:`entry_label` (why the entry exists,
    where the compiler derived it for a policy rule), for platforms that name entries (Junos terms); ``remarks``
    likewise with :func:`~drivers.netacl.ace.remark_lines` of every entry's policy rules (``()``: no rule), for
    platforms that write remarks (see :func:`with_remarks`).
    """
    mode = intended.mode
    out: dict[str, list[Ace]] = {name: [] for name in settings.owned_names(mode)}
    named: dict[str, list[str | None]] = {} if labels is None else labels
    named.update({name: [] for name in out})
    if remarks is not None:  # asked only by platforms that write remarks: work per entry, on big ACLs too
        remarks.update({name: [] for name in out})
    for rule in intended.rules:
        src, dst = rule.src.networks, rule.dst.networks
        single = len(src) == 1 and len(dst) == 1  # the compiled shape of an ACL point: one prefix per side
        families = ((src[0].version,) if src[0].version == dst[0].version else ()) if single else \
            sorted(rule.src.families & rule.dst.families)
        for family in families:
            name = settings.name(rule.direction, family, mode)
            if name not in out and _only_any(rule, family):
                continue  # "any" spans both families; the point filters only the ones it is configured for
            if name not in out:
                raise ValueError(f"a rule needs IPv{family} but the point's families are "
                                 f"{list(settings.families)}: {rule.service_text()}")
            ace = Ace.from_rule(rule if single else _one_family(rule, family))
            if mode is Mode.MONITOR:
                ace = replace(ace, action=Action.PERMIT, log=ace.action is Action.DENY)
            out[name].append(ace)
            named[name].append(entry_label(rule))
            if remarks is not None:
                remarks[name].append(remark_lines(rule.provenance.rules, rule.provenance.derived()))
    for name, (_, family) in settings.owned_names(mode).items():
        if mode is Mode.MONITOR:
            out[name].append(Ace(Action.PERMIT, None, any_network(family), any_network(family),
                                 log=intended.default_action is Action.DENY))
            named[name].append(None)
            if remarks is not None:
                remarks[name].append(())
        elif intended.default_action is Action.PERMIT or not out[name]:
            out[name].append(Ace(intended.default_action, None, any_network(family), any_network(family)))
            named[name].append(None)
            if remarks is not None:
                remarks[name].append(())
    return out


def with_remarks(aces: Sequence[Ace], remarks: Sequence[tuple[str, ...]]) -> list[AclLine]:
    """``aces`` with a remark before each run of entries of the same policy rules (``remarks``: the lines per
    entry, as ``target_aces`` gives them): ``mseg: web-to-db`` then its entries, so that a person reading the
    device sees why each entry is there, and a plan reading it back knows which policy rule an entry it would
    remove belongs to (the empty-group guard).  Entries of no policy rule after such a run get ``mseg: -`` (ones
    before any run get no remark)."""
    out: list[AclLine] = []
    last: tuple[str, ...] = ()
    for ace, lines in zip(aces, remarks, strict=True):
        shown = lines or ((NO_RULE_REMARK,) if last else ())
        if shown and shown != last:
            out.extend(Remark(line) for line in shown)
        last = shown
        out.append(ace)
    return out


LABEL_WORD = re.compile(r"[^A-Za-z0-9_-]+")
LABEL_LENGTH = 40  # leaves room for a platform's numbering within a 64-character name


def entry_label(rule: Rule) -> str | None:
    """Why an entry the compiler derived exists, as a name part: ``<policy rule>-return`` for a reply it lets back,
    ``<policy rule>-carve-out`` for a deny it puts before a wider permit; None for any other entry (it is what
    its rule says)."""
    kind = rule.provenance.derived()
    if kind is None or not rule.provenance.rules:
        return None
    stem = LABEL_WORD.sub("-", rule.provenance.rules[0]).strip("-")[:LABEL_LENGTH - len(kind) - 1].rstrip("-")
    return f"{stem}-{kind}" if stem else kind


def _only_any(rule: Rule, family: int) -> bool:
    return all(n.prefixlen == 0 for side in (rule.src, rule.dst) for n in side.networks if n.version == family)


def _one_family(rule: Rule, family: int) -> Rule:
    src = AddressSet(tuple(n for n in rule.src.networks if n.version == family)) or AddressSet((any_network(family),))
    dst = AddressSet(tuple(n for n in rule.dst.networks if n.version == family)) or AddressSet((any_network(family),))
    return replace(rule, src=src, dst=dst)


# ---------------------------------------------------------------- device → owned state

def owned_state(device: DeviceAcls, settings: AclSettings, *, point: str = "-", driver: str = "-",
                replaced: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The JSON-able owned part of a device: owned ACLs, the bindings on the configured interfaces, other ACLs,
    and what could not be read outside them.

    Strict on what microseg owns, tolerant of the rest: a line that could not be read inside an owned ACL, or a
    binding line of one of the point's interfaces, is a ParseError naming the ACL (or interface), the sequence
    number and the line; any other unread line — someone else's ACL, a list kind microseg does not model, a
    banner — is listed as unmanaged (by list and reason, so that a foreign counter ticking does not change the
    snapshot) and never blocks a plan.
    """
    owned = settings.owned_names()
    interfaces = set(settings.interfaces)
    unmanaged: set[tuple[str, str]] = set()
    for line in device.unread:
        if line.acl is not None and line.acl in owned:
            seq = f" entry {line.seq}" if line.seq is not None else ""
            raise ParseError(f"{point}: owned ACL {line.acl}{seq} cannot be read ({line.describe()})",
                             point=point, driver=driver)
        if line.interface is not None and line.interface in interfaces:
            raise ParseError(f"{point}: the ACL bindings of {line.interface} cannot be read ({line.describe()})",
                             point=point, driver=driver)
        # by list and reason, never by text: a line outside any list (a banner, a status line) may change on
        # every read, and the snapshot's fingerprint must not (a plan would go stale for nothing)
        unmanaged.add((line.acl or line.interface or "(outside any access list)", line.reason))
    state: dict[str, Any] = {
        "acls": [a.to_dict() for a in device.acls if a.name in owned],
        "bindings": [b.to_dict() for b in sorted(device.bindings) if b.interface in interfaces],
        # someone else's ACLs: those listed (a whole-device fetch) and those bound on the point's interfaces
        "other_acls": sorted({a.name for a in device.acls if a.name not in owned}
                             | {b.acl for b in device.bindings if b.interface in interfaces and b.acl not in owned}),
        "unread": [{"name": name, "reason": reason} for name, reason in sorted(unmanaged)],
    }
    if replaced is not None:
        state["replaced"] = replaced
    return state


def replaced_names(device: DeviceAcls, settings: AclSettings) -> list[tuple[str, int]]:
    """(name, family) of someone else's ACLs bound in a slot the point binds: what a take-over replaces."""
    owned, managed = settings.owned_names(), settings.managed_slots()
    return sorted({(b.acl, b.family) for b in device.bindings
                   if b.interface in settings.interfaces and settings.slot(b) in managed and b.acl not in owned})


def replaced_acls(device: DeviceAcls, settings: AclSettings, config: Mapping[tuple[str, int], ConfigLines],
                  definition_problem: Callable[[Sequence[str], int], str | None],
                  binding_lines: Callable[[Binding], tuple[str, ...]]) -> list[dict[str, Any]]:
    """Each ACL a take-over replaces (``delete_replaced``): its entries, which a rollback writes back when the
    change deleted it (hit counters left out: they are no state); every place the device's configuration names
    it besides its definition and the point's own binding lines (``elsewhere``: it must not be deleted then — an
    interface of another point, a vty ``access-class``, a control plane, a route map …); and why it cannot be
    written back exactly, if it cannot (``problem``: an entry or a line of its definition microseg does not
    write).  ``config``: (definition body or None, other lines naming it) per ACL, from the syntax module's
    reading of the running configuration.  Fingerprinted with the owned state: a plan that deletes it goes stale
    when it changes."""
    managed = settings.managed_slots()
    out: list[dict[str, Any]] = []
    for name, family in replaced_names(device, settings):
        acl = next((a for a in device.acls if a.name == name and a.family == family), None)
        ours = {" ".join(binding_lines(b)) for b in device.bindings
                if b.acl == name and b.family == family and b.interface in settings.interfaces
                and settings.slot(b) in managed}
        body, uses = config.get((name, family), (None, []))
        # where else it is named, by block and command only: a whole line may hold a secret (a community string)
        elsewhere = sorted({_command_of(use) for use in uses if use.replace(": ", " ", 1) not in ours})
        problem = ("it is not listed" if acl is None
                   else "its definition is not in the running configuration" if body is None
                   else _not_restorable(acl, device) or definition_problem(body, len(acl.entries)))
        entries = [{"seq": e.seq, "ace": e.body.to_dict()} for e in acl.entries if isinstance(e.body, Ace)] \
            if acl else []
        out.append({"name": name, "family": family, "entries": entries, "elsewhere": elsewhere, "problem": problem})
    return out


def _command_of(use: str) -> str:
    """``line vty 0 4: access-class …`` for ``line vty 0 4: access-class X in``; ``snmp-server …`` for a top-level
    line: where, and which command, without the rest of the line."""
    block, sep, line = use.partition(": ")
    if not sep:
        return f"{use.split(maxsplit=1)[0]} …"
    return f"{block}: {line.split()[0]} …"


def _not_restorable(acl: Acl, device: DeviceAcls) -> str | None:
    """Why a rollback could not write ``acl``'s listed entries back exactly once deleted; None when it can."""
    if acl.kind not in OWNED_KINDS:
        return f"it is a {acl.kind} list (microseg writes and deletes {' and '.join(OWNED_KINDS)} ones)"
    for entry in acl.entries:
        if isinstance(entry.body, Unsupported):
            return f"entry {entry.seq} cannot be written back ({entry.body.reason})"
    # remarks, counters and other statements show in the definition's lines (see the syntax module's
    # definition_problem), on IOS only there
    if any(u.acl == acl.name for u in device.unread):
        return "a line of it could not be read"
    return None


def replaced_entries(item: Mapping[str, Any]) -> list[tuple[int | str, Ace]]:
    """The (seq or term, ace) entries of one ``replaced`` item (see :func:`replaced_acls`)."""
    return [(e["seq"], Ace.from_dict(e["ace"])) for e in item["entries"]]


def deletable(item: Mapping[str, Any]) -> bool:
    """Whether a take-over with ``delete_replaced`` may delete this replaced ACL (and a rollback writes it back)."""
    return not item["problem"] and not item["elsewhere"]


def kept_replaced(state: Mapping[str, Any]) -> tuple[Unmanaged, ...]:
    """Notes for the ACLs a take-over replaces (``delete_replaced``): deleted with it, or kept, and why."""
    out = []
    for item in state.get("replaced", ()):
        why = item["problem"] or (f"the configuration names it elsewhere too ({', '.join(item['elsewhere'])})"
                                  if item["elsewhere"] else None)
        out.append(Unmanaged("acl", item["name"], f"replaced by the take-over but not deleted: {why}" if why else
                             "replaced by the take-over and deleted with it (delete_replaced; a rollback writes "
                             "it back)"))
    return tuple(out)


def without_counters(state: Mapping[str, Any]) -> dict[str, Any]:
    """An owned state without the entries' hit counters: what the fingerprint covers."""
    acls = [{**acl, "entries": [{k: v for k, v in e.items() if k != "matches"} for e in acl["entries"]]}
            for acl in state["acls"]]
    return {**state, "acls": acls}


def observed_ruleset(state: Mapping[str, Any], settings: AclSettings, point: str, driver: str,
                     hits: list[int | None] | None = None) -> tuple[Ruleset, tuple[Unmanaged, ...]]:
    """The normalized ruleset the owned ACLs enforce, plus notes (other ACLs, missing bindings); ``hits`` gets
    each rule's hit counter as the listing showed it (None: none shown), in the ruleset's order."""
    acls = {a["name"]: Acl.from_dict(a) for a in state["acls"]}
    rules: dict[Direction, list[Rule]] = {Direction.INGRESS: [], Direction.EGRESS: []}
    counted: dict[Direction, list[int | None]] = {Direction.INGRESS: [], Direction.EGRESS: []}
    defaults: set[Action] = set()
    monitoring = [name for name in settings.owned_names(Mode.MONITOR) if name in acls]
    mode = Mode.MONITOR if monitoring else Mode.ENFORCE
    for name, (direction, _) in settings.owned_names(mode).items():
        acl = acls.get(name)
        aces, counts, why = _read_entries(point, driver, acl) if acl else ([], [], [])
        seen = _monitored(aces, direction) if mode is Mode.MONITOR and acl else None
        if seen is not None:
            default, decided = seen
            defaults.add(default)
            rules[direction].extend(_attributed(decided, why[:-1]))
            counted[direction].extend(counts[:-1])
            continue
        if mode is Mode.MONITOR and acl:  # not what microseg writes to monitor (something blocks): read as is
            mode = Mode.ENFORCE  # … and say so: the diff against a monitor intent is then never empty
        if aces and aces[-1].is_catch_all() and (aces[-1].action is Action.PERMIT or len(aces) == 1):
            defaults.add(aces.pop().action)
            counts.pop()
            why.pop()
        else:
            defaults.add(Action.DENY if acl else Action.PERMIT)  # implicit deny; no ACL: nothing filtered
        # the policy rules a remark microseg wrote names, read back (the empty-group guard sees them on removals)
        rules[direction].extend(_attributed([a.to_rule(direction) for a in aces], why))
        counted[direction].extend(counts)
    # an ACL of the other mode still there (a switch that did not finish): its entries count, so that the
    # diff is not empty and the next plan removes it
    for name, (direction, _) in settings.owned_names(Mode.ENFORCE if monitoring else Mode.MONITOR).items():
        if name in acls:
            aces, counts, why = _read_entries(point, driver, acls[name])
            rules[direction].extend(_attributed([a.to_rule(direction) for a in aces], why))
            counted[direction].extend(counts)
    kept = kept_replaced(state)
    notes = [Unmanaged("acl", n, "not owned by microseg: never touched") for n in state["other_acls"]
             if n not in {k.name for k in kept}]
    notes += kept
    notes += [Unmanaged("listing", u["name"], f"not read ({u['reason']}): never touched")
              for u in state.get("unread", ())]
    bound = {Binding.from_dict(b) for b in state["bindings"]}
    missing = [b for b in settings.wanted_bindings(Mode.MONITOR if monitoring else Mode.ENFORCE) if b not in bound]
    default = Action.DENY if defaults == {Action.DENY} else Action.PERMIT
    if missing:  # an ACL that is not bound everywhere does not enforce the ruleset: read as "nothing enforced"
        notes += [Unmanaged("binding", f"{b.interface} {b.direction}", f"{b.acl} not bound") for b in missing
                  if b.acl in acls]  # a fresh device (no owned ACL yet) is not worth a line per binding
        rules, default = {Direction.INGRESS: [], Direction.EGRESS: []}, Action.PERMIT
    ruleset = Ruleset(point, Ordering.FIRST_MATCH, default, (*rules[Direction.INGRESS], *rules[Direction.EGRESS]),
                      mode if not missing else Mode.ENFORCE, stateful=False)
    if hits is not None and ruleset.rules:
        hits.extend([*counted[Direction.INGRESS], *counted[Direction.EGRESS]])
    return ruleset, tuple(notes)


def _monitored(aces: list[Ace], direction: Direction) -> tuple[Action, list[Rule]] | None:
    """What a monitor ACL would enforce — its default and rules, would-deny entries (``permit … log``) read as
    the denies they stand for — or None when the ACL is not one microseg writes to monitor: it ends in a
    ``permit any any`` (with ``log``: a deny default) and holds permits only."""
    if not aces or any(a.action is not Action.PERMIT for a in aces):
        return None
    last = aces[-1]
    if not (last.protocol is None and last.single and last.src.prefixlen == 0 and last.dst.prefixlen == 0):
        return None
    default = Action.DENY if last.log else Action.PERMIT
    decided = [replace(a, action=Action.DENY, log=False) if a.log else a for a in aces[:-1]]
    return default, [a.to_rule(direction) for a in decided]


def _attributed(rules: Sequence[Rule], why: Sequence[Provenance | None]) -> list[Rule]:
    """``rules`` with the provenance their remarks gave (``_read_entries``), where one did."""
    return [r.with_provenance(w) if w is not None else r for r, w in zip(rules, why, strict=True)]


def _read_entries(point: str, driver: str,
                  acl: Acl) -> tuple[list[Ace], list[int | None], list[Provenance | None]]:
    """An owned ACL's entries (remarks left out), their hit counters, and the provenance the remark before each
    gives (``remark_rules``, ``remark_kind``; None: no remark, or one microseg did not write)."""
    aces: list[Ace] = []
    counts: list[int | None] = []
    why: list[Provenance | None] = []
    named: Provenance | None = None
    for entry in acl.entries:
        if isinstance(entry.body, Remark):
            text, rules = entry.body.text, remark_rules(entry.body.text)
            if remark_continues(text):  # ``mseg+ …``: the names that did not fit on the line before
                named = replace(named, rules=(*named.rules, *rules)) if named is not None else \
                    Provenance(rules=rules) if rules else None
            else:
                note = {"return": RETURN_NOTE, "carve-out": CARVE_OUT_NOTE}.get(remark_kind(text) or "")
                named = Provenance(rules=rules, note=note) if rules else None
            continue
        aces.append(_modelled(point, driver, acl, entry))
        counts.append(entry.matches)
        why.append(named)
    return aces, counts, why


def _modelled(point: str, driver: str, acl: Acl, entry: Entry) -> Ace:
    if isinstance(entry.body, Unsupported):
        raise ParseError(f"{point}: owned ACL {acl.name} entry {entry.seq} cannot be modelled "
                         f"({entry.body.reason}): {entry.body.text!r} — remove it by hand or rename the ACL",
                         point=point, driver=driver)
    return entry.body


def foreign_binding_conflicts(state: Mapping[str, Any], settings: AclSettings) -> list[Binding]:
    """Bindings of someone else's ACL in a slot (interface, family, direction) microseg needs."""
    wanted = {(b.interface, b.family, b.direction) for b in settings.wanted_bindings()}
    owned = settings.owned_names()
    return [b for b in map(Binding.from_dict, state["bindings"])
            if (b.interface, b.family, b.direction) in wanted and b.acl not in owned]


def entries_of(state: Mapping[str, Any], name: str) -> list[tuple[int | str, AclLine]] | None:
    """The (seq, ace or remark) entries of one owned ACL in the state, None when the ACL does not exist."""
    for data in state["acls"]:
        if data["name"] == name:
            acl = Acl.from_dict(data)
            return [(e.seq, e.body) for e in acl.entries if isinstance(e.body, Ace | Remark)]
    return None


def existing_enforcement(device: DeviceAcls, settings: AclSettings, point: str) -> Existing:
    """What the ACLs someone else bound on the point's interfaces decide, per direction and family the point
    filters (for ``adopt``): their entries in order, each with where it comes from; the implicit deny at the
    end; a slot without such an ACL lets everything through.  Interfaces that disagree (different ACLs in one
    slot) or entries that cannot be read are reported in ``unreadable`` and left out."""
    owned = settings.owned_names()
    acls = {(a.name, a.family): a for a in device.acls}
    rules: list[Rule] = []
    origins: list[str] = []
    unreadable: list[str] = []
    for direction in sorted(settings.directions, key=lambda d: d.value):
        for family in settings.families:
            slot = DEVICE_DIRECTION[direction]
            bound = {b.interface: b.acl for b in device.bindings
                     if b.interface in settings.interfaces and b.family == family and b.direction == slot
                     and b.acl not in owned}
            names = sorted(set(bound.values()))
            if not names:
                rules.append(Rule(Action.PERMIT, direction, None, ANY_OF_FAMILY[family], ANY_OF_FAMILY[family]))
                origins.append(f"no IPv{family} ACL bound {slot} on {', '.join(settings.interfaces)}: unfiltered")
                continue
            if len(names) > 1 or len(bound) != len(settings.interfaces):
                where = "; ".join(f"{i}: {bound.get(i, 'none')}" for i in settings.interfaces)
                unreadable.append(f"IPv{family} {slot}: the interfaces do not share one ACL ({where}); adopt them "
                                  "one point per interface")
                continue
            acl = acls.get((names[0], family))
            if acl is None:
                unreadable.append(f"ACL {names[0]} is bound {slot} but not listed (IPv{family})")
                continue
            where = f"on {', '.join(settings.interfaces)} {slot}"
            # a line of this ACL the parser could not read would be missing from the proposal: say so
            unreadable.extend(f"ACL {acl.name} {where}: {line.describe()}" for line in device.unread
                              if line.acl == acl.name)
            remark = ""  # the remark an entry follows: what its author said it is for (shown with it)
            for entry in acl.entries:
                if isinstance(entry.body, Ace):
                    rules.append(entry.body.to_rule(direction))
                    origins.append(f"ACL {acl.name} {entry.seq} {where}{remark}")
                elif isinstance(entry.body, Remark):  # decides nothing
                    remark = f" (remark: {entry.body.text})" if entry.body.text else ""
                else:
                    unreadable.append(f"ACL {acl.name} {entry.seq} {where}: {entry.body.reason}: {entry.body.text}")
    ruleset = Ruleset(point, Ordering.FIRST_MATCH, Action.DENY, tuple(rules), Mode.ENFORCE, stateful=False)
    return Existing(ruleset, tuple(origins), tuple(unreadable))
