"""Ticket-triggered changes end to end over real HTTP, against the nftables lab, proven with real TCP connections.

A Jira issue asks for a flow the worked example blocks (web-dev-01 → app-prod-01 tcp/8443, denied by
``deny-dev-to-prod`` at priority 100: the ticket's allow rule has priority 50).  The requester may not approve
it, another identity does, the change applies in the window, the evidence reaches the (loopback) ticket
system, the flow connects; a day later the scheduler's expiry job takes the rule out and the flow is blocked
again.  Also: approval outside the window (applied by the scheduler when it opens, via a ServiceNow ticket),
a change a safety guard refuses (nothing applied), two schedulers sharing one PostgreSQL store (a scheduled
reconcile runs once), and schemathesis against the API's own OpenAPI document.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from orchestrator.api.app import build_service, create_app
from orchestrator.api.scheduler import Scheduler, scheduler_for
from orchestrator.api.workflow import ChangeService
from orchestrator.cli.main import main
from orchestrator.config import Config
from orchestrator.store import ServiceStore, open_service_store
from tests.conftest import REPO
from tests.labkit import LINUX_POINTS, LabFixture, module_lab
from tests.store_fixtures import POSTGRES_URL, postgres_schema
from tests.test_api import bearer, serving
from tests.ticket_receiver import TicketReceiver, ticket_receiver

NOON = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)  # a Saturday; the prod window below is daily 10:00-14:00 UTC
OPEN_FLOW = ("web-dev-01", "10.20.2.11", 8443)  # denied by deny-dev-to-prod until the ticket's rule
STILL_DENIED = [("web-dev-01", "10.20.2.11", 443), ("web-prod-01", "10.20.2.11", 5432)]  # on the same point
TICKET_RULE = {"name": "net-42-dev-api", "from": "web-dev", "to": "app-prod", "services": ["shop-api"],
               "action": "allow", "priority": 50, "description": "payment gateway migration tests"}


class Clock:
    """The service's injectable clock."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


testlab, lab = module_lab("apilab")  # the lab's inventory copy holds its Linux hosts only


@pytest.fixture
def receiver() -> Iterator[TicketReceiver]:
    with ticket_receiver() as found:
        yield found


def config(receiver: TicketReceiver, **serve: Any) -> Config:
    url = receiver.url
    return Config.model_validate({
        "change_windows": [{"name": "prod-daytime", "groups": ["prod"], "windows": ["daily 10:00-14:00 UTC"]}],
        "serve": {"roles": {"alice@example.net": "operator"}, "rate_limit": {"writes": 1000},
                  "ticket_users": {"jira": {"alice@example.net": "alice@example.net"},
                                   "servicenow": {"62826bf03710200044e0bfc8bcbe5df1": "alice@example.net"}},
                  "notifier": {"url": f"{url}/evidence", "jira_url": f"{url}/rest/api/2/issue/{{key}}/comment",
                               "servicenow_url": f"{url}/api/now/table/change_request/{{sys_id}}"}, **serve}})


@dataclass
class Deployment:
    """One ``microseg serve``: service, scheduler (ticking in the server's lifespan), HTTP client, tokens."""

    svc: ChangeService
    scheduler: Scheduler
    http: httpx.Client
    tokens: dict[str, str]
    clock: Clock
    store_url: str

    def post(self, path: str, who: str, body: Any = None) -> httpx.Response:
        return self.http.post(path, json=body, headers=bearer(self.tokens[who]))

    def get(self, path: str, who: str = "bob@example.net") -> httpx.Response:
        return self.http.get(path, headers=bearer(self.tokens[who]))

    def wait_status(self, link: str, status: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            found: dict[str, Any] = self.get(link).json()
            if found["status"] == status or time.monotonic() > deadline:
                return found
            time.sleep(0.1)


@pytest.fixture
def deploy(lab: LabFixture, receiver: TicketReceiver, tmp_path: Path) -> Iterator[Callable[..., Deployment]]:
    started: list[tuple[Any, httpx.Client, ServiceStore]] = []

    def start(now: datetime = NOON) -> Deployment:
        url = f"sqlite:///{tmp_path}/state.db"
        store = open_service_store(url)
        tokens = {name: store.add_token(name, role)[1] for name, role in (
            ("alice@example.net", "requester"), ("bob@example.net", "approver"), ("jira-bot", "requester"),
            ("snow", "requester"))}
        clock = Clock(now)
        svc = build_service(REPO / "policies", lab.inventory, store, config(receiver), clock=clock)
        scheduler = scheduler_for(svc, interval=0.1)
        server = serving(create_app(svc, scheduler=scheduler))
        http = httpx.Client(base_url=server.__enter__(), timeout=120)
        started.append((server, http, store))
        return Deployment(svc, scheduler, http, tokens, clock, url)

    yield start
    for server, http, store in started:
        http.close()
        server.__exit__(None, None, None)
        store.close()


def cli(lab: LabFixture, store_url: str, today: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--policy", str(REPO / "policies"), "--inventory", str(lab.inventory),
                                       "--today", today, "--store", store_url, "--actor", "tester", *args])
    return result.exit_code, result.stdout if "--json" in args else result.output


