"""Posting evidence back to the ticket: a pluggable notifier, and one that speaks ServiceNow, Jira or plain JSON.

* a ServiceNow change request (``origin.system == "servicenow"``): ``PATCH`` of the record through the Table
  API with ``{"work_notes": text}`` (``notifier.servicenow_url``, ``{sys_id}`` / ``{number}`` filled in);
* a Jira issue: ``POST {"body": text}`` to the issue's comments (``notifier.jira_url``, ``{key}``);
* anything else: ``POST`` of the evidence as JSON to ``notifier.url``.

A ServiceNow record or Jira issue gets evidence only when its origin is ``verified``: when the request came
in, microseg read the ticket back from the ticket system itself (:meth:`WebhookNotifier.ticket_fields`) and
found the same ticket asking for the same change.  A webhook caller who names someone else's record gets
its request refused, and microseg never writes to that record.
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

from orchestrator.api.evidence import note_text
from orchestrator.config import NotifierConfig
from orchestrator.model.errors import MicrosegError

log = logging.getLogger(__name__)
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_ANSWER = 1024 * 1024  # a ticket read back is a few KiB


class NotifyError(MicrosegError):
    """The ticket system did not take the evidence (or answer a read); ``status`` is its HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Evidence:
    """One event of a change request, for its ticket."""

    event: str  # planned | refused | rejected | scheduled | applied | failed | expired
    ticket: str
    change_id: str | None
    origin: dict[str, Any]
    detail: dict[str, Any] = field(default_factory=dict)
    link: str | None = None

    @property
    def text(self) -> str:
        return note_text(self.event, self.ticket, self.change_id, self.detail, self.link)

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.event, "ticket": self.ticket, "change_request": self.change_id, "link": self.link,
                "report": f"{self.link}/report" if self.link else None, "evidence": self.detail, "text": self.text}


class Notifier(Protocol):
    """Delivers evidence to the ticket it belongs to; raises NotifyError when it cannot."""

    def send(self, evidence: Evidence) -> None: ...

    def ticket_fields(self, origin: dict[str, Any]) -> dict[str, Any] | None:
        """The ticket ``origin`` names, as its ticket system has it now (None: no URL for that system)."""
        ...


class NullNotifier:
    """Posts nothing (no notifier configured)."""

    def send(self, evidence: Evidence) -> None:
        return None

    def ticket_fields(self, origin: dict[str, Any]) -> dict[str, Any] | None:
        return None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One HTTP request to a ticket system."""

    method: str
    url: str
    body: dict[str, Any]


class WebhookNotifier:
    """Evidence over HTTP, in the shape of the ticket system the request came from."""

    def __init__(self, config: NotifierConfig) -> None:
        self.config = config

    def delivery(self, evidence: Evidence) -> Delivery | None:
        """The request that carries ``evidence`` (None when no URL is configured for its kind of ticket)."""
        origin, cfg = evidence.origin, self.config
        verified = origin.get("verified") is True
        if verified and origin.get("system") == "servicenow" and (url := self._record_url(origin)):
            return Delivery("PATCH", url, {"work_notes": evidence.text})
        if verified and origin.get("system") == "jira" and cfg.jira_url and origin.get("key"):
            return Delivery("POST", cfg.jira_url.format(key=quote(str(origin["key"]), safe="")),
                            {"body": evidence.text})
        if cfg.url:
            return Delivery("POST", cfg.url, evidence.to_dict())
        return None

    def _record_url(self, origin: dict[str, Any]) -> str | None:
        url, sys_id = self.config.servicenow_url, origin.get("sys_id")
        if not url or not sys_id:
            return None
        return url.format(sys_id=quote(str(sys_id), safe=""), number=quote(str(origin.get("number", "")), safe=""))

    def _issue_url(self, origin: dict[str, Any]) -> str | None:
        url, key = self.config.jira_issue_url or self.config.jira_url, origin.get("key")
        if not url or not key:
            return None
        url = url.format(key=quote(str(key), safe=""))
        return url if self.config.jira_issue_url else url.removesuffix("/comment")

    def ticket_fields(self, origin: dict[str, Any]) -> dict[str, Any] | None:
        """Read the record or issue ``origin`` names back from its ticket system: its fields, flat."""
        system = origin.get("system")
        url = self._record_url(origin) if system == "servicenow" else self._issue_url(origin) if system == "jira" \
            else None
        if url is None:
            return None
        try:
            answer = self._request("GET", url, None)
        except NotifyError as exc:
            if exc.status == 404:
                return {}  # no such ticket (or not visible to microseg's account)
            raise
        if system == "servicenow":
            record = answer.get("result") if isinstance(answer, dict) else None
            return record if isinstance(record, dict) else {}
        fields = answer.get("fields") if isinstance(answer, dict) else None
        return {**(fields if isinstance(fields, dict) else {}), "key": answer.get("key")}

    def _request(self, method: str, url: str, body: dict[str, Any] | None) -> Any:
        if not url.startswith(("http://", "https://")):
            raise NotifyError(f"notifier URL {url!r} is not http(s)")
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   **{k: _ENV.sub(lambda m: os.environ.get(m[1], ""), v) for k, v in self.config.headers.items()}}
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout) as response:
                raw = response.read(MAX_ANSWER + 1)
        except urllib.error.HTTPError as exc:
            raise NotifyError(f"{method} {url}: HTTP {exc.code} {exc.reason}", exc.code) from exc
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise NotifyError(f"{method} {url}: {exc}") from exc
        if len(raw) > MAX_ANSWER:
            raise NotifyError(f"{method} {url}: the answer is larger than {MAX_ANSWER} bytes")
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    def send(self, evidence: Evidence) -> None:
        delivery = self.delivery(evidence)
        if delivery is None:
            return
        self._request(delivery.method, delivery.url, delivery.body)
        log.info("evidence %s of %s posted to %s", evidence.event, evidence.ticket, delivery.url)
