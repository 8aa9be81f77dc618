"""`microseg import aerleon`: an Aerleon policy as microseg policies, proven against Aerleon's own output.

The proof, per filter: Aerleon (from PyPI, its ``aclgen``) renders the policy as a Cisco ACL; microseg's IOS
parser reads that ACL; the imported microseg policy, compiled for an equivalent point (every IPv4 address,
ingress, first match, no return paths), must decide every flow as that ACL does — checked exactly with the
packet-space module, any difference printed as a flow.  The policies are our own, written in Aerleon's format
(plus the benchmark's generated estate), not copies of Aerleon's samples.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from benchmarks.aerleon import ios_acl
from benchmarks.estate import make_estate, write_aerleon
from orchestrator.cli.main import main
from orchestrator.compiler.compiler import Target, compile_policy
from orchestrator.model.capabilities import Capabilities
from orchestrator.model.errors import PolicyError
from orchestrator.model.rules import Action, AddressSet, Direction
from orchestrator.packetspace.packetspace import difference_witness
from orchestrator.policy.aerleon import import_aerleon
from orchestrator.policy.loader import load_policy

TODAY = date(2026, 12, 6)
ACLGEN = Path(sys.executable).with_name("aclgen")
# The point Aerleon's ACL stands for: every IPv4 address, ingress, first match; stateful so that the compiler adds
# no return paths (Aerleon derives none) — the comparison is of the policy's own decisions.
EVERYWHERE = Target("aerleon-acl", AddressSet.of(["0.0.0.0/0"]), frozenset({Direction.INGRESS}),
                    Capabilities(ipv6=False), driver="ios")

NETWORKS = """\
RFC1918 = 10.0.0.0/8
          172.16.0.0/12
          192.168.0.0/16

WEB_SERVERS = 10.1.1.0/24        # the web tier
              10.1.2.10/32

DB_SERVERS = 10.1.3.0/25

MONITORING = 10.9.0.5/32

ADMIN_HOSTS = 10.9.9.0/28
              ADMIN_VPN

ADMIN_VPN = 172.20.0.0/24

BAD_ACTOR = 10.1.1.66/32

INTERNET = 0.0.0.0/0
"""

SERVICES = """\
HTTP = 80/tcp
HTTPS = 443/tcp
WEB = HTTP
      HTTPS
      8000-8080/tcp
POSTGRES = 5432/tcp
DNS = 53/udp
      53/tcp
SSH = 22/tcp
SNMP = 161/udp
HIGH = 1024-65535/tcp
"""

POLICY = """\
header {
  comment:: "our own sample: a web shop's east-west filter"
  target:: cisco SHOP-EDGE extended
}

term deny-bad-actor {
  source-address:: BAD_ACTOR
  action:: deny
}

term web-from-internet {
  source-address:: INTERNET
  source-exclude:: RFC1918
  destination-address:: WEB_SERVERS
  protocol:: tcp
  destination-port:: WEB
  action:: accept
  owner:: team-shop
  comment:: "public web"
}

term web-to-db {
  source-address:: WEB_SERVERS
  destination-address:: DB_SERVERS
  protocol:: tcp
  destination-port:: POSTGRES
  action:: accept
  expiration:: 2030-01-01
}

term db-replies {
  source-address:: DB_SERVERS
  destination-address:: WEB_SERVERS
  protocol:: tcp
  source-port:: POSTGRES
  destination-port:: HIGH
  action:: accept
}

term dns-anywhere {
  destination-address:: RFC1918
  protocol:: udp tcp
  destination-port:: DNS
  action:: accept
}

term monitoring {
  source-address:: MONITORING
  destination-address:: WEB_SERVERS DB_SERVERS
  protocol:: udp
  destination-port:: SNMP
  action:: accept
}

term ping {
  source-address:: MONITORING ADMIN_HOSTS
  protocol:: icmp
  icmp-type:: echo-request
  action:: accept
}

term admin-ssh {
  source-address:: ADMIN_HOSTS
  destination-address:: RFC1918
  destination-exclude:: DB_SERVERS
  protocol:: tcp
  destination-port:: SSH
  action:: accept
  logging:: true
}

term no-db-ssh {
  destination-address:: DB_SERVERS
  protocol:: tcp
  destination-port:: SSH
  action:: reject
}

term replies-established {
  destination-address:: RFC1918
  protocol:: tcp
  option:: tcp-established
  action:: accept
}

term gre-tunnel {
  source-address:: ADMIN_VPN
  protocol:: gre
  action:: accept
}
"""


def write_sample(root: Path, policy: str = POLICY) -> tuple[Path, Path]:
    (root / "def").mkdir(parents=True)
    (root / "policies" / "pol").mkdir(parents=True)
    (root / "def" / "networks.net").write_text(NETWORKS)
    (root / "def" / "services.svc").write_text(SERVICES)
    (root / "policies" / "pol" / "shop.pol").write_text(policy)
    return root / "policies" / "pol" / "shop.pol", root / "def"


def aerleon_acl(root: Path) -> str:
    """Aerleon's own Cisco rendering of the policies under ``root`` (its CLI, as a user runs it)."""
    if not ACLGEN.exists():
        pytest.fail(f"{ACLGEN} missing: Aerleon is a dev dependency (pyproject)")
    out = root / "out"
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([str(ACLGEN), "--base_directory=policies", "--definitions_directory=def", "--output_directory=out"],
                   cwd=root, check=True, capture_output=True, timeout=120)
    (acl,) = out.rglob("*.acl")
    return acl.read_text()


