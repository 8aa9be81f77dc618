"""AWS SG driver, pure parts: rule mapping, error classification, rate limiting, settings, and pagination (Stubber)."""

from __future__ import annotations

from typing import Any

import botocore.exceptions as boto_errors
import pytest
from botocore.parsers import ResponseParserError
from botocore.stub import Stubber

from drivers.aws_sg.permissions import (
    Permission,
    Unrepresentable,
    description_of,
    permission_from_row,
    permission_of,
    provenance_of,
    rule_of,
)
from drivers.aws_sg.ratelimit import TokenBucket
from drivers.aws_sg.settings import parse_settings
from drivers.aws_sg.transport import Ec2Api, classify
from drivers.aws_sg.vpcview import interest_of, load_view
from orchestrator.model.errors import PermanentDriverError, TransientDriverError
from orchestrator.model.rules import Action, AddressSet, Direction, Provenance, Rule

pytest_plugins = ["tests.aws_fixtures"]
A = AddressSet.of
MEMBERS = A(["10.30.1.11/32", "10.30.1.12/32", "fd00:30:1::11/128"])
V4, V6 = AddressSet(MEMBERS.v4), AddressSet(MEMBERS.v6)
SETTINGS = {"region": "eu-west-1", "vpc_id": "vpc-0a1b2c3d4e5f60718", "endpoint_url": "http://127.0.0.1:9"}


def row(**fields: Any) -> dict[str, Any]:
    return {"SecurityGroupRuleId": "sgr-1", "IsEgress": False, "IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
            "CidrIpv4": "10.0.0.0/8", **fields}


