"""The abstract, label-based policy model (pydantic v2, frozen, ``extra="forbid"``).

The YAML format is documented in ``docs/policy-format.md``.  This module only
defines the shapes and the checks that need nothing but one value; the loader
(``orchestrator.policy.loader``) adds file positions, merging and cross-references.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    model_validator,
)

from orchestrator.model.rules import (
    ANY_PORTS,
    ICMP_PROTOCOLS,
    MAX_PORT,
    PORT_PROTOCOLS,
    PROTOCOL_NUMBERS,
    IPNetwork,
    Mode,
    PortSet,
    normalize_ports,
    parse_protocol,
    protocol_name,
)

API_VERSION = "microseg/v1"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
"""The name grammar, written for pydantic (Rust regex) and JSON Schema (ECMA-262), where ``$`` ends the text.
Python's ``re`` lets ``$`` match before a final newline too: validate with :func:`is_name` (``re.fullmatch``),
never ``re.match`` of this pattern."""
ANY_GROUP = "any"
DEFAULT_PRIORITY = 1000

_NAME_RE = re.compile(NAME_PATTERN)


def is_name(value: str) -> bool:
    """Whether ``value`` is a name: the whole text matches NAME_PATTERN (``"web\\n"`` is not a name)."""
    return _NAME_RE.fullmatch(value) is not None


def _check_name(value: str) -> str:
    if not is_name(value):
        raise ValueError(f"invalid name {value!r}: use letters, digits, '_', '.', '-' (no '/')")
    return value


Name = Annotated[str, AfterValidator(_check_name)]


def parse_network(value: object) -> IPNetwork:
    """A CIDR or bare address → network; host bits set is an error with a hint."""
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a CIDR string, got {type(value).__name__}")
    try:
        return ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            raise ValueError(f"invalid CIDR {value!r}: {exc}") from None
        raise ValueError(f"invalid CIDR {value!r}: host bits set (did you mean {loose}?)") from None


Network = Annotated[IPNetwork, BeforeValidator(parse_network)]


def _as_tuple(value: object) -> object:
    """Accept a scalar where a list is expected (``from: web`` == ``from: [web]``)."""
    if isinstance(value, str | int):
        return (value,)
    return value


class StrictModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


# --------------------------------------------------------------------------- selectors


class Exists(StrictModel):
    """``{exists: true}``: the label is present; ``{exists: false}``: it is absent."""

    exists: bool


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


LabelValue = Annotated[str, BeforeValidator(lambda v: str(v) if _is_number(v) else v)]


class Not(StrictModel):
    """``{not: v}`` / ``{not: [v1, v2]}``: label absent or none of these values."""

    not_: tuple[LabelValue, ...] = Field(alias="not")

    @model_validator(mode="before")
    @classmethod
    def _scalar(cls, data: Any) -> Any:
        if isinstance(data, dict) and (isinstance(data.get("not"), str) or _is_number(data.get("not"))):
            return {**data, "not": (data["not"],)}
        return data

LabelMatch: TypeAlias = LabelValue | tuple[LabelValue, ...] | Exists | Not


class Selector(RootModel[dict[str, LabelMatch]]):
    """AND of per-label conditions on a workload's labels."""

    model_config = ConfigDict(frozen=True)

    @model_validator(mode="after")
    def _not_empty(self) -> Selector:
        if not self.root:
            raise ValueError("a selector needs at least one label condition (use group 'any' for everything)")
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, cond in self.root.items():
            value = labels.get(key)
            if isinstance(cond, str):
                ok = value == cond
            elif isinstance(cond, tuple):
                ok = value in cond
            elif isinstance(cond, Exists):
                ok = (value is not None) == cond.exists
            else:
                ok = value is None or value not in cond.not_
            if not ok:
                return False
        return True

    def describe(self) -> str:
        parts = []
        for key, cond in sorted(self.root.items()):
            if isinstance(cond, str):
                parts.append(f"{key}={cond}")
            elif isinstance(cond, tuple):
                parts.append(f"{key} in ({','.join(cond)})")
            elif isinstance(cond, Exists):
                parts.append(key if cond.exists else f"!{key}")
            else:
                parts.append(f"{key} not in ({','.join(cond.not_)})")
        return " and ".join(parts)


# --------------------------------------------------------------------------- groups


class ExternalName(StrEnum):
    INTERNET = "internet"
    ANY = "any"
    PRIVATE = "private"


