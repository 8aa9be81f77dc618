"""Ticket-system webhooks: a ServiceNow change_request record or a Jira issue event → a change request.

The policy change travels in one documented field, as a JSON object or as
JSON/YAML text (``{"add": [rules…], "remove": [names…]}``):

* ServiceNow: the record's ``u_microseg_change`` (``serve.servicenow_change_field``); the ticket is its
  ``number``, the requester ``requested_by`` (display value, else sys_id); the record may come bare (a
  business rule's outbound REST message) or wrapped in the Table API's ``{"result": …}``.
* Jira: ``issue.fields.customfield_10100`` (``serve.jira_change_field``) of a ``jira:issue_created`` or
  ``jira:issue_updated`` event; the ticket is ``issue.key``, the requester the reporter (email, name,
  account id or display name, the first one present).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from orchestrator.engine.changes import ChangeSpec
from orchestrator.model.errors import Diagnostic, Location, PolicyError

JIRA_EVENTS = ("jira:issue_created", "jira:issue_updated")
Text = Annotated[str, StringConstraints(max_length=4000)]


class SnowReference(BaseModel):
    """A ServiceNow reference field as the Table API renders it with ``sysparm_display_value=all``."""

    model_config = ConfigDict(extra="allow")

    value: str | None = None
    display_value: str | None = None
    link: str | None = None


class ServiceNowChange(BaseModel):
    """A ServiceNow ``change_request`` record (only the fields microseg reads are described)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "sys_id": "c83c5e5347c12200e0ef563dbb9a7190", "number": "CHG0030001",
        "short_description": "Open dev web → prod shop API for the payment migration tests",
        "requested_by": {"value": "62826bf03710200044e0bfc8bcbe5df1", "display_value": "alice"},
        "u_microseg_change": '{"add": [{"name": "chg0030001-dev-api", "from": "web-dev", "to": "app-prod", '
                             '"services": ["shop-api"], "action": "allow", "priority": 50}]}'}]})

    sys_id: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9]+$")]
    number: Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")]
    short_description: Text | None = None
    requested_by: SnowReference | Text | None = None
    u_microseg_change: dict[str, Any] | Text | None = None

    @model_validator(mode="before")
    @classmethod
    def _unwrap(cls, data: Any) -> Any:
        if isinstance(data, dict) and set(data) == {"result"} and isinstance(data["result"], dict):
            return data["result"]  # the Table API's envelope
        return data

    def requester(self) -> str | None:
        """Who asked: the display value of requested_by, else its sys_id."""
        who = self.requested_by
        if isinstance(who, SnowReference):
            return who.display_value or who.value
        return who or None


class JiraUser(BaseModel):
    """A Jira user as webhooks carry it (Cloud: accountId; Data Center: name)."""

    model_config = ConfigDict(extra="allow")

    accountId: str | None = None
    name: str | None = None
    emailAddress: str | None = None
    displayName: str | None = None

    def identity(self) -> str | None:
        """Email, name, account id or display name: the first one present."""
        return self.emailAddress or self.name or self.accountId or self.displayName


class JiraFields(BaseModel):
    """The issue fields microseg reads (custom fields come as extra keys)."""

    model_config = ConfigDict(extra="allow")

    summary: Text | None = None
    reporter: JiraUser | None = None
    creator: JiraUser | None = None


class JiraIssue(BaseModel):
    """The issue a Jira event is about."""

    model_config = ConfigDict(extra="allow")

    id: str | None = None
    key: Annotated[str, StringConstraints(min_length=3, max_length=64, pattern=r"^[A-Z][A-Z0-9_]*-[0-9]+$")]
    self_: str | None = Field(default=None, alias="self")
    fields: JiraFields


class JiraEvent(BaseModel):
    """A Jira webhook event about an issue."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "timestamp": 1763719200000, "webhookEvent": "jira:issue_created", "issue_event_type_name": "issue_created",
        "user": {"accountId": "5b10a2844c20165700ede21g", "displayName": "Alice"},
        "issue": {"id": "10002", "key": "NET-42", "fields": {
            "summary": "Dev web → prod shop API", "reporter": {"emailAddress": "alice@example.net"},
            "customfield_10100": {"add": [{"name": "net-42-dev-api", "from": "web-dev", "to": "app-prod",
                                           "services": ["shop-api"], "action": "allow", "priority": 50}]}}}}]})

    webhookEvent: Annotated[str, StringConstraints(max_length=64)]
    timestamp: int | None = None
    user: JiraUser | None = None
    issue: JiraIssue


@dataclass(frozen=True, slots=True)
class TicketChange:
    """What a webhook asks for: the ticket, the requester, the change, and how to reach the ticket again."""

    ticket: str
    requester: str
    spec: ChangeSpec
    origin: dict[str, Any]


def parse_change(value: Any, field: str) -> ChangeSpec | None:
    """The policy change in a ticket field (an object, or JSON/YAML text); None when the field is empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    where = Location(field)
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise PolicyError(f"{field}: not JSON or YAML", [Diagnostic(str(exc), where)]) from exc
    try:
        return ChangeSpec.model_validate(value)
    except ValidationError as exc:
        problems = [Diagnostic(f"{'.'.join(map(str, e['loc'])) or 'change'}: {e['msg']}", where)
                    for e in exc.errors()]
        raise PolicyError(f"{field}: not a policy change ({{add: [rules], remove: [names]}})", problems) from exc


def from_servicenow(record: ServiceNowChange, field: str) -> TicketChange | str:
    """The change a ServiceNow record asks for, or why it asks for none."""
    data = record.model_dump()
    spec = parse_change(data.get(field), field)
    if spec is None:
        return f"no policy change in {field}"
    requester = record.requester()
    if not requester:
        raise PolicyError("the change_request has no requested_by", [Diagnostic("missing", Location("requested_by"))])
    origin = {"system": "servicenow", "sys_id": record.sys_id, "number": record.number}
    return TicketChange(record.number, requester, spec, origin)


def from_jira(event: JiraEvent, field: str) -> TicketChange | str:
    """The change a Jira issue event asks for, or why it asks for none."""
    if event.webhookEvent not in JIRA_EVENTS:
        return f"event {event.webhookEvent!r} is not one of {', '.join(JIRA_EVENTS)}"
    spec = parse_change(event.issue.fields.model_dump().get(field), f"issue.fields.{field}")
    if spec is None:
        return f"no policy change in issue.fields.{field}"
    people = [event.issue.fields.reporter, event.issue.fields.creator, event.user]
    requester = next((who.identity() for who in people if who is not None and who.identity()), None)
    if not requester:
        raise PolicyError("the issue has no reporter", [Diagnostic("missing", Location("issue.fields.reporter"))])
    origin = {"system": "jira", "key": event.issue.key, "id": event.issue.id}
    return TicketChange(event.issue.key, requester, spec, origin)