def connects(lab: LabFixture, flows: list[tuple[str, str, int]]) -> list[bool]:
    return [r.ok for r in lab.lab.probe_many(flows, timeout=0.5)]


def in_sync(lab: LabFixture, store_url: str, today: str) -> bool:
    code, out = cli(lab, store_url, today, "plan", "--json", "-t", "app-prod-01")
    assert code == 0, out
    return all(p["summary"] == "no changes" for p in json.loads(out)["points"].values())


def test_a_ticket_opens_a_flow_for_real_and_its_expiry_closes_it(lab: LabFixture, receiver: TicketReceiver,
                                                                  deploy: Callable[..., Deployment]) -> None:
    api = deploy()
    assert cli(lab, api.store_url, "2026-11-21", "apply", "--auto-approve", "-t", "app-prod-01")[0] == 0
    assert connects(lab, [OPEN_FLOW, ("web-prod-01", "10.20.2.11", 8443)]) == [False, True]

    rule = {**TICKET_RULE, "expires": "2026-11-21"}
    event = receiver.file_jira({"timestamp": 1763726400000, "webhookEvent": "jira:issue_created",
             "user": {"accountId": "5b10a2844c20165700ede21g", "displayName": "Jira Automation"},
             "issue": {"id": "10042", "key": "NET-42", "fields": {
                 "summary": "dev web needs the prod shop API for a day",
                 "reporter": {"emailAddress": "alice@example.net", "displayName": "Alice"},
                 "customfield_10100": json.dumps({"add": [rule]})}}})
    created = api.post("/v1/webhooks/jira", "jira-bot", event)
    assert created.status_code == 201, created.text
    change = created.json()
    assert change["status"] == "planned" and change["requester"] == "alice@example.net"
    assert created.headers["Location"] == change["links"]["self"]
    plan = change["plan"]["points"]
    assert list(plan) == ["app-prod-01"] and plan["app-prod-01"]["native_change"]["lines"] > 0
    assert any("tcp/8443" in f and "10.30.1.11" in f for f in plan["app-prod-01"]["newly_allowed"])
    assert plan["app-prod-01"]["newly_denied"] == []
    assert api.post("/v1/webhooks/jira", "jira-bot", event).status_code == 200  # redelivered: the same request

    own = api.post(f"/v1/change-requests/{change['id']}/approve", "alice@example.net")
    assert own.status_code == 403 and "another identity must approve" in own.json()["message"]
    assert api.get(change["links"]["self"]).json()["status"] == "planned"
    assert connects(lab, [OPEN_FLOW]) == [False]

    approved = api.post(f"/v1/change-requests/{change['id']}/approve", "bob@example.net", {"comment": "ok, 1 day"})
    assert approved.status_code == 200, approved.text
    done = approved.json()
    assert done["status"] == "applied" and done["approver"] == "bob@example.net"
    assert done["result"]["states"] == {"new": ["app-prod-01"]}
    assert done["verification"]["in_sync"] == ["app-prod-01"]
    assert connects(lab, [OPEN_FLOW, *STILL_DENIED]) == [True, False, False]
    assert in_sync(lab, api.store_url, "2026-11-21")  # the CLI keeps the ticket's rule

    comments = receiver.wait_for(2)
    assert {(r.method, r.path) for r in comments} == {("POST", "/rest/api/2/issue/NET-42/comment")}
    applied_note = receiver.notes("NET-42: applied")[0]
    assert f"Result: run {done['result']['run_id']} ok; new: app-prod-01" in applied_note
    assert "Verification (re-fetched): in sync app-prod-01" in applied_note
    assert "tcp/8443" in receiver.notes("NET-42: planned")[0]
    assert f"Report: {done['links']['report']}" in applied_note  # the ticket links the audit report
    report = api.get(done["links"]["report"])
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    page = report.text
    assert "ticket <b>NET-42</b> · status <b>applied</b> · requested by alice@example.net" in page
    assert "approved by <b>bob@example.net</b>" in page and "Rules added: net-42-dev-api" in page
    assert f"<h2>Run {done['result']['run_id']}</h2>" in page
    assert '<tr><td>app-prod-01</td><td class="state-new">new</td>' in page
    assert "app-prod-01: native change (nftables)" in page

    api.clock.now = NOON + timedelta(days=1, seconds=5)  # the rule expired yesterday: the expiry job's next slot
    expired = api.wait_status(change["links"]["self"], "expired")
    assert expired["status"] == "expired" and expired["expired_rules"] == ["net-42-dev-api"]
    assert connects(lab, [OPEN_FLOW, ("web-prod-01", "10.20.2.11", 8443)]) == [False, True]
    note = receiver.notes("NET-42: expired")
    assert len(note) == 1 and "net-42-dev-api" in note[0] and "in sync app-prod-01" in note[0]
    assert in_sync(lab, api.store_url, "2026-11-22")
    events = [(e.event, e.actor) for e in api.svc.store.audit_events(limit=500) if e.event.startswith("change.")]
    assert [e for e in events if e[0] != "change.comment"] == [
        ("change.created", "jira-bot"), ("change.approval_refused", "alice@example.net"),
        ("change.approved", "bob@example.net"), ("change.applied", "bob@example.net"),
        ("change.expired", "microseg-expiry")]
    slots = {s.job: s for s in api.svc.store.slots()}
    assert slots["expire"].status == "done" and slots["expire"].slot == NOON + timedelta(days=1)
    metrics = api.get("/metrics").text
    assert 'microseg_change_requests{status="expired"} 1.0' in metrics
    assert "microseg_changes_applied_total 3.0" in metrics  # the CLI's apply, the ticket's, the expiry's