PRIVATE_V4 = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
PRIVATE_V6 = ("fc00::/7",)
NOT_INTERNET = (
    *PRIVATE_V4,
    *PRIVATE_V6,
    "0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "::/8", "fe80::/10", "ff00::/8", "2001:db8::/32",
)


class Group(StrictModel):
    """Exactly one of ``selector``, ``cidrs``, ``external``, ``groups``; optional ``except``."""

    selector: Selector | None = None
    cidrs: tuple[Network, ...] | None = None
    external: ExternalName | None = None
    groups: Annotated[tuple[Name, ...] | None, BeforeValidator(_as_tuple)] = None
    except_: tuple[Network, ...] = Field(default=(), alias="except")
    description: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Group:
        kinds = [k for k in ("selector", "cidrs", "external", "groups") if getattr(self, k) is not None]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            raise ValueError(f"a group needs exactly one of selector, cidrs, external, groups (found: {found})")
        return self

    @property
    def kind(self) -> str:
        for k in ("selector", "cidrs", "external", "groups"):
            if getattr(self, k) is not None:
                return k
        raise AssertionError("validated group without kind")


# --------------------------------------------------------------------------- services


def _parse_port_item(value: object) -> tuple[int, int]:
    if isinstance(value, bool):
        raise ValueError("a port must be a number or 'lo-hi'")
    if isinstance(value, int):
        lo = hi = value
    elif isinstance(value, str):
        text = value.strip()
        lo_s, sep, hi_s = text.partition("-")
        if not lo_s.strip().isdigit() or (sep and not hi_s.strip().isdigit()):
            raise ValueError(f"invalid port {value!r}: use a number or 'lo-hi'")
        lo, hi = int(lo_s), int(hi_s) if sep else int(lo_s)
    else:
        raise ValueError(f"invalid port {value!r}")
    if not (0 <= lo <= MAX_PORT and 0 <= hi <= MAX_PORT):
        raise ValueError(f"port {value!r} is outside 0-{MAX_PORT}")
    if lo > hi:
        raise ValueError(f"inverted port range {value!r}: {lo} > {hi}")
    return (lo, hi)


PortItem = Annotated[tuple[int, int], BeforeValidator(_parse_port_item)]


