"""Every device-output parser fails closed on malformed input: a ParseError or a clean parse, never a crash.

Seeds are real captures (``../shared/fixtures/device-outputs/``, ``nft -j`` listings of the golden tables in
``tests/data/nftables/``) and the sample inputs the parsers' own tests use; hypothesis mutates them — text:
line deletion / duplication / truncation, byte flips, token swaps and replacements; JSON: values replaced by
other JSON types or by other nodes of the same document, keys dropped, values nested (deeply too).  Whatever
comes out, only ParseError may escape — never TypeError, KeyError, IndexError, AttributeError, ValueError or
RecursionError.  Derandomized and bounded, so CI is deterministic and the file runs in seconds; set
``MICROSEG_FUZZ_EXAMPLES`` (e.g. 20000) to search longer locally.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.arista_eos import syntax as eos
from drivers.aws_sg.state import normalize_native
from drivers.azure_nsg.layout import parse_settings as azure_settings
from drivers.azure_nsg.parse import observed, split_view
from drivers.cisco_ios import syntax as ios
from drivers.cisco_nxos import syntax as nxos
from drivers.gcp_firewall import GcpFirewallDriver
from drivers.juniper_junos import syntax as junos
from drivers.nftables.adopt import foreign_enforcement
from drivers.nftables.parse import parse_observed
from orchestrator.model.driver import Connection, PointContext, Snapshot
from orchestrator.model.errors import ParseError
from orchestrator.model.rules import AddressSet, Direction
from tests import test_eos_syntax, test_ios_syntax, test_junos_syntax, test_nxos_syntax

CAPTURES = Path(os.environ.get("MICROSEG_DEVICE_OUTPUTS",
                               Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "device-outputs"))
FUZZ = settings(max_examples=int(os.environ.get("MICROSEG_FUZZ_EXAMPLES", "200")), deadline=None,
                derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
DEEP = 5000
"""Nesting depth of the deepest mutation: far beyond the recursion limit, so no parser may recurse into input."""


def capture(name: str) -> str:
    return (CAPTURES / name).read_text()


def fails_closed(parse: Callable[[], object]) -> None:
    """Run one parse: a ParseError is a correct answer to malformed input; any other exception fails the test."""
    try:
        parse()
    except ParseError as exc:
        assert exc.message and exc.driver, exc


# ---------------------------------------------------------------------------------------------------- text


_ODD_CHARACTERS = (" ", "\t", "\x00", "\r", "\x0b", "\u00a0", "\u2028", "/", "-", ".", ":", "0", "9", "(", ")",
                   "[", "]", "{", "}", '"', "\\", "#", "!", "%", "²", "١", "é")
_ODD_DIGITS = ("0", "9", "²", "¹", "١", "٣", "߀", "𝟘", "Ⅻ")  # superscripts are isdigit() but not int()-able
_ODD_NUMBERS = ("0", "-1", "1", "255", "256", "65535", "65536", "4294967296", "99999999999999999999", "²", "1²",
                "١٠", "1-²", "0x10", "+5", "1_000", "٣-٥")
_ODD_TOKENS = (*_ODD_NUMBERS, "²-³",
               "any", "host", "range", "eq", "gt", "lt", "neq", "log", "sequence", "object-group", "wildcard",
               "bits", "10.0.0.0/33", "::/129", "1.2.3.4", "255.0.255.0", "2001:db8::1", "fe80::1%eth0",
               "permit", "deny", "remark", "icmp", "tcp", "udp", "ip", "ipv6", "set", "deactivate", "firewall",
               "family", "filter", "term", "from", "then", "[", "]", '"', '"unterminated', "interface", "unit")


def _tokens(text: str) -> list[str]:
    return sorted({t for t in text.split() if len(t) < 40})


@st.composite
def mutated_text(draw: st.DrawFn, seeds: Sequence[str]) -> str:
    """A seed text after 1-6 line- and token-level mutations."""
    lines = draw(st.sampled_from(seeds)).splitlines()
    vocabulary = sorted({*_ODD_TOKENS, *(t for seed in seeds for t in _tokens(seed))})
    for _ in range(draw(st.integers(1, 6))):
        if not lines:
            lines = [draw(st.sampled_from(vocabulary))]
        i = draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        op = draw(st.sampled_from(["delete", "duplicate", "truncate-line", "truncate-text", "flip", "swap-tokens",
                                   "replace-token", "drop-token", "indent", "swap-lines", "insert-token", "digit",
                                   "number", "deepen"]))
        words = line.split(" ")
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(draw(st.integers(0, len(lines))), line)
        elif op == "truncate-line":
            lines[i] = line[:draw(st.integers(0, len(line)))]
        elif op == "truncate-text":
            lines = [*lines[:i], line[:draw(st.integers(0, len(line)))]]
        elif op == "flip" and line:
            at = draw(st.integers(0, len(line) - 1))
            char = draw(st.sampled_from(_ODD_CHARACTERS) | st.characters())
            lines[i] = line[:at] + char + line[at + 1:]
        elif op == "swap-tokens" and len(words) > 1:
            a, b = draw(st.integers(0, len(words) - 1)), draw(st.integers(0, len(words) - 1))
            words[a], words[b] = words[b], words[a]
            lines[i] = " ".join(words)
        elif op in ("replace-token", "insert-token", "drop-token"):
            at = draw(st.integers(0, len(words) - 1))
            if op == "drop-token":
                del words[at]
            else:
                token = draw(st.sampled_from(_ODD_TOKENS) | st.sampled_from(vocabulary))
                words[at:at + (op == "replace-token")] = [token]
            lines[i] = " ".join(words)
        elif op == "digit" and (digits := [k for k, c in enumerate(line) if c.isdigit()]):
            at = draw(st.sampled_from(digits))
            lines[i] = line[:at] + draw(st.sampled_from(_ODD_DIGITS)) + line[at + 1:]
        elif op == "number" and (numbers := [k for k, w in enumerate(words) if w[:1].isdigit()]):
            words[draw(st.sampled_from(numbers))] = draw(st.sampled_from(_ODD_NUMBERS))
            lines[i] = " ".join(words)
        elif op == "indent":
            lines[i] = line.lstrip() if line[:1].isspace() else "  " + line
        elif op == "swap-lines":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "deepen":  # JSON text nested far deeper than a decoder can recurse
            at = draw(st.integers(0, len(line)))
            lines[i] = line[:at] + "[" * DEEP + "]" * DEEP + line[at:]
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\r\n"]))


# ---------------------------------------------------------------------------------------------------- JSON


JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.sampled_from([0, 1, -1, 65536, 256])
                | st.floats(allow_nan=False) | st.text(max_size=12) | st.sampled_from(["", "*", "0", "²", "-1"]))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)
Path_ = tuple[str | int, ...]


def _nodes(root: Any) -> Iterator[tuple[Path_, Any]]:
    """Every (path, node) of a JSON document, iteratively (documents may be deep)."""
    stack: list[tuple[Path_, Any]] = [((), root)]
    while stack:
        path, node = stack.pop()
        yield path, node
        if len(path) > 40:
            continue
        if isinstance(node, dict):
            stack.extend(((*path, k), v) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend(((*path, i), v) for i, v in enumerate(node))


def _parent(root: Any, path: Path_) -> Any:
    node = root
    for step in path[:-1]:
        node = node[step]
    return node


def _set(root: Any, path: Path_, value: Any) -> Any:
    if not path:
        return value
    _parent(root, path)[path[-1]] = value
    return root


@st.composite
def mutated_json(draw: st.DrawFn, seeds: Sequence[Any], *, deep: bool = True) -> Any:
    """A seed JSON document after 1-5 mutations, and maybe a value nested far too deep."""
    root = copy.deepcopy(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 5))):
        nodes = list(_nodes(root))
        path, node = draw(st.sampled_from(nodes))
        op = draw(st.sampled_from(["retype", "transplant", "drop", "nest", "duplicate", "clear"]))
        if op == "retype":
            root = _set(root, path, draw(JSON_VALUES))
        elif op == "transplant":
            root = _set(root, path, copy.deepcopy(draw(st.sampled_from(nodes))[1]))
        elif op == "drop" and path:
            del _parent(root, path)[path[-1]]
        elif op == "nest":
            keys = sorted({p[-1] for p, _ in nodes if p and isinstance(p[-1], str)}) or ["x"]
            key = draw(st.sampled_from(keys))
            root = _set(root, path, draw(st.sampled_from([[node], {key: node}])))
        elif op == "duplicate" and isinstance(node, list) and node:
            node.insert(draw(st.integers(0, len(node))), copy.deepcopy(draw(st.sampled_from(node))))
        elif op == "clear" and isinstance(node, list | dict):
            node.clear()
    if deep and draw(st.integers(0, 9)) == 0:
        path, node = draw(st.sampled_from(list(_nodes(root))))
        for _ in range(DEEP):
            node = [node]
        root = _set(root, path, node)
    return root


# ---------------------------------------------------------------------------------------------------- nftables

# `nft -j list table inet microseg` of tests/data/nftables/enforce.nft and monitor-stateless.nft (nft 1.0.6).
ENFORCE_TABLE = json.loads(
    '{"nftables":[{"metainfo":{"version":"1.0.6","release_name":"Lester Gooch #5","json_schema_version":1}},{'
    '"table":{"family":"inet","name":"microseg","handle":2}},{"chain":{"family":"inet","table":"microseg","na'
    'me":"ingress","handle":1,"type":"filter","hook":"input","prio":0,"policy":"drop"}},{"chain":{"family":"i'
    'net","table":"microseg","name":"egress","handle":2,"type":"filter","hook":"output","prio":0,"policy":"dr'
    'op"}},{"rule":{"family":"inet","table":"microseg","chain":"ingress","handle":3,"expr":[{"match":{"op":"i'
    'n","left":{"ct":{"key":"state"}},"right":["established","related"]}},{"accept":null}]}},{"rule":{"family'
    '":"inet","table":"microseg","chain":"ingress","handle":4,"expr":[{"match":{"op":"in","left":{"ct":{"key"'
    ':"state"}},"right":"invalid"}},{"drop":null}]}},{"rule":{"family":"inet","table":"microseg","chain":"ing'
    'ress","handle":5,"comment":"microseg preamble mode=enforce","expr":[{"match":{"op":"==","left":{"meta":{'
    '"key":"iif"}},"right":"lo"}},{"accept":null}]}},{"rule":{"family":"inet","table":"microseg","chain":"ing'
    'ress","handle":7,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"icmpv6","field":"type"}},"ri'
    'ght":{"set":["nd-router-solicit","nd-router-advert","nd-neighbor-solicit","nd-neighbor-advert"]}}},{"acc'
    'ept":null}]}},{"rule":{"family":"inet","table":"microseg","chain":"ingress","handle":9,"comment":"web-to'
    '-db, admin","expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":{"s'
    'et":[{"prefix":{"addr":"10.20.1.0","len":24}},"10.20.9.7"]}}},{"match":{"op":"==","left":{"payload":{"p'
    'rotocol":"ip","field":"daddr"}},"right":"10.20.3.31"}},{"match":{"op":"==","left":{"payload":{"protocol"'
    ':"tcp","field":"dport"}},"right":5432}},{"log":{"prefix":"mseg permit "}},{"accept":null}]}},{"rule":{"f'
    'amily":"inet","table":"microseg","chain":"ingress","handle":10,"expr":[{"match":{"op":"==","left":{"payl'
    'oad":{"protocol":"ip6","field":"daddr"}},"right":"fd00:20:3::31"}},{"match":{"op":"==","left":{"payload"'
    ':{"protocol":"tcp","field":"dport"}},"right":{"set":[80,443,{"range":[8000,8080]}]}}},{"accept":null}]}}'
    ',{"rule":{"family":"inet","table":"microseg","chain":"ingress","handle":11,"expr":[{"match":{"op":"==","'
    'left":{"meta":{"key":"nfproto"}},"right":"ipv4"}},{"match":{"op":"==","left":{"payload":{"protocol":"udp'
    '","field":"sport"}},"right":53}},{"match":{"op":"==","left":{"payload":{"protocol":"udp","field":"dport"'
    '}},"right":{"range":[1024,65535]}}},{"drop":null}]}},{"rule":{"family":"inet","table":"microseg","chain"'
    ':"ingress","handle":12,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},'
    '"right":{"prefix":{"addr":"192.0.2.0","len":24}}}},{"match":{"op":"==","left":{"payload":{"protocol":"ic'
    'mp","field":"type"}},"right":"echo-request"}},{"match":{"op":"==","left":{"payload":{"protocol":"icmp","'
    'field":"code"}},"right":"net-unreachable"}},{"accept":null}]}},{"rule":{"family":"inet","table":"microse'
    'g","chain":"ingress","handle":13,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"icmpv6","fie'
    'ld":"type"}},"right":"echo-request"}},{"accept":null}]}},{"rule":{"family":"inet","table":"microseg","ch'
    'ain":"ingress","handle":14,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr'
    '"}},"right":"198.51.100.1"}},{"match":{"op":"==","left":{"meta":{"key":"l4proto"}},"right":47}},{"accept'
    '":null}]}},{"rule":{"family":"inet","table":"microseg","chain":"ingress","handle":15,"expr":[{"match":{"'
    'op":"==","left":{"meta":{"key":"l4proto"}},"right":"sctp"}},{"accept":null}]}},{"rule":{"family":"inet"'
    ',"table":"microseg","chain":"egress","handle":16,"expr":[{"match":{"op":"in","left":{"ct":{"key":"state"'
    '}},"right":["established","related"]}},{"accept":null}]}},{"rule":{"family":"inet","table":"microseg","c'
    'hain":"egress","handle":17,"expr":[{"match":{"op":"in","left":{"ct":{"key":"state"}},"right":"invalid"}}'
    ',{"drop":null}]}},{"rule":{"family":"inet","table":"microseg","chain":"egress","handle":18,"comment":"mic'
    'roseg preamble mode=enforce","expr":[{"match":{"op":"==","left":{"meta":{"key":"oif"}},"right":"lo"}},{"'
    'accept":null}]}},{"rule":{"family":"inet","table":"microseg","chain":"egress","handle":20,"expr":[{"matc'
    'h":{"op":"==","left":{"payload":{"protocol":"icmpv6","field":"type"}},"right":{"set":["nd-router-solicit'
    '","nd-router-advert","nd-neighbor-solicit","nd-neighbor-advert"]}}},{"accept":null}]}},{"rule":{"family"'
    ':"inet","table":"microseg","chain":"egress","handle":21,"expr":[{"match":{"op":"==","left":{"payload":{"'
    'protocol":"ip","field":"daddr"}},"right":{"prefix":{"addr":"203.0.113.0","len":24}}}},{"log":{"prefix":'
    '"mseg deny "}},{"drop":null}]}},{"rule":{"family":"inet","table":"microseg","chain":"egress","handle":22'
    ',"expr":[{"match":{"op":"==","left":{"meta":{"key":"nfproto"}},"right":"ipv6"}},{"accept":null}]}}]}'
)
MONITOR_STATELESS_TABLE = json.loads(
    '{"nftables":[{"metainfo":{"version":"1.0.6","release_name":"Lester Gooch #5","json_schema_version":1}},{'
    '"table":{"family":"inet","name":"microseg","handle":3}},{"chain":{"family":"inet","table":"microseg","na'
    'me":"ingress","handle":1,"type":"filter","hook":"input","prio":0,"policy":"accept"}},{"chain":{"family":'
    '"inet","table":"microseg","name":"egress","handle":2,"type":"filter","hook":"output","prio":0,"policy":"'
    'accept"}},{"rule":{"family":"inet","table":"microseg","chain":"ingress","handle":3,"comment":"microseg p'
    'reamble mode=monitor","expr":[{"match":{"op":"==","left":{"meta":{"key":"iif"}},"right":"lo"}},{"accept'
    '":null}]}},{"rule":{"family":"inet","table":"microseg","chain":"ingress","handle":5,"expr":[{"match":{"o'
    'p":"==","left":{"payload":{"protocol":"icmpv6","field":"type"}},"right":{"set":["nd-router-solicit","nd-'
    'router-advert","nd-neighbor-solicit","nd-neighbor-advert"]}}},{"accept":null}]}},{"rule":{"family":"inet'
    '","table":"microseg","chain":"ingress","handle":7,"comment":"web-to-db, admin","expr":[{"match":{"op":"='
    '=","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":{"set":[{"prefix":{"addr":"10.20.1.0","l'
    'en":24}},"10.20.9.7"]}}},{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"daddr"}},"right'
    '":"10.20.3.31"}},{"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":5432}'
    '},{"log":{"prefix":"mseg permit "}},{"accept":null}]}},{"rule":{"family":"inet","table":"microseg","chai'
    'n":"ingress","handle":9,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip6","field":"daddr"}'
    '},"right":"fd00:20:3::31"}},{"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"r'
    'ight":{"set":[80,443,{"range":[8000,8080]}]}}},{"accept":null}]}},{"rule":{"family":"inet","table":"micr'
    'oseg","chain":"ingress","handle":10,"expr":[{"match":{"op":"==","left":{"meta":{"key":"nfproto"}},"right'
    '":"ipv4"}},{"match":{"op":"==","left":{"payload":{"protocol":"udp","field":"sport"}},"right":53}},{"matc'
    'h":{"op":"==","left":{"payload":{"protocol":"udp","field":"dport"}},"right":{"range":[1024,65535]}}},{"l'
    'og":{"prefix":"mseg would-deny "}},{"accept":null}]}},{"rule":{"family":"inet","table":"microseg","chain'
    '":"ingress","handle":11,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}}'
    ',"right":{"prefix":{"addr":"192.0.2.0","len":24}}}},{"match":{"op":"==","left":{"payload":{"protocol":"i'
    'cmp","field":"type"}},"right":"echo-request"}},{"match":{"op":"==","left":{"payload":{"protocol":"icmp",'
    '"field":"code"}},"right":"net-unreachable"}},{"accept":null}]}},{"rule":{"family":"inet","table":"micros'
    'eg","chain":"ingress","handle":12,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"icmpv6","fi'
    'eld":"type"}},"right":"echo-request"}},{"accept":null}]}},{"rule":{"family":"inet","table":"microseg","c'
    'hain":"ingress","handle":13,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"sadd'
    'r"}},"right":"198.51.100.1"}},{"match":{"op":"==","left":{"meta":{"key":"l4proto"}},"right":47}},{"acce'
    'pt":null}]}},{"rule":{"family":"inet","table":"microseg","chain":"ingress","handle":14,"expr":[{"match":'
    '{"op":"==","left":{"meta":{"key":"l4proto"}},"right":"sctp"}},{"accept":null}]}},{"rule":{"family":"inet'
    '","table":"microseg","chain":"ingress","handle":15,"expr":[{"log":{"prefix":"mseg would-deny "}}]}},{"ru'
    'le":{"family":"inet","table":"microseg","chain":"egress","handle":16,"comment":"microseg preamble mode=m'
    'onitor","expr":[{"match":{"op":"==","left":{"meta":{"key":"oif"}},"right":"lo"}},{"accept":null}]}},{"ru'
    'le":{"family":"inet","table":"microseg","chain":"egress","handle":18,"expr":[{"match":{"op":"==","left":'
    '{"payload":{"protocol":"icmpv6","field":"type"}},"right":{"set":["nd-router-solicit","nd-router-advert",'
    '"nd-neighbor-solicit","nd-neighbor-advert"]}}},{"accept":null}]}},{"rule":{"family":"inet","table":"micr'
    'oseg","chain":"egress","handle":19,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field'
    '":"daddr"}},"right":{"prefix":{"addr":"203.0.113.0","len":24}}}},{"log":{"prefix":"mseg would-deny+log "'
    '}},{"accept":null}]}},{"rule":{"family":"inet","table":"microseg","chain":"egress","handle":20,"expr":[{'
    '"match":{"op":"==","left":{"meta":{"key":"nfproto"}},"right":"ipv6"}},{"accept":null}]}},{"rule":{"famil'
    'y":"inet","table":"microseg","chain":"egress","handle":21,"expr":[{"log":{"prefix":"mseg would-deny "}}]'
    '}}]}'
)
_META = {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}
NFT_TABLES = {"nftables": [_META, {"table": {"family": "inet", "name": "microseg", "handle": 2}},
                           {"table": {"family": "ip", "name": "filter", "handle": 1}}]}
NFT_CHAINS = {"nftables": [
    _META, *(o for o in ENFORCE_TABLE["nftables"] if "chain" in o),
    {"chain": {"family": "ip", "table": "filter", "name": "INPUT", "handle": 1, "type": "filter", "hook": "input",
               "prio": 0, "policy": "drop"}}]}
NFT_SEEDS = [{"tables": NFT_TABLES, "chains": NFT_CHAINS, "table": table}
             for table in (ENFORCE_TABLE, MONITOR_STATELESS_TABLE)]


def test_nft_seeds_parse_cleanly() -> None:
    for seed in NFT_SEEDS:
        observed_nft = parse_observed(seed, point="host1", table="microseg")
        assert observed_nft.ruleset.rules and [u.name for u in observed_nft.unmanaged] == ["ip filter"]


@FUZZ
@given(mutated_json(NFT_SEEDS))
def test_nft_json_listing_fails_closed(native: Any) -> None:
    fails_closed(lambda: parse_observed(native, point="host1", table="microseg"))


# `nft -j list ruleset` (nft 1.0.6) of tests/data/nftables/foreign-ruleset.nft: someone else's host firewall, as
# `microseg adopt` reads it
FOREIGN_RULESET = json.loads((Path(__file__).parent / "data" / "nftables" / "foreign-ruleset.json").read_text())


def test_foreign_ruleset_seed_reads_cleanly() -> None:
    existing = foreign_enforcement(FOREIGN_RULESET, point="host1", table="microseg", directions=list(Direction))
    assert existing.ruleset.rules and len(existing.unreadable) == 2  # the jump and the ct count, by handle


@FUZZ
@given(mutated_json([FOREIGN_RULESET]))
def test_foreign_nft_ruleset_fails_closed(listing: Any) -> None:
    fails_closed(lambda: foreign_enforcement(listing, point="host1", table="microseg", directions=list(Direction)))


@FUZZ
@given(st.sampled_from([json.dumps(s["table"]) for s in NFT_SEEDS]).flatmap(lambda t: mutated_text([t])))
def test_nft_json_text_fails_closed(text: str) -> None:
    native = {"tables": NFT_TABLES, "chains": NFT_CHAINS, "table": text}
    fails_closed(lambda: parse_observed(native, point="host1", table="microseg"))


# ---------------------------------------------------------------------------------------------------- switches

IOS_OUTPUTS = [
    {ios.SHOW_IP: capture(test_ios_syntax.SHOW), ios.SHOW_IPV6: test_ios_syntax.IPV6_SHOW,
     ios.SHOW_INTERFACES: test_ios_syntax.INTERFACES},
    {ios.SHOW_IP: capture(test_ios_syntax.SHOW_OBJECT_GROUPS), ios.SHOW_IPV6: "", ios.SHOW_INTERFACES: ""},
]
NXOS_OUTPUTS = [{nxos.SHOW_ACLS: capture(test_nxos_syntax.SHOW) + test_nxos_syntax.IPV6_SHOW,
                 nxos.SHOW_INTERFACES: test_nxos_syntax.INTERFACES}]
EOS_OUTPUTS = [{eos.SHOW_IP: capture(test_eos_syntax.SHOW), eos.SHOW_IPV6: test_eos_syntax.IPV6_SHOW,
                eos.SHOW_INTERFACES: test_eos_syntax.INTERFACES}]
JUNOS_OUTPUTS = [{junos.FIREWALL_COMMAND: test_junos_syntax.FIREWALL,
                  junos.INTERFACES_COMMAND: test_junos_syntax.INTERFACES}]


@st.composite
def mutated_outputs(draw: st.DrawFn, seeds: Sequence[dict[str, str]]) -> dict[str, str]:
    """The fetch outputs of one device with one command's output mutated."""
    outputs = dict(draw(st.sampled_from(seeds)))
    command = draw(st.sampled_from(sorted(outputs)))
    outputs[command] = draw(mutated_text([s[command] for s in seeds if s[command]] or [""]))
    return outputs


