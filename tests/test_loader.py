"""Tests of the policy loader: file discovery, validation diagnostics, merging and cross-references."""

from __future__ import annotations

import graphlib
import itertools
import textwrap
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.model.errors import Diagnostic, Location, PolicyError, Severity
from orchestrator.model.policy import Exists, Not, RuleAction
from orchestrator.model.rules import Mode
from orchestrator.model.suggest import closest, did_you_mean
from orchestrator.policy.loader import LoadedPolicy, load_policy
from orchestrator.policy.references import find_cycles
from orchestrator.policy.validation import validate_file
from orchestrator.policy.yamlsource import load_yaml

TODAY = date(2026, 6, 1)
HEAD = "apiVersion: microseg/v1\n"


@pytest.fixture
def policy_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``policies/`` under a fresh current directory, so diagnostics read ``policies/<file>``."""
    monkeypatch.chdir(tmp_path)
    directory = Path("policies")
    directory.mkdir()
    return directory


def write(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


def load(directory: Path, files: dict[str, str]) -> LoadedPolicy:
    write(directory, files)
    return load_policy(directory, today=TODAY)


def problems(directory: Path, files: dict[str, str]) -> list[str]:
    """Every diagnostic of a failing load, as printed: ``file:line:col: severity: message (hint)``."""
    write(directory, files)
    with pytest.raises(PolicyError) as info:
        load_policy(directory, today=TODAY)
    return [str(d) for d in info.value.diagnostics]


# --------------------------------------------------------------------------- a valid policy

VALID = {
    "10-groups.yaml": """
        apiVersion: microseg/v1
        defaults:
          action: deny
          expiry_warning_days: 7
        groups:
          web:
            selector:
              app: shop
              tier: [web, edge]
              quarantine: {exists: false}
              zone: {not: dmz}
          app: {selector: {app: shop, tier: app}}
          dns: {cidrs: [10.0.0.53/32, "fd00::53/128"]}
          everything-prod:
            groups: [web, app]
            except: [10.9.0.0/16]
        services:
          https: {protocol: tcp, ports: [443]}
          dns: {protocol: udp, ports: 53}
          dns-tcp: {protocol: tcp, ports: [53]}
        service_groups:
          dns-all: [dns, dns-tcp]
        """,
    "20-rules.yml": """
        apiVersion: microseg/v1
        rules:
          - name: web-to-app
            from: web
            to: app
            services: [https, "tcp/8443"]
            action: allow
          - name: block-dns
            from: [web]
            to: dns
            services: dns-all
            action: deny
          - name: urgent-allow
            from: any
            to: dns
            services: [dns-all]
            action: allow
            priority: 10
        """,
    "sub/30-more.yaml": """
        apiVersion: microseg/v1
        rules:
          - name: app-to-dns
            from: app
            to: dns
            services: [dns-all]
            action: allow
          - name: deny-web-web
            from: web
            to: web
            services: [any]
            action: deny
            expires: 2026-06-01
        """,
}


def test_valid_multi_file_policy_merges_in_file_order(policy_dir: Path) -> None:
    loaded = load(policy_dir, VALID)
    policy = loaded.policy
    assert loaded.files == ("policies/10-groups.yaml", "policies/20-rules.yml", "policies/sub/30-more.yaml")
    assert loaded.diagnostics == ()
    assert list(policy.groups) == ["web", "app", "dns", "everything-prod"]
    assert list(policy.services) == ["https", "dns", "dns-tcp"]
    assert policy.service_groups == {"dns-all": ("dns", "dns-tcp")}
    assert policy.defaults.expiry_warning_days == 7
    assert policy.defaults.action is RuleAction.DENY
    assert policy.groups["web"].selector is not None
    assert policy.groups["web"].selector.root["quarantine"] == Exists(exists=False)
    assert policy.groups["web"].selector.root["zone"] == Not(**{"not": ("dmz",)})
    assert policy.services["dns"].ports == ((53, 53),)
    assert [r.name for r in policy.rules] == ["web-to-app", "block-dns", "urgent-allow", "app-to-dns", "deny-web-web"]
    # priority first, then deny before allow, then file order
    assert [r.name for r in policy.ordered_rules()] == [
        "urgent-allow", "block-dns", "deny-web-web", "web-to-app", "app-to-dns",
    ]


def test_a_file_mode_watches_its_deny_rules_unless_a_rule_says_otherwise(policy_dir: Path) -> None:
    """``mode: monitor`` at the top of a file is the mode of that file's deny rules (a rule set watched before it
    is enforced); a rule's own ``mode`` wins, allow rules never block and keep none, other files are untouched."""
    files = {**VALID, "sub/30-more.yaml": VALID["sub/30-more.yaml"].rstrip().replace(
        "apiVersion: microseg/v1\n", "apiVersion: microseg/v1\n        mode: monitor\n", 1) + textwrap.indent(
        textwrap.dedent("""
          - name: deny-app-web
            from: app
            to: web
            services: [https]
            action: deny
            mode: enforce
        """), " " * 10)}
    loaded = load(policy_dir, files)
    assert loaded.diagnostics == ()
    modes = {r.name: r.mode for r in loaded.policy.rules}
    assert modes == {"web-to-app": None, "block-dns": None, "urgent-allow": None, "app-to-dns": None,
                     "deny-web-web": Mode.MONITOR, "deny-app-web": Mode.ENFORCE}
    # a file with an error elsewhere: its valid rules are still read with the file's mode
    salvaged = {**files, "sub/30-more.yaml": files["sub/30-more.yaml"] + textwrap.indent(textwrap.dedent("""
        groups:
          bad: {cidrs: [not-a-cidr]}
    """), " " * 8)}
    with pytest.raises(PolicyError) as caught:
        load(policy_dir, salvaged)
    assert any("not-a-cidr" in d.message or "bad" in d.message for d in caught.value.diagnostics)
    data, positions, _ = load_yaml(policy_dir / "sub" / "30-more.yaml")
    content, problems = validate_file(data, positions)
    assert problems and content is not None
    assert {e.name: e.value.mode for e in content.entries if e.kind == "rule" and e.value is not None} == {
        "app-to-dns": None, "deny-web-web": Mode.MONITOR, "deny-app-web": Mode.ENFORCE}
    broken = {**VALID, "sub/30-more.yaml": VALID["sub/30-more.yaml"].replace(
        "apiVersion: microseg/v1\n", "apiVersion: microseg/v1\n        mode: watch\n", 1)}
    with pytest.raises(PolicyError) as caught:
        load(policy_dir, broken)
    assert any("30-more.yaml:2" in str(d.location) and "mode" in d.message for d in caught.value.diagnostics)


