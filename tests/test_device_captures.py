"""Real device outputs (tests/data/captures, provenance in PROVENANCE.md) read the way a fetch reads them.

Strict on what microseg owns, tolerant of the rest (issue #14): a device's fetch never fails on a line outside
the owned ACLs and bindings — that line is listed as unmanaged, with the reason — while a line that cannot be
read inside an owned ACL fails closed with the ACL, the sequence number and the line.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from types import ModuleType

import pytest

from drivers.arista_eos import syntax as eos
from drivers.cisco_ios import IosDriver
from drivers.cisco_ios import syntax as ios
from drivers.cisco_nxos import syntax as nxos
from drivers.netacl.ace import Ace, Acl, Unsupported
from drivers.netacl.ciscolike import parse_show_entry, read_listing
from drivers.netacl.layout import AclSettings, observed_ruleset, owned_state, parse_settings
from orchestrator.model.errors import ParseError
from orchestrator.model.rules import Action, AddressSet, Direction, TcpFlags
from simulators.netdev import eos_acl
from tests.netdev_kit import driver_for, simulator

CAPTURES = Path(__file__).parent / "data" / "captures"
SYNTAX: dict[str, ModuleType] = {"ios": ios, "nxos": nxos, "eos": eos}
LISTINGS = sorted(p for p in CAPTURES.glob("*/*.txt") if "running_config" not in p.name and p.parent.name in SYNTAX)

# Every line of every capture that is not read, and why: anything else must be read (a header, an entry, a
# property or known preamble).  A new unread line in this table is a regression; so is one that disappears.
NOT_READ: dict[str, list[tuple[int, str | None, str]]] = {
    "ios/show_access_list__cisco_ios_show_access-list.txt": [  # contributor-edited lines (see PROVENANCE.md)
        (22, "ciao", "port range 80 53 is reversed"), (25, "10", "'udp' is not an address"),
        (26, "10", "'tcp' is not an address")],
    "ios/show_access_lists__golden_output_3_output.txt": [
        (2, "FQDN_ACL_WEBAUTH_REDIRECT", "FQDN IP access list: not modelled")],
    "ios/show_access_lists__golden_output_4_output.txt": [
        (1, "FQDN_v6ACL_WEBAUTH_REDIRECT", "IPv6 FQDN access list: not modelled")],
    "ios/show_access_lists__golden_output_output.txt": [
        (20, "ipv6_acl", "expected an address, not '2001:db8:9:9::3'"),
        (25, "mac_acl", "Extended MAC access list: not modelled")],
    "ios/show_ip_access_lists__golden_ip_access_list_output_1_output.txt": [
        (1, "permit_icmp", "Role-based IP access list: not modelled")],
    "ios/show_ip_access_lists__golden_ip_access_list_output_2_output.txt": [
        (1, "icmp_echo-01", "Role-based IP access list: not modelled")],
    "ios/show_ip_access_lists__golden_ip_access_list_output_3_output.txt": [
        (1, "Default_SGACL_1-02", "Role-based IP access list: not modelled")],
    "ios/show_ipv6_access_lists__golden_ipv6_access_list_output_1_output.txt": [
        (1, "v6_sgacl", "IPv6 Role-based access list: not modelled")],
    "eos/show_access_lists__arista_um_eos_acls_and_route_maps.txt": [
        (97, "mlist", "MAC access list: not modelled")],
}


def listing(path: Path) -> tuple[tuple[Acl, ...], list[tuple[int, str | None, str]]]:
    acls, unread = read_listing(path.read_text(), SYNTAX[path.parent.name].DIALECT, command="show")
    return acls, [(u.line_no, u.acl, u.reason) for u in unread]


def acl(acls: tuple[Acl, ...], name: str) -> Acl:
    return next(a for a in acls if a.name == name)


def test_every_capture_is_on_record() -> None:
    recorded = (CAPTURES / "PROVENANCE.md").read_text()
    assert len(LISTINGS) >= 30
    for path in CAPTURES.glob("*/*.txt"):
        assert f"`{path.parent.name}/{path.name}`" in recorded, f"{path} has no provenance"


@pytest.mark.parametrize("path", LISTINGS, ids=lambda p: f"{p.parent.name}/{p.stem[:60]}")
def test_capture_is_read_except_what_is_on_record(path: Path) -> None:
    acls, unread = listing(path)
    expected = NOT_READ.get(f"{path.parent.name}/{path.name}", [])
    assert [(n, a) for n, a, _ in unread] == [(n, a) for n, a, _ in expected]
    for (_, _, reason), (_, _, want) in zip(unread, expected, strict=True):
        assert want in reason
    assert acls or expected, "nothing read"
    for one in acls:  # every unsupported entry says why, never a blanket "unrecognized"
        for entry in one.entries:
            if isinstance(entry.body, Unsupported):
                assert entry.body.reason and "unrecognized option" not in entry.body.reason, entry


def test_exec_prompt_timestamps_and_echoed_commands_are_skipped() -> None:
    path = CAPTURES / "ios/show_ip_access_lists__golden_ip_access_list_output_output.txt"
    text = path.read_text()
    assert "Load for five secs" in text and "Time source is" in text and "Router#show ip access-lists" in text
    acls, unread = listing(path)
    assert unread == [] and [a.name for a in acls] == ["ACL_TEST"] and len(acls[0].entries) == 17


def test_older_standard_lists_without_sequence_numbers_are_numbered_as_ios_numbers_them() -> None:
    acls, unread = listing(CAPTURES / "ios/show_access_lists__golden_output_standard_output.txt")
    assert unread == []
    unnumbered = [a for a in acls if a.kind == "standard" and a.entries and a.entries[0].seq == 10]
    assert unnumbered and all([e.seq for e in a.entries] == list(range(10, 10 * len(a.entries) + 1, 10))
                              for a in unnumbered)
    assert all(isinstance(e.body, Ace) for a in unnumbered for e in a.entries)


@pytest.mark.parametrize("name", ["ios/show_access_list__cisco_ios_show_access-list2.txt",
                                  "ios/show_access_lists__golden_output_customer1_output.txt"])
def test_unindented_entries_belong_to_their_list(name: str) -> None:
    path = CAPTURES / name
    lines = path.read_text().splitlines()
    unindented = [line for line in lines if line[:1].isdigit() or line.startswith(("permit", "deny"))]
    acls, unread = listing(path)
    assert unindented and unread == []
    assert sum(len(a.entries) for a in acls) >= len(unindented)


def test_list_kinds_microseg_does_not_model_are_named_with_the_reason() -> None:
    kinds = {acl_name: reason for name, rows in NOT_READ.items() for _, acl_name, reason in rows
             if "not modelled" in reason and acl_name}
    assert {reason.split(" access list")[0] for reason in kinds.values()} >= {
        "FQDN IP", "IPv6 FQDN", "Extended MAC", "Role-based IP", "IPv6 Role-based"}
    acls, _ = listing(CAPTURES / "ios/show_ipv6_access_lists__golden_ipv6_access_list_all_output_output.txt")
    assert any(a.name.startswith("Virtual-Access2.1#") for a in acls)  # per-user lists are ordinary IPv6 lists


def test_nxos_wildcard_masks_and_an_output_indented_whole() -> None:
    acls, unread = listing(CAPTURES / "nxos/show_access_lists__golden_output1_output.txt")
    assert unread == [] and len(acls) == 7
    entry = acl(acls, "test22").entries[0]  # 10 permit tcp 192.168.1.0 0.0.0.255 10.4.1.1/32 established log
    assert entry.body == Ace(Action.PERMIT, 6, ipaddress.ip_network("192.168.1.0/24"),
                             ipaddress.ip_network("10.4.1.1/32"), log=True, tcp_flags=TcpFlags.ESTABLISHED)
    parsed = nxos.parse_acls("IP access list W\n        10 permit tcp 192.168.1.0 0.0.0.255 10.4.1.1/32 eq 22\n")
    assert parsed[0].entries[0].body.src == ipaddress.ip_network("192.168.1.0/24")  # type: ignore[union-attr]


def test_nxos_ipv4_acl_header_variant() -> None:
    acls, unread = listing(CAPTURES / "nxos/show_access_lists__golden_output3_output.txt")
    assert unread == [] and [(a.name, a.family) for a in acls] == [("1", 4)]


def test_log_with_a_tag_says_so() -> None:
    acls, _ = listing(CAPTURES / "ios/show_ip_access_lists__cisco_ios_show_ip_access-lists_969.txt")
    reasons = [e.body.reason for a in acls for e in a.entries if isinstance(e.body, Unsupported)]
    assert "log with options (tag = tag_name)" in "; ".join(reasons)


def test_running_config_remark_sharing_its_entrys_number() -> None:
    path = CAPTURES / "ios/show_running_config_partition_access_list__cisco_ios_show_running-config_partition_" \
                      "access-list_new.txt"
    text = path.read_text()
    assert "320 remark Vodafone BGP" in text and "320 permit icmp" in text
    acls = ios.parse_running_config_acls(text)
    filter01 = acl(acls, "filter01")
    assert "Vodafone BGP" in filter01.remarks and any(e.seq == 320 for e in filter01.entries)


# Not found as public captures (see PROVENANCE.md): these lines follow the forms the issue lists for EOS.
EOS_VARIANTS = """Phone ACL bypass: disabled
Warning: displaying stale counters
IPV6 Access List V6-EDGE
        counters per-entry
        10 permit tcp any any eq https [match 12 bytes in 3 packets, 0:00:05 ago]
        Total rules configured: 1
        Configured on Ingress: Vlan201
        Active on Ingress: Vlan201
