"""TEST DOUBLE of the Azure Blob service on 127.0.0.1 (HTTPS, trustme certificate): one storage account, path-style
(``https://127.0.0.1:PORT/devstoreaccount1/container/blob``, as Azurite and the storage emulator address it).

Never used on a production path.  It follows the Blob service REST contract that the unmodified
azure-storage-blob client relies on for ``ContainerClient.list_blobs`` and ``download_blob().readall()``:

* List Blobs (https://learn.microsoft.com/rest/api/storageservices/list-blobs and
  https://learn.microsoft.com/rest/api/storageservices/enumerating-blob-resources):
  ``GET /{account}/{container}?restype=container&comp=list[&prefix=…][&marker=…][&maxresults=…]`` answers 200
  ``application/xml`` ``<EnumerationResults ServiceEndpoint=… ContainerName=…>`` with ``<Prefix>``, ``<Marker>``,
  ``<MaxResults>``, ``<Blobs><Blob><Name>…<Properties>…</Properties></Blob>…</Blobs>`` in name order and a
  ``<NextMarker>`` that is empty when the listing is complete, else an opaque value the client passes back as
  ``marker``.  At most 5,000 entries a page ("If the maximum number of results is not specified in the request or
  if it's greater than 5,000, the server returns up to the maximum of 5,000 items"); here also at most
  ``page_size``, so tests see paging; ``maxresults`` ≤ 0 is 400 (OutOfRangeQueryParameterValue).
* Get Blob (https://learn.microsoft.com/rest/api/storageservices/get-blob) with the range headers of
  https://learn.microsoft.com/rest/api/storageservices/specifying-the-range-header-for-blob-service-operations:
  ``x-ms-range`` wins over ``Range``; ``bytes=start-`` and ``bytes=start-end`` (an end past the blob is cut to it);
  a range answers 206 with ``Content-Range: bytes start-end/size`` (and the whole blob's MD5 as
  ``x-ms-blob-content-md5``), none answers 200 with ``Content-MD5``; a start at or past the end (so any range of an
  empty blob) is 416 InvalidRange with ``Content-Range: bytes */size``.  Every answer carries ``Content-Length``,
  ``ETag`` (quoted), ``Last-Modified`` (RFC 1123), ``x-ms-blob-type: BlockBlob``, ``x-ms-creation-time``,
  ``x-ms-lease-state``/``-status``, ``Accept-Ranges``, ``x-ms-version`` (the request's) and ``x-ms-request-id``.
  What the client actually sends: ``download_blob`` asks for ``x-ms-range: bytes=0-33554431`` (its
  ``max_single_get_size``, 32 MiB) and, for a larger blob, further ``x-ms-range`` chunks of ``max_chunk_get_size``
  (4 MiB); it reads the blob's size from ``Content-Range`` (missing: "Required Content-Range response header is
  missing or malformed"), and on a 416 for an unranged download (an empty blob) it asks again without a range.
* Errors (https://learn.microsoft.com/rest/api/storageservices/common-rest-api-error-codes,
  https://learn.microsoft.com/rest/api/storageservices/blob-service-error-codes): the code in ``x-ms-error-code``
  and an XML body ``<Error><Code>…</Code><Message>…\\nRequestId:…\\nTime:…</Message></Error>``: 404
  ContainerNotFound, 404 BlobNotFound, 403 AuthenticationFailed (with ``<AuthenticationErrorDetail>``) when a
  SAS is configured and the request's ``sig`` does not match it, 400 InvalidUri for another account, 405
  UnsupportedHttpVerb, 400 InvalidQueryParameterValue for another ``comp``.  A request without any ``sig`` to a
  container that needs a SAS is answered the way Azure answers an anonymous request to a private container: 404
  ResourceNotFound ("The specified resource does not exist."), by design, so that a stranger cannot tell whether
  the container exists (github.com/Azure/azure-storage-cpp/issues/397).

Only the ``sig`` of a SAS is checked (against the configured token's); permissions, expiry and the string to sign
are not.  Requests are recorded (method, path, query, headers) for tests, and the n-th request of a kind
(``list`` or ``get``) can be made to fail with a status (a 500 InternalError, a 503 ServerBusy …).
"""

