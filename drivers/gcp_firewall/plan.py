"""Owned rules → intended ruleset as API calls: stable names and priorities, one call per changed rule, safe order.

Rules the intent keeps keep their name and priority (no call).  A new rule gets
a fresh number and a free priority between its kept neighbours; a rule that
replaces a removed one in the same place is written over it with one patch
when that cannot cut traffic (same action, and a deny, or an allow covering
the old one) and the API can patch it (one native rule each, no field to
clear); otherwise it is inserted and the old one deleted.

Order: inserts and patches by ascending priority, then deletes by descending
priority.  With every priority distinct, each flow is then decided at every
step either as before or as after the change, so traffic allowed before and
after is never cut (the argument is in this package's README).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any

from drivers.gcp_firewall.native import Targets, Unit, default_body, unit_bodies
from drivers.gcp_firewall.settings import DEFAULT_RULE_PRIORITY, DEFAULT_RULES, GCP_DEFAULT_PRIORITY, GcpSettings
from orchestrator.model import (
    ANY_PORTS,
    PORT_PROTOCOLS,
    Action,
    Direction,
    Mode,
    Rule,
    Ruleset,
    canonical_json,
    normalize_ports,
)

STEP = 10  # spacing of new priorities, leaving room for later inserts
VERBS = ("insert", "patch", "update", "delete")
LIST_FIELDS = ("sourceRanges", "destinationRanges", "targetTags", "targetServiceAccounts", "allowed", "denied")


@dataclass(frozen=True, slots=True)
class Call:
    """One mutating API call on one firewall rule."""

    verb: str
    name: str
    priority: int
    body: Mapping[str, Any] | None = None

    def command(self) -> str:
        """``insert <name> <json>`` / ``patch <name> <json>`` / ``delete <name>``: what the operator reviews."""
        return f"{self.verb} {self.name}" + ("" if self.body is None else f" {canonical_json(self.body)}")


@dataclass(slots=True)
class _Direction:
    """What one direction's plan needs: its old units, the free numbers and the priorities in use."""

    old: list[Unit]
    numbers: set[int]
    taken: set[int]
    base: int
    placed: list[tuple[Rule, int, Unit | None]] = field(default_factory=list)  # (rule, priority, patched/kept)


def covers(new: Rule, old: Rule) -> bool:
    """Whether every packet ``old`` matches is matched by ``new`` too (same direction)."""
    if new.protocol is not None and new.protocol != old.protocol:
        return False
    if old.src.difference(new.src) or old.dst.difference(new.dst):
        return False
    if new.protocol in PORT_PROTOCOLS and new.dst_ports != ANY_PORTS:
        return normalize_ports([*new.dst_ports, *old.dst_ports]) == new.dst_ports and old.dst_ports != ANY_PORTS
    return True


