"""The driver contract: what every enforcement-point driver implements, and the values it trades with the core.

A driver is a class registered under the entry-point group
``microseg.drivers`` (see :mod:`orchestrator.engine.registry`).  The core owns this
contract (dependency inversion): it never imports a concrete driver, and a
driver imports only the public face :mod:`orchestrator.model` (and, for a
workload source, :mod:`orchestrator.inventory`).

The lifecycle follows napalm's (load → compare → commit → confirm/rollback)::

    fetch()        -> Snapshot       I/O: raw native state of the OWNED scope (plus what else it saw)
    normalize(s)   -> Observed       pure: raw → normalized Ruleset + unmanaged items; unknown syntax
                                     raises ParseError (fail closed)
    render(req)    -> NativeChange   pure: the exact script / commands / API calls apply will send
    checkpoint()   -> Checkpoint     I/O: a restorable copy of the owned scope
    apply(change)  -> ApplyReport    I/O
    rollback(cp)   -> None           I/O, idempotent
    close()        -> None           I/O: drop the session (safe to call twice)

Constructors do no I/O.  Foreign exceptions are translated once, inside the
driver, into :class:`~orchestrator.model.errors.TransientDriverError` (retried) or
:class:`~orchestrator.model.errors.PermanentDriverError`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork

from orchestrator.model.capabilities import Capabilities
from orchestrator.model.rules import AddressSet, Direction, Rule, Ruleset


def canonical_json(value: Any) -> str:
    """Deterministic JSON (sorted keys, no whitespace): what fingerprints are computed over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint(value: Any) -> str:
    """``sha256:<hex>`` of the canonical JSON of ``value``."""
    return "sha256:" + hashlib.sha256(canonical_json(value).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Connection:
    """How to reach a point: the Nornir host's connection fields.  Secrets are never logged or stored."""

    hostname: str
    port: int | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    platform: str | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PointContext:
    """Everything a driver instance needs about its one enforcement point."""

    name: str
    driver: str
    connection: Connection
    settings: Mapping[str, Any] = field(default_factory=dict)
    timeout: float = 10.0
    members: AddressSet = field(default_factory=AddressSet)
    """The protected addresses a rule of a ``scope_implicit`` platform (AWS SG) applies to: such a driver's
    native rules name only the peer, and ``normalize`` puts these back as the protected side."""
    directions: frozenset[Direction] = frozenset({Direction.INGRESS, Direction.EGRESS})
    """The directions the point filters (inventory ``directions``): a driver owns nothing for the others."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The raw native state a driver fetched.

    ``native`` is JSON-serializable and complete enough for ``normalize``;
    ``stable`` is the part the fingerprint covers (drivers leave out volatile
    fields such as counters and handles; defaults to ``native``).
    """

    point: str
    driver: str
    native: Any
    stable: Any = None

    def fingerprint(self) -> str:
        return fingerprint(self.native if self.stable is None else self.stable)


@dataclass(frozen=True, slots=True)
class Unmanaged:
    """Something the driver saw beside its owned scope and will never touch."""

    kind: str  # e.g. "table", "chain", "acl", "security-group"
    name: str
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "detail": self.detail}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Unmanaged:
        return cls(str(data["kind"]), str(data["name"]), str(data.get("detail", "")))