@pytest.mark.parametrize(("platform", "seeds"), [(ios, IOS_OUTPUTS), (nxos, NXOS_OUTPUTS), (eos, EOS_OUTPUTS),
                                                 (junos, JUNOS_OUTPUTS)], ids=["ios", "nxos", "eos", "junos"])
def test_switch_seeds_parse_cleanly(platform: Any, seeds: list[dict[str, str]]) -> None:
    for outputs in seeds:
        assert platform.parse(outputs, point="sw1").acls


@FUZZ
@given(mutated_outputs(IOS_OUTPUTS))
def test_ios_show_access_lists_fail_closed(outputs: dict[str, str]) -> None:
    fails_closed(lambda: ios.parse(outputs, point="sw1"))


@FUZZ
@given(mutated_text([capture(test_ios_syntax.RUNNING)]))
def test_ios_running_config_partition_fails_closed(text: str) -> None:
    fails_closed(lambda: ios.parse_running_config_acls(text, point="sw1"))


@FUZZ
@given(mutated_outputs(NXOS_OUTPUTS))
def test_nxos_show_access_lists_fail_closed(outputs: dict[str, str]) -> None:
    fails_closed(lambda: nxos.parse(outputs, point="sw1"))


@FUZZ
@given(mutated_outputs(EOS_OUTPUTS))
def test_eos_show_access_lists_fail_closed(outputs: dict[str, str]) -> None:
    fails_closed(lambda: eos.parse(outputs, point="sw1"))


