"""The settings of one GCP firewall point, validated without I/O, and the names of the rules it owns."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from drivers.endpoints import cleartext_origin
from orchestrator.model import Action, Direction, PermanentDriverError

DRIVER = "gcp_firewall"
DEFAULT_ENDPOINT = "https://compute.googleapis.com"
DEFAULT_RULE_PRIORITY = 65534
"""microseg's default-action rules: just above the implied rules (65535), below every other owned rule."""
GCP_DEFAULT_PRIORITY = 1000  # what the API assumes when a rule has no priority
MAX_PRIORITY = DEFAULT_RULE_PRIORITY - 1  # the last priority of the band the policy rules live in
NAME_MAX = 63
# Whole-value patterns end in \Z, not $ ("$" also matches before a final "\n").
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?\Z")
DIRECTION_LETTER: Mapping[Direction, str] = {Direction.INGRESS: "i", Direction.EGRESS: "e"}
LETTER_DIRECTION: Mapping[str, Direction] = {v: k for k, v in DIRECTION_LETTER.items()}
DEFAULT_RULES: Mapping[str, tuple[Direction, Action]] = {
    "deny-egress": (Direction.EGRESS, Action.DENY),  # default deny: GCP's implied egress rule allows
    "allow-ingress": (Direction.INGRESS, Action.PERMIT),  # default permit: GCP's implied ingress rule denies
    "allow-egress": (Direction.EGRESS, Action.PERMIT),  # monitor mode only: egress let through, logged
}
STEM_MAX = NAME_MAX - len("allow-ingress-6")
BOTH_DIRECTIONS: frozenset[Direction] = frozenset(Direction)
NETWORK_TAIL = re.compile(r"projects/[^/]+/global/networks/[^/]+\Z")


@dataclass(frozen=True, slots=True)
class OwnedName:
    """What an owned rule's name says: a policy rule (direction, number, chunk) or a default rule (kind, family)."""

    direction: Direction
    number: int = 0
    chunk: int = 1
    default: str | None = None
    family: int = 0


@dataclass(frozen=True, slots=True)
class GcpSettings:
    """One point's project, network, targets, naming, priorities and limits."""

    point: str
    project: str
    network: str  # projects/<project>/global/networks/<name>
    target_tags: tuple[str, ...]
    target_service_accounts: tuple[str, ...]
    prefix: str
    stem: str  # prefix + point slug + "-": every owned name starts with it
    endpoint: str
    priority_base: int
    firewall_quota: int
    page_size: int
    operation_timeout: float
    anonymous: bool
    directions: frozenset[Direction] = BOTH_DIRECTIONS
    """The directions the point filters (inventory ``directions``): only their rules are owned."""

    def targets(self) -> dict[str, list[str]]:
        """The target field of every owned rule, as the API spells it."""
        if self.target_tags:
            return {"targetTags": list(self.target_tags)}
        return {"targetServiceAccounts": list(self.target_service_accounts)}

    def unit_name(self, direction: Direction, number: int, chunk: int = 1) -> str:
        """``mseg-<point>-i007`` (``-2``, ``-3`` … for the further chunks of one rule)."""
        suffix = "" if chunk == 1 else f"-{chunk}"
        return f"{self.stem}{DIRECTION_LETTER[direction]}{number:03d}{suffix}"

    def default_name(self, kind: str, family: int) -> str:
        """``mseg-<point>-deny-egress-4``: the default-action rule of one address family."""
        return f"{self.stem}{kind}-{family}"

    def parse_name(self, name: str) -> OwnedName | None:
        """What an owned name means; None when the rule is not this point's (unmanaged) — a rule named as
        this point's for a direction the point does not filter included (see :meth:`read_name`)."""
        owned = self.read_name(name)
        return owned if owned is not None and owned.direction in self.directions else None

    def read_name(self, name: str) -> OwnedName | None:
        """What a name microseg writes for this point means, whichever direction; None for any other name."""
        if not name.startswith(self.stem):
            return None
        rest = name[len(self.stem):]
        for kind, (direction, _) in DEFAULT_RULES.items():
            if rest in (f"{kind}-4", f"{kind}-6"):
                return OwnedName(direction, default=kind, family=int(rest[-1]))
        match = _UNIT.fullmatch(rest)
        if match is None:
            return None
        direction = LETTER_DIRECTION[match["dir"]]
        number, chunk = int(match["num"]), int(match["chunk"] or 1)
        if self.unit_name(direction, number, chunk) != name:  # i0007, -1, -02: not a name microseg writes
            return None
        return OwnedName(direction, number, chunk)

    def network_matches(self, url: object) -> bool:
        """Whether a rule's network (full or partial URL) is this point's network."""
        if not isinstance(url, str):
            return False
        found = NETWORK_TAIL.search(url)
        return found is not None and found.group(0) == self.network