def test_sources_locate_definitions_and_references(policy_dir: Path) -> None:
    sources = load(policy_dir, VALID).sources
    assert sources.locate("group", "app") == Location("policies/10-groups.yaml", 12, 3)
    assert sources.locate("service", "dns") == Location("policies/10-groups.yaml", 19, 3)
    assert sources.locate("service_group", "dns-all") == Location("policies/10-groups.yaml", 22, 3)
    assert sources.locate("rule", "app-to-dns") == Location("policies/sub/30-more.yaml", 3, 11)
    assert sources.locate("rule", "nope") is None
    assert sources.locate("group", "web-to-app") is None
    # a list item, a scalar written where a list is allowed, a service-group member
    assert sources.locate_ref("rule", "web-to-app", "services", 1) == Location("policies/20-rules.yml", 6, 23)
    assert sources.locate_ref("rule", "web-to-app", "from", 0) == Location("policies/20-rules.yml", 4, 11)
    assert sources.locate_ref("rule", "block-dns", "from", 0) == Location("policies/20-rules.yml", 9, 12)
    assert sources.locate_ref("service_group", "dns-all", "members", 1) == Location("policies/10-groups.yaml", 22, 18)
    assert sources.locate_ref("group", "everything-prod", "groups", 1) == Location("policies/10-groups.yaml", 15, 19)
    assert sources.locate_field("rule", "deny-web-web", "expires") == Location("policies/sub/30-more.yaml", 13, 14)
    assert sources.defaults == Location("policies/10-groups.yaml", 2, 1)


def test_files_sorted_by_path_parts_hidden_and_other_files_skipped(policy_dir: Path) -> None:
    rule = "apiVersion: microseg/v1\nrules: [{{name: {0}, from: any, to: any, services: any, action: allow}}]\n"
    write(policy_dir, {
        "a-b.yaml": rule.format("dash"),
        "a/z.yaml": rule.format("nested"),
        "b.yml": rule.format("yml"),
        ".hidden.yaml": "not: [valid",
        ".git/x.yaml": "not: [valid",
        "README.md": "# not YAML: [",
        "notes.txt": "{",
    })
    loaded = load_policy(policy_dir, today=TODAY)
    assert loaded.files == ("policies/a/z.yaml", "policies/a-b.yaml", "policies/b.yml")
    assert [r.name for r in loaded.policy.rules] == ["nested", "dash", "yml"]


def test_absolute_directory_shown_relative_to_cwd_when_below_it(policy_dir: Path, tmp_path: Path) -> None:
    write(policy_dir, {"bad.yaml": "rules: []\n"})
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "policies", today=TODAY)
    assert [d.location for d in info.value.diagnostics] == [Location("policies/bad.yaml", 1, 1)]


def test_directory_outside_cwd_is_shown_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    write(tmp_path / "pol", {"bad.yaml": "rules: []\n"})
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "pol", today=TODAY)
    assert info.value.diagnostics[0].location == Location(str(tmp_path / "pol" / "bad.yaml"), 1, 1)


# --------------------------------------------------------------------------- the directory itself


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"policy directory .*nowhere does not exist") as info:
        load_policy(tmp_path / "nowhere", today=TODAY)
    assert info.value.diagnostics[0].code == "io"


