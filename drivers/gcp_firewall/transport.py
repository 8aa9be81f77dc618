"""The Compute API through the unmodified google-cloud-compute clients (REST): calls, operations, error translation.

Every SDK, HTTP and auth exception is translated here, once, into the
project's error tree.  Operations are awaited with ``GlobalOperationsClient.wait``
on the same endpoint and credentials as the firewalls client (the SDK's own
``ExtendedOperation.result()`` would poll the public endpoint).  Mutating calls
carry a ``requestId``, so a retry after a lost answer cannot apply twice.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import requests
from google.api_core import exceptions as api
from google.auth import exceptions as auth_errors
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import compute_v1

from drivers.endpoints import refused_at
from drivers.gcp_firewall.plan import Call
from drivers.gcp_firewall.settings import DRIVER, GcpSettings, check_endpoint
from orchestrator.model import DriverError, PermanentDriverError, TransientDriverError

T = TypeVar("T")
TRANSIENT = (api.TooManyRequests, api.ServiceUnavailable, api.InternalServerError, api.DeadlineExceeded,
             api.BadGateway, api.GatewayTimeout, api.RetryError)
TRANSIENT_OPERATION_ERRORS = frozenset({"RATE_LIMIT_EXCEEDED", "RESOURCE_NOT_READY", "INTERNAL_ERROR"})
ATTEMPTS = 4
BACKOFF = 0.25
BACKOFF_CAP = 20.0
WAIT_HOLD = 150.0  # an operations.wait call returns after at most ~2 minutes


def _retry_after(exc: api.GoogleAPICallError) -> float:
    response = getattr(exc, "response", None)
    header = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    try:
        return max(0.0, float(header)) if header is not None else 1.0
    except ValueError:  # an HTTP date: not worth parsing for a hint
        return 1.0


def translate(exc: BaseException, *, point: str, what: str, endpoint: str = "") -> DriverError:
    """The project's error for a foreign exception raised while doing ``what`` (a refused connection to
    ``endpoint`` is permanent: nothing listens there, which retrying won't change)."""
    if endpoint and (refused := refused_at(exc, endpoint)) is not None:
        return PermanentDriverError(f"{what}: {refused}", point=point, driver=DRIVER)
    if isinstance(exc, TRANSIENT) or (isinstance(exc, api.GoogleAPICallError) and (exc.code or 0) >= 500):
        delay = _retry_after(exc) if isinstance(exc, api.GoogleAPICallError) else 1.0
        return TransientDriverError(f"{what}: {exc}", point=point, driver=DRIVER, delay=delay)
    if isinstance(exc, api.Conflict):
        return PermanentDriverError(f"{what}: the rule already exists ({exc.message})", point=point, driver=DRIVER)
    if isinstance(exc, api.Unauthorized | api.Forbidden):
        return PermanentDriverError(
            f"{what}: permission denied ({exc.message}); the credentials need compute.firewalls.* and "
            "compute.globalOperations.get on the project (e.g. roles/compute.securityAdmin)",
            point=point, driver=DRIVER)
    if isinstance(exc, api.GoogleAPICallError):
        return PermanentDriverError(f"{what}: rejected by the Compute API: {exc}", point=point, driver=DRIVER)
    if isinstance(exc, requests.Timeout | requests.ConnectionError | auth_errors.TransportError):
        return TransientDriverError(f"{what}: {type(exc).__name__}: {exc}", point=point, driver=DRIVER)
    if isinstance(exc, auth_errors.GoogleAuthError):
        return PermanentDriverError(f"{what}: credentials: {exc}", point=point, driver=DRIVER)
    return PermanentDriverError(f"{what}: {type(exc).__name__}: {exc}", point=point, driver=DRIVER)


def rule_dict(rule: compute_v1.Firewall) -> dict[str, Any]:
    """A firewall rule as the REST API spells it (camelCase, fields left at their defaults omitted)."""
    text = compute_v1.Firewall.to_json(rule, always_print_fields_with_no_presence=False, indent=None)
    value: dict[str, Any] = json.loads(text)
    return value


