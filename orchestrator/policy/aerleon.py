"""``microseg import aerleon``: an Aerleon/Capirca policy (``.pol`` or ``.yaml`` plus its naming definitions)
as microseg policy documents, one per filter, for review — with every term that could not be carried over
and why.

Aerleon's own parser reads the files (its ``#include`` files, NETWORK and SERVICES definitions, nested
names, its checks), so the import sees the policy exactly as ``aclgen`` does.  Each filter becomes one
policy (a filter is one ACL; microseg's policy is point-agnostic, so filters stay apart and are applied by
putting each policy on its points):

* every NETWORK name a term uses becomes a CIDR group of that name (its flattened addresses); a term side
  naming several becomes the union, and ``source-exclude``/``destination-exclude`` a group with ``except``;
* ports and protocols become inline services (``tcp/443``, ``icmp/8``); a term with source ports gets named
  services (``source_ports``);
* terms keep their order (``priority`` = position), name, ``owner``, ``comment`` (as ``description``),
  ``expiration`` (as ``expires``) and ``logging``; ``accept`` is ``allow``, ``deny`` is ``deny``;
  ``reject``/``reject-with-tcp-rst`` are carried as ``deny`` with a note (microseg drops silently);
* the default is deny (the implicit deny at the end of every Aerleon filter).

What the model cannot hold — ``next``, ``option::`` (``established``, ``tcp-established`` …), ``address::``
(either side), ``verbatim``, counters, DSCP/TTL/fragment/prefix-list/FQDN matches … — is listed per term;
such a term is left out (a note) rather than carried over wider or narrower than it was.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.model.errors import PolicyError
from orchestrator.model.policy import API_VERSION, is_name
from orchestrator.model.rules import PORT_PROTOCOLS, PROTOCOL_NAMES, PROTOCOL_NUMBERS

# Aerleon's protocol names: microseg's, and two more it accepts
AERLEON_PROTOCOLS: Mapping[str, int] = {**PROTOCOL_NUMBERS, "ipip": 4, "egp": 8}
PORT_PROTOCOL_NAMES = frozenset(PROTOCOL_NAMES[p] for p in PORT_PROTOCOLS)
ACTIONS: Mapping[str, str] = {"accept": "allow", "deny": "deny", "reject": "deny", "reject-with-tcp-rst": "deny"}
# Term attributes the import carries over (or reads to decide); any other one that is set leaves the term out.
_CARRIED = frozenset({
    "name", "action", "source_address", "destination_address", "source_address_exclude",
    "destination_address_exclude", "protocol", "source_port", "destination_port", "icmp_type", "icmp_code",
    "logging", "expiration", "owner", "comment", "platform", "platform_exclude", "translated", "flattened",
    "flattened_addr", "flattened_saddr", "flattened_daddr", "inactive",
})
_IGNORED_VALUES: tuple[Any, ...] = (None, False, "", 0, [], ())


@dataclass(frozen=True, slots=True)
class Finding:
    """A term (or header) that was not carried over as written, and why."""

    filter: str
    term: str
    reason: str
    carried: bool  # True: carried with this note (e.g. reject → deny); False: left out

    def to_dict(self) -> dict[str, Any]:
        return {"filter": self.filter, "term": self.term, "reason": self.reason, "carried": self.carried}

    def describe(self) -> str:
        verb = "carried, note" if self.carried else "left out"
        return f"{self.filter} term {self.term}: {verb}: {self.reason}"


@dataclass
class ImportedFilter:
    """One filter as a microseg policy document (``document``), and what did not carry over."""

    name: str
    targets: tuple[str, ...]
    document: dict[str, Any]
    findings: list[Finding] = field(default_factory=list)

    @property
    def rules(self) -> int:
        return len(self.document.get("rules", ()))


def import_aerleon(policy_file: Path, definitions: Path, *, base_dir: Path | None = None) -> list[ImportedFilter]:
    """Every filter of an Aerleon policy file as a microseg policy document; PolicyError when Aerleon cannot
    read it (its message, with the file) or Aerleon is not installed."""
    try:
        from aerleon.lib import naming, policy  # noqa: PLC0415  (an optional dependency: only this command needs it)
    except ImportError as exc:
        raise PolicyError("`microseg import aerleon` needs Aerleon: pip install aerleon") from exc
    if not policy_file.is_file():
        raise PolicyError(f"{policy_file}: no such policy file")
    if not definitions.is_dir():
        raise PolicyError(f"{definitions}: no such definitions directory (NETWORK/SERVICES files)")
    base = base_dir if base_dir is not None else _base_dir(policy_file)
    try:
        names = naming.Naming(str(definitions))
        if policy_file.suffix in (".yaml", ".yml"):
            from aerleon.lib import yaml as aerleon_yaml  # noqa: PLC0415

            parsed = aerleon_yaml.ParseFile(str(policy_file), base_dir=str(base), definitions=names,
                                            optimize=False)
        else:
            parsed = policy.ParsePolicy(policy_file.read_text(encoding="utf-8"), names, optimize=False,
                                        base_dir=str(base), filename=str(policy_file))
    except Exception as exc:  # Aerleon raises many error types of its own; each is the user's input
        raise PolicyError(f"{policy_file}: Aerleon cannot read it: {type(exc).__name__}: {exc}") from exc
    if parsed is None:
        raise PolicyError(f"{policy_file}: Aerleon found no filter in it")
    out: list[ImportedFilter] = []
    taken: set[str] = set()
    for index, (header, terms) in enumerate(parsed.filters, start=1):
        targets = tuple(str(t) for t in header.target)
        name = _unique(_filter_name(header, policy_file, index), taken)
        out.append(_convert(name, targets, terms, policy.Term))
    return out


def _base_dir(policy_file: Path) -> Path:
    """Where ``#include`` paths start: the policy directory above the file (``policies/pol/x.pol`` →
    ``policies``, Aerleon's layout), else the file's own directory."""
    parent = policy_file.resolve().parent
    return parent.parent if parent.name == "pol" else parent


def _filter_name(header: Any, policy_file: Path, index: int) -> str:
    for target in header.target:
        options = [str(o) for o in getattr(target, "options", ()) or ()]
        if options and is_name(options[0]):
            return options[0]
    return f"{_safe(policy_file.stem)}-{index}"


def _safe(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "x"
    return cleaned if is_name(cleaned) else f"x{cleaned}"


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    taken.add(candidate)
    return candidate


class _Builder:
    """The groups, services and rules of one filter's document."""

    def __init__(self, name: str, icmp_types: Mapping[int, Mapping[str, int]]) -> None:
        self.name = name
        self.icmp_types = icmp_types
        self.groups: dict[str, dict[str, Any]] = {}
        self.services: dict[str, dict[str, Any]] = {}
        self.rules: list[dict[str, Any]] = []
        self.findings: list[Finding] = []
        self.rule_names: set[str] = set()

    def note(self, term: str, reason: str, *, carried: bool) -> None:
        self.findings.append(Finding(self.name, term, reason, carried))

    def side(self, term: Any, addresses: Sequence[Any], excluded: Sequence[Any], which: str) -> list[str] | str:
        """Group names for one side of a term (``any`` when it names none)."""
        if not addresses:
            if not excluded:
                return "any"
            base: list[str] = ["any"]
        else:
            by_token: dict[str, list[str]] = {}
            for address in addresses:
                token = _safe(str(getattr(address, "parent_token", "") or getattr(address, "token", "") or
                                  f"{term.name}-{which}"))
                by_token.setdefault(token, []).append(str(address))
            base = []
            for token, cidrs in by_token.items():
                self._group(token, {"cidrs": sorted(set(cidrs), key=_cidr_key)})
                base.append(token)
        if not excluded:
            return base if len(base) > 1 else base[0]
        name = _safe(f"{term.name}-{which}")
        body: dict[str, Any] = {"except": sorted({str(a) for a in excluded}, key=_cidr_key)}
        if base == ["any"]:
            body["cidrs"] = ["0.0.0.0/0", "::/0"]
        else:
            body["groups"] = base
        self._group(name, body, unique=True)
        return name

    def _group(self, name: str, body: dict[str, Any], *, unique: bool = False) -> None:
        if name in self.groups and self.groups[name] != body:
            if unique:
                raise PolicyError(f"{self.name}: two groups would be named {name!r}")
            # one NETWORK name stands for the same addresses everywhere; a union keeps the import exact
            merged = sorted(set(self.groups[name].get("cidrs", ())) | set(body.get("cidrs", ())), key=_cidr_key)
            self.groups[name] = {"cidrs": merged}
            return
        self.groups[name] = body

    def services_of(self, term: Any) -> list[str] | None:
        """The term's services as inline specs or named services; None (with a finding) when it cannot."""
        protocols = [str(p).lower() for p in term.protocol] or ["any"]
        dst = [(int(lo), int(hi)) for lo, hi in term.destination_port]
        src = [(int(lo), int(hi)) for lo, hi in term.source_port]
        types = list(term.icmp_type)
        codes = [int(c) for c in term.icmp_code]
        out: list[str] = []
        for protocol in protocols:
            if (dst or src) and protocol not in PORT_PROTOCOL_NAMES:
                self.note(term.name, f"ports with protocol {protocol}", carried=False)
                return None
            if protocol in ("icmp", "icmpv6") and types:
                family = 4 if protocol == "icmp" else 6
                for type_name in types:
                    number = self.icmp_types.get(family, {}).get(str(type_name))
                    if number is None:
                        self.note(term.name, f"icmp-type {type_name} of {protocol}", carried=False)
                        return None
                    out += [f"{protocol}/{number}/{code}" for code in codes] or [f"{protocol}/{number}"]
                continue
            if types or codes:
                self.note(term.name, f"icmp-type/icmp-code with protocol {protocol}", carried=False)
                return None
            if src:
                name = _unique(_safe(f"{term.name}-{protocol}"), set(self.services))
                service: dict[str, Any] = {"protocol": protocol, "source_ports": [_port(p) for p in src]}
                if dst:
                    service["ports"] = [_port(p) for p in dst]
                self.services[name] = service
                out.append(name)
            elif dst:
                out += [f"{protocol}/{_port(p)}" for p in dst]
            elif protocol == "any":
                out.append("any")
            elif protocol in AERLEON_PROTOCOLS or protocol.isdigit():
                out.append(protocol if protocol in PORT_PROTOCOL_NAMES or protocol in ("icmp", "icmpv6")
                           else f"proto/{AERLEON_PROTOCOLS.get(protocol, protocol)}")
            else:
                self.note(term.name, f"protocol {protocol}", carried=False)
                return None
        return out


