"""`microseg adopt` on a GCP firewall point (issue #14): the network's rules someone else wrote, read through the
unmodified google-cloud-compute client from the loopback Compute server, ordered as GCP evaluates them (priority,
deny before allow at one priority, then the implied rules), proposed as policy and proven equivalent."""

from __future__ import annotations

import pytest

from orchestrator.engine.adopt import propose
from orchestrator.engine.project import Project, load_project
from orchestrator.model.rules import Action, Direction
from orchestrator.packetspace.flowset import Flow
from orchestrator.packetspace.packetspace import decide
from tests.conftest import REPO
from tests.test_engine_switches import TODAY
from tests.test_gcp_firewall_driver import NETWORK_URL, POINT, PROJECT, fake, make_driver  # noqa: F401

LEGACY = {
    "legacy-db-from-app": {"priority": 900, "targetTags": ["shop-dev-db"], "sourceRanges": ["10.30.2.0/24"],
                           "allowed": [{"IPProtocol": "tcp", "ports": ["5432"]}]},
    "zz-block-one-app": {"priority": 900, "targetTags": ["shop-dev-db"], "sourceRanges": ["10.30.2.66/32"],
                             "denied": [{"IPProtocol": "all"}]},  # same priority: the deny wins
    "legacy-ssh-everywhere": {"sourceRanges": ["10.99.0.0/16"],  # every instance of the network
                              "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}]},
    "legacy-ssh-everywhere-v6": {"sourceRanges": ["fd00:99::/48"], "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}]},
    "legacy-no-mail-out": {"direction": "EGRESS", "targetTags": ["shop-dev-db"], "destinationRanges": ["0.0.0.0/0"],
                           "denied": [{"IPProtocol": "tcp", "ports": ["25"]}]},
    "legacy-was-open": {"disabled": True, "sourceRanges": ["0.0.0.0/0"], "allowed": [{"IPProtocol": "all"}]},
}


@pytest.fixture(scope="module")
def project() -> Project:
    return load_project(REPO / "policies", REPO / "inventory", today=TODAY)


def seed(fake_compute: object, rules: dict[str, dict[str, object]]) -> None:
    for name, body in rules.items():
        fake_compute.seed(PROJECT, {"name": name, "network": NETWORK_URL, **body})  # type: ignore[attr-defined]


def test_the_networks_rules_for_the_members_are_read_in_gcp_order_and_adopted_with_proof(
        fake: object, project: Project) -> None:  # noqa: F811
    seed(fake, LEGACY)
    existing = make_driver(fake).existing()  # type: ignore[arg-type]
    assert existing.unreadable == ()
    assert not any("was-open" in o for o in existing.origins)  # disabled: GCP ignores it

    def decided(direction: Direction, src: str, dst: str, protocol: int, port: int) -> Action:
        rules = [r for r in existing.ruleset.rules if r.direction is direction]
        return decide(rules, Action.DENY, Flow.of(src, dst, protocol, port, src_port=40000))[0]

    assert decided(Direction.INGRESS, "10.30.2.5", "10.30.3.11", 6, 5432) is Action.PERMIT
    assert decided(Direction.INGRESS, "10.30.2.66", "10.30.3.11", 6, 5432) is Action.DENY
    assert decided(Direction.INGRESS, "fd00:99::1", "fd00:30:3::11", 6, 22) is Action.PERMIT
    assert decided(Direction.INGRESS, "198.51.100.1", "10.30.3.12", 6, 80) is Action.DENY  # implied deny
    assert decided(Direction.EGRESS, "10.30.3.11", "198.51.100.1", 6, 25) is Action.DENY
    assert decided(Direction.EGRESS, "10.30.3.11", "198.51.100.1", 6, 443) is Action.PERMIT  # implied allow
    assert existing.origins[0] == "firewall rule zz-block-one-app (priority 900)"  # the deny first, not by name

    adoption = propose(project, POINT, existing)
    assert adoption.equivalent, adoption.to_dict()
    actions = {r["description"].removeprefix("adopted from ").split(" (")[0]: r["action"]
               for r in adoption.policy["rules"]}
    assert actions["firewall rule zz-block-one-app"] == "deny"
    assert actions["firewall rule legacy-db-from-app"] == "allow"


def test_a_rule_matching_instances_by_tag_is_named_and_blocks_the_proof(fake: object,  # noqa: F811
                                                                         project: Project) -> None:
    seed(fake, {"legacy-from-app-tag": {"targetTags": ["shop-dev-db"], "sourceTags": ["shop-dev-app"],
                                        "allowed": [{"IPProtocol": "tcp", "ports": ["5432"]}]}})
    existing = make_driver(fake).existing()  # type: ignore[arg-type]
    (problem,) = existing.unreadable
    assert problem.startswith("firewall rule legacy-from-app-tag: matches sourceTags ['shop-dev-app']")
    assert not propose(project, POINT, existing).equivalent


def test_a_rule_for_other_targets_is_named_not_assumed_away(fake: object, project: Project) -> None:  # noqa: F811
    seed(fake, {"other-team-frontend": {"targetTags": ["frontend"], "sourceRanges": ["0.0.0.0/0"],
                                        "allowed": [{"IPProtocol": "tcp", "ports": ["80"]}]}})
    existing = make_driver(fake).existing()  # type: ignore[arg-type]
    (problem,) = existing.unreadable
    assert problem.startswith("firewall rule other-team-frontend: targets tags ['frontend'], not the point's own")
    assert not propose(project, POINT, existing).equivalent
