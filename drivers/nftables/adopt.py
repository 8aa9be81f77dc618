"""A host's foreign nftables enforcement as first-match rules, for ``microseg adopt`` (pure, read-only).

Reads ``nft -j list ruleset``: every base chain of type ``filter`` that someone else's table (``inet``, ``ip`` or
``ip6``) hooks on ``input`` (the point's ingress) or ``output`` (egress).  What such a chain decides for a new
connection becomes rules in its order, then its policy; an ``ip`` chain speaks for IPv4 only (IPv6 passes it),
an ``ip6`` chain for IPv6.  The idioms every hand-written host firewall starts with and microseg's own table
writes too are read as what they are, not as rules: ``ct state established,related accept`` (stateful: it never
decides a new connection), ``ct state invalid drop``, the loopback accept (``iif``/``iifname "lo"``) and the
ICMPv6 neighbour-discovery accept.  ``ct state new`` on a rule is dropped (the rule decides new connections
anyway), a ``log`` statement is left out (it changes no verdict) and ``reject`` is read as a deny.

What cannot be read exactly is listed in ``unreadable`` with table, chain and rule handle — a ``jump``/``goto``,
a match on something the model has no field for, several base chains filtering one family on one hook (they
all have to accept a packet), a chain without the established accept that drops (by policy or with a rule: it
decides every packet, replies included, which a stateful table does not), a drop before the established accept
(it drops replies too), a stateful chain that runs before conntrack, and any other base chain that can drop the
host's packets (a filter chain on prerouting or postrouting, a ``route`` or ``nat`` chain, a ``netdev`` ingress
chain, with a drop policy or a drop, reject, jump or goto) — so no proposal is proven equivalent while there is
any.  ``bridge`` and ``arp`` tables and ``forward`` chains see none of the host's own traffic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from drivers.nftables.expressions import ExpressionError, parse_rule, single_item, text_of
from drivers.nftables.layout import FAMILY
from drivers.nftables.parse import ACCEPT, ct_rule, decode_listing, is_nd_accept, statements
from orchestrator.model import ANY_OF_FAMILY, Action, Direction, Existing, Mode, Ordering, Rule, Ruleset

HOOKS: Mapping[Direction, str] = {Direction.INGRESS: "input", Direction.EGRESS: "output"}
FAMILIES: Mapping[str, tuple[int, ...]] = {"inet": (4, 6), "ip": (4,), "ip6": (6,)}
LOOPBACK_KEYS: Mapping[Direction, tuple[str, ...]] = {Direction.INGRESS: ("iif", "iifname"),
                                                      Direction.EGRESS: ("oif", "oifname")}
Key = tuple[str, str, str]  # (family, table, chain)
DROPPING = ("drop", "reject", "jump", "goto", "queue")  # verdicts that may keep a packet from the host
CONNTRACK_PRIORITY = -200  # a chain before conntrack (a lower priority) never sees a ct state


def foreign_enforcement(listing: Any, *, point: str, table: str, directions: Iterable[Direction]) -> Existing:
    """What the base chains of other tables decide for the point's directions (see the module docstring)."""
    chains: dict[Key, Mapping[str, Any]] = {}
    bodies: dict[Key, list[Mapping[str, Any]]] = {}
    for obj in decode_listing(listing, what="nft -j list ruleset", point=point):
        kind, body = next(iter(obj.items()))
        if not isinstance(body, dict) or kind not in ("chain", "rule"):
            continue
        family, owner = text_of(body.get("family")), text_of(body.get("table"))
        key = (family, owner, text_of(body.get("name" if kind == "chain" else "chain")))
        if family not in (*FAMILIES, "netdev") or (family == FAMILY and owner == table):
            continue  # bridge/arp tables see no packet of the host's own traffic; microseg's own table
        listed = bodies.setdefault(key, [])
        if kind == "chain":
            chains[key] = body
        else:
            listed.append(body)
    rules: list[Rule] = []
    origins: list[str] = []
    unreadable: list[str] = []
    stateful = True
    unreadable += _other_droppers(chains, bodies)
    for direction in sorted(directions, key=lambda d: d.value):
        hook = HOOKS[direction]
        base = [key for key, body in chains.items() if _is_read(key, body) and body.get("hook") == hook]
        covering: dict[int, list[Key]] = {4: [], 6: []}
        for key in base:
            for family in FAMILIES[key[0]]:
                covering[family].append(key)
        for family, keys in covering.items():
            if not keys:
                rules.append(Rule(Action.PERMIT, direction, None, ANY_OF_FAMILY[family], ANY_OF_FAMILY[family]))
                origins.append(f"no nft base chain filters IPv{family} on hook {hook}: unfiltered")
            elif len(keys) > 1:
                unreadable.append(f"IPv{family} on hook {hook}: several base chains filter it "
                                  f"({', '.join(_name(k) for k in keys)}), each must accept a packet; adopt reads "
                                  "one per family and hook")
        for key in base:
            families = tuple(f for f in FAMILIES[key[0]] if covering[f] == [key])
            if families:
                read, where, problems, keeps_state = _chain(key, chains[key], bodies[key], direction, families)
                rules.extend(read)
                origins.extend(where)
                unreadable.extend(problems)
                stateful = stateful and keeps_state
    ruleset = Ruleset(point, Ordering.FIRST_MATCH, Action.DENY, tuple(rules), Mode.ENFORCE, stateful=stateful)
    return Existing(ruleset, tuple(origins), tuple(unreadable))


