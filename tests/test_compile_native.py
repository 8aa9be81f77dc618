"""`microseg compile --native DIR`: each point's native text for a point where microseg owns nothing yet,
rendered offline by its own driver — and it says what the compiled ruleset says."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from benchmarks.aerleon import ios_acl
from orchestrator.cli.main import main
from orchestrator.engine.project import load_project
from orchestrator.model.rules import Action, Direction
from orchestrator.packetspace.packetspace import difference_witness
from tests.conftest import REPO

TODAY = "2026-12-06"


def test_native_text_of_every_point_that_can_render_offline(tmp_path: Path) -> None:
    out = tmp_path / "native"
    result = CliRunner().invoke(main, ["--policy", str(REPO / "policies"), "--inventory", str(REPO / "inventory"),
                                       "--today", TODAY, "compile", "--summary", "--native", str(out)])
    assert result.exit_code == 0, result.output
    written = sorted(p.stem for p in out.glob("*.txt"))
    assert written == ["app-prod-01", "db-prod-01", "db-prod-02", "dc-prod-nxos", "fw-shared-junos", "jump-01",
                       "leaf-prod-eos", "sw-dev-ios", "web-prod-01", "web-prod-02"]
    assert "needs its account (`microseg plan --native -t …`): aws-sg-dev-web, azure-nsg-dev-app, " \
           "gcp-fw-dev-db" in result.output
    assert "table inet microseg {" in (out / "web-prod-01.txt").read_text()
    # the IOS text, read back by microseg's own IOS parser, decides every flow as the compiled ruleset does
    from datetime import date

    compiled = load_project(REPO / "policies", REPO / "inventory", today=date.fromisoformat(TODAY)).compile()
    ruleset = compiled.points["sw-dev-ios"].ruleset
    lines = (out / "sw-dev-ios.txt").read_text().splitlines()
    start = lines.index("ip access-list extended MSEG-INGRESS-V4")
    section = [lines[start]]
    for line in lines[start + 1:]:
        if not line.split(maxsplit=1)[0].isdigit():
            break
        section.append(line)
    ios_rules, _, _ = ios_acl("\n".join(section), "MSEG-INGRESS-V4")
    assert len(ios_rules) > 10
    v4 = [r for r in ruleset.for_direction(Direction.INGRESS) if 4 in r.src.families | r.dst.families]
    assert difference_witness(ios_rules, Action.DENY, v4, ruleset.default_action) is None
