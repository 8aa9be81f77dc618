"""The settings an AWS security group point reads from the inventory, checked once (no I/O)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from drivers.aws_sg.permissions import DRIVER
from drivers.endpoints import ANONYMOUS_REFUSAL, cleartext_origin, is_loopback_url
from orchestrator.model import PermanentDriverError

# Whole-value patterns end in \Z, not $ ("$" also matches before a final "\n"); they are used with fullmatch.
VPC_ID = re.compile(r"^vpc-[0-9a-f]{8,17}\Z")
REGION = re.compile(r"^[a-z]{2}(-[a-z0-9]+)+-[0-9]+\Z")
ACCOUNT_ID = re.compile(r"^[0-9]{12}\Z")
GROUP_NAME = re.compile(r"^[A-Za-z0-9 ._\-:/()#,@\[\]+=&;{}!$*]{1,255}\Z")
TAG_TEXT = 256
EC2_RULE_QUOTA = 1000
"""EC2: security groups per ENI × rules per security group may not exceed this."""


@dataclass(frozen=True, slots=True)
class AwsSettings:
    """What one ``aws_sg`` point is configured with (see the driver docstring for each key)."""

    region: str
    vpc_id: str
    group_name: str
    owner_tag: Mapping[str, str]
    endpoint_url: str | None = None
    profile: str | None = None
    account_id: str | None = None
    max_mutating_calls_per_second: float = 5.0
    mutating_call_burst: float | None = None
    rules_per_sg: int = 60
    security_groups_per_eni: int = 5
    page_size: int = 1000
    throttle_retries: int = 4
    retry_base_seconds: float = 1.0
    shared_read_ttl: float = 2.0
    sg_references: bool = True
    anonymous: bool = False  # credentials: anonymous (a loopback test server: placeholder keys, no profile)

    @property
    def description(self) -> str:
        return f"microseg managed: {self.group_name}"


def _text(settings: Mapping[str, Any], key: str, pattern: re.Pattern[str] | None, fail: Any) -> str:
    value = settings.get(key)
    if not isinstance(value, str) or not value or (pattern is not None and not pattern.fullmatch(value)):
        raise fail(f"setting {key!r} is missing or invalid: {value!r}")
    return value


def _number(settings: Mapping[str, Any], key: str, default: float, low: float, fail: Any) -> float:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
        raise fail(f"setting {key!r} must be a number ≥ {low:g}, not {value!r}")
    return float(value)


def _owner_tag(point: str, value: Any, fail: Any) -> dict[str, str]:
    if value is None:
        return {"microseg:managed": point}
    if not isinstance(value, Mapping) or not value:
        raise fail(f"setting 'owner_tag' must be a non-empty mapping of tag keys to values, not {value!r}")
    tags = {str(k): str(v) for k, v in value.items()}
    if any(not k or len(k) > 128 or len(v) > TAG_TEXT or k.startswith("aws:") for k, v in tags.items()):
        raise fail(f"setting 'owner_tag' holds a tag EC2 refuses: {tags}")
    return tags


def endpoint_refusal(endpoint_url: str | None) -> str | None:
    """Why requests signed with AWS credentials may not go to ``endpoint_url`` (None: they may)."""
    origin = None if endpoint_url is None else cleartext_origin(endpoint_url)
    if origin is None:
        return None
    return (f"setting 'endpoint_url' {origin} is plain HTTP to a host that is not loopback: the signed requests "
            f"(and a session token) would cross the network in clear text — use https:// (plain http:// only to a "
            f"loopback test server: 127.0.0.0/8, ::1, localhost)")


def parse_settings(point: str, settings: Mapping[str, Any]) -> AwsSettings:
    """Validated settings; a bad value raises PermanentDriverError naming the key."""

    def fail(message: str) -> PermanentDriverError:
        return PermanentDriverError(message, point=point, driver=DRIVER)

    group_name = settings.get("security_group_name", f"mseg-{point}")
    if not isinstance(group_name, str) or not GROUP_NAME.fullmatch(group_name) or group_name.lower().startswith("sg-"):
        raise fail(f"setting 'security_group_name' is not a valid EC2 group name: {group_name!r}")
    endpoint = settings.get("endpoint_url")
    if endpoint is not None and (not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://"))):
        raise fail(f"setting 'endpoint_url' must be an http(s) URL, not {endpoint!r}")
    if (refusal := endpoint_refusal(endpoint)) is not None:
        raise fail(refusal)
    profile = settings.get("profile")
    if profile is not None and not isinstance(profile, str):
        raise fail(f"setting 'profile' must be a profile name, not {profile!r}")
    credentials = settings.get("credentials", "default")
    if credentials not in ("default", "anonymous"):
        raise fail(f"setting 'credentials' must be 'default' (profile, environment or role) or 'anonymous' "
                   f"(loopback test servers only), not {credentials!r}")
    if credentials == "anonymous":
        if endpoint is None or not is_loopback_url(endpoint):
            raise fail(ANONYMOUS_REFUSAL.format(setting="setting 'endpoint_url'", url=endpoint))
        if profile is not None:
            raise fail("settings 'credentials: anonymous' and 'profile' exclude each other")
    account = settings.get("account_id")
    if account is not None and (not isinstance(account, str | int) or not ACCOUNT_ID.fullmatch(f"{account}")):
        raise fail(f"setting 'account_id' must be a 12-digit AWS account id, not {account!r}")
    references = settings.get("sg_references", True)
    if not isinstance(references, bool):
        raise fail(f"setting 'sg_references' must be true or false, not {references!r}")
    burst = settings.get("mutating_call_burst")
    parsed = AwsSettings(
        region=_text(settings, "region", REGION, fail),
        vpc_id=_text(settings, "vpc_id", VPC_ID, fail),
        group_name=group_name,
        owner_tag=_owner_tag(point, settings.get("owner_tag"), fail),
        endpoint_url=endpoint,
        profile=profile,
        account_id=None if account is None else f"{account}",
        max_mutating_calls_per_second=_number(settings, "max_mutating_calls_per_second", 5.0, 0.01, fail),
        mutating_call_burst=None if burst is None else _number(settings, "mutating_call_burst", 1, 1, fail),
        rules_per_sg=int(_number(settings, "rules_per_sg", 60, 1, fail)),
        security_groups_per_eni=int(_number(settings, "security_groups_per_eni", 5, 1, fail)),
        page_size=int(_number(settings, "page_size", 1000, 5, fail)),
        throttle_retries=int(_number(settings, "throttle_retries", 4, 0, fail)),
        retry_base_seconds=_number(settings, "retry_base_seconds", 1.0, 0.0, fail),
        shared_read_ttl=_number(settings, "shared_read_ttl", 2.0, 0.0, fail),
        sg_references=references,
        anonymous=credentials == "anonymous",
    )
    if parsed.page_size > 1000:
        raise fail(f"setting 'page_size' must be 5-1000 (EC2's MaxResults), not {parsed.page_size}")
    return parsed