Standard IPv6 Access List V6-STD
        10 permit any
IP Access List default-control-plane-acl [readonly]
        10 permit icmp any any
"""


def test_eos_header_casing_readonly_and_status_lines() -> None:
    acls, unread = read_listing(EOS_VARIANTS, eos.DIALECT)
    assert unread == ()
    assert [(a.name, a.family, len(a.entries)) for a in acls] == [
        ("V6-EDGE", 6, 1), ("V6-STD", 6, 1), ("default-control-plane-acl", 4, 1)]
    assert acls[0].entries[0].matches == 3  # the packets, not the bytes
    one = parse_show_entry("10 permit ip any any [match 64 bytes in 1 packet, 0:00:01 ago]", 4, "extended", eos.DIALECT)
    assert one.matches == 1


EOS_MANUAL = "eos/show_access_lists__arista_um_eos_acls_and_route_maps.txt"


def test_eos_port_keywords_read_as_their_numbers() -> None:
    """EOS's own default-control-plane-acl, from Arista's manual: every port keyword with a citable number is read
    as that number (sources in drivers/arista_eos/syntax.py); the two without one stay Unsupported, by name."""
    acls, _ = listing(CAPTURES / EOS_MANUAL)
    v4, v6 = (next(a for a in acls if a.name == "default-control-plane-acl" and a.family == f) for f in (4, 6))

    def dst(one: Acl, seq: int) -> set[int]:
        body = next(e.body for e in one.entries if e.seq == seq)
        assert isinstance(body, Ace), body
        return {p for lo, hi in body.dst_ports for p in range(lo, hi + 1)}

    assert dst(v4, 50) == dst(v6, 50) == {4784, 6784, 7784}  # multihop-bfd micro-bfd sbfd
    assert dst(v4, 90) == {67, 68, 161, 520, 123, 646, 319, 320}  # bootps bootpc snmp rip ntp ldp ptp-event/-general
    assert dst(v6, 110) == {67, 68, 161, 123, 319, 320}
    assert dst(v4, 260) == {3503}  # lsp-ping
    assert dst(v6, 170) == {546, 547}  # dhcpv6-client dhcpv6-server
    reasons = {(a.family, e.seq): e.body.reason for a in (v4, v6) for e in a.entries if isinstance(e.body, Unsupported)}
    assert "sbfd-initiator" in reasons[4, 60] and "'sbfd'" not in reasons[4, 60]
    assert "gnmi" in reasons[4, 80] and not {"ldp", "netconf-ssh"} & set(re.findall(r"'([^']+)'", reasons[4, 80]))
    assert reasons[4, 100] == "ttl eq 255" and reasons[4, 200] == "ttl eq 255"  # mlag, nat: only the TTL is left
    assert reasons[6, 120] == "hop-limit eq 255" and reasons[6, 190] == "hop-limit eq 255"


def test_eos_simulator_prints_the_keywords_the_parser_reads() -> None:
    """The EOS simulator prints a port by its keyword where EOS does; each reads back as its number."""
    for proto, names in eos_acl.PORT_NAMES.items():
        for number, name in names.items():
            assert eos.PORT_NAMES.get(name) == number, (proto, number, name)


# The `(implicit)` entry and the continuation lines of a control-plane ACL's status, as a cEOS `show ip
# access-lists` prints them (the format of pdudotdev/YANA testing/live/platform_coverage_results.md, commit
# a790b728b892c6c8339ac46ae71e726b002ae952, a cEOS capture; only these lines are quoted).
EOS_IMPLICIT = """IP Access List MSEG-INGRESS-V4
        counters per-entry
        10 permit tcp any any eq 443 [match 120 bytes in 2 packets, 0:00:01 ago]
        (implicit) deny ip any any

        Total rules configured: 1
        Configured on Ingress: control-plane(VRF1 VRF)
                       control-plane(default VRF)
        Active on     Ingress: control-plane(VRF1 VRF)
                       control-plane(default VRF)
