"""nft JSON listings → Observed: the owned table as a Ruleset, other tables as Unmanaged (pure, fails closed).

A listing is untrusted input: whatever its shape (a comment that is an object, a handle that is a list, values
nested thousands deep), reading it ends in an Observed or a ParseError naming the chain and rule handle where
known — never a TypeError, KeyError or RecursionError.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from drivers.nftables import icmp
from drivers.nftables.expressions import ExpressionError, parse_rule, text_of
from drivers.nftables.layout import (
    CHAIN_BY_NAME,
    CHAIN_PRIORITY,
    CHAIN_TYPE,
    CHAINS,
    DRIVER,
    FAMILY,
    LOG_WOULD_DENY,
    MARKER_MODES,
    ChainSpec,
    table_spec,
)
from orchestrator.model import (
    ANY_ADDRESS,
    Action,
    Mode,
    Observed,
    Ordering,
    ParseError,
    Rule,
    Ruleset,
    Unmanaged,
    shown,
)

CHAIN_KEYS = frozenset({"family", "table", "name", "handle", "type", "hook", "prio", "policy", "comment"})
RULE_KEYS = frozenset({"family", "table", "chain", "handle", "expr", "comment"})
CT_STATE_BITS = {1: "invalid", 2: "established", 4: "related", 8: "new", 64: "untracked"}
ACCEPT: dict[str, Any] = {"accept": None}


def decode_listing(value: Any, *, what: str, point: str) -> list[dict[str, Any]]:
    """The object list of one ``nft -j`` listing (text or decoded JSON); ParseError on bad JSON or shape."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError) as exc:  # RecursionError: arrays/objects nested too deep to decode
            reason = exc if isinstance(exc, ValueError) else "nested too deep"
            raise ParseError(f"{what}: output is not JSON ({reason})", point=point, driver=DRIVER) from exc
    items = value.get("nftables") if isinstance(value, dict) else None
    if not isinstance(items, list) or not all(isinstance(i, dict) and len(i) == 1 for i in items):
        raise ParseError(f"{what}: expected {{\"nftables\": [{{kind: object}}, ...]}}", point=point, driver=DRIVER)
    return items


def parse_observed(native: Mapping[str, Any], *, point: str, table: str,
                   owned: Sequence[ChainSpec] = CHAINS) -> Observed:
    """What ``fetch`` saw (``tables``, ``chains``, ``table`` listings) as the owned Ruleset plus Unmanaged items."""
    if not isinstance(native, Mapping) or not {"tables", "chains", "table"} <= set(native):
        raise ParseError("snapshot lacks the tables/chains/table listings", point=point, driver=DRIVER)
    tables = decode_listing(native["tables"], what="nft -j list tables", point=point)
    chains = decode_listing(native["chains"], what="nft -j list chains", point=point)
    exists = any(is_owned_table(obj.get("table"), table) for obj in tables)
    listing = native["table"]
    if (listing is not None) != exists:
        raise ParseError(
            f"table {table_spec(table)} {'is listed but could not be read' if exists else 'appeared while listing'}",
            point=point,
            driver=DRIVER,
        )
    if listing is None:
        ruleset = Ruleset(point, Ordering.FIRST_MATCH, Action.PERMIT, (), Mode.ENFORCE, stateful=False)
    else:
        objects = decode_listing(listing, what=f"nft -j list table {table_spec(table)}", point=point)
        notes: list[Unmanaged] = []
        hits: list[int | None] = []
        ruleset = parse_table(objects, point=point, table=table, notes=notes, owned=owned, hits=hits)
        handle = next((obj["table"].get("handle") for obj in objects if is_owned_table(obj.get("table"), table)), None)
        return Observed(ruleset, (*notes, *unmanaged_tables(tables, chains, table=table)), tuple(hits),
                        str(handle) if _is_int(handle) else "")
    return Observed(ruleset, unmanaged_tables(tables, chains, table=table))


def is_owned_table(body: Any, table: str) -> bool:
    """Whether a listing's ``table`` object is the owned ``inet <table>``."""
    return isinstance(body, dict) and body.get("family") == FAMILY and body.get("name") == table


@dataclass(frozen=True, slots=True)
class _Chain:
    """One parsed chain of the owned table."""

    stateful: bool
    mode: Mode
    default: Action
    rules: tuple[Rule, ...]
    hits: tuple[int | None, ...] = ()  # per rule: its counter's packets (None: no counter)


class _Where:
    """Where a ParseError happened: point, table, chain and rule handle."""

    def __init__(self, point: str, table: str, chain: str | None = None, handle: Any = None) -> None:
        self.point, self.table, self.chain, self.handle = point, table, chain, handle

    def error(self, message: str) -> ParseError:
        where = f"table {table_spec(self.table)}"
        if self.chain is not None:
            where += f", chain {self.chain}"
        if self.handle is not None:
            where += f", rule handle {_handle(self.handle)}"
        return ParseError(f"{where}: {message}", point=self.point, driver=DRIVER)


