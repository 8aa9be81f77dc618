"""``/metrics``: Prometheus figures read from the store at each scrape (so every instance reports the same)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from orchestrator.store import ServiceStore

KINDS = ("plan", "apply", "drift", "reconcile", "rollback")
POINT_STATES = {"in_sync": "in_sync", "drift": "drifted", "failed": "failed"}


class StoreCollector:
    """Collects the figures of the latest runs and the totals of every run."""

    def __init__(self, store: ServiceStore) -> None:
        self.store = store

    def _points(self) -> GaugeMetricFamily:
        gauge = GaugeMetricFamily("microseg_points", "Points by state in the latest reconcile run "
                                  "(drifted points a repair put back count as in_sync)", labels=["state"])
        counts = dict.fromkeys(POINT_STATES.values(), 0)
        latest = self.store.runs(limit=1, kind="reconcile")
        if latest:
            for state, n in latest[0].result_counts.items():
                if state in POINT_STATES:
                    counts[POINT_STATES[state]] += n
            for summary in self.store.runs(limit=5, kind="apply"):
                record = self.store.run(summary.id)
                if record.options.get("reconcile_run") == latest[0].id:
                    repaired = sum(1 for r in record.results.values() if r.state == "new")
                    counts["drifted"] -= repaired
                    counts["in_sync"] += repaired
        for state, n in counts.items():
            gauge.add_metric([state], n)
        return gauge

    def collect(self) -> Iterable[Metric]:
        yield self._points()
        started = GaugeMetricFamily("microseg_last_run_timestamp_seconds", "Start of the latest run, per kind",
                                    labels=["kind"])
        duration = GaugeMetricFamily("microseg_last_run_duration_seconds", "Duration of the latest finished run, "
                                     "per kind", labels=["kind"])
        for kind in KINDS:
            runs = self.store.runs(limit=1, kind=kind)
            if not runs:
                continue
            started.add_metric([kind], runs[0].started_at.timestamp())
            if runs[0].finished_at is not None:
                duration.add_metric([kind], (runs[0].finished_at - runs[0].started_at).total_seconds())
        yield started
        yield duration
        totals = self.store.result_totals()
        applied = CounterMetricFamily("microseg_changes_applied", "Points changed and verified by apply runs")
        applied.add_metric([], float(totals.get(("apply", "new"), 0)))
        yield applied
        rollbacks = CounterMetricFamily("microseg_rollbacks", "Points restored to their checkpoint (any run)")
        rollbacks.add_metric([], float(sum(n for (_, state), n in totals.items() if state == "restored")))
        yield rollbacks
        requests = GaugeMetricFamily("microseg_change_requests", "Change requests by status", labels=["status"])
        for status, n in sorted(self.store.change_counts().items()):
            requests.add_metric([status], n)
        yield requests


def render(store: ServiceStore) -> bytes:
    """The Prometheus text exposition of the store's figures."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    return generate_latest(registry)
