"""The simulators' own model of Cisco IOS / NX-OS ACLs: entries by sequence number, names tables, rendering."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from simulators.netdev.personality import CliError

IP = ipaddress.IPv4Address | ipaddress.IPv6Address

IOS_TCP_PORTS = {
    "bgp": 179, "chargen": 19, "cmd": 514, "daytime": 13, "discard": 9, "domain": 53, "drip": 3949, "echo": 7,
    "exec": 512, "finger": 79, "ftp": 21, "ftp-data": 20, "gopher": 70, "hostname": 101, "ident": 113,
    "irc": 194, "klogin": 543, "kshell": 544, "login": 513, "lpd": 515, "msrpc": 135, "nntp": 119,
    "onep-plain": 15001, "onep-tls": 15002, "pim-auto-rp": 496, "pop2": 109, "pop3": 110, "smtp": 25,
    "sunrpc": 111, "tacacs": 49, "talk": 517, "telnet": 23, "time": 37, "uucp": 540, "whois": 43, "www": 80,
}  # fmt: skip
IOS_UDP_PORTS = {
    "biff": 512, "bootpc": 68, "bootps": 67, "discard": 9, "dnsix": 195, "domain": 53, "echo": 7, "isakmp": 500,
    "mobile-ip": 434, "nameserver": 42, "netbios-dgm": 138, "netbios-ns": 137, "netbios-ss": 139,
    "non500-isakmp": 4500, "ntp": 123, "pim-auto-rp": 496, "rip": 520, "ripv6": 521, "snmp": 161,
    "snmptrap": 162, "sunrpc": 111, "syslog": 514, "tacacs": 49, "talk": 517, "tftp": 69, "time": 37,
    "who": 513, "xdmcp": 177,
}  # fmt: skip
NXOS_TCP_PORTS = {k: v for k, v in IOS_TCP_PORTS.items() if k not in ("msrpc", "onep-plain", "onep-tls")}
NXOS_UDP_PORTS = {k: v for k, v in IOS_UDP_PORTS.items() if k != "ripv6"}

V4_PROTOCOLS = {
    "ahp": 51, "eigrp": 88, "esp": 50, "gre": 47, "icmp": 1, "igmp": 2, "nos": 94, "ospf": 89, "pcp": 108,
    "pim": 103, "tcp": 6, "udp": 17,
}  # fmt: skip
IOS_V6_PROTOCOLS = {"ahp": 51, "esp": 50, "hbh": 0, "icmp": 58, "pcp": 108, "sctp": 132, "tcp": 6, "udp": 17}
NXOS_V6_PROTOCOLS = {"ahp": 51, "esp": 50, "icmp": 58, "pcp": 108, "pim": 103, "sctp": 132, "tcp": 6, "udp": 17}

ICMP4_NAMES: dict[str, tuple[int, int | None]] = {
    "echo-reply": (0, None), "unreachable": (3, None), "net-unreachable": (3, 0), "host-unreachable": (3, 1),
    "protocol-unreachable": (3, 2), "port-unreachable": (3, 3), "packet-too-big": (3, 4),
    "source-route-failed": (3, 5), "network-unknown": (3, 6), "host-unknown": (3, 7), "host-isolated": (3, 8),
    "dod-net-prohibited": (3, 9), "dod-host-prohibited": (3, 10), "net-tos-unreachable": (3, 11),
    "host-tos-unreachable": (3, 12), "administratively-prohibited": (3, 13),
    "host-precedence-unreachable": (3, 14), "precedence-unreachable": (3, 15), "source-quench": (4, None),
    "redirect": (5, None), "net-redirect": (5, 0), "host-redirect": (5, 1), "net-tos-redirect": (5, 2),
    "host-tos-redirect": (5, 3), "alternate-address": (6, None), "echo": (8, None),
    "router-advertisement": (9, None), "router-solicitation": (10, None), "time-exceeded": (11, None),
    "ttl-exceeded": (11, 0), "reassembly-timeout": (11, 1), "parameter-problem": (12, None),
    "general-parameter-problem": (12, 0), "option-missing": (12, 1), "no-room-for-option": (12, 2),
    "timestamp-request": (13, None), "timestamp-reply": (14, None), "information-request": (15, None),
    "information-reply": (16, None), "mask-request": (17, None), "mask-reply": (18, None),
    "traceroute": (30, None), "conversion-error": (31, None), "mobile-redirect": (32, None),
}  # fmt: skip
ICMP6_NAMES: dict[str, tuple[int, int | None]] = {
    "unreachable": (1, None), "destination-unreachable": (1, None), "no-route": (1, 0), "no-admin": (1, 1),
    "beyond-scope": (1, 2), "address-unreachable": (1, 3), "port-unreachable": (1, 4),
    "packet-too-big": (2, None), "time-exceeded": (3, None), "hop-limit": (3, 0), "reassembly-timeout": (3, 1),
    "parameter-problem": (4, None), "header": (4, 0), "next-header": (4, 1), "parameter-option": (4, 2),
    "echo-request": (128, None), "echo-reply": (129, None), "mld-query": (130, None), "mld-report": (131, None),
    "mld-reduction": (132, None), "router-solicitation": (133, None), "router-advertisement": (134, None),
    "nd-ns": (135, None), "nd-na": (136, None), "redirect": (137, None), "router-renumbering": (138, None),
}  # fmt: skip
DSCP_NAMES = {
    "default": 0, "cs1": 8, "af11": 10, "af12": 12, "af13": 14, "cs2": 16, "af21": 18, "af22": 20, "af23": 22,
    "cs3": 24, "af31": 26, "af32": 28, "af33": 30, "cs4": 32, "af41": 34, "af42": 36, "af43": 38, "cs5": 40,
    "ef": 46, "cs6": 48, "cs7": 56,
}  # fmt: skip
PRECEDENCE_NAMES = {
    "routine": 0, "priority": 1, "immediate": 2, "flash": 3, "flash-override": 4, "critical": 5,
    "internet": 6, "network": 7,
}  # fmt: skip
TCP_FLAGS = ("established", "ack", "fin", "psh", "rst", "syn", "urg")
#: the order options are shown in, whatever order they were typed in
OPTION_ORDER = ("precedence", "dscp", "ttl", "fragments", "log", "log-input")


def reverse(table: dict[str, int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for name, number in table.items():
        out.setdefault(number, name)
    return out


@dataclass(frozen=True)
class Dialect:
    """What differs between IOS and NX-OS in ACL syntax and display."""

    platform: str  # "ios" | "nxos"
    tcp_ports: dict[str, int]
    udp_ports: dict[str, int]
    v6_protocols: dict[str, int]
    max_seq: int
    duplicate_seq: str
    multi_port: bool  # eq/neq accept up to 10 ports (IOS)
    mask_host_bits: bool  # IOS stores 10.1.1.1 0.0.0.255 as 10.1.1.0; NX-OS keeps what was typed
    prefix_v4: bool  # A.B.C.D/LEN accepted in IPv4 entries (NX-OS)

    def ports(self, protocol: str) -> dict[str, int]:
        return self.tcp_ports if protocol == "tcp" else self.udp_ports

    def protocols(self, family: int) -> dict[str, int]:
        return V4_PROTOCOLS if family == 4 else self.v6_protocols


IOS = Dialect("ios", IOS_TCP_PORTS, IOS_UDP_PORTS, IOS_V6_PROTOCOLS, 2147483647, "% Duplicate sequence number",
              True, True, False)  # fmt: skip
NXOS = Dialect("nxos", NXOS_TCP_PORTS, NXOS_UDP_PORTS, NXOS_V6_PROTOCOLS, 4294967295, "Duplicate sequence number",
               False, False, True)  # fmt: skip


@dataclass(frozen=True)
class Address:
    """``any`` (ip None), a host/network (ip + wildcard bits) or an NX-OS ``addrgroup``."""

    ip: IP | None = None
    wildcard: int = 0
    group: str = ""

    def prefixlen(self) -> int | None:
        """The prefix length when the wildcard is contiguous, else None."""
        if self.ip is None or self.wildcard & (self.wildcard + 1):
            return None
        return self.ip.max_prefixlen - self.wildcard.bit_length()


ANY = Address()


@dataclass(frozen=True)
class PortMatch:
    op: str  # eq | neq | gt | lt | range
    ports: tuple[int, ...]


@dataclass(frozen=True)
class Ace:
    """One entry; ``remark`` entries carry only the text."""

    action: str  # permit | deny | remark
    protocol: str = ""
    src: Address = ANY
    src_ports: PortMatch | None = None
    dst: Address = ANY
    dst_ports: PortMatch | None = None
    icmp: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    options: tuple[tuple[str, str], ...] = ()
    remark: str = ""


@dataclass
class Acl:
    name: str
    family: int  # 4 | 6
    kind: str = "extended"  # extended | standard
    entries: dict[int, Ace] = field(default_factory=dict)
    statistics: bool = False  # NX-OS ``statistics per-entry``: the listing prints ``[match=N]`` on every entry

    def ordered(self) -> list[tuple[int, Ace]]:
        return sorted(self.entries.items())

    def add(self, seq: int | None, ace: Ace, dialect: Dialect) -> int:
        """Insert at ``seq`` (None: last + 10); CliError with the platform text on a duplicate."""
        if seq is None:
            seq = max(self.entries, default=0) + 10
            if seq > dialect.max_seq:
                raise CliError(message="% Sequence number out of range")
        if seq in self.entries:
            raise CliError(message=dialect.duplicate_seq)
        self.entries[seq] = ace
        return seq

    def remove_matching(self, ace: Ace) -> None:
        for seq, entry in self.ordered():
            if entry == ace:
                del self.entries[seq]
                return

    def resequence(self, start: int, step: int) -> None:
        self.entries = {start + i * step: ace for i, (_, ace) in enumerate(self.ordered())}


def render_address(address: Address, family: int, dialect: Dialect, standard: bool = False) -> str:
    if address.group:
        return f"addrgroup {address.group}"
    if address.ip is None:
        return "any"
    length = address.prefixlen()
    if dialect.platform == "nxos":
        if length is None:
            return f"{address.ip} {ipaddress.ip_address(address.wildcard)}"
        return f"{address.ip}/{length}"
    if family == 6:
        text = str(address.ip).upper()
        return f"host {text}" if length == 128 else f"{text}/{length}"
    wildcard = ipaddress.IPv4Address(address.wildcard)
    if standard:
        return str(address.ip) if address.wildcard == 0 else f"{address.ip}, wildcard bits {wildcard}"
    return f"host {address.ip}" if address.wildcard == 0 else f"{address.ip} {wildcard}"


def render_ports(match: PortMatch | None, protocol: str, dialect: Dialect) -> list[str]:
    if match is None:
        return []
    names = reverse(dialect.ports(protocol))
    return [match.op, *(names.get(port, str(port)) for port in match.ports)]


def render_body(ace: Ace, acl: Acl, dialect: Dialect, config: bool = False) -> str:
    """The entry as shown (``config``: as in the running configuration), without sequence number or counters."""
    if ace.action == "remark":
        return f"remark {ace.remark}"
    if acl.kind == "standard":
        logs = [name for name, _ in ace.options]
        src = render_address(ace.src, 4, dialect, standard=True)
        return " ".join([f"{ace.action:<6}", src.replace(", wildcard bits", "") if config else src, *logs])
    words = [ace.action, ace.protocol, render_address(ace.src, acl.family, dialect)]
    words += render_ports(ace.src_ports, ace.protocol, dialect)
    words.append(render_address(ace.dst, acl.family, dialect))
    words += render_ports(ace.dst_ports, ace.protocol, dialect)
    words += ace.icmp
    words += ace.flags
    for name, value in ace.options:
        words += [name, value] if value else [name]
    return " ".join(words)
