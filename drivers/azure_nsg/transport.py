"""ARM calls through the unmodified azure-mgmt-network client; SDK and HTTP errors become microseg errors here, once."""

from __future__ import annotations

import importlib
import io
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import (
    AzureError,
    DecodeError,
    DeserializationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.mgmt.network import NetworkManagementClient

from drivers.azure_nsg.asgs import collect_members, native_entries
from drivers.azure_nsg.layout import DRIVER, PUBLIC_ARM_ENDPOINT, NsgSettings, asg_part
from drivers.endpoints import refused_at
from orchestrator.model import DriverError, ParseError, PermanentDriverError, TransientDriverError

DEFAULT_RETRY_DELAY = 1.0
NIC_ID = re.compile(r"/subscriptions/[^/]+/resourceGroups/([^/]+)/providers/Microsoft\.Network"
                    r"/networkInterfaces/([^/]+)", re.IGNORECASE)
PERMISSIONS = ("Microsoft.Network/networkSecurityGroups/read, /write, /delete, and with application_security_groups "
               "also Microsoft.Network/applicationSecurityGroups/read, /joinNetworkSecurityGroup/action and "
               "Microsoft.Network/networkInterfaces/read; `microseg adopt` of rules with service tags also "
               "Microsoft.Network/networkInterfaces/effectiveNetworkSecurityGroups/action (e.g. the built-in role "
               "'Network Contributor' scoped to the resource groups of the NSG, the ASGs and their NICs)")


def default_credential(point: str) -> TokenCredential:
    """azure-identity's DefaultAzureCredential, imported only when no credential was passed (optional dependency)."""
    try:
        identity = importlib.import_module("azure.identity")
    except ImportError as exc:
        raise PermanentDriverError(
            "no Azure credential: install azure-identity (`pip install azure-identity`, for DefaultAzureCredential: "
            "environment variables, workload/managed identity, Azure CLI login …) or pass a credential to the driver",
            point=point, driver=DRIVER) from exc
    credential: TokenCredential = identity.DefaultAzureCredential()
    return credential


class AnonymousCredential:
    """``credentials: anonymous``: a placeholder bearer token, only ever sent to a loopback ``base_url``."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("anonymous", int(time.time()) + 3600)


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``x-ms-retry-after-ms`` / ``Retry-After`` (seconds or HTTP date)."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    for key in ("retry-after-ms", "x-ms-retry-after-ms"):
        if key in lowered:
            try:
                return max(0.0, float(lowered[key]) / 1000)
            except ValueError:
                pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def arm_error(exc: HttpResponseError) -> tuple[str, str]:
    """(code, message) of an ARM error body ``{"error": {"code", "message"}}`` (operation bodies too)."""
    response: Any = exc.response
    try:
        body = response.json() if response is not None else None
    except (ValueError, DecodeError, AttributeError):
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("code", "?")), str(error.get("message", ""))
    return exc.reason or "?", exc.message


def translate(exc: AzureError | DeserializationError, action: str, point: str, base_url: str = "") -> DriverError:
    """One SDK exception → TransientDriverError (throttled, 5xx, timeouts, connection) or PermanentDriverError
    (also a refused connection to ``base_url``: nothing listens there, which retrying won't change)."""
    if base_url and (refused := refused_at(exc, base_url)) is not None:
        return PermanentDriverError(f"{action}: {refused}", point=point, driver=DRIVER)
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        status = exc.status_code
        code, message = arm_error(exc)
        text = f"{action}: HTTP {status} {code}: {message}"
        if status in (408, 429) or status >= 500:
            response: Any = exc.response
            delay = retry_after(response.headers if response is not None else None)
            return TransientDriverError(text, point=point, driver=DRIVER,
                                        delay=DEFAULT_RETRY_DELAY if delay is None else delay)
        if status == 412:
            return PermanentDriverError(f"{action}: the NSG changed since it was fetched (its ETag no longer "
                                        f"matches): plan again ({code}: {message})", point=point, driver=DRIVER)
        if status in (401, 403):
            return PermanentDriverError(f"{text} — the identity needs {PERMISSIONS}", point=point, driver=DRIVER)
        return PermanentDriverError(text, point=point, driver=DRIVER)
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return TransientDriverError(f"{action}: {type(exc).__name__}: {exc}", point=point, driver=DRIVER,
                                    delay=DEFAULT_RETRY_DELAY)
    if isinstance(exc, DeserializationError | DecodeError):
        return ParseError(f"{action}: ARM answered something the SDK cannot read: {exc}", point=point, driver=DRIVER)
    return PermanentDriverError(f"{action}: {type(exc).__name__}: {exc}", point=point, driver=DRIVER)


def client_options(base_url: str, ca_bundle: str | None, timeout: float) -> dict[str, Any]:
    """Keyword options every ARM client here is built with: endpoint scope, TLS trust, timeouts, no SDK retries."""
    options: dict[str, Any] = {"retry_total": 0, "connection_verify": ca_bundle or True,
                               "connection_timeout": timeout, "read_timeout": timeout}
    if base_url != PUBLIC_ARM_ENDPOINT:  # a sovereign cloud or a test endpoint: its own token audience
        options["credential_scopes"] = [f"{base_url}/.default"]
    return options


def _raw_response(pipeline_response: Any, _deserialized: Any, _headers: Any) -> Any:
    return pipeline_response.http_response


class ArmTransport:
    """The NSG's ARM operations (GET, conditional PUT, DELETE) with long-running operations polled to the end."""

    def __init__(self, settings: NsgSettings, point: str, timeout: float,
                 credential: TokenCredential | None = None) -> None:
        self.settings = settings
        self.point = point
        self.timeout = timeout
        self._credential = credential
        self._client: NetworkManagementClient | None = None

    def network(self) -> NetworkManagementClient:
        """The SDK client, built on first use (SDK retries off: the engine retries TransientDriverError)."""
        if self._client is None:
            s = self.settings
            if s.ca_bundle and not os.path.isfile(s.ca_bundle):  # the SDK would say "invalid path" on first call
                raise PermanentDriverError(f"setting 'ca_bundle': no such file {s.ca_bundle} (relative paths are "
                                           f"relative to the working directory, {os.getcwd()})",
                                           point=self.point, driver=DRIVER)
            credential = self._credential or (AnonymousCredential() if s.anonymous else default_credential(self.point))
            self._client = NetworkManagementClient(credential, s.subscription_id, base_url=s.base_url,
                                                   polling_interval=s.poll_interval,
                                                   **client_options(s.base_url, s.ca_bundle, self.timeout))
        return self._client

    def get_nsg(self) -> tuple[dict[str, Any] | None, str | None]:
        """The NSG's raw JSON and ETag; (None, None) when it does not exist."""
        s = self.settings
        try:
            response: Any = self.network().network_security_groups.get(s.resource_group, s.nsg_name,
                                                                       cls=_raw_response)
        except HttpResponseError as exc:
            if exc.status_code == 404 and arm_error(exc)[0] in ("ResourceNotFound", "NotFound"):
                return None, None
            raise translate(exc, f"GET NSG {s.nsg_name}", self.point, s.base_url) from exc
        except AzureError as exc:
            raise translate(exc, f"GET NSG {s.nsg_name}", self.point, s.base_url) from exc
        try:
            body = json.loads(response.text())
        except ValueError as exc:
            raise ParseError(f"GET NSG {s.nsg_name}: the answer is not JSON: {exc}", point=self.point,
                             driver=DRIVER) from exc
        if not isinstance(body, dict):
            raise ParseError(f"GET NSG {s.nsg_name}: the answer is not a JSON object", point=self.point, driver=DRIVER)
        etag = response.headers.get("ETag") or body.get("etag")
        return body, str(etag) if etag else None

    def asg_state(self) -> list[dict[str, Any]]:
        """The configured ASGs (one GET each) and their members (the NICs, listed page by page) for the snapshot."""
        s = self.settings
        fetched = {asg_id: self.get_asg(asg_id) for asg_id in s.application_security_groups}
        found = [asg_id for asg_id, asg in fetched.items() if asg is not None]
        members = collect_members(self.list_nics(s.nic_groups), found, self.point) if found else {}
        return native_entries(s, fetched, members)

    def get_asg(self, asg_id: str) -> dict[str, Any] | None:
        """An ASG's id and region; None when ARM does not have it (404)."""
        group, name = asg_part(asg_id, 2), asg_part(asg_id, 3)
        action = f"GET application security group {name} (resource group {group})"
        try:
            asg = self.network().application_security_groups.get(group, name)
        except HttpResponseError as exc:
            if exc.status_code == 404 and arm_error(exc)[0] in ("ResourceNotFound", "NotFound",
                                                                "ResourceGroupNotFound"):
                return None
            raise translate(exc, action, self.point, self.settings.base_url) from exc
        except AzureError as exc:
            raise translate(exc, action, self.point, self.settings.base_url) from exc
        return {"id": str(asg.id or asg_id), "location": asg.location}

    def list_nics(self, groups: Sequence[str] | None) -> list[Any]:
        """Every network interface of these resource groups (None: of the subscription), all pages."""
        action = f"list network interfaces of {', '.join(groups) if groups else 'the subscription'}"
        operations = self.network().network_interfaces
        try:
            if groups is None:
                return list(operations.list_all())
            return [nic for group in groups for nic in operations.list(group)]
        except AzureError as exc:
            raise translate(exc, action, self.point, self.settings.base_url) from exc

    def effective_nsgs(self, nic_id: str) -> Any:
        """Azure's effective security rules at one NIC (``POST …/effectiveNetworkSecurityGroups``, polled to its
        end), as raw JSON: what adoption reads service tags from (see :mod:`drivers.azure_nsg.tags`)."""
        s = self.settings
        match = NIC_ID.fullmatch(nic_id)
        if match is None:
            raise PermanentDriverError(f"NIC id {nic_id!r} is not a network interface resource id", point=self.point,
                                       driver=DRIVER)
        group, name = match[1], match[2]
        action = f"list the effective security rules of NIC {name} (resource group {group})"
        try:
            poller = self.network().network_interfaces.begin_list_effective_network_security_groups(
                group, name, cls=_raw_response)
            response: Any = poller.result(timeout=s.operation_timeout)
        except (AzureError, DeserializationError) as exc:  # the SDK types the answer before handing it over
            raise translate(exc, action, self.point, s.base_url) from exc
        except RecursionError as exc:
            raise ParseError(f"{action}: the answer is nested too deeply to read", point=self.point,
                             driver=DRIVER) from exc
        if not poller.done():
            raise TransientDriverError(f"{action}: still running after {s.operation_timeout:.0f}s", point=self.point,
                                       driver=DRIVER)
        try:
            return json.loads(response.text())
        except (ValueError, RecursionError) as exc:
            raise ParseError(f"{action}: the answer is not JSON that can be read: {type(exc).__name__}",
                             point=self.point, driver=DRIVER) from exc

    def put_nsg(self, body: Mapping[str, Any], headers: Mapping[str, str]) -> None:
        """One whole-NSG PUT (conditional on ``headers``), its Azure-AsyncOperation polled until it ends."""
        s = self.settings
        action = f"PUT NSG {s.nsg_name}"
        try:
            poller = self.network().network_security_groups.begin_create_or_update(
                s.resource_group, s.nsg_name, io.BytesIO(json.dumps(body).encode()), headers=dict(headers),
                content_type="application/json", cls=_raw_response)
            poller.result(timeout=s.operation_timeout)
        except AzureError as exc:
            raise translate(exc, action, self.point, self.settings.base_url) from exc
        if not poller.done():
            raise TransientDriverError(f"{action}: the operation was still running after {s.operation_timeout:.0f}s "
                                       f"(state unknown until it ends)", point=self.point, driver=DRIVER)

    def delete_nsg(self) -> None:
        """DELETE the NSG (only ever one microseg created and that holds nothing else), polled until it ends."""
        s = self.settings
        action = f"DELETE NSG {s.nsg_name}"
        try:
            poller = self.network().network_security_groups.begin_delete(s.resource_group, s.nsg_name)
            poller.result(timeout=s.operation_timeout)
        except AzureError as exc:
            raise translate(exc, action, self.point, self.settings.base_url) from exc
        if not poller.done():
            raise TransientDriverError(f"{action}: still running after {s.operation_timeout:.0f}s", point=self.point,
                                       driver=DRIVER)

    def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            client.close()
