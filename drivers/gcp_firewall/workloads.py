"""Compute Engine instances as workloads: a WorkloadSource reading instance labels and interface addresses."""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import compute_v1
from pydantic import ValidationError

from drivers.endpoints import cleartext_origin
from drivers.gcp_firewall.settings import DEFAULT_ENDPOINT
from drivers.gcp_firewall.transport import translate
from orchestrator.inventory import Workload, WorkloadLoad
from orchestrator.model import Diagnostic, InventoryError, Severity, TransientDriverError, name_hint

CONFIG_KEYS = ("project", "zone", "zones", "api_endpoint", "label_keys", "credentials", "page_size", "timeout")
ATTEMPTS = 3


def _fail(message: str, hint: str | None = None) -> InventoryError:
    return InventoryError(f"gcp workload source: {message}" + (f" ({hint})" if hint else ""),
                          [Diagnostic(f"gcp workload source: {message}", hint=hint)])


def _strings(config: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    value = config.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(f"'{key}' must be a list of names, not {value!r}")
    return tuple(value)


class GcpWorkloadSource:
    """Every Compute Engine instance of a project as a workload named by the instance.

    Config: ``project``; ``zone`` or ``zones`` (default: every zone, through the aggregated list);
    ``api_endpoint`` (default the public Compute endpoint); ``label_keys`` (the instance labels to keep; default
    all); ``credentials`` (``default``: Application Default Credentials, ``anonymous``: test servers);
    ``page_size`` (500); ``timeout`` (30 s).  Addresses are every interface's ``networkIP`` and ``ipv6Address``.
    """

    def __init__(self, config: Mapping[str, Any], base_dir: Path, *, credentials: Credentials | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        unknown = sorted(str(k) for k in config if k not in CONFIG_KEYS)
        if unknown:
            raise _fail(f"unknown setting {unknown[0]!r}", name_hint(unknown[0], CONFIG_KEYS, noun="settings"))
        project = config.get("project")
        if not isinstance(project, str) or not project.strip():
            raise _fail("'project' (the GCP project id) is required")
        zones = _strings(config, "zones") or _strings(config, "zone")
        if config.get("zone") is not None and config.get("zones") is not None:
            raise _fail("set 'zone' or 'zones', not both")
        endpoint = config.get("api_endpoint", DEFAULT_ENDPOINT)
        if not isinstance(endpoint, str) or not endpoint:
            raise _fail(f"'api_endpoint' must be a URL, not {endpoint!r}")
        if config.get("credentials", "default") not in ("default", "anonymous"):
            raise _fail("'credentials' must be 'default' or 'anonymous'")
        origin = cleartext_origin(endpoint)
        if origin is not None and config.get("credentials", "default") != "anonymous":
            raise _fail(f"'api_endpoint' {origin} is plain HTTP to a host that is not loopback: the OAuth token "
                        "would cross the network in clear text (use https://, or credentials: anonymous)")
        numbers = {key: config.get(key, default) for key, default in (("page_size", 500), ("timeout", 30.0))}
        for key, value in numbers.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise _fail(f"'{key}' must be a positive number, not {value!r}")
        self.project = project.strip()
        self.zones = zones
        self.endpoint = endpoint.rstrip("/")
        self.label_keys = _strings(config, "label_keys")
        self.page_size = min(500, int(numbers["page_size"]))
        self.timeout = float(numbers["timeout"])
        self.anonymous = config.get("credentials") == "anonymous"
        self.sleep = sleep
        self._credentials = credentials
        self.name = f"gcp:{self.project}"
        del base_dir  # nothing on disk

    def load(self) -> WorkloadLoad:
        """List the instances (retrying throttling), then turn each into a workload; problems are diagnostics."""
        diagnostics: list[Diagnostic] = []
        workloads: dict[str, Workload] = {}
        zone_of: dict[str, str] = {}
        for zone, instance in self._listed():
            workload = self._workload(instance, zone, diagnostics)
            if workload is None:
                continue
            if workload.name in workloads:
                diagnostics.append(Diagnostic(
                    f"instance name {workload.name!r} is used in zone {zone_of[workload.name]} and in zone {zone}; "
                    f"kept the one in {zone_of[workload.name]}", code="duplicate",
                    hint="instance names are unique per zone only: list one zone per source"))
                continue
            workloads[workload.name] = workload
            zone_of[workload.name] = zone
        return WorkloadLoad(tuple(workloads.values()), tuple(diagnostics))

    def _listed(self) -> list[tuple[str, dict[str, Any]]]:
        for attempt in range(ATTEMPTS):
            try:
                return list(self._instances())
            except Exception as exc:
                error = translate(exc, point=self.name, what=f"list the instances of project {self.project}")
                if not isinstance(error, TransientDriverError) or attempt + 1 == ATTEMPTS:
                    raise _fail(error.message.partition(": ")[2] or error.message) from exc
                self.sleep(max(error.delay, 0.5 * 2**attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _instances(self) -> Iterator[tuple[str, dict[str, Any]]]:
        credentials = self._credentials
        if credentials is None and self.anonymous:
            credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        client = compute_v1.InstancesClient(credentials=credentials, transport="rest",
                                            client_options={"api_endpoint": self.endpoint})
        try:
            if self.zones is None:
                request = compute_v1.AggregatedListInstancesRequest(project=self.project, max_results=self.page_size)
                for scope, listed in client.aggregated_list(request=request, retry=None, timeout=self.timeout):
                    for instance in listed.instances:
                        yield scope.rpartition("/")[2], _as_dict(instance)
                return
            for zone in self.zones:
                zoned = compute_v1.ListInstancesRequest(project=self.project, zone=zone, max_results=self.page_size)
                for instance in client.list(request=zoned, retry=None, timeout=self.timeout):
                    yield zone, _as_dict(instance)
        finally:
            client.transport.close()  # type: ignore[no-untyped-call]

    def _workload(self, instance: Mapping[str, Any], zone: str, diagnostics: list[Diagnostic]) -> Workload | None:
        name = str(instance.get("name"))
        addresses: list[str] = []
        for nic in instance.get("networkInterfaces") or []:
            for key in ("networkIP", "ipv6Address"):
                try:
                    address = str(ipaddress.ip_address(nic[key])) if nic.get(key) else None
                except ValueError:
                    diagnostics.append(Diagnostic(f"instance {name!r} (zone {zone}): {key} {nic[key]!r} is not an "
                                                  "IP address: ignored", severity=Severity.WARNING, code="invalid"))
                    continue
                if address is not None and address not in addresses:
                    addresses.append(address)
        if not addresses:
            diagnostics.append(Diagnostic(f"instance {name!r} (zone {zone}) has no internal address: skipped",
                                          severity=Severity.WARNING, code="no-address"))
            return None
        labels = dict(instance.get("labels") or {})
        if self.label_keys is not None:
            labels = {k: v for k, v in labels.items() if k in self.label_keys}
        try:
            return Workload.model_validate({"name": name, "addresses": addresses, "labels": labels})
        except ValidationError as exc:
            problems = "; ".join(e["msg"] for e in exc.errors())
            diagnostics.append(Diagnostic(f"instance {name!r} (zone {zone}) is not a valid workload: {problems}",
                                          code="invalid"))
            return None


def _as_dict(instance: compute_v1.Instance) -> dict[str, Any]:
    """An instance as the REST API spells it (camelCase)."""
    text = compute_v1.Instance.to_json(instance, always_print_fields_with_no_presence=False, indent=None)
    value: dict[str, Any] = json.loads(text)
    return value