def test_file_instead_of_directory(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text(HEAD)
    with pytest.raises(PolicyError, match="is not a directory"):
        load_policy(tmp_path / "one.yaml", today=TODAY)


def test_directory_without_yaml_files(policy_dir: Path) -> None:
    write(policy_dir, {"readme.txt": "hello", "sub/x.json": "{}"})
    with pytest.raises(PolicyError) as info:
        load_policy(policy_dir, today=TODAY)
    assert str(info.value) == (
        "policy directory policies has no policy files\n  policies: error: no *.yaml or *.yml files here"
    )


# --------------------------------------------------------------------------- whole-file problems


def test_yaml_syntax_error_is_reported_and_other_files_still_checked(policy_dir: Path) -> None:
    assert problems(policy_dir, {
        "a.yaml": "apiVersion: microseg/v1\ngroups:\n  web: {selector: {app: [shop}\n",
        "b.yaml": HEAD + "rules:\n  - {name: r, from: web, to: any, services: tcp/80, action: alow}\n",
    }) == [
        "policies/a.yaml:3:30: error: YAML syntax error: expected ',' or ']', but got '}'",
        # the invalid rule's references are still checked, and 'web' is only defined in the unreadable a.yaml
        "policies/b.yaml:3:21: error: unknown group 'web' (define it under 'groups:', or use 'any')",
        "policies/b.yaml:3:61: error: action: expected 'allow' or 'deny', got 'alow' (did you mean 'allow'?)",
    ]


def test_empty_file(policy_dir: Path) -> None:
    assert problems(policy_dir, {"empty.yaml": "# nothing yet\n", "ok.yaml": HEAD}) == [
        "policies/empty.yaml: error: the file is empty (a policy file starts with 'apiVersion: microseg/v1'; "
        "delete the file if it is not needed)"
    ]


def test_file_that_is_not_a_mapping(policy_dir: Path) -> None:
    assert problems(policy_dir, {"list.yaml": "- apiVersion: microseg/v1\n", "text.yaml": "just text\n"}) == [
        "policies/list.yaml:1:1: error: a policy file must be a mapping (apiVersion, groups, services, …), got a list",
        "policies/text.yaml:1:1: error: a policy file must be a mapping (apiVersion, groups, services, …), "
        "got the text 'just text'",
    ]


def test_missing_and_wrong_api_version(policy_dir: Path) -> None:
    assert problems(policy_dir, {
        "a.yaml": "# shop\ngroups: {}\n",
        "b.yaml": "apiVersion: microseg/v2\n",
    }) == [
        "policies/a.yaml:2:1: error: missing required field 'apiVersion' (add 'apiVersion: microseg/v1' at the top "
        "of the file)",
        "policies/b.yaml:1:13: error: unsupported apiVersion 'microseg/v2' (use 'apiVersion: microseg/v1')",
    ]


def test_unbuildable_yaml_values_are_diagnostics_not_crashes(policy_dir: Path) -> None:
    found = problems(policy_dir, {
        "tag.yaml": "apiVersion: microseg/v1\ndescription: !secret x\n",
        "date.yaml": "apiVersion: microseg/v1\ndescription: 2026-13-01\n",
    })
    assert found == [
        "policies/date.yaml:2:14: error: YAML error: invalid value '2026-13-01': month must be in 1..12",
        "policies/tag.yaml:2:14: error: YAML error: could not determine a constructor for the tag '!secret'",
    ]


# --------------------------------------------------------------------------- field-level validation


def test_unknown_field_points_at_the_key_with_closest_name(policy_dir: Path) -> None:
    assert problems(policy_dir, {"shop.yaml": """
        apiVersion: microseg/v1
        grups: {}
        rules:
          - name: r
            form: any
            to: any
            services: any
            action: allow
            prority: 5
            colour: red
        """}) == [
        "policies/shop.yaml:2:1: error: unknown field 'grups' (did you mean 'groups'?)",
        "policies/shop.yaml:4:5: error: missing required field 'from'",
        "policies/shop.yaml:5:5: error: unknown field 'form' (did you mean 'from'?)",
        "policies/shop.yaml:9:5: error: unknown field 'prority' (did you mean 'priority'?)",
        "policies/shop.yaml:10:5: error: unknown field 'colour'",
    ]


def test_invalid_cidr_host_bits(policy_dir: Path) -> None:
    assert problems(policy_dir, {"net.yaml": """
        apiVersion: microseg/v1
        groups:
          db: {cidrs: [10.0.0.0/24, 10.0.0.1/24], except: [nonsense]}
        """}) == [
        "policies/net.yaml:3:29: error: invalid CIDR '10.0.0.1/24': host bits set (did you mean 10.0.0.0/24?)",
        "policies/net.yaml:3:52: error: invalid CIDR 'nonsense': 'nonsense' does not appear to be an IPv4 or IPv6 "
        "network",
    ]


def test_missing_required_field_points_at_the_rule(policy_dir: Path) -> None:
    errors = problems(policy_dir, {"r.yaml": HEAD + "rules:\n  - name: web\n    from: any\n    to: any\n"
                                   "    action: allow\n"})
    assert errors == ["policies/r.yaml:3:5: error: missing required field 'services'"]


def test_value_errors_say_what_is_expected(policy_dir: Path) -> None:
    assert problems(policy_dir, {"v.yaml": """
        apiVersion: microseg/v1
        defaults: {mode: enforced, expiry_warning_days: -1}
        groups:
          web/x: {external: internett}
          ext: {external: any, cidrs: [10.0.0.0/8]}
          5: {external: any}
        services:
          s1: {protocol: tcpp, ports: ["80", "90-80", 70000]}
          s2: {protocol: icmp, type: 300}
          s3: {protocol: udp, type: 3}
        rules:
          - name: r
            from: [any, 5]
            to: []
            services: [tcp/443]
            action: allow
            priority: 70000
            log: maybe
            expires: "2026-02-30"
          - not a rule
        """}) == [
        "policies/v.yaml:2:18: error: mode: expected 'enforce' or 'monitor', got 'enforced' "
        "(did you mean 'enforce'?)",
        "policies/v.yaml:2:49: error: expiry_warning_days: must be at least 0, got -1",
        "policies/v.yaml:4:3: error: invalid name 'web/x': use letters, digits, '_', '.', '-' (no '/')",
        "policies/v.yaml:4:21: error: external: expected 'internet', 'any' or 'private', got 'internett' "
        "(did you mean 'internet'?)",
        "policies/v.yaml:5:8: error: a group needs exactly one of selector, cidrs, external, groups "
        "(found: cidrs, external)",
        "policies/v.yaml:6:3: error: invalid name 5: a name must be text (quote it: \"5\")",
        "policies/v.yaml:8:18: error: unknown protocol 'tcpp'",
        "policies/v.yaml:8:38: error: inverted port range '90-80': 90 > 80",
        "policies/v.yaml:8:47: error: port 70000 is outside 0-65535",
        "policies/v.yaml:9:30: error: type: must be at most 255, got 300",
        "policies/v.yaml:10:7: error: type/code need protocol icmp or icmpv6, not udp",
        "policies/v.yaml:13:17: error: entry 2 of 'from': expected a string, got 5",
        "policies/v.yaml:14:9: error: to: must not be empty",
        "policies/v.yaml:17:15: error: priority: must be at most 65535, got 70000",
        "policies/v.yaml:18:10: error: log: expected true or false, got 'maybe'",
        "policies/v.yaml:19:14: error: expires: invalid date '2026-02-30': day value is outside expected range",
        "policies/v.yaml:20:5: error: rule 2: expected a mapping, got 'not a rule'",
    ]


def test_sections_and_items_of_the_wrong_shape(policy_dir: Path) -> None:
    assert problems(policy_dir, {"shape.yaml": """
        apiVersion: microseg/v1
        5: x
        description: 5
        defaults: [1]
        groups: [a]
        services: {s: null, t: 5, u: {protocol: tcp, ports: {a: 1}}}
        service_groups: {x: null, z: [[a]]}
        rules:
          - {}
          - name: r
        """}) == [
        "policies/shape.yaml:2:1: error: invalid key 5: keys must be text",
        "policies/shape.yaml:3:14: error: description: expected a string, got 5",
        "policies/shape.yaml:4:11: error: defaults: expected a mapping, got a list",
        "policies/shape.yaml:5:9: error: groups: expected a mapping, got a list",
        "policies/shape.yaml:6:15: error: service 's': expected a mapping, got nothing (null)",
        "policies/shape.yaml:6:24: error: service 't': expected a mapping, got 5",
        "policies/shape.yaml:6:53: error: ports: expected a list, got a mapping",
        "policies/shape.yaml:7:21: error: service group 'x': expected a list, got nothing (null)",
        "policies/shape.yaml:7:31: error: entry 1 of service group 'z': expected a string, got a list",
        "policies/shape.yaml:9:5: error: missing required fields 'name', 'from', 'to', 'services' and 'action'",
        "policies/shape.yaml:10:5: error: missing required fields 'from', 'to', 'services' and 'action'",
    ]


def test_scalar_where_list_allowed_reports_the_item_error_once(policy_dir: Path) -> None:
    assert problems(policy_dir, {"r.yaml": HEAD + "rules:\n  - {name: r, from: 5, to: any, services: 443, "
                                 "action: deny}\n"}) == [
        "policies/r.yaml:3:21: error: from: expected a string, got 5",
        "policies/r.yaml:3:43: error: services: expected a string, got 443",
    ]


def test_union_errors_are_condensed_to_one_message(policy_dir: Path) -> None:
    expected = "expected a string, a list of strings, {exists: true|false} or {not: value or [values]}"
    assert problems(policy_dir, {"sel.yaml": """
        apiVersion: microseg/v1
        groups:
          g:
            selector:
              a: {exists: maybe}
              b: {nott: dmz}
              c: [web, {x: 1}]
              d: true
              e: null
              f: {exists: true, extra: 1}
              g: 5
              h: {not: [1, x]}
          empty: {selector: {}}
        """}) == [
        "policies/sel.yaml:5:19: error: exists: expected true or false, got 'maybe'",
        f"policies/sel.yaml:6:10: error: label 'b': {expected}, got a mapping "
        "(did you mean 'not' instead of 'nott'?)",
        "policies/sel.yaml:7:16: error: entry 2 of label 'c': expected a string, got a mapping",
        f"policies/sel.yaml:8:10: error: label 'd': {expected}, got true",
        f"policies/sel.yaml:9:10: error: label 'e': {expected}, got nothing (null)",
        "policies/sel.yaml:10:25: error: unknown field 'extra'",
        "policies/sel.yaml:13:21: error: a selector needs at least one label condition "
        "(use group 'any' for everything)",
    ]


# --------------------------------------------------------------------------- item by item


def test_valid_items_of_an_invalid_file_are_still_cross_checked(policy_dir: Path) -> None:
    assert problems(policy_dir, {"mixed.yaml": """
        apiVersion: microseg/v1
        groups:
          web: {selector: {app: web}}
          broken: {cidrs: [10.0.0.1/8]}
        services:
          bad-svc: {protocol: tcp, ports: [99999]}
        rules:
          - name: invalid-rule
            from: web
            to: web
            services: [any]
            action: permit
          - name: uses-broken
            from: broken
            to: web
            services: [bad-svc]
            action: allow
          - name: typo
            from: wbe
            to: web
            services: [htps]
            action: allow
        """}) == [
        "policies/mixed.yaml:4:20: error: invalid CIDR '10.0.0.1/8': host bits set (did you mean 10.0.0.0/8?)",
        "policies/mixed.yaml:6:36: error: port 99999 is outside 0-65535",
        "policies/mixed.yaml:12:13: error: action: expected 'allow' or 'deny', got 'permit'",
        "policies/mixed.yaml:19:11: error: unknown group 'wbe' (did you mean 'web'?)",
        "policies/mixed.yaml:21:16: error: unknown service 'htps' (define it under 'services:' or "
        "'service_groups:', or write an inline spec such as tcp/443)",
    ]


INLINE_HINT = "inline specs: tcp/443, tcp/8000-8080, udp/53, icmp/8, icmp/3/4, proto/47, any"
SERVICE_HINT = "define it under 'services:' or 'service_groups:', or write an inline spec such as tcp/443"
GROUP_HINT = "define it under 'groups:', or use 'any'"


def test_references_of_an_invalid_rule_are_still_checked(policy_dir: Path) -> None:
    write(policy_dir, {"bad.yaml": """
        apiVersion: microseg/v1
        groups:
          web: {selector: {tier: web}}
        rules:
          - name: r1
            form: web
            to: wbe
            services: [tcp/70000, nosuch]
            action: allow
        """})
    with pytest.raises(PolicyError) as info:
        load_policy(policy_dir, today=TODAY)
    found = [(str(d.location), d.message, d.hint, d.code) for d in info.value.diagnostics]
    assert found == [
        ("policies/bad.yaml:5:5", "missing required field 'from'", None, "missing-field"),
        ("policies/bad.yaml:6:5", "unknown field 'form'", "did you mean 'from'?", "unknown-field"),
        ("policies/bad.yaml:7:9", "unknown group 'wbe'", "did you mean 'web'?", "unknown-reference"),
        ("policies/bad.yaml:8:16", "invalid service 'tcp/70000': port '70000' is outside 0-65535", INLINE_HINT,
         "invalid-service"),
        ("policies/bad.yaml:8:27", "unknown service 'nosuch'", SERVICE_HINT, "unknown-reference"),
    ]
    assert str(info.value).splitlines()[0] == "policy policies has 5 errors"


def test_members_of_invalid_groups_of_groups_and_service_groups_are_still_checked(policy_dir: Path) -> None:
    assert problems(policy_dir, {"g.yaml": """
        apiVersion: microseg/v1
        groups:
          web: {selector: {tier: web}}
          both: {groups: [web, wbe], cidrs: [10.0.0.0/8]}
          typo: {groups: apps, colour: red}
          bad/name: {groups: [web, nope]}
        services:
          https: {protocol: tcp, ports: [443]}
        service_groups:
          tls/x: [htps, tcp/22]
        """}) == [
        "policies/g.yaml:4:9: error: a group needs exactly one of selector, cidrs, external, groups "
        "(found: cidrs, groups)",
        "policies/g.yaml:4:24: error: unknown group 'wbe' (did you mean 'web'?)",
        f"policies/g.yaml:5:18: error: unknown group 'apps' ({GROUP_HINT})",
        "policies/g.yaml:5:24: error: unknown field 'colour'",
        "policies/g.yaml:6:3: error: invalid name 'bad/name': use letters, digits, '_', '.', '-' (no '/')",
        f"policies/g.yaml:6:28: error: unknown group 'nope' ({GROUP_HINT})",
        "policies/g.yaml:10:3: error: invalid name 'tls/x': use letters, digits, '_', '.', '-' (no '/')",
        "policies/g.yaml:10:11: error: unknown service 'htps' (did you mean 'https'?)",
        "policies/g.yaml:10:17: error: 'tcp/22' is an inline service spec: a service group lists service and "
        "service-group names (define a service for it under 'services:')",
    ]


def test_a_reference_field_that_failed_validation_is_not_checked_again(policy_dir: Path) -> None:
    assert problems(policy_dir, {"f.yaml": """
        apiVersion: microseg/v1
        groups:
          web: {selector: {tier: web}}
          numbers: {groups: [wbe, 5]}
        service_groups:
          mixed: [htps, [a]]
        rules:
          - name: r2
            from: [wbe, a/b]
            to: 5
            services: []
            action: allow
        """}) == [
        "policies/f.yaml:4:27: error: entry 2 of 'groups': expected a string, got 5",
        "policies/f.yaml:6:17: error: entry 2 of service group 'mixed': expected a string, got a list",
        "policies/f.yaml:9:17: error: invalid name 'a/b': use letters, digits, '_', '.', '-' (no '/')",
        "policies/f.yaml:10:9: error: to: expected a string, got 5",
        "policies/f.yaml:11:15: error: services: must not be empty",
    ]


def test_eight_mistakes_in_three_files_are_all_reported_in_one_run(policy_dir: Path) -> None:
    files = {
        "groups.yaml": """
            apiVersion: microseg/v1
            groups:
              web: {selector: {app: shop, tier: web}}
              app: {selector: {app: shop, tier: app}}
              lan: {cidrs: [192.168.1.1/24]}
              any: {external: any}
            """,
        "services.yaml": """
            apiVersion: microseg/v1
            services:
              https: {protocol: tcp, ports: [443]}
              web: {protocol: tcp, ports: [80], colour: blue}
            service_groups:
              front: [https, htp]
            """,
        "rules.yaml": """
            apiVersion: microseg/v1
            rules:
              - name: web-to-app
                form: web
                to: app
                services: [https]
                action: allow
              - name: app-to-db
                from: app
                to: db-prod
                services: [https, tcp/99999]
                action: allow
              - name: web-to-app
                from: web
                to: app
                services: [front]
                action: deny
            """,
    }
    # 8 mistakes; the misspelt key 'form' is both an unknown field and a missing 'from'
    assert problems(policy_dir, files) == [
        "policies/groups.yaml:5:17: error: invalid CIDR '192.168.1.1/24': host bits set "
        "(did you mean 192.168.1.0/24?)",
        "policies/groups.yaml:6:3: error: group name 'any' is reserved: it always means every IPv4 and IPv6 address "
        "(rename the group; rules can use 'any' without defining it)",
        "policies/rules.yaml:3:5: error: missing required field 'from'",
        "policies/rules.yaml:4:5: error: unknown field 'form' (did you mean 'from'?)",
        "policies/rules.yaml:10:9: error: unknown group 'db-prod' (define it under 'groups:', or use 'any')",
        "policies/rules.yaml:11:23: error: invalid service 'tcp/99999': port '99999' is outside 0-65535 "
        "(inline specs: tcp/443, tcp/8000-8080, udp/53, icmp/8, icmp/3/4, proto/47, any)",
        "policies/rules.yaml:13:11: error: duplicate rule 'web-to-app' (first defined at policies/rules.yaml:3:11)",
        "policies/services.yaml:4:37: error: unknown field 'colour'",
        "policies/services.yaml:6:18: error: unknown service 'htp' (did you mean 'https'?)",
    ]


# --------------------------------------------------------------------------- merging


def test_duplicates_across_and_within_files_name_both_places(policy_dir: Path) -> None:
    assert problems(policy_dir, {
        "a.yaml": """
            apiVersion: microseg/v1
            defaults: {action: deny}
            groups:
              web: {selector: {app: web}}
              web: {selector: {app: other}}
            services:
              https: {protocol: tcp, ports: [443]}
            service_groups:
              tls: [https]
            rules:
              - {name: r1, from: web, to: any, services: https, action: allow}
              - {name: r1, from: web, to: any, services: https, action: deny}
            """,
        "b.yaml": """
            apiVersion: microseg/v1
            defaults: {mode: monitor}
            groups:
              web: {cidrs: [10.0.0.0/8]}
            services:
              https: {protocol: tcp, ports: [8443]}
            service_groups:
              tls: [https]
            """,
    }) == [
        "policies/a.yaml:5:3: error: duplicate key 'web' (first defined at policies/a.yaml:4:3)",
        "policies/a.yaml:12:12: error: duplicate rule 'r1' (first defined at policies/a.yaml:11:12)",
        "policies/b.yaml:2:1: error: defaults are defined in more than one file "
        "(first defined at policies/a.yaml:2:1; keep a single defaults section)",
        "policies/b.yaml:4:3: error: duplicate group 'web' (first defined at policies/a.yaml:4:3)",
        "policies/b.yaml:6:3: error: duplicate service 'https' (first defined at policies/a.yaml:7:3)",
        "policies/b.yaml:8:3: error: duplicate service group 'tls' (first defined at policies/a.yaml:9:3)",
    ]


def test_an_invalid_definition_still_counts_for_duplicates(policy_dir: Path) -> None:
    assert problems(policy_dir, {
        "a.yaml": HEAD + "groups:\n  web: {cidrs: [300.0.0.0/8]}\n",
        "b.yaml": HEAD + "groups:\n  web: {cidrs: [10.0.0.0/8]}\n",
    }) == [
        "policies/a.yaml:3:17: error: invalid CIDR '300.0.0.0/8': '300.0.0.0/8' does not appear to be an IPv4 or "
        "IPv6 network",
        "policies/b.yaml:3:3: error: duplicate group 'web' (first defined at policies/a.yaml:3:3)",
    ]


def test_reserved_and_ambiguous_names(policy_dir: Path) -> None:
    assert problems(policy_dir, {"n.yaml": """
        apiVersion: microseg/v1
        groups:
          any: {cidrs: [0.0.0.0/0]}
        services:
          "443": {protocol: tcp, ports: [443]}
          dns: {protocol: udp, ports: [53]}
          dns-tcp: {protocol: tcp, ports: [53]}
        service_groups:
          dns: [dns-tcp]
        """}) == [
        "policies/n.yaml:3:3: error: group name 'any' is reserved: it always means every IPv4 and IPv6 address "
        "(rename the group; rules can use 'any' without defining it)",
        "policies/n.yaml:5:3: error: service name '443' would be read as an inline service spec "
        "(use a name with a letter in it, e.g. 'svc-443')",
        "policies/n.yaml:9:3: error: 'dns' is both a service and a service group "
        "(the service is defined at policies/n.yaml:6:3)",
    ]


# --------------------------------------------------------------------------- references


REFS = """
    apiVersion: microseg/v1
    groups:
      web-prod: {selector: {app: web}}
      app-prod: {selector: {app: app}}
      all-prod: {groups: [web-prod, app-prd, any]}
    services:
      https: {protocol: tcp, ports: [443]}
      dns: {protocol: udp, ports: [53]}
    service_groups:
      basics: [https, dnss, tcp/22]
    rules:
      - name: r1
        from: [web-prod, web-prd]
        to: totally-unknown
        services: [https, basics, htps, tcp/80, udp/1-2-3, foo/1, icmp/300, zzz]
        action: allow
"""


def test_unknown_names_and_invalid_inline_specs_are_located_exactly(policy_dir: Path) -> None:
    assert problems(policy_dir, {"refs.yaml": REFS}) == [
        "policies/refs.yaml:5:33: error: unknown group 'app-prd' (did you mean 'app-prod'?)",
        "policies/refs.yaml:10:19: error: unknown service 'dnss' (did you mean 'dns'?)",
        "policies/refs.yaml:10:25: error: 'tcp/22' is an inline service spec: a service group lists service and "
        "service-group names (define a service for it under 'services:')",
        "policies/refs.yaml:13:22: error: unknown group 'web-prd' (did you mean 'web-prod'?)",
        "policies/refs.yaml:14:9: error: unknown group 'totally-unknown' (define it under 'groups:', or use 'any')",
        "policies/refs.yaml:15:31: error: unknown service 'htps' (did you mean 'https'?)",
        "policies/refs.yaml:15:45: error: invalid service 'udp/1-2-3': invalid port '1-2-3': use a number or 'lo-hi' "
        "(inline specs: tcp/443, tcp/8000-8080, udp/53, icmp/8, icmp/3/4, proto/47, any)",
        "policies/refs.yaml:15:56: error: invalid service 'foo/1': unknown protocol 'foo' "
        "(inline specs: tcp/443, tcp/8000-8080, udp/53, icmp/8, icmp/3/4, proto/47, any)",
        "policies/refs.yaml:15:63: error: invalid service 'icmp/300': type: input should be less than or equal to 255 "
        "(inline specs: tcp/443, tcp/8000-8080, udp/53, icmp/8, icmp/3/4, proto/47, any)",
        "policies/refs.yaml:15:73: error: unknown service 'zzz' (define it under 'services:' or 'service_groups:', "
        "or write an inline spec such as tcp/443)",
    ]


def test_unknown_reference_diagnostics_carry_codes(policy_dir: Path) -> None:
    write(policy_dir, {"refs.yaml": REFS})
    with pytest.raises(PolicyError) as info:
        load_policy(policy_dir, today=TODAY)
    codes = [d.code for d in info.value.diagnostics]
    assert codes.count("unknown-reference") == 6
    assert codes.count("invalid-service") == 4
    assert str(info.value).splitlines()[0] == "policy policies has 10 errors"


def test_cycles_in_groups_and_service_groups_are_named(policy_dir: Path) -> None:
    assert problems(policy_dir, {"c.yaml": """
        apiVersion: microseg/v1
        groups:
          a: {groups: [b]}
          b: {groups: [c]}
          c: {groups: [x, a]}
          x: {cidrs: [10.0.0.0/8]}
          self: {groups: self}
        services:
          ssh: {protocol: tcp, ports: [22]}
        service_groups:
          one: [ssh, two]
          two: [one]
        """}) == [
        "policies/c.yaml:5:19: error: groups form a cycle: a → b → c → a (a group of groups cannot contain itself)",
        "policies/c.yaml:7:18: error: groups form a cycle: self → self (a group of groups cannot contain itself)",
        "policies/c.yaml:12:9: error: service groups form a cycle: one → two → one "
        "(a service group cannot contain itself)",
    ]


@given(st.dictionaries(st.sampled_from("abcdef"), st.lists(st.sampled_from("abcdefg"), max_size=4)))
def test_find_cycles_finds_a_cycle_exactly_when_there_is_one(edges: dict[str, list[str]]) -> None:
    sorter = graphlib.TopologicalSorter({node: [m for m in members if m in edges] for node, members in edges.items()})
    try:
        sorter.prepare()
        acyclic = True
    except graphlib.CycleError:
        acyclic = False
    cycles = find_cycles(edges)
    assert (cycles == []) == acyclic
    for cycle, index in cycles:
        assert cycle[0] == cycle[-1]
        assert all(b in edges[a] for a, b in itertools.pairwise(cycle))
        assert edges[cycle[-2]][index] == cycle[-1]


# --------------------------------------------------------------------------- expiry and the result


def test_expired_rule_is_a_warning_and_stays_in_the_policy(policy_dir: Path) -> None:
    loaded = load(policy_dir, {"r.yaml": """
        apiVersion: microseg/v1
        rules:
          - {name: old, from: any, to: any, services: tcp/22, action: allow, expires: 2026-01-01}
          - {name: today, from: any, to: any, services: tcp/23, action: allow, expires: 2026-06-01}
          - {name: later, from: any, to: any, services: tcp/24, action: allow, expires: 2026-06-02}
        """})
    assert [str(d) for d in loaded.diagnostics] == [
        "policies/r.yaml:3:79: warning: rule 'old' expired on 2026-01-01: it is not compiled "
        "(remove the rule or move its expiry date)",
    ]
    assert loaded.diagnostics[0].severity is Severity.WARNING
    assert loaded.diagnostics[0].code == "expired"
    assert [r.name for r in loaded.policy.rules] == ["old", "today", "later"]
    assert [r.name for r in loaded.policy.active_rules(TODAY)] == ["today", "later"]


def test_policy_error_carries_warnings_too_sorted_by_file_line_column(policy_dir: Path) -> None:
    write(policy_dir, {
        "b.yaml": HEAD + "rules:\n  - {name: old, from: nope, to: any, services: any, action: deny, "
                         "expires: 2020-01-01}\n",
        "a.yaml": HEAD + "groups:\n  g: {cidrs: [10.0.0.1/8]}\n  h: {cidrs: 10.0.0.0/8}\n",
    })
    with pytest.raises(PolicyError) as info:
        load_policy(policy_dir, today=TODAY)
    found = [(d.location, d.severity) for d in info.value.diagnostics]
    assert found == [
        (Location("policies/a.yaml", 3, 15), Severity.ERROR),
        (Location("policies/a.yaml", 4, 14), Severity.ERROR),
        (Location("policies/b.yaml", 3, 23), Severity.ERROR),
        (Location("policies/b.yaml", 3, 76), Severity.WARNING),
    ]
    assert info.value.message == "policy policies has 3 errors"


def test_one_error_is_singular(policy_dir: Path) -> None:
    write(policy_dir, {"a.yaml": "rules: []\n"})
    with pytest.raises(PolicyError) as info:
        load_policy(policy_dir, today=TODAY)
    assert info.value.message == "policy policies has 1 error"


def test_suggestions() -> None:
    assert closest("form", ["from", "to", "services"]) == "from"
    assert closest("web-prd", ["web-prod", "app-prod"]) == "web-prod"
    assert closest("xyz", ["from", "to"]) is None
    assert did_you_mean("htps", ["https", "dns"]) == "did you mean 'https'?"
    assert did_you_mean("same", ["same"]) is None


def test_diagnostic_objects_are_complete(policy_dir: Path) -> None:
    write(policy_dir, {"a.yaml": HEAD + "rules:\n  - {name: r, form: any, to: any, services: any, action: allow}\n"})
    with pytest.raises(PolicyError) as info:
        load_policy(policy_dir, today=TODAY)
    assert list(info.value.diagnostics) == [
        Diagnostic("missing required field 'from'", Location("policies/a.yaml", 3, 5), code="missing-field"),
        Diagnostic("unknown field 'form'", Location("policies/a.yaml", 3, 15), code="unknown-field",
                   hint="did you mean 'from'?"),
    ]