def test_approval_outside_the_window_is_applied_when_it_opens(lab: LabFixture, receiver: TicketReceiver,
                                                              deploy: Callable[..., Deployment]) -> None:
    evening = NOON.replace(hour=20)
    api = deploy(evening)
    assert cli(lab, api.store_url, "2026-11-21", "apply", "--auto-approve", "-t", "app-prod-01")[0] == 0
    record = receiver.file_servicenow({"sys_id": "c83c5e5347c12200e0ef563dbb9a7190", "number": "CHG0030001",
              "state": "-2",
              "short_description": "dev web → prod shop API",
              "requested_by": {"value": "62826bf03710200044e0bfc8bcbe5df1", "display_value": "alice@example.net"},
              "u_microseg_change": yaml.safe_dump({"add": [{**TICKET_RULE, "name": "chg0030001-dev-api"}]})})
    created = api.post("/v1/webhooks/servicenow", "snow", record)
    assert created.status_code == 201, created.text
    link = created.json()["links"]["self"]
    approved = api.post(f"{link}/approve", "bob@example.net")
    assert approved.status_code == 202 and approved.json()["status"] == "approved"
    assert approved.json()["scheduled_for"] == "2026-11-22T10:00:00+00:00"
    time.sleep(0.5)  # the scheduler ticks meanwhile: the window is closed, nothing happens
    assert api.get(link).json()["status"] == "approved" and connects(lab, [OPEN_FLOW]) == [False]

    api.clock.now = datetime(2026, 11, 22, 10, 0, 20, tzinfo=UTC)
    assert api.wait_status(link, "applied")["status"] == "applied"
    assert connects(lab, [OPEN_FLOW]) == [True]
    notes = receiver.wait_for(3)
    assert {(r.method, r.path) for r in notes} == {
        ("PATCH", "/api/now/table/change_request/c83c5e5347c12200e0ef563dbb9a7190")}
    assert [n.body["work_notes"].splitlines()[0].rsplit(": ", 1)[1] for n in notes] == [
        "planned", "scheduled", "applied"]
    assert "opens 2026-11-22T10:00+00:00" in notes[1].body["work_notes"]


def test_a_change_a_guard_refuses_is_a_clear_422_and_nothing_is_applied(lab: LabFixture,
                                                                        deploy: Callable[..., Deployment]) -> None:
    api = deploy()
    assert cli(lab, api.store_url, "2026-11-21", "apply", "--auto-approve", "-t", "web-prod-01")[0] == 0
    before = {p: lab.nft(p, "list ruleset") for p in LINUX_POINTS}
    body = {"ticket": "CHG-666", "change": {"remove": ["microseg-management"]}}
    refused = api.post("/v1/change-requests", "alice@example.net", body)
    assert refused.status_code == 422, refused.text
    error = refused.json()
    assert error["error"] == "refused-by-guard" and "management access" in error["message"]
    assert "10.0.0.10" in error["message"] and error["change_request"]
    stored = api.get(f"/v1/change-requests/{error['change_request']}").json()
    assert stored["status"] == "refused"
    assert {g["guard"] for p in stored["plan"]["points"].values() for g in p["guards"]} == {"lockout"}
    assert api.post(f"/v1/change-requests/{stored['id']}/approve", "bob@example.net").status_code == 409
    assert {p: lab.nft(p, "list ruleset") for p in LINUX_POINTS} == before
    assert [r.kind for r in api.svc.store.runs(kind="apply")] == ["apply"]  # only the CLI's