@FUZZ
@given(mutated_outputs(JUNOS_OUTPUTS))
def test_junos_display_set_fails_closed(outputs: dict[str, str]) -> None:
    fails_closed(lambda: junos.parse(outputs, point="sw1"))


# ---------------------------------------------------------------------------------------------------- clouds

AWS_MEMBERS = AddressSet.of(["10.30.1.11/32", "10.30.1.12/32", "fd00:30:1::11/128"])
AWS_GROUP = "sg-0123456789abcdef0"


def _aws_row(rule_id: str, **fields: Any) -> dict[str, Any]:
    return {"SecurityGroupRuleId": rule_id, "IsEgress": False, "IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
            "CidrIpv4": "10.0.0.0/8", "Description": "microseg:web-to-app", **fields}


AWS_ROWS = [
    _aws_row("sgr-1"),
    _aws_row("sgr-2", IpProtocol="udp", FromPort=53, ToPort=60, IsEgress=True),
    _aws_row("sgr-3", IpProtocol="icmp", FromPort=8, ToPort=0),
    _aws_row("sgr-4", IpProtocol="icmpv6", FromPort=128, ToPort=-1, CidrIpv4=None, CidrIpv6="2001:db8::/32"),
    _aws_row("sgr-5", IpProtocol="-1", FromPort=-1, ToPort=-1, IsEgress=True, CidrIpv4=None, CidrIpv6="::/0"),
    _aws_row("sgr-6", IpProtocol="50", FromPort=-1, ToPort=-1, Description="hand-made"),
    _aws_row("sgr-7", CidrIpv4=None, ReferencedGroupInfo={"GroupId": "sg-0aaaaaaaaaaaaaaa1", "UserId": "123456789012"}),
]
AWS_NATIVE = {
    "vpc_id": "vpc-0a1b2c3d4e5f60718", "group_name": "mseg-aws-sg-dev-web", "foreign": None, "vpc_ipv6": True,
    "group": {"id": AWS_GROUP, "name": "mseg-aws-sg-dev-web", "tags": {"microseg:managed": "aws-sg-dev-web"}},
    "interfaces": [{"id": "eni-1", "groups": [[AWS_GROUP, "mseg-aws-sg-dev-web"]],
                    "addresses": ["10.30.1.11", "fd00:30:1::11"]},
                   {"id": "eni-2", "groups": [[AWS_GROUP, "mseg-aws-sg-dev-web"]], "addresses": ["10.30.1.12"]}],
    "references": {"sg-0aaaaaaaaaaaaaaa1": {"name": "mseg-aws-sg-dev-app", "managed": True,
                                            "addresses": ["10.30.2.11", "fd00:30:2::11"]}},
}