from __future__ import annotations

import base64
import hashlib
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape, quoteattr

from simulators.https import serving_https

ACCOUNT = "devstoreaccount1"  # the storage emulator's (and Azurite's) account name
MAX_PAGE = 5000
SERVICE_VERSION = "2025-11-05"  # answered when a request names none
_MESSAGES = {
    "ContainerNotFound": "The specified container does not exist.",
    "BlobNotFound": "The specified blob does not exist.",
    "ResourceNotFound": "The specified resource does not exist.",
    "AuthenticationFailed": "Server failed to authenticate the request. Make sure the value of Authorization header "
                            "is formed correctly including the signature.",
    "InvalidRange": "The range specified is invalid for the current size of the resource.",
    "InvalidUri": "The requested URI does not represent any resource on the server.",
    "UnsupportedHttpVerb": "The resource doesn't support specified Http Verb.",
    "InvalidQueryParameterValue": "Value for one of the query parameters specified in the request URI is invalid.",
    "OutOfRangeQueryParameterValue": "One of the query parameters specified in the request URI is outside the "
                                     "permissible range.",
    "InvalidHeaderValue": "The value for one of the HTTP headers is not in the correct format.",
    "InternalError": "The server encountered an internal error. Please retry the request.",
    "ServerBusy": "The server is currently unable to receive requests. Please retry your request.",
}
_FAULT_CODES = {500: "InternalError", 503: "ServerBusy"}