def _port(ports: tuple[int, int]) -> str:
    lo, hi = ports
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _cidr_key(text: str) -> tuple[int, str]:
    return (6 if ":" in text else 4, text)


def _unsupported(term: Any) -> list[str]:
    """The term's set attributes the import does not carry (empty: none)."""
    reasons: list[str] = []
    for key, value in sorted(vars(term).items()):
        if key in _CARRIED or key.startswith("_") or any(value is v or value == v for v in _IGNORED_VALUES):
            continue
        shown = " ".join(map(str, value)) if isinstance(value, list) else str(value)
        reasons.append(f"{key.replace('_', '-')}:: {shown}".strip())
    return reasons


def _convert(name: str, targets: tuple[str, ...], terms: Iterable[Any], term_class: Any) -> ImportedFilter:
    builder = _Builder(name, getattr(term_class, "ICMP_TYPE", {}))
    position = 0
    for term in terms:
        term_name = str(term.name)
        if getattr(term, "inactive", False):
            builder.note(term_name, "inactive", carried=False)
            continue
        reasons = _unsupported(term)
        actions = [str(a) for a in term.action]
        if len(actions) != 1 or actions[0] not in ACTIONS:
            reasons.append(f"action:: {' '.join(actions) or '(none)'}")
        if reasons:
            builder.note(term_name, "; ".join(reasons), carried=False)
            continue
        services = builder.services_of(term)
        if services is None:
            continue
        position += 1
        rule: dict[str, Any] = {
            "name": _unique(_safe(term_name), builder.rule_names),
            "from": builder.side(term, term.source_address, term.source_address_exclude, "src"),
            "to": builder.side(term, term.destination_address, term.destination_address_exclude, "dst"),
            "services": services,
            "action": ACTIONS[actions[0]],
            "priority": position,
        }
        if actions[0].startswith("reject"):
            builder.note(term_name, f"action:: {actions[0]} carried as deny (microseg drops without an ICMP "
                         "unreachable or TCP reset)", carried=True)
        if term.logging and not all(str(v).lower() in ("disable", "false") for v in term.logging):
            rule["log"] = True
        if term.comment:
            rule["description"] = " ".join(" ".join(str(c).split()) for c in term.comment)
        if term.owner:
            rule["owner"] = str(term.owner)
        if isinstance(term.expiration, dt.date):
            rule["expires"] = term.expiration.isoformat()
        if term.platform or term.platform_exclude:
            builder.note(term_name, "platform::/platform-exclude:: not kept: the rule applies wherever the policy "
                         "is put", carried=True)
        builder.rules.append(rule)
    document: dict[str, Any] = {"apiVersion": API_VERSION, "defaults": {"action": "deny"}}
    if builder.groups:
        document["groups"] = builder.groups
    if builder.services:
        document["services"] = builder.services
    document["rules"] = builder.rules
    return ImportedFilter(name, targets, document, builder.findings)
