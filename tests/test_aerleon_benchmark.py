"""The Aerleon race (benchmarks/aerleon.py): its smallest size runs end to end, and its check really compares."""

from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

import pytest

from benchmarks.aerleon import (
    AERLEON_FILES,
    FirstMatch,
    Result,
    Timing,
    aerleon_texts,
    check_flows,
    exact_check,
    exit_code,
    ios_acl,
    junos_terms,
    main,
    measure,
    microseg_texts,
    nft_rules,
    read_outputs,
    verify,
)
from benchmarks.estate import make_estate, reference_rules, sample_flows
from drivers.cisco_ios import syntax as ios
from orchestrator.model.rules import Action
from orchestrator.packetspace.packetspace import decide

SIZE, FLOWS, SEED = 100, 600, 13
pytestmark = pytest.mark.skipif(not Path(sys.executable).with_name("aclgen").exists(),
                                reason="Aerleon is not installed (.venv/bin/pip install 'aerleon==1.18.0')")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, Path]:
    """The benchmark's smallest size, once: exit code, printed report, the work directory it kept."""
    root = tmp_path_factory.mktemp("aerleon-race")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--sizes", str(SIZE), "--repeat", "1", "--flows", str(FLOWS), "--exact", "--workdir", str(root)])
    return code, out.getvalue(), root / str(SIZE)


def test_smallest_size_runs_and_both_tools_agree(run: tuple[int, str, Path]) -> None:
    code, report, _ = run
    assert code == 0, report
    row = next(line for line in report.splitlines() if line.startswith(f"| {SIZE} |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 9
    assert all(re.fullmatch(r"[\d.]+ s \(median [\d.]+\)", c) for c in cells[1:3]), row
    assert all(re.fullmatch(r"[\d,]+ / [\d,]+ \([\d.]+×\)", c) for c in cells[6:]), row
    assert f"{FLOWS:,} flows" in report and "0 disagreements" in report and "equivalent (exact)" in report


def test_a_broken_microseg_output_is_caught(run: tuple[int, str, Path]) -> None:
    """Flip the microseg IOS entry that decides the most sampled flows: the check names the flows, exits 1."""
    _, _, work = run
    estate = make_estate(SIZE, SEED)
    flows = sample_flows(estate, FLOWS, SEED)
    text = microseg_texts(work)["ios"]
    rules, lines, _ = ios_acl(text)
    decided = [FirstMatch(rules).decide(f)[1] for f in flows]
    busiest = max((i for i in set(decided) if i is not None), key=decided.count)
    line = lines[busiest]
    flipped = line.replace(" permit ", " deny ") if " permit " in line else line.replace(" deny ", " permit ")
    path = work / "microseg" / "out" / "edge-ios.txt"
    original = path.read_text()
    try:
        path.write_text(original.replace(f"\n{line}\n", f"\n{flipped}\n", 1))
        result = Result(SIZE, Timing(), Timing())
        verify(result, estate, work, {"microseg", "aerleon"}, flows=FLOWS, seed=SEED, exact=True)
    finally:
        path.write_text(original)
    assert result.check is not None
    assert len(result.check.disagreements) == decided.count(busiest)
    assert all(f"microseg {'deny' if ' permit ' in line else 'permit'} by #{busiest + 1}: {flipped}" in d
               for d in result.check.disagreements), result.check.disagreements[:3]
    assert result.check.exact.startswith("DIFFERENT")
    assert exit_code([result]) == 1


def test_a_missing_aerleon_entry_is_caught(run: tuple[int, str, Path]) -> None:
    """The same from the other side: dropping Aerleon's deciding entries changes decisions."""
    _, _, work = run
    estate = make_estate(SIZE, SEED)
    flows = sample_flows(estate, FLOWS, SEED)
    aerleon = read_outputs(aerleon_texts(work))
    microseg = read_outputs(microseg_texts(work))
    decided = {FirstMatch(aerleon.ios).decide(f)[1] for f in flows} - {None}
    kept = [r for i, r in enumerate(aerleon.ios) if i not in decided]
    check = check_flows(flows, {"microseg": (microseg.ios, microseg.ios_lines),
                                "aerleon": (kept, [""] * len(kept))})
    assert check.disagreements
    assert exact_check(microseg.ios, kept).startswith("DIFFERENT")


def test_flows_and_reference_exercise_both_actions() -> None:
    """The sample is not trivially all-deny: the reference permits some flows and denies others by rule."""
    estate = make_estate(SIZE, SEED)
    reference = reference_rules(estate)
    decisions = [FirstMatch(reference).decide(f) for f in sample_flows(estate, FLOWS, SEED)]
    assert sum(a is Action.PERMIT for a, _ in decisions) > FLOWS // 20
    assert sum(a is Action.DENY and i is not None for a, i in decisions) > FLOWS // 20


def test_indexed_first_match_equals_packetspace(run: tuple[int, str, Path]) -> None:
    _, _, work = run
    estate = make_estate(SIZE, SEED)
    for rules in (reference_rules(estate), read_outputs(aerleon_texts(work)).ios):
        index = FirstMatch(rules)
        for flow in sample_flows(estate, 300, SEED + 1):
            assert index.decide(flow) == decide(rules, Action.DENY, flow)


def test_own_entry_numbering_reads_like_the_parser(run: tuple[int, str, Path]) -> None:
    """ios_acl numbers Aerleon's unnumbered entries itself (the parser's numbering is quadratic): same result."""
    _, _, work = run
    text = (work / "aerleon" / "out" / AERLEON_FILES["ios"]).read_text()
    plain = "\n".join(line for line in text.splitlines()
                      if not line.startswith("no ip access-list") and line.strip() != "exit")
    (acl,) = ios.parse_running_config_acls(plain)
    rules, _, skipped = ios_acl(text)
    assert [e.body.to_rule(rules[0].direction) for e in acl.entries] == rules
    assert skipped == {"no ip access-list": 1, "exit": 1}


def test_counting_is_the_same_for_both_formats() -> None:
    assert junos_terms("term a {\n from { protocol tcp; }\n}\nterm b {\n}\n") == 2
    assert junos_terms("set firewall family inet filter F term T1 from protocol tcp\n"
                       "set firewall family inet filter F term T1 then accept\n"
                       "set firewall family inet filter F term T2 then discard\n") == 2
    aerleon = "table ip t {\n    chain r1 {\n        ip saddr 1.1.1.1 accept\n    }\n    chain root0 {\n" \
              "        type filter hook input priority 0; policy drop;\n        ct state established,related accept\n" \
              "        jump r1\n    }\n}\n"
    microseg = "add table inet m\ndelete table inet m\ntable inet m {\n\tchain ingress {\n" \
               "\t\ttype filter hook input priority filter; policy drop;\n\t\tct state established,related accept\n" \
               '\t\tip saddr 1.1.1.1 accept comment "r1"\n\t}\n}\n'
    assert nft_rules(aerleon) == 3
    assert nft_rules(microseg) == 2


def test_a_run_past_its_timeout_is_recorded_not_waited_for(tmp_path: Path) -> None:
    run = measure([sys.executable, "-c", "import time; time.sleep(60)"], cwd=tmp_path, timeout=0.5,
                  log=tmp_path / "log")
    assert run.status == "timeout" and run.seconds < 10
