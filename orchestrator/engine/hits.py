"""Rule hit evidence: per policy rule, what the points' counters say over a window (pure).

Every stored point plan carries the packets each policy rule's entries on that point had matched so far
(``ChangePlan.hits``, from counters such as nftables ``counter``).  A counter only grows until it is reset
(the rule or the table rewritten, the host rebooted), so the packets a rule matched in a window are, per point,
the sum of the increases between consecutive samples — a sample lower than the one before, or one of another
counter epoch (``ChangePlan.hits_epoch``: nftables' table handle, new with every apply), starts over from
zero — and its last hit is the latest sample that shows an increase.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
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