@pytest.mark.parametrize("fields", [
    {},
    {"IpProtocol": "udp", "FromPort": 53, "ToPort": 60, "IsEgress": True},
    {"IpProtocol": "icmp", "FromPort": 8, "ToPort": 0},
    {"IpProtocol": "icmp", "FromPort": 3, "ToPort": -1},
    {"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1},
    {"IpProtocol": "icmpv6", "FromPort": 128, "ToPort": -1, "CidrIpv4": None, "CidrIpv6": "2001:db8::/32"},
    {"IpProtocol": "-1", "FromPort": -1, "ToPort": -1, "IsEgress": True, "CidrIpv4": None, "CidrIpv6": "::/0"},
    {"IpProtocol": "50", "FromPort": -1, "ToPort": -1},
])
def test_native_rule_to_normalized_rule_and_back_is_exact(fields: dict[str, Any]) -> None:
    native = permission_from_row(row(**fields))
    rule = rule_of(native, V4 if native.family == 4 else V6)
    assert (rule.src if native.egress else rule.dst) == (V4 if native.family == 4 else V6)
    assert permission_of(rule, MEMBERS).key() == native.key()


def test_a_reference_row_is_a_permission_naming_the_group() -> None:
    native = permission_from_row(row(CidrIpv4=None, ReferencedGroupInfo={"GroupId": "sg-0abc", "UserId": "1"}))
    assert native.group == "sg-0abc" and native.cidr == "" and native.rule_id == "sgr-1"
    assert native.key() == (False, "tcp", 443, 443, "sg-0abc") and native.families == (4, 6)
    assert native.ip_permission() == {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
                                      "UserIdGroupPairs": [{"GroupId": "sg-0abc"}]}
    with pytest.raises(ValueError, match="expand it first"):
        rule_of(native, V4)


def test_protocol_spellings_and_host_bits_share_one_identity() -> None:
    assert permission_from_row(row(IpProtocol="6")).key() == permission_from_row(row()).key()
    sloppy = permission_from_row(row(CidrIpv4="10.1.2.3/8"))
    assert sloppy.key() == permission_from_row(row()).key() and sloppy.cidr == "10.1.2.3/8"  # revoke names it as stored


@pytest.mark.parametrize(("fields", "message"), [
    ({"ReferencedGroupInfo": {"UserId": "123456789012"}, "CidrIpv4": None}, "not a security group id"),
    ({"PrefixListId": "pl-1", "CidrIpv4": None}, "prefix list 'pl-1'"),
    ({"CidrIpv4": None}, "no CIDR peer"),
    ({"IpProtocol": "icmp", "FromPort": -1, "ToPort": 0}, "ICMP type -1 code 0"),
    ({"FromPort": 500, "ToPort": 400}, "not a range"),
    ({"IpProtocol": "bogus"}, "unknown protocol"),
])
def test_native_rules_microseg_cannot_model_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(Unrepresentable, match=message):
        permission_from_row(row(**fields))


@pytest.mark.parametrize(("rule", "message"), [
    (Rule(Action.DENY, Direction.INGRESS, 6, A(["10.0.0.0/8"]), V4), "can only allow"),
    (Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.0.0.0/8"]), V4, log=True), "cannot log"),
    (Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.0.0.0/8"]), V4, src_ports=((1024, 65535),)), "source ports"),
    (Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.0.0.0/8", "192.0.2.0/24"]), V4), "exactly one CIDR peer"),
    (Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.0.0.0/8"]), MEMBERS), "applies to exactly the IPv4 members"),
    (Rule(Action.PERMIT, Direction.EGRESS, 6, A(["10.30.1.11/32"]), A(["10.0.0.0/8"])),
     "applies to exactly the IPv4 members"),
    (Rule(Action.PERMIT, Direction.INGRESS, 6, A(["10.0.0.0/8"]), V4, dst_ports=((80, 80), (443, 443))),
     "one port range"),
    (Rule(Action.PERMIT, Direction.INGRESS, 132, A(["10.0.0.0/8"]), V4, dst_ports=((80, 80),)), "ignores ports"),
])
def test_intended_rules_a_group_cannot_hold_are_refused(rule: Rule, message: str) -> None:
    with pytest.raises(Unrepresentable, match=message):
        permission_of(rule, MEMBERS)


def test_descriptions_carry_rule_names_within_ec2s_limit() -> None:
    assert description_of(Provenance(rules=("dns", "web"))) == "microseg:dns,web"
    assert provenance_of("microseg:dns,web") == Provenance(rules=("dns", "web"))
    assert provenance_of("made by hand").note == "made by hand"
    names = tuple(f"rule-{i:03}" for i in range(60))
    long = description_of(Provenance(rules=names))
    kept = long.removeprefix("microseg:").split(",")
    assert len(long) <= 255 and kept == list(names[:len(kept)]) and len(kept) == 27  # whole names only
    assert Permission(False, "tcp", 1, 1, "10.0.0.0/8", "a") == Permission(False, "tcp", 1, 1, "10.0.0.0/8", "b")


def client_error(code: str, status: int, headers: dict[str, str] | None = None) -> boto_errors.ClientError:
    return boto_errors.ClientError({"Error": {"Code": code, "Message": "m"},
                                    "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}}},
                                   "DescribeSecurityGroups")


@pytest.mark.parametrize(("exc", "kind"), [
    (client_error("RequestLimitExceeded", 503), "throttled"),
    (client_error("Throttling", 400), "throttled"),
    (client_error("Unavailable", 503), "transient"),
    (client_error("InternalError", 500), "transient"),
    (client_error("UnauthorizedOperation", 403), "permanent"),
    (client_error("InvalidGroup.NotFound", 400), "permanent"),
    (boto_errors.EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), "transient"),
    (boto_errors.ReadTimeoutError(endpoint_url="http://127.0.0.1:9"), "transient"),
    (boto_errors.NoCredentialsError(), "permanent"),
    (ResponseParserError("Unable to parse response (syntax error), invalid XML received: b'<html>500'"), "transient"),
])
def test_sdk_errors_are_classified_once(exc: Exception, kind: str) -> None:
    assert classify(exc)[0] == kind


def test_errors_name_the_call_and_honour_retry_after() -> None:
    api = Ec2Api("p", parse_settings("p", SETTINGS), 1.0)
    slow = api.error(client_error("RequestLimitExceeded", 503, {"retry-after": "7"}), "describe_vpcs", "vpc-1")
    assert isinstance(slow, TransientDriverError) and slow.delay >= 7
    denied = api.error(client_error("UnauthorizedOperation", 403), "revoke_security_group_ingress", "sg-1 (web)")
    assert isinstance(denied, PermanentDriverError)
    assert "revoke_security_group_ingress on sg-1 (web) failed: UnauthorizedOperation" in denied.message
    assert "IAM" in denied.message


def test_token_bucket_limits_the_rate_after_the_burst() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    bucket = TokenBucket(2.0, clock=lambda: now[0], sleep=sleep)
    waits = [bucket.acquire() for _ in range(6)]
    assert waits[:2] == [0.0, 0.0]  # burst of 2
    assert now[0] == pytest.approx(2.0)  # the other 4 at 2 per second
    now[0] += 10  # idle: the bucket refills only up to its burst
    assert [bucket.acquire() for _ in range(3)][:2] == [0.0, 0.0]


def test_settings_defaults_and_refusals() -> None:
    parsed = parse_settings("aws-sg-dev-web", SETTINGS)
    assert parsed.owner_tag == {"microseg:managed": "aws-sg-dev-web"}
    assert parsed.group_name == "mseg-aws-sg-dev-web" and parsed.rules_per_sg == 60
    assert parsed.max_mutating_calls_per_second == 5
    for bad, key in [({"region": None}, "region"), ({"vpc_id": "vpc_1"}, "vpc_id"), ({"page_size": 5000}, "page_size"),
                     ({"owner_tag": {}}, "owner_tag"), ({"owner_tag": {"aws:x": "1"}}, "owner_tag"),
                     ({"security_group_name": "sg-123"}, "security_group_name"),
                     ({"endpoint_url": "ftp://x"}, "endpoint_url"), ({"rules_per_sg": 0}, "rules_per_sg")]:
        with pytest.raises(PermanentDriverError, match=key):
            parse_settings("p", {**SETTINGS, **bad})


def test_vpc_load_follows_next_token_with_one_request_per_page(aws_env: None, boto_session: Any) -> None:
    """moto ignores MaxResults, so paging is proven with botocore's Stubber on a real client (nothing is sent)."""
    settings = parse_settings("p", {**SETTINGS, "page_size": 5, "security_group_name": "web"})
    api = Ec2Api("p", settings, 1.0, session=boto_session)
    vpc = [{"Name": "vpc-id", "Values": [settings.vpc_id]}]
    tag = [{"Key": "microseg:managed", "Value": "p"}]
    groups = [{"GroupId": "sg-0123456789abcdef0", "GroupName": "web", "Tags": tag},
              {"GroupId": "sg-0fedcba9876543210", "GroupName": "legacy", "Tags": []}]
    with Stubber(api.client) as stub:
        for index, group in enumerate(groups):
            answer: dict[str, Any] = {"SecurityGroups": [group], **({"NextToken": "g1"} if index == 0 else {})}
            expected: dict[str, Any] = {"Filters": vpc, "MaxResults": 5, **({"NextToken": "g1"} if index else {})}
            stub.add_response("describe_security_groups", answer, expected)
        for page, token in (("a", "t1"), ("b", None)):  # only the owned group's rules are described
            answer = {"SecurityGroupRules": [row(SecurityGroupRuleId=f"sgr-{page}", GroupId="sg-0123456789abcdef0",
                                                 CidrIpv4=f"10.{ord(page)}.0.0/16")]}
            expected = {"Filters": [{"Name": "group-id", "Values": ["sg-0123456789abcdef0"]}], "MaxResults": 5}
            if token:
                answer["NextToken"] = token
            if page == "b":
                expected["NextToken"] = "t1"
            stub.add_response("describe_security_group_rules", answer, expected)
        for index in range(3):
            eni = {"NetworkInterfaceId": f"eni-{index}", "Groups": [{"GroupId": "sg-0123456789abcdef0"}],
                   "PrivateIpAddresses": [{"PrivateIpAddress": f"10.30.1.{11 + index}"}]}
            answer = {"NetworkInterfaces": [eni], **({"NextToken": f"n{index}"} if index < 2 else {})}
            expected = {"Filters": vpc, "MaxResults": 5, **({"NextToken": f"n{index - 1}"} if index else {})}
            stub.add_response("describe_network_interfaces", answer, expected)
        view = load_view(api, settings.vpc_id, [interest_of(settings)])
        stub.assert_no_pending_responses()
    assert set(view.groups) == {g["GroupId"] for g in groups}
    assert [r["SecurityGroupRuleId"] for r in view.rules["sg-0123456789abcdef0"]] == ["sgr-a", "sgr-b"]
    assert set(view.rules) == {"sg-0123456789abcdef0"}
    assert sorted(view.enis) == ["eni-0", "eni-1", "eni-2"]
    assert view.members("sg-0123456789abcdef0") == ("10.30.1.11", "10.30.1.12", "10.30.1.13")


def test_an_egress_only_point_renders_restores_and_fingerprints_egress_only() -> None:
    """Pure: the directions a point does not filter are out of its plan, its rollback and its fingerprint."""
    from drivers.aws_sg.plan import Planner
    from drivers.aws_sg.restore import restore_calls
    from drivers.aws_sg.state import Observation, normalize_native, stable
    from orchestrator.model.rules import Ordering, Ruleset

    settings = parse_settings("p", SETTINGS)
    only_egress = frozenset({Direction.EGRESS})
    ssh = row(SecurityGroupRuleId="sgr-in", FromPort=22, ToPort=22)
    web = row(SecurityGroupRuleId="sgr-out", IsEgress=True)
    listed = row(SecurityGroupRuleId="sgr-pl", PrefixListId="pl-1", CidrIpv4=None)  # unreadable, but not ours
    group = {"id": "sg-1", "name": "mseg-p", "tags": {}}
    native = {"vpc_id": SETTINGS["vpc_id"], "group_name": "mseg-p", "group": group, "foreign": None,
              "vpc_ipv6": None, "rules": [web], "interfaces": [], "references": {},
              "directions": ["egress"], "other_directions": [ssh, listed]}
    observed = normalize_native(native, MEMBERS, "p")
    assert [r.direction for r in observed.ruleset.rules] == [Direction.EGRESS]
    assert {u.name for u in observed.unmanaged if u.kind == "security-group-rule"} == {"sgr-in", "sgr-pl"}
    assert stable(native) == stable({**native, "other_directions": []})
    dns = Rule(Action.PERMIT, Direction.EGRESS, 17, V4, A(["10.10.0.53/32"]), dst_ports=((53, 53),))
    intended = Ruleset("p", Ordering.UNORDERED_ALLOW, Action.DENY, (dns,))
    calls = Planner("p", settings, MEMBERS, only_egress).render(native, intended)
    assert [c["call"] for c in calls] == ["authorize_security_group_egress", "revoke_security_group_egress"]
    assert calls[1]["params"]["SecurityGroupRuleIds"] == ["sgr-out"]
    # a checkpoint recorded before directions were (both): restored for egress only; ingress rows stay as they are
    saved = {**native, "rules": [ssh, row(SecurityGroupRuleId="sgr-old", IsEgress=True, FromPort=80, ToPort=80)]}
    del saved["directions"], saved["other_directions"]
    now = Observation({**native, "rules": [web]}, {})
    restored = restore_calls("p", saved, now, only_egress)
    assert [c["call"] for c in restored] == ["authorize_security_group_egress", "revoke_security_group_egress"]
    assert restored[0]["params"]["IpPermissions"][0]["FromPort"] == 80
    # the point filtering both, with this egress-only checkpoint: still egress only
    both = restore_calls("p", native, Observation({**native, "rules": [ssh, web]}, {}))
    assert both == []
    with pytest.raises(PermanentDriverError, match="directions"):
        restore_calls("p", {**native, "directions": ["sideways"]}, now, only_egress)


def test_a_point_filtering_no_direction_is_refused() -> None:
    from drivers.aws_sg import AwsSecurityGroupDriver
    from orchestrator.model.driver import Connection, PointContext

    context = PointContext("p", "aws_sg", Connection("p"), SETTINGS, 1.0, MEMBERS, frozenset())
    with pytest.raises(PermanentDriverError, match="filters no direction"):
        AwsSecurityGroupDriver(context)
