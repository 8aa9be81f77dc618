"""Lint: every finding kind on small policies, and the worked example clean."""

from __future__ import annotations

from datetime import date

from orchestrator.compiler.compiler import prepare_policy
from orchestrator.compiler.lint import lint_policy
from orchestrator.model.errors import Severity
from orchestrator.model.policy import Policy

TODAY = date(2026, 11, 21)
GROUPS = {
    "web": {"selector": {"tier": "web"}},
    "db": {"selector": {"tier": "db"}},
    "internet": {"external": "internet"},
    "unused": {"cidrs": ["192.0.2.0/24"]},
}


def findings(shop_workloads, rules: list[dict], **extra: object) -> dict[str, list]:
    policy = Policy.model_validate({"groups": GROUPS, "rules": rules, **extra})
    out: dict[str, list] = {}
    for d in lint_policy(prepare_policy(policy, shop_workloads, today=TODAY)):
        out.setdefault(d.code, []).append(d)
    return out


def rule(name: str, src: str, dst: str, services: list[str], action: str = "allow", **extra: object) -> dict:
    return {"name": name, "from": src, "to": dst, "services": services, "action": action, **extra}


def test_redundant_and_conflicting_shadows(shop_workloads) -> None:
    found = findings(shop_workloads, [
        rule("wide", "web", "db", ["tcp/5000-6000"]),
        rule("narrow", "web", "db", ["tcp/5432"]),
        rule("block", "web", "db", ["tcp/5432"], action="deny", priority=2000),
        rule("ok", "db", "web", ["tcp/443"]),
    ])
    [redundant] = found["shadowed"]
    assert redundant.severity is Severity.WARNING and "'narrow' is redundant: 'wide'" in redundant.message
    [conflict] = found["shadowed-conflict"]
    assert conflict.severity is Severity.ERROR and "'block' (deny) never takes effect" in conflict.message
    assert "'wide'" in conflict.message


def test_broad_rules(shop_workloads) -> None:
    found = findings(shop_workloads, [
        rule("everything", "any", "any", ["any"]),
        rule("exposed", "internet", "db", ["tcp"]),
        rule("fine", "internet", "web", ["tcp/443"]),
    ])
    assert [d.message for d in found["any-to-any"]] == ["rule 'everything' allows any to any on every service"]
    [exposed] = found["internet-exposed"]
    assert "'exposed' exposes internal addresses (db) to internet on all ports" in exposed.message
    broad = [*found["any-to-any"], *found["internet-exposed"]]
    assert all("'fine'" not in d.message for d in broad)
    assert [d.message for d in found["shadowed"]][-1].startswith("rule 'fine' is redundant: 'everything'")


def test_unused_names_expiry_and_empty_groups(shop_workloads) -> None:
    found = findings(
        shop_workloads,
        [rule("old", "web", "db", ["tcp/1"], expires="2026-11-01"),
         rule("soon", "web", "db", ["tcp/2"], expires="2026-11-30", ticket="CHG-9"),
         rule("later", "web", "db", ["tcp/3"], expires="2027-06-30"),
         rule("ghost", "nobody", "db", ["tcp/4"], allow_empty=True)],
        services={"spare": {"protocol": "tcp", "ports": [9]}},
        service_groups={"bundle": ["spare"]},
    )
    assert [d.message for d in found["unused-group"]] == ["group 'internet' is not used by any rule",
                                                "group 'unused' is not used by any rule"]
    assert [d.message for d in found["unused-service"]] == ["service group 'bundle' is not used by any rule"]
    [expired] = found["expired"]
    assert expired.severity is Severity.ERROR and "'old' expired on 2026-11-01" in expired.message
    [expiring] = found["expiring"]
    assert "'soon' expires on 2026-11-30 (in 9 days)" in expiring.message and expiring.hint == "ticket: CHG-9"
    messages = sorted(d.message for d in found["empty-group"])
    assert messages == ["group 'nobody' resolves to no address",
                        "rule 'ghost': group 'nobody' resolves to no address; it would vanish"]
    assert all(d.severity is Severity.WARNING for d in found["empty-group"])  # allow_empty opted in


GROUPS["nobody"] = {"selector": {"tier": "none"}}
