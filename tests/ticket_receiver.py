"""A loopback stand-in for the ticket systems' REST APIs (a test double): records every request it gets.

It answers like the real endpoints microseg posts evidence to: ServiceNow's
Table API (``PATCH /api/now/table/change_request/{sys_id}`` → 200 with the
record under ``result``), Jira's comment API (``POST
/rest/api/2/issue/{key}/comment`` → 201 with the comment) and a plain JSON
webhook (``POST /evidence`` → 204).  ``fail_next`` makes it answer 500 once.

It also holds the tickets a test files (:meth:`TicketReceiver.file_servicenow`, :meth:`TicketReceiver.file_jira`)
and answers reads of them as the real APIs do — ``GET /api/now/table/change_request/{sys_id}`` →
``{"result": record}``, ``GET /rest/api/2/issue/{key}`` → ``{"key", "fields"}``, 404 for others — which is
how microseg verifies that a webhook came from the ticket it names.  Reads are kept in ``reads``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SNOW = re.compile(r"/api/now/table/change_request/(?P<sys_id>[A-Za-z0-9]+)")
JIRA = re.compile(r"/rest/api/2/issue/(?P<key>[A-Z][A-Z0-9_]*-[0-9]+)/comment")
JIRA_ISSUE = re.compile(r"/rest/api/2/issue/(?P<key>[A-Z][A-Z0-9_]*-[0-9]+)")


@dataclass(frozen=True)
class Received:
    """One request the receiver got."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


class TicketReceiver:
    """The recorded requests and how to wait for them."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.reads: list[str] = []
        self.records: dict[str, dict[str, Any]] = {}  # ServiceNow change_request by sys_id
        self.issues: dict[str, dict[str, Any]] = {}   # Jira issue by key
        self.fail_next = False
        self._cond = threading.Condition()
        self.url = ""

    def file_servicenow(self, record: dict[str, Any]) -> dict[str, Any]:
        """Keep ``record`` (a change_request with its sys_id) as ServiceNow would; returns it."""
        self.records[record["sys_id"]] = record
        return record

    def file_jira(self, event: dict[str, Any]) -> dict[str, Any]:
        """Keep the issue of a Jira webhook ``event`` as Jira would; returns the event."""
        self.issues[event["issue"]["key"]] = event["issue"]
        return event

    def record(self, item: Received) -> None:
        with self._cond:
            self.received.append(item)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """At least ``count`` requests, waiting up to ``timeout`` seconds for them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.received) < count and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
            return list(self.received)

    def notes(self, marker: str) -> list[str]:
        """The texts (work notes, comments, evidence text) that contain ``marker``."""
        texts = [r.body.get("work_notes") or r.body.get("body") or r.body.get("text") or "" for r in self.received
                 if isinstance(r.body, dict)]
        return [t for t in texts if marker in t]


def _handler(receiver: TicketReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _answer(self, status: int, body: Any = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            receiver.reads.append(self.path)
            if (m := SNOW.fullmatch(self.path)) and m["sys_id"] in receiver.records:
                self._answer(200, {"result": receiver.records[m["sys_id"]]})
            elif (m := JIRA_ISSUE.fullmatch(self.path)) and m["key"] in receiver.issues:
                self._answer(200, receiver.issues[m["key"]])
            else:
                self._answer(404, {"errorMessages": ["Issue does not exist or you do not have permission to see it."]})

        def _handle(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            receiver.record(Received(self.command, self.path, dict(self.headers.items()), body))
            if receiver.fail_next:
                receiver.fail_next = False
                self._answer(500, {"error": {"message": "simulated outage"}})
                return
            if (m := SNOW.fullmatch(self.path)) and self.command == "PATCH":
                self._answer(200, {"result": {"sys_id": m["sys_id"], "work_notes": ""}})
            elif (m := JIRA.fullmatch(self.path)) and self.command == "POST":
                self._answer(201, {"id": str(len(receiver.received)), "body": body.get("body") if body else ""})
            elif self.path == "/evidence" and self.command == "POST":
                self._answer(204)
            else:
                self._answer(404, {"errorMessages": [f"no route {self.command} {self.path}"]})

        do_POST = do_PATCH = _handle

    return Handler


@contextmanager
def ticket_receiver() -> Iterator[TicketReceiver]:
    """A receiver listening on 127.0.0.1 (a free port) for the duration of the ``with`` block."""
    receiver = TicketReceiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
