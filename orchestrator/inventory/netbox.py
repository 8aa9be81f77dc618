"""NetBox as a workload source: virtual machines and devices, their primary addresses, and labels from what
NetBox knows (site, tenant, role, status, platform, tags, custom fields), read through pynetbox.

``sources.yaml``::

    sources:
      - type: netbox
        url: https://netbox.example.com
        token_env: NETBOX_TOKEN        # the API token comes from this environment variable (never the file)
        kinds: [virtual-machines, devices]
        filters: {site: [dc1, dc2], status: active, tag: microseg}   # NetBox query filters, as in its API
        tags: true                     # each tag as label tag.<slug>: "true"
        custom_fields: [app, tier]     # these custom fields as labels (or a mapping field → label; default all)
        verify: true                   # TLS: true, false, or a CA bundle path

Labels: ``site``, ``tenant``, ``role``, ``status``, ``platform`` (slugs; ``status`` its value), ``netbox.kind``
(``virtual-machine`` / ``device``), ``tag.<slug>`` and the custom fields.  Addresses: ``primary_ip4`` and
``primary_ip6``.  A machine without a name or a primary address is reported (a warning) and left out.  The
token is sent only over HTTPS, or plain HTTP to a loopback address (a test server).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from orchestrator.inventory.scope import Workload
from orchestrator.inventory.workloads import WorkloadLoad, label_mapping
from orchestrator.model.errors import Diagnostic, InventoryError, Severity
from orchestrator.model.rules import is_loopback
from orchestrator.model.suggest import name_hint

CONFIG_KEYS = ("url", "token_env", "kinds", "filters", "tags", "custom_fields", "verify", "timeout")
KINDS = {"virtual-machines": ("virtualization", "virtual_machines", "virtual-machine"),
         "devices": ("dcim", "devices", "device")}
SLUG_LABELS = ("site", "tenant", "role", "platform")


def _fail(message: str, hint: str | None = None) -> InventoryError:
    return InventoryError(f"netbox workload source: {message}" + (f" ({hint})" if hint else ""),
                          [Diagnostic(f"netbox workload source: {message}", hint=hint)])


class NetBoxWorkloadSource:
    """Virtual machines and devices of a NetBox as workloads (see the module docstring for the settings)."""

    name = "netbox"

    def __init__(self, config: Mapping[str, Any], base_dir: Path) -> None:
        unknown = sorted(str(k) for k in config if k not in CONFIG_KEYS)
        if unknown:
            raise _fail(f"unknown setting {unknown[0]!r}", name_hint(unknown[0], CONFIG_KEYS, noun="settings"))
        url = config.get("url")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise _fail(f"'url' must be the NetBox URL (https://…), not {url!r}")
        token_env = config.get("token_env", "NETBOX_TOKEN")
        if not isinstance(token_env, str) or not token_env:
            raise _fail(f"'token_env' must name an environment variable, not {token_env!r}")
        parts = urlsplit(url)
        if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
            raise _fail(f"'url' {url} is plain HTTP to a host that is not loopback: the API token would cross the "
                        "network in clear text (use https://)")
        kinds = config.get("kinds", list(KINDS))
        if isinstance(kinds, str):
            kinds = [kinds]
        if not isinstance(kinds, list) or not kinds or any(k not in KINDS for k in kinds):
            raise _fail(f"'kinds' must be a list of {', '.join(KINDS)}, not {kinds!r}")
        filters = config.get("filters", {})
        if not isinstance(filters, Mapping) or not all(
                isinstance(k, str) and (isinstance(v, str | int) or (isinstance(v, list) and all(
                    isinstance(i, str | int) for i in v))) for k, v in filters.items()):
            raise _fail(f"'filters' must map NetBox filter names to a value or a list of values, not {filters!r}")
        try:
            self.custom_fields = label_mapping(config.get("custom_fields"), "custom_fields")
        except ValueError as exc:
            raise _fail(str(exc)) from exc
        verify = config.get("verify", True)
        if not isinstance(verify, bool | str):
            raise _fail(f"'verify' must be true, false or a CA bundle path, not {verify!r}")
        timeout = config.get("timeout", 30)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise _fail(f"'timeout' must be a positive number of seconds, not {timeout!r}")
        self.url = url.rstrip("/")
        self.token_env = token_env
        self.kinds = tuple(dict.fromkeys(kinds))
        self.filters = dict(filters)
        self.tags = bool(config.get("tags", True))
        self.verify = str(base_dir / verify) if isinstance(verify, str) and not os.path.isabs(verify) else verify
        self.timeout = float(timeout)

    def load(self) -> WorkloadLoad:
        token = os.environ.get(self.token_env)
        if not token:
            raise _fail(f"the API token is not set: environment variable {self.token_env} is empty")
        try:
            import pynetbox  # noqa: PLC0415  (an optional dependency: only this source needs it)
            import requests  # noqa: PLC0415
        except ImportError as exc:
            raise _fail("needs pynetbox: pip install 'microseg[netbox]'") from exc
        api = pynetbox.api(self.url, token=token)
        session = requests.Session()
        session.verify = self.verify
        api.http_session = session
        workloads: list[Workload] = []
        diagnostics: list[Diagnostic] = []
        for kind in self.kinds:
            app, endpoint, label = KINDS[kind]
            try:
                records = list(getattr(getattr(api, app), endpoint).filter(**self.filters))
            except pynetbox.RequestError as exc:
                raise _fail(f"GET {exc.req.url} answered {exc.req.status_code}: {_reason(exc)}") from exc
            except pynetbox.ContentError as exc:
                raise _fail(f"{self.url} did not answer with JSON ({exc}): is it a NetBox API URL?") from exc
            except requests.RequestException as exc:
                raise _fail(f"cannot reach {self.url}: {type(exc).__name__}: {exc}") from exc
            for record in records:
                workload, problem = self._workload(dict(record), label)
                if problem:
                    diagnostics.append(Diagnostic(f"netbox {label} {problem}", severity=Severity.WARNING,
                                                  code="netbox"))
                if workload is not None:
                    workloads.append(workload)
        return WorkloadLoad(tuple(workloads), tuple(diagnostics))

    def _workload(self, record: Mapping[str, Any], kind: str) -> tuple[Workload | None, str | None]:
        name = record.get("name")
        if not isinstance(name, str) or not name:
            return None, f"#{record.get('id')} has no name: left out"
        addresses = [str(ip.get("address", "")).split("/")[0] for ip in (record.get("primary_ip4"),
                                                                         record.get("primary_ip6"))
                     if isinstance(ip, Mapping)]
        if not addresses:
            return None, f"{name!r} has no primary IPv4 or IPv6 address: left out"
        labels: dict[str, str] = {"netbox.kind": kind}
        for key in SLUG_LABELS:
            value = record.get(key)
            if isinstance(value, Mapping) and value.get("slug"):
                labels[key] = str(value["slug"])
        status = record.get("status")
        if isinstance(status, Mapping) and status.get("value"):
            labels["status"] = str(status["value"])
        if self.tags:
            labels.update((f"tag.{t['slug']}", "true") for t in _tags(record.get("tags")))
        fields = record.get("custom_fields") or {}
        wanted = self.custom_fields if self.custom_fields is not None else {k: k for k in fields}
        for field_name, label_name in wanted.items():
            value = fields.get(field_name) if isinstance(fields, Mapping) else None
            if isinstance(value, str | int | float) and not isinstance(value, bool) and str(value):
                labels[label_name] = str(value)
        try:
            return Workload.model_validate({"name": name, "addresses": addresses, "labels": labels}), None
        except ValidationError as exc:
            problem = "; ".join(str(e.get("msg")) for e in exc.errors())
            return None, f"{name!r} cannot be a workload ({problem}): left out"


def _tags(value: object) -> Iterable[Mapping[str, Any]]:
    return [t for t in value if isinstance(t, Mapping) and t.get("slug")] if isinstance(value, list) else []


def _reason(exc: Any) -> str:
    try:
        body = exc.req.json()
    except ValueError:  # an HTML error page (a proxy, a crashed NetBox): its text without the markup
        return " ".join(re.sub(r"<[^>]*>", " ", str(exc.req.text)).split())[:200]
    return body.get("detail", str(body)) if isinstance(body, Mapping) else str(body)