def test_aws_seed_parses_cleanly() -> None:
    assert normalize_native({**AWS_NATIVE, "rules": AWS_ROWS}, AWS_MEMBERS, "aws-sg-dev-web").ruleset.rules


@settings(FUZZ, report_multiple_bugs=False)
@given(mutated_json([AWS_ROWS]))
def test_aws_security_group_rules_fail_closed(rows: Any) -> None:
    """describe_security_group_rules items (the owned group's rules) → normalized rules."""
    fails_closed(lambda: normalize_native({**AWS_NATIVE, "rules": rows}, AWS_MEMBERS, "aws-sg-dev-web"))


AZURE_POINT = "azure-nsg-dev-app"
AZURE_SETTINGS = azure_settings({"subscription_id": "sub", "resource_group": "rg", "nsg_name": "nsg",
                                 "location": "westeurope", "rule_name_prefix": "mseg-", "priority_min": 100,
                                 "priority_max": 1999, "application_security_groups": ["asg-web"]}, AZURE_POINT)
_ASG_WEB = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Network/applicationSecurityGroups/asg-web"


def _azure_rule(name: str, priority: int, **properties: Any) -> dict[str, Any]:
    props = {"protocol": "Tcp", "sourcePortRange": "*", "destinationPortRange": "443", "sourceAddressPrefix":
             "10.0.0.0/8", "destinationAddressPrefix": "10.30.2.11/32", "access": "Allow", "priority": priority,
             "direction": "Inbound", "provisioningState": "Succeeded", "description": "web-to-app",
             "sourcePortRanges": [], "destinationPortRanges": [], "sourceAddressPrefixes": [],
             "destinationAddressPrefixes": [], **properties}
    return {"name": name, "id": f"/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Network/"
                                f"networkSecurityGroups/nsg/securityRules/{name}",
            "etag": 'W/"7"', "type": "Microsoft.Network/networkSecurityGroups/securityRules", "properties": props}


