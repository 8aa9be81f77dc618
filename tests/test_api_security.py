"""The API under an adversary: identities that pose as others, alias bombs, ticket spoofing, token guessing.

Every test here failed on the code before the security hardening (the findings of the security review).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from click.testing import CliRunner
from pydantic import ValidationError

from orchestrator.api.app import build_service, create_app
from orchestrator.cli.main import main
from orchestrator.config import Config
from orchestrator.engine.retry import RetryPolicy
from orchestrator.model.identity import UNKNOWN, could_be, identity_problem
from orchestrator.policy.untrusted import UntrustedInputError, load_untrusted_yaml
from orchestrator.store import StoreError, open_service_store, open_store
from tests.conftest import REPO
from tests.test_api import RULE, Api, bearer, notifier_config, serving
from tests.ticket_receiver import ticket_receiver

ALICE_JIRA = "5b10a2844c20165700ede21a"


def jira_event(key: str, reporter: dict[str, str], change: Any) -> dict[str, Any]:
    return {"timestamp": 1763719200000, "webhookEvent": "jira:issue_created",
            "issue": {"id": "10002", "key": key, "fields": {"summary": "dev web → prod API", "reporter": reporter,
                                                             "customfield_10100": change}}}


def submitted(api: Api, path: str, who: str, body: Any) -> dict[str, Any]:
    """The change request a submission recorded: planned (201), or failed (503) as the lab's points are not up
    here — either way recorded, which is all the four-eyes tests need (the check precedes the status check)."""
    answer = api.post(path, who, body)
    assert answer.status_code in (201, 503), answer.text
    change_id = answer.json().get("id") or answer.json()["change_request"]
    found: dict[str, Any] = api.get(f"/v1/change-requests/{change_id}", "bob").json()
    return found


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    """alice and bob approve, carol and the bots request; alice's Jira account is mapped to her."""
    monkeypatch.setenv("TICKET_KEY", "s3cret")
    with ticket_receiver() as receiver, open_service_store(f"sqlite:///{tmp_path}/state.db") as store:
        tokens = {name: store.add_token(name, role)[1] for name, role in
                  (("alice", "approver"), ("bob", "approver"), ("carol", "requester"), ("jira-bot", "requester"),
                   ("snow", "requester"))}
        config = notifier_config(receiver.url, ticket_users={"jira": {ALICE_JIRA: "alice"}},
                                 auth_failures={"attempts": 5, "per_seconds": 60})
        svc = build_service(REPO / "policies", REPO / "inventory", store, config,
                            retry=RetryPolicy(attempts=1, base=0.01))
        with serving(create_app(svc)) as url:
            client = Api(url, store, tokens, receiver)
            yield client
            client.http.close()


# -- identities --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Alice", "alice ", " alice", "al ice", "ali\x00ce", "al\u202eice", "ali\u200bce",
                                  "\u0430lice", "alice\n", "", "-alice", "a" * 65])
def test_a_second_spelling_of_someone_is_refused_at_token_creation(tmp_path: Path, name: str) -> None:
    assert identity_problem(name) is not None
    with open_service_store(f"sqlite:///{tmp_path}/s.db") as store:
        with pytest.raises(StoreError, match="not a valid identity"):
            store.add_token(name, "approver")
        assert store.tokens() == []


def test_the_cli_refuses_a_non_canonical_token_name_without_a_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--store", f"sqlite:///{tmp_path}/s.db", "serve", "token", "add", "Alice",
                                       "--role", "approver"])
    assert result.exit_code == 1
    assert "upper case" in result.output and "'alice'" in result.output and "Traceback" not in result.output


def test_canonical_identities_pass_and_compare_loosely() -> None:
    for name in ("alice", "alice@example.net", "jira-bot", "svc.net_ops-1"):
        assert identity_problem(name) is None
    for text in ("Alice", "ALICE", "alice ", "alice@example.net", "A. Lice", "ａｌｉｃｅ", "ali\u200bce"):
        assert could_be("alice", text), text
    assert not could_be("alice", "bob") and not could_be("alice", "alicia@example.net")


def test_configured_role_holders_and_ticket_users_must_be_identities() -> None:
    with pytest.raises(ValidationError, match="upper case"):
        Config.model_validate({"serve": {"roles": {"Bob": "approver"}}})
    with pytest.raises(ValidationError, match="whitespace"):
        Config.model_validate({"serve": {"ticket_users": {"jira": {"acc-1": "bob smith"}}}})