def _name(key: Key) -> str:
    return f"table {key[0]} {key[1]} chain {key[2]}"


def _is_read(key: Key, chain: Mapping[str, Any]) -> bool:
    """A base chain adopt reads as rules: type filter on input or output, of an ip/ip6/inet table."""
    return key[0] in FAMILIES and chain.get("type") == "filter" and chain.get("hook") in HOOKS.values()


def _other_droppers(chains: Mapping[Key, Mapping[str, Any]], bodies: Mapping[Key, Sequence[Mapping[str, Any]]],
                    ) -> list[str]:
    """Base chains adopt does not read as rules that can still drop the host's packets — a filter chain on
    prerouting or postrouting, a route or nat chain, a netdev ingress chain — by policy or with a drop, reject,
    jump or goto (forward chains see only routed traffic, never the host's own)."""
    out = []
    for key, chain in chains.items():
        hook = chain.get("hook")
        if "hook" not in chain or _is_read(key, chain) or hook == "forward":
            continue
        drops = chain.get("policy") == "drop" or any(_verdict(body) in DROPPING for body in bodies.get(key, ()))
        if drops:
            out.append(f"{_name(key)} (type {text_of(chain.get('type'))}, hook {text_of(hook)}) can drop packets "
                       "of the host's own traffic: adopt reads filter chains on input and output only")
    return out


def _verdict(body: Mapping[str, Any]) -> str | None:
    """The verdict statement of a rule (accept, drop, reject, jump, goto …), None without one."""
    for expr in body.get("expr", []) if isinstance(body.get("expr"), list) else ():
        if isinstance(expr, dict) and len(expr) == 1:
            kind = next(iter(expr))
            if kind in (*DROPPING, "accept", "return", "continue"):
                return str(kind)
    return None