AZURE_RULES = [
    _azure_rule("mseg-in-0100", 100),
    _azure_rule("mseg-in-0110", 110, protocol="Udp", destinationPortRange=None,
                destinationPortRanges=["53", "5000-5010"], sourceAddressPrefix=None,
                sourceAddressPrefixes=["10.1.0.0/16", "192.0.2.7"]),
    _azure_rule("mseg-in-0120", 120, protocol="Icmp", destinationPortRange="*", access="Deny"),
    _azure_rule("mseg-out-0100", 100, protocol="*", direction="Outbound", destinationPortRange="*",
                sourceAddressPrefix="fd00:30:2::11", destinationAddressPrefix="fd00::/8"),
    _azure_rule("mseg-in-0130", 130, sourceAddressPrefix=None, sourceApplicationSecurityGroups=[{"id": _ASG_WEB}]),
    _azure_rule("mseg-default-deny-in", 1999, protocol="*", access="Deny", destinationPortRange="*",
                sourceAddressPrefix="*", destinationAddressPrefix="*", description=None),
    _azure_rule("mseg-default-deny-out", 1999, protocol="*", access="Deny", direction="Outbound",
                destinationPortRange="*", sourceAddressPrefix="*", destinationAddressPrefix="*"),
    _azure_rule("allow-bastion", 90, sourceAddressPrefix="VirtualNetwork"),
    _azure_rule("corp-wide", 3000, sourceAddressPrefix="Internet", access="Deny"),
]
AZURE_NATIVE = {
    "exists": True, "etag": 'W/"7"',
    "nsg": {"name": "nsg", "etag": 'W/"7"', "location": "westeurope", "tags": {"env": "dev"},
            "id": "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg",
            "properties": {"provisioningState": "Succeeded", "securityRules": AZURE_RULES,
                           "defaultSecurityRules": [], "resourceGuid": "0f0e0d0c"}},
    "asgs": [{"id": _ASG_WEB, "found": True, "location": "westeurope", "members": ["10.30.1.11", "10.30.1.12"],
              "vnets": ["/subscriptions/sub/resourcegroups/rg/providers/microsoft.network/virtualnetworks/vnet"]}],
}


