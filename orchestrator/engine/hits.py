"""Rule hit evidence: per policy rule, what the points' counters say over a window (pure).

Every stored point plan carries the packets each policy rule's entries on that point had matched so far
(``ChangePlan.hits``, from counters such as nftables ``counter``).  A counter only grows until it is reset
(the rule or the table rewritten, the host rebooted), so the packets a rule matched in a window are, per point,
the sum of the increases between consecutive samples — a sample lower than the one before, or one of another
counter epoch (``ChangePlan.hits_epoch``: nftables' table handle, new with every apply), starts over from
zero — and its last hit is the latest sample that shows an increase.

Clouds keep no counters; their flow logs are the evidence.  Azure and GCP name the rule that decided each flow,
read through the names the stored plans give (:func:`flow_log_evidence`); AWS names only the interface that
logged it, so each flow is evaluated against the rules the stored plans say that interface carried then
(:func:`evaluated_evidence`).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from orchestrator.engine.plan import own_policy_rules
from orchestrator.model.flows import canonical_address
from orchestrator.model.rules import Action, Direction, Ordering, Rule, Ruleset
from orchestrator.packetspace.flowset import Flow
from orchestrator.packetspace.packetspace import first_match, rule_matches


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
    evaluated_at: set[str] = field(default_factory=set)  # the interfaces whose logged flows its rules were found at

    def add(self, records: int, packets: int, last: int) -> None:
        self.records += records
        self.packets += packets
        self.last_seen = last if self.last_seen is None else max(self.last_seen, last)

    def to_dict(self) -> dict[str, Any]:
        return {"records": self.records, "packets": self.packets,
                "last_seen": datetime.fromtimestamp(self.last_seen, UTC).isoformat(timespec="seconds")
                if self.last_seen is not None else None, "names": sorted(self.names),
                "evaluated_at": sorted(self.evaluated_at)}


@dataclass
class FlowLogEvidence:
    """Per policy rule, its :class:`LoggedUse`; the records attributed (a record whose rule stands for several
    policy rules counts once here); the records that no rule the stored plans give a policy rule decided (under
    the platform's own default rules, rules microseg does not own, microseg's catch-alls; where flows are
    evaluated, AWS: rejected flows, replies the connection state let through, flows no owned rule matches); and,
    per name or interface, the records attributed to nothing because the stored plans cannot say what the name
    meant, or which rules the interface carried, then (it changed around them, a change was planned right before
    them, or they are older than every sample)."""

    rules: dict[str, LoggedUse] = field(default_factory=dict)
    attributed: int = 0
    unattributed: int = 0
    ambiguous: dict[str, int] = field(default_factory=dict)

    def unclear(self, key: str, records: int) -> None:
        self.ambiguous[key] = self.ambiguous.get(key, 0) + records


class _Timeline:
    """What one key (a logged rule name, a logging interface) meant at each stored sample, and so over a window.

    A meaning holds over a window only when every sample from the last one at or before its start to the first
    one at or after its end gives the same; a window older than every sample says nothing, nor does one newer
    than a last sample whose plan had changes (it was read before they were made)."""

    def __init__(self) -> None:
        self.entries: list[tuple[float, Hashable, bool]] = []
        self.stamps: list[float] = []

    def add(self, at: datetime, meaning: Hashable, settled: bool) -> None:
        self.entries.append((_stamp(at), meaning, settled))

    def seal(self) -> _Timeline:
        self.entries.sort(key=lambda entry: entry[0])
        self.stamps = [when for when, _, _ in self.entries]
        return self

    def meaning(self, first: int, last: int) -> Hashable | None:
        """The one meaning over [first, last] (epoch seconds), or None when the samples cannot tell it."""
        entries, stamps = self.entries, self.stamps
        before = bisect.bisect_right(stamps, first)  # samples at or before the first flow
        if before == 0:
            return None  # older than every sample
        low = bisect.bisect_left(stamps, stamps[before - 1])  # every sample of that instant
        high = max(bisect.bisect_left(stamps, last), low)  # the first sample at or after the last flow
        if high >= len(entries) and not entries[-1][2]:
            return None  # after the last sample, which planned a change: the meaning may be another now
        meanings = {meaning for _, meaning, _ in entries[low:high + 1]}
        return meanings.pop() if len(meanings) == 1 else None


LogRow = tuple[str, int, int, int, int]
"""(logged rule name, records, packets, first seen, last seen): flow-store rows of one name and time window."""
NameSample = tuple[datetime, str, Mapping[str, Sequence[str]], bool]
"""(when, point, logged rule name -> policy rules, settled): what the names of one stored point plan meant, and
whether that plan changed nothing (after a plan with changes an apply may give the names new meanings)."""


def flow_log_evidence(rows: Iterable[LogRow], samples: Iterable[NameSample],
                      out: FlowLogEvidence | None = None) -> FlowLogEvidence:
    """Attribute flow-log records to policy rules through the names the stored plans read (``samples``); adds to
    ``out`` when given.

    A name can change meaning (Azure names rules by priority, and a change moves them), so a row is attributed
    only when every sample from the last one at or before its first flow to the first one at or after its last
    flow gives its name the same policy rules (:class:`_Timeline`); otherwise it is ``ambiguous``.  Run ``drift``
    after a change so that the new names are sampled.
    """
    timelines: dict[str, _Timeline] = {}
    for at, _point, names, settled in samples:
        for name, rules in names.items():
            timelines.setdefault(name, _Timeline()).add(at, tuple(sorted(rules)), settled)
    for timeline in timelines.values():
        timeline.seal()
    out = out if out is not None else FlowLogEvidence()
    for name, records, packets, first, last in rows:
        if name not in timelines:
            out.unattributed += records
            continue
        meaning = timelines[name].meaning(first, last)
        if not isinstance(meaning, tuple):
            out.unclear(name, records)
            continue
        out.attributed += records
        for rule in meaning:
            use = out.rules.setdefault(rule, LoggedUse())
            use.add(records, packets, last)
            use.names.add(name)
    return out


FlowRow = tuple[str, str, str, int, int, int, str | None, str | None, int, int, int, int]
"""(observer, src, dst, protocol, src port, dst port, initiator, action, records, packets, first seen, last
seen): flow-store rows logged at an interface under no rule name (``FlowStore.unnamed_flows``)."""
ObserverSample = tuple[datetime, str, Mapping[str, Sequence[str]] | None, Mapping[str, Any], Mapping[str, Any] | None,
                       bool]
"""(when, point, logging interface -> its addresses (None: a plan of a release that did not record them), the
intended ruleset as stored, the stored diff, settled): one stored point plan — the rules enforced when it was read
are its intended ones where it changed nothing, else (for a union of allows) the intended ones less what it would
add, plus what it would remove."""

_ABSENT = ("absent",)  # the meaning of an interface a sample of the point does not list: not the point's then


def evaluated_evidence(rows: Iterable[FlowRow], samples: Iterable[ObserverSample],
                       out: FlowLogEvidence | None = None) -> FlowLogEvidence:
    """Attribute flow-log records that name no rule (AWS VPC Flow Logs) to policy rules by evaluating each flow
    against the rules its logging interface carried then (``samples``: the stored plans, oldest first, of each
    point that listed an interface, from its last plan before the first flow on); adds to ``out``.

    Per (interface, point), what the interface carried is known over a window as a name's meaning is
    (:class:`_Timeline`): the rules the point's plan read then (:data:`ObserverSample`), "not the point's" where
    the plan does not list the interface (not attached yet, or detached), and an unknown of its own where the
    plan cannot tell (a release that did not record interfaces, an ordered ruleset with changes).  A record in a
    window the samples cannot tell is ambiguous under the interface.  A flow into one of the interface's
    addresses is judged by the point's ingress rules, one out of them by its egress rules; an interface carrying
    several points' groups has each judge it (a union of allows).  A record the source says the far end opened
    (a reply, which the connection state lets through), a rejected one (no allow rule decided it) and one no
    owned allow rule matches (another group let it through) are unattributed; one logged while no owned group
    was on the interface is not counted (as flows at interfaces no plan lists are not read).  Where rules are a
    union of allows (a security group), every owned rule matching the flow decided it; under first match, the
    first.  A record counts once however many policy rules it is credited to.
    """
    timelines, rulesets = _interface_timelines(samples)
    decided: dict[tuple[Any, ...], tuple[str, ...]] = {}  # flows repeat (the store drops ports no rule matches on)
    out = out if out is not None else FlowLogEvidence()
    for observer, src, dst, protocol, src_port, dst_port, initiator, action, records, packets, first, last in rows:
        meanings = [timeline.meaning(first, last) for timeline in timelines.get(observer, {}).values()]
        present = [meaning[1:] for meaning in meanings if isinstance(meaning, tuple) and meaning[0] == "rules"]
        unknown = any(not isinstance(meaning, tuple) or meaning[0] == "unknown" for meaning in meanings)
        if not present and not unknown:
            continue  # no owned group on the interface then: not microseg's to judge
        if action == "reject" or initiator == "dst":
            out.unattributed += records  # no allow rule decided it, whatever the interface carried
            continue
        if unknown:
            out.unclear(observer, records)
            continue
        source, destination = _canonical(src), _canonical(dst)
        names: set[str] = set()
        for key, addresses in present:
            direction = Direction.INGRESS if destination in addresses else \
                Direction.EGRESS if source in addresses else None
            if direction is None:
                continue
            flow = (key, direction, source, destination, protocol, src_port, dst_port)
            if flow not in decided:
                decided[flow] = _deciding(rulesets[key], direction, source, destination, protocol, src_port,
                                          dst_port)
            names.update(decided[flow])
        if not names:
            out.unattributed += records
            continue
        out.attributed += records
        for rule in sorted(names):
            use = out.rules.setdefault(rule, LoggedUse())
            use.add(records, packets, last)
            use.evaluated_at.add(observer)
    return out


def matches_source_ports(ruleset: Mapping[str, Any]) -> bool:
    """Whether a stored ruleset has a rule that matches on source ports (else a flow's source port decides
    nothing there, and flows may be read without it)."""
    rules = ruleset.get("rules")
    return any(isinstance(r, Mapping) and r.get("src_ports", "any") not in ("any", None)
               for r in rules or ()) if isinstance(rules, list) else True


@dataclass
class _Run:
    """A run of samples that do not list an interface: its first sample's time, whether that first shares its
    instant with the entry before (then one more entry is kept), and its last sample not added yet."""

    first: datetime
    tied: bool
    last: tuple[datetime, bool] | None = None


def _interface_timelines(samples: Iterable[ObserverSample],
                         ) -> tuple[dict[str, dict[str, _Timeline]], dict[str, Ruleset]]:
    """Per interface and point, what the interface carried at each sample (see :func:`evaluated_evidence`), and
    the rulesets by key.  A run of samples not listing the interface is kept as its first and last entry (the
    same windows, without an entry per sample for every interface the point ever listed); before a point's first
    sample that does not list it, the interface was not the point's either (samples start at each point's last
    plan before the first flow, so an earlier time is before the point existed)."""
    kept = list(samples)
    listed: dict[str, set[str]] = {}  # point -> every interface any of its samples lists
    for _at, point, observers, _intended, _diff, _settled in kept:
        listed.setdefault(point, set()).update(observers or ())
    timelines: dict[str, dict[str, _Timeline]] = {}  # interface -> point -> timeline
    rulesets: dict[str, Ruleset] = {}
    keys: dict[tuple[int, str], tuple[Any, str | None]] = {}  # (intended by identity, the diff's content)
    runs: dict[tuple[str, str], _Run] = {}  # per (interface, point): the run of absence going on
    for number, (at, point, observers, intended, diff, settled) in enumerate(kept):
        key = None
        if observers:
            changes = "" if settled or diff is None else json.dumps(
                [diff.get("added"), diff.get("removed")], sort_keys=True, separators=(",", ":"))
            known = keys.get((id(intended), changes))
            if known is None or known[0] is not intended:
                known = keys[(id(intended), changes)] = (intended, _enforced_key(
                    intended, None if settled else diff, rulesets))
            key = known[1]
        for observer in listed.get(point, ()):
            timeline = timelines.setdefault(observer, {}).setdefault(point, _Timeline())
            if observers is not None and observer not in observers:
                if not timeline.entries:
                    timeline.add(datetime.min.replace(tzinfo=UTC), _ABSENT, True)  # not attached before this
                run = runs.get((observer, point))
                if run is None:  # a run of absence: its first sample …
                    runs[(observer, point)] = _Run(at, timeline.entries[-1][0] == _stamp(at))
                    timeline.add(at, _ABSENT, settled)
                elif run.tied and at > run.first:  # … its first at a later instant, where the first shares its
                    timeline.add(at, _ABSENT, settled)  # instant with another meaning (a window inside the run must
                    run.tied, run.last = False, None  # not reach back to that instant) …
                else:
                    run.last = (at, settled)  # … and its last, added when the run ends
                continue
            run = runs.pop((observer, point), None)
            if run is not None and run.last is not None:
                timeline.add(run.last[0], _ABSENT, run.last[1])
            if observers is None or key is None:
                meaning: Hashable = ("unknown", number)  # its own: a window touching it is ambiguous
            else:
                meaning = ("rules", key, frozenset(_canonical(a) for a in observers[observer]) - {""})
            timeline.add(at, meaning, settled)
    for (observer, point), run in runs.items():  # runs that end the history
        if run.last is not None:
            timelines[observer][point].add(run.last[0], _ABSENT, run.last[1])
    for by_point in timelines.values():
        for timeline in by_point.values():
            timeline.seal()
    return timelines, rulesets


def _enforced_key(intended: Mapping[str, Any], diff: Mapping[str, Any] | None,
                  rulesets: dict[str, Ruleset]) -> str | None:
    """The key of the rules enforced when a plan was read (the ruleset kept in ``rulesets``): its intended ones
    where it changed nothing (``diff`` None); for a union of allows, those less what it would add plus what it
    would remove; None where that cannot be told (an ordered ruleset with changes, a diff that cannot be read).
    The key holds only what attribution depends on — the order, each rule's match and the policy rules it is
    its own for — not the rest of its provenance (a rule read back from a device carries only the names its
    description holds, not the tickets and owners the compiler gave it)."""
    try:
        ruleset = Ruleset.from_dict(intended)
        remaining = list(ruleset.rules)
        if diff is not None:
            if ruleset.ordering is not Ordering.UNORDERED_ALLOW:
                return None
            for gone in (Rule.from_dict(r) for r in diff.get("added") or ()):
                remaining.remove(gone)  # multiset: one equal rule per added one (none: the diff is not of these)
            remaining += [Rule.from_dict(r) for r in diff.get("removed") or ()]
    except (KeyError, TypeError, ValueError):
        return None
    if ruleset.ordering is Ordering.UNORDERED_ALLOW:
        remaining.sort(key=Rule.key)
    what = {"ordering": ruleset.ordering.value,
            "rules": [[r.to_dict(with_provenance=False), list(own_policy_rules(r.provenance))] for r in remaining]}
    key = json.dumps(what, sort_keys=True, separators=(",", ":"))
    if key not in rulesets:
        rulesets[key] = replace(ruleset, rules=tuple(remaining))
    return key


def _stamp(at: datetime) -> float:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def _canonical(address: str) -> str:
    """One spelling of an address ("" for none): a bulk-loaded log keeps the text as the file wrote it."""
    try:
        return canonical_address(address)
    except ValueError:
        return ""


def _deciding(ruleset: Ruleset, direction: Direction, src: str, dst: str, protocol: int, src_port: int,
              dst_port: int) -> tuple[str, ...]:
    """The policy rules of the allow rules of ``ruleset`` that decided this flow in ``direction`` (none: a deny,
    the default, or a flow of two families)."""
    try:
        flow = Flow.logged(src, dst, protocol, src_port, dst_port)
    except ValueError:
        return ()
    rules = ruleset.for_direction(direction)
    if ruleset.ordering is Ordering.UNORDERED_ALLOW:
        deciding = [r for r in rules if r.action is Action.PERMIT and rule_matches(r, flow)]
    else:
        first = first_match(rules, flow)
        deciding = [rules[first]] if first is not None and rules[first].action is Action.PERMIT else []
    return tuple(sorted({name for rule in deciding for name in own_policy_rules(rule.provenance)}))
