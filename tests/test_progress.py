"""Progress output: plain lines and structured JSON logs are parseable and carry point, status and message."""

from __future__ import annotations

import io
import json

from orchestrator.cli.progress import JsonLinesReporter, PlainReporter, reporter_for


def test_json_lines_are_one_object_per_event():
    stream = io.StringIO()
    reporter = JsonLinesReporter(stream)
    reporter.phase("applying batch 1", 2)
    reporter.point("web-prod-01", "new", "+3 -1")
    reporter.point("db-prod-01", "unknown", "ROLLBACK FAILED")
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["event"] for r in records] == ["phase", "point", "point"]
    assert records[1] | {"ts": None} == {"ts": None, "logger": "microseg", "event": "point", "level": "info",
                                         "phase": "applying batch 1", "point": "web-prod-01", "status": "new",
                                         "message": "+3 -1"}
    assert records[2]["level"] == "error"


def test_plain_lines_name_the_point_and_status():
    stream = io.StringIO()
    reporter = PlainReporter(stream)
    reporter.point("web-prod-01", "restored", "rolled back and verified")
    assert stream.getvalue().rstrip().endswith("web-prod-01: restored — rolled back and verified")


def test_the_environment_selects_json_logs(monkeypatch):
    monkeypatch.setenv("MICROSEG_LOG_FORMAT", "json")
    assert isinstance(reporter_for(as_json=False), JsonLinesReporter)
    monkeypatch.delenv("MICROSEG_LOG_FORMAT")
    assert isinstance(reporter_for(as_json=True), PlainReporter)  # stderr is not a TTY under pytest


def test_python_logging_becomes_json_too(monkeypatch):
    import logging

    from orchestrator.cli.progress import JsonLogFormatter

    record = logging.LogRecord("microseg.scheduler", logging.WARNING, __file__, 1, "slot %s taken", ("reconcile",),
                               None)
    data = json.loads(JsonLogFormatter().format(record))
    assert data | {"ts": None} == {"ts": None, "level": "warning", "logger": "microseg.scheduler",
                                   "message": "slot reconcile taken"}
