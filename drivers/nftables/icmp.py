"""Symbol tables nft prints: ICMP and ICMPv6 type and code names, and IP protocol names."""

from __future__ import annotations

from collections.abc import Mapping

# ``man nft`` (ICMP TYPE TYPE, ICMPV6 TYPE TYPE, ICMP CODE TYPE, ICMPV6 CODE TYPE) and nft's src/proto.c.
# Checked against what nft 1.0.6 prints for every value 0-255 (tests/test_nftables_parse.py).
ICMP_TYPES: Mapping[str, int] = {
    "echo-reply": 0,
    "destination-unreachable": 3,
    "source-quench": 4,
    "redirect": 5,
    "echo-request": 8,
    "router-advertisement": 9,
    "router-solicitation": 10,
    "time-exceeded": 11,
    "parameter-problem": 12,
    "timestamp-request": 13,
    "timestamp-reply": 14,
    "info-request": 15,
    "info-reply": 16,
    "address-mask-request": 17,
    "address-mask-reply": 18,
}

ICMPV6_TYPES: Mapping[str, int] = {
    "destination-unreachable": 1,
    "packet-too-big": 2,
    "time-exceeded": 3,
    "parameter-problem": 4,
    "echo-request": 128,
    "echo-reply": 129,
    "mld-listener-query": 130,
    "mld-listener-report": 131,
    "mld-listener-done": 132,
    "mld-listener-reduction": 132,  # alias nft accepts; it prints mld-listener-done
    "nd-router-solicit": 133,
    "nd-router-advert": 134,
    "nd-neighbor-solicit": 135,
    "nd-neighbor-advert": 136,
    "nd-redirect": 137,
    "router-renumbering": 138,
    "ind-neighbor-solicit": 141,
    "ind-neighbor-advert": 142,
    "mld2-listener-report": 143,
}

# nft names ICMP codes independently of the type (``icmp type echo-request icmp code net-unreachable``).
ICMP_CODES: Mapping[str, int] = {
    "net-unreachable": 0,
    "host-unreachable": 1,
    "prot-unreachable": 2,
    "port-unreachable": 3,
    "frag-needed": 4,
    "net-prohibited": 9,
    "host-prohibited": 10,
    "admin-prohibited": 13,
}

ICMPV6_CODES: Mapping[str, int] = {
    "no-route": 0,
    "admin-prohibited": 1,
    "addr-unreachable": 3,
    "port-unreachable": 4,
    "policy-fail": 5,
    "reject-route": 6,
}

# The names nft may print for ``meta l4proto`` / ``ip protocol`` when run without ``-p``: they come from the
# host's /etc/protocols (netbase), plus nft's own keywords.  Unknown names are refused by the parser.
PROTOCOL_NAMES: Mapping[str, int] = {
    "ip": 0, "hopopt": 0, "icmp": 1, "igmp": 2, "ggp": 3, "ipencap": 4, "st": 5, "tcp": 6, "egp": 8, "igp": 9,
    "pup": 12, "udp": 17, "hmp": 20, "xns-idp": 22, "rdp": 27, "iso-tp4": 29, "dccp": 33, "xtp": 36, "ddp": 37,
    "idpr-cmtp": 38, "ipv6": 41, "ipv6-route": 43, "ipv6-frag": 44, "idrp": 45, "rsvp": 46, "gre": 47, "esp": 50,
    "ah": 51, "skip": 57, "ipv6-icmp": 58, "icmpv6": 58, "ipv6-nonxt": 59, "ipv6-opts": 60, "rspf": 73, "vmtp": 81,
    "eigrp": 88, "ospf": 89, "ax.25": 93, "ipip": 94, "etherip": 97, "encap": 98, "pim": 103, "ipcomp": 108,
    "comp": 108, "vrrp": 112, "l2tp": 115, "isis": 124, "sctp": 132, "fc": 133, "mobility-header": 135,
    "udplite": 136, "mpls-in-ip": 137, "manet": 138, "hip": 139, "shim6": 140, "wesp": 141, "rohc": 142,
    "ethernet": 143,
}

# Protocols the renderer writes by keyword (nft knows these without /etc/protocols); others as numbers.
PROTOCOL_KEYWORDS: Mapping[int, str] = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}


def _printed(table: Mapping[str, int]) -> dict[int, str]:
    """Number → the name nft prints (the first name listed for a number; later ones are input aliases)."""
    out: dict[int, str] = {}
    for name, number in table.items():
        out.setdefault(number, name)
    return out


ICMP_TYPE_NAMES: Mapping[int, str] = _printed(ICMP_TYPES)
ICMPV6_TYPE_NAMES: Mapping[int, str] = _printed(ICMPV6_TYPES)

ND_TYPES: tuple[int, ...] = (133, 134, 135, 136)
"""ICMPv6 neighbour discovery (router/neighbour solicit/advert): always accepted so IPv6 keeps working."""


def type_table(protocol: int) -> Mapping[str, int]:
    """The type names of ICMP (1) or ICMPv6 (58)."""
    return ICMP_TYPES if protocol == 1 else ICMPV6_TYPES


def code_table(protocol: int) -> Mapping[str, int]:
    """The code names of ICMP (1) or ICMPv6 (58)."""
    return ICMP_CODES if protocol == 1 else ICMPV6_CODES


def type_name(protocol: int, number: int) -> str:
    """What the renderer writes for an ICMP/ICMPv6 type: nft's name where it has one, else the number."""
    names = ICMP_TYPE_NAMES if protocol == 1 else ICMPV6_TYPE_NAMES
    return names.get(number, str(number))