class ComputeSession:
    """The firewalls and global-operations clients of one point, created on first use (no I/O before)."""

    def __init__(self, settings: GcpSettings, *, timeout: float, credentials: Credentials | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.timeout = timeout
        self.sleep = sleep
        self._credentials = credentials
        self._firewalls: compute_v1.FirewallsClient | None = None
        self._operations: compute_v1.GlobalOperationsClient | None = None

    def _error(self, exc: BaseException, what: str) -> DriverError:
        return translate(exc, point=self.settings.point, what=what, endpoint=self.settings.endpoint)

    def _clients(self) -> tuple[compute_v1.FirewallsClient, compute_v1.GlobalOperationsClient]:
        if self._firewalls is None or self._operations is None:
            credentials = self._credentials
            sends_token = not isinstance(credentials, AnonymousCredentials) and not (
                credentials is None and self.settings.anonymous)
            check_endpoint(self.settings.point, self.settings.endpoint, credentials=sends_token)  # before any I/O
            try:
                if credentials is None and self.settings.anonymous:
                    credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
                options = {"api_endpoint": self.settings.endpoint}
                self._firewalls = compute_v1.FirewallsClient(credentials=credentials, transport="rest",
                                                             client_options=options)
                self._operations = compute_v1.GlobalOperationsClient(credentials=credentials, transport="rest",
                                                                     client_options=options)
            except Exception as exc:  # Application Default Credentials missing, bad endpoint …: ours to report
                raise self._error(exc, "connect to the Compute API") from exc
        return self._firewalls, self._operations

    def list_rules(self) -> list[dict[str, Any]]:
        """Every firewall rule of the project (all networks), following nextPageToken."""
        firewalls, _ = self._clients()
        request = compute_v1.ListFirewallsRequest(project=self.settings.project, max_results=self.settings.page_size)
        try:
            return [rule_dict(r) for r in firewalls.list(request=request, retry=None, timeout=self.timeout)]
        except Exception as exc:
            raise self._error(exc, f"list the firewall rules of project {self.settings.project}") from exc

    def _retrying(self, send: Callable[[], T], what: str) -> T:
        """``send`` with up to ATTEMPTS tries on transient errors (honouring Retry-After)."""
        for attempt in range(ATTEMPTS):
            try:
                return send()
            except Exception as exc:
                error = self._error(exc, what)
                if not isinstance(error, TransientDriverError) or attempt + 1 == ATTEMPTS:
                    raise error from exc
                self.sleep(min(BACKOFF_CAP, max(error.delay, BACKOFF * 2**attempt)))
        raise AssertionError("unreachable")  # pragma: no cover

    def _request(self, call: Call, request_id: str) -> compute_v1.Operation:
        firewalls, _ = self._clients()
        project, timeout = self.settings.project, self.timeout
        body = None if call.body is None else compute_v1.Firewall.from_json(json.dumps(call.body))
        if call.verb == "insert":
            return firewalls.insert_unary(request=compute_v1.InsertFirewallRequest(
                project=project, firewall_resource=body, request_id=request_id), retry=None, timeout=timeout)
        if call.verb == "patch":
            return firewalls.patch_unary(request=compute_v1.PatchFirewallRequest(
                project=project, firewall=call.name, firewall_resource=body, request_id=request_id),
                retry=None, timeout=timeout)
        if call.verb == "update":
            return firewalls.update_unary(request=compute_v1.UpdateFirewallRequest(
                project=project, firewall=call.name, firewall_resource=body, request_id=request_id),
                retry=None, timeout=timeout)
        return firewalls.delete_unary(request=compute_v1.DeleteFirewallRequest(
            project=project, firewall=call.name, request_id=request_id), retry=None, timeout=timeout)

    def send(self, call: Call) -> None:
        """One mutating call, then its operation awaited until DONE; failures name the rule."""
        what = f"{call.verb} firewall rule {call.name}"
        request_id = str(uuid.uuid4())  # the same on every retry: the API runs the call at most once
        operation = self._retrying(lambda: self._request(call, request_id), what)
        self._wait(operation, what)

    def _wait(self, operation: compute_v1.Operation, what: str) -> None:
        _, operations = self._clients()
        deadline = time.monotonic() + self.settings.operation_timeout
        done = compute_v1.Operation.Status.DONE
        while operation.status != done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransientDriverError(
                    f"{what}: operation {operation.name} is still {operation.status.name} after "
                    f"{self.settings.operation_timeout:g} s", point=self.settings.point, driver=DRIVER)
            operation = self._retrying(partial(operations.wait, project=self.settings.project,
                                               operation=operation.name, retry=None,
                                               timeout=min(remaining, WAIT_HOLD) + self.timeout), f"{what} (wait)")
        errors = list(operation.error.errors) if operation.error else []
        if errors:
            detail = "; ".join(f"{e.code}: {e.message}" for e in errors)
            cls = TransientDriverError if errors[0].code in TRANSIENT_OPERATION_ERRORS else PermanentDriverError
            raise cls(f"{what}: operation {operation.name} failed: {detail}", point=self.settings.point,
                      driver=DRIVER)

    def close(self) -> None:
        """Close the HTTP sessions (safe to call twice)."""
        for client in (self._firewalls, self._operations):
            if client is not None:
                client.transport.close()  # type: ignore[no-untyped-call]
        self._firewalls = self._operations = None