@pytest.mark.parametrize("reporter", [{"displayName": "Alice"}, {"displayName": "ALICE"},
                                      {"displayName": "alice "}, {"emailAddress": "alice@example.net"},
                                      {"emailAddress": "Alice@Example.NET", "displayName": "Someone"}])
def test_an_approver_cannot_approve_a_ticket_filed_under_another_spelling_of_themselves(
        api: Api, reporter: dict[str, str]) -> None:
    api.receiver.file_jira(event := jira_event("NET-7", reporter, {"add": [RULE]}))
    change = submitted(api, "/v1/webhooks/jira", "jira-bot", event)
    assert change["requester"] == UNKNOWN  # free text is never taken as an identity
    refused = api.post(f"/v1/change-requests/{change['id']}/approve", "alice")
    assert refused.status_code == 403 and "could be the ticket's requester" in refused.json()["message"]
    other = api.post(f"/v1/change-requests/{change['id']}/approve", "bob")  # someone who could not be them
    assert other.status_code == 409, other.text  # past four eyes: only the status (failed here) stops bob


def test_a_mapped_ticket_user_is_the_requester_and_cannot_approve(api: Api) -> None:
    event = api.receiver.file_jira(jira_event("NET-8", {"accountId": ALICE_JIRA, "displayName": "Al"},
                                              {"add": [RULE]}))
    change = submitted(api, "/v1/webhooks/jira", "jira-bot", event)
    assert change["requester"] == "alice" and change["submitted_by"] == "jira-bot"
    refused = api.post(f"/v1/change-requests/{change['id']}/approve", "alice")
    assert refused.status_code == 403 and "could be alice, who requested it" in refused.json()["message"]
    refusals = [e for e in api.store.audit_events() if e.event == "change.approval_refused"]
    assert refusals and refusals[0].actor == "alice"


def test_the_requester_of_an_api_request_is_the_caller(api: Api) -> None:
    framed = api.post("/v1/change-requests", "carol", {"ticket": "CHG-9", "requester": "bob",
                                                       "change": {"add": [RULE]}})
    assert framed.status_code == 403 and "the requester of a change request is the caller" in framed.json()["message"]
    assert api.store.changes() == []
    own = submitted(api, "/v1/change-requests", "carol", {"ticket": "CHG-9", "requester": "Carol",
                                                          "change": {"add": [RULE]}})
    assert own["requester"] == "carol"


# -- untrusted input ---------------------------------------------------------------------------------------

LAUGHS = "a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n" + "".join(
    f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]\n" for prev, name in zip("abcdefgh", "bcdefghi", strict=True))


def test_yaml_aliases_depth_and_size_are_bounded_before_anything_is_built() -> None:
    assert len(LAUGHS) < 1000  # expands to 9^9 = 387 million strings
    for text in (LAUGHS, "&x [*x]", "[" * 50 + "]" * 50, "x: " + "y" * 70_000):
        started = time.monotonic()
        with pytest.raises(UntrustedInputError):
            load_untrusted_yaml(text)
        assert time.monotonic() - started < 1
    assert load_untrusted_yaml('{"add": [{"name": "x"}]}') == {"add": [{"name": "x"}]}


def test_hostile_payloads_get_a_clear_4xx_while_healthz_keeps_answering(api: Api) -> None:
    latencies: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=str(api.http.base_url), timeout=5) as client:
            while not stop.is_set():
                started = time.monotonic()
                assert client.get("/healthz").status_code == 200
                latencies.append(time.monotonic() - started)
                time.sleep(0.02)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        attacks = [("NET-1", LAUGHS), ("NET-2", "&x [*x]"), ("NET-3", "[" * 5000 + "]" * 5000)]
        for key, text in attacks:
            event = api.receiver.file_jira(jira_event(key, {"accountId": ALICE_JIRA}, text))
            answer = api.http.post("/v1/webhooks/jira", json=event, headers=bearer(api.tokens["jira-bot"]),
                                   timeout=10)
            assert answer.status_code == 422, answer.text
            assert "customfield_10100" in answer.json()["message"]
        deep = '{"ticket": "CHG-1", "change": ' + "[" * 3000 + "]" * 3000 + "}"
        answer = api.http.post("/v1/change-requests", content=deep, timeout=10,
                               headers={**bearer(api.tokens["carol"]), "Content-Type": "application/json"})
        assert answer.status_code == 422 and answer.json()["error"] == "too-complex"
    finally:
        stop.set()
        prober.join(timeout=10)
    assert latencies and max(latencies) < 1.0
    assert api.store.changes() == []


# -- evidence goes only to a verified ticket ----------------------------------------------------------------


