"""One ACL entry as the switch drivers see it, vendor-neutral: what every platform's parser produces and
every renderer consumes.

An :class:`Ace` is one sequence-numbered entry (or Junos term) of one address
family: one prefix per side on the Cisco-like platforms, several on Junos (a
term's ``source-address`` list: ``more_src``/``more_dst``), port sets as the
platform writes them — the shape a point's capabilities ask the compiler for,
so a normalized :class:`~orchestrator.model.rules.Rule` maps to exactly one ACE
and back.  What a
platform can write that this model cannot express (object-groups,
time-ranges, TCP flags other than ``established``, TTL, fragments, named port lists
with several ports, MAC entries …) is an :class:`Unsupported` entry: kept
with its raw text and the reason, never dropped and never misread.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from orchestrator.model import (
    ANY_PORTS,
    NAME_PATTERN,
    Action,
    AddressSet,
    Direction,
    IPNetwork,
    PortSet,
    Rule,
    TcpFlags,
    format_ports,
    parse_ports,
)

ANY4 = ipaddress.ip_network("0.0.0.0/0")
ANY6 = ipaddress.ip_network("::/0")


def any_network(family: int) -> IPNetwork:
    return ANY4 if family == 4 else ANY6


@dataclass(frozen=True, slots=True)
class Ace:
    """A modelled ACL entry.  ``protocol`` None is ``ip``/``ipv6`` (any); ports are normalized port sets
    (``ANY_PORTS`` for any; several ranges only where the platform writes ``eq 80 443`` in one entry)."""

    action: Action
    protocol: int | None
    src: IPNetwork
    dst: IPNetwork
    src_ports: PortSet = ANY_PORTS
    dst_ports: PortSet = ANY_PORTS
    icmp_type: int | None = None
    icmp_code: int | None = None
    log: bool = False
    more_src: tuple[IPNetwork, ...] = ()  # further prefixes of one entry (a Junos term); canonical with ``src``
    more_dst: tuple[IPNetwork, ...] = ()
    tcp_flags: TcpFlags | None = None  # ``established`` / Junos ``tcp-established``

    def __post_init__(self) -> None:
        family = self.src.version
        if self.dst.version != family or ((self.more_src or self.more_dst)
                                          and any(n.version != family for n in (*self.more_src, *self.more_dst))):
            raise ValueError(f"an ACE is one address family: {self.sources} and {self.destinations}")

    @property
    def family(self) -> int:
        return self.src.version

    @property
    def sources(self) -> tuple[IPNetwork, ...]:
        return (self.src, *self.more_src)

    @property
    def destinations(self) -> tuple[IPNetwork, ...]:
        return (self.dst, *self.more_dst)

    @property
    def single(self) -> bool:
        """One prefix per side: what a Cisco-like entry can hold."""
        return not (self.more_src or self.more_dst)

    def is_catch_all(self) -> bool:
        """``permit|deny ip any any`` (no log): what a platform writes as the ACL's explicit default."""
        return (self.protocol is None and self.src.prefixlen == 0 and self.dst.prefixlen == 0
                and not self.log and self.single)

    def to_rule(self, direction: Direction) -> Rule:
        return Rule(
            action=self.action,
            direction=direction,
            protocol=self.protocol,
            src=AddressSet((self.src,)) if not self.more_src else AddressSet.of(self.sources),
            dst=AddressSet((self.dst,)) if not self.more_dst else AddressSet.of(self.destinations),
            src_ports=self.src_ports,
            dst_ports=self.dst_ports,
            icmp_type=self.icmp_type,
            icmp_code=self.icmp_code,
            log=self.log,
            tcp_flags=self.tcp_flags,
        )

    @classmethod
    def from_rule(cls, rule: Rule) -> Ace:
        """The ACE for a rule already split to the point's shape (one address family; one prefix per side on the
        Cisco-like platforms — rendering refuses more there)."""
        src, dst = rule.src.networks, rule.dst.networks
        if not src or not dst:
            raise ValueError(f"an ACE needs a prefix on each side, not {rule.src} → {rule.dst}")
        return cls(rule.action, rule.protocol, src[0], dst[0], rule.src_ports, rule.dst_ports, rule.icmp_type,
                   rule.icmp_code, rule.log, src[1:], dst[1:], rule.tcp_flags)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "action": self.action.value, "protocol": self.protocol, "src": str(self.src), "dst": str(self.dst),
            "src_ports": format_ports(self.src_ports), "dst_ports": format_ports(self.dst_ports),
            "icmp_type": self.icmp_type, "icmp_code": self.icmp_code, "log": self.log,
        }
        if self.more_src:  # only when present: snapshots of one-prefix entries stay as they were
            out["more_src"] = [str(n) for n in self.more_src]
        if self.more_dst:
            out["more_dst"] = [str(n) for n in self.more_dst]
        if self.tcp_flags is not None:
            out["tcp_flags"] = self.tcp_flags.value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ace:
        return cls(
            action=Action(data["action"]), protocol=data["protocol"],
            src=ipaddress.ip_network(data["src"]), dst=ipaddress.ip_network(data["dst"]),
            src_ports=parse_ports(data.get("src_ports", "any")), dst_ports=parse_ports(data.get("dst_ports", "any")),
            icmp_type=data.get("icmp_type"), icmp_code=data.get("icmp_code"), log=bool(data.get("log", False)),
            more_src=tuple(ipaddress.ip_network(n) for n in data.get("more_src", ())),
            more_dst=tuple(ipaddress.ip_network(n) for n in data.get("more_dst", ())),
            tcp_flags=TcpFlags(data["tcp_flags"]) if data.get("tcp_flags") else None,
        )


