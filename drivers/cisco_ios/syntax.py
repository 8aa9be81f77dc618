"""Cisco IOS / IOS-XE ACL syntax: show and running-config parsers, config-mode lines (pure, no I/O)."""

from __future__ import annotations

import re

from drivers.netacl.ace import Acl, Entry, Unsupported
from drivers.netacl.ciscolike import (
    CISCO_PORT_NAMES,
    EXEC_TIMESTAMPS,
    AclDraft,
    Dialect,
    GrammarError,
    check_family,
    check_word,
    cisco_config_reader,
    cisco_definition_problem,
    ends_with_end,
    is_number,
    line_error,
    parse_body,
)
from drivers.netacl.ciscosyntax import CiscoSyntax

DRIVER = "ios"
SHOW_IP, SHOW_IPV6, SHOW_INTERFACES = (
    "show ip access-lists", "show ipv6 access-list", "show running-config | section ^interface")
FETCH_COMMANDS: tuple[str, ...] = (SHOW_IP, SHOW_IPV6, SHOW_INTERFACES)
# Every ``% …`` answer but a warning (``% Invalid input detected at '^' marker.``, ``% Incomplete command.``,
# ``% Duplicate sequence number`` …) and ``%Error …``; syslog lines (``%SYS-5-CONFIG_I``) have no space after ``%``.
ERROR_PATTERN = r"(?m)^\s*% (?!Warning\b)|^\s*%Error"

DIALECT = Dialect(
    driver=DRIVER,
    host_keyword=True,
    wildcard=True,
    v6_sequence_last=True,
    multi_eq=True,
    service_groups=True,
    port_names=CISCO_PORT_NAMES,
    protocols4={1: "icmp", 6: "tcp", 17: "udp"},
    protocols6={58: "icmp", 6: "tcp", 17: "udp", 132: "sctp"},
    counters=re.compile(r"\(\d+ match(?:es)?\)"),
    headers=(
        (re.compile(r"Standard IP access list (?P<name>\S+)"), 4, "standard"),
        (re.compile(r"Extended IP access list (?P<name>\S+)"), 4, "extended"),
        (re.compile(r"IPv6 access list (?P<name>\S+)(?: \([^)]*\))?"), 6, "extended"),
    ),
    preamble=EXEC_TIMESTAMPS,
    bindings=(("ip access-group", 4), ("ipv6 traffic-filter", 6)),
    zero_counters_hidden=True,  # IOS prints "(N matches)" once an entry matched, always (nothing to configure)
)

SYNTAX = CiscoSyntax(DIALECT, (SHOW_IP, SHOW_IPV6), SHOW_INTERFACES,
                     {4: "show ip access-lists {name}", 6: "show ipv6 access-list {name}"})
fetch_commands = SYNTAX.fetch_commands
parse = SYNTAX.parse
parse_acls = SYNTAX.parse_acls
parse_bindings = SYNTAX.parse_bindings
format_entry = SYNTAX.format_entry
bind = SYNTAX.bind
unbind = SYNTAX.unbind

_RC_SKIP = re.compile(r"Building configuration\.\.\.|Current configuration : \d+ bytes|Configuration of Partition - .*"
                      r"|!.*|end|ip access-list (?:logging|log-update|persistent) .*")
_RC_NAMED = re.compile(r"ip access-list (?P<kind>extended|standard) (?P<name>\S+)")
_RC_NAMED6 = re.compile(r"ipv6 access-list (?P<name>\S+)")
_RC_NUMBERED = re.compile(r"access-list (?P<number>[0-9]+) (?P<line>.+)")
_RC_OTHER_BLOCK = re.compile(r"object-group .+")


def numbered_kind(number: int) -> tuple[int, str]:
    """(family, kind) of a numbered ``access-list N``: 1-99/1300-1999 standard, 100-199/2000-2699 extended."""
    if 1 <= number <= 99 or 1300 <= number <= 1999:
        return 4, "standard"
    if 100 <= number <= 199 or 2000 <= number <= 2699:
        return 4, "extended"
    return 0, "numbered"


