"""Rule hit evidence: per policy rule, what the points' counters say over a window (pure).

Every stored point plan carries the packets each policy rule's entries on that point had matched so far
(``ChangePlan.hits``, from counters such as nftables ``counter``).  A counter only grows until it is reset
(the rule or the table rewritten, the host rebooted), so the packets a rule matched in a window are, per point,
the sum of the increases between consecutive samples — a sample lower than the one before, or one of another
counter epoch (``ChangePlan.hits_epoch``: nftables' table handle, new with every apply), starts over from
zero — and its last hit is the latest sample that shows an increase.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass
class RuleHits:
    """What the counters say of one policy rule over the window."""

    rule: str
    packets: int = 0  # matched within the window, summed over the points that count it
    last_hit: datetime | None = None  # the latest sample showing an increase
    points: dict[str, int] = field(default_factory=dict)  # per counting point: packets within the window
    samples: int = 0
    latest: dict[str, int] = field(default_factory=dict)  # per point: the counter's last value (since it started)
    sampled: dict[str, int] = field(default_factory=dict)  # per point: how many samples counted it

    @property
    def judged(self) -> bool:
        """Whether some point sampled the rule twice or more: only then can "no packet" be told."""
        return any(n >= 2 for n in self.sampled.values())

    @property
    def counted(self) -> bool:
        return bool(self.points)

    @property
    def never_hit(self) -> list[str]:
        """The points that sampled the rule twice or more and saw no packet for it in between."""
        return sorted(p for p, n in self.points.items() if n == 0 and self.sampled.get(p, 0) >= 2)

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "counted": self.counted, "packets": self.packets,
                "last_hit": self.last_hit.isoformat(timespec="seconds") if self.last_hit else None,
                "points": dict(sorted(self.points.items())), "never_hit_on": self.never_hit, "samples": self.samples,
                "since_counters_started": sum(self.latest.values())}


Sample = tuple[datetime, str, dict[str, int], str]
"""(when, point, packets per policy rule, counter epoch): one stored point plan's counters."""


def rule_hit_report(samples: Iterable[Sample], rules: Sequence[str]) -> list[RuleHits]:
    """Per policy rule (``rules``, in order; rules only the samples name are added after them), its packets in
    the window the ``samples`` (oldest first) cover, its last hit and the points that never saw it hit."""
    report = {name: RuleHits(name) for name in rules}
    previous: dict[tuple[str, str], tuple[int, str]] = {}
    for at, point, hits, epoch in samples:
        for name, value in hits.items():
            entry = report.setdefault(name, RuleHits(name))
            entry.samples += 1
            entry.sampled[point] = entry.sampled.get(point, 0) + 1
            before, before_epoch = previous.get((point, name), (None, epoch))
            if before is None:
                grown = 0  # the baseline
            elif value < before or epoch != before_epoch:
                grown = value  # the counter started over
            else:
                grown = value - before
            entry.points[point] = entry.points.get(point, 0) + grown
            entry.packets += grown
            if grown > 0 and (entry.last_hit is None or at > entry.last_hit):
                entry.last_hit = at
            previous[(point, name)] = (value, epoch)
            entry.latest[point] = value
    return list(report.values())


@dataclass
class LoggedUse:
    """What flow logs say of one policy rule: records of flows a rule standing for it decided."""

    records: int = 0
    packets: int = 0
    last_seen: int | None = None  # epoch seconds
    names: set[str] = field(default_factory=set)  # the logged rule names it was found under

    def to_dict(self) -> dict[str, Any]:
        return {"records": self.records, "packets": self.packets,
                "last_seen": datetime.fromtimestamp(self.last_seen, UTC).isoformat(timespec="seconds")
                if self.last_seen is not None else None, "names": sorted(self.names)}


@dataclass
class FlowLogEvidence:
    """Per policy rule, its :class:`LoggedUse`; the records under names no stored plan gives a policy rule (the
    platform's own default rules, rules microseg does not own); and, per name, the records attributed to
    nothing because the name meant different rules around the flow's time (a change renamed or reordered)."""

    rules: dict[str, LoggedUse] = field(default_factory=dict)
    ours: int = 0  # records attributed (one that stands for several policy rules counts once here)
    not_ours: int = 0
    ambiguous: dict[str, int] = field(default_factory=dict)


LogRow = tuple[str, int, int, int, int]
"""(logged rule name, records, packets, first seen, last seen): flow-store rows of one name and time window."""
NameSample = tuple[datetime, str, Mapping[str, Sequence[str]]]
"""(when, point, logged rule name -> policy rules): what the names of one stored point plan meant."""


def flow_log_evidence(rows: Iterable[LogRow], samples: Iterable[NameSample]) -> FlowLogEvidence:
    """Attribute flow-log records to policy rules through the names the stored plans read (``samples``).

    A name can change meaning (Azure names rules by priority, and a change moves them), so a row is attributed
    only when every sample from the last one before its first flow to the first one after its last flow gives its
    name the same policy rules (at least one such sample); otherwise its records are ``ambiguous``.  Rows newer
    than the last sample are read with it: run ``drift`` after a change so that its names are sampled.
    """
    history: dict[str, list[tuple[float, tuple[str, ...]]]] = {}
    for at, _point, names in samples:
        when = (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
        for name, rules in names.items():
            history.setdefault(name, []).append((when, tuple(sorted(rules))))
    for named in history.values():
        named.sort(key=lambda entry: entry[0])
    out = FlowLogEvidence()
    for name, records, packets, first, last in rows:
        entries = history.get(name)
        if not entries:
            out.not_ours += records
            continue
        times = [when for when, _ in entries]
        low = max(bisect.bisect_right(times, first) - 1, 0)  # the last sample at or before the first flow
        high = bisect.bisect_left(times, last)  # the first sample at or after the last flow
        meanings = {rules for _, rules in entries[low:high + 1]}
        if len(meanings) != 1:
            out.ambiguous[name] = out.ambiguous.get(name, 0) + records
            continue
        out.ours += records
        for rule in meanings.pop():
            use = out.rules.setdefault(rule, LoggedUse())
            use.records += records
            use.packets += packets
            use.last_seen = last if use.last_seen is None else max(use.last_seen, last)
            use.names.add(name)
    return out
