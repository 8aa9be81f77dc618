"""The owned table's fixed layout: chains, hooks, preamble, log prefixes and markers (shared by render and parse)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator, model_validator

from drivers.sshtrust import SshSettings
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


class NftSettings(SshSettings):
    """The settings of an nftables point, typed (checked when the inventory loads)."""

    family: Literal["inet"] = FAMILY
    table: str = "microseg"
    nft: str = Field(default="nft", pattern=r"^[A-Za-z0-9_./+-]+$", description="the nft binary")
    transport: Literal["ssh", "local"] = "ssh"
    netns: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    sudo: bool = False

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        if not TABLE_NAME.fullmatch(value):
            raise ValueError(f"table name {value!r}: use letters, digits and _ (at most 32), a letter first")
        return value

    @model_validator(mode="after")
    def _sudo_runs_a_fixed_nft(self) -> NftSettings:
        if self.sudo and self.nft != "nft" and not self.nft.startswith("/"):
            raise ValueError(f"with sudo, `nft` must be an absolute path (sudoers names it), not {self.nft!r}")
        return self
