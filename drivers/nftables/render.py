"""Ruleset → one nft script that atomically replaces the owned table (pure; inverse of parse)."""

from __future__ import annotations

from collections.abc import Sequence

from drivers.nftables import icmp
from drivers.nftables.layout import (
    CHAINS,
    DRIVER,
    EVERYTHING,
    FAMILY_KEYWORDS,
    ICMP_FAMILY,
    LOG_DENY,
    LOG_PERMIT,
    LOG_WOULD_DENY,
    LOG_WOULD_DENY_LOGGED,
    MODE_MARKERS,
    NFPROTO_NAMES,
    ChainSpec,
    provenance_comment,
    table_spec,
)
from orchestrator.model import (
    ANY_ADDRESS,
    ANY_PORTS,
    ICMP_PROTOCOLS,
    PORT_PROTOCOLS,
    Action,
    AddressSet,
    Mode,
    Ordering,
    PermanentDriverError,
    PortSet,
    Rule,
    Ruleset,
    format_ports,
    normalize_ports,
)

INDENT = "\t"


class RenderError(PermanentDriverError):
    """The ruleset holds something this driver cannot write (a compiler bug or a wrong capability override)."""


def render_script(ruleset: Ruleset, *, table: str, chains: Sequence[ChainSpec] = CHAINS) -> tuple[str, ...]:
    """The lines of one ``nft -f`` transaction: create-if-missing, delete, then the whole table with the
    ``chains`` of the directions the point filters (a direction it leaves alone gets no chain at all)."""
    if ruleset.ordering is not Ordering.FIRST_MATCH:
        raise RenderError(
            f"nftables chains are first-match, not {ruleset.ordering.value}", point=ruleset.point, driver=DRIVER
        )
    spec = table_spec(table)
    lines = [f"add table {spec}", f"delete table {spec}", f"table {spec} {{"]
    for index, chain in enumerate(chains):
        if index:
            lines.append("")
        lines.extend(_chain_lines(ruleset, chain))
    lines.append("}")
    return tuple(lines)


def _chain_lines(ruleset: Ruleset, chain: ChainSpec) -> list[str]:
    monitor = ruleset.mode is Mode.MONITOR
    policy = "accept" if monitor or ruleset.default_action is Action.PERMIT else "drop"
    body = [f"type filter hook {chain.hook} priority filter; policy {policy};"]
    body += preamble_lines(chain, ruleset.mode, ruleset.stateful)
    for position, rule in enumerate(ruleset.for_direction(chain.direction), start=1):
        try:
            body.append(render_rule(rule, ruleset.mode))
        except ValueError as exc:
            raise RenderError(
                f"chain {chain.name}, rule {position} ({rule.service_text()} {rule.src} → {rule.dst}): {exc}",
                point=ruleset.point,
                driver=DRIVER,
            ) from exc
    if monitor and ruleset.default_action is Action.DENY:
        body.append(f'log prefix "{LOG_WOULD_DENY}"')
    return [f"{INDENT}chain {chain.name} {{", *(INDENT * 2 + line for line in body), f"{INDENT}}}"]


def preamble_lines(chain: ChainSpec, mode: Mode, stateful: bool) -> list[str]:
    """The fixed rules at the top of each chain (the parser recognizes exactly these)."""
    lines: list[str] = []
    if stateful:
        invalid = "drop" if mode is Mode.ENFORCE else f'log prefix "{LOG_WOULD_DENY}" accept'
        lines += ["ct state established,related accept", f"ct state invalid {invalid}"]
    lines.append(f'{chain.interface_key} "lo" accept comment "{MODE_MARKERS[mode]}"')
    nd_types = ", ".join(icmp.type_name(58, t) for t in icmp.ND_TYPES)
    lines.append(f"icmpv6 type {{ {nd_types} }} accept")
    return lines


