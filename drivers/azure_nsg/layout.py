"""The owned part of an NSG: settings, rule names, priority band, ARM fields and limits (shared by parse/render)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from drivers.endpoints import ANONYMOUS_REFUSAL, is_loopback_url
from orchestrator.model import Direction, PermanentDriverError

DRIVER = "azure_nsg"
CHANGE_FORMAT = "azure-arm"
PUBLIC_ARM_ENDPOINT = "https://management.azure.com"

PRIORITY_FLOOR = 100  # Azure: "A number between 100 and 4096"
PRIORITY_CEILING = 4096
MAX_RULES_PER_NSG = 1000
MAX_PREFIXES_PER_NSG = 4000
DESCRIPTION_MAX = 140
# Monitor mode (see render.native_rule): a would-deny rule is written as Allow with this mark leading its
# description; the catch-all at the band's end allows the rest, its description saying which default it stands for.
MONITOR_MARK = "microseg monitor: would deny"
MONITOR_REST = "microseg monitor: allows the rest"
# Whole-value patterns end in \Z, not $ ("$" also matches before a final "\n"); callers may use .match.
RULE_NAME = re.compile(r"^\w(?:[\w.-]{0,78}\w)?\Z")  # ≤80 chars, starts and ends with a word character
PREFIX_NAME = re.compile(r"^\w[\w.-]{0,40}\Z")
ASG_PROVIDER = "/providers/Microsoft.Network/applicationSecurityGroups"
ASG_ID = re.compile(r"^/subscriptions/([^/\s]+)/resourceGroups/([^/\s]+)/providers/Microsoft\.Network/"
                    r"applicationSecurityGroups/([^/\s]+)\Z", re.IGNORECASE)
ASG_SCOPES = ("resource_group", "subscription")
MAX_ASGS_PER_RULE_SIDE = 10  # ARM's limit; microseg itself writes at most one ASG per side
FRESH_STEP = 10  # fresh rules are numbered 100, 110, 120 … so later inserts fit between them

NATIVE_DIRECTION: Mapping[Direction, str] = {Direction.INGRESS: "Inbound", Direction.EGRESS: "Outbound"}
DIRECTION_OF: Mapping[str, Direction] = {v.lower(): k for k, v in NATIVE_DIRECTION.items()}
DIRECTION_TAG: Mapping[Direction, str] = {Direction.INGRESS: "in", Direction.EGRESS: "out"}
BOTH_DIRECTIONS: frozenset[Direction] = frozenset(Direction)

NATIVE_PROTOCOL: Mapping[int | None, str] = {6: "Tcp", 17: "Udp", 1: "Icmp", 50: "Esp", 51: "Ah", None: "*"}
PROTOCOL_OF: Mapping[str, int | None] = {v.lower(): k for k, v in NATIVE_PROTOCOL.items()}

NSG_READ_ONLY = ("etag", "type", "name", "id")
NSG_PROPERTIES_READ_ONLY = (
    "provisioningState", "resourceGuid", "defaultSecurityRules", "networkInterfaces", "subnets", "flowLogs",
)
RULE_READ_ONLY = ("etag", "type", "id")
RULE_PROPERTIES_READ_ONLY = ("provisioningState",)


class Unreadable(ValueError):
    """One field of an owned rule that microseg cannot model."""


@dataclass(frozen=True, slots=True)
class NsgSettings:
    """Where the NSG is, what part of it microseg owns, and how to reach ARM."""

    subscription_id: str
    resource_group: str
    nsg_name: str
    location: str | None
    prefix: str
    priority_min: int
    priority_max: int
    base_url: str
    ca_bundle: str | None
    poll_interval: float
    operation_timeout: float
    application_security_groups: tuple[str, ...] = ()  # full resource ids
    asg_member_scope: str = "resource_group"
    anonymous: bool = False  # credentials: anonymous (a loopback test server: a placeholder bearer token)
    directions: frozenset[Direction] = BOTH_DIRECTIONS  # the point's (inventory `directions`), not a setting

    @property
    def nic_groups(self) -> tuple[str, ...] | None:
        """Where the members of the ASGs are listed: these resource groups, or None for the whole subscription."""
        if self.asg_member_scope == "subscription":
            return None
        return unique_ci([self.resource_group, *(asg_part(a, 2) for a in self.application_security_groups)])

    @property
    def path(self) -> str:
        """The NSG's ARM resource id (also its URL path)."""
        return (f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
                f"/providers/Microsoft.Network/networkSecurityGroups/{self.nsg_name}")

    @property
    def last_ordinary(self) -> int:
        """The highest priority an ordinary owned rule may take (``priority_max`` is kept for the catch-all)."""
        return self.priority_max - 1

    def in_band(self, priority: int) -> bool:
        return self.priority_min <= priority <= self.priority_max

    @property
    def ordered_directions(self) -> tuple[Direction, ...]:
        """The directions the point filters, ingress first."""
        return tuple(d for d in Direction if d in self.directions)

    def leaves_alone(self, direction: object) -> bool:
        """Whether a rule's native ``direction`` (``Inbound``/``Outbound``) is one the point does not filter.

        An unreadable direction is not left alone: a prefixed in-band rule with one stays owned, and parse fails
        closed on it (microseg cannot tell whose it is)."""
        found = DIRECTION_OF.get(direction.lower()) if isinstance(direction, str) else None
        return found is not None and found not in self.directions

    def owns(self, name: str, priority: object, direction: object) -> bool:
        """A rule is owned when its name has the prefix AND its priority is inside the band AND its direction is
        one the point filters (an ingress-only point leaves every Outbound rule alone, as it does foreign ones)."""
        return (isinstance(priority, int) and name.startswith(self.prefix) and self.in_band(priority)
                and not self.leaves_alone(direction))

    def catch_all_name(self, direction: Direction) -> str:
        return f"{self.prefix}default-deny-{DIRECTION_TAG[direction]}"

    def rule_name(self, direction: Direction, priority: int) -> str:
        return f"{self.prefix}{DIRECTION_TAG[direction]}-{priority:04d}"