def compiled_rules(document: dict, where: Path):
    where.mkdir(parents=True, exist_ok=True)
    (where / "policy.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    loaded = load_policy(where, today=TODAY)
    compilation = compile_policy(loaded.policy, [EVERYWHERE], [], today=TODAY)
    return compilation.points[EVERYWHERE.name].ruleset.for_direction(Direction.INGRESS)


def assert_same_decisions(ours, theirs) -> None:
    witness = difference_witness(ours, Action.DENY, theirs, Action.DENY)
    assert witness is None, f"the import decides {witness.describe()} differently from Aerleon's ACL"


def test_the_import_permits_exactly_what_aerleons_acl_permits(tmp_path: Path) -> None:
    """Every carried term, in order, decides as Aerleon's ACL does; the terms the model cannot hold are listed
    (and, left out of both sides' comparison, are the only difference)."""
    policy_file, defs = write_sample(tmp_path)
    (imported,) = import_aerleon(policy_file, defs)
    assert imported.name == "SHOP-EDGE" and imported.targets == ("cisco",)
    findings = {f.term: f for f in imported.findings}
    assert set(findings) == {"no-db-ssh", "replies-established"}
    assert findings["no-db-ssh"].carried and "carried as deny" in findings["no-db-ssh"].reason
    assert not findings["replies-established"].carried and "option:: tcp-established" in findings[
        "replies-established"].reason
    rules = {r["name"]: r for r in imported.document["rules"]}
    assert [r["priority"] for r in imported.document["rules"]] == list(range(1, 11))
    assert rules["web-from-internet"]["owner"] == "team-shop" and rules["web-to-db"]["expires"] == "2030-01-01"
    assert rules["admin-ssh"]["log"] is True and rules["web-from-internet"]["description"] == "public web"
    groups = imported.document["groups"]
    assert groups["WEB_SERVERS"] == {"cidrs": ["10.1.1.0/24", "10.1.2.10/32"]}
    assert groups["web-from-internet-src"] == {"except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
                                              "groups": ["INTERNET"]}
    assert imported.document["services"]["db-replies-tcp"] == {"protocol": "tcp", "source_ports": ["5432"],
                                                              "ports": ["1024-65535"]}
    # the proof: Aerleon's ACL of the same policy without the term the import leaves out
    theirs_root = tmp_path / "theirs"
    shutil.copytree(tmp_path, theirs_root, ignore=shutil.ignore_patterns("theirs"))
    without = POLICY.replace("term replies-established {\n  destination-address:: RFC1918\n  protocol:: tcp\n"
                             "  option:: tcp-established\n  action:: accept\n}\n", "")
    (theirs_root / "policies" / "pol" / "shop.pol").write_text(without)
    theirs, _, _ = ios_acl(aerleon_acl(theirs_root), "SHOP-EDGE")
    ours = compiled_rules(imported.document, tmp_path / "imported")
    assert len(theirs) >= 20 and len(ours) >= 10  # both sides hold the policy (not two empty ACLs)
    assert_same_decisions(ours, theirs)
    # and the proof can fail: one port changed in the import is caught, with a flow
    broken = json.loads(json.dumps(imported.document).replace('"tcp/5432"', '"tcp/5433"'))
    assert difference_witness(compiled_rules(broken, tmp_path / "broken"), Action.DENY, theirs, Action.DENY)


def test_the_benchmark_estate_imports_exactly(tmp_path: Path) -> None:
    """A generated estate (nested network names, service lists, reply terms with source ports, 100 terms) in
    Aerleon's format: imported, compiled, equal to Aerleon's own IOS output.  Its reply terms are plain
    port-swapped permits here: a policy rule names flows, not TCP segments, so ``option:: tcp-established``
    is left out and listed (``test_the_import_permits_exactly_what_aerleons_acl_permits``)."""
    policies, defs = write_aerleon(make_estate(100), tmp_path, established_replies=False)
    (imported,) = import_aerleon(policies / "pol" / "edge-ios.pol", defs)
    assert imported.findings == [] and imported.rules == 100
    theirs, _, _ = ios_acl(aerleon_acl(tmp_path))
    assert_same_decisions(compiled_rules(imported.document, tmp_path / "imported"), theirs)


def test_the_command_writes_one_policy_per_filter_and_lists_what_it_left_out(tmp_path: Path) -> None:
    policy_file, defs = write_sample(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["import", "aerleon", str(policy_file), "--defs", str(defs), "-o", str(out),
                                       "--json"])
    assert result.exit_code == 2, result.output  # a term was left out
    report = json.loads(result.output)
    assert report["left_out"] == 1 and report["filters"][0]["rules"] == 10
    written = out / "SHOP-EDGE" / "policy.yaml"
    text = written.read_text()
    assert "# SHOP-EDGE term replies-established: left out: option:: tcp-established" in text
    assert load_policy(written.parent, today=TODAY).policy.rules  # a valid microseg policy, as written
    human = CliRunner().invoke(main, ["import", "aerleon", str(policy_file), "--defs", str(defs), "-o", str(out)])
    assert human.exit_code == 2 and "left out: replies-established: option:: tcp-established" in human.output


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    policy_file, defs = write_sample(tmp_path, POLICY.replace("WEB_SERVERS DB_SERVERS", "WEB_SERVERS NO_SUCH_NET"))
    with pytest.raises(PolicyError, match=r"shop.pol: Aerleon cannot read it: .*NO_SUCH_NET"):
        import_aerleon(policy_file, defs)
    with pytest.raises(PolicyError, match="no such policy file"):
        import_aerleon(tmp_path / "missing.pol", defs)
    with pytest.raises(PolicyError, match="no such definitions directory"):
        import_aerleon(policy_file, tmp_path / "nodefs")
    result = CliRunner().invoke(main, ["import", "aerleon", str(tmp_path / "missing.pol"), "--defs", str(defs)])
    assert result.exit_code == 1 and "no such policy file" in result.output
