"""Cisco NX-OS ACL syntax: the show parsers and the config-mode lines (pure, no I/O)."""

from __future__ import annotations

import re

from drivers.netacl.ciscolike import (
    CISCO_PORT_NAMES,
    EXEC_TIMESTAMPS,
    Dialect,
    answered,
    check_family,
    check_word,
    cisco_config_reader,
    cisco_definition_problem,
)
from drivers.netacl.ciscosyntax import CiscoSyntax

DRIVER = "nxos"
SHOW_ACLS, SHOW_INTERFACES = "show access-lists", "show running-config interface"
FETCH_COMMANDS: tuple[str, ...] = (SHOW_ACLS, SHOW_INTERFACES)
# ``% Invalid command at '^' marker.``, ``% Incomplete command …``, ``ERROR: …``, ``Duplicate sequence number``.
ERROR_PATTERN = r"(?m)^\s*% (?!Warning\b)|^\s*ERROR:|Duplicate sequence number"

DIALECT = Dialect(
    driver=DRIVER,
    host_keyword=False,
    wildcard=False,
    v6_sequence_last=False,
    multi_eq=False,
    service_groups=False,
    port_names=CISCO_PORT_NAMES,
    protocols4={1: "icmp", 6: "tcp", 17: "udp", 132: "sctp"},
    protocols6={58: "icmp", 6: "tcp", 17: "udp", 132: "sctp"},
    counters=re.compile(r"\[match=\d+\]"),
    headers=(
        (re.compile(r"IP access list (?P<name>\S+)"), 4, "extended"),
        (re.compile(r"IPv6 access list (?P<name>\S+)"), 6, "extended"),
        (re.compile(r"MAC access list (?P<name>\S+)"), 0, "mac"),
        (re.compile(r"IPV4 ACL (?P<name>\S+)"), 4, "extended"),  # `show ip access-lists NAME` on some releases
        (re.compile(r"IPV6 ACL (?P<name>\S+)"), 6, "extended"),
    ),
    properties=(re.compile(r"statistics per-entry"),),
    preamble=EXEC_TIMESTAMPS,
    bindings=(("ip access-group", 4), ("ipv6 traffic-filter", 6)),
    remarks=True,  # `N remark TEXT`: numbered like an entry, listed with it
)

ENTRY_COUNTERS = "statistics per-entry"  # ACL mode: the listing then prints ``[match=N]`` on every entry

REMARKS = DIALECT.remarks  # microseg marks each policy rule's entries with a remark (layout.with_remarks)

SYNTAX = CiscoSyntax(DIALECT, (SHOW_ACLS,), SHOW_INTERFACES,
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
    """Config-mode line renumbering the ACL to 10, 20 … (re-enter the ACL's mode after it)."""
    return (f"resequence {acl_mode(name, family)} 10 10",)


# Tokens the inventory puts into configuration lines (settings, checked when the inventory loads): an
# interface name (Vlan301, GigabitEthernet1/0/1.100, Port-channel10) and an ACL name prefix.
INTERFACE_NAME = r"[A-Za-z][A-Za-z-]{0,39}\d+(?:/\d+){0,3}(?:\.\d+)?"
ACL_NAME_PREFIX = r"[A-Za-z][A-Za-z0-9_.-]{0,39}"


RUNNING_CONFIG = "show running-config"  # read for delete_replaced: every place that names the ACL
acl_config = cisco_config_reader(acl_mode)
definition_problem = cisco_definition_problem
complete_config = answered
