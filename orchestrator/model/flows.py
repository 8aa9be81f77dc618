"""Observed flows: the one record every flow source normalizes to, and the flow-source plugin contract.

A flow source (entry-point group ``microseg.flow_sources``) reads one documented format — AWS VPC Flow Logs,
Azure VNet/NSG flow logs, GCP VPC Flow Logs, conntrack tables, NetFlow/IPFIX — and yields :class:`FlowRecord`\\ s.
A malformed record never stops a read: the source appends a :class:`~orchestrator.model.errors.Diagnostic` naming
file and line to ``problems`` and goes on.  Sources whose format is a delimited text table may also describe it
as a :class:`TableFormat`, which the flow store then loads in bulk (the same mapping, done by the database).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import ClassVar, Literal, Protocol, runtime_checkable

from orchestrator.model.errors import Diagnostic, MicrosegError

Initiator = Literal["src", "dst"]
FLOW_ACTIONS = ("accept", "reject")


class FlowLogError(MicrosegError):
    """A flow log (file, object, export) that cannot be read at all; the message names it.  Records that cannot
    be read are not errors: they are diagnostics, and the rest is read."""


@lru_cache(maxsize=1 << 16)
def canonical_address(text: str) -> str:
    """The one spelling of an IPv4/IPv6 address (ValueError when ``text`` is none); flow data repeats its
    addresses, so the parse is cached."""
    return str(ipaddress.ip_address(text))


@dataclass(frozen=True, slots=True)
class FlowRecord:
    """One observed flow (or one aggregation window of it) as its source reported it.

    ``start``/``end``: epoch seconds.  Ports are 0 for protocols without ports.  ``action`` is ``accept`` or
    ``reject`` where the source reports one.  ``initiator`` says which end opened the connection when the
    source knows (a SYN without SYN-ACK, conntrack's original direction): ``src``, ``dst``, or None.
    ``observer`` is where it was seen (an ENI, an NSG, a host, an exporter).  ``rule`` is the enforcement rule the
    source says decided the flow, as the source names it, qualified so that one name means one rule (Azure:
    ``NSG/UserRule_NAME``, GCP: the firewall rule's name), "" where the source names none.
    """

    start: int
    end: int
    src: str
    dst: str
    protocol: int
    src_port: int = 0
    dst_port: int = 0
    packets: int = 0
    bytes: int = 0
    action: str | None = None
    initiator: Initiator | None = None
    observer: str = ""
    rule: str = ""

    def __post_init__(self) -> None:
        for name in ("src", "dst"):  # canonical text: one address, one spelling
            text = getattr(self, name)
            canonical = canonical_address(text)
            if canonical != text:
                object.__setattr__(self, name, canonical)
        if not 0 <= self.protocol <= 255:
            raise ValueError(f"protocol {self.protocol} is outside 0-255")
        if not (0 <= self.src_port <= 65535 and 0 <= self.dst_port <= 65535):
            raise ValueError(f"port {self.src_port if not 0 <= self.src_port <= 65535 else self.dst_port} is "
                             "outside 0-65535")
        if self.action is not None and self.action not in FLOW_ACTIONS:
            raise ValueError(f"action {self.action!r} is neither accept nor reject")
        if self.end < self.start:
            raise ValueError(f"the flow ends ({self.end}) before it starts ({self.start})")


@dataclass(frozen=True, slots=True)
class TableFormat:
    """A delimited text format the flow store can load in bulk: which columns (``columns``, in file order when
    the file has no header), and per :class:`FlowRecord` field a plain SQL expression over those columns.
    ``keep`` is a SQL condition selecting the rows that are flows (others, e.g. "no data" rows, are skipped)."""

    delimiter: str
    columns: tuple[str, ...]
    fields: Mapping[str, str]
    header: bool = True
    keep: str = "TRUE"
    missing: str = "-"  # the text of an absent value
    types: Mapping[str, str] = field(default_factory=dict)  # column -> SQL type (default VARCHAR)


@runtime_checkable
class FlowSource(Protocol):
    """Reads flows of one documented format from ``location`` (a file, or an URL the source understands).

    A source whose records name no rule, only the interface that logged them, where rules are attached to
    interfaces (AWS VPC Flow Logs: the ENI) says so with a class attribute ``OBSERVER_ONLY = True``: its records
    are hit evidence by evaluating them against the rules the stored plans put on that interface."""

    name: ClassVar[str]

    def read(self, location: str, problems: list[Diagnostic]) -> Iterable[FlowRecord]:
        """The records in ``location``; a malformed record is a Diagnostic (file, line) in ``problems``."""
        ...


@runtime_checkable
class TabularFlowSource(FlowSource, Protocol):
    """A flow source whose files are delimited tables the store may load in bulk."""

    def table_format(self, location: str) -> TableFormat | None:
        """The format of ``location`` (reads at most its header), or None to read it through :meth:`read`."""
        ...


@runtime_checkable
class FlowReadingDriver(Protocol):
    """A driver that can read the flows its point sees, over its own connection (e.g. the conntrack table of
    an nftables host, over the driver's SSH session): agentless discovery."""

    def read_flows(self, problems: list[Diagnostic]) -> Iterable[FlowRecord]:
        """The flows the point currently sees; an unreadable entry is a Diagnostic in ``problems``."""
        ...
