"""Ticket-system webhooks: a ServiceNow change_request record or a Jira issue event → a change request.

The policy change travels in one documented field, as a JSON object or as
JSON/YAML text (``{"add": [rules…], "remove": [names…]}``):

* ServiceNow: the record's ``u_microseg_change`` (``serve.servicenow_change_field``); the ticket is its
  ``number``, the requester ``requested_by``; the record may come bare (a business rule's outbound REST
  message) or wrapped in the Table API's ``{"result": …}``.
* Jira: ``issue.fields.customfield_10100`` (``serve.jira_change_field``) of a ``jira:issue_created`` or
  ``jira:issue_updated`` event; the ticket is ``issue.key``, the requester the reporter (else the creator,
  else the event's user).

Who the requester is in microseg comes only from ``serve.ticket_users`` (an explicit map from the ticket
system's user ids to identities), never from free text such as a display name: a requester mapped to no
identity is :data:`~orchestrator.model.identity.UNKNOWN`, and the ticket's user fields travel with the
request so that no identity that could be that user may approve it.  The change field's text is untrusted:
it is parsed with aliases refused and size, depth and node count bounded (:mod:`orchestrator.policy.untrusted`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from orchestrator.config import TicketUsersConfig
from orchestrator.engine.changes import ChangeSpec
from orchestrator.model.errors import Diagnostic, Location, PolicyError
from orchestrator.model.identity import UNKNOWN
from orchestrator.policy.untrusted import UntrustedInputError, UntrustedLimits, load_untrusted_yaml

JIRA_EVENTS = ("jira:issue_created", "jira:issue_updated")
LIMITS = UntrustedLimits(max_bytes=64 * 1024, max_depth=16, max_nodes=5000)  # a change field, far above real ones
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

    def requester(self) -> dict[str, str]:
        """Who asked, as the record names them: ``value`` (the user's sys_id) and ``display_value``."""
        who = self.requested_by
        if isinstance(who, SnowReference):
            return {k: v for k, v in (("value", who.value), ("display_value", who.display_value)) if v}
        return {"display_value": who} if who else {}


class JiraUser(BaseModel):
    """A Jira user as webhooks carry it (Cloud: accountId; Data Center: name)."""

    model_config = ConfigDict(extra="allow")

    accountId: str | None = None
    name: str | None = None
    emailAddress: str | None = None
    displayName: str | None = None

    def fields(self) -> dict[str, str]:
        """The user's ids and names that are present."""
        pairs = (("accountId", self.accountId), ("name", self.name), ("emailAddress", self.emailAddress),
                 ("displayName", self.displayName))
        return {k: v for k, v in pairs if v}


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
    requester: str  # an identity from serve.ticket_users, or UNKNOWN
    spec: ChangeSpec
    origin: dict[str, Any]
    ticket_user: dict[str, str]  # the requester as the ticket names them (ids, names, email)


def parse_change(value: Any, field: str) -> ChangeSpec | None:
    """The policy change in a ticket field (an object, or JSON/YAML text); None when the field is empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    where = Location(field)
    if isinstance(value, str):
        try:
            value = load_untrusted_yaml(value, LIMITS)
        except UntrustedInputError as exc:
            raise PolicyError(f"{field}: {exc.message}", [Diagnostic(exc.detail, where)]) from exc
    try:
        return ChangeSpec.model_validate(value)
    except ValidationError as exc:
        problems = [Diagnostic(f"{'.'.join(map(str, e['loc'])) or 'change'}: {e['msg']}", where)
                    for e in exc.errors()]
        raise PolicyError(f"{field}: not a policy change ({{add: [rules], remove: [names]}})", problems) from exc


def from_servicenow(record: ServiceNowChange, field: str, users: TicketUsersConfig) -> TicketChange | str:
    """The change a ServiceNow record asks for, or why it asks for none."""
    data = record.model_dump()
    spec = parse_change(data.get(field), field)
    if spec is None:
        return f"no policy change in {field}"
    who = record.requester()
    if not who:
        raise PolicyError("the change_request has no requested_by", [Diagnostic("missing", Location("requested_by"))])
    requester = users.identity("servicenow", [who.get("value")]) or UNKNOWN
    origin = {"system": "servicenow", "sys_id": record.sys_id, "number": record.number}
    return TicketChange(record.number, requester, spec, origin, who)


def from_jira(event: JiraEvent, field: str, users: TicketUsersConfig) -> TicketChange | str:
    """The change a Jira issue event asks for, or why it asks for none."""
    if event.webhookEvent not in JIRA_EVENTS:
        return f"event {event.webhookEvent!r} is not one of {', '.join(JIRA_EVENTS)}"
    spec = parse_change(event.issue.fields.model_dump().get(field), f"issue.fields.{field}")
    if spec is None:
        return f"no policy change in issue.fields.{field}"
    people = [event.issue.fields.reporter, event.issue.fields.creator, event.user]
    person = next((who for who in people if who is not None and who.fields()), None)
    if person is None:
        raise PolicyError("the issue has no reporter", [Diagnostic("missing", Location("issue.fields.reporter"))])
    requester = users.identity("jira", [person.accountId, person.name, person.emailAddress]) or UNKNOWN
    origin = {"system": "jira", "key": event.issue.key, "id": event.issue.id}
    return TicketChange(event.issue.key, requester, spec, origin, person.fields())
