"""Arista EOS ACL syntax: the show parsers and the config-mode lines (pure, no I/O)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from drivers.netacl.ciscolike import (
    CISCO_PORT_NAMES,
    Dialect,
    check_family,
    check_word,
    cisco_config_reader,
    cisco_definition_problem,
    ends_with_end,
)
from drivers.netacl.ciscosyntax import CiscoSyntax

DRIVER = "eos"
SHOW_IP, SHOW_IPV6, SHOW_INTERFACES = (
    "show ip access-lists", "show ipv6 access-lists", "show running-config | section ^interface")
FETCH_COMMANDS: tuple[str, ...] = (SHOW_IP, SHOW_IPV6, SHOW_INTERFACES)
# ``% Invalid input …``, ``% Incomplete command``, ``% Error: Duplicate sequence number`` … (warnings start with ``!``).
ERROR_PATTERN = r"(?m)^\s*% (?!Warning\b)"

# EOS port keywords: the Cisco ones and more (IANA numbers).  The EOS-specific ones EOS prints in its own
# default-control-plane-acl (Arista's EOS manual, `show access-lists`; tests/data/captures/eos) take their numbers
# from Batfish's Arista grammar (batfish/batfish, Apache-2.0: AristaControlPlaneExtractor.toNamedPort → NamedPort:
# ldp, mlag, nat, ptp-event, ptp-general), netconf-ssh and multihop-bfd from Chris-P-15B/ACL-Decrufter (BSD-3-Clause,
# ACL_decrufter.py PORT_NAMES) and sbfd from netmeld/netmeld (MIT, PortRange.cpp).  ``gnmi`` and ``sbfd-initiator``
# have no number any citable source gives: an entry naming them stays Unsupported, never misread.
PORT_NAMES: Mapping[str, int] = {
    **CISCO_PORT_NAMES,
    "acap": 674, "acr-nema": 104, "afpovertcp": 548, "arns": 384, "asf-rmcp": 623, "auth": 113, "bfd": 3784,
    "bfd-echo": 3785, "bftp": 152, "bgmp": 264, "commerce": 542, "courier": 530, "dhcpv6-client": 546,
    "dhcpv6-server": 547, "https": 443, "imap": 143, "imap3": 220, "imaps": 993, "kerberos": 88, "ldap": 389,
    "ldaps": 636, "ldp": 646, "lsp-ping": 3503, "micro-bfd": 6784, "microsoft-ds": 445, "mlag": 4432, "msdp": 639,
    "multihop-bfd": 4784, "mysql": 3306, "nat": 4532, "netconf-ssh": 830, "nfs": 2049, "pptp": 1723, "ptp-event": 319,
    "ptp-general": 320, "radius": 1812, "radius-acct": 1813, "rtsp": 554, "sbfd": 7784, "tunnel": 604,
    "ups": 401, "vmnet": 175, "vxlan": 4789, "z39-50": 210,
}
_NAME = r"(?P<name>\S+)(?: \[readonly\])?"
DIALECT = Dialect(
    driver=DRIVER,
    host_keyword=True,
    wildcard=False,
    v6_sequence_last=False,
    multi_eq=True,
    service_groups=False,
    port_names=PORT_NAMES,
    protocols4={1: "icmp", 6: "tcp", 17: "udp"},
    protocols6={58: "icmpv6", 6: "tcp", 17: "udp"},
    counters=re.compile(r"\[match [^\]]*\]"),
    headers=(
        (re.compile(r"IP Access List " + _NAME), 4, "extended"),
        (re.compile(r"(?i:IPv6) Access List " + _NAME), 6, "extended"),  # EOS releases print IPv6 and IPV6
        (re.compile(r"Standard IP Access List " + _NAME), 4, "standard"),
        (re.compile(r"Standard (?i:IPv6) Access List " + _NAME), 6, "standard"),
    ),
    properties=(
        re.compile(r"(?:statistics|counters) per-entry"),
        re.compile(r"Total rules configured: \d+"),
        re.compile(r"(?:Configured|Active) on +(?:Ingress|Egress): .*"),
        re.compile(r"control-plane\([^)]*\)"),  # a further place the line above continues on (one per line)
        # what every list ends in, printed by some releases: the model's own implicit default, not an entry
        re.compile(r"\(implicit\) deny (?:ip|ipv6) any any(?: \[match [^\]]*\])?"),
    ),
    # status lines some releases print before the lists
    preamble=(re.compile(r"Phone ACL bypass: (?:enabled|disabled)"),
              re.compile(r"Warning: displaying stale counters.*")),
    bindings=(("ip access-group", 4), ("ipv6 access-group", 6)),
    remarks=True,  # `N remark TEXT`: numbered like an entry, listed with it
)

ENTRY_COUNTERS = "counters per-entry"  # ACL mode: the listing then prints ``[match …]`` on entries that matched

REMARKS = DIALECT.remarks  # microseg marks each policy rule's entries with a remark (layout.with_remarks)

SYNTAX = CiscoSyntax(DIALECT, (SHOW_IP, SHOW_IPV6), SHOW_INTERFACES,
                     {4: "show ip access-lists {name}", 6: "show ipv6 access-lists {name}"})
fetch_commands = SYNTAX.fetch_commands
parse = SYNTAX.parse
parse_acls = SYNTAX.parse_acls
parse_bindings = SYNTAX.parse_bindings
format_entry = SYNTAX.format_entry
bind = SYNTAX.bind
unbind = SYNTAX.unbind


def acl_mode(name: str, family: int) -> str:
    return f"{'ip' if check_family(family) == 4 else 'ipv6'} access-list {check_word('ACL name', name)}"


def delete_entry(seq: int, family: int) -> str:
    check_family(family)
    return f"no {seq}"


def delete_acl(name: str, family: int) -> str:
    return f"no {acl_mode(name, family)}"


def resequence(name: str, family: int) -> tuple[str, ...] | None:
    """The ACL's mode, then ``resequence 10 10`` inside it (the session stays in the ACL's mode)."""
    return (acl_mode(name, family), "resequence 10 10")


# Tokens the inventory puts into configuration lines (settings, checked when the inventory loads): an
# interface name (Vlan301, GigabitEthernet1/0/1.100, Port-channel10) and an ACL name prefix.
INTERFACE_NAME = r"[A-Za-z][A-Za-z-]{0,39}\d+(?:/\d+){0,3}(?:\.\d+)?"
ACL_NAME_PREFIX = r"[A-Za-z][A-Za-z0-9_.-]{0,39}"


RUNNING_CONFIG = "show running-config"  # read for delete_replaced: every place that names the ACL
acl_config = cisco_config_reader(acl_mode)
definition_problem = cisco_definition_problem
complete_config = ends_with_end