def test_a_webhook_naming_someone_elses_ticket_is_refused_and_nothing_is_written_to_it(api: Api) -> None:
    unfiled = jira_event("OPS-1", {"accountId": ALICE_JIRA}, {"add": [RULE]})
    refused = api.post("/v1/webhooks/jira", "jira-bot", unfiled)
    assert refused.status_code == 403 and "read back by microseg" in refused.json()["message"]
    api.receiver.file_jira(jira_event("OPS-2", {"accountId": ALICE_JIRA}, {"add": []}))
    other_change = api.post("/v1/webhooks/jira", "jira-bot", jira_event("OPS-2", {"accountId": ALICE_JIRA},
                                                                        {"add": [RULE]}))
    assert other_change.status_code == 403
    snow = {"sys_id": "0123456789abcdef", "number": "CHG0099999", "requested_by": {"value": "x"},
            "u_microseg_change": json.dumps({"add": [RULE]})}
    assert api.post("/v1/webhooks/servicenow", "snow", snow).status_code == 403
    time.sleep(0.2)
    assert api.receiver.received == [] and api.store.changes() == []
    assert {r.split("?")[0] for r in api.receiver.reads} == {
        "/rest/api/2/issue/OPS-1", "/rest/api/2/issue/OPS-2", "/api/now/table/change_request/0123456789abcdef"}
    assert len([e for e in api.store.audit_events() if e.event == "change.unverified"]) == 3


def test_an_unreachable_ticket_system_is_a_503_not_a_guess(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with open_service_store(f"sqlite:///{tmp_path}/s.db") as store:
        token = store.add_token("jira-bot", "requester")[1]
        svc = build_service(REPO / "policies", REPO / "inventory", store, notifier_config(dead))
        with serving(create_app(svc)) as url:
            event = jira_event("NET-5", {"accountId": "x"}, {"add": [RULE]})
            answer = httpx.post(f"{url}/v1/webhooks/jira", json=event, headers=bearer(token), timeout=30)
        assert answer.status_code == 503 and answer.json()["error"] == "ticket-system-unavailable"
        assert store.changes() == []


# -- the API's own surface ---------------------------------------------------------------------------------


def test_the_api_documents_need_a_token_unless_made_public(api: Api, tmp_path: Path) -> None:
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert api.http.get(path).status_code == 401, path
        assert api.get(path, "carol").status_code == 200, path
    with open_service_store(f"sqlite:///{tmp_path}/p.db") as store:
        config = Config.model_validate({"serve": {"public_docs": True}})
        with serving(create_app(build_service(REPO / "policies", REPO / "inventory", store, config))) as url:
            assert httpx.get(f"{url}/openapi.json").json()["info"]["title"] == "microseg"
            assert httpx.get(f"{url}/docs").status_code == 200


def test_failed_authentication_is_throttled_per_client_address(api: Api) -> None:
    for _ in range(5):
        assert api.http.get("/metrics", headers=bearer("mseg_guess_guess")).status_code == 401
    blocked = api.http.get("/metrics", headers=bearer("mseg_guess_again"))
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) >= 1
    assert api.get("/metrics", "carol").status_code == 429  # the address is blocked, whatever it sends now
    assert api.http.get("/healthz").status_code == 200


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_serve_speaks_tls_with_the_given_certificate(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(key := tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(chain := tmp_path / "cert.pem"))
    ca.cert_pem.write_to_path(str(ca_file := tmp_path / "ca.pem"))
    port = _free_port()
    env = {**os.environ, "MICROSEG_STORE": f"sqlite:///{tmp_path}/s.db"}
    server = subprocess.Popen([sys.executable, "-m", "orchestrator.cli.main", "-p", str(REPO / "policies"),
                               "-i", str(REPO / "inventory"), "serve", "--no-scheduler", "--port", str(port),
                               "--tls-cert", str(chain), "--tls-key", str(key)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                trust = ssl.create_default_context(cafile=str(ca_file))
                answer = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=trust, timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.2)
        assert answer.status_code == 200 and answer.json()["status"] == "ok"
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)  # no plain HTTP on a TLS port
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    half = CliRunner().invoke(main, ["serve", "--tls-cert", str(chain)])
    assert half.exit_code == 64 and "--tls-cert and --tls-key go together" in half.output  # a usage error


# -- secrets at rest ---------------------------------------------------------------------------------------


def test_the_state_store_and_its_directory_are_private(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/project/.microseg/state.db")
    store.close()
    assert stat.S_IMODE((tmp_path / "project" / ".microseg").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "project" / ".microseg" / "state.db").stat().st_mode) == 0o600
