"""The owned table's fixed layout: chains, hooks, preamble, log prefixes and markers (shared by render and parse)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from orchestrator.model import AddressSet, Direction, Mode

DRIVER = "nftables"
FAMILY = "inet"
TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}\Z")  # \Z, not $: "$" also matches before a final "\n"


@dataclass(frozen=True, slots=True)
class ChainSpec:
    """One base chain of the owned table."""

    name: str
    hook: str
    direction: Direction
    interface_key: str  # "iif" / "oif": the loopback accept of the preamble


CHAINS: tuple[ChainSpec, ...] = (
    ChainSpec("ingress", "input", Direction.INGRESS, "iif"),
    ChainSpec("egress", "output", Direction.EGRESS, "oif"),
)
CHAIN_BY_NAME = {c.name: c for c in CHAINS}
CHAIN_TYPE = "filter"
CHAIN_PRIORITY = 0  # "priority filter"

LOG_PERMIT = "mseg permit "
LOG_DENY = "mseg deny "
LOG_WOULD_DENY = "mseg would-deny "
LOG_WOULD_DENY_LOGGED = "mseg would-deny+log "  # monitor mode: a deny rule that also has its log flag set

MODE_MARKERS: dict[Mode, str] = {
    Mode.ENFORCE: "microseg preamble mode=enforce",
    Mode.MONITOR: "microseg preamble mode=monitor",
}
MARKER_MODES: dict[str, Mode] = {v: k for k, v in MODE_MARKERS.items()}

COMMENT_MAX_BYTES = 128  # nft: "comment too long, 128 characters maximum allowed"

EVERYTHING: dict[int, AddressSet] = {
    4: AddressSet((ipaddress.ip_network("0.0.0.0/0"),)),
    6: AddressSet((ipaddress.ip_network("::/0"),)),
}
FAMILY_KEYWORDS: dict[int, str] = {4: "ip", 6: "ip6"}
NFPROTO_NAMES: dict[int, str] = {4: "ipv4", 6: "ipv6"}
ICMP_FAMILY: dict[int, int] = {1: 4, 58: 6}  # in an inet table `icmp type` implies `meta nfproto ipv4`, icmpv6 ipv6


def table_spec(table: str) -> str:
    """``inet microseg``: how nft names the owned table."""
    return f"{FAMILY} {table}"


def provenance_comment(names: tuple[str, ...]) -> str | None:
    """The policy rule names as an nft comment: quotes and control characters removed, at most 128 bytes."""
    text = "".join(ch for ch in ", ".join(names) if ch.isprintable() and ch not in '"\\')
    if not text:
        return None
    return text.encode()[:COMMENT_MAX_BYTES].decode("utf-8", "ignore")


def comment_names(comment: str | None) -> tuple[str, ...]:
    """Inverse of :func:`provenance_comment` (a truncated last name stays truncated)."""
    if not comment:
        return ()
    return tuple(part.strip() for part in comment.split(",") if part.strip())
