"""The API over real HTTP (uvicorn on a free loopback port), for what needs no enforcement point to answer.

Authentication (401 / 403, hashed tokens, revocation), hostile and malformed
input (bad JSON, oversize bodies, unknown groups and rules: clear 4xx, nothing
recorded), rate limiting, the ticket webhooks' payload shapes and the
evidence they post back (to a loopback ticket receiver), metrics.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from click.testing import CliRunner
from fastapi import FastAPI
from sqlalchemy import create_engine, text

from orchestrator.api.app import build_service, create_app
from orchestrator.cli.main import main
from orchestrator.config import Config
from orchestrator.engine.retry import RetryPolicy
from orchestrator.store import ServiceStore, open_service_store
from tests.conftest import REPO
from tests.ticket_receiver import TicketReceiver, ticket_receiver

RULE = {"name": "chg-1-dev-api", "from": "web-dev", "to": "app-prod", "services": ["shop-api"],
        "action": "allow", "priority": 50}


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """``app`` served by uvicorn on a free 127.0.0.1 port (its lifespan runs: the scheduler, if any)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Api:
    """A running API with a store, tokens by identity and the ticket receiver its notifier posts to."""

    def __init__(self, url: str, store: ServiceStore, tokens: dict[str, str], receiver: TicketReceiver) -> None:
        self.http = httpx.Client(base_url=url, timeout=60)
        self.store, self.tokens, self.receiver = store, tokens, receiver

    def post(self, path: str, who: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return self.http.post(path, json=body, headers=bearer(self.tokens[who]), **kwargs)

    def get(self, path: str, who: str) -> httpx.Response:
        return self.http.get(path, headers=bearer(self.tokens[who]))


def notifier_config(url: str, **serve: Any) -> Config:
    return Config.model_validate({"serve": {
        "notifier": {"url": f"{url}/evidence", "servicenow_url": f"{url}/api/now/table/change_request/{{sys_id}}",
                     "jira_url": f"{url}/rest/api/2/issue/{{key}}/comment", "headers": {"X-Token": "${TICKET_KEY}"}},
        **serve}})


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    monkeypatch.setenv("TICKET_KEY", "s3cret")
    with ticket_receiver() as receiver, open_service_store(f"sqlite:///{tmp_path}/state.db") as store:
        tokens = {name: store.add_token(name, role)[1] for name, role in
                  (("alice", "requester"), ("bob", "approver"), ("jira-bot", "requester"), ("snow", "requester"))}
        config = notifier_config(receiver.url, rate_limit={"writes": 4, "per_seconds": 60}, max_body_bytes=4096)
        svc = build_service(REPO / "policies", REPO / "inventory", store, config,
                            retry=RetryPolicy(attempts=1, base=0.01))
        with serving(create_app(svc)) as url:
            client = Api(url, store, tokens, receiver)
            yield client
            client.http.close()


def test_healthz_is_open_and_everything_else_needs_a_valid_token(api: Api) -> None:
    assert api.http.get("/healthz").json()["status"] == "ok"
    for path in ("/metrics", "/v1/change-requests", "/v1/change-requests/cr-1"):
        missing = api.http.get(path)
        assert missing.status_code == 401 and missing.json()["error"] == "unauthenticated"
        assert missing.headers["WWW-Authenticate"].startswith("Bearer")
        forged = api.http.get(path, headers=bearer("mst_000000000000_not-the-secret"))
        assert forged.status_code == 401 and "invalid_token" in forged.headers["WWW-Authenticate"]
    real = api.tokens["alice"]
    assert api.http.get("/metrics", headers=bearer(real[:-2] + "xx")).status_code == 401  # a wrong secret
    assert api.http.get("/metrics", headers={"Authorization": f"Basic {real}"}).status_code == 401
    assert api.http.post("/v1/change-requests", json={}).status_code == 401
    assert api.get("/metrics", "alice").status_code == 200


def test_wrong_role_is_403_and_audited(api: Api) -> None:
    refused = api.post("/v1/change-requests", "bob", {"ticket": "CHG-1", "change": {"add": [RULE]}})
    assert refused.status_code == 403 and "requester" in refused.json()["message"]
    assert api.post("/v1/change-requests/cr-1/approve", "alice").status_code == 403
    assert [e.actor for e in api.store.audit_events() if e.event == "api.forbidden"] == ["bob", "alice"]
    assert api.store.changes() == []


def test_malformed_and_oversize_bodies(api: Api) -> None:
    headers = {**bearer(api.tokens["alice"]), "Content-Type": "application/json"}
    bad = api.http.post("/v1/change-requests", content=b'{"ticket": "CHG-1", "change": ', headers=headers)
    assert bad.status_code == 400 and bad.json()["error"] == "malformed-json"
    wrong = api.post("/v1/change-requests", "alice", {"ticket": "CHG 1 !", "change": {"add": "everything"}})
    assert wrong.status_code == 422 and wrong.json()["error"] == "invalid-request"
    assert {d["file"] for d in wrong.json()["diagnostics"]} == {"body.ticket", "body.change.add"}
    empty = api.post("/v1/change-requests", "alice", {"ticket": "CHG-1", "change": {}})
    assert empty.status_code == 422 and "rules to add or rules to remove" in empty.text
    big = {"ticket": "CHG-1", "change": {"add": [{**RULE, "description": "x" * 5000}]}}
    assert api.post("/v1/change-requests", "alice", big).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds for a streamed body too
        yield b'{"ticket": "CHG-1", "change": {"add": [{"description": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}]}}'

    streamed = api.http.post("/v1/change-requests", content=chunks(), headers=headers)
    assert streamed.status_code == 413 and streamed.json()["error"] == "too-large"
    assert api.store.changes() == []


def test_unknown_group_is_422_with_the_loaders_diagnostic_and_nothing_is_recorded(api: Api) -> None:
    body = {"ticket": "CHG-7", "change": {"add": [RULE, {**RULE, "name": "chg-7-b", "to": "app-prd"}]}}
    response = api.post("/v1/change-requests", "alice", body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"] == "invalid-policy"
    assert error["message"] == ("the change is not valid: add[1]: error: unknown group 'app-prd' "
                                "(did you mean 'app-prod'?)")
    assert error["diagnostics"] == [{"message": "unknown group 'app-prd'", "severity": "error",
                                     "code": "unknown-reference", "hint": "did you mean 'app-prod'?",
                                     "file": "add[1]", "line": None, "column": None}]
    removal = api.post("/v1/change-requests", "alice", {"ticket": "CHG-7", "change": {"remove": ["admin-shh"]}})
    assert removal.status_code == 422 and removal.json()["diagnostics"][0]["hint"] == "did you mean 'admin-ssh'?"
    other = api.post("/v1/change-requests", "alice", {"ticket": "CHG-7", "change": {"add": [{**RULE,
                                                                                            "ticket": "CHG-8"}]}})
    assert other.status_code == 422 and "carries ticket 'CHG-8', not the request's 'CHG-7'" in other.text
    assert api.store.changes() == []
    rejected = [e for e in api.store.audit_events() if e.event == "change.rejected"]
    assert len(rejected) == 3 and rejected[0].actor == "alice" and rejected[0].detail["ticket"] == "CHG-7"
    evidence = api.receiver.wait_for(3)  # plain JSON webhook: the request came through the API
    assert [(r.method, r.path) for r in evidence] == [("POST", "/evidence")] * 3
    assert evidence[0].body["event"] == "rejected" and "unknown group 'app-prd'" in evidence[0].body["text"]
    assert evidence[0].headers["X-Token"] == "s3cret"


def test_writes_are_rate_limited_per_identity(api: Api) -> None:
    body = {"ticket": "CHG-9", "change": {"remove": ["no-such-rule"]}}
    assert [api.post("/v1/change-requests", "alice", body).status_code for _ in range(4)] == [422] * 4
    limited = api.post("/v1/change-requests", "alice", body)
    assert limited.status_code == 429 and 1 <= int(limited.headers["Retry-After"]) <= 60
    assert api.get("/v1/change-requests", "alice").status_code == 200  # reads are not limited
    assert api.post("/v1/change-requests", "jira-bot", body).status_code == 422  # nor other identities


def test_unknown_ids_and_routes_are_json_errors(api: Api) -> None:
    missing = api.get("/v1/change-requests/cr-20261121000000-deadbeef", "alice")
    assert missing.status_code == 404 and missing.json()["error"] == "not-found"
    assert api.get("/v1/change-requests/..%2F..%2Fetc", "alice").status_code in (404, 422)
    assert api.get("/v1/nothing-here", "alice").json()["error"] == "not-found"
    assert api.post("/v1/change-requests/cr-x/approve", "bob").status_code == 404


def test_jira_webhook_shapes(api: Api) -> None:
    event = api.receiver.file_jira({"timestamp": 1763719200000, "webhookEvent": "jira:issue_created",
             "user": {"accountId": "5b10a2844c20165700ede21g", "displayName": "Alice"},
             "issue": {"id": "10002", "key": "NET-42", "self": "https://jira.example.net/rest/api/2/issue/10002",
                       "fields": {"summary": "dev web → prod API", "reporter": {"emailAddress": "alice@example.net"},
                                  "customfield_10100": {"add": [{**RULE, "from": "web-dve"}]}}}})
    response = api.post("/v1/webhooks/jira", "jira-bot", event)
    assert response.status_code == 422 and response.json()["diagnostics"][0]["hint"] == "did you mean 'web-dev'?"
    (comment,) = api.receiver.wait_for(1)
    assert (comment.method, comment.path) == ("POST", "/rest/api/2/issue/NET-42/comment")
    assert set(comment.body) == {"body"} and "NET-42: rejected" in comment.body["body"]
    other = api.post("/v1/webhooks/jira", "jira-bot", {**event, "webhookEvent": "jira:issue_deleted"})
    assert other.status_code == 202 and "not one of" in other.json()["ignored"]
    plain = {**event, "issue": {**event["issue"], "fields": {"summary": "printer on fire"}}}
    assert api.post("/v1/webhooks/jira", "jira-bot", plain).json() == {
        "ignored": "no policy change in issue.fields.customfield_10100"}
    bad_key = {**event, "issue": {**event["issue"], "key": "../../x"}}
    assert api.post("/v1/webhooks/jira", "jira-bot", bad_key).status_code == 422
    assert len(api.receiver.received) == 1 and api.store.changes() == []


def test_servicenow_webhook_shapes(api: Api) -> None:
    change = {"add": [{**RULE, "services": ["shop-apii"]}]}
    record = {"result": {"sys_id": "c83c5e5347c12200e0ef563dbb9a7190", "number": "CHG0030001",
                         "short_description": "dev web → prod API", "state": "-4",
                         "requested_by": {"value": "62826bf03710200044e0bfc8bcbe5df1", "display_value": "alice",
                                          "link": "https://acme.service-now.com/api/now/table/sys_user/62826bf"},
                         "u_microseg_change": json.dumps(change)}}
    api.receiver.file_servicenow(record["result"])
    response = api.post("/v1/webhooks/servicenow", "snow", record)
    assert response.status_code == 422 and "shop-apii" in response.json()["diagnostics"][0]["message"]
    (note,) = api.receiver.wait_for(1)
    assert (note.method, note.path) == ("PATCH", "/api/now/table/change_request/c83c5e5347c12200e0ef563dbb9a7190")
    assert set(note.body) == {"work_notes"} and "CHG0030001: rejected" in note.body["work_notes"]
    not_yaml = {**record["result"], "u_microseg_change": "add: [unclosed"}
    garbled = api.post("/v1/webhooks/servicenow", "snow", not_yaml)
    assert garbled.status_code == 422 and garbled.json()["message"] == "u_microseg_change: not JSON or YAML"
    unrelated = {**record["result"], "u_microseg_change": ""}
    assert api.post("/v1/webhooks/servicenow", "snow", unrelated).status_code == 202
    assert api.post("/v1/webhooks/servicenow", "snow", {"number": "CHG1"}).status_code == 422


def test_a_failing_ticket_system_is_audited_not_fatal(api: Api) -> None:
    api.receiver.fail_next = True
    body = {"ticket": "CHG-5", "change": {"add": [{**RULE, "to": "nowhere"}]}}
    assert api.post("/v1/change-requests", "alice", body).status_code == 422
    failed = [e for e in api.store.audit_events() if e.event == "notify.failed"]
    assert len(failed) == 1 and "HTTP 500" in failed[0].detail["error"]


def _matrix_cell(page: str, src: str, dst: str) -> str:
    """The text of one segmentation-matrix cell of a report page."""
    found = re.search(rf'<td class="[a-z]+" data-verdict="[a-z]+" data-observed="\d+" title="{src} → {dst}: '
                      r'[a-z]+">(.*?)</td>', page)
    assert found, f"no matrix cell {src} → {dst}"
    return found[1]


def test_a_change_requests_report_is_one_inert_html_page(api: Api) -> None:
    record = api.store.create_change(ticket="CHG-7", requester="alice", submitted_by="alice", source="api",
                                     status="planned", change={"add": [RULE], "remove": ["deny-dev-to-prod"]},
                                     plan={}, origin={"system": "api"}, detail={})
    path = f"/v1/change-requests/{record.id}/report"
    assert api.get(f"/v1/change-requests/{record.id}", "bob").json()["links"]["report"].endswith(path)
    assert api.http.get(path).status_code == 401
    page = api.get(path, "bob")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert policy.startswith("default-src 'none'") and "unsafe-inline'; base-uri" not in policy
    (script,) = re.findall(r"<script>(.*?)</script>", page.text, re.S)  # the one script CSP lets run, by hash
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in policy
    assert f'filename="change-{record.id}-report.html"' in page.headers["content-disposition"]
    assert re.search(r"<(link|img|iframe)\b|\bsrc=|https?://", page.text) is None  # nothing to fetch
    assert "ticket <b>CHG-7</b> · status <b>planned</b> · requested by alice" in page.text
    assert "not approved" in page.text and "Rules added: chg-1-dev-api · removed: deny-dev-to-prod" in page.text
    assert "with this request&#x27;s changes made, as planned." in page.text
    assert "allow shop-api (chg-1-dev-api)" in _matrix_cell(page.text, "web-dev", "app-prod")
    assert "No run recorded" in page.text  # its own run only: none yet, not the store's latest

    api.store.update_change(record.id, status="expired")  # its rules are no longer in the policy
    page = api.get(path, "bob").text
    assert "status <b>expired</b>" in page and "this request&#x27;s changes are not in it" in page
    cell = _matrix_cell(page, "web-dev", "app-prod")
    assert "chg-1-dev-api" not in cell and "deny-dev-to-prod" in cell
    stale = api.store.create_change(ticket="CHG-8", requester="alice", submitted_by="alice", source="api",
                                    status="approved", change={"add": [{**RULE, "to": "app-gone"}]}, plan={},
                                    origin={"system": "api"}, detail={})  # the policy moved on since its plan
    page = api.get(f"/v1/change-requests/{stale.id}/report", "bob")
    assert page.status_code == 200 and "no longer fit the policy in force" in page.text and "app-gone" in page.text
    unknown = api.get("/v1/change-requests/cr-0-none/report", "bob")
    assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/json"


def test_metrics_are_prometheus_text(api: Api) -> None:
    run = api.store.create_run("reconcile", actor="x", ticket=None, origin_host="h", options={})
    api.store.record_result(run, "web-prod-01", "in_sync", {})
    api.store.record_result(run, "db-prod-01", "drift", {})
    api.store.finish_run(run, "drift", {})
    failed_apply = api.store.create_run("apply", actor="x", ticket=None, origin_host="h", options={})
    api.store.record_result(failed_apply, "web-prod-01", "restored", {})
    api.store.record_result(failed_apply, "db-prod-01", "new", {})
    api.store.finish_run(failed_apply, "partial", {})
    text_ = api.get("/metrics", "alice").text
    assert 'microseg_points{state="in_sync"} 1.0' in text_ and 'microseg_points{state="drifted"} 1.0' in text_
    assert 'microseg_last_run_timestamp_seconds{kind="reconcile"}' in text_
    assert 'microseg_last_run_duration_seconds{kind="apply"}' in text_
    assert "microseg_rollbacks_total 1.0" in text_ and "microseg_changes_applied_total 1.0" in text_


def test_tokens_from_the_cli_are_printed_once_and_stored_hashed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    result = CliRunner().invoke(main, ["--store", url, "--actor", "root", "serve", "token", "add", "carol",
                                       "--role", "approver"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith("mst_") and len(token) > 40
    raw = create_engine(url)
    with raw.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(text("SELECT * FROM api_tokens"))]
    raw.dispose()
    secret = token.split("_", 2)[2]
    assert len(rows) == 1 and rows[0]["name"] == "carol" and secret not in json.dumps(rows, default=str)
    listed = CliRunner().invoke(main, ["--store", url, "serve", "token", "list"])
    assert "carol" in listed.output and secret not in listed.output
    with open_service_store(url) as store:
        found = store.verify_token(token)
        assert found is not None and (found.name, found.role) == ("carol", "approver")
        assert [e.event for e in store.audit_events()] == ["token.created"]
    assert CliRunner().invoke(main, ["--store", url, "serve", "token", "revoke", "carol"]).exit_code == 0
    with open_service_store(url) as store:
        assert store.verify_token(token) is None


def test_config_roles_override_the_tokens_role(tmp_path: Path) -> None:
    with open_service_store(f"sqlite:///{tmp_path}/state.db") as store:
        token = store.add_token("dave", "approver")[1]
        config = Config.model_validate({"serve": {"roles": {"dave": "requester"}}})
        svc = build_service(REPO / "policies", REPO / "inventory", store, config)
        with serving(create_app(svc)) as url:
            response = httpx.post(f"{url}/v1/change-requests/cr-1/approve", headers=bearer(token))
    assert response.status_code == 403 and "dave (requester)" in response.json()["message"]


def test_the_openapi_document_declares_bearer_auth_and_every_endpoint(api: Api) -> None:
    assert api.http.get("/openapi.json").status_code == 401  # default: the document needs a token too
    spec = api.get("/openapi.json", "alice").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert set(spec["paths"]) == {"/healthz", "/metrics", "/v1/change-requests", "/v1/change-requests/{change_id}",
                                  "/v1/change-requests/{change_id}/approve", "/v1/change-requests/{change_id}/report",
                                  "/v1/webhooks/servicenow", "/v1/webhooks/jira"}
    assert "security" not in spec["paths"]["/healthz"]["get"]
    assert spec["paths"]["/v1/change-requests"]["post"]["security"] == [{"HTTPBearer": []}]
