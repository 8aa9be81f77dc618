"""`microseg adopt` (issue #14 part 3) on the worked example's switches, against the SSH device simulators.

A careful engineer's legacy ACLs — an ingress one bound `out` on the point's VLAN interfaces and the
matching reply entries in an egress one bound `in` — are read through the unmodified drivers, turned into a
policy file, compiled for the point, and proven equivalent by packet space; an entry microseg cannot adopt
(`established`) makes the proof fail with the flows it decides and the device line that decides them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.arista_eos import syntax as eos
from drivers.testing import assert_matches, plan_and_apply
from orchestrator.cli.main import main
from orchestrator.engine.adopt import Adoption, adopt
from orchestrator.model.errors import PermanentDriverError
from orchestrator.model.policy import Policy
from orchestrator.model.rules import Action, AddressSet, Direction, Rule
from orchestrator.packetspace.flowset import Flow
from tests.conftest import REPO
from tests.netdev_kit import FIRST, FOREIGN, INTERFACES, driver_for, simulator
from tests.test_engine_switches import TODAY, Fleet, fleet, store  # noqa: F401  (the four switches as simulators)

MGMT, DNS = "10.0.0.0/8", "10.10.0.53"
# per platform: (point, one protected web host, how it writes "prefix" and "host")
POINTS = {"ios": ("sw-dev-ios", "10.30.1.5"), "nxos": ("dc-prod-nxos", "10.20.2.5"),
          "eos": ("leaf-prod-eos", "10.20.1.5")}


def _address(platform: str, network: str) -> str:
    address, _, length = network.partition("/")
    if not length:
        return f"host {address}" if platform != "nxos" else f"{address}/32"
    if platform == "ios":
        wildcard = {"8": "0.255.255.255", "24": "0.0.0.255"}[length]
        return f"{address} {wildcard}"
    return network


def legacy_config(platform: str, point: str, web: str, interfaces: list[str], scope: list[str],
                  extra_in: tuple[str, ...] = ()) -> list[str]:
    """LEGACY-IN (toward the servers) and LEGACY-OUT (from them), bound on every interface of the point."""
    a = lambda n: _address(platform, n)  # noqa: E731
    mode = "ip access-list extended" if platform == "ios" else "ip access-list"
    inbound = [f"10 permit tcp {a(MGMT)} {a(s)} eq 22" for s in scope[:1]]
    inbound += [f"20 permit tcp any {a(web)} eq 443", f"30 permit udp {a(DNS)} eq 53 {a(scope[0])}",
                *extra_in, "90 deny ip any any log"]
    outbound = [f"10 permit tcp {a(scope[0])} eq 22 {a(MGMT)}", f"20 permit tcp {a(web)} eq 443 any",
                f"30 permit udp {a(scope[0])} {a(DNS)} eq 53"]
    lines = [f"{mode} LEGACY-IN", *inbound, "exit", f"{mode} LEGACY-OUT", *outbound, "exit"]
    for interface in interfaces:
        lines += [f"interface {interface}", "ip access-group LEGACY-IN out", "ip access-group LEGACY-OUT in", "exit"]
    return lines


def point_settings(point: str) -> tuple[list[str], list[str]]:
    host = yaml.safe_load((REPO / "inventory" / "hosts.yaml").read_text())[point]["data"]["microseg"]
    interfaces = [b["interface"] for b in host["settings"]["bindings"]]
    return interfaces, [s for s in host["protects"]["subnets"] if ":" not in s]


@pytest.mark.parametrize("platform", ["ios", "nxos", "eos"])
def test_a_careful_legacy_acl_pair_is_adopted_with_proof(platform: str, fleet: Fleet, store: str,
                                                         tmp_path: Path) -> None:
    point, web = POINTS[platform]
    interfaces, scope = point_settings(point)
    fleet.cli(point, legacy_config(platform, point, web, interfaces, scope[:1]))
    configured = fleet.config_lines()[point]
    with fleet.engine(store) as engine:
        (adoption,) = adopt(engine, [point])
        assert adoption.equivalent, adoption.to_dict()["differences"]
        # 4 + 3 entries, and the IPv6 slots no ACL filters (each an explicit allow): nothing skipped
        assert adoption.adopted == 9 and adoption.skipped == ()
        rules = {r["description"].split(" on ")[0].removeprefix("adopted from "): r for r in adoption.policy["rules"]}
        inbound = [rules[f"ACL LEGACY-IN {seq}"] for seq in (10, 20, 30, 90)]
        assert [r["action"] for r in inbound] == ["allow", "allow", "allow", "deny"]
        assert inbound[3]["log"] is True and [r["priority"] for r in inbound] == sorted(r["priority"] for r in inbound)
        assert inbound[1]["services"] == ["tcp.443"] and inbound[1]["from"] == "adopted-any-ipv4"
        assert rules["ACL LEGACY-OUT 10"]["services"] == ["tcp.from.22"]
        assert inbound[2]["from"] == "dns-servers"  # named after the policy's own group that is exactly that set
        Policy.model_validate({k: v for k, v in adoption.policy.items() if k not in ("apiVersion", "description")})
    assert fleet.config_lines()[point] == configured  # adopting only reads
    with fleet.engine(store) as engine:  # taking over is not automatic: the foreign binding still refuses a plan
        assert "LEGACY-" in engine.plan([point]).failures[point]


def adopt_eos_legacy_with(fleet: Fleet, store: str, entry: str) -> Adoption:
    """The EOS point's adoption after its legacy inbound ACL got ``entry`` (sequence 40)."""
    point, web = POINTS["eos"]
    interfaces, scope = point_settings(point)
    fleet.cli(point, legacy_config("eos", point, web, interfaces, scope[:1], extra_in=(f"40 {entry}",)))
    with fleet.engine(store) as engine:
        (adoption,) = adopt(engine, [point])
    return adoption