"""


def test_eos_implicit_deny_and_continued_status_lines_are_no_entries() -> None:
    acls, unread = read_listing(EOS_IMPLICIT, eos.DIALECT)
    assert unread == ()
    # nothing unread, so an owned ACL that a release lists this way is read, not failed closed; the implicit deny is
    # the model's own default, not an entry
    assert [(e.seq, e.matches) for e in acls[0].entries] == [(10, 2)]


# ---------------------------------------------------------------------------------------------------- ownership

OWNED_V4 = "MSEG-INGRESS-V4"


def settings() -> AclSettings:
    return parse_settings({"bindings": [{"interface": "Vlan301"}]}, "sw", "ios", AddressSet.of(["10.30.1.0/24"]),
                          model=IosDriver.settings_model, max_seq=IosDriver.max_seq,
                          directions=frozenset({Direction.INGRESS}))


def device_with(owned_lines: str) -> dict[str, str]:
    """A whole-device fetch: a real capture full of someone else's lists, plus one owned ACL."""
    foreign = (CAPTURES / "ios/show_access_lists__golden_output_output.txt").read_text()
    foreign += (CAPTURES / "ios/show_access_lists__golden_output_3_output.txt").read_text()
    return {ios.SHOW_IP: f"{foreign}\nExtended IP access list {OWNED_V4}\n{owned_lines}", ios.SHOW_IPV6: "",
            ios.SHOW_INTERFACES: f"interface Vlan301\n ip access-group {OWNED_V4} out\n"}