def _chain(key: Key, chain: Mapping[str, Any], bodies: Sequence[Mapping[str, Any]], direction: Direction,
           families: tuple[int, ...]) -> tuple[list[Rule], list[str], list[str], bool]:
    """(rules, origins, unreadable, stateful) of one base chain, for the families it alone filters."""
    rules: list[Rule] = []
    origins: list[str] = []
    unreadable: list[str] = []
    stateful = False
    dropped_before: str | None = None  # a rule that drops before the established accept drops replies too
    for body in bodies:
        where = f"{_name(key)} handle {text_of(body.get('handle'))}"
        if not isinstance(body.get("expr"), list):
            unreadable.append(f"{where}: a rule without expressions")
            continue
        ct = ct_rule(body)
        if ct == (frozenset({"established", "related"}), [ACCEPT]):
            stateful = True  # never decides a new connection
            if dropped_before is not None:
                unreadable.append(f"{dropped_before}: drops before the chain's `ct state established,related "
                                  "accept`, so it drops replies too, which a stateful microseg table lets back")
            continue
        if not stateful and dropped_before is None and _verdict(body) in DROPPING:
            dropped_before = where
        if (ct is not None and ct[0] == {"invalid"} and ct[1] == [{"drop": None}]) or is_nd_accept(body) \
                or _is_loopback_accept(body, direction):
            continue  # what microseg's own table does too
        jump = next((e for e in body["expr"] if isinstance(e, dict) and ("jump" in e or "goto" in e)), None)
        if jump is not None:
            kind, value = next(iter(jump.items()))
            target = text_of(value.get("target") if isinstance(value, dict) else value)
            unreadable.append(f"{where}: {kind} to chain {target} (adopt reads a base chain's own rules, not the "
                              "chains it branches to)")
            continue
        try:
            rule = parse_rule({"expr": _decisive(body)}, direction, Mode.ENFORCE)
        except ExpressionError as exc:
            unreadable.append(f"{where}: {exc.describe()}")
            continue
        for family in families:
            one = _of_family(rule, family)
            if one is not None:
                rules.append(one)
                origins.append(where)
    policy = chain.get("policy")
    if policy not in ("accept", "drop"):
        unreadable.append(f"{_name(key)}: policy {text_of(policy)}")
    elif policy == "accept":
        rules.extend(Rule(Action.PERMIT, direction, None, ANY_OF_FAMILY[f], ANY_OF_FAMILY[f]) for f in families)
        origins.extend(f"{_name(key)} policy accept" for _ in families)
    if not stateful and (policy == "drop" or dropped_before is not None):
        unreadable.append(f"{_name(key)}: no `ct state established,related accept`, so its rules decide every "
                          "packet, replies included; a stateful microseg table lets the replies of what it permits "
                          "back — adopt such a chain by hand")
    prio = chain.get("prio")
    if stateful and isinstance(prio, int) and prio < CONNTRACK_PRIORITY:
        unreadable.append(f"{_name(key)}: priority {prio} runs before conntrack ({CONNTRACK_PRIORITY}), where no "
                          "packet has a ct state yet")
    return rules, origins, unreadable, stateful or (policy == "accept" and dropped_before is None)


def _decisive(body: Mapping[str, Any]) -> list[Any]:
    """A rule's expressions without what changes no verdict for a new connection: counters, ``ct state new``
    (every connection this reads is new), ``log``; ``reject`` as ``drop``."""
    out: list[Any] = []
    for expr in statements(body):
        try:
            kind, value = single_item(expr)
        except ExpressionError:
            out.append(expr)  # parse_rule says what is wrong with it
            continue
        if kind == "log":
            continue
        if kind == "reject":
            out.append({"drop": None})
            continue
        if kind == "match" and isinstance(value, dict) and value.get("left") == {"ct": {"key": "state"}} \
                and value.get("op") in ("in", "==") and value.get("right") in ("new", ["new"]):
            continue
        out.append(expr)
    return out


def _is_loopback_accept(body: Mapping[str, Any], direction: Direction) -> bool:
    return any(statements(body) == [{"match": {"op": "==", "left": {"meta": {"key": key}}, "right": "lo"}}, ACCEPT]
               for key in LOOPBACK_KEYS[direction])


def _of_family(rule: Rule, family: int) -> Rule | None:
    """The rule cut to one address family (a rule of an ``ip`` table decides IPv4 packets only); None when it
    matches none of that family."""
    src, dst = rule.src.intersection(ANY_OF_FAMILY[family]), rule.dst.intersection(ANY_OF_FAMILY[family])
    return replace(rule, src=src, dst=dst) if src and dst else None