@dataclass(frozen=True, slots=True)
class Unsupported:
    """An entry the model cannot express: its raw text and why (``object-group``, ``established`` …)."""

    text: str
    reason: str


@dataclass(frozen=True, slots=True)
class Remark:
    """A remark line of a numbered ACL (NX-OS, EOS list it with a sequence number of its own): no packet matches
    it; microseg writes one before each run of entries of one policy rule (see :func:`remark_lines`)."""

    text: str


AclLine = Ace | Remark  # what a numbered owned ACL holds, in order


REMARK_PREFIX = "mseg: "
REMARK_MORE = "mseg+ "  # a further line of the same remark: the names that did not fit on the line before
REMARK_LENGTH = 100  # IOS, NX-OS and EOS take a remark of up to 100 characters


NO_RULE_REMARK = REMARK_PREFIX + "-"
_RULE_NAME = re.compile(NAME_PATTERN)  # a policy rule name (fullmatch only: see NAME_PATTERN)


def remark_lines(rules: tuple[str, ...], kind: str | None = None) -> tuple[str, ...]:
    """The remark microseg writes before the entries of policy rules ``rules`` (a run the optimizer merged may
    stand for several), one or more lines of at most 100 characters: ``mseg: web-to-db``, ``mseg: dns (return)``
    for replies the compiler lets back, ``mseg: web,app (carve-out)``; names that do not fit go on further lines
    ``mseg+ a,b``, right after it.  A name too long for a line of its own is cut and marked ``~`` (read back, it
    names nothing; the kind stays).  (): no rule."""
    tail = f" ({kind})" if kind else ""
    lines: list[str] = []
    names: list[str] = []
    for name in rules:
        prefix = REMARK_MORE if lines else REMARK_PREFIX
        if names and len(prefix + ",".join([*names, name]) + ("" if lines else tail)) > REMARK_LENGTH:
            lines.append(prefix + ",".join(names) + ("" if lines else tail))
            names = []
        names.append(name)
    if names:
        lines.append((REMARK_MORE if lines else REMARK_PREFIX) + ",".join(names) + ("" if lines else tail))
    if len(lines[0] if lines else "") > REMARK_LENGTH:  # one name too long for a line of its own: cut, kind kept
        lines[0] = lines[0][:REMARK_LENGTH - len(tail) - 1] + "~" + tail
    return tuple(line if len(line) <= REMARK_LENGTH else line[:REMARK_LENGTH - 1] + "~" for line in lines)


def remark_rules(text: str) -> tuple[str, ...]:
    """The policy rule names one line of a remark microseg wrote names (``remark_lines`` read back); () for any
    other line (and for ``mseg: -``, which marks entries of no one policy rule: a default, a cover deny)."""
    for prefix in (REMARK_PREFIX, REMARK_MORE):
        if text.startswith(prefix):
            names = text[len(prefix):].split(" ", 1)[0]
            return tuple(n for n in names.split(",") if _RULE_NAME.fullmatch(n))
    return ()