@dataclass(frozen=True, slots=True)
class Observed:
    """The normalized actual state of a point: its owned ruleset plus what it does not own.

    ``hits``: where the platform counts per rule (nftables ``counter``, the match counts IOS, NX-OS and EOS
    print beside each ACL entry), the packets each rule of ``ruleset``
    matched so far, in the same order (None for a rule without a counter); empty when the driver reads none.
    ``counter_epoch``: changes whenever the counters start over even if they did not go down (nftables: the
    table's handle — every apply rewrites the table); empty where only a lower count tells a restart.
    ``log_names``: where the platform's flow logs name the rule that decided a flow (Azure NSG, GCP firewall
    rules), the names they give each rule of ``ruleset``, in the same order, qualified as the flow sources write
    :attr:`FlowRecord.rule <orchestrator.model.flows.FlowRecord.rule>`; empty when the logs name none.
    ``log_observers``: where the flow logs name no rule but the interface that logged each flow (AWS VPC Flow
    Logs: the ENI, as :attr:`FlowRecord.observer <orchestrator.model.flows.FlowRecord.observer>`), the interfaces
    that carry the point's rules, each with its addresses: a flow logged there is evaluated against the rules.
    Counters, names and observers are evidence, never state: they take no part in diffs, fingerprints or
    equality."""

    ruleset: Ruleset
    unmanaged: tuple[Unmanaged, ...] = ()
    hits: tuple[int | None, ...] = field(default=(), compare=False)
    counter_epoch: str = field(default="", compare=False)
    log_names: tuple[tuple[str, ...], ...] = field(default=(), compare=False)
    log_observers: tuple[tuple[str, tuple[str, ...]], ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class RenderRequest:
    """What ``render`` turns into a native change: the intended ruleset against the observed one.

    ``added`` / ``removed`` are the normalized diff (drivers that edit in
    place use them; drivers that replace atomically may render ``intended``
    whole).
    """

    point: str
    intended: Ruleset
    actual: Ruleset
    snapshot: Snapshot
    added: tuple[Rule, ...] = ()
    removed: tuple[Rule, ...] = ()


@dataclass(frozen=True, slots=True)
class NativeChange:
    """The exact change ``apply`` will send, as the operator reviews it."""

    point: str
    driver: str
    format: str  # "nft-script", "cli", "api-calls" …
    commands: tuple[str, ...]
    mutating_calls: int = 1

    @property
    def empty(self) -> bool:
        return not self.commands

    def text(self) -> str:
        return "\n".join(self.commands)

    def to_dict(self) -> dict[str, Any]:
        return {
            "point": self.point,
            "driver": self.driver,
            "format": self.format,
            "commands": list(self.commands),
            "mutating_calls": self.mutating_calls,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NativeChange:
        return cls(
            point=str(data["point"]),
            driver=str(data["driver"]),
            format=str(data["format"]),
            commands=tuple(str(c) for c in data["commands"]),
            mutating_calls=int(data.get("mutating_calls", 1)),
        )


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A restorable copy of a point's owned scope, taken just before a change."""

    point: str
    driver: str
    native: Any
    fingerprint: str

    def to_dict(self) -> dict[str, Any]:
        return {"point": self.point, "driver": self.driver, "native": self.native, "fingerprint": self.fingerprint}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Checkpoint:
        return cls(str(data["point"]), str(data["driver"]), data["native"], str(data["fingerprint"]))


@dataclass(frozen=True, slots=True)
class ApplyReport:
    """What ``apply`` did: calls made, lines sent, how long it took, what the point answered."""

    point: str
    mutating_calls: int
    lines_sent: int
    seconds: float
    output: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ApplyReport:
        return cls(str(data["point"]), int(data["mutating_calls"]), int(data["lines_sent"]), float(data["seconds"]),
                   str(data.get("output") or ""))

    def to_dict(self) -> dict[str, Any]:
        return {
            "point": self.point,
            "mutating_calls": self.mutating_calls,
            "lines_sent": self.lines_sent,
            "seconds": round(self.seconds, 6),
            "output": self.output,
        }


class DriverSettings(BaseModel):
    """Base of a driver's ``settings_model``: the inventory's ``data.microseg.settings`` of one point, typed.

    A driver class may declare ``settings_model`` (a subclass of this); the engine then validates every
    point's settings with it when the inventory loads, so a wrong value is an error with ``file:line``
    before any plan, never a traceback at run time.  Unknown keys are refused (a misspelt setting must not
    be silently ignored).  The fields here are the ones the engine itself reads for every driver.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    management_ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(
        default_factory=lambda: [22], description="TCP ports the lockout guard keeps open from `management`")
    management_targets: list[IPvAnyNetwork] | None = Field(
        default=None, description="the point's own addresses the management session crosses (switches)")


@runtime_checkable
class Driver(Protocol):
    """One enforcement point's driver instance (created per point and run; no I/O in ``__init__``)."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def fetch(self) -> Snapshot: ...

    def normalize(self, snapshot: Snapshot) -> Observed: ...

    def render(self, request: RenderRequest) -> NativeChange: ...

    def checkpoint(self) -> Checkpoint: ...

    def apply(self, change: NativeChange) -> ApplyReport: ...

    def rollback(self, checkpoint: Checkpoint) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class ConfirmingDriver(Protocol):
    """A driver that pushes under an auto-revert timer (commit confirmed, session commit timer, revert timer).

    ``apply`` leaves the change pending; the executor calls ``confirm`` only after verification
    succeeded, so a session lost before that lets the device revert by itself.  ``rollback`` settles a
    pending change itself.
    """

    def confirm(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Existing:
    """Enforcement already in force on a point that microseg does not own — what ``microseg adopt`` proposes
    to take over.

    ``ruleset`` is what it decides, per direction the point filters, first-match with its default;
    ``origins[i]`` says where ``ruleset.rules[i]`` comes from on the device (``ACL WEB-IN 20 on Vlan301 out``);
    ``unreadable`` the entries that could not be read as rules (with the reason) — left out of ``ruleset``,
    so no proposal can be proven equivalent while there are any.
    """

    ruleset: Ruleset
    origins: tuple[str, ...]
    unreadable: tuple[str, ...] = ()


@runtime_checkable
class AnnotatingDriver(Protocol):
    """A driver that writes annotations beside its entries (remarks naming the policy rule of each run).

    ``annotate`` is asked only when the point's rules are in sync: the change that brings only the annotations up
    to date, touching no entry (empty when they are right; an ACL where that would move an entry is left to its
    next rule change).  Annotations decide no packet, so such a change never alters what the point permits; the
    transaction verifies the annotations of such a change too and restores its point by the raw state alone."""

    def annotate(self, request: RenderRequest) -> NativeChange: ...


@runtime_checkable
class AdoptingDriver(Protocol):
    """A driver that can read a point's existing, foreign enforcement (read-only)."""

    def existing(self) -> Existing: ...


class DriverFactory(Protocol):
    """A driver class: ``capabilities`` readable without instantiating, and a constructor taking a context.

    It may also declare ``settings_model: ClassVar[type[DriverSettings]]`` (see :class:`DriverSettings`).
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def __call__(self, context: PointContext) -> Driver: ...


DRIVER_METHODS: tuple[str, ...] = ("fetch", "normalize", "render", "checkpoint", "apply", "rollback", "close")
"""The methods the contract test suite checks on every driver."""
