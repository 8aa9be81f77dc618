"""Whole-value validators reject a trailing newline (Python's ``$`` matches before a final "\\n"), and every rule
name a change request may add, it may also remove."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.aws_sg.settings import parse_settings as aws_settings
from drivers.azure_nsg.layout import ASG_ID, PREFIX_NAME, RULE_NAME
from drivers.gcp_firewall.settings import NAME_RE
from drivers.gcp_firewall.settings import parse_settings as gcp_settings
from drivers.nftables import NftablesDriver
from drivers.nftables.layout import TABLE_NAME
from orchestrator.api.schemas import ChangeRequestIn
from orchestrator.engine import changes
from orchestrator.engine.changes import ChangeSpec
from orchestrator.inventory.inventory import load_inventory
from orchestrator.lab.plan import check_prefix
from orchestrator.lab.system import LabError
from orchestrator.model.driver import Connection, PointContext
from orchestrator.model.errors import InventoryError, PermanentDriverError
from orchestrator.model.policy import PolicyFile, PolicyRule, is_name

NAME = "valid-name"
ASG = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Network/applicationSecurityGroups/asg-web"
AWS = {"region": "eu-west-1", "vpc_id": "vpc-0a1b2c3d4e5f60718", "security_group_name": "mseg-web",
       "account_id": "123456789012", "endpoint_url": "http://127.0.0.1:9"}
GCP = {"project": "shop-dev-000000", "network": "shop-dev", "target_tags": ["db"], "api_endpoint": "http://127.0.0.1:9"}


def rule(name: str) -> dict[str, Any]:
    return {"name": name, "from": "web", "to": "db", "services": ["tcp/443"], "action": "allow"}


def must(found: object) -> object:
    """A regex match or True; ValueError for None / False (so every validator below raises when it refuses)."""
    if not found:
        raise ValueError("refused")
    return found


def accepts(check: Callable[[], object]) -> bool:
    try:
        check()
    except (ValueError, PermanentDriverError, LabError):  # pydantic's ValidationError is a ValueError
        return False
    return True


# Each validator gets a valid value's suffix: "" must be accepted, "\n" refused.
VALIDATORS: dict[str, Callable[[str], object]] = {
    "policy is_name": lambda s: must(is_name(NAME + s)),
    "policy rule name": lambda s: PolicyRule.model_validate(rule(NAME + s)),
    "policy group name": lambda s: PolicyFile.model_validate({"apiVersion": "microseg/v1",
                                                                 "groups": {NAME + s: {"cidrs": ["10.0.0.0/8"]}}}),
    "change remove": lambda s: ChangeSpec(remove=[NAME + s]),
    "change file": lambda s: must(changes._CHANGE_FILE.search(f"/tmp/effective/zz-change-new.yaml{s}")),
    "lab prefix": lambda s: check_prefix("lab" + s),
    "nft table name": lambda s: must(TABLE_NAME.match("microseg" + s)),
    "azure rule name": lambda s: must(RULE_NAME.match("mseg-in-0100" + s)),
    "azure rule name prefix": lambda s: must(PREFIX_NAME.match("mseg-" + s)),
    "azure asg id": lambda s: must(ASG_ID.match(ASG + s)),
    "gcp rule name": lambda s: must(NAME_RE.match("mseg-p-i001" + s)),
    "gcp network url": lambda s: must(gcp_settings("p", GCP).network_matches(
        "https://www.googleapis.com/compute/v1/projects/shop-dev-000000/global/networks/shop-dev" + s)),
    "gcp owned rule name": lambda s: must(gcp_settings("p", GCP).parse_name("mseg-p-i001" + s)),
    "aws group name": lambda s: aws_settings("p", {**AWS, "security_group_name": "mseg-web" + s}),
    "aws region": lambda s: aws_settings("p", {**AWS, "region": "eu-west-1" + s}),
    "aws vpc id": lambda s: aws_settings("p", {**AWS, "vpc_id": "vpc-0a1b2c3d4e5f60718" + s}),
    "aws account id": lambda s: aws_settings("p", {**AWS, "account_id": "123456789012" + s}),
}


@pytest.mark.parametrize("validator", VALIDATORS.values(), ids=VALIDATORS.keys())
def test_validator_rejects_a_trailing_newline(validator: Callable[[str], object]) -> None:
    assert accepts(lambda: validator(""))
    assert not accepts(lambda: validator("\n"))


def test_nft_driver_refuses_a_table_name_with_a_trailing_newline() -> None:
    context = PointContext("host1", "nftables", Connection("localhost"), {"transport": "local", "table": "mseg\n"})
    with pytest.raises(PermanentDriverError, match="table"):
        NftablesDriver(context)


def test_inventory_refuses_a_host_name_with_a_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "hosts.yaml").write_text(textwrap.dedent("""\
        "fw1\\n": {hostname: 192.0.2.1, groups: [linux]}
    """), encoding="utf-8")
    (tmp_path / "groups.yaml").write_text(
        "linux: {platform: linux, data: {microseg: {driver: nftables, settings: {table: microseg}}}}\n")
    (tmp_path / "defaults.yaml").write_text("data: {microseg: {management: [10.0.0.10/32]}}\n")
    (tmp_path / "workloads.yaml").write_text("workloads: []\n")
    with pytest.raises(InventoryError) as info:
        load_inventory(tmp_path)
    assert "invalid host name 'fw1\\n'" in str(info.value)


# ---------------------------------------------------------------------------------------------------- add ⊆ remove

_FIRST = "ABCXYZabcxyz0189"
_REST = _FIRST + "_.-"
NAMES = (st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]*", fullmatch=True)
         | st.builds(lambda a, b: a + b, st.sampled_from(_FIRST), st.text(_REST, min_size=100, max_size=400)))
NEAR_MISSES = st.builds(lambda n, s: n + s, NAMES, st.sampled_from(["\n", "\r\n", " ", "\t", "\x00", "/", "é"]))


def add_accepts(name: str) -> bool:
    """What the add side checks: the API's ChangeSpec, then the policy model the effective policy is loaded with."""
    return accepts(lambda: ChangeSpec(add=[rule(name)])) and accepts(lambda: PolicyRule.model_validate(rule(name)))


def remove_accepts(name: str) -> bool:
    body = {"ticket": "CHG-1", "requester": "alice", "change": {"remove": [name]}}
    return accepts(lambda: ChangeRequestIn.model_validate(body)) and accepts(lambda: ChangeSpec(remove=[name]))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(NAMES | NEAR_MISSES)
def test_every_name_the_add_side_accepts_the_remove_side_accepts(name: str) -> None:
    if add_accepts(name):
        assert remove_accepts(name), name


@pytest.mark.parametrize("name", [NAME, "a" * 129, "a" * 1000, "1.2-3_x"])
def test_names_added_can_be_removed(name: str) -> None:
    assert add_accepts(name) and remove_accepts(name)


@pytest.mark.parametrize("name", [NAME + "\n", "", "-x", "a/b", "a b"])
def test_non_names_are_refused_on_both_sides(name: str) -> None:
    assert not add_accepts(name) and not remove_accepts(name)