def test_foreign_lists_never_block_and_are_listed_with_their_reason() -> None:
    typed = settings()
    state = owned_state(ios.parse(device_with("    10 permit tcp any 10.30.1.0 0.0.0.255 eq 22\n")), typed,
                        point="sw", driver="ios")
    assert [a["name"] for a in state["acls"]] == [OWNED_V4]
    ruleset, notes = observed_ruleset(state, typed, "sw", "ios")
    assert len(ruleset.rules) == 1
    unread = {n.name: n.detail for n in notes if n.kind == "listing"}
    assert "not read (Extended MAC access list: not modelled" in unread["mac_acl"]
    assert "FQDN IP access list" in unread["FQDN_ACL_WEBAUTH_REDIRECT"]
    assert "ipv6_acl" in unread and "never touched" in unread["ipv6_acl"]


def test_an_unreadable_line_in_an_owned_acl_fails_closed_naming_acl_sequence_and_line() -> None:
    outputs = device_with("    10 permit tcp any 10.30.1.0 0.0.0.255 eq 22\n    20 permit tcp any range 90 80 any\n")
    with pytest.raises(ParseError) as caught:
        owned_state(ios.parse(outputs, point="sw"), settings(), point="sw", driver="ios")
    message = caught.value.message
    assert f"owned ACL {OWNED_V4} entry 20" in message and "`show ip access-lists` line" in message
    assert "port range 90 80 is reversed" in message and "'20 permit tcp any range 90 80 any'" in message