class BlobError(Exception):
    """A Blob service error answer (status, ``x-ms-error-code``, the XML body's message and details)."""

    def __init__(self, status: int, code: str, details: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(code)
        self.status, self.code = status, code
        self.details, self.headers = details or {}, headers or {}


@dataclass
class Blob:
    """One block blob: its bytes and the properties the service reports."""

    data: bytes
    content_type: str = "application/octet-stream"
    etag: str = field(default_factory=lambda: f'"0x{uuid.uuid4().hex[:15].upper()}"')
    created: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    modified: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    @property
    def md5(self) -> str:
        return base64.b64encode(hashlib.md5(self.data, usedforsecurity=False).digest()).decode()


@dataclass
class Request:
    """One request as the fake saw it (query values decoded, header names lower-case)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    kind: str


@dataclass
class FakeBlobService:
    """The state and controls of the fake (the HTTP side is :class:`_Handler`)."""

    account: str = ACCOUNT
    page_size: int = MAX_PAGE
    sas_token: str | None = None  # when set, every request must carry its ``sig``
    containers: dict[str, dict[str, Blob]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    faults: dict[tuple[str, int], int] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    base_url: str = ""
    ca_file: str = ""

    # ------------------------------------------------------------------ controls used by tests

    @property
    def account_url(self) -> str:
        """What a client is given as ``account_url`` (path-style: the account is the first path segment)."""
        return f"{self.base_url}/{self.account}"

    def create_container(self, name: str) -> None:
        with self.lock:
            self.containers.setdefault(name, {})

    def put_blob(self, container: str, name: str, data: bytes, content_type: str = "application/json") -> Blob:
        """Create or replace a block blob (as an upload would), creating its container if need be."""
        with self.lock:
            blob = Blob(data, content_type)
            self.containers.setdefault(container, {})[name] = blob
            return blob

    def delete_blob(self, container: str, name: str) -> None:
        with self.lock:
            del self.containers[container][name]

    def fail(self, kind: str, status: int = 500, nth: int = 1) -> None:
        """Make the ``nth`` (counted from now on) request of ``kind`` (``list`` or ``get``) answer ``status``."""
        with self.lock:
            self.faults[(kind, self.calls[kind] + nth)] = status

    def of_kind(self, kind: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.kind == kind]

    # ------------------------------------------------------------------ request handling

    def handle(self, method: str, target: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        segments = parts.path.lstrip("/").split("/", 2)
        account = unquote(segments[0])
        container = unquote(segments[1]) if len(segments) > 1 else ""
        blob = unquote(segments[2]) if len(segments) > 2 else ""
        kind = "get" if blob else "list" if query.get("comp") == "list" else "other"
        with self.lock:
            self.requests.append(Request(method, unquote(parts.path), query, headers, kind))
            self.calls[kind] += 1
            fault = self.faults.pop((kind, self.calls[kind]), None)
        if account != self.account or not container:
            raise BlobError(400, "InvalidUri")
        self._authorize(query)
        if fault is not None:
            raise BlobError(fault, _FAULT_CODES.get(fault, "InternalError"))
        if method not in ("GET", "HEAD"):
            raise BlobError(405, "UnsupportedHttpVerb")
        with self.lock:
            blobs = self.containers.get(container)
            if blobs is None:
                raise BlobError(404, "ContainerNotFound")
            if blob:
                found = blobs.get(blob)
                if found is None:
                    raise BlobError(404, "BlobNotFound")
                return self._get(found, headers)
            if query.get("restype") != "container" or query.get("comp") != "list":
                raise BlobError(400, "InvalidQueryParameterValue", {"QueryParameterName": "comp"})
            return self._list(container, sorted(blobs.items()), query)

    def _authorize(self, query: dict[str, str]) -> None:
        if self.sas_token is None:
            return
        expected = parse_qs(self.sas_token.lstrip("?")).get("sig", [""])[0]
        given = query.get("sig")
        if given is None:  # anonymous, to a container that is not public
            raise BlobError(404, "ResourceNotFound")
        if given != expected:
            raise BlobError(403, "AuthenticationFailed", {
                "AuthenticationErrorDetail": "Signature did not match. String to sign used was r"})

    def _list(self, container: str, blobs: list[tuple[str, Blob]],
              query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        prefix, marker = query.get("prefix", ""), query.get("marker", "")
        try:
            asked = int(query.get("maxresults", MAX_PAGE))
        except ValueError:
            raise BlobError(400, "InvalidQueryParameterValue", {"QueryParameterName": "maxresults"}) from None
        if asked <= 0:
            raise BlobError(400, "OutOfRangeQueryParameterValue", {"QueryParameterName": "maxresults"})
        after = _unmark(marker) if marker else ""
        matching = [(n, b) for n, b in blobs if n.startswith(prefix) and (not marker or n >= after)]
        size = min(asked, MAX_PAGE, self.page_size)
        page, rest = matching[:size], matching[size:]
        next_marker = _mark(rest[0][0]) if rest else ""
        items = "".join(
            f"<Blob><Name>{escape(name)}</Name><Properties>"
            f"<Creation-Time>{_http_date(b.created)}</Creation-Time><Last-Modified>{_http_date(b.modified)}"
            f"</Last-Modified><Etag>{escape(b.etag)}</Etag><Content-Length>{len(b.data)}</Content-Length>"
            f"<Content-Type>{escape(b.content_type)}</Content-Type><Content-Encoding /><Content-Language />"
            f"<Content-CRC64 /><Content-MD5>{b.md5}</Content-MD5><Cache-Control /><Content-Disposition />"
            f"<BlobType>BlockBlob</BlobType><AccessTier>Hot</AccessTier><AccessTierInferred>true</AccessTierInferred>"
            f"<LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState>"
            f"<ServerEncrypted>true</ServerEncrypted></Properties><OrMetadata /></Blob>"
            for name, b in page)
        endpoint = f"{self.base_url}/{self.account}/"
        body = (f'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint={quoteattr(endpoint)} '
                f"ContainerName={quoteattr(container)}>"
                + (f"<Prefix>{escape(prefix)}</Prefix>" if "prefix" in query else "")
                + (f"<Marker>{escape(marker)}</Marker>" if marker else "")
                + (f"<MaxResults>{asked}</MaxResults>" if "maxresults" in query else "")
                + f"<Blobs>{items}</Blobs><NextMarker>{escape(next_marker)}</NextMarker></EnumerationResults>")
        return 200, {"Content-Type": "application/xml"}, body.encode()

    @staticmethod
    def _get(blob: Blob, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        size = len(blob.data)
        common = {"Content-Type": blob.content_type, "ETag": blob.etag, "Last-Modified": _http_date(blob.modified),
                  "Accept-Ranges": "bytes", "x-ms-blob-type": "BlockBlob", "x-ms-creation-time": _http_date(
                      blob.created), "x-ms-lease-state": "available", "x-ms-lease-status": "unlocked",
                  "x-ms-server-encrypted": "true"}
        asked = headers.get("x-ms-range") or headers.get("range")
        if not asked:
            return 200, {**common, "Content-MD5": blob.md5}, blob.data
        start, end = _range(asked)
        if start >= size:
            raise BlobError(416, "InvalidRange", headers={"Content-Range": f"bytes */{size}"})
        end = size - 1 if end is None else min(end, size - 1)
        return 206, {**common, "Content-Range": f"bytes {start}-{end}/{size}", "x-ms-blob-content-md5": blob.md5}, \
            blob.data[start:end + 1]


def _range(text: str) -> tuple[int, int | None]:
    """(start, end or None) of ``bytes=start-`` / ``bytes=start-end``; anything else is 400 InvalidHeaderValue."""
    unit, _, span = text.strip().partition("=")
    first, dash, last = span.partition("-")
    if unit != "bytes" or not dash or not first.isdigit() or (last and not last.isdigit()) or (
            last and int(last) < int(first)):
        raise BlobError(400, "InvalidHeaderValue", {"HeaderName": "x-ms-range", "HeaderValue": text})
    return int(first), int(last) if last else None


def _mark(name: str) -> str:
    """An opaque marker naming the first blob of the next page."""
    return "2!" + base64.urlsafe_b64encode(name.encode()).decode()


def _unmark(marker: str) -> str:
    if not marker.startswith("2!"):
        raise BlobError(400, "InvalidQueryParameterValue", {"QueryParameterName": "marker"})
    try:
        return base64.urlsafe_b64decode(marker[2:].encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise BlobError(400, "InvalidQueryParameterValue", {"QueryParameterName": "marker"}) from None


def _http_date(when: datetime) -> str:
    return format_datetime(when, usegmt=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    service: FakeBlobService

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        request_id = str(uuid.uuid4())
        try:
            status, out_headers, body = self.service.handle(self.command, self.path, headers)
        except BlobError as exc:
            status, out_headers = exc.status, {**exc.headers, "x-ms-error-code": exc.code,
                                               "Content-Type": "application/xml"}
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
            details = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in exc.details.items())
            message = escape(f"{_MESSAGES.get(exc.code, exc.code)}\nRequestId:{request_id}\nTime:{now}")
            body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{exc.code}</Code>'
                    f"<Message>{message}</Message>{details}</Error>").encode()
        self.send_response(status)
        version = headers.get("x-ms-version", SERVICE_VERSION)
        extra = {"x-ms-request-id": request_id, "x-ms-version": version}
        if "x-ms-client-request-id" in headers:
            extra["x-ms-client-request-id"] = headers["x-ms-client-request-id"]
        for key, value in {**out_headers, **extra}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_PUT = do_DELETE = do_POST = _serve


@contextmanager
def running_fake_blob(directory: Path, *, address: str = "127.0.0.1", port: int = 0,
                      ca_name: str = "fake-blob-ca.pem", service: FakeBlobService | None = None,
                      **options: Any) -> Iterator[FakeBlobService]:
    """Serve ``service`` (default: a new fake with ``options``) on a loopback port (default: a free one) over
    HTTPS, its CA written to ``directory / ca_name``; stopped on exit."""
    service = FakeBlobService(**options) if service is None else service
    service.ca_file = str(directory / ca_name)
    handler = type("Handler", (_Handler,), {"service": service})
    with serving_https(handler, directory / ca_name, address=address, port=port, name="fake-blob") as url:
        service.base_url = url
        yield service