def remark_continues(text: str) -> bool:
    """Whether a remark line continues the one before it (``mseg+ …``)."""
    return text.startswith(REMARK_MORE)


def remark_kind(text: str) -> str | None:
    """``"return"`` or ``"carve-out"`` when a remark microseg wrote says its entries are derived; else None."""
    if not text.startswith(REMARK_PREFIX):
        return None
    tail = text[len(REMARK_PREFIX):].partition(" ")[2]
    return tail[1:-1] if tail in ("(return)", "(carve-out)") else None


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of an ACL in evaluation order: a sequence number (or a Junos term name) and what it holds."""

    seq: int | str
    body: Ace | Unsupported | Remark
    matches: int | None = field(default=None, compare=False)  # the hit counter the listing shows, if any
    # where the platform keeps the entry's counter when it is read apart from the entry (Junos ``then count C``:
    # the counter C, read with ``show firewall filter``); only while reading, never stored
    counter: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        body = self.body
        out: dict[str, Any] = {"seq": self.seq, "ace": body.to_dict()} if isinstance(body, Ace) else \
            {"seq": self.seq, "remark": body.text} if isinstance(body, Remark) else \
            {"seq": self.seq, "unsupported": body.text, "reason": body.reason}
        if self.matches is not None:  # evidence, not state: left out of fingerprints (see without_counters)
            out["matches"] = self.matches
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Entry:
        matches = data.get("matches")
        if "ace" in data:
            return cls(data["seq"], Ace.from_dict(data["ace"]), matches)
        if "remark" in data:
            return cls(data["seq"], Remark(data["remark"]), matches)
        return cls(data["seq"], Unsupported(data["unsupported"], data["reason"]), matches)


@dataclass(frozen=True, slots=True)
class Acl:
    """One named ACL / firewall filter as read from the device (``family`` 4, 6, or 0 for MAC/other)."""

    name: str
    family: int
    entries: tuple[Entry, ...] = ()
    kind: str = "extended"  # "extended", "standard", "mac" … as the platform calls it
    remarks: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "kind": self.kind,
                "entries": [e.to_dict() for e in self.entries], "remarks": list(self.remarks)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Acl:
        return cls(data["name"], int(data["family"]), tuple(Entry.from_dict(e) for e in data["entries"]),
                   data.get("kind", "extended"), tuple(data.get("remarks", ())))


@dataclass(frozen=True, slots=True, order=True)
class Binding:
    """An ACL bound to an interface (or Junos ``irb.100``) in the device's direction ``in`` / ``out``."""

    interface: str
    family: int
    direction: str  # "in" | "out" — the device's own word, relative to the interface
    acl: str

    def to_dict(self) -> dict[str, Any]:
        return {"interface": self.interface, "family": self.family, "direction": self.direction, "acl": self.acl}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Binding:
        return cls(data["interface"], int(data["family"]), data["direction"], data["acl"])


@dataclass(frozen=True, slots=True)
class Unread:
    """A line of a device's output the parser could not read, and why.

    ``acl`` names the access list the line belongs to (None: outside any list, e.g. a preamble or a block of a
    list kind nobody models); ``interface`` the interface section of a binding line.  Whether it matters is
    decided by ownership, not by the parser: inside an owned ACL or binding it fails the fetch closed, anywhere
    else it is listed as unmanaged.
    """

    command: str
    line_no: int
    text: str
    reason: str
    acl: str | None = None
    seq: int | None = None
    interface: str | None = None

    def where(self) -> str:
        return f"`{self.command}` line {self.line_no}" if self.command else f"line {self.line_no}"

    def describe(self) -> str:
        return f"{self.where()}: {self.reason}: {self.text!r}"


@dataclass(frozen=True, slots=True)
class DeviceAcls:
    """Everything a parser read from one device: its ACLs (all of them), the interface bindings, and the lines
    it could not read (see :class:`Unread`)."""

    acls: tuple[Acl, ...] = ()
    bindings: tuple[Binding, ...] = field(default=())
    unread: tuple[Unread, ...] = ()

    def acl(self, name: str) -> Acl | None:
        return next((a for a in self.acls if a.name == name), None)
