"""FakeCompute: a TEST DOUBLE of the Compute Engine REST API v1 on 127.0.0.1 (firewalls, operations, instances).

It speaks what the unmodified google-cloud-compute REST transport expects: ``/compute/v1/projects/{project}/…``
URLs, camelCase JSON, ``maxResults``/``nextPageToken`` paging, mutations answered with an Operation (numeric id
as a string, PENDING → RUNNING → DONE, ``targetLink``, ``error``) whose effect lands when DONE, ``requestId``
idempotency, PATCH as JSON merge patch, and errors shaped ``{"error": {"code", "message", "errors": [...]}}``
(409 duplicate, 400 invalid, 404 unknown).  Requests are counted per (method, kind); the n-th request of a kind
can fail (any status, 429 with Retry-After), hang, or end its operation in an error.  Never used outside tests.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import itertools
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PUBLIC = "https://www.googleapis.com/compute/v1"  # what the real API writes into links
NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?\Z")
PROTOCOLS = {"tcp", "udp", "icmp", "esp", "ah", "sctp", "ipip", "all"}
PORTED = {"tcp", "udp", "sctp", "6", "17", "132"}
MUTATIONS = ("firewalls.insert", "firewalls.patch", "firewalls.update", "firewalls.delete")
_P = r"/compute/v1/projects/(?P<project>[^/]+)"
ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (m, re.compile(p + r"\Z"), k) for m, p, k in [
        ("GET", _P + "/global/firewalls", "firewalls.list"),
        ("POST", _P + "/global/firewalls", "firewalls.insert"),
        ("GET", _P + "/global/firewalls/(?P<name>[^/]+)", "firewalls.get"),
        ("PATCH", _P + "/global/firewalls/(?P<name>[^/]+)", "firewalls.patch"),
        ("PUT", _P + "/global/firewalls/(?P<name>[^/]+)", "firewalls.update"),
        ("DELETE", _P + "/global/firewalls/(?P<name>[^/]+)", "firewalls.delete"),
        ("POST", _P + "/global/operations/(?P<operation>[^/]+)/wait", "operations.wait"),
        ("GET", _P + "/global/operations/(?P<operation>[^/]+)", "operations.get"),
        ("GET", _P + "/zones/(?P<zone>[^/]+)/instances", "instances.list"),
        ("GET", _P + "/aggregated/instances", "instances.aggregatedList"),
    ]
]
REASONS = {400: "invalid", 403: "forbidden", 404: "notFound", 409: "alreadyExists", 429: "rateLimitExceeded",
           500: "backendError", 503: "backendError"}


class ApiError(Exception):
    """An HTTP error answer in the API's JSON shape."""

    def __init__(self, code: int, message: str, reason: str | None = None, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.code, self.retry_after = code, retry_after
        self.payload = {"error": {"code": code, "message": message, "errors": [
            {"message": message, "domain": "global", "reason": reason or REASONS.get(code, "error")}]}}


@dataclass
class Fault:
    """Make the ``nth`` next request of ``kind`` fail with ``status``, or serve it but hold the answer ``hang`` s."""

    kind: str
    nth: int
    status: int = 500
    hang: float = 0.0
    retry_after: str | None = None
    operation_error: str | None = None  # instead: accept the call, then end its operation with this error code
    times: int = 1  # requests nth, nth+1 … nth+times-1 all fail


@dataclass
class _Operation:
    resource: dict[str, Any]
    due: float
    effect: Callable[[], None] | None
    error: str | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _bad(field: str, value: object, why: str) -> ApiError:
    return ApiError(400, f"Invalid value for field '{field}': '{value}'. {why}")


class FakeCompute:
    """The in-memory Compute API and its loopback HTTP server (start/stop, or use as a context manager)."""

    def __init__(self, *, page_cap: int = 500, op_seconds: float = 0.005, wait_hold: float = 2.0,
                 max_ranges: int = 256, quota: int | None = None, address: str = "127.0.0.1", port: int = 0) -> None:
        self.page_cap, self.op_seconds, self.wait_hold = page_cap, op_seconds, wait_hold
        self.max_ranges, self.quota = max_ranges, quota
        self.firewalls: dict[str, dict[str, dict[str, Any]]] = {}
        self.instances: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.operations: dict[str, _Operation] = {}
        self.request_ids: dict[str, str] = {}
        self.counts: Counter[tuple[str, str]] = Counter()
        self.faults: list[Fault] = []
        self._ids = itertools.count(4_000_000_000_000_000_001)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer((address, port), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), name="fake-compute",
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeCompute:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # releases hanging requests
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeCompute:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ what tests use

    def fail(self, kind: str, *, nth: int = 1, times: int = 1, status: int = 500, hang: float = 0.0,
             retry_after: str | None = None, operation_error: str | None = None) -> None:
        """Make the ``nth`` next request of ``kind`` (e.g. ``firewalls.insert``) fail, hang, or fail its operation."""
        with self._lock:
            self.faults.append(Fault(kind, nth, status, hang, retry_after, operation_error, times))

    def calls(self, kind: str) -> int:
        """Requests of ``kind`` so far (every method)."""
        return sum(n for (_, k), n in self.counts.items() if k == kind)

    def mutating_calls(self) -> int:
        return sum(self.calls(k) for k in MUTATIONS)

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()

    def rules(self, project: str) -> dict[str, dict[str, Any]]:
        """A deep copy of the project's rules by name (operations due by now included)."""
        with self._lock:
            self._advance()
            return _copy(self.firewalls.get(project, {}))

    def seed(self, project: str, body: dict[str, Any]) -> None:
        """Create a rule directly (someone else's rule, or a hand edit), validated like an insert."""
        with self._lock:
            rule = self._validated(project, body)
            self.firewalls.setdefault(project, {})[rule["name"]] = rule

    def add_instance(self, project: str, zone: str, name: str, *, labels: dict[str, str] | None = None,
                     interfaces: list[dict[str, str]] | None = None, status: str = "RUNNING",
                     tags: tuple[str, ...] = (), network: str = "default") -> dict[str, Any]:
        """An instance as instances.get returns it (interfaces: networkIP and optionally ipv6Address)."""
        nics = [{"kind": "compute#networkInterface", "name": f"nic{i}", "network":
                 f"{PUBLIC}/projects/{project}/global/networks/{network}",
                 "stackType": "IPV4_IPV6" if "ipv6Address" in nic else "IPV4_ONLY", **nic}
                for i, nic in enumerate(interfaces or [])]
        zone_url = f"{PUBLIC}/projects/{project}/zones/{zone}"
        instance = {"kind": "compute#instance", "id": str(next(self._ids)), "name": name, "zone": zone_url,
                    "status": status, "networkInterfaces": nics, "tags": {"items": list(tags)},
                    "selfLink": f"{zone_url}/instances/{name}", "creationTimestamp": _now()}
        if labels:
            instance["labels"] = labels
        with self._lock:
            self.instances.setdefault((project, zone), []).append(instance)
        return instance

    # ------------------------------------------------------------------ HTTP plumbing

    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        split = urlsplit(request.path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        route = next(((k, m.groupdict()) for meth, p, k in ROUTES if meth == method and (m := p.match(split.path))),
                     None)
        kind, params = route if route is not None else ("unknown", {})
        retry_after: str | None = None
        with self._lock:
            self.counts[(method, kind)] += 1
            fault = self._fault(kind)
        try:
            if fault is not None and not fault.hang and fault.operation_error is None:
                raise ApiError(fault.status, f"injected failure of {kind}", retry_after=fault.retry_after)
            if route is None:
                raise ApiError(404, f"The requested URL {split.path} was not found on this server.")
            body = json.loads(raw) if raw else {}
            status, answer = 200, self._dispatch(kind, params, query, body, fault)
        except ApiError as exc:
            status, answer = exc.code, exc.payload
            retry_after = exc.retry_after
        data = json.dumps(answer).encode()
        if fault is not None and fault.hang:
            self._stop.wait(fault.hang)  # served, but the answer comes too late: the client has given up
        with contextlib.suppress(OSError):  # the client may have given up (hang faults)
            request.send_response(status)
            if retry_after is not None:
                request.send_header("Retry-After", retry_after)
            request.send_header("Content-Type", "application/json; charset=UTF-8")
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            request.wfile.write(data)

    def _fault(self, kind: str) -> Fault | None:
        hit: Fault | None = None
        for fault in [f for f in self.faults if f.kind == kind]:
            fault.nth -= 1
            if fault.nth <= 0 and hit is None:
                hit, fault.times = fault, fault.times - 1
                if fault.times == 0:
                    self.faults.remove(fault)
        return hit

    def _dispatch(self, kind: str, params: dict[str, str], query: dict[str, str], body: dict[str, Any],
                  fault: Fault | None) -> Any:
        if kind == "operations.wait":
            return self._wait(params["project"], params["operation"])
        with self._lock:
            self._advance()
            if kind in MUTATIONS:
                return self._mutate(kind, params, query, body, fault)
            return getattr(self, "_" + kind.replace(".", "_"))(params, query)

    # ------------------------------------------------------------------ firewalls

    def _firewalls_list(self, params: dict[str, str], query: dict[str, str]) -> dict[str, Any]:
        project = params["project"]
        rules = [self.firewalls.get(project, {})[n] for n in sorted(self.firewalls.get(project, {}))]
        page = self._page(rules, query)
        return {"kind": "compute#firewallList", "id": f"projects/{project}/global/firewalls",
                "selfLink": f"{PUBLIC}/projects/{project}/global/firewalls", **page}

    def _page(self, items: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
        size = int(query.get("maxResults", 500))
        if not 0 <= size <= 500:
            raise _bad("maxResults", size, "Must be less than or equal to 500")
        size = min(size or 500, self.page_cap)
        token = query.get("pageToken")
        try:
            start = int(base64.urlsafe_b64decode(token.encode()).decode().split(":")[1]) if token else 0
        except (ValueError, IndexError) as exc:
            raise _bad("pageToken", token, "Invalid page token") from exc
        out: dict[str, Any] = {}
        if items[start:start + size]:
            out["items"] = items[start:start + size]
        if start + size < len(items):
            out["nextPageToken"] = base64.urlsafe_b64encode(f"offset:{start + size}".encode()).decode()
        return out

    def _firewalls_get(self, params: dict[str, str], query: dict[str, str]) -> dict[str, Any]:
        return self._existing(params["project"], params["name"])

    def _existing(self, project: str, name: str) -> dict[str, Any]:
        rule = self.firewalls.get(project, {}).get(name)
        if rule is None:
            raise ApiError(404, f"The resource 'projects/{project}/global/firewalls/{name}' was not found")
        return rule

    def _mutate(self, kind: str, params: dict[str, str], query: dict[str, str], body: dict[str, Any],
                fault: Fault | None) -> dict[str, Any]:
        project, request_id = params["project"], query.get("requestId")
        if request_id and request_id in self.request_ids:  # a retry of a call already accepted: same operation
            return _view(self.operations[self.request_ids[request_id]])
        verb = kind.split(".")[1]
        name = body.get("name") if verb == "insert" else params["name"]
        rules = self.firewalls.setdefault(project, {})
        if verb == "insert":
            rule = self._validated(project, body)
            pending = {o.resource["targetLink"] for o in self.operations.values() if o.resource["status"] != "DONE"
                       and o.resource["operationType"] == "insert"}
            if name in rules or self._link(project, str(name)) in pending:
                raise ApiError(409, f"The resource 'projects/{project}/global/firewalls/{name}' already exists")
            if self.quota is not None and len(rules) + len(pending) >= self.quota:
                raise ApiError(403, f"Quota 'FIREWALLS' exceeded.  Limit: {self.quota}.0 globally.", "quotaExceeded")
            effect: Callable[[], None] = lambda: rules.__setitem__(rule["name"], rule)  # noqa: E731
        else:
            old = self._existing(project, str(name))
            if verb == "delete":
                def effect() -> None:
                    rules.pop(str(name), None)
            else:
                merged = _merge_patch(old, body) if verb == "patch" else {**body, "name": name}
                new = self._validated(project, merged, keep=old)
                if new["direction"] != old["direction"] or bool(new.get("allowed")) != bool(old.get("allowed")):
                    raise _bad("resource.direction", new["direction"], "A rule's direction and action cannot change")
                effect = lambda: rules.__setitem__(str(name), new)  # noqa: E731
        return _view(self._new_operation(project, verb, str(name), effect, fault, request_id))

    def _link(self, project: str, name: str) -> str:
        return f"{PUBLIC}/projects/{project}/global/firewalls/{name}"

    def _validated(self, project: str, body: dict[str, Any], keep: dict[str, Any] | None = None) -> dict[str, Any]:
        name = body.get("name")
        if not isinstance(name, str) or len(name) > 63 or not NAME.match(name):
            raise _bad("resource.name", name, "Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'")
        rule = {"direction": "INGRESS", "priority": 1000, "logConfig": {"enable": False}, "disabled": False,
                **json.loads(json.dumps(body))}
        if rule["direction"] not in ("INGRESS", "EGRESS"):
            raise _bad("resource.direction", rule["direction"], "Must be INGRESS or EGRESS")
        if not 0 <= int(rule["priority"]) <= 65535:
            raise _bad("resource.priority", rule["priority"], "Must be between 0 and 65535")
        if bool(rule.get("allowed")) == bool(rule.get("denied")):
            raise _bad("resource", name, "Exactly one of 'allowed' or 'denied' must be specified")
        for entry in rule.get("allowed") or rule.get("denied") or []:
            self._check_entry(entry)
        self._check_ranges(rule)
        if rule["direction"] == "EGRESS" and rule.get("sourceTags"):
            raise _bad("resource.sourceTags", rule["sourceTags"], "Source tags cannot be used in EGRESS rules")
        if rule.get("targetTags") and rule.get("targetServiceAccounts"):
            raise _bad("resource.targetServiceAccounts", rule["targetServiceAccounts"], "Cannot be used with tags")
        network = str(rule.get("network") or "global/networks/default")
        tail = network[network.index("projects/"):] if "projects/" in network else f"projects/{project}/{network}"
        now = {"kind": "compute#firewall", "id": str(next(self._ids)), "creationTimestamp": _now()}
        return {**rule, **{k: (keep or now)[k] for k in now}, "network": f"{PUBLIC}/{tail}",
                "selfLink": self._link(project, name)}

    @staticmethod
    def _check_entry(entry: dict[str, Any]) -> None:
        protocol = str(entry.get("IPProtocol", ""))
        if protocol not in PROTOCOLS and not (protocol.isdigit() and int(protocol) <= 255):
            raise _bad("resource.allowed[0].IPProtocol", protocol, "Unknown protocol")
        for port in entry.get("ports") or []:
            lo, _, hi = str(port).partition("-")
            if protocol not in PORTED or not (lo.isdigit() and (hi or lo).isdigit()
                                              and int(lo) <= int(hi or lo) <= 65535):
                raise _bad("resource.allowed[0].ports", port, "Ports need tcp, udp or sctp and 0-65535")

    def _check_ranges(self, rule: dict[str, Any]) -> None:
        versions: set[int] = set()
        for key in ("sourceRanges", "destinationRanges"):
            ranges = rule.get(key) or []
            if len(ranges) > self.max_ranges:
                raise _bad(f"resource.{key}", len(ranges), f"At most {self.max_ranges} ranges are allowed")
            for text in ranges:
                try:
                    versions.add(ipaddress.ip_network(text, strict=False).version)
                except ValueError as exc:
                    raise _bad(f"resource.{key}", text, "Must be a valid CIDR range") from exc
        if len(versions) > 1:
            raise _bad("resource.sourceRanges", rule.get("sourceRanges"), "IPv4 and IPv6 ranges cannot be mixed")

    # ------------------------------------------------------------------ operations

    def _new_operation(self, project: str, verb: str, name: str, effect: Callable[[], None], fault: Fault | None,
                       request_id: str | None) -> _Operation:
        op_id = next(self._ids)
        op_name = f"operation-{int(time.time() * 1000)}-{op_id:x}"
        resource = {"kind": "compute#operation", "id": str(op_id), "name": op_name, "operationType": verb,
                    "targetLink": self._link(project, name), "targetId": str(op_id + 7), "status": "PENDING",
                    "user": "anonymous@example.invalid", "progress": 0, "insertTime": _now(),
                    "selfLink": f"{PUBLIC}/projects/{project}/global/operations/{op_name}"}
        operation = _Operation(resource, time.monotonic() + self.op_seconds, effect,
                               fault.operation_error if fault is not None else None)
        self.operations[op_name] = operation
        if request_id:
            self.request_ids[request_id] = op_name
        return operation

    def _advance(self) -> None:
        """Finish every operation whose time has come (its effect lands now)."""
        now = time.monotonic()
        for op in self.operations.values():
            res = op.resource
            if res["status"] == "DONE":
                continue
            if now < op.due:
                res.update(status="RUNNING", startTime=res.get("startTime") or _now(), progress=50)
                continue
            if op.error is None and op.effect is not None:
                op.effect()
            elif op.error is not None:
                res["error"] = {"errors": [{"code": op.error, "message": f"injected operation error {op.error}"}]}
                res.update(httpErrorStatusCode=400, httpErrorMessage="BAD REQUEST")
            res.update(status="DONE", progress=100, endTime=_now())

    def _operation(self, project: str, name: str) -> _Operation:
        op = self.operations.get(name)
        if op is None or f"/projects/{project}/" not in op.resource["selfLink"]:
            raise ApiError(404, f"The resource 'projects/{project}/global/operations/{name}' was not found")
        return op

    def _operations_get(self, params: dict[str, str], query: dict[str, str]) -> dict[str, Any]:
        return _view(self._operation(params["project"], params["operation"]))

    def _wait(self, project: str, name: str) -> dict[str, Any]:
        """operations.wait: hold the request until DONE (or ``wait_hold`` seconds, the real API's 2 minutes)."""
        deadline = time.monotonic() + self.wait_hold
        while True:
            with self._lock:
                self._advance()
                op = self._operation(project, name)
                if op.resource["status"] == "DONE" or time.monotonic() >= deadline:
                    return _view(op)
            if self._stop.wait(0.001):
                raise ApiError(503, "server shutting down")

    # ------------------------------------------------------------------ instances

    def _instances_list(self, params: dict[str, str], query: dict[str, str]) -> dict[str, Any]:
        project, zone = params["project"], params["zone"]
        if (project, zone) not in self.instances:
            raise ApiError(404, f"The resource 'projects/{project}/zones/{zone}' was not found")
        page = self._page(self.instances[(project, zone)], query)
        return {"kind": "compute#instanceList", "id": f"projects/{project}/zones/{zone}/instances",
                "selfLink": f"{PUBLIC}/projects/{project}/zones/{zone}/instances", **page}

    def _instances_aggregatedList(self, params: dict[str, str], query: dict[str, str]) -> dict[str, Any]:
        project = params["project"]
        zones = sorted(z for p, z in self.instances if p == project)
        flat = [i for z in zones for i in self.instances[(project, z)]]
        page = self._page(flat, query)
        items: dict[str, Any] = {}
        for zone in zones:
            found = [i for i in page.get("items", []) if i["zone"].endswith(f"/zones/{zone}")]
            items[f"zones/{zone}"] = {"instances": found} if found else {"warning": {
                "code": "NO_RESULTS_ON_PAGE", "message": f"There are no results for scope 'zones/{zone}' on this page.",
                "data": [{"key": "scope", "value": f"zones/{zone}"}]}}
        out = {"kind": "compute#instanceAggregatedList", "id": f"projects/{project}/aggregated/instances",
               "items": items, "selfLink": f"{PUBLIC}/projects/{project}/aggregated/instances"}
        if "nextPageToken" in page:
            out["nextPageToken"] = page["nextPageToken"]
        return out


def _view(op: _Operation) -> dict[str, Any]:
    return _copy(op.resource)


def _copy(value: dict[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(value))
    return copied


def _merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7396 JSON merge patch: objects merge, everything else (lists included) is replaced, null removes."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge_patch(out[key], value)
        else:
            out[key] = value
    return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes

    def _serve(self) -> None:
        self.server.fake.handle(self, self.command)  # type: ignore[attr-defined]

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(**options: Any) -> Iterator[FakeCompute]:
    """A started fake for a pytest fixture (``yield from serve()``); stopped afterwards."""
    fake = FakeCompute(**options).start()
    try:
        yield fake
    finally:
        fake.stop()