def test_an_entry_microseg_cannot_adopt_fails_the_proof_naming_it(fleet: Fleet, store: str, tmp_path: Path) -> None:
    adoption = adopt_eos_legacy_with(fleet, store, "permit ip any any fragments")
    assert not adoption.equivalent  # an entry it cannot read: never claimed equivalent
    assert [u for u in adoption.unreadable if "LEGACY-IN 40" in u and "fragments" in u]


def test_a_hand_written_established_entry_is_read_but_not_carried(fleet: Fleet, store: str) -> None:
    """``permit tcp any any established`` is read (a match of TCP replies), but a policy names flows, not
    segments: the entry is skipped with the reason, and the proof shows what it let in that the proposal,
    whose return paths let back only the replies of its own permits, does not."""
    adoption = adopt_eos_legacy_with(fleet, store, "permit tcp any any established")
    assert not adoption.unreadable
    assert [s for s in adoption.skipped if "LEGACY-IN 40" in s and "established TCP segments only" in s]
    assert not adoption.equivalent
    assert any(d.flow.endswith("/tcp established") and "LEGACY-IN 40" in d.decided_by for d in adoption.differences)


def test_a_difference_names_the_flow_and_the_device_line(fleet: Fleet, store: str) -> None:
    """The policy treats the protected subnets alike; an ACL that does not is reproduced as far as rules go
    (one per entry), and where the compiled proposal cannot follow it, the proof names the flow and the line.
    Here: LEGACY-OUT lets only the web host's replies out, but a policy rule permits its flows both ways."""
    point, web = POINTS["eos"]
    interfaces, scope = point_settings(point)
    lines = legacy_config("eos", point, web, interfaces, scope[:1])
    lines = [line for line in lines if not line.endswith("eq 443 any")]  # LEGACY-OUT 20: no reply entry for 443
    fleet.cli(point, lines)
    with fleet.engine(store) as engine:
        (adoption,) = adopt(engine, [point])
    assert not adoption.equivalent and not adoption.unreadable
    first = adoption.differences[0]
    assert first.direction is Direction.EGRESS and first.existing is Action.DENY and first.proposed is Action.PERMIT
    assert first.flow.startswith("10.20.1.5:443 → ") and first.flow.endswith("/tcp established")  # a reply
    assert first.decided_by == "the implicit deny"