def _handle(value: Any) -> str:
    """A rule handle for a message: the number nft prints, or the (bounded) JSON of whatever is there instead."""
    return str(value) if _is_int(value) else shown(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _rule_problem(body: Mapping[str, Any]) -> str | None:
    """What makes a rule object of an owned chain malformed (None: its shape is one nft lists)."""
    if not set(body) <= RULE_KEYS:
        return f"unexpected keys {', '.join(sorted(set(body) - RULE_KEYS))}"
    if not isinstance(body.get("expr"), list):
        return "expr is not a list"
    if "handle" in body and not _is_int(body["handle"]):
        return "handle is not a number"
    if "comment" in body and not isinstance(body["comment"], str):
        return "comment is not a string"
    return None


def parse_table(objects: Sequence[Mapping[str, Any]], *, point: str, table: str,
                notes: list[Unmanaged] | None = None, owned: Sequence[ChainSpec] = CHAINS,
                hits: list[int | None] | None = None) -> Ruleset:
    """The owned table's listing as a Ruleset; ParseError on anything microseg cannot model exactly.

    Rules somebody inserted *above* the fixed rules (``nft insert rule …``) are read as the chain's first
    policy rules and reported in ``notes``: exact for every packet the conntrack and loopback rules do not
    decide first, and always drift — apply rewrites the chain in microseg's order.
    """
    where = _Where(point, table)
    chains: dict[str, Mapping[str, Any]] = {}
    rules: dict[str, list[Mapping[str, Any]]] = {}
    seen_table = False
    for obj in objects:
        kind, body = next(iter(obj.items()))
        if kind == "metainfo":
            continue
        if not isinstance(body, dict):
            raise where.error(f"malformed {kind} object: {shown(body)}")
        if kind == "table" and is_owned_table(body, table):
            seen_table = True
        elif kind == "chain" and body.get("table") == table and body.get("family") == FAMILY:
            name = text_of(body.get("name"))
            if name not in CHAIN_BY_NAME or name in chains:
                raise _Where(point, table, name).error("a chain microseg does not write (hand-added?)")
            chains[name], rules[name] = body, []
        elif (kind == "rule" and isinstance(chain := body.get("chain"), str) and chain in rules
              and body.get("table") == table):
            problem = _rule_problem(body)
            if problem is not None:
                raise _Where(point, table, chain, body.get("handle")).error(
                    f"malformed rule object ({problem}): {shown(body)}")
            rules[chain].append(body)
        else:
            raise where.error(f"holds a {kind} object microseg does not write: {shown(body)}")
    if not seen_table:
        raise where.error("the listing does not contain the table")
    present = [spec for spec in CHAINS if spec.name in chains]  # owned first in CHAINS order, then any other
    if not present:  # a table without chains filters nothing
        return Ruleset(point, Ordering.FIRST_MATCH, Action.PERMIT, (), Mode.ENFORCE, stateful=False)
    present.sort(key=lambda spec: spec not in owned)
    parsed = []
    for spec in present:
        bodies = rules[spec.name]
        above = _misplaced(spec, bodies)
        if above and notes is not None:
            handles = ", ".join(_handle(b.get("handle")) for b in bodies[:above])
            notes.append(Unmanaged("misplaced-rule", f"chain {spec.name} handle {handles}",
                                   "inserted above microseg's fixed rules: read as the first policy rules; "
                                   "apply rewrites the chain"))
        parsed.append(_parse_chain(spec, chains[spec.name], bodies[above:], _Where(point, table, spec.name),
                                   bodies[:above]))
    missing = [spec for spec in owned if spec.name not in chains]
    return _combine(present, parsed, [spec in owned for spec in present], point, where, missing, hits)


def _combine(specs: Sequence[ChainSpec], parsed: Sequence[_Chain], owned: Sequence[bool], point: str,
             where: _Where, missing: Sequence[ChainSpec] = (), hits: list[int | None] | None = None) -> Ruleset:
    """One ruleset of the chains; a chain of a direction the point does not filter is read as an explicit
    catch-all (the intent has none), so the plan shows it and apply removes it with the table rewrite; a
    direction the point filters whose chain is missing (the point filtered fewer directions before) lets
    everything through, read as an explicit catch-all permit, so the plan shows it and apply adds the chain."""
    first = parsed[0]
    for spec, chain in zip(specs, parsed, strict=True):
        if chain.stateful != first.stateful:
            raise where.error(f"chain {spec.name} and chain {specs[0].name} disagree on the ct state preamble")
        if chain.mode is not first.mode:
            raise where.error(f"chain {spec.name} and chain {specs[0].name} disagree on the mode marker")
    rules: list[Rule] = []
    counted: list[int | None] = []
    for spec, chain, mine in zip(specs, parsed, owned, strict=True):
        rules.extend(chain.rules)
        counted.extend(chain.hits)
        if chain.default is not first.default or not mine:  # exact: a catch-all last rule = a chain policy
            rules.append(Rule(chain.default, spec.direction, None, ANY_ADDRESS, ANY_ADDRESS))
            counted.append(None)
    if first.default is Action.DENY:
        rules.extend(Rule(Action.PERMIT, spec.direction, None, ANY_ADDRESS, ANY_ADDRESS) for spec in missing)
        counted.extend(None for _ in missing)
    if hits is not None:
        hits.extend(counted)
    return Ruleset(point, Ordering.FIRST_MATCH, first.default, tuple(rules), first.mode, first.stateful)


def _misplaced(spec: ChainSpec, bodies: Sequence[Mapping[str, Any]]) -> int:
    """How many rules sit above the chain's first fixed rule (0 when it is on top or absent)."""
    for index, body in enumerate(bodies):
        if ct_rule(body) == (frozenset({"established", "related"}), [ACCEPT]) or _is_lo_marker(spec, body):
            return index
    return 0


def _is_lo_marker(spec: ChainSpec, body: Mapping[str, Any]) -> bool:
    lo_match = {"match": {"op": "==", "left": {"meta": {"key": spec.interface_key}}, "right": "lo"}}
    return statements(body) == [lo_match, ACCEPT] and _marker(body) is not None


def _marker(body: Mapping[str, Any]) -> Mode | None:
    """The mode a rule's comment marks (None: no mode marker)."""
    comment = body.get("comment")
    return MARKER_MODES.get(comment) if isinstance(comment, str) else None


def _parse_chain(spec: ChainSpec, chain: Mapping[str, Any], bodies: list[Mapping[str, Any]], where: _Where,
                 above: Sequence[Mapping[str, Any]] = ()) -> _Chain:
    header = {k: chain.get(k) for k in ("type", "hook", "prio")}
    if not set(chain) <= CHAIN_KEYS or header != {"type": CHAIN_TYPE, "hook": spec.hook, "prio": CHAIN_PRIORITY}:
        raise where.error(f"chain is not a filter chain on hook {spec.hook} at priority filter: {shown(chain)}")
    if chain.get("policy") not in ("accept", "drop"):
        raise where.error(f"chain policy {shown(chain.get('policy'))}")
    stateful, mode, position = _preamble(spec, bodies, where)
    body = [*above, *bodies[position:]]
    if mode is Mode.MONITOR:
        if chain["policy"] != "accept":
            raise where.error("policy drop in a chain marked monitor mode")
        tail = bool(body) and statements(body[-1]) == [{"log": {"prefix": LOG_WOULD_DENY}}]
        default = Action.DENY if tail else Action.PERMIT
        body = body[:-1] if tail else body
    else:
        default = Action.PERMIT if chain["policy"] == "accept" else Action.DENY
    rules = []
    for item in body:
        try:
            rules.append(parse_rule(item, spec.direction, mode))
        except ExpressionError as exc:
            raise _Where(where.point, where.table, spec.name, item.get("handle")).error(exc.describe()) from exc
    return _Chain(stateful, mode, default, tuple(rules), tuple(_packets(item) for item in body))


def _packets(body: Mapping[str, Any]) -> int | None:
    """The packets a rule's (first anonymous) counter counted; None without one or when it is not a number."""
    for expr in body.get("expr", []):
        counter = expr.get("counter") if isinstance(expr, dict) else None
        if isinstance(counter, dict):
            packets = counter.get("packets")
            return packets if _is_int(packets) and packets >= 0 else None
    return None


def _preamble(spec: ChainSpec, bodies: Sequence[Mapping[str, Any]], where: _Where) -> tuple[bool, Mode, int]:
    """(stateful, mode, index of the first policy rule): the fixed rules render writes at the chain's top."""

    def expect(index: int, what: str) -> Mapping[str, Any]:
        if index >= len(bodies):
            raise where.error(f"preamble rule `{what}` is missing (the chain ends at rule {len(bodies)})")
        return bodies[index]

    def fail(index: int, what: str) -> ParseError:
        body = bodies[index]
        return _Where(where.point, where.table, spec.name, body.get("handle")).error(
            f"expected preamble rule `{what}`, found {shown(body.get('expr'))}"
        )

    stateful = bool(bodies) and ct_rule(bodies[0]) == (frozenset({"established", "related"}), [ACCEPT])
    invalid_text = "ct state invalid drop"
    invalid = ct_rule(expect(1, invalid_text)) if stateful else None
    if stateful and (invalid is None or invalid[0] != {"invalid"}):
        raise fail(1, invalid_text)
    position = 2 if stateful else 0
    lo_text = f'{spec.interface_key} "lo" accept comment "<mode marker>"'
    lo = expect(position, lo_text)
    lo_match = {"match": {"op": "==", "left": {"meta": {"key": spec.interface_key}}, "right": "lo"}}
    mode = _marker(lo)
    if statements(lo) != [lo_match, ACCEPT] or mode is None:
        raise fail(position, lo_text)
    if invalid is not None:
        if mode is Mode.MONITOR:
            invalid_text = f'ct state invalid log prefix "{LOG_WOULD_DENY}" accept'
        tail = [{"drop": None}] if mode is Mode.ENFORCE else [{"log": {"prefix": LOG_WOULD_DENY}}, ACCEPT]
        if invalid[1] != tail:
            raise fail(1, invalid_text)
    nd_text = "icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept"
    if not is_nd_accept(expect(position + 1, nd_text)):
        raise fail(position + 1, nd_text)
    return stateful, mode, position + 2


def statements(body: Mapping[str, Any]) -> list[Any]:
    """A rule's expressions without anonymous counters (they change no verdict)."""
    return [e for e in body.get("expr", []) if not (isinstance(e, dict) and set(e) == {"counter"})]


def ct_rule(body: Mapping[str, Any]) -> tuple[frozenset[str], list[Any]] | None:
    """(states, following statements) of a ``ct state … <statements>`` rule, else None."""
    exprs = statements(body)
    if not exprs:
        return None
    match = exprs[0].get("match") if isinstance(exprs[0], dict) else None
    if not isinstance(match, dict) or match.get("left") != {"ct": {"key": "state"}}:
        return None
    if match.get("op") not in ("in", "=="):
        return None
    values = match.get("right")
    states: set[str] = set()
    for value in values if isinstance(values, list) else [values]:
        if isinstance(value, str):
            states.add(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            states.update(name for bit, name in CT_STATE_BITS.items() if value & bit)
        else:
            return None
    return frozenset(states), exprs[1:]


def is_nd_accept(body: Mapping[str, Any]) -> bool:
    exprs = statements(body)
    if len(exprs) != 2 or exprs[1] != ACCEPT or not isinstance(exprs[0], dict):
        return False
    match = exprs[0].get("match")
    if not isinstance(match, dict) or match.get("left") != {"payload": {"protocol": "icmpv6", "field": "type"}}:
        return False
    right = match.get("right")
    elements = right.get("set") if isinstance(right, dict) else None
    if match.get("op") not in ("==", "in") or not isinstance(elements, list):
        return False
    if not all(isinstance(e, str) or _is_int(e) for e in elements):
        return False
    types = {icmp.ICMPV6_TYPES.get(e) if isinstance(e, str) else e for e in elements}
    return types == set(icmp.ND_TYPES) and len(elements) == len(icmp.ND_TYPES)


def unmanaged_tables(
    tables: Sequence[Mapping[str, Any]], chains: Sequence[Mapping[str, Any]], *, table: str
) -> tuple[Unmanaged, ...]:
    """Every table but the owned one, warning about base chains whose policy drops what microseg permits."""
    drops: dict[tuple[str, str], list[str]] = {}
    for obj in chains:
        body = obj.get("chain")
        if isinstance(body, dict) and "hook" in body and body.get("policy") == "drop":
            key = (text_of(body.get("family")), text_of(body.get("table")))
            drops.setdefault(key, []).append(
                f"base chain {text_of(body.get('name'))} (hook {text_of(body.get('hook'))}, "
                f"priority {text_of(body.get('prio'))}) has policy drop"
            )
    out: list[Unmanaged] = []
    for obj in tables:
        body = obj.get("table")
        if not isinstance(body, dict) or is_owned_table(body, table):
            continue
        key = (text_of(body.get("family")), text_of(body.get("name")))
        detail = ""
        if key in drops:
            detail = "warning: " + "; ".join(drops[key]) + ": it drops traffic whatever microseg permits"
        out.append(Unmanaged("table", f"{key[0]} {key[1]}", detail))
    return tuple(out)


def stable_listing(objects: Sequence[Mapping[str, Any]] | None) -> Any:
    """A listing without metainfo, handles and counter values: what the fingerprint covers."""
    if objects is None:
        return None
    return [_strip(obj) for obj in objects if "metainfo" not in obj]


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "handle":
                continue
            if key == "counter" and isinstance(item, dict):
                out[key] = {k: v for k, v in item.items() if k not in ("packets", "bytes")} or None
            else:
                out[key] = _strip(item)
        return out
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value