def _parse_protocol_field(value: object) -> int | None:
    """``protocol:`` of a service: None (already parsed ``any``), a name or a number; never a bool or a list."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"invalid protocol {value!r}: use a name (tcp, udp, icmp, ...), a number 0-255 or 'any'")
    return parse_protocol(value)


class Service(StrictModel):
    """A protocol with optional ports (tcp/udp/sctp) or ICMP type/code."""

    protocol: Annotated[int | None, BeforeValidator(_parse_protocol_field)]
    ports: Annotated[tuple[PortItem, ...] | None, BeforeValidator(_as_tuple)] = None
    source_ports: Annotated[tuple[PortItem, ...] | None, BeforeValidator(_as_tuple)] = None
    type: int | None = Field(default=None, ge=0, le=255)
    code: int | None = Field(default=None, ge=0, le=255)
    description: str | None = None

    @model_validator(mode="after")
    def _fits_protocol(self) -> Service:
        name = protocol_name(self.protocol)
        if (self.ports or self.source_ports) and self.protocol not in PORT_PROTOCOLS:
            raise ValueError(f"ports need protocol tcp, udp or sctp, not {name}")
        if (self.type is not None or self.code is not None) and self.protocol not in ICMP_PROTOCOLS:
            raise ValueError(f"type/code need protocol icmp or icmpv6, not {name}")
        if self.code is not None and self.type is None:
            raise ValueError("an ICMP code needs an ICMP type")
        return self

    @property
    def dst_ports(self) -> PortSet:
        return normalize_ports(self.ports) if self.ports else ANY_PORTS

    @property
    def src_ports(self) -> PortSet:
        return normalize_ports(self.source_ports) if self.source_ports else ANY_PORTS


def parse_service_spec(text: str) -> Service:
    """An inline service: ``tcp/443``, ``udp/1000-2000``, ``icmp/3/4``, ``proto/47``, ``47``, ``any``.

    Raises ValueError with a message that says what is wrong.
    """
    try:
        return _service_from_spec(text)
    except ValidationError as exc:  # a port or type out of range: one readable line, not pydantic's report
        first = exc.errors()[0]
        reason = str(first["msg"]).removeprefix("Value error, ")
        where = ".".join(str(part) for part in first["loc"][:1])
        if first["type"] != "value_error" and where:
            reason = f"{where}: {reason[:1].lower()}{reason[1:]}"
        raise ValueError(f"invalid service {text!r}: {reason}") from None


def _service_from_spec(text: str) -> Service:
    parts = [p.strip() for p in text.strip().split("/")]
    if parts[0].lower() == "proto" and len(parts) == 2:
        parts = parts[1:]
    proto = parse_protocol(parts[0])
    rest = parts[1:]
    if not rest or (len(rest) == 1 and rest[0].lower() == "any"):
        return Service(protocol=proto)
    if proto in PORT_PROTOCOLS:
        if len(rest) != 1:
            raise ValueError(f"invalid service {text!r}: use tcp/PORT or tcp/LO-HI")
        return Service.model_validate({"protocol": proto, "ports": rest[0].split(",")})
    if proto in ICMP_PROTOCOLS:
        if len(rest) > 2 or not all(p.isdigit() for p in rest):
            raise ValueError(f"invalid service {text!r}: use icmp/TYPE or icmp/TYPE/CODE")
        return Service(protocol=proto, type=int(rest[0]), code=int(rest[1]) if len(rest) == 2 else None)
    raise ValueError(f"invalid service {text!r}: {protocol_name(proto)} has no ports or types")


def is_inline_service(ref: str) -> bool:
    """``tcp/443``, ``any``, ``47`` and bare protocol names such as ``tcp`` are inline specs, not names."""
    return "/" in ref or ref.lower() in ("any", *PROTOCOL_NUMBERS) or ref.isdigit()


# --------------------------------------------------------------------------- rules and policy


class RuleAction(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


class PolicyRule(StrictModel):
    """One abstract rule: from groups, to groups, over services, allow or deny."""

    name: Name
    from_: Annotated[tuple[Name, ...], BeforeValidator(_as_tuple)] = Field(alias="from", min_length=1)
    to: Annotated[tuple[Name, ...], BeforeValidator(_as_tuple)] = Field(min_length=1)
    services: Annotated[tuple[str, ...], BeforeValidator(_as_tuple)] = Field(min_length=1)
    action: RuleAction
    priority: int = Field(default=DEFAULT_PRIORITY, ge=0, le=65535)
    log: bool = False
    description: str | None = None
    owner: str | None = None
    ticket: str | None = None
    expires: date | None = None
    allow_empty: bool | None = None
    mode: Mode | None = None  # monitor: a deny rule that logs what it would deny and lets it through

    @model_validator(mode="after")
    def _monitor_denies_only(self) -> PolicyRule:
        if self.mode is Mode.MONITOR and self.action is RuleAction.ALLOW:
            raise ValueError("mode: monitor applies to deny rules (an allow rule never blocks anything)")
        return self


class Defaults(StrictModel):
    action: RuleAction = RuleAction.DENY
    mode: Mode = Mode.ENFORCE
    allow_empty_groups: bool = False
    expiry_warning_days: int = Field(default=14, ge=0)


class PolicyFile(StrictModel):
    """One YAML file of a policy directory, as written."""

    api_version: Literal["microseg/v1"] = Field(alias="apiVersion")
    description: str | None = None
    defaults: Defaults | None = None
    # the mode of this file's deny rules (a rule set watched or enforced together); a rule's own mode wins
    mode: Mode | None = None
    groups: dict[Name, Group] = Field(default_factory=dict)
    services: dict[Name, Service] = Field(default_factory=dict)
    service_groups: dict[Name, Annotated[tuple[str, ...], BeforeValidator(_as_tuple)]] = Field(default_factory=dict)
    rules: tuple[PolicyRule, ...] = ()


class Policy(StrictModel):
    """A whole policy: the merge of every file of a policy directory."""

    defaults: Defaults = Field(default_factory=Defaults)
    groups: dict[Name, Group] = Field(default_factory=dict)
    services: dict[Name, Service] = Field(default_factory=dict)
    service_groups: dict[Name, tuple[str, ...]] = Field(default_factory=dict)
    rules: tuple[PolicyRule, ...] = ()

    def ordered_rules(self) -> tuple[PolicyRule, ...]:
        """Evaluation order: priority, then deny before allow, then written order."""
        indexed = sorted(
            enumerate(self.rules),
            key=lambda item: (item[1].priority, 0 if item[1].action is RuleAction.DENY else 1, item[0]),
        )
        return tuple(rule for _, rule in indexed)

    def active_rules(self, today: date) -> tuple[PolicyRule, ...]:
        """Ordered rules that have not expired (a rule expiring today is still active)."""
        return tuple(r for r in self.ordered_rules() if r.expires is None or r.expires >= today)