def parse_running_config_acls(text: str, *, point: str = "-") -> tuple[Acl, ...]:
    """``show running-config partition access-list`` → named and numbered ACLs (entries without numbers get the
    highest + 10, as IOS numbers them; remarks → Acl.remarks)."""
    drafts: dict[tuple[str, int], AclDraft] = {}
    block: AclDraft | None = None
    skipping = False
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = " ".join(line.split())
        if not stripped:
            continue
        try:
            if line[0].isspace():
                if block is None and not skipping:
                    raise GrammarError("indented line outside an access-list block")
                if block is not None:
                    _config_line(block, stripped)
                continue
            block, skipping = None, bool(_RC_OTHER_BLOCK.fullmatch(stripped))
            if skipping or _RC_SKIP.fullmatch(stripped):
                continue
            if m := _RC_NUMBERED.fullmatch(stripped):
                _config_line(_draft(drafts, m["number"], *numbered_kind(int(m["number"]))), m["line"])
            elif m := _RC_NAMED.fullmatch(stripped):
                block = _draft(drafts, m["name"], 4, m["kind"])
            elif m := _RC_NAMED6.fullmatch(stripped):
                block = _draft(drafts, m["name"], 6, "extended")
            else:
                raise GrammarError("not an access-list configuration line")
        except GrammarError as exc:
            raise line_error(DIALECT, point, lineno, line, exc) from exc
    return tuple(d.build() for d in drafts.values())


def _draft(drafts: dict[tuple[str, int], AclDraft], name: str, family: int, kind: str) -> AclDraft:
    return drafts.setdefault((name, family), AclDraft(name, family, kind))


def _config_line(draft: AclDraft, line: str) -> None:
    """One entry or remark of a running-config ACL (``[SEQ] permit …``; IPv6 ``permit … [sequence SEQ]``)."""
    head, _, rest = line.partition(" ")
    if is_number(head) and rest.split(maxsplit=1)[:1] == ["remark"]:
        line = rest  # ``320 remark …``: a remark shown with the number of the entry it precedes
    if line.split(maxsplit=1)[0] == "remark":
        draft.remarks.append(line[len("remark"):].strip())
        return
    m = re.fullmatch(r"(?P<body>.+) sequence (?P<seq>[0-9]+)", line) if draft.family == 6 else None
    if m is not None:
        seq, body = int(m["seq"]), m["body"]
    elif is_number(head) and draft.family != 6:
        seq, body = int(head), rest
    else:
        seq, body = draft.next_seq(), line
    if draft.family == 0:
        draft.add(Entry(seq, Unsupported(body, f"numbered access-list {draft.name} is not an IP access list")))
        return
    draft.add(Entry(seq, parse_body(body, draft.family, DIALECT, standard=draft.kind == "standard")))


def acl_mode(name: str, family: int) -> str:
    check_word("ACL name", name)
    return f"ip access-list extended {name}" if check_family(family) == 4 else f"ipv6 access-list {name}"


def delete_entry(seq: int, family: int) -> str:
    return f"no {seq}" if check_family(family) == 4 else f"no sequence {seq}"


def delete_acl(name: str, family: int) -> str:
    return f"no {acl_mode(name, family)}"


def resequence(name: str, family: int) -> tuple[str, ...] | None:
    """Global-config line renumbering an IPv4 ACL to 10, 20 … (IOS leaves the ACL's mode: re-enter it after);
    None for IPv6, which has no such command (the driver deletes and re-adds entries)."""
    if check_family(family) == 6:
        return None
    return (f"ip access-list resequence {check_word('ACL name', name)} 10 10",)


# Tokens the inventory puts into configuration lines (settings, checked when the inventory loads): an
# interface name (Vlan301, GigabitEthernet1/0/1.100, Port-channel10) and an ACL name prefix.
INTERFACE_NAME = r"[A-Za-z][A-Za-z-]{0,39}\d+(?:/\d+){0,3}(?:\.\d+)?"
ACL_NAME_PREFIX = r"[A-Za-z][A-Za-z0-9_.-]{0,39}"


RUNNING_CONFIG = "show running-config"  # read for delete_replaced: every place that names the ACL
acl_config = cisco_config_reader(acl_mode)
definition_problem = cisco_definition_problem
complete_config = ends_with_end
