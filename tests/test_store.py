"""State store: migrations, runs, results, audit trail and redaction, on SQLite and on PostgreSQL."""

from __future__ import annotations

import ipaddress
import itertools
import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import inspect, text

from orchestrator.model.errors import MicrosegError
from orchestrator.store import DEFAULT_STORE_URL, REDACTED, Store, StoreError, open_store, redact
from orchestrator.store.engine import normalize_url
from tests import store_fixtures
from tests.test_secrets import _stand_in_settings, run_with_secrets  # noqa: F401  (the fixture types the stand-in driver's settings)
from tests.vault_fake import FakeVault, vault

if TYPE_CHECKING:
    from tests.store_fixtures import Backend

# The store fixtures, run on SQLite and on PostgreSQL.
backend = store_fixtures.backend
store = store_fixtures.store
empty_location = store_fixtures.empty_location
__all__ = ["vault"]  # the Vault fake's fixture, used by name

TABLES = {"runs", "point_plans", "checkpoints", "point_results", "audit_events", "point_locks", "point_steps"}

SECRET = "hunter2-s3cr3t"


def new_run(store: Store, kind: str = "apply", **options: object) -> str:
    return store.create_run(kind, actor="alice", ticket="CHG-42", origin_host="jump1", options=dict(options))


# -- migrations -----------------------------------------------------------------------------------


def test_migrations_create_every_table_and_reopening_is_a_no_op(backend: Backend, store: Store) -> None:
    names = set(inspect(backend.raw).get_table_names())
    assert TABLES | {"alembic_version"} <= names
    run_id = new_run(store)
    backend.open().close()
    with backend.raw.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == ["0004"]
    assert store.run(run_id).id == run_id


def test_a_points_plans_and_results_are_read_by_index(backend: Backend, store: Store) -> None:
    """Migration 0004: the reads by point (its history, the rules its last changes put in place) use an index
    instead of scanning every run's rows (the query plan is checked on SQLite; PostgreSQL plans tiny tables as
    scans whatever the indexes)."""
    indexes = {table: {ix["name"]: ix["column_names"] for ix in inspect(backend.raw).get_indexes(table)}
               for table in ("point_plans", "point_results")}
    assert indexes["point_plans"]["ix_point_plans_point"] == ["point", "recorded_at"]
    assert indexes["point_results"]["ix_point_results_point"] == ["point", "updated_at"]
    if backend.raw.dialect.name == "sqlite":
        from orchestrator.store.store import applied_intended_query

        compiled = applied_intended_query("sw", 3).compile(backend.raw, compile_kwargs={"literal_binds": True})
        with backend.raw.connect() as conn:
            steps = " | ".join(str(row[-1]) for row in conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))
        assert "ix_point_results_point" in steps and "SCAN point_results" not in steps, steps


def test_concurrent_opens_of_an_empty_store_migrate_once(empty_location: Backend) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_it() -> None:
        barrier.wait()
        try:
            empty_location.open().close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert set(inspect(empty_location.raw).get_table_names()) >= TABLES
    with empty_location.raw.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == ["0004"]


# -- runs -----------------------------------------------------------------------------------------


