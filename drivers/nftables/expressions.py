"""One nft rule's JSON expression list → one normalized Rule (pure; ValueError for what it cannot model).

The listing is untrusted input: every value is type-checked before it is used (a dict where a string belongs is
an ExpressionError, never a TypeError) and shown in messages through :func:`show` (bounded, never recursing).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from drivers.nftables import icmp
from drivers.nftables.layout import (
    EVERYTHING,
    ICMP_FAMILY,
    LOG_DENY,
    LOG_PERMIT,
    LOG_WOULD_DENY,
    LOG_WOULD_DENY_LOGGED,
    comment_names,
)
from orchestrator.model import (
    ANY_ADDRESS,
    ANY_PORTS,
    Action,
    AddressSet,
    Direction,
    IPNetwork,
    Mode,
    PortRange,
    PortSet,
    Provenance,
    Rule,
    normalize_ports,
    shown,
)

PORT_PAYLOADS = {"tcp": 6, "udp": 17, "sctp": 132}
ICMP_PAYLOADS = {"icmp": 1, "icmpv6": 58}
NFPROTO_VALUES: Mapping[str | int, int] = {"ipv4": 4, 2: 4, "ipv6": 6, 10: 6}
MATCH_OPS = frozenset({"==", "in"})
"""At most this many characters of an offending JSON value are quoted in an error message."""



def text_of(value: Any) -> str:
    """A listing field meant to be a string (a name, a family) for a message: itself, or :func:`show` of it."""
    return value if isinstance(value, str) else shown(value)


def lookup(table: Mapping[Any, int], key: Any) -> int | None:
    """``table[key]`` for a string or integer key (None otherwise: JSON objects and lists are unhashable)."""
    if isinstance(key, str) or (isinstance(key, int) and not isinstance(key, bool)):
        return table.get(key)
    return None


class ExpressionError(ValueError):
    """An expression the driver cannot model exactly; ``expr`` is the offending JSON item."""

    def __init__(self, message: str, expr: Any = None) -> None:
        super().__init__(message)
        self.expr = expr

    def describe(self) -> str:
        if self.expr is None:
            return str(self)
        return f"{self}: {shown(self.expr)}"


@dataclass
class _Match:
    """What the match expressions of one rule say, field by field (None: not matched on)."""

    family: int | None = None
    implied_family: int | None = None  # `icmp type` without a family match: nft adds `meta nfproto ipv4`
    src: AddressSet | None = None
    dst: AddressSet | None = None
    protocol: int | None = None
    src_ports: PortSet | None = None
    dst_ports: PortSet | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None

    def put(self, name: str, value: Any) -> None:
        current = getattr(self, name)
        if current is not None and current != value:
            raise ValueError(f"conflicting {name.replace('_', ' ')} matches ({current} and {value}): never matches")
        setattr(self, name, value)


def parse_rule(body: Mapping[str, Any], direction: Direction, mode: Mode) -> Rule:
    """The Rule one nft rule stands for.  Raises ExpressionError naming the offending expression."""
    match = _Match()
    prefix: str | None = None
    verdict: str | None = None
    for expr in body["expr"]:
        kind, value = single_item(expr)
        if verdict is not None:
            raise ExpressionError("statement after the verdict", expr)
        if kind == "match":
            if prefix is not None:
                raise ExpressionError("match after the log statement", expr)
            try:
                _apply_match(match, value)
            except ValueError as exc:
                raise ExpressionError(str(exc), expr) from exc
        elif kind == "counter":
            continue  # counting changes no verdict
        elif kind == "log" and prefix is None:
            prefix = log_prefix(value, expr)
        elif kind in ("accept", "drop") and value is None:
            verdict = kind
        else:
            raise ExpressionError("unsupported expression", expr)
    if verdict is None:
        raise ExpressionError("rule has no accept/drop verdict", list(body["expr"]))
    action, log = _action(verdict, prefix, mode)
    try:
        return _build(match, direction, action, log, body.get("comment"))
    except ValueError as exc:
        raise ExpressionError(str(exc), list(body["expr"])) from exc


def single_item(expr: Any) -> tuple[str, Any]:
    """The one ``{"kind": value}`` pair every nft JSON expression and listing object is."""
    if not isinstance(expr, dict) or len(expr) != 1:
        raise ExpressionError("not a single-key JSON object", expr)
    ((kind, value),) = expr.items()
    return str(kind), value


def log_prefix(value: Any, expr: Any) -> str:
    if not isinstance(value, dict) or set(value) != {"prefix"} or not isinstance(value["prefix"], str):
        raise ExpressionError("log statement with options other than a prefix", expr)
    return value["prefix"]


def _action(verdict: str, prefix: str | None, mode: Mode) -> tuple[Action, bool]:
    if verdict == "accept":
        known = {None: (Action.PERMIT, False), LOG_PERMIT: (Action.PERMIT, True)}
        if mode is Mode.MONITOR:
            known |= {LOG_WOULD_DENY: (Action.DENY, False), LOG_WOULD_DENY_LOGGED: (Action.DENY, True)}
    elif mode is Mode.ENFORCE:
        known = {None: (Action.DENY, False), LOG_DENY: (Action.DENY, True)}
    else:
        raise ExpressionError("a drop rule in a table in monitor mode", {verdict: None})
    if prefix not in known:
        raise ExpressionError(f"log prefix {prefix!r} is not one microseg writes for {verdict} in {mode.value} mode")
    return known[prefix]


def _apply_match(match: _Match, body: Any) -> None:
    if not isinstance(body, dict) or set(body) != {"op", "left", "right"}:
        raise ValueError("malformed match")
    op = body["op"]
    if not isinstance(op, str) or op not in MATCH_OPS:
        raise ValueError(f"operator {shown(op)} (microseg writes only equality / set membership)")
    kind, spec = single_item(body["left"])
    right = body["right"]
    if (kind == "payload" and isinstance(spec, dict) and set(spec) == {"protocol", "field"}
            and isinstance(spec["protocol"], str) and isinstance(spec["field"], str)):
        _payload_match(match, spec["protocol"], spec["field"], right)
    elif kind == "meta" and spec == {"key": "l4proto"}:
        match.put("protocol", _protocol(right))
    elif kind == "meta" and spec == {"key": "nfproto"}:
        family = lookup(NFPROTO_VALUES, right)
        if family is None:
            raise ValueError(f"meta nfproto {shown(right)}")
        match.put("family", family)
    else:
        raise ValueError(f"cannot model a match on {kind} {shown(spec)}")


def _payload_match(match: _Match, protocol: str, field: str, right: Any) -> None:
    if protocol in ("ip", "ip6") and field in ("saddr", "daddr"):
        version = 4 if protocol == "ip" else 6
        match.put("family", version)
        match.put("src" if field == "saddr" else "dst", _addresses(right, version))
    elif protocol == "ip" and field == "protocol":  # the IPv4 header's protocol is the l4proto of IPv4 packets
        match.put("family", 4)
        match.put("protocol", _protocol(right))
    elif protocol in PORT_PAYLOADS and field in ("sport", "dport"):
        match.put("protocol", PORT_PAYLOADS[protocol])
        match.put("src_ports" if field == "sport" else "dst_ports", _ports(right))
    elif protocol in ICMP_PAYLOADS and field in ("type", "code"):
        number = ICMP_PAYLOADS[protocol]
        match.put("protocol", number)
        # nft prints `icmp type` for both `meta nfproto ipv4 meta l4proto icmp …` (what it writes for a rule
        # without a family match) and a hand-written raw `meta l4proto icmp @th,0,8 …`; only the first is modeled.
        match.put("implied_family", ICMP_FAMILY[number])
        names = icmp.type_table(number) if field == "type" else icmp.code_table(number)
        match.put(f"icmp_{field}", _symbol(right, names, f"{protocol} {field}"))
    else:
        raise ValueError(f"cannot model a match on {protocol} {field}")


def _elements(right: Any) -> Sequence[Any]:
    if isinstance(right, dict) and set(right) == {"set"} and isinstance(right["set"], list):
        if not right["set"]:
            raise ValueError("empty set")
        return list(right["set"])
    return [right]


def _addresses(right: Any, version: int) -> AddressSet:
    nets: list[IPNetwork] = []
    for item in _elements(right):
        if isinstance(item, str):
            nets.append(ipaddress.ip_network(item))
        elif isinstance(item, dict) and set(item) == {"prefix"} and _is_prefix(item["prefix"]):
            nets.append(ipaddress.ip_network(f"{item['prefix']['addr']}/{item['prefix']['len']}"))
        elif isinstance(item, dict) and set(item) == {"range"} and _pair(item["range"], str):
            nets.extend(_address_range(item["range"][0], item["range"][1]))
        else:
            raise ValueError(f"address element {shown(item)}")
    if any(n.version != version for n in nets):
        raise ValueError(f"an IPv{10 - version} address in an IPv{version} match")
    return AddressSet.of(nets)


def _is_prefix(value: Any) -> bool:
    """``{"addr": "10.0.0.0", "len": 8}``: how nft lists a prefix."""
    return (isinstance(value, dict) and set(value) == {"addr", "len"} and isinstance(value["addr"], str)
            and isinstance(value["len"], int) and not isinstance(value["len"], bool))


def _address_range(first: str, last: str) -> list[IPNetwork]:
    low, high = ipaddress.ip_address(first), ipaddress.ip_address(last)
    if isinstance(low, ipaddress.IPv4Address) and isinstance(high, ipaddress.IPv4Address) and low <= high:
        return list(ipaddress.summarize_address_range(low, high))
    if isinstance(low, ipaddress.IPv6Address) and isinstance(high, ipaddress.IPv6Address) and low <= high:
        return list(ipaddress.summarize_address_range(low, high))
    raise ValueError(f"address range {first}-{last}")


def _pair(value: Any, kind: type) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(
        isinstance(v, kind) and not isinstance(v, bool) for v in value
    )


def _ports(right: Any) -> PortSet:
    ranges: list[PortRange] = []
    for item in _elements(right):
        if isinstance(item, int) and not isinstance(item, bool):
            ranges.append((item, item))
        elif isinstance(item, dict) and set(item) == {"range"} and _pair(item["range"], int):
            ranges.append((item["range"][0], item["range"][1]))
        else:
            raise ValueError(f"port element {shown(item)}")
    return normalize_ports(ranges)


def _protocol(right: Any) -> int:
    if isinstance(right, int) and not isinstance(right, bool) and 0 <= right <= 255:
        return right
    if isinstance(right, str) and right in icmp.PROTOCOL_NAMES:
        return icmp.PROTOCOL_NAMES[right]
    raise ValueError(f"protocol {shown(right)} (one protocol number or known name)")


def _symbol(right: Any, names: Mapping[str, int], what: str) -> int:
    if isinstance(right, int) and not isinstance(right, bool) and 0 <= right <= 255:
        return right
    if isinstance(right, str) and right in names:
        return names[right]
    raise ValueError(f"{what} {shown(right)} (one value: a rule holds one ICMP type and code)")


def _build(match: _Match, direction: Direction, action: Action, log: bool, comment: Any) -> Rule:
    family = match.implied_family if match.family is None else match.family
    if family is None:
        src = dst = ANY_ADDRESS
    else:
        src = match.src or EVERYTHING[family]
        dst = match.dst or EVERYTHING[family]
    if match.icmp_code is not None and match.icmp_type is None:
        raise ValueError("an ICMP code match without a type match")
    return Rule(
        action=action,
        direction=direction,
        protocol=match.protocol,
        src=src,
        dst=dst,
        src_ports=match.src_ports or ANY_PORTS,
        dst_ports=match.dst_ports or ANY_PORTS,
        icmp_type=match.icmp_type,
        icmp_code=match.icmp_code,
        log=log,
        provenance=Provenance(rules=comment_names(comment if isinstance(comment, str) else None)),
    )