def _azure_normalize(native: Any) -> object:
    return observed(split_view(native, AZURE_SETTINGS, AZURE_POINT), AZURE_SETTINGS, AZURE_POINT)


def test_azure_seed_parses_cleanly() -> None:
    result = _azure_normalize(AZURE_NATIVE)
    assert result.ruleset.rules and len(result.unmanaged) == 2  # type: ignore[attr-defined]


@FUZZ
@given(mutated_json([{k: v for k, v in AZURE_NATIVE.items() if k != "asgs"}]))
def test_azure_security_rules_fail_closed(native: Any) -> None:
    """The ARM NSG body (its securityRules) and ETag → normalized rules."""
    fails_closed(lambda: _azure_normalize({**native, "asgs": AZURE_NATIVE["asgs"]} if isinstance(native, dict)
                                          else native))


GCP_POINT = "gcp-fw-dev-db"
GCP_STEM = f"mseg-{GCP_POINT}-"
GCP_NETWORK = "projects/shop-dev-000000/global/networks/shop-dev"


def _gcp_rule(suffix: str, **fields: Any) -> dict[str, Any]:
    return {"name": GCP_STEM + suffix, "network": f"https://www.googleapis.com/compute/v1/{GCP_NETWORK}",
            "targetTags": ["shop-dev-db"], "direction": "INGRESS", "priority": 1010, "sourceRanges": ["10.1.0.0/16"],
            "allowed": [{"IPProtocol": "tcp", "ports": ["22", "8000-8080"]}], "logConfig": {"enable": False},
            "description": f"microseg {GCP_POINT}: app-to-db", "disabled": False, **fields}