def test_adopt_command_writes_the_proposal_and_says_it_is_equivalent(fleet: Fleet, store: str,
                                                                   tmp_path: Path) -> None:
    point, web = POINTS["ios"]
    interfaces, scope = point_settings(point)
    fleet.cli(point, legacy_config("ios", point, web, interfaces, scope[:1]))
    out = tmp_path / "adopted.yaml"
    base = ["--policy", str(REPO / "policies"), "--inventory", str(fleet.inventory), "--today", TODAY.isoformat(),
            "--store", store]
    result = CliRunner().invoke(main, [*base, "adopt", point, "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "equivalent to the existing enforcement (proved" in result.output and str(out) in result.output
    written = yaml.safe_load(out.read_text())
    assert len(written["rules"]) == 9 and out.read_text().startswith("# proposed by `microseg adopt")
    result = CliRunner().invoke(main, [*base, "adopt", point, "--json"], catch_exceptions=False)
    data = yaml.safe_load(result.output)
    assert result.exit_code == 0 and data["ok"] and data["points"][0]["equivalent"]
    result = CliRunner().invoke(main, [*base, "adopt", "no-such-point"], catch_exceptions=False)
    assert result.exit_code == 1 and "not an enforcement point" in result.output


# ---------------------------------------------------------------------------------------------------- take-over

@pytest.mark.parametrize("platform", ["ios", "nxos", "eos", "junos"])
def test_take_over_is_make_before_break_and_rollback_restores_the_foreign_binding(platform: str) -> None:
    """The simulators boot with someone else's ACL (CUSTOMER-EDGE) bound `in` on INTERFACES[platform][2].
    A point managing that interface refuses to plan over it, unless its settings say take_over: then the
    owned ACL is written first and one binding line replaces the old one (no moment without an ACL); the
    old ACL stays defined; rolling back binds it again and removes microseg's, exactly as it was."""
    interface = INTERFACES[platform][2]
    with simulator(platform) as sim:
        refusing = driver_for(sim, platform, bindings=[{"interface": interface}])
        with pytest.raises(PermanentDriverError, match=r"CUSTOMER-EDGE bound in .* take_over: true"):
            plan_and_apply(refusing, FIRST)
        refusing.close()
        driver = driver_for(sim, platform, bindings=[{"interface": interface}], take_over=True)
        before = driver.fetch()
        assert any(b["acl"] == "CUSTOMER-EDGE" for b in before.native["bindings"])
        checkpoint = driver.checkpoint()
        change, _ = plan_and_apply(driver, FIRST)
        binding = ("interface ", "ip access-group ", "ipv6 traffic-filter ", "ipv6 access-group ", "set interfaces ",
                   "exit")
        first_bind = next(i for i, line in enumerate(change.commands) if line.startswith(("interface ",
                                                                                         "set interfaces ")))
        assert all(line.startswith(binding) for line in change.commands[first_bind:]), change.commands
        assert not any(line.startswith(("no ", "delete")) for line in change.commands[first_bind:])
        assert_matches(driver, FIRST)
        after = driver.fetch()
        assert not any(b["acl"] == "CUSTOMER-EDGE" for b in after.native["bindings"])
        assert "CUSTOMER-EDGE" in after.native["other_acls"] or platform == "junos" or \
            "CUSTOMER-EDGE" in sim.cli("show running-config")  # still defined
        driver.rollback(checkpoint)
        assert driver.fetch().fingerprint() == before.fingerprint()
        driver.close()


ALSO_BOUND = {  # CUSTOMER-EDGE bound on a second interface, one the point does not manage
    "ios": ("interface Vlan302", "ip access-group CUSTOMER-EDGE in", "exit"),
    "nxos": ("interface Vlan203", "ip access-group CUSTOMER-EDGE in", "exit"),
    "eos": ("interface Vlan299", "ip access-group CUSTOMER-EDGE in", "exit"),
    "junos": ("set interfaces irb unit 200 family inet filter input CUSTOMER-EDGE",),
}
CONFIG = {"junos": "show configuration firewall | display set"}


def config(sim: object, platform: str) -> list[str]:
    """The device's configuration (the firewall part on Junos), without the comment lines that carry a clock."""
    text = sim.cli(CONFIG.get(platform, "show running-config"))  # type: ignore[attr-defined]
    return [line for line in text.splitlines() if not line.startswith("!")]


@pytest.mark.parametrize("platform", ["ios", "nxos", "eos", "junos"])
def test_delete_replaced_deletes_the_old_acl_and_a_rollback_writes_it_back(platform: str) -> None:
    """With delete_replaced the change that takes CUSTOMER-EDGE's slot over deletes it after the binding line (it is
    bound nowhere else); a rollback writes it back, entry for entry, and binds it again: exactly as before."""
    interface = INTERFACES[platform][2]
    with simulator(platform) as sim:
        driver = driver_for(sim, platform, bindings=[{"interface": interface}], take_over=True, delete_replaced=True)
        before = driver.fetch()
        (replaced,) = before.native["replaced"]
        assert replaced["name"] == "CUSTOMER-EDGE" and replaced["problem"] is None and replaced["elsewhere"] == []
        config_before = config(sim, platform)
        checkpoint = driver.checkpoint()
        change, _ = plan_and_apply(driver, FIRST)
        last_bind = max(i for i, line in enumerate(change.commands) if "CUSTOMER-EDGE" not in line
                        and line.startswith(("interface ", "set interfaces ")))
        deletion = next(i for i, line in enumerate(change.commands) if "CUSTOMER-EDGE" in line)
        assert deletion > last_bind and change.commands[deletion].startswith(("no ", "delete ")), change.commands
        assert_matches(driver, FIRST)
        assert not any("CUSTOMER-EDGE" in line for line in config(sim, platform))
        driver.rollback(checkpoint)
        assert driver.fetch().fingerprint() == before.fingerprint()
        assert config(sim, platform) == config_before  # the same entries, numbers, binding; nothing else changed
        driver.close()


@pytest.mark.parametrize("platform", ["ios", "nxos", "eos", "junos"])
def test_delete_replaced_keeps_an_acl_bound_elsewhere_and_says_so(platform: str) -> None:
    interface = INTERFACES[platform][2]
    with simulator(platform, boot=FOREIGN[platform] + ALSO_BOUND[platform]) as sim:
        driver = driver_for(sim, platform, bindings=[{"interface": interface}], take_over=True, delete_replaced=True)
        notes = {u.name: u.detail for u in driver.normalize(driver.fetch()).unmanaged}
        assert "not deleted: the configuration names it elsewhere too" in notes["CUSTOMER-EDGE"]
        change, _ = plan_and_apply(driver, FIRST)
        assert not any(line.startswith(("no ip access-list", "delete firewall")) and "CUSTOMER-EDGE" in line
                       for line in change.commands), change.commands
        assert any("CUSTOMER-EDGE" in line for line in config(sim, platform))
        driver.close()


def test_delete_replaced_keeps_an_ios_acl_with_remarks_and_says_so() -> None:
    """IOS's listings leave remarks out; its running configuration shows them, and a rollback could not write them
    back in place: such an ACL is not deleted."""
    boot = (FOREIGN["ios"][0], "5 remark legacy web, ticket 4711", *FOREIGN["ios"][1:])
    with simulator("ios", boot=boot) as sim:
        driver = driver_for(sim, "ios", bindings=[{"interface": INTERFACES["ios"][2]}], take_over=True,
                            delete_replaced=True)
        notes = {u.name: u.detail for u in driver.normalize(driver.fetch()).unmanaged}
        assert "not deleted: its definition holds `5 remark legacy web, ticket 4711`" in notes["CUSTOMER-EDGE"]
        change, _ = plan_and_apply(driver, FIRST)
        assert not any(line.startswith("no ip access-list") for line in change.commands), change.commands
        driver.close()


KEPT = {  # what keeps CUSTOMER-EDGE from being deleted, and the reason the plan gives
    "ios-vty": ("ios", ("line vty 0 4", "access-class CUSTOMER-EDGE in", "exit"),
                "names it elsewhere too (line vty 0 4: access-class …)"),
    "nxos-vty": ("nxos", ("line vty", "access-class CUSTOMER-EDGE in", "exit"),
                 "names it elsewhere too (line vty: access-class …)"),
    "eos-control-plane": ("eos", ("system control-plane", "ip access-group CUSTOMER-EDGE in", "exit"),
                          "names it elsewhere too (system control-plane: ip …)"),
    "junos-loopback": ("junos", ("set interfaces lo0 unit 0 family inet filter input CUSTOMER-EDGE",),
                       "names it elsewhere too (set …)"),
    "eos-counting": ("eos", ("ip access-list CUSTOMER-EDGE", "counters per-entry", "exit"),
                     "its definition holds `counters per-entry`"),
    "junos-shared-count": ("junos", ("set firewall family inet filter CUSTOMER-EDGE term web then count hits",
                                     "set firewall family inet filter CUSTOMER-EDGE term rest then count hits",
                                     "set firewall family inet filter CUSTOMER-EDGE term rest then discard"),
                           "then count hits`, which a rollback would not write back"),  # shared: no term's own
}


@pytest.mark.parametrize("case", sorted(KEPT))
def test_delete_replaced_keeps_what_it_could_not_put_back(case: str) -> None:
    """Whatever else names the ACL (here a vty line), or a definition line a rollback would not write back (EOS's
    per-entry counting, a Junos count), keeps it defined; the plan says why."""
    platform, extra, reason = KEPT[case]
    with simulator(platform, boot=FOREIGN[platform] + extra) as sim:
        driver = driver_for(sim, platform, bindings=[{"interface": INTERFACES[platform][2]}], take_over=True,
                            delete_replaced=True)
        notes = {u.name: u.detail for u in driver.normalize(driver.fetch()).unmanaged}
        assert reason in notes["CUSTOMER-EDGE"], notes
        change, _ = plan_and_apply(driver, FIRST)
        assert not any(line.startswith(("no ip access-list", "delete firewall")) and "CUSTOMER-EDGE" in line
                       for line in change.commands), change.commands
        driver.close()


def acl_block(lines: list[str], header: str) -> list[str]:
    """The indented lines under ``header`` in a running configuration."""
    start = lines.index(header) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith(" ")), len(lines))
    return lines[start:end]


def test_a_rollback_leaves_a_kept_acl_alone_even_one_it_cannot_model() -> None:
    """CUSTOMER-EDGE holds an entry microseg cannot model (`log-input`), so the take-over keeps it; someone edits it
    afterwards; the rollback binds it again and leaves it exactly as they left it."""
    legacy = ("ip access-list extended CUSTOMER-EDGE", "10 permit tcp any host 10.1.1.1 eq 443",
              "20 permit tcp any any eq 22 log-input", "exit", f"interface {INTERFACES['ios'][2]}",
              "ip access-group CUSTOMER-EDGE in", "exit")
    with simulator("ios", boot=legacy) as sim:
        driver = driver_for(sim, "ios", bindings=[{"interface": INTERFACES["ios"][2]}], take_over=True,
                            delete_replaced=True)
        notes = {u.name: u.detail for u in driver.normalize(driver.fetch()).unmanaged}
        assert "not deleted: entry 20 cannot be written back (log-input)" in notes["CUSTOMER-EDGE"], notes
        checkpoint = driver.checkpoint()
        plan_and_apply(driver, FIRST)
        sim.cli("configure terminal", "ip access-list extended CUSTOMER-EDGE", "15 permit udp any any eq 53", "end")
        edited = acl_block(config(sim, "ios"), "ip access-list extended CUSTOMER-EDGE")
        driver.rollback(checkpoint)
        running = config(sim, "ios")
        assert " ip access-group CUSTOMER-EDGE in" in running and " 15 permit udp any any eq domain" in running
        assert acl_block(running, "ip access-list extended CUSTOMER-EDGE") == edited
        driver.close()


def test_an_eos_comment_inside_the_acl_is_part_of_its_definition() -> None:
    """EOS keeps `!! text` comments inside an ACL's block: they belong to the definition (a rollback could not write
    them back), unlike the `!` separators between blocks."""
    running = "!\nip access-list LEGACY\n   !! owned by the web team\n   10 permit ip any any\n!\nend\n"
    body, uses = eos.acl_config(running, "LEGACY", 4)
    assert body == ["!! owned by the web team", "10 permit ip any any"] and uses == []
    assert "`!! owned by the web team`" in (eos.definition_problem(body, 1) or "")


def test_a_rollback_never_deletes_an_acl_bound_since() -> None:
    """After a take-over that deleted CUSTOMER-EDGE, someone binds another ACL of theirs in the slot; the rollback
    writes CUSTOMER-EDGE back and binds it again, and their ACL stays defined."""
    spare = ("ip access-list extended SPARE", "10 permit ip any any", "exit")
    with simulator("ios", boot=FOREIGN["ios"] + spare) as sim:
        driver = driver_for(sim, "ios", bindings=[{"interface": INTERFACES["ios"][2]}], take_over=True,
                            delete_replaced=True)
        checkpoint = driver.checkpoint()
        plan_and_apply(driver, FIRST)
        sim.cli("configure terminal", f"interface {INTERFACES['ios'][2]}", "ip access-group SPARE in", "end")
        driver.rollback(checkpoint)
        running = config(sim, "ios")
        assert "ip access-list extended SPARE" in running and "ip access-list extended CUSTOMER-EDGE" in running
        assert " ip access-group CUSTOMER-EDGE in" in running
        driver.close()


def test_delete_replaced_needs_take_over() -> None:
    with simulator("ios") as sim, pytest.raises(PermanentDriverError, match=r"delete_replaced .* needs take_over"):
        driver_for(sim, "ios", delete_replaced=True)


# ---------------------------------------------------------------------------------------------------- walk-through

def test_brownfield_walkthrough(fleet: Fleet, store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/brownfield.md, command by command, on the worked example's EOS leaf."""
    doc = (REPO / "docs" / "brownfield.md").read_text()
    point, web = POINTS["eos"]
    interfaces, scope = point_settings(point)
    legacy = legacy_config("eos", point, web, interfaces, scope[:1])
    assert all(line in doc for line in legacy if line[0].isdigit() or line.startswith("ip "))
    fleet.cli(point, legacy)
    monkeypatch.chdir(tmp_path)
    policies = tmp_path / "policies"
    policies.mkdir()
    for name in ("00-defaults.yaml", "groups.yaml", "services.yaml"):
        shutil.copy(REPO / "policies" / name, policies / name)

    def microseg(command: str, *extra: str, policy: Path = policies, run_id: str = "") -> tuple[int, str]:
        assert f"microseg {command}" in doc, command  # the walk-through shows exactly this command
        command = command.replace("RUN_ID", run_id)
        base = ["--policy", str(policy), "--inventory", str(fleet.inventory), "--today", TODAY.isoformat(),
                "--store", store]
        result = CliRunner().invoke(main, [*base, *command.split(), *extra], catch_exceptions=False)
        return result.exit_code, result.stdout if "--json" in extra else result.output

    code, out = microseg("adopt leaf-prod-eos -o adopted/leaf-prod-eos.yaml", policy=REPO / "policies")
    assert code == 0 and "proposal equivalent to the existing enforcement" in out, out
    shutil.copy(tmp_path / "adopted" / "leaf-prod-eos.yaml", policies / "adopted-leaf-prod-eos.yaml")
    code, out = microseg("plan -t leaf-prod-eos")
    assert code == 1 and "take_over: true" in out, out  # refused until the inventory allows the take-over
    hosts = yaml.safe_load((fleet.inventory / "hosts.yaml").read_text())
    hosts[point]["data"]["microseg"]["settings"]["take_over"] = True
    (fleet.inventory / "hosts.yaml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    code, out = microseg("plan -t leaf-prod-eos")
    assert code == 0 and "LEGACY" not in out.split("leaf-prod-eos", 1)[-1].split("\n")[0], out
    code, out = microseg("apply -t leaf-prod-eos --auto-approve", "--json")
    run = yaml.safe_load(out)
    assert code == 0 and run["ok"], out
    running = fleet.sims[point].cli("show running-config")
    assert "ip access-group MSEG-INGRESS-V4 out" in running and "ip access-list LEGACY-IN" in running
    code, out = microseg("plan -t leaf-prod-eos", "--json")
    twin = yaml.safe_load(out)["points"][point]
    assert code == 0 and twin["change"]["commands"] == [] and twin["summary"] == "no changes", out  # the twin
    code, out = microseg("rollback RUN_ID --auto-approve", run_id=run["run_id"])
    assert code == 0, out
    running = fleet.sims[point].cli("show running-config")
    assert "ip access-group LEGACY-IN out" in running and "ip access-group LEGACY-OUT in" in running
    assert "MSEG-INGRESS" not in running


# ---------------------------------------------------------------------------------------------------- property

@pytest.fixture(scope="module")
def project():
    from orchestrator.engine.project import load_project

    return load_project(REPO / "policies", REPO / "inventory", today=TODAY)


SOURCES = ["10.0.0.0/8", "10.10.0.53/32", "192.0.2.0/24", "0.0.0.0/0", "203.0.113.7/32",
           "10.20.1.64/26"]  # the last one inside the protected subnet
INSIDE = ["10.20.1.0/24", "10.20.1.11/32", "10.20.1.12/31", "10.20.1.5/32"]


@st.composite
def legacy_acls(draw: st.DrawFn) -> list:
    """A random ingress ACL for leaf-prod-eos and, half of the time, the egress ACL a careful engineer writes
    beside it (the replies of its permits, ports swapped); otherwise a random egress ACL."""
    inbound = []
    for _ in range(draw(st.integers(1, 6))):
        port = draw(st.sampled_from([22, 80, 443, 5432]))
        inbound.append(Rule(draw(st.sampled_from(Action)), Direction.INGRESS, draw(st.sampled_from([6, 17])),
                            AddressSet.of([draw(st.sampled_from(SOURCES))]),
                            AddressSet.of([draw(st.sampled_from(INSIDE))]), dst_ports=((port, port),)))
    if draw(st.booleans()):
        outbound = [Rule(Action.PERMIT, Direction.EGRESS, r.protocol, r.dst, r.src, src_ports=r.dst_ports)
                    for r in inbound if r.action is Action.PERMIT]
    else:
        outbound = [Rule(draw(st.sampled_from(Action)), Direction.EGRESS, 6,
                         AddressSet.of([draw(st.sampled_from(INSIDE))]),
                         AddressSet.of([draw(st.sampled_from(SOURCES))]),
                         dst_ports=((draw(st.sampled_from([53, 443])),) * 2,))
                    for _ in range(draw(st.integers(0, 3)))]
    return [*outbound, *inbound]


@settings(max_examples=40, deadline=None)
@given(rules=legacy_acls())
def test_the_proof_is_sound_both_ways(project, rules) -> None:
    """Whatever adopt says is checked flow by flow with the independent oracle: "equivalent" means every
    crossing flow sampled is decided alike; each reported difference is a flow decided differently."""
    from orchestrator.compiler.compiler import compile_policy
    from orchestrator.engine.adopt import proposal_policy, propose
    from orchestrator.model.driver import Existing
    from orchestrator.model.rules import Mode, Ordering, Ruleset
    from tests.packetspace_oracle import oracle_matches, oracle_permits

    v6 = [Rule(Action.PERMIT, d, None, AddressSet.of(["::/0"]), AddressSet.of(["::/0"])) for d in Direction]
    existing_rules = (*rules, *v6)  # the IPv6 slots unfiltered, as existing() reads a device without v6 ACLs
    existing = Existing(Ruleset("leaf-prod-eos", Ordering.FIRST_MATCH, Action.DENY, existing_rules, Mode.ENFORCE,
                                stateful=False), tuple(f"entry {i}" for i in range(len(existing_rules))))
    adoption = propose(project, "leaf-prod-eos", existing)
    policy = proposal_policy(project, adoption.policy)
    target = project.targets(["leaf-prod-eos"])[0]
    proposed = compile_policy(policy, [target], project.inventory.workloads, today=TODAY).points["leaf-prod-eos"]
    outside = ["10.0.0.1", "10.10.0.53", "192.0.2.9", "203.0.113.7", "8.8.8.8"]
    inside = ["10.20.1.5", "10.20.1.11", "10.20.1.13", "10.20.1.200"]
    for direction, sources, destinations in ((Direction.INGRESS, outside, inside), (Direction.EGRESS, inside, outside)):
        have = existing.ruleset.for_direction(direction)
        want = proposed.ruleset.for_direction(direction)
        for src in sources:
            for dst in destinations:
                for protocol, port, sport in ((6, 22, 40000), (6, 443, 40000), (17, 53, 5000), (6, 40000, 443),
                                              (6, 40000, 22), (17, 5000, 53), (6, 5432, 1)):
                    flow = Flow.of(src, dst, protocol, dst_port=port, src_port=sport)
                    same = oracle_permits(have, Action.DENY, Ordering.FIRST_MATCH, flow) == oracle_permits(
                        want, proposed.ruleset.default_action, Ordering.FIRST_MATCH, flow)
                    if adoption.equivalent:
                        assert same, (direction, flow.describe())
    for difference in adoption.differences:  # each one is real: the oracle decides that flow differently
        flow = difference.witness
        assert flow is not None and difference.existing is not difference.proposed
        have = existing.ruleset.for_direction(difference.direction)
        want = proposed.ruleset.for_direction(difference.direction)
        assert oracle_permits(have, Action.DENY, Ordering.FIRST_MATCH, flow) is (difference.existing is Action.PERMIT)
        assert oracle_permits(want, proposed.ruleset.default_action, Ordering.FIRST_MATCH, flow) is (
            difference.proposed is Action.PERMIT)
        # and the device line it names is the existing entry that decides the flow
        deciding = next((i for i, r in enumerate(existing_rules) if r.direction is difference.direction
                         and oracle_matches(r, flow)), None)
        assert difference.decided_by == ("the implicit deny" if deciding is None else f"entry {deciding}")


def test_a_difference_names_the_entry_that_decides_it_even_after_entries_that_never_cross(project) -> None:
    """An entry for traffic inside the protected subnet (it never crosses the point) is left out of the
    comparison; the line named for a difference must still be the one that decides it."""
    from orchestrator.engine.adopt import propose
    from orchestrator.model.driver import Existing
    from orchestrator.model.rules import Mode, Ordering, Ruleset

    a = AddressSet.of
    inside, web, anywhere = a(["10.20.1.0/24"]), a(["10.20.1.5/32"]), a(["0.0.0.0/0"])
    rules = (Rule(Action.PERMIT, Direction.EGRESS, 6, inside, inside),  # entry 0: never crosses
             Rule(Action.DENY, Direction.EGRESS, 6, web, anywhere),  # entry 1: decides web's replies
             Rule(Action.PERMIT, Direction.INGRESS, 6, anywhere, web, dst_ports=((443, 443),)),  # entry 2
             *(Rule(Action.PERMIT, d, None, a(["::/0"]), a(["::/0"])) for d in Direction))
    existing = Existing(Ruleset("leaf-prod-eos", Ordering.FIRST_MATCH, Action.DENY, rules, Mode.ENFORCE,
                                stateful=False), tuple(f"entry {i}" for i in range(len(rules))))
    adoption = propose(project, "leaf-prod-eos", existing)
    egress = [d for d in adoption.differences if d.direction is Direction.EGRESS]
    assert egress and egress[0].decided_by == "entry 1" and egress[0].existing is Action.DENY


def test_a_rollback_never_overwrites_a_binding_someone_made_since() -> None:
    """Without take_over, a rollback that would bind microseg's ACL over someone else's (bound after the
    checkpoint) refuses, naming it — as a plan does."""
    from tests.netdev_kit import SECOND

    interface = INTERFACES["ios"][0]
    with simulator("ios") as sim:
        driver = driver_for(sim, "ios", bindings=[{"interface": interface}])
        plan_and_apply(driver, FIRST)
        checkpoint = driver.checkpoint()
        plan_and_apply(driver, SECOND)
        sim.cli("configure terminal", f"interface {interface}", "ip access-group CUSTOMER-EDGE out", "end")
        with pytest.raises(PermanentDriverError, match="CUSTOMER-EDGE bound out"):
            driver.rollback(checkpoint)
        assert "ip access-group CUSTOMER-EDGE out" in sim.cli("show running-config")
        driver.close()


def test_address_sets_of_labelled_workloads_are_proposed_as_label_selectors(project) -> None:
    """An ACL naming exactly the prod web hosts (IPv4) is adopted with a label selector for them, not a CIDR
    list — and still proven equivalent.  Where a selector would also bring in the members' IPv6 addresses (both
    sides selectors, the IPv6 slot denying), the proof fails and the proposal falls back to CIDR groups, proven."""
    from orchestrator.engine.adopt import propose
    from orchestrator.model.driver import Existing
    from orchestrator.model.rules import Mode, Ordering, Ruleset

    a = AddressSet.of
    web = a(["10.20.1.11/32", "10.20.1.12/32", "10.20.1.13/32", "10.20.1.14/32"])
    app = a(["10.20.2.11/32", "10.20.2.12/32", "10.20.2.13/32", "10.20.2.14/32"])
    v6_open = tuple(Rule(Action.PERMIT, d, None, a(["::/0"]), a(["::/0"])) for d in Direction)

    def existing(*rules: Rule) -> Existing:
        return Existing(Ruleset("leaf-prod-eos", Ordering.FIRST_MATCH, Action.DENY, rules, Mode.ENFORCE,
                                stateful=False), tuple(f"entry {i}" for i in range(len(rules))))

    https = Rule(Action.PERMIT, Direction.INGRESS, 6, a(["0.0.0.0/0"]), web, dst_ports=((443, 443),))
    replies = Rule(Action.PERMIT, Direction.EGRESS, 6, web, a(["0.0.0.0/0"]), src_ports=((443, 443),))
    adoption = propose(project, "leaf-prod-eos", existing(replies, https, *v6_open))
    assert adoption.equivalent and adoption.uses_selectors
    (rule,) = [r for r in adoption.policy["rules"] if r["services"] == ["tcp.443"]]
    assert adoption.policy["groups"][rule["to"]]["selector"] == {"env": "prod", "role": "web"}
    # both sides selectors, and IPv6 denied on the device: the selectors would widen IPv6 — CIDR groups instead
    app_to_web = Rule(Action.PERMIT, Direction.INGRESS, 6, app, web, dst_ports=((443, 443),))
    web_to_app = Rule(Action.PERMIT, Direction.EGRESS, 6, web, app, src_ports=((443, 443),))
    fallback = propose(project, "leaf-prod-eos", existing(web_to_app, app_to_web))
    assert fallback.equivalent and not fallback.uses_selectors
    assert all("selector" not in g for g in fallback.policy["groups"].values())
