"""Intended vs. actual ruleset of one point: what to add, remove and move (order-aware where order matters).

First-match and priority rulesets are compared as sequences per direction
(first-match ones per address family too, when no rule spans both):
the longest common subsequence of rule identities stays, rules only in the
intended sequence are added, rules only in the actual one are removed, and
rules present on both sides but out of order are moved.  Unordered
(allow-set) rulesets are compared as multisets.  Ruleset-wide settings
(default action, mode, statefulness) are compared too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

from orchestrator.model.rules import Direction, Ordering, Rule, Ruleset


@dataclass(frozen=True, slots=True)
class RulesetDiff:
    """The normalized difference between the actual and the intended ruleset of one point."""

    point: str
    ordering: Ordering
    added: tuple[Rule, ...] = ()
    removed: tuple[Rule, ...] = ()
    moved: tuple[Rule, ...] = ()
    settings: tuple[tuple[str, str, str], ...] = ()  # (name, actual, intended)
    unchanged: int = 0

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.moved or self.settings)

    @property
    def change_count(self) -> int:
        return len(self.added) + len(self.removed) + len(self.moved) + len(self.settings)

    def summary(self) -> str:
        if self.empty:
            return "no changes"
        parts = [f"+{len(self.added)}", f"-{len(self.removed)}"]
        if self.moved:
            parts.append(f"~{len(self.moved)} moved")
        text = " ".join(parts)
        if self.settings:  # one format for every setting: "default: permit → deny; stateful: no → yes"
            text += "; " + "; ".join(f"{name}: {old} → {new}" for name, old, new in self.settings)
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "point": self.point,
            "ordering": self.ordering.value,
            "added": [r.to_dict() for r in self.added],
            "removed": [r.to_dict() for r in self.removed],
            "moved": [r.to_dict() for r in self.moved],
            "settings": [{"name": n, "actual": a, "intended": i} for n, a, i in self.settings],
            "unchanged": self.unchanged,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RulesetDiff:
        return cls(
            point=data["point"],
            ordering=Ordering(data["ordering"]),
            added=tuple(Rule.from_dict(r) for r in data["added"]),
            removed=tuple(Rule.from_dict(r) for r in data["removed"]),
            moved=tuple(Rule.from_dict(r) for r in data["moved"]),
            settings=tuple((s["name"], s["actual"], s["intended"]) for s in data["settings"]),
            unchanged=int(data["unchanged"]),
        )


def _sequence_diff(actual: Sequence[Rule], intended: Sequence[Rule]) -> tuple[list[Rule], list[Rule], list[Rule], int]:
    """(added, removed, moved, kept) between two first-match sequences."""
    a_keys = [r.key() for r in actual]
    i_keys = [r.key() for r in intended]
    matcher = SequenceMatcher(a=a_keys, b=i_keys, autojunk=False)
    kept_a: set[int] = set()
    kept_i: set[int] = set()
    for block in matcher.get_matching_blocks():
        kept_a.update(range(block.a, block.a + block.size))
        kept_i.update(range(block.b, block.b + block.size))
    left_a = Counter(a_keys[i] for i in range(len(actual)) if i not in kept_a)
    added: list[Rule] = []
    moved: list[Rule] = []
    for idx, rule in enumerate(intended):
        if idx in kept_i:
            continue
        key = i_keys[idx]
        if left_a[key] > 0:  # present elsewhere in the actual sequence: a move, not an add
            left_a[key] -= 1
            moved.append(rule)
        else:
            added.append(rule)
    removed: list[Rule] = []
    for idx, rule in enumerate(actual):
        if idx in kept_a:
            continue
        key = a_keys[idx]
        if left_a[key] > 0:
            left_a[key] -= 1
            removed.append(rule)
    return added, removed, moved, len(kept_a)


def _set_diff(actual: Sequence[Rule], intended: Sequence[Rule]) -> tuple[list[Rule], list[Rule], int]:
    have = Counter(r.key() for r in actual)
    want = Counter(r.key() for r in intended)
    added: list[Rule] = []
    for rule in intended:
        if have[rule.key()] > 0:
            have[rule.key()] -= 1
        else:
            added.append(rule)
    removed: list[Rule] = []
    for rule in actual:
        if want[rule.key()] > 0:
            want[rule.key()] -= 1
        else:
            removed.append(rule)
    return added, removed, len(actual) - len(removed)


def _settings(actual: Ruleset, intended: Ruleset) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    if actual.default_action is not intended.default_action:
        out.append(("default", actual.default_action.value, intended.default_action.value))
    if actual.mode is not intended.mode:
        out.append(("mode", actual.mode.value, intended.mode.value))
    if actual.stateful != intended.stateful:
        out.append(("stateful", _yes(actual.stateful), _yes(intended.stateful)))
    return out


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _family_partitions(actual: Sequence[Rule], intended: Sequence[Rule],
                       ordering: Ordering) -> list[tuple[list[Rule], list[Rule]]]:
    """First-match sequences compared per address family when every rule is of one family: an IPv4 and an IPv6
    rule never match the same packet, so their relative order is no difference (a platform that keeps one ACL
    per family reads them back grouped)."""
    rules = [*actual, *intended]
    families = [r.src.families | r.dst.families for r in rules]
    if ordering is not Ordering.FIRST_MATCH or any(len(f) != 1 for f in families):
        return [(list(actual), list(intended))]
    return [([r for r in actual if r.src.families | r.dst.families == {v}],
             [r for r in intended if r.src.families | r.dst.families == {v}]) for v in (4, 6)]


def diff_rulesets(actual: Ruleset, intended: Ruleset) -> RulesetDiff:
    """What must change so that ``actual`` becomes ``intended`` (evaluated with intended's ordering)."""
    added: list[Rule] = []
    removed: list[Rule] = []
    moved: list[Rule] = []
    unchanged = 0
    for direction in Direction:
        a_rules, i_rules = actual.for_direction(direction), intended.for_direction(direction)
        if intended.ordering is Ordering.UNORDERED_ALLOW:
            add, rem, kept = _set_diff(a_rules, i_rules)
            mov: list[Rule] = []
        else:
            add, rem, mov, kept = [], [], [], 0
            for a_part, i_part in _family_partitions(a_rules, i_rules, intended.ordering):
                p_add, p_rem, p_mov, p_kept = _sequence_diff(a_part, i_part)
                add, rem, mov, kept = add + p_add, rem + p_rem, mov + p_mov, kept + p_kept
        added += add
        removed += rem
        moved += mov
        unchanged += kept
    return RulesetDiff(
        point=intended.point,
        ordering=intended.ordering,
        added=tuple(added),
        removed=tuple(removed),
        moved=tuple(moved),
        settings=tuple(_settings(actual, intended)),
        unchanged=unchanged,
    )
