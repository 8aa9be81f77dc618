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


SOURCE = "netbox workload source"
PLUGIN = "netbox inventory"


def _fail(message: str, hint: str | None = None, *, what: str = SOURCE) -> InventoryError:
    return InventoryError(f"{what}: {message}" + (f" ({hint})" if hint else ""),
                          [Diagnostic(f"{what}: {message}", hint=hint)])


class _NetBox:
    """What both NetBox readers share: the checked URL, token, filters and TLS settings, and reading the machines
    of one kind through pynetbox with NetBox's answers turned into errors that say what and where."""

    def __init__(self, config: Mapping[str, Any], base_dir: Path, keys: tuple[str, ...], what: str = SOURCE) -> None:
        self.what = what
        unknown = sorted(str(k) for k in config if k not in keys)
        if unknown:
            raise self.fail(f"unknown setting {unknown[0]!r}", name_hint(unknown[0], keys, noun="settings"))
        url = config.get("url")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise self.fail(f"'url' must be the NetBox URL (https://…), not {url!r}")
        token_env = config.get("token_env", "NETBOX_TOKEN")
        if not isinstance(token_env, str) or not token_env:
            raise self.fail(f"'token_env' must name an environment variable, not {token_env!r}")
        parts = urlsplit(url)
        if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
            raise self.fail(f"'url' {url} is plain HTTP to a host that is not loopback: the API token would cross the "
                        "network in clear text (use https://)")
        kinds = config.get("kinds", list(KINDS))
        if isinstance(kinds, str):
            kinds = [kinds]
        if not isinstance(kinds, list) or not kinds or any(k not in KINDS for k in kinds):
            raise self.fail(f"'kinds' must be a list of {', '.join(KINDS)}, not {kinds!r}")
        filters = config.get("filters", {})
        if not isinstance(filters, Mapping) or not all(
                isinstance(k, str) and (isinstance(v, str | int) or (isinstance(v, list) and all(
                    isinstance(i, str | int) for i in v))) for k, v in filters.items()):
            raise self.fail(f"'filters' must map NetBox filter names to a value or a list of values, not {filters!r}")
        verify = config.get("verify", True)
        if not isinstance(verify, bool | str):
            raise self.fail(f"'verify' must be true, false or a CA bundle path, not {verify!r}")
        timeout = config.get("timeout", 30)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise self.fail(f"'timeout' must be a positive number of seconds, not {timeout!r}")
        self.url = url.rstrip("/")
        self.token_env = token_env
        self.kinds = tuple(dict.fromkeys(kinds))
        self.filters = dict(filters)
        self.verify = str(base_dir / verify) if isinstance(verify, str) and not os.path.isabs(verify) else verify
        self.timeout = float(timeout)

    def fail(self, message: str, hint: str | None = None) -> InventoryError:
        return _fail(message, hint, what=self.what)

    def records(self) -> Iterable[tuple[str, dict[str, Any]]]:
        """(kind label, record) of every machine of the configured kinds that matches the filters."""
        token = os.environ.get(self.token_env)
        if not token:
            raise self.fail(f"the API token is not set: environment variable {self.token_env} is empty")
        try:
            import pynetbox  # noqa: PLC0415  (an optional dependency: only NetBox needs it)
            import requests  # noqa: PLC0415
        except ImportError as exc:
            raise self.fail("needs pynetbox: pip install 'microseg[netbox]'") from exc
        api = pynetbox.api(self.url, token=token)
        session = requests.Session()
        session.verify = self.verify
        api.http_session = session
        for kind in self.kinds:
            app, endpoint, label = KINDS[kind]
            try:
                found = list(getattr(getattr(api, app), endpoint).filter(**self.filters))
            except pynetbox.RequestError as exc:
                raise self.fail(f"GET {exc.req.url} answered {exc.req.status_code}: {_reason(exc)}") from exc
            except pynetbox.ContentError as exc:
                raise self.fail(f"{self.url} did not answer with JSON ({exc}): is it a NetBox API URL?") from exc
            except requests.RequestException as exc:
                raise self.fail(f"cannot reach {self.url}: {type(exc).__name__}: {exc}") from exc
            yield from ((label, dict(record)) for record in found)