GCP_OWNED = [
    _gcp_rule("i001"),
    _gcp_rule("i001-2", sourceRanges=["10.2.0.0/16"]),
    _gcp_rule("i002", sourceRanges=["10.9.0.0/16"], destinationRanges=["10.30.3.12/32"], allowed=[],
              denied=[{"IPProtocol": "all"}], logConfig={"enable": True}),
    _gcp_rule("e001", direction="EGRESS", sourceRanges=[], destinationRanges=["fd00::/8"],
              allowed=[{"IPProtocol": "58"}], priority=1020),
    _gcp_rule("i003", allowed=[{"IPProtocol": "icmp"}], disabled=True),
    _gcp_rule("deny-egress-4", direction="EGRESS", priority=65534, sourceRanges=[], destinationRanges=["0.0.0.0/0"],
              allowed=[], denied=[{"IPProtocol": "all"}]),
]
GCP_NATIVE = {"project": "shop-dev-000000", "network": GCP_NETWORK, "owned": GCP_OWNED,
              "unmanaged": [{"name": "default-allow-ssh", "detail": "INGRESS allow priority 65534"}],
              "project_rules": 7}
GCP_DRIVER = GcpFirewallDriver(PointContext(
    GCP_POINT, "gcp_firewall", Connection("gcp"),
    {"project": "shop-dev-000000", "network": "shop-dev", "target_tags": ["shop-dev-db"],
     "api_endpoint": "http://127.0.0.1:9"},  # never contacted: normalize does no I/O
    members=AddressSet.of(["10.30.3.11", "10.30.3.12", "fd00:30:3::11"])))


def test_gcp_seed_parses_cleanly() -> None:
    assert GCP_DRIVER.normalize(Snapshot(GCP_POINT, "gcp_firewall", GCP_NATIVE)).ruleset.rules


@FUZZ
@given(mutated_json([GCP_OWNED]))
def test_gcp_firewall_rules_fail_closed(owned: Any) -> None:
    """Compute API firewall rules (the owned ones of the snapshot) → normalized rules."""
    native = {**GCP_NATIVE, "owned": owned}
    fails_closed(lambda: GCP_DRIVER.normalize(Snapshot(GCP_POINT, "gcp_firewall", native)))


# ---------------------------------------------------------------------------------------------------- found crashes
# Inputs the fuzzer found (each raised TypeError, KeyError, ValueError or RecursionError before the fix).


def _deep(depth: int = DEEP) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def _nft_native(handle: int, path: Sequence[str | int], value: Any) -> dict[str, Any]:
    """ENFORCE_TABLE with one field of the rule with ``handle`` replaced."""
    table = copy.deepcopy(ENFORCE_TABLE)
    rule = next(o["rule"] for o in table["nftables"] if o.get("rule", {}).get("handle") == handle)
    _set(rule, tuple(path), value)
    return {"tables": NFT_TABLES, "chains": NFT_CHAINS, "table": table}