def _text(settings: Mapping[str, Any], key: str, point: str, default: str | None = None) -> str:
    value = settings.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise PermanentDriverError(f"setting {key!r} is required (a non-empty string), got {value!r}",
                                   point=point, driver=DRIVER)
    return value.strip()


def _number(settings: Mapping[str, Any], key: str, point: str, default: float) -> float:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise PermanentDriverError(f"setting {key!r} must be a non-negative number, got {value!r}",
                                   point=point, driver=DRIVER)
    return float(value)


def _priority(settings: Mapping[str, Any], key: str, point: str, default: int) -> int:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not PRIORITY_FLOOR <= value <= PRIORITY_CEILING:
        raise PermanentDriverError(f"setting {key!r} must be an integer in {PRIORITY_FLOOR}-{PRIORITY_CEILING}, "
                                   f"got {value!r}", point=point, driver=DRIVER)
    return value


def unique_ci(items: Iterable[str]) -> tuple[str, ...]:
    """``items`` without case-insensitive repeats (ARM ids and names are case-insensitive), first spelling kept."""
    seen: dict[str, str] = {}
    for item in items:
        seen.setdefault(item.lower(), item)
    return tuple(seen.values())


def asg_part(asg_id: str, group: int) -> str:
    """Part of a (validated) ASG resource id: 1 subscription, 2 resource group, 3 name."""
    match = ASG_ID.fullmatch(asg_id)
    return match[group] if match else ""


def _asg_id(value: object, subscription: str, resource_group: str, point: str) -> str:
    """One entry of ``application_security_groups`` as a resource id (a bare name is in the NSG's resource group)."""
    text = value.strip() if isinstance(value, str) else ""
    if RULE_NAME.fullmatch(text):
        return f"/subscriptions/{subscription}/resourceGroups/{resource_group}{ASG_PROVIDER}/{text}"
    match = ASG_ID.fullmatch(text)
    if match is None or not RULE_NAME.fullmatch(match[3]):
        raise PermanentDriverError(f"application_security_groups: {value!r} is neither an application security group "
                                   f"name nor its resource id (/subscriptions/…/resourceGroups/…{ASG_PROVIDER}/NAME)",
                                   point=point, driver=DRIVER)
    if match[1].lower() != subscription.lower():
        raise PermanentDriverError(f"application_security_groups: {text} is in subscription {match[1]}, not the "
                                   f"NSG's ({subscription})", point=point, driver=DRIVER)
    return f"/subscriptions/{match[1]}/resourceGroups/{match[2]}{ASG_PROVIDER}/{match[3]}"


def _asgs(settings: Mapping[str, Any], subscription: str, resource_group: str, point: str) -> tuple[str, ...]:
    value = settings.get("application_security_groups")
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise PermanentDriverError(f"setting 'application_security_groups' must be a list of ASG names or resource "
                                   f"ids, got {value!r}", point=point, driver=DRIVER)
    return unique_ci(_asg_id(v, subscription, resource_group, point) for v in value)