class NetBoxWorkloadSource:
    """Virtual machines and devices of a NetBox as workloads (see the module docstring for the settings)."""

    name = "netbox"

    def __init__(self, config: Mapping[str, Any], base_dir: Path) -> None:
        self.netbox = _NetBox(config, base_dir, CONFIG_KEYS)
        try:
            self.custom_fields = label_mapping(config.get("custom_fields"), "custom_fields")
        except ValueError as exc:
            raise _fail(str(exc)) from exc
        self.tags = bool(config.get("tags", True))

    def load(self) -> WorkloadLoad:
        workloads: list[Workload] = []
        diagnostics: list[Diagnostic] = []
        for label, record in self.netbox.records():
            workload, problem = self._workload(record, label)
            if problem:
                diagnostics.append(Diagnostic(f"netbox {label} {problem}", severity=Severity.WARNING, code="netbox"))
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


PLUGIN_KEYS = ("url", "token_env", "kinds", "filters", "verify", "timeout", "group_by")
GROUP_BY = ("site", "role", "tenant", "platform")


class NetBoxInventory:
    """A Nornir inventory plugin (``microseg.NetBoxInventory``): NetBox's devices and virtual machines as Nornir
    hosts, for microseg's commands and for a team's own ``InitNornir``.

    Options (``config.yaml``: ``inventory.options``): ``url``, ``token_env``, ``kinds``, ``filters``, ``verify``,
    ``timeout`` as for the workload source, and ``group_by`` (default ``[site, role]``): a Nornir group per
    value, named ``site-dc1``, ``role-edge`` … (``-g site-dc1`` selects them).  A host is named as in NetBox, its
    ``hostname`` is its primary address (IPv4 first), its ``platform`` the NetBox platform slug, and its data the
    machine's rendered config context — NetBox's own layered settings by site, role, tag … — plus ``netbox``
    (id, kind, site, role, tenant, status, tags).  So ``data.microseg`` comes from a config context: the hosts
    that have one are enforcement points, the others are not.  A machine without a name is left out.
    """

    def __init__(self, **options: Any) -> None:
        group_by = options.pop("group_by", ["site", "role"])
        if isinstance(group_by, str):
            group_by = [group_by]
        if not isinstance(group_by, list) or any(g not in GROUP_BY for g in group_by):
            raise _fail(f"'group_by' must be a list of {', '.join(GROUP_BY)}, not {group_by!r}", what=PLUGIN)
        self.group_by = tuple(group_by)
        self.netbox = _NetBox(options, Path.cwd(), PLUGIN_KEYS, what=PLUGIN)

    def load(self) -> Any:
        from nornir.core.inventory import Defaults, Group, Groups, Host, Hosts, Inventory, ParentGroups  # noqa: PLC0415

        defaults = Defaults()
        groups = Groups()
        hosts = Hosts()
        for label, record in self.netbox.records():
            name = record.get("name")
            if not isinstance(name, str) or not name:
                continue
            if name in hosts:
                raise _fail(f"two machines are named {name!r} (a device and a virtual machine?): Nornir host names "
                            "are unique; narrow 'kinds' or 'filters'", what=PLUGIN)
            member_of = []
            for key in self.group_by:
                value = record.get(key)
                if isinstance(value, Mapping) and value.get("slug"):
                    group = f"{key}-{value['slug']}"
                    if group not in groups:
                        groups[group] = Group(group, defaults=defaults)
                    member_of.append(groups[group])
            context = record.get("config_context")
            data = dict(context) if isinstance(context, Mapping) else {}
            tags = [t["slug"] for t in _tags(record.get("tags"))]
            data["netbox"] = {"id": record.get("id"), "kind": label, "tags": tags,
                              **{k: v["slug"] for k in SLUG_LABELS
                                 if isinstance(v := record.get(k), Mapping) and v.get("slug")}}
            status = record.get("status")
            if isinstance(status, Mapping) and status.get("value"):
                data["netbox"]["status"] = status["value"]
            platform = record.get("platform")
            hosts[name] = Host(name, hostname=_primary_address(record) or name, defaults=defaults, data=data,
                               platform=str(platform["slug"]) if isinstance(platform, Mapping) and platform.get(
                                   "slug") else None, groups=ParentGroups(member_of))
        return Inventory(hosts=hosts, groups=groups, defaults=defaults)


def _primary_address(record: Mapping[str, Any]) -> str | None:
    for key in ("primary_ip4", "primary_ip6"):
        ip = record.get(key)
        if isinstance(ip, Mapping) and ip.get("address"):
            return str(ip["address"]).split("/")[0]
    return None