def test_run_lifecycle_round_trip(store: Store) -> None:
    before = datetime.now(UTC)
    run_id = new_run(store, dry_run=False, points=["sw1", "fw1"])
    assert len(run_id) == 23 and run_id[8] == "T" and run_id[15:17] == "Z-"
    store.record_plan(run_id, "sw1", {"add": [{"rule": "permit tcp any any eq 443"}], "fingerprint": "ab12"})
    store.record_checkpoint(run_id, "sw1", {"config": "ip access-list extended MSEG\n permit ip any any"})
    store.record_result(run_id, "sw1", "new", {"lines_sent": 3})
    store.record_result(run_id, "fw1", "unchanged", {})
    store.audit("apply.start", actor="alice", run_id=run_id, detail={"points": 2})
    store.finish_run(run_id, "succeeded", {"changed": 1})

    record = store.run(run_id)
    assert (record.kind, record.status, record.actor, record.ticket, record.origin_host) == (
        "apply", "succeeded", "alice", "CHG-42", "jump1"
    )  # fmt: skip
    assert record.options == {"dry_run": False, "points": ["sw1", "fw1"]}
    assert record.summary == {"changed": 1}
    assert record.started_at.tzinfo is not None and record.started_at.utcoffset().total_seconds() == 0
    assert record.finished_at is not None and before <= record.started_at <= record.finished_at
    assert {p: r.state for p, r in record.results.items()} == {"fw1": "unchanged", "sw1": "new"}
    assert record.results["sw1"].detail == {"lines_sent": 3}
    assert [e.event for e in record.events] == ["apply.start"]
    assert store.plans(run_id) == {"sw1": {"add": [{"rule": "permit tcp any any eq 443"}], "fingerprint": "ab12"}}
    assert store.checkpoints(run_id)["sw1"]["config"].startswith("ip access-list")

    as_json = json.loads(json.dumps(record.to_dict()))
    assert as_json["started_at"].endswith("Z") and as_json["results"]["sw1"]["state"] == "new"
    assert datetime.fromisoformat(as_json["finished_at"]) == record.finished_at
    assert as_json["events"][0]["detail"] == {"points": 2}


def test_a_new_run_is_running_with_an_empty_summary(store: Store) -> None:
    record = store.run(new_run(store, "plan"))
    assert (record.status, record.summary, record.finished_at, record.results, record.events) == (
        "running", {}, None, {}, ()
    )  # fmt: skip


def test_record_result_keeps_only_the_latest_state(store: Store) -> None:
    run_id = new_run(store)
    store.record_result(run_id, "sw1", "planned", {"step": 1})
    first = store.run(run_id).results["sw1"]
    store.record_result(run_id, "sw1", "new", {"step": 2})
    latest = store.run(run_id).results["sw1"]
    assert (latest.state, latest.detail) == ("new", {"step": 2})
    assert latest.updated_at >= first.updated_at
    assert list(store.run(run_id).results) == ["sw1"]
    assert store.runs()[0].result_counts == {"new": 1}


def test_many_plans_are_recorded_in_one_go_all_or_nothing(store: Store) -> None:
    """A run's plans go in together (chunked under the databases' parameter limits); a point that has a plan
    already refuses the whole batch, naming it, and none of the batch is kept."""
    run_id = new_run(store)
    plans = {f"sw{i:04d}": {"n": i, "password": "hunter2"} for i in range(1203)}
    store.record_plans(run_id, plans)
    kept = store.plans(run_id)
    assert len(kept) == 1203 and kept["sw0042"] == {"n": 42, "password": REDACTED}  # redacted like one plan
    other = new_run(store)
    store.record_plan(other, "sw0700", {"n": 0})
    with pytest.raises(StoreError, match=r"already has a plan for sw0700$"):
        store.record_plans(other, {f"sw{i:04d}": {"n": i} for i in range(1000)})
    assert store.plans(other) == {"sw0700": {"n": 0}}  # all or nothing
    store.record_plans(other, {})


def test_records_are_checked(store: Store) -> None:
    run_id = new_run(store)
    with pytest.raises(StoreError, match="unknown point state 'done'"):
        store.record_result(run_id, "sw1", "done", {})
    store.record_plan(run_id, "sw1", {"n": 1})
    with pytest.raises(StoreError, match="already has a plan for sw1"):
        store.record_plan(run_id, "sw1", {"n": 2})
    store.record_checkpoint(run_id, "sw1", {"n": 1})
    with pytest.raises(StoreError, match="already has a checkpoint for sw1"):
        store.record_checkpoint(run_id, "sw1", {"n": 2})
    assert store.plans(run_id) == {"sw1": {"n": 1}} and store.checkpoints(run_id) == {"sw1": {"n": 1}}
    for write in (
        lambda: store.record_plan("19990101T000000Z-000000", "sw1", {}),
        lambda: store.record_plans("19990101T000000Z-000000", {"sw1": {}}),
        lambda: store.record_result("19990101T000000Z-000000", "sw1", "new", {}),
        lambda: store.finish_run("19990101T000000Z-000000", "failed", {}),
        lambda: store.audit("x", actor="a", run_id="19990101T000000Z-000000"),
    ):
        with pytest.raises(StoreError, match="no run '19990101T000000Z-000000'"):
            write()