def test_an_owned_name_in_a_list_kind_microseg_does_not_model_fails_closed() -> None:
    outputs = device_with("")
    outputs[ios.SHOW_IP] += f"Reflexive IP access list {OWNED_V4}\n     permit tcp host 10.0.0.1 eq 22 any\n"
    with pytest.raises(ParseError, match=f"owned ACL {OWNED_V4} cannot be read .*Reflexive IP access list"):
        owned_state(ios.parse(outputs, point="sw"), settings(), point="sw", driver="ios")


def test_an_unreadable_binding_fails_closed_only_on_the_points_interfaces() -> None:
    outputs = device_with("")
    outputs[ios.SHOW_INTERFACES] += "interface Vlan999\n ip access-group FOO sideways\n"
    owned_state(ios.parse(outputs), settings(), point="sw", driver="ios")  # someone else's interface
    outputs[ios.SHOW_INTERFACES] += "interface Vlan301\n ip access-group BAR sideways\n"
    with pytest.raises(ParseError, match="the ACL bindings of Vlan301 cannot be read"):
        owned_state(ios.parse(outputs), settings(), point="sw", driver="ios")


@pytest.mark.parametrize("platform", ["ios", "nxos", "eos"])
def test_fetch_reads_the_owned_acls_by_name_not_the_device(platform: str) -> None:
    """A device holding 2,000 entries of someone else's costs the fetch nothing: owned ACLs are listed by name."""
    big = {"ios": ("ip access-list extended BIG-FOREIGN",
                   *(f"{10 * i} permit tcp any host 10.9.{i // 250}.{i % 250} eq 443" for i in range(1, 2001)), "exit"),
           "nxos": ("ip access-list BIG-FOREIGN",
                    *(f"{10 * i} permit tcp any 10.9.{i // 250}.{i % 250}/32 eq 443" for i in range(1, 2001)), "exit"),
           "eos": ("ip access-list BIG-FOREIGN",
                   *(f"{10 * i} permit tcp any host 10.9.{i // 250}.{i % 250} eq https" for i in range(1, 2001)),
                   "exit")}[platform]
    with simulator(platform) as sim:
        sim.cli("configure terminal", *big, "end")
        assert "BIG-FOREIGN" in sim.cli(f"show {'ip ' if platform != 'nxos' else ''}access-lists")
        driver = driver_for(sim, platform)
        sim.history.clear()
        snapshot = driver.fetch()
        sent = list(sim.history)
        driver.close()
    owned = driver.settings.owned_names()
    assert all(any(name in command for name in owned) for command in sent if "access-list" in command), sent
    assert not any(command.rstrip().endswith(("access-lists", "access-list")) for command in sent), sent
    assert "BIG-FOREIGN" not in str(snapshot.native)
    assert "CUSTOMER-EDGE" not in snapshot.native["other_acls"]  # bound on an interface the point does not manage


def test_a_changing_foreign_line_does_not_change_the_snapshot() -> None:
    """Unread lines are kept by list and reason, not text: a status line that changes on every read (or a
    foreign list's counters) leaves the owned state, and so a plan's staleness check, alone."""
    first, second = device_with(""), device_with("")
    first[ios.SHOW_IP] = "Uptime is 1 day, 2 hours, 3 minutes\n" + first[ios.SHOW_IP]
    second[ios.SHOW_IP] = "Uptime is 1 day, 2 hours, 4 minutes\n" + second[ios.SHOW_IP]
    states = [owned_state(ios.parse(outputs), settings(), point="sw", driver="ios") for outputs in (first, second)]
    assert states[0] == states[1]
    assert {"name": "(outside any access list)", "reason": "not an access list header, entry or property"} in \
        states[0]["unread"]


def test_a_listing_by_name_that_finds_no_such_list_reads_as_absent() -> None:
    """Some platforms answer a listing by name with '% … not found' when the list does not exist (a point's
    first fetch): that is an absent ACL, not garbage charged to it."""
    for answer in ("% Access list MSEG-INGRESS-V4 not found", "% ACL MSEG-INGRESS-V4 does not exist"):
        assert read_listing(answer + "\n", eos.DIALECT, asked="MSEG-INGRESS-V4") == ((), ())
    acls, unread = read_listing("%$#@ garbage\n", eos.DIALECT, asked="MSEG-INGRESS-V4")
    assert acls == () and unread[0].acl == "MSEG-INGRESS-V4"