def check_endpoint(point: str, endpoint: str, *, credentials: bool) -> None:
    """Refuse, before any request, to send ``credentials`` (an OAuth token) to a plain-HTTP, non-loopback host."""
    origin = cleartext_origin(endpoint)
    if credentials and origin is not None:
        raise _error(point, f"api_endpoint {origin} is plain HTTP to a host that is not loopback: the OAuth access "
                            f"token would cross the network in clear text — use https:// (plain http:// only to a "
                            f"loopback test server: 127.0.0.0/8, ::1, localhost, or with credentials: anonymous)")


_UNIT = re.compile(r"(?P<dir>[ie])(?P<num>[0-9]{3,})(?:-(?P<chunk>[0-9]+))?")


def _error(point: str, message: str) -> PermanentDriverError:
    return PermanentDriverError(f"settings: {message}", point=point, driver=DRIVER)


def _text(point: str, settings: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = settings.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise _error(point, f"{key} must be a non-empty string (got {value!r})")
    return value.strip()


def _number(point: str, settings: Mapping[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _error(point, f"{key} must be a number from {low:g} to {high:g} (got {value!r})")
    return float(value)


def _strings(point: str, settings: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = settings.get(key) or ()
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, Sequence) or not all(isinstance(v, str) and v for v in value):
        raise _error(point, f"{key} must be a list of strings (got {value!r})")
    return tuple(sorted(set(value)))


def _stem(point: str, prefix: str) -> str:
    """``prefix`` + the point name made RFC 1035-safe (shortened with a hash when too long) + ``-``."""
    slug = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", point.lower())).strip("-") or "point"
    stem = f"{prefix}{slug}-"
    if len(stem) > STEM_MAX:
        digest = hashlib.sha256(point.encode()).hexdigest()[:6]
        stem = f"{prefix}{slug[: STEM_MAX - len(prefix) - 8].rstrip('-')}-{digest}-"
    return stem


def parse_settings(point: str, settings: Mapping[str, Any],
                   directions: Iterable[Direction] = BOTH_DIRECTIONS) -> GcpSettings:
    """Validated settings of ``point`` filtering ``directions``; raises PermanentDriverError naming the bad one."""
    owned = frozenset(directions)
    if not owned:
        raise PermanentDriverError("the point filters no direction (inventory `directions`): nothing to own",
                                   point=point, driver=DRIVER)
    project = _text(point, settings, "project")
    network = _text(point, settings, "network")
    if "/" not in network:
        network = f"projects/{project}/global/networks/{network}"
    tail = NETWORK_TAIL.search(network)
    if tail is None:
        raise _error(point, f"network {network!r} is neither a network name nor a network URL")
    tags = _strings(point, settings, "target_tags")
    accounts = _strings(point, settings, "target_service_accounts")
    if bool(tags) == bool(accounts):
        raise _error(point, "set exactly one of target_tags and target_service_accounts: they say which instances "
                            "the rules apply to (a rule without targets would apply to every instance of the network)")
    prefix = _text(point, settings, "rule_name_prefix", "mseg-")
    if not re.fullmatch(r"[a-z][-a-z0-9]*", prefix) or len(prefix) > 24:
        raise _error(point, f"rule_name_prefix {prefix!r}: lower-case letters, digits and '-', starting with a "
                            "letter, at most 24 characters (GCP rule names follow RFC 1035)")
    base = _number(point, settings, "priority_base", 1000, 0, MAX_PRIORITY)
    credentials = settings.get("credentials", "default")
    if credentials not in ("default", "anonymous"):
        raise _error(point, f"credentials must be 'default' (Application Default Credentials) or 'anonymous' "
                            f"(test servers only), not {credentials!r}")
    endpoint = _text(point, settings, "api_endpoint", DEFAULT_ENDPOINT).rstrip("/")
    check_endpoint(point, endpoint, credentials=credentials != "anonymous")
    return GcpSettings(
        point=point, project=project, network=tail.group(0), target_tags=tags, target_service_accounts=accounts,
        prefix=prefix, stem=_stem(point, prefix),
        endpoint=endpoint,
        priority_base=int(base),
        firewall_quota=int(_number(point, settings, "firewall_quota", 500, 1, 1_000_000)),
        page_size=int(_number(point, settings, "page_size", 500, 1, 500)),
        operation_timeout=_number(point, settings, "operation_timeout", 300, 0.1, 3600),
        anonymous=credentials == "anonymous",
        directions=owned,
    )