def test_documents_are_stored_as_json(store: Store) -> None:
    moment = datetime(2026, 11, 21, 15, 30, 12, tzinfo=UTC)
    run_id = new_run(store, window=moment, networks={ipaddress.ip_network("10.0.0.0/24")}, pair=("a", 1))
    assert store.run(run_id).options == {
        "window": "2026-11-21T15:30:12+00:00", "networks": ["10.0.0.0/24"], "pair": ["a", 1]
    }  # fmt: skip
    with pytest.raises(StoreError, match="not JSON serializable"):
        store.finish_run(run_id, "failed", {"error": object()})
    assert store.run(run_id).status == "running"


def test_run_lookup_by_unique_prefix_and_unknown_id(store: Store) -> None:
    first, second = new_run(store), new_run(store)
    assert store.run(first[:-2]).id == first
    assert store.run(second).id == second
    with pytest.raises(StoreError, match="ambiguous") as ambiguous:
        store.run(first[:8])
    assert first in str(ambiguous.value) and second in str(ambiguous.value)
    with pytest.raises(StoreError, match="no run '20991231T000000Z-abcdef'") as unknown:
        store.run("20991231T000000Z-abcdef")
    assert isinstance(unknown.value, MicrosegError) and store.url_display in str(unknown.value)
    with pytest.raises(StoreError, match="no run"):
        store.run(first[:4] + "%")  # LIKE wildcards are literal
    with pytest.raises(StoreError, match="no run"):
        store.checkpoints("nope")


def test_runs_are_listed_newest_first_and_filtered_by_kind(store: Store) -> None:
    ids = [new_run(store, kind) for kind in ("plan", "apply", "reconcile", "apply")]
    store.record_result(ids[1], "sw1", "new", {})
    store.record_result(ids[1], "sw2", "failed", {})
    store.record_result(ids[1], "sw3", "new", {})
    assert [r.id for r in store.runs()] == ids[::-1]
    assert [r.id for r in store.runs(kind="apply")] == [ids[3], ids[1]]
    assert [r.id for r in store.runs(limit=2)] == [ids[3], ids[2]]
    assert store.runs(kind="rollback") == []
    summary = store.runs(kind="apply")[1]
    assert summary.result_counts == {"failed": 1, "new": 2}
    assert json.loads(json.dumps(summary.to_dict()))["kind"] == "apply"


# -- audit ----------------------------------------------------------------------------------------


def test_audit_events(store: Store) -> None:
    run_id = new_run(store)
    store.audit("service.start", actor="scheduler")
    for n in range(3):
        store.audit("point.applied", actor="alice", run_id=run_id, point=f"sw{n}", detail={"n": n})
    every = store.audit_events()
    assert [e.event for e in every] == ["service.start"] + ["point.applied"] * 3
    assert every[0].run_id is None and every[0].detail == {} and every[0].actor == "scheduler"
    assert all(a.at <= b.at and a.id < b.id for a, b in itertools.pairwise(every))
    assert [e.point for e in store.audit_events(limit=2)] == ["sw1", "sw2"]
    assert [e.detail["n"] for e in store.audit_events(run_id=run_id)] == [0, 1, 2]
    assert [e.to_dict() for e in store.run(run_id).events] == [e.to_dict() for e in every[1:]]
    assert json.loads(json.dumps(every[1].to_dict()))["at"].endswith("Z")


# -- redaction ------------------------------------------------------------------------------------


