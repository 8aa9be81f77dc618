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
    """Per policy rule, its :class:`LoggedUse`; the records attributed (a record whose rule stands for several
    policy rules counts once here); the records under names no stored plan gives a policy rule (the platform's
    own default rules, rules microseg does not own, microseg's own catch-alls); and, per name, the records
    attributed to nothing because the stored plans cannot say what the name meant then (it changed meaning
    around them, a change was planned right before them, or they are older than every sample)."""

    rules: dict[str, LoggedUse] = field(default_factory=dict)
    attributed: int = 0
    unattributed: int = 0
    ambiguous: dict[str, int] = field(default_factory=dict)


LogRow = tuple[str, int, int, int, int]
"""(logged rule name, records, packets, first seen, last seen): flow-store rows of one name and time window."""
NameSample = tuple[datetime, str, Mapping[str, Sequence[str]], bool]
"""(when, point, logged rule name -> policy rules, settled): what the names of one stored point plan meant, and
whether that plan changed nothing (after a plan with changes an apply may give the names new meanings)."""


def flow_log_evidence(rows: Iterable[LogRow], samples: Iterable[NameSample]) -> FlowLogEvidence:
    """Attribute flow-log records to policy rules through the names the stored plans read (``samples``).

    A name can change meaning (Azure names rules by priority, and a change moves them), so a row is attributed
    only when every sample from the last one at or before its first flow to the first one at or after its last
    flow gives its name the same policy rules.  A row older than every sample of its name, or newer than a last
    sample whose plan had changes (it was read before they were made), says nothing: ``ambiguous``.  Run
    ``drift`` after a change so that the new names are sampled.
    """
    history: dict[str, list[tuple[float, tuple[str, ...], bool]]] = {}
    for at, _point, names, settled in samples:
        when = (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
        for name, rules in names.items():
            history.setdefault(name, []).append((when, tuple(sorted(rules)), settled))
    timelines = {name: sorted(entries, key=lambda entry: entry[0]) for name, entries in history.items()}
    times = {name: [when for when, _, _ in entries] for name, entries in timelines.items()}
    out = FlowLogEvidence()
    for name, records, packets, first, last in rows:
        if name not in timelines:
            out.unattributed += records
            continue
        entries, stamps = timelines[name], times[name]
        before = bisect.bisect_right(stamps, first)  # samples at or before the first flow
        if before == 0:
            out.ambiguous[name] = out.ambiguous.get(name, 0) + records  # older than every sample
            continue
        low = bisect.bisect_left(stamps, stamps[before - 1])  # every sample of that instant
        high = max(bisect.bisect_left(stamps, last), low)  # the first sample at or after the last flow
        window = entries[low:high + 1]
        if high >= len(entries) and not entries[-1][2]:
            window = []  # after the last sample, which planned a change: the names may mean something else now
        meanings = {rules for _, rules, _ in window}
        if len(meanings) != 1:
            out.ambiguous[name] = out.ambiguous.get(name, 0) + records
            continue
        out.attributed += records
        for rule in meanings.pop():
            use = out.rules.setdefault(rule, LoggedUse())
            use.records += records
            use.packets += packets
            use.last_seen = last if use.last_seen is None else max(use.last_seen, last)
            use.names.add(name)
    return out