def patchable(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Whether a PATCH (JSON merge patch: absent fields stay as they are) turns ``current`` into ``desired``."""
    if current.get("direction", "INGRESS") != desired.get("direction", "INGRESS"):
        return False  # the API cannot change a rule's direction or action
    if bool(current.get("allowed")) != bool(desired.get("allowed")):
        return False
    return all(bool(desired.get(key)) or not current.get(key) for key in (*LIST_FIELDS, "description"))


def _spread(lo: int, hi: int, count: int, taken: set[int], anchored: bool) -> list[int] | None:
    """``count`` free priorities strictly between ``lo`` and ``hi``, up to STEP apart; None without room."""
    if count == 0:
        return []
    free = hi - lo - 1 - sum(1 for t in taken if lo < t < hi)
    if free < count:
        return None
    step = max(1, min(STEP, (hi - lo - 1) // count if anchored else (hi - lo) // (count + 1)))
    picks: list[int] = []
    position = lo + (1 if anchored else step)
    while len(picks) < count:
        while position in taken:
            position += 1
        if position >= hi:
            break
        picks.append(position)
        position += step
    if len(picks) == count:
        return picks
    dense = [p for p in range(lo + 1, hi) if p not in taken]  # spacing did not fit: take the first free ones
    return dense[:count]


class _Planner:
    """Plans one render: the calls that move the owned rules to the intended ruleset."""

    def __init__(self, settings: GcpSettings, targets: Targets, bodies: Mapping[str, Mapping[str, Any]],
                 monitoring: bool = False) -> None:
        self.settings = settings
        self.targets = targets
        self.bodies = bodies  # every owned rule as fetched, by name
        self.monitoring = monitoring  # deny rules are written as logged allows (native.unit_bodies)

    def _written(self, unit: Unit) -> tuple[object, ...]:
        """What a unit is as written: its rule, and whether it is a deny written for the other mode."""
        return unit.rule.key(), unit.monitored

    def _wanted(self, rule: Rule) -> tuple[object, ...]:
        return rule.key(), self.monitoring and rule.action is Action.DENY

    def _bodies(self, rule: Rule, number: int, priority: int, where: str) -> list[dict[str, Any]]:
        return unit_bodies(rule, number, priority, self.settings, self.targets, where, monitoring=self.monitoring)

    def _where(self, rule: Rule, position: int) -> str:
        return f"{rule.direction.value} rule {position} ({rule.service_text()} {rule.src} → {rule.dst})"

    def _can_patch(self, old: Unit, new: Rule, position: int) -> bool:
        if old.rule.action is not new.action or len(old.names) != 1:
            return False
        if new.action is Action.PERMIT and not covers(new, old.rule):
            return False  # narrowing an allow in place could cut a flow a later insert is meant to carry
        desired = self._bodies(new, old.number, old.priority, self._where(new, position))
        return len(desired) == 1 and patchable(self.bodies[old.names[0]], desired[0])

    def _gap(self, state: _Direction, old: Sequence[Unit], new: Sequence[tuple[int, Rule]], lo: int, hi: int,
             anchored: bool) -> list[tuple[Rule, int, Unit | None]] | None:
        """Place the new rules of one gap between kept neighbours (``lo`` < priority < ``hi``)."""
        pairs: list[Unit | None] = [None] * len(new)
        start = 0
        for unit in old:  # each removed rule is written over by the next new rule that may replace it, in order
            match = next((k for k in range(start, len(new)) if self._can_patch(unit, new[k][1], new[k][0])), None)
            if match is not None:
                pairs[match], start = unit, match + 1
        for fixed in (pairs, [None] * len(new)):
            placed = self._place(state, new, fixed, lo, hi, anchored)
            if placed is not None:
                return placed
        return None

    @staticmethod
    def _place(state: _Direction, new: Sequence[tuple[int, Rule]], fixed: Sequence[Unit | None], lo: int, hi: int,
               anchored: bool) -> list[tuple[Rule, int, Unit | None]] | None:
        out: list[tuple[Rule, int, Unit | None]] = []
        start, run = lo, []  # run: positions of new rules waiting for a priority above ``start``
        for index, unit in [*enumerate(fixed), (len(fixed), None)]:
            if unit is None and index < len(fixed):
                run.append(index)
                continue
            stop = unit.priority if unit is not None else hi
            if stop <= start:
                return None
            picks = _spread(start, stop, len(run), state.taken, anchored and start == lo)
            if picks is None:
                return None
            out.extend((new[i][1], p, None) for i, p in zip(run, picks, strict=True))
            if unit is not None:
                out.append((new[index][1], unit.priority, unit))
                start, run = unit.priority, []
        return out

    def direction(self, state: _Direction, want: Sequence[Rule]) -> None:
        """Fill ``state.placed``: kept rules stay, gaps are filled; everything renumbered when a gap is full."""
        old = state.old
        matcher = SequenceMatcher(a=[self._written(u) for u in old], b=[self._wanted(r) for r in want],
                                  autojunk=False)
        anchors = [(b.a + k, b.b + k) for b in matcher.get_matching_blocks() for k in range(b.size)]
        placed: list[tuple[Rule, int, Unit | None]] = []
        prev_a = prev_b = 0
        lo = state.base - 1
        for a, b in [*anchors, (len(old), len(want))]:
            hi = old[a].priority if a < len(old) else DEFAULT_RULE_PRIORITY
            gap = self._gap(state, old[prev_a:a], list(enumerate(want))[prev_b:b], lo, hi, prev_a == 0)
            if gap is None:
                self._renumber(state, want)
                return
            placed.extend(gap)
            if a < len(old):
                placed.append((want[b], old[a].priority, old[a]))
                lo = old[a].priority
            prev_a, prev_b = a + 1, b + 1
        state.placed = placed

    @staticmethod
    def _renumber(state: _Direction, want: Sequence[Rule]) -> None:
        picks = _spread(state.base - 1, DEFAULT_RULE_PRIORITY, len(want), state.taken, True)
        if picks is None:
            raise ValueError(f"{len(want)} rules do not fit between priority {state.base} and "
                             f"{DEFAULT_RULE_PRIORITY - 1} beside the {len(state.taken)} in use")
        state.placed = [(rule, priority, None) for rule, priority in zip(want, picks, strict=True)]

    def calls(self, units: Sequence[Unit], intended: Ruleset) -> list[Call]:
        """Every call of the change, in the order apply must send them."""
        owned = {name: self.settings.parse_name(name) for name in self.bodies}
        writes: list[Call] = []
        desired: set[str] = set()
        for direction in (d for d in Direction if d in self.settings.directions):  # only what the point filters
            mine = {name: o for name, o in owned.items() if o is not None and o.direction is direction}
            numbers = {o.number for o in mine.values() if o.default is None}
            taken = {int(self.bodies[name].get("priority", GCP_DEFAULT_PRIORITY)) for name in mine}
            state = _Direction([u for u in units if u.direction is direction], numbers, taken,
                               self.settings.priority_base)
            self.direction(state, intended.for_direction(direction))
            writes.extend(self._writes(state, desired))
        writes.extend(self._defaults(intended.default_action, desired))
        deletes = [Call("delete", name, int(body.get("priority", GCP_DEFAULT_PRIORITY)))
                   for name, body in self.bodies.items() if name not in desired]
        writes.sort(key=lambda c: (c.priority, c.name))
        deletes.sort(key=lambda c: (-c.priority, c.name))
        return [*writes, *deletes]

    def _writes(self, state: _Direction, desired: set[str]) -> Iterable[Call]:
        fresh = (n for n in range(1, 10**6) if n not in state.numbers)
        for position, (rule, priority, unit) in enumerate(state.placed, start=1):
            if unit is not None and self._written(unit) == self._wanted(rule) and unit.priority == priority:
                desired.update(unit.names)  # kept as it is
                continue
            number = unit.number if unit is not None else next(fresh)
            for body in self._bodies(rule, number, priority, self._where(rule, position)):
                desired.add(body["name"])
                verb = "patch" if body["name"] in self.bodies else "insert"
                yield Call(verb, body["name"], priority, body)

    def _defaults(self, default: Action, desired: set[str]) -> Iterable[Call]:
        """GCP's implied rules deny ingress and allow egress: turn the one that differs from ``default`` around
        (when the point filters its direction: an ingress-only point's default deny is GCP's own).  While
        monitoring: a logged allow-the-rest rule in each direction the point filters, saying the default."""
        if self.monitoring:
            kinds = [k for k in ("allow-ingress", "allow-egress") if DEFAULT_RULES[k][0] in self.settings.directions]
        else:
            kind = "deny-egress" if default is Action.DENY else "allow-ingress"
            kinds = [kind] if DEFAULT_RULES[kind][0] in self.settings.directions else []
        for kind, family in ((k, f) for k in kinds for f in (4, 6)):
            body = default_body(kind, family, self.settings, monitoring=default if self.monitoring else None)
            name = body["name"]
            desired.add(name)
            current = self.bodies.get(name)
            if current is None:
                yield Call("insert", name, DEFAULT_RULE_PRIORITY, body)
            elif current.get("disabled") or not _same_default(current, body):
                yield Call("patch", name, DEFAULT_RULE_PRIORITY, body)


def _same_default(current: Mapping[str, Any], body: Mapping[str, Any]) -> bool:
    keys = ("direction", "priority", "allowed", "denied", "sourceRanges", "destinationRanges", "description")
    logged = bool((current.get("logConfig") or {}).get("enable")) == bool((body.get("logConfig") or {}).get("enable"))
    return logged and all(current.get(k) == body.get(k) for k in keys)


def plan_calls(units: Sequence[Unit], intended: Ruleset, settings: GcpSettings, targets: Targets,
               bodies: Mapping[str, Mapping[str, Any]]) -> list[Call]:
    """The calls that turn the owned rules (``units`` read from ``bodies``) into ``intended``."""
    return _Planner(settings, targets, bodies, intended.mode is Mode.MONITOR).calls(units, intended)


def restore_calls(current: Mapping[str, Mapping[str, Any]], wanted: Mapping[str, Mapping[str, Any]]) -> list[Call]:
    """The calls that put every owned rule back exactly as ``wanted`` (a checkpoint) holds them."""
    writes: list[Call] = []
    for name, body in wanted.items():
        have = current.get(name)
        priority = int(body.get("priority", GCP_DEFAULT_PRIORITY))
        if have is None:
            writes.append(Call("insert", name, priority, body))
        elif dict(have) != dict(body):
            writes.append(Call("patch" if patchable(have, body) else "update", name, priority, body))
    deletes = [Call("delete", name, int(body.get("priority", GCP_DEFAULT_PRIORITY)))
               for name, body in current.items() if name not in wanted]
    writes.sort(key=lambda c: (c.priority, c.name))
    deletes.sort(key=lambda c: (-c.priority, c.name))
    return [*writes, *deletes]