def test_redact_replaces_secret_values_at_any_depth() -> None:
    document = {
        "host": "sw1",
        "Password": "x",
        "connection": {"username": "admin", "passwd": "x", "ssh": {"Passphrase": "x", "private_key": "x"}},
        "headers": [{"Authorization": "Bearer x"}, {"X-Api-Key": "x"}, ("ok", {"apiKey": "x"})],
        "aws": {"aws_secret_access_key": "x", "session_token": "x", "credentials": {"a": 1}, "Credential": "x"},
        "keys": ["password", "token"],
    }
    redacted = redact(document)
    assert redacted == {
        "host": "sw1",
        "Password": REDACTED,
        "connection": {"username": "admin", "passwd": REDACTED,
                       "ssh": {"Passphrase": REDACTED, "private_key": REDACTED}},
        "headers": [{"Authorization": REDACTED}, {"X-Api-Key": REDACTED}, ["ok", {"apiKey": REDACTED}]],
        "aws": {"aws_secret_access_key": REDACTED, "session_token": REDACTED, "credentials": REDACTED,
                "Credential": REDACTED},
        "keys": ["password", "token"],
    }  # fmt: skip
    assert document["Password"] == "x"  # the input is left alone
    assert redact([{"secret": 1}, 2]) == [{"secret": REDACTED}, 2] and redact("token") == "token"


def test_secrets_never_reach_the_database(backend: Backend, store: Store, tmp_path: Path, vault: FakeVault,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = store.create_run(
        "apply", actor="alice", ticket=None, origin_host="h", options={"store": {"password": SECRET}}
    )
    store.record_plan(run_id, "sw1", {"connection": {"host": "10.0.0.1", "password": SECRET}, "add": []})
    store.record_checkpoint(run_id, "sw1", {"auth": [{"private_key": SECRET}], "config": "acl"})
    store.record_result(run_id, "sw1", "new", {"api": {"Authorization": f"Bearer {SECRET}"}})
    store.audit("login", actor="alice", run_id=run_id, detail={"TOKEN": SECRET, "user": "alice"})
    store.finish_run(run_id, "succeeded", {"credentials": [SECRET]})
    assert SECRET not in backend.dump()
    assert "10.0.0.1" in backend.dump()  # the dump does show what was written
    assert store.plans(run_id)["sw1"]["connection"] == {"host": "10.0.0.1", "password": REDACTED}
    assert store.audit_events(run_id)[0].detail == {"TOKEN": REDACTED, "user": "alice"}
    assert store.run(run_id).options == {"store": {"password": REDACTED}}
    # a plan + apply through the engine whose secrets came from ${env:…}, ${file:…} and Vault (a driver echoing
    # its whole context into snapshots, commands and reports; one point whose reference fails) leaves no trace
    used = run_with_secrets(tmp_path, store, vault, monkeypatch)
    with backend.raw.connect() as conn:  # every column in full: a Row's repr (backend.dump) cuts long values short
        dump = "\n".join(str(value) for table in sorted(TABLES) for row in conn.execute(text(f"SELECT * FROM {table}"))
                         for value in row)
    assert [value for value in used if value in dump] == []
    assert "has no key 'x'" in dump and "PointContext(name='fw1'" in dump  # the run, its echo and failure are there


# -- opening --------------------------------------------------------------------------------------


def test_urls_are_normalized() -> None:
    assert normalize_url("postgresql://u:pw@db/x").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@db/x").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql+psycopg://u@db/x").drivername == "postgresql+psycopg"
    assert str(normalize_url("state/db.sqlite")) == "sqlite:///state/db.sqlite"
    for bad, message in (("mysql://u@h/x", "unsupported"), ("sqlite://", "in-memory"), ("", "empty")):
        with pytest.raises(StoreError, match=message):
            normalize_url(bad)