@pytest.mark.parametrize(("handle", "path", "value", "message"), [
    (9, ["comment"], {"names": "web-to-db"}, "rule handle 9: malformed rule object (comment is not a string)"),
    (5, ["comment"], ["microseg preamble mode=enforce"], "rule handle 5: malformed rule object (comment is not a"),
    (9, ["comment"], _deep(), "rule handle 9: malformed rule object (comment is not a string)"),
    (9, ["expr", 0, "match", "op"], {"op": "=="}, 'rule handle 9: operator {"op": "=="}'),
    (11, ["expr", 0, "match", "right"], ["ipv4"], 'rule handle 11: meta nfproto ["ipv4"]'),
    (9, ["expr", 0, "match", "left", "payload", "protocol"], _deep(), "rule handle 9: cannot model a match on"),
    (12, ["expr", 0, "match", "right", "prefix", "addr"], ["192.0.2.0"], "rule handle 12: address element"),
    (10, ["expr", 1, "match", "right", "set", 0], _deep(), "rule handle 10: port element"),
    (7, ["expr", 0, "match", "right", "set", 0], {"nd": 133}, "rule handle 7: expected preamble rule `icmpv6 type"),
])
def test_nft_malformed_rule_is_a_parse_error_naming_chain_and_handle(
    handle: int, path: list[str | int], value: Any, message: str
) -> None:
    with pytest.raises(ParseError) as info:
        parse_observed(_nft_native(handle, path, value), point="host1", table="microseg")
    assert str(info.value).startswith("host1 (nftables): table inet microseg, chain ingress, "), info.value
    assert message in str(info.value) and len(str(info.value)) < 2000


def test_nft_malformed_handle_and_chain_are_parse_errors() -> None:
    with pytest.raises(ParseError, match=r"chain ingress, rule handle <unprintable list>: malformed rule object "
                                         r"\(handle is not a number\)"):
        parse_observed(_nft_native(9, ["handle"], _deep()), point="host1", table="microseg")
    with pytest.raises(ParseError, match=r"holds a rule object microseg does not write"):
        parse_observed(_nft_native(9, ["chain"], {"name": "ingress"}), point="host1", table="microseg")


def test_nft_listing_nested_too_deep_to_decode_is_a_parse_error() -> None:
    text = '{"nftables": ' + "[" * 100_000 + "]" * 100_000 + "}"
    native = {"tables": NFT_TABLES, "chains": NFT_CHAINS, "table": text}
    with pytest.raises(ParseError, match="output is not JSON"):
        parse_observed(native, point="host1", table="microseg")


@pytest.mark.parametrize(("platform", "text"), [
    (ios, "Extended IP access list X\n 10 permit ² any any\n"),
    (ios, "Extended IP access list X\n 10 permit tcp any eq 1² any\n"),
    (nxos, "IP access list X\n 10 permit icmp any any ²\n"),
    (eos, "IP Access List X\n 10 permit icmp any any 8 ¹\n"),
])
def test_switch_numbers_that_are_not_ascii_digits(platform: Any, text: str) -> None:
    fails_closed(lambda: platform.parse_acls(text, point="sw1"))


def test_ios_running_config_sequence_that_is_not_ascii_digits() -> None:
    fails_closed(lambda: ios.parse_running_config_acls("access-list 101 1² permit ip any any\n", point="sw1"))
    fails_closed(lambda: ios.parse_running_config_acls("ip access-list extended A\n 1² deny ip any any\n"))


@pytest.mark.parametrize("change", [
    {"allowed": [{"IPProtocol": "tcp", "ports": ["²"]}]},
    {"allowed": [{"IPProtocol": "²"}]},
    {"allowed": [{"IPProtocol": ["tcp"]}]},
    {"allowed": 5},
    {"allowed": {"IPProtocol": "tcp"}},
    {"targetTags": [None, "shop-dev-db"]},
    {"targetTags": "shop-dev-db"},
    {"sourceRanges": [_deep()]},
    {"network": _deep()},
    {"priority": _deep()},
    {"logConfig": _deep()},
    {"name": _deep()},
])
def test_gcp_malformed_rule_is_a_parse_error(change: dict[str, Any]) -> None:
    native = {**GCP_NATIVE, "owned": [{**GCP_OWNED[0], **change}]}
    with pytest.raises(ParseError, match="firewall rule") as info:
        GCP_DRIVER.normalize(Snapshot(GCP_POINT, "gcp_firewall", native))
    assert len(str(info.value)) < 1000


@pytest.mark.parametrize("properties", [
    {"destinationPortRange": "²"},
    {"destinationPortRange": _deep()},
    {"sourceAddressPrefix": _deep()},
    {"access": _deep()},
    {"sourceAddressPrefix": None, "sourceApplicationSecurityGroups": [_deep()]},
    {"priority": _deep()},
])
def test_azure_malformed_rule_is_a_parse_error(properties: dict[str, Any]) -> None:
    rule = _azure_rule("mseg-in-0100", 100)
    rule["properties"].update(properties)
    nsg = {**AZURE_NATIVE["nsg"], "properties": {"securityRules": [rule]}}
    with pytest.raises(ParseError, match="mseg-in-0100") as info:
        _azure_normalize({**AZURE_NATIVE, "nsg": nsg})
    assert len(str(info.value)) < 1000
