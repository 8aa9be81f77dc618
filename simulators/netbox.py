"""A loopback server that follows NetBox's REST contract for what microseg reads (a test double).

What it implements, after NetBox 4.2's OpenAPI schema and documentation (REST API overview: pagination,
brief format, filtering, authentication — https://netboxlabs.com/docs/netbox/en/stable/integrations/rest-api/):

* ``GET /api/`` with the ``API-Version`` header (pynetbox reads it to choose offset pagination);
  ``GET /api/status/``;
* list endpoints ``/api/virtualization/virtual-machines/``, ``/api/dcim/devices/``, ``/api/ipam/ip-addresses/``
  answering ``{"count", "next", "previous", "results"}`` — ``limit`` (default 50, at most 1000) and
  ``offset``, absolute ``next``/``previous`` URLs — with ``?brief=1`` giving the brief representation;
* filters ``site``, ``tenant``, ``role``, ``status``, ``tag`` (slugs; repeatable, OR within one filter, AND across
  filters), ``name`` and ``q``; an unknown slug is a 400 whose body names the field, as NetBox's filter forms do
  (``{"site": ["Select a valid choice. x is not one of the available choices."]}``);
* ``Authorization: Token …`` (v1 tokens): a missing or wrong token is a 403 ``{"detail": "Invalid token"}``;
* nested objects as NetBox nests them (``site``/``tenant``/``role``/``platform``: id, url, display, name, slug;
  ``status``: value, label; ``primary_ip4``/``primary_ip6``: id, url, display, family, address; ``tags``: id, url,
  display, name, slug, color; ``custom_fields``: a mapping).

Faults for tests: ``fail_next`` answers the next N requests with a 500 HTML page (as a proxy in front of a
broken NetBox would).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

API_VERSION = "4.2"
DEFAULT_PAGE = 50
MAX_PAGE = 1000
ENDPOINTS = {"/api/virtualization/virtual-machines/": "virtual-machines", "/api/dcim/devices/": "devices",
             "/api/ipam/ip-addresses/": "ip-addresses"}
SLUG_FILTERS = ("site", "tenant", "role", "status", "tag")


def nested(kind: str, pk: int, name: str, slug: str, base: str) -> dict[str, Any]:
    return {"id": pk, "url": f"{base}/api/{kind}/{pk}/", "display": name, "name": name, "slug": slug}


@dataclass
class NetBoxData:
    """The objects the server holds (each a dict in NetBox's full representation, ``url`` fields filled in)."""

    objects: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {k: [] for k in ENDPOINTS.values()})
    token: str = "0123456789abcdef0123456789abcdef01234567"
    max_page: int = MAX_PAGE  # NetBox's MAX_PAGE_SIZE (configurable there too): also what limit=0 returns
    fail_next: int = 0
    requests: list[str] = field(default_factory=list)

    def add_machine(self, kind: str, name: str | None, *, base: str, site: str | None = None,
                    tenant: str | None = None, role: str | None = None, status: str = "active",
                    ip4: str | None = None, ip6: str | None = None, tags: tuple[str, ...] = (),
                    custom_fields: Mapping[str, Any] | None = None, platform: str | None = None,
                    config_context: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A virtual machine (``virtual-machines``) or device (``devices``) with its primary addresses."""
        pk = len(self.objects[kind]) + 1
        path = "virtualization/virtual-machines" if kind == "virtual-machines" else "dcim/devices"
        record: dict[str, Any] = {
            "id": pk, "url": f"{base}/api/{path}/{pk}/", "display": name or f"Unnamed device ({pk})", "name": name,
            "status": {"value": status, "label": status.title()},
            "site": nested("dcim/sites", 1, site.upper(), site, base) if site else None,
            "tenant": nested("tenancy/tenants", 1, tenant.title(), tenant, base) if tenant else None,
            "role": nested("dcim/device-roles", 1, role.title(), role, base) if role else None,
            "platform": nested("dcim/platforms", 1, platform, platform, base) if platform else None,
            "primary_ip": None, "primary_ip4": None, "primary_ip6": None,
            "tags": [{"id": i + 1, "url": f"{base}/api/extras/tags/{i + 1}/", "display": t, "name": t, "slug": t,
                      "color": "9e9e9e"} for i, t in enumerate(tags)],
            "custom_fields": dict(custom_fields or {}), "created": "2026-01-05T10:00:00Z",
            # the rendered config context (NetBox merges the contexts assigned by site, role, tag … into it)
            "config_context": dict(config_context or {}), "local_context_data": None,
            "last_updated": "2026-11-30T08:00:00Z",
        }
        for family, address in ((4, ip4), (6, ip6)):
            if address is None:
                continue
            ip = {"id": len(self.objects["ip-addresses"]) + 1, "display": address, "family": family,
                  "address": address}
            ip["url"] = f"{base}/api/ipam/ip-addresses/{ip['id']}/"
            self.objects["ip-addresses"].append({**ip, "family": {"value": family, "label": f"IPv{family}"},
                                                 "status": {"value": "active", "label": "Active"}, "tags": []})
            record[f"primary_ip{family}"] = ip
            record["primary_ip"] = record["primary_ip"] or ip
        self.objects[kind].append(record)
        return record


def _brief(record: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("id", "url", "display", "name", "description", "address", "family")
    return {k: record[k] for k in keys if k in record}


def _matches(record: Mapping[str, Any], query: Mapping[str, list[str]]) -> bool:
    for key, wanted in query.items():
        if key == "tag":
            if not {t["slug"] for t in record.get("tags", ())} & set(wanted):
                return False
        elif key == "status":
            if (record.get("status") or {}).get("value") not in wanted:
                return False
        elif key in SLUG_FILTERS:
            if (record.get(key) or {}).get("slug") not in wanted:
                return False
        elif key == "name":
            if record.get("name") not in wanted:
                return False
        elif key == "q" and not any(w.lower() in str(record.get("name") or "").lower() for w in wanted):
            return False
    return True


def _known_slugs(records: list[dict[str, Any]], key: str) -> set[str]:
    if key == "tag":
        return {t["slug"] for r in records for t in r.get("tags", ())}
    if key == "status":
        return {"active", "offline", "planned", "staged", "failed", "decommissioning", "inventory"}
    return {(r.get(key) or {}).get("slug") for r in records} - {None}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any, *, content_type: str = "application/json") -> None:
        data = (json.dumps(body) if content_type == "application/json" else str(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("API-Version", API_VERSION)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        state = self.server.state
        state.requests.append(self.path)
        if state.fail_next > 0:
            state.fail_next -= 1
            self._send(500, "<html><body><h1>Server Error (500)</h1></body></html>", content_type="text/html")
            return
        parts = urlsplit(self.path)
        if parts.path == "/api/":
            self._send(200, {k.split("/")[2]: f"{self.server.base}{k}" for k in ENDPOINTS})
            return
        if self.headers.get("Authorization") != f"Token {state.token}":
            self._send(403, {"detail": "Invalid token"})
            return
        if parts.path == "/api/status/":
            self._send(200, {"netbox-version": f"{API_VERSION}.1", "python-version": "3.12.3", "plugins": {}})
            return
        kind = ENDPOINTS.get(parts.path)
        if kind is None:
            self._send(404, {"detail": "Not found."})
            return
        query = parse_qs(parts.query, keep_blank_values=True)
        records = state.objects[kind]
        errors = {key: [f"Select a valid choice. {value} is not one of the available choices."]
                  for key in SLUG_FILTERS if key in query
                  for value in query[key] if value not in _known_slugs(records, key)}
        if errors:
            self._send(400, errors)
            return
        try:
            limit = min(state.max_page, int(query.get("limit", [DEFAULT_PAGE])[0]) or state.max_page)
            offset = int(query.get("offset", ["0"])[0])
        except ValueError:
            self._send(400, {"detail": "limit and offset must be integers"})
            return
        found = [r for r in records if _matches(r, {k: v for k, v in query.items()
                                                    if k not in ("limit", "offset", "brief")})]
        page = found[offset:offset + limit]
        brief = query.get("brief", ["false"])[0].lower() in ("1", "true")

        def link(at: int) -> str:
            rest = {k: v for k, v in query.items() if k not in ("limit", "offset")}
            return f"{self.server.base}{parts.path}?{urlencode({**rest, 'limit': limit, 'offset': at}, doseq=True)}"

        self._send(200, {
            "count": len(found),
            "next": link(offset + limit) if offset + limit < len(found) else None,
            "previous": link(max(0, offset - limit)) if offset > 0 else None,
            "results": [_brief(r) if brief else r for r in page],
        })


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: NetBoxData) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state
        self.base = f"http://127.0.0.1:{self.server_address[1]}"


@contextmanager
def netbox_server(state: NetBoxData | None = None) -> Iterator[tuple[str, NetBoxData]]:
    """A running server on 127.0.0.1 (a free port): its base URL and its data; stopped on exit."""
    data = state or NetBoxData()
    server = _Server(data)
    thread = threading.Thread(target=server.serve_forever, name="netbox", daemon=True)
    thread.start()
    try:
        yield server.base, data
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