def test_default_and_environment_urls_make_a_sqlite_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MICROSEG_STORE", raising=False)
    with open_store() as store:
        assert store.url_display == DEFAULT_STORE_URL
    assert (tmp_path / ".microseg" / "state.db").is_file()
    monkeypatch.setenv("MICROSEG_STORE", str(tmp_path / "a" / "b" / "env.db"))
    with open_store() as store:
        new_run(store)
    assert (tmp_path / "a" / "b" / "env.db").is_file()
    with open_store(f"sqlite:///{tmp_path / 'a' / 'b' / 'env.db'}") as store:
        assert len(store.runs()) == 1
    with sqlite3.connect(tmp_path / "a" / "b" / "env.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    with pytest.raises(StoreError, match="cannot open the state store") as caught:
        open_store("postgresql://microseg:TopSecret@127.0.0.1:1/state")
    assert "TopSecret" not in str(caught.value) and "microseg:***@127.0.0.1:1" in str(caught.value)
    with pytest.raises(StoreError, match="only be given for a PostgreSQL"):
        open_store("sqlite:///x.db", schema="s")
    with pytest.raises(StoreError, match="invalid schema name"):
        open_store("postgresql://u@127.0.0.1:1/x", schema="Bad; DROP")


def test_observer_samples_read_whole_only_the_plans_of_points_that_listed_a_logging_interface(store: Store) -> None:
    """``observer_samples`` (AWS flow-log evaluation) returns every plan of each point that listed one of the
    interfaces at some time — those listing none too (the group was detached) — with its intended rules and
    whether it changed nothing, oldest first; other points' plans are not read (the query on the interfaces runs
    in the database's JSON, on SQLite and PostgreSQL alike)."""
    import time

    intended = {"point": "sg", "rules": []}
    run = store.create_run("drift", actor="t", ticket=None, origin_host="h", options={})
    store.record_plan(run, "sg-web", {"log_observers": {"eni-1": ["10.0.0.5"]}, "intended": intended, "diff": {}})
    store.record_plan(run, "sg-db", {"log_observers": {"eni-9": ["10.0.0.9"]}, "intended": intended, "diff": {}})
    store.record_plan(run, "switch", {"log_observers": {}, "intended": intended, "diff": {}})
    time.sleep(0.05)
    later = store.create_run("apply", actor="t", ticket=None, origin_host="h", options={})
    store.record_plan(later, "sg-web", {"log_observers": {}, "intended": intended, "diff": {"added": [{}]}})
    store.record_plan(later, "sg-db", {"intended": intended, "diff": {}})  # a release that recorded no ENIs
    samples = store.observer_samples({"eni-1", "eni-5"})
    assert [(point, observers, plan, diff, settled) for _, point, observers, plan, diff, settled in samples] == [
        ("sg-web", {"eni-1": ("10.0.0.5",)}, intended, None, True), ("sg-web", {}, intended, {"added": [{}]}, False)]
    assert samples[0][0] < samples[1][0]
    assert store.observer_samples(set()) == [] and store.observer_samples({"eni-5"}) == []
    assert [(s[1], s[2]) for s in store.observer_samples({"eni-9"})] == [("sg-db", {"eni-9": ("10.0.0.9",)}),
                                                                       ("sg-db", None)]
    time.sleep(0.05)
    since = datetime.now(UTC)
    newest = store.create_run("drift", actor="t", ticket=None, origin_host="h", options={})
    store.record_plan(newest, "sg-db", {"log_observers": {"eni-9": ["10.0.0.9"]}, "intended": intended, "diff": {}})
    # from each point's own last plan before ``since``: sg-db's old-release plan on, not the switch's first run's
    assert [(s[1], s[2]) for s in store.observer_samples({"eni-9"}, since)] == [("sg-db", None),
                                                                              ("sg-db", {"eni-9": ("10.0.0.9",)})]


def test_applied_intended_reads_what_the_points_latest_changes_put_in_place(store: Store) -> None:
    """What the empty-group guard attributes removals by on points that keep no rule names: the intended
    rulesets of the runs where the point ended ``new``, newest first — never a plan or drift run's (they store
    the intent of their day, which no longer has the rule whose group went empty), nor another point's."""
    import time

    for n in range(3):
        run = store.create_run("apply", actor="t", ticket=None, origin_host="h", options={})
        store.record_plans(run, {"sw": {"intended": {"point": "sw", "n": n}}, "other": {"intended": {"n": -n}}})
        store.record_result(run, "sw", "new" if n != 1 else "restored", {})
        store.record_result(run, "other", "new", {})
        time.sleep(0.02)
    for n in range(3, 9):  # plans and drifts after it: none changes the point
        run = store.create_run("plan" if n % 2 else "drift", actor="t", ticket=None, origin_host="h", options={})
        store.record_plan(run, "sw", {"intended": {"point": "sw", "n": n}, "diff": {}})
    assert [i["n"] for i in store.applied_intended("sw")] == [2, 0]
    assert [i["n"] for i in store.applied_intended("sw", limit=1)] == [2]
    assert store.applied_intended("nowhere") == []
