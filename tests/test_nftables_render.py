"""nftables render and construction: golden scripts, what the renderer refuses, comments, settings."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.nftables import NftablesDriver
from drivers.nftables.layout import COMMENT_MAX_BYTES
from drivers.nftables.render import RenderError, render_rule, render_script
from drivers.nftables.transport import LocalRunner
from orchestrator.model.driver import DRIVER_METHODS, Connection, Driver, PointContext
from orchestrator.model.errors import PermanentDriverError, TransientDriverError
from orchestrator.model.rules import (
    ANY_ADDRESS,
    Action,
    AddressSet,
    Direction,
    Mode,
    Ordering,
    Provenance,
    Rule,
    Ruleset,
)
from tests.nft_helpers import needs_netns, network_namespace, nft

GOLDEN = Path(__file__).parent / "data" / "nftables"
A = AddressSet.of
IN, OUT = Direction.INGRESS, Direction.EGRESS
PERMIT, DENY = Action.PERMIT, Action.DENY


def golden_rules() -> tuple[Rule, ...]:
    web = Provenance(rules=("web-to-db", "admin"))
    return (
        Rule(PERMIT, IN, 6, A(["10.20.1.0/24", "10.20.9.7"]), A(["10.20.3.31"]), dst_ports=((5432, 5432),), log=True,
             provenance=web),
        Rule(PERMIT, IN, 6, A(["::/0"]), A(["fd00:20:3::31"]), dst_ports=((80, 80), (443, 443), (8000, 8080))),
        Rule(DENY, IN, 17, A(["0.0.0.0/0"]), A(["0.0.0.0/0"]), src_ports=((53, 53),), dst_ports=((1024, 65535),)),
        Rule(PERMIT, IN, 1, A(["192.0.2.0/24"]), A(["0.0.0.0/0"]), icmp_type=8, icmp_code=0),
        Rule(PERMIT, IN, 58, A(["::/0"]), A(["::/0"]), icmp_type=128),
        Rule(PERMIT, IN, 47, A(["198.51.100.1"]), A(["0.0.0.0/0"])),
        Rule(PERMIT, IN, 132, ANY_ADDRESS, ANY_ADDRESS),
        Rule(DENY, OUT, None, A(["0.0.0.0/0"]), A(["203.0.113.0/24"]), log=True),
        Rule(PERMIT, OUT, None, A(["::/0"]), A(["::/0"])),
    )


CASES = {
    "enforce": Ruleset("host1", Ordering.FIRST_MATCH, DENY, golden_rules()),
    "monitor-stateless": Ruleset("host1", Ordering.FIRST_MATCH, DENY, golden_rules(), Mode.MONITOR, stateful=False),
}


@pytest.fixture
def ns() -> Iterator[str]:
    with network_namespace() as name:
        yield name


@pytest.mark.parametrize("case", sorted(CASES))
def test_render_matches_golden_file(case: str) -> None:
    text = "\n".join(render_script(CASES[case], table="microseg")) + "\n"
    path = GOLDEN / f"{case}.nft"
    if os.environ.get("MICROSEG_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


@needs_netns
@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_file_is_valid_nft(ns: str, case: str) -> None:
    result = nft(ns, "-c", "-f", str(GOLDEN / f"{case}.nft"), check=False)
    assert result.returncode == 0, result.stderr


def ruleset(*rules: Rule, ordering: Ordering = Ordering.FIRST_MATCH) -> Ruleset:
    return Ruleset("host1", ordering, DENY, rules)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (Rule(PERMIT, IN, 6, A(["10.0.0.1", "fd00::1"]), A(["0.0.0.0/0"])), "mixes IPv4 and IPv6"),
        (Rule(PERMIT, IN, 6, A(["10.0.0.1"]), ANY_ADDRESS), "mixes IPv4 and IPv6"),
        (Rule(PERMIT, IN, 1, ANY_ADDRESS, ANY_ADDRESS, icmp_type=8), "only matches IPv4"),
        (Rule(PERMIT, IN, 58, ANY_ADDRESS, ANY_ADDRESS, icmp_type=1), "only matches IPv6"),
        (Rule(PERMIT, IN, 6, AddressSet(()), ANY_ADDRESS), "empty address set"),
        (Rule(PERMIT, IN, 6, ANY_ADDRESS, ANY_ADDRESS, dst_ports=((80, 80), (81, 81))), "not canonical"),
        (Rule(PERMIT, IN, 300, ANY_ADDRESS, ANY_ADDRESS), "outside 0-255"),
    ],
)
def test_render_refuses_what_would_not_read_back(rule: Rule, message: str) -> None:
    with pytest.raises(RenderError, match=message) as info:
        render_script(ruleset(rule), table="microseg")
    assert "host1 (nftables)" in str(info.value) and "chain ingress, rule 1" in str(info.value)


def test_render_refuses_other_orderings() -> None:
    with pytest.raises(RenderError, match="first-match"):
        render_script(ruleset(ordering=Ordering.UNORDERED_ALLOW), table="microseg")


def test_rules_keep_their_order_within_each_direction() -> None:
    rules = (
        Rule(PERMIT, OUT, 6, ANY_ADDRESS, ANY_ADDRESS),
        Rule(PERMIT, IN, 17, ANY_ADDRESS, ANY_ADDRESS),
        Rule(DENY, OUT, 17, ANY_ADDRESS, ANY_ADDRESS),
        Rule(DENY, IN, 6, ANY_ADDRESS, ANY_ADDRESS),
    )
    lines = render_script(ruleset(*rules), table="microseg")
    policy_lines = [line.strip() for line in lines if line.strip().startswith("meta l4proto")]
    assert policy_lines == ["meta l4proto udp counter accept", "meta l4proto tcp counter drop",
                            "meta l4proto tcp counter accept", "meta l4proto udp counter drop"]
    assert lines.index("\tchain ingress {") < lines.index("\tchain egress {")


def long_names_rule() -> Rule:
    names = tuple(f'policy-rule-"{i}"-ünïcödé\\' for i in range(12))
    return Rule(PERMIT, IN, 6, ANY_ADDRESS, ANY_ADDRESS, provenance=Provenance(rules=names))


def test_comment_is_sanitized_and_truncated_to_128_bytes() -> None:
    line = render_rule(long_names_rule(), Mode.ENFORCE)
    comment = line.split('comment "', 1)[1][:-1]
    assert len(comment.encode()) <= COMMENT_MAX_BYTES
    assert '"' not in comment and "\\" not in comment
    assert comment.startswith("policy-rule-0-ünïcödé, policy-rule-1")


@needs_netns
def test_truncated_comment_is_accepted_by_nft(ns: str) -> None:
    script = "\n".join(render_script(ruleset(long_names_rule()), table="microseg")) + "\n"
    result = nft(ns, "-c", "-f", "-", stdin=script, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"family": "ip"}, "family: Input should be 'inet' (got 'ip')"),
        ({"table": "bad name; flush ruleset"}, "table name"),
        ({"transport": "telnet"}, "transport: Input should be 'ssh' or 'local' (got 'telnet')"),
        ({"host_key_policy": "yolo"}, "or 'insecure' (got 'yolo')"),
    ],
)
def test_invalid_settings_are_refused_without_io(settings: dict[str, str], message: str) -> None:
    context = PointContext("host1", "nftables", Connection("192.0.2.10"), settings)
    with pytest.raises(PermanentDriverError, match=re.escape(message)):
        NftablesDriver(context)


def test_driver_declares_its_capabilities_and_contract() -> None:
    driver = NftablesDriver(PointContext("host1", "nftables", Connection("192.0.2.10")))
    assert isinstance(driver, Driver)
    assert all(callable(getattr(driver, name)) for name in DRIVER_METHODS)
    assert NftablesDriver.capabilities.atomic_replace and not NftablesDriver.capabilities.mixed_families_per_rule
    driver.close()  # never connected: nothing to drop


def test_local_command_timeout_is_transient() -> None:
    runner = LocalRunner("host1")
    with pytest.raises(TransientDriverError, match=r"timed out after 0\.2s"):
        runner.run("sleep 5", timeout=0.2)
    with pytest.raises(PermanentDriverError, match=r"command `exit 3` failed \(exit 3\): \(no output\)"):
        runner.run("set -e\nexit 3", timeout=5)