def parse_settings(settings: Mapping[str, Any], point: str,
                   directions: Iterable[Direction] = BOTH_DIRECTIONS) -> NsgSettings:
    """Validated settings of one point (no I/O); a bad value is a PermanentDriverError naming the setting.

    ``directions`` are the ones the point filters (``PointContext.directions``): rules of the others are not owned.
    """
    owned_directions = frozenset(directions)
    if not owned_directions:
        raise PermanentDriverError("the point filters no direction (inventory `directions`): nothing to own",
                                   point=point, driver=DRIVER)
    prefix = _text(settings, "rule_name_prefix", point, "mseg-")
    if not PREFIX_NAME.fullmatch(prefix):
        raise PermanentDriverError(f"rule_name_prefix {prefix!r}: start with a letter/digit/_, then letters, "
                                   f"digits, '.', '-', '_' (at most 41)", point=point, driver=DRIVER)
    low = _priority(settings, "priority_min", point, PRIORITY_FLOOR)
    high = _priority(settings, "priority_max", point, PRIORITY_CEILING)
    if high - low < 1:
        raise PermanentDriverError(f"priority band {low}-{high} is empty: priority_max must exceed priority_min "
                                   f"(priority_max is kept for the catch-all deny)", point=point, driver=DRIVER)
    location = settings.get("location")
    ca_bundle = settings.get("ca_bundle")
    subscription, group = _text(settings, "subscription_id", point), _text(settings, "resource_group", point)
    base_url = _text(settings, "base_url", point, PUBLIC_ARM_ENDPOINT).rstrip("/")
    if not base_url.lower().startswith("https://"):  # refused before any request (no token is ever fetched)
        raise PermanentDriverError(f"setting 'base_url' must be an https:// URL, not {base_url!r}: ARM calls carry a "
                                   f"bearer token, which azure-core sends over TLS only (on loopback too)",
                                   point=point, driver=DRIVER)
    credentials = settings.get("credentials", "default")
    if credentials not in ("default", "anonymous"):
        raise PermanentDriverError(f"setting 'credentials' must be 'default' (the credential given to the driver, "
                                   f"else DefaultAzureCredential) or 'anonymous' (loopback test servers only), not "
                                   f"{credentials!r}", point=point, driver=DRIVER)
    if credentials == "anonymous" and not is_loopback_url(base_url):
        raise PermanentDriverError(ANONYMOUS_REFUSAL.format(setting="setting 'base_url'", url=base_url),
                                   point=point, driver=DRIVER)
    scope = settings.get("asg_member_scope", ASG_SCOPES[0])
    if scope not in ASG_SCOPES:
        raise PermanentDriverError(f"setting 'asg_member_scope' must be one of {', '.join(ASG_SCOPES)}, got "
                                   f"{scope!r}", point=point, driver=DRIVER)
    return NsgSettings(
        subscription_id=subscription,
        resource_group=group,
        nsg_name=_text(settings, "nsg_name", point),
        location=str(location) if location else None,
        prefix=prefix,
        priority_min=low,
        priority_max=high,
        base_url=base_url,
        ca_bundle=str(ca_bundle) if ca_bundle else None,
        poll_interval=_number(settings, "poll_interval", point, 5.0),
        operation_timeout=_number(settings, "operation_timeout", point, 600.0),
        application_security_groups=_asgs(settings, subscription, group, point),
        asg_member_scope=str(scope),
        anonymous=credentials == "anonymous",
        directions=owned_directions,
    )


def writable_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A security rule as a PUT carries it: the read-only fields (etag, id, provisioningState …) left out."""
    out = {k: v for k, v in rule.items() if k not in RULE_READ_ONLY}
    props = rule.get("properties")
    if isinstance(props, Mapping):
        out["properties"] = {k: v for k, v in props.items() if k not in RULE_PROPERTIES_READ_ONLY}
    return out


def writable_nsg(nsg: Mapping[str, Any]) -> dict[str, Any]:
    """The NSG as a PUT carries it: read-only fields left out, every other field (tags, unknown ones) kept."""
    out = {k: v for k, v in nsg.items() if k not in NSG_READ_ONLY}
    props = nsg.get("properties")
    props = props if isinstance(props, Mapping) else {}
    out["properties"] = {k: v for k, v in props.items() if k not in NSG_PROPERTIES_READ_ONLY}
    rules = props.get("securityRules") or []
    out["properties"]["securityRules"] = [writable_rule(r) if isinstance(r, Mapping) else r for r in rules]
    return out


def security_rules(nsg: Mapping[str, Any] | None) -> list[Any]:
    """The ``securityRules`` list of a raw NSG (empty when there is no NSG)."""
    if nsg is None:
        return []
    props = nsg.get("properties")
    rules = props.get("securityRules") if isinstance(props, Mapping) else None
    return list(rules) if isinstance(rules, list) else []


def rule_name(scope: Any, rule: Any) -> str:
    """A flow's deciding rule, named so that one name means one rule of one NSG: ``scope/rule`` with the scope
    lower-case (Azure resource IDs and names are case-insensitive, and NSG flow logs upper-case them): the NSG's
    resource ID (NSG flow logs: ``resourceId``; names repeat across resource groups) or its ``resourceGuid`` (VNet
    flow logs: ``flows[].aclID``), then the rule as logged (``UserRule_NAME``, ``DefaultRule_DenyAllInBound``).
    "" when either is missing."""
    if not (isinstance(scope, str) and scope and isinstance(rule, str) and rule):
        return ""
    return f"{scope.lower()}/{rule}"