def render_rule(rule: Rule, mode: Mode) -> str:
    """One normalized rule as one nft rule line.  Raises ValueError for what nft cannot hold 1:1."""
    _check_canonical(rule)
    implied = ICMP_FAMILY.get(rule.protocol or 0) if rule.icmp_type is not None else None
    family, protocol = _address_parts(rule, implied), _protocol_parts(rule)
    if family[:1] and family[0].startswith("meta nfproto") and protocol[:1] and protocol[0].startswith("meta l4"):
        # nft 1.0.6 lists `meta nfproto ipv4 meta l4proto icmp` as plain `meta l4proto icmp` (it takes the
        # family for a dependency); written after the protocol the family match stays visible.
        family, protocol = protocol, family
    parts = [*family, *protocol, "counter"]  # per-rule hit evidence (Observed.hits); it decides nothing
    if rule.action is Action.PERMIT:
        if rule.log:
            parts.append(f'log prefix "{LOG_PERMIT}"')
        parts.append("accept")
    elif mode is Mode.ENFORCE:
        if rule.log:
            parts.append(f'log prefix "{LOG_DENY}"')
        parts.append("drop")
    else:
        parts.append(f'log prefix "{LOG_WOULD_DENY_LOGGED if rule.log else LOG_WOULD_DENY}"')
        parts.append("accept")
    comment = provenance_comment(rule.provenance.rules)
    if comment:
        parts.append(f'comment "{comment}"')
    return " ".join(parts)


def _check_canonical(rule: Rule) -> None:
    """nft merges overlapping set elements: only canonical fields read back as the same rule."""
    for name, value in (("protocol", rule.protocol), ("ICMP type", rule.icmp_type), ("ICMP code", rule.icmp_code)):
        if value is not None and not 0 <= value <= 255:
            raise ValueError(f"{name} {value} is outside 0-255")
    for side in (rule.src, rule.dst):
        if AddressSet.of(side.networks) != side:
            raise ValueError(f"address set {side} is not canonical (collapsed and sorted)")
    for ports in (rule.src_ports, rule.dst_ports):
        if not ports:
            raise ValueError("an empty port set matches nothing")
        if normalize_ports(ports) != ports:
            raise ValueError(f"port set {format_ports(ports)} is not canonical (sorted and merged)")


def _address_parts(rule: Rule, implied_family: int | None) -> list[str]:
    """``ip saddr …``/``ip6 daddr …``, or ``meta nfproto`` when both sides are everything of one family."""
    if not rule.src or not rule.dst:
        raise ValueError("an empty address set matches nothing; the compiler should have dropped the rule")
    families = rule.src.families | rule.dst.families
    if len(families) > 1:
        if rule.src == ANY_ADDRESS and rule.dst == ANY_ADDRESS:
            return []
        raise ValueError("the rule mixes IPv4 and IPv6 addresses; this driver needs one family per rule")
    (version,) = families
    keyword = FAMILY_KEYWORDS[version]
    parts = [
        f"{keyword} {field} {_addresses(side)}"
        for field, side in (("saddr", rule.src), ("daddr", rule.dst))
        if side != EVERYTHING[version]
    ]
    if parts or implied_family == version:  # `icmp type` already implies meta nfproto ipv4
        return parts
    return [f"meta nfproto {NFPROTO_NAMES[version]}"]


def _family(rule: Rule) -> int | None:
    families = rule.src.families | rule.dst.families
    return next(iter(families)) if len(families) == 1 else None


def _addresses(side: AddressSet) -> str:
    items = [str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n) for n in side.networks]
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _protocol_parts(rule: Rule) -> list[str]:
    protocol = rule.protocol
    if protocol is None:
        return []
    keyword = icmp.PROTOCOL_KEYWORDS.get(protocol, str(protocol))
    if protocol in PORT_PROTOCOLS:
        parts = [
            f"{keyword} {field} {_ports(ports)}"
            for field, ports in (("sport", rule.src_ports), ("dport", rule.dst_ports))
            if ports != ANY_PORTS
        ]
        return parts or [f"meta l4proto {keyword}"]
    if protocol in ICMP_PROTOCOLS and rule.icmp_type is not None:
        if _family(rule) is None:
            version = ICMP_FAMILY[protocol]
            raise ValueError(
                f"without an address family nft's `{keyword} type` only matches IPv{version}: "
                "give the rule one family (0.0.0.0/0 or ::/0 for any)"
            )
        parts = [f"{keyword} type {icmp.type_name(protocol, rule.icmp_type)}"]
        if rule.icmp_code is not None:
            parts.append(f"{keyword} code {rule.icmp_code}")
        return parts
    return [f"meta l4proto {keyword}"]


def _ports(ports: PortSet) -> str:
    items = [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ports]
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"
