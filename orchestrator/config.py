"""The orchestrator's own configuration file (``microseg.yaml``): change windows and the ``serve`` section.

::

    change_windows:
      - name: prod-weekend
        groups: [prod]                       # Nornir groups whose points it restricts
        windows: ["Sat 02:00-04:00 Europe/Berlin", "Sun 02:00-04:00 Europe/Berlin"]
    serve:                                   # `microseg serve`: the API and its scheduler (see ServeConfig)
      reconcile_cron: "*/15 * * * *"
      roles: {alice: requester, bob: approver}

Its own layer, between the engine and the faces that read it (the CLI and the API): uses the model and the
engine's change windows and cron expressions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestrator.engine.cron import is_valid as is_cron
from orchestrator.engine.windows import WindowError, WindowRule, parse_window
from orchestrator.model.errors import Diagnostic, Location, PolicyError
from orchestrator.model.identity import require_identity

DEFAULT_CONFIG = Path("microseg.yaml")


class ChangeWindowConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    groups: Annotated[tuple[str, ...], Field(min_length=1)]
    windows: Annotated[tuple[str, ...], Field(min_length=1)]

    @field_validator("windows")
    @classmethod
    def _readable(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            try:
                parse_window(text)
            except WindowError as exc:
                raise ValueError(str(exc)) from exc
        return value

    def rule(self) -> WindowRule:
        return WindowRule(self.name, frozenset(self.groups), tuple(parse_window(t) for t in self.windows))


Role = Literal["requester", "approver", "operator"]


def _cron(value: str | None) -> str | None:
    if value is not None and not is_cron(value):
        raise ValueError(f"{value!r} is not a cron expression (e.g. '*/15 * * * *'; a 6th field is seconds)")
    return value


class RateLimitConfig(BaseModel):
    """Writes (POST) one identity may make per ``per_seconds`` (per instance)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    writes: int = Field(default=30, ge=1)
    per_seconds: float = Field(default=60.0, gt=0)


class AuthFailureConfig(BaseModel):
    """Failed authentications one client address may make per ``per_seconds`` before it gets 429 (per instance)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attempts: int = Field(default=10, ge=1)
    per_seconds: float = Field(default=60.0, gt=0)


def _identities(mapping: dict[str, str], what: str) -> dict[str, str]:
    for value in mapping.values():
        require_identity(value, what)
    return mapping


class TicketUsersConfig(BaseModel):
    """Who a ticket's requester is in microseg: ticket-system user → identity, per system (explicit, never guessed).

    ServiceNow users are named by their ``sys_id`` (``requested_by.value``); Jira users by ``accountId``
    (Cloud), ``name`` (Data Center) or ``emailAddress``.  A requester not mapped here makes the change
    request's requester ``unknown``: it can then be approved only by an identity that could not be that user.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    servicenow: dict[str, str] = Field(default_factory=dict)
    jira: dict[str, str] = Field(default_factory=dict)

    @field_validator("servicenow", "jira")
    @classmethod
    def _canonical(cls, value: dict[str, str]) -> dict[str, str]:
        _identities(value, "the identity")
        return {key.strip().casefold(): identity for key, identity in value.items()}

    def identity(self, system: str, keys: list[str | None]) -> str | None:
        """The identity the first of ``keys`` (a user's ids, most stable first) is mapped to, or None."""
        mapping = self.servicenow if system == "servicenow" else self.jira
        return next((mapping[k.strip().casefold()] for k in keys if k and k.strip().casefold() in mapping), None)


class NotifierConfig(BaseModel):
    """Where evidence goes: a ticket's ServiceNow record, its Jira issue, or a plain JSON webhook."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str | None = None            # JSON evidence of requests made through the API (POST)
    servicenow_url: str | None = None  # e.g. https://acme.service-now.com/api/now/table/change_request/{sys_id}
    jira_url: str | None = None        # e.g. https://acme.atlassian.net/rest/api/2/issue/{key}/comment
    jira_issue_url: str | None = None  # where the issue is read back (default: jira_url without /comment)
    headers: dict[str, str] = Field(default_factory=dict)  # values may be ${ENV_VAR}
    timeout: float = Field(default=5.0, gt=0)


class ServeConfig(BaseModel):
    """``microseg serve``: the scheduler's jobs, who may do what, limits, and where evidence is posted."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reconcile_cron: str | None = None  # None: no scheduled reconcile
    reconcile_mode: Literal["report", "repair"] = "report"
    pending_cron: str = "* * * * *"    # apply approved change requests whose window opened
    expiry_cron: str = "*/5 * * * *"   # remove expired ticket rules
    cron_timezone: str = "UTC"
    roles: dict[str, Role] = Field(default_factory=dict)  # identity → role (overrides the token's role)
    ticket_users: TicketUsersConfig = Field(default_factory=TicketUsersConfig)
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    auth_failures: AuthFailureConfig = Field(default_factory=AuthFailureConfig)
    public_docs: bool = False          # /docs, /redoc and /openapi.json without a token
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    notifier: NotifierConfig = Field(default_factory=NotifierConfig)
    servicenow_change_field: str = "u_microseg_change"
    jira_change_field: str = "customfield_10100"
    public_url: str | None = None      # base of the links in responses and ticket notes
    executor: Literal["local", "celery"] = "local"  # where per-point steps run (--executor)
    broker: str | None = None          # Celery broker URL for executor celery (else --broker / MICROSEG_BROKER)
    queue_timeout: float = Field(default=120.0, gt=0)
    worker_lease: float = Field(default=30.0, ge=1)

    @field_validator("reconcile_cron", "pending_cron", "expiry_cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        return _cron(value)

    @field_validator("roles")
    @classmethod
    def _role_holders(cls, value: dict[str, Role]) -> dict[str, Role]:
        for name in value:
            require_identity(name, "serve.roles:")
        return value

    @field_validator("cron_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    change_windows: tuple[ChangeWindowConfig, ...] = ()
    serve: ServeConfig = Field(default_factory=ServeConfig)

    def window_rules(self) -> list[WindowRule]:
        return [w.rule() for w in self.change_windows]


def load_config(path: Path | None) -> Config:
    """``path`` (or ./microseg.yaml when it exists); an empty configuration otherwise."""
    target = path or DEFAULT_CONFIG
    if path is None and not target.exists():
        return Config()
    try:
        data = yaml.safe_load(target.read_text(encoding="utf-8")) or {}
        return Config.model_validate(data)
    except OSError as exc:
        raise PolicyError(f"cannot read the configuration {target}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise PolicyError(f"{target}: not YAML: {exc}", [Diagnostic(str(exc), Location(str(target)))]) from exc
    except ValidationError as exc:
        problems = [Diagnostic(f"{'.'.join(map(str, e['loc']))}: {e['msg']}", Location(str(target)))
                    for e in exc.errors()]
        raise PolicyError(f"{target}: invalid configuration", problems) from exc
