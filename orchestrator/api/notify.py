"""Posting evidence back to the ticket: a pluggable notifier, and one that speaks ServiceNow, Jira or plain JSON.

* a ServiceNow change request (``origin.system == "servicenow"``): ``PATCH`` of the record through the Table
  API with ``{"work_notes": text}`` (``notifier.servicenow_url``, ``{sys_id}`` / ``{number}`` filled in);
* a Jira issue: ``POST {"body": text}`` to the issue's comments (``notifier.jira_url``, ``{key}``);
* anything else: ``POST`` of the evidence as JSON to ``notifier.url``.
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


class NotifyError(MicrosegError):
    """The ticket system did not take the evidence."""


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
                "evidence": self.detail, "text": self.text}


class Notifier(Protocol):
    """Delivers evidence to the ticket it belongs to; raises NotifyError when it cannot."""

    def send(self, evidence: Evidence) -> None: ...


class NullNotifier:
    """Posts nothing (no notifier configured)."""

    def send(self, evidence: Evidence) -> None:
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
        if origin.get("system") == "servicenow" and cfg.servicenow_url and origin.get("sys_id"):
            url = cfg.servicenow_url.format(sys_id=quote(str(origin["sys_id"]), safe=""),
                                            number=quote(str(origin.get("number", "")), safe=""))
            return Delivery("PATCH", url, {"work_notes": evidence.text})
        if origin.get("system") == "jira" and cfg.jira_url and origin.get("key"):
            return Delivery("POST", cfg.jira_url.format(key=quote(str(origin["key"]), safe="")),
                            {"body": evidence.text})
        if cfg.url:
            return Delivery("POST", cfg.url, evidence.to_dict())
        return None

    def send(self, evidence: Evidence) -> None:
        delivery = self.delivery(evidence)
        if delivery is None:
            return
        if not delivery.url.startswith(("http://", "https://")):
            raise NotifyError(f"notifier URL {delivery.url!r} is not http(s)")
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   **{k: _ENV.sub(lambda m: os.environ.get(m[1], ""), v) for k, v in self.config.headers.items()}}
        request = urllib.request.Request(delivery.url, json.dumps(delivery.body).encode(), headers,
                                         method=delivery.method)
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            raise NotifyError(f"{delivery.method} {delivery.url}: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise NotifyError(f"{delivery.method} {delivery.url}: {exc}") from exc
        log.info("evidence %s of %s posted to %s", evidence.event, evidence.ticket, delivery.url)