def test_two_schedulers_on_one_postgresql_store_run_a_scheduled_reconcile_once(lab: LabFixture,
                                                                               receiver: TicketReceiver) -> None:
    clock = Clock(NOON - timedelta(minutes=1))
    with postgres_schema() as schema:
        stores = [open_service_store(POSTGRES_URL, schema=schema) for _ in range(2)]
        try:
            cfg = config(receiver, reconcile_cron="*/15 * * * *")
            schedulers = [scheduler_for(build_service(REPO / "policies", lab.inventory, store, cfg, clock=clock,
                                                      instance=f"serve-{i}")) for i, store in enumerate(stores)]
            def tick(i: int, barrier: threading.Barrier, outcomes: list[list[Any]]) -> None:
                barrier.wait()  # both instances reach the slot at the same moment
                outcomes[i] = [o for o in schedulers[i].tick() if o.job == "reconcile"]

            for slot in (NOON, NOON + timedelta(minutes=15)):
                clock.now = slot + timedelta(seconds=1)
                gate, outcomes = threading.Barrier(2), [[], []]
                threads = [threading.Thread(target=tick, args=(i, gate, outcomes)) for i in range(2)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                assert sorted(o.status for found in outcomes for o in found) == ["done", "taken"]
            runs = stores[0].runs(kind="reconcile")
            assert len(runs) == 2 and {len(r.result_counts) > 0 for r in runs} == {True}
            assert [(s.slot, s.status) for s in stores[1].slots("reconcile")] == [
                (NOON, "done"), (NOON + timedelta(minutes=15), "done")]
        finally:
            for store in stores:
                store.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_two_serve_processes_on_postgresql_share_the_schedule(lab: LabFixture, tmp_path: Path) -> None:
    microseg = str(Path(sys.executable).parent / "microseg")
    cfg = tmp_path / "microseg.yaml"
    cfg.write_text(yaml.safe_dump({"serve": {"reconcile_cron": "* * * * * */2"}}))  # every 2 seconds
    with postgres_schema() as schema:
        url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
        common = ["--policy", str(REPO / "policies"), "--inventory", str(lab.inventory), "--store", url,
                  "--config", str(cfg)]
        added = CliRunner().invoke(main, [*common, "serve", "token", "add", "prometheus", "--role", "approver"])
        assert added.exit_code == 0, added.output
        ports = [_free_port(), _free_port()]
        procs = [subprocess.Popen([microseg, *common, "serve", "--port", str(port), "--tick", "0.2"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for port in ports]
        try:
            urls = [f"http://127.0.0.1:{port}" for port in ports]
            assert _wait(lambda: all(_healthy(u) for u in urls), 30), "microseg serve did not come up"
            metrics = httpx.get(f"{urls[1]}/metrics", headers=bearer(added.stdout.strip()))
            assert metrics.status_code == 200 and "microseg_points" in metrics.text
            with open_service_store(url) as store:
                assert _wait(lambda: sum(s.status == "done" for s in store.slots("reconcile")) >= 2, 30)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGINT)  # uvicorn shuts down; the lifespan lets a running job finish
            logs = [proc.communicate(timeout=60)[1] for proc in procs]
        with open_service_store(url) as store:
            slots = store.slots("reconcile")
            runs = store.runs(limit=100, kind="reconcile")
        assert len(runs) == len(slots) >= 2  # one run per slot, not one per instance
        assert {s.status for s in slots} == {"done"}
        assert "taken by another instance" in "".join(logs)  # both contended; the store decided


def test_the_api_conforms_to_its_own_openapi_document(lab: LabFixture, deploy: Callable[..., Deployment]) -> None:
    api = deploy()
    headers = bearer(api.tokens["alice@example.net"])  # an operator: every endpoint is open to it
    schema = schemathesis.openapi.from_url(str(api.http.base_url).rstrip("/") + "/openapi.json", headers=headers)
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=5, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            nonlocal calls
            calls += 1
            # Schema-valid is not always acceptable: a rule naming an unknown group is a 422 from the loader.
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        check()
    assert calls >= 7 * 3
