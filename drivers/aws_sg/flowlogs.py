"""AWS VPC Flow Logs as a flow source (``vpc``): the default (version 2) and custom formats, plain or gzip, from
local files or from S3 (``s3://bucket/prefix``, every object under the prefix).

The format (https://docs.aws.amazon.com/vpc/latest/userguide/flow-log-records.html): space-separated fields, ``-``
for an absent value.  Files AWS delivers to S3 start with a header line naming the fields in their order (any
order a custom format gives); a file without one (e.g. a CloudWatch Logs export) is read as the default format.
Only ``log-status OK`` rows are flows (``NODATA`` and ``SKIPDATA`` rows are counted, not read).  Where present,
``pkt-srcaddr``/``pkt-dstaddr`` (the addresses of the packets, not of the interface) are the flow's ends, and
``tcp-flags`` says who opened the connection: the flags are OR-ed over the aggregation window and only FIN (1),
SYN (2), RST (4) and SYN-ACK (18) are logged, so a record with SYN-ACK is the reply of the listener (the
destination opened it) and one with SYN alone is the opener's.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from drivers.endpoints import ANONYMOUS_REFUSAL, is_loopback_url
from drivers.flowfiles import GZIP_MAGIC, gunzip, read_bytes
from orchestrator.model import Diagnostic, FlowLogError, FlowRecord, Location, TableFormat

DEFAULT_FIELDS = ("version", "account-id", "interface-id", "srcaddr", "dstaddr", "srcport", "dstport", "protocol",
                  "packets", "bytes", "start", "end", "action", "log-status")
KNOWN_FIELDS = frozenset({
    *DEFAULT_FIELDS, "vpc-id", "subnet-id", "instance-id", "tcp-flags", "type", "pkt-srcaddr", "pkt-dstaddr",
    "region", "az-id", "sublocation-type", "sublocation-id", "pkt-src-aws-service", "pkt-dst-aws-service",
    "flow-direction", "traffic-path", "ecs-cluster-arn", "ecs-cluster-name", "ecs-container-instance-arn",
    "ecs-container-instance-id", "ecs-container-id", "ecs-second-container-id", "ecs-service-name",
    "ecs-task-definition-arn", "ecs-task-arn", "ecs-task-id", "reject-reason", "resource-id",
    "encryption-status",
})
REQUIRED = ("srcaddr", "dstaddr", "protocol", "start", "end")
ACTIONS = {"ACCEPT": "accept", "REJECT": "reject"}
SYN, SYN_ACK = 2, 18


def _open_text(location: str, data: bytes) -> io.TextIOBase:
    """Lines of text; a byte that is not UTF-8 only spoils its own record."""
    return io.TextIOWrapper(io.BytesIO(gunzip(location, data)), encoding="utf-8", errors="replace", newline=None)


def _header(first: str) -> tuple[str, ...] | None:
    """The field names of a header line, or None when the line is a record (its first token is a number)."""
    tokens = tuple(first.split())
    if not tokens or tokens[0][:1].isdigit() or tokens[0] == "-":
        return None
    return tokens


def _initiator(flags: str) -> str | None:
    if flags in ("-", ""):
        return None
    value = int(flags)
    if value & SYN_ACK == SYN_ACK:
        return "dst"
    return "src" if value & SYN else None


def _number(row: dict[str, str], name: str) -> int:
    value = row.get(name, "-")
    return 0 if value == "-" else int(value)


def parse_lines(lines: Iterable[str], where: str, problems: list[Diagnostic]) -> Iterator[FlowRecord]:
    """The flows of one flow-log text (``where`` names it in diagnostics); bad rows are diagnostics."""
    columns: tuple[str, ...] = DEFAULT_FIELDS
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        if number == 1 and (header := _header(text)) is not None:
            unknown = [c for c in header if c not in KNOWN_FIELDS]
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise FlowLogError(f"{where}:1: the header names no {', '.join(missing)} (fields: {text!r})")
            if unknown:
                problems.append(Diagnostic(f"unknown fields {', '.join(unknown)} (read as text, not used)",
                                           Location(where, 1), code="flow-log"))
            columns = header
            continue
        tokens = text.split()
        if len(tokens) != len(columns):
            problems.append(Diagnostic(f"{len(tokens)} fields where the format has {len(columns)}",
                                       Location(where, number), code="flow-log"))
            continue
        row = dict(zip(columns, tokens, strict=True))
        status = row.get("log-status", "OK")
        if status != "OK":
            continue  # NODATA / SKIPDATA: an aggregation window without flows (or that lost them)
        try:
            src = row.get("pkt-srcaddr", "-")
            dst = row.get("pkt-dstaddr", "-")
            yield FlowRecord(
                start=int(row["start"]), end=int(row["end"]),
                src=row["srcaddr"] if src == "-" else src, dst=row["dstaddr"] if dst == "-" else dst,
                protocol=int(row["protocol"]), src_port=_number(row, "srcport"), dst_port=_number(row, "dstport"),
                packets=_number(row, "packets"), bytes=_number(row, "bytes"),
                action=ACTIONS.get(row.get("action", "-")),
                initiator=_initiator(row.get("tcp-flags", "-")),  # type: ignore[arg-type]
                observer=next((row[k] for k in ("interface-id", "instance-id", "resource-id")
                               if row.get(k, "-") != "-"), ""))
        except (ValueError, KeyError) as exc:
            problems.append(Diagnostic(f"unreadable record: {exc}", Location(where, number), code="flow-log"))


class VpcFlowLogSource:
    """VPC Flow Logs from files (plain or gzip) or S3 (``s3://bucket/prefix``; boto3, ``endpoint_url`` and
    ``region`` options for a loopback test server, ``credentials: anonymous`` as the driver has it)."""

    name: ClassVar[str] = "vpc"
    OBSERVER_ONLY: ClassVar[bool] = True  # no rule name, only the ENI: hits are found by evaluating the flows

    def __init__(self, *, endpoint_url: str | None = None, region: str | None = None, profile: str | None = None,
                 credentials: str = "default") -> None:
        self.endpoint_url, self.region, self.profile, self.credentials = endpoint_url, region, profile, credentials

    def read(self, location: str, problems: list[Diagnostic]) -> Iterator[FlowRecord]:
        for name, data in self._objects(location):
            yield from parse_lines(_open_text(name, data), name, problems)

    def table_format(self, location: str) -> TableFormat | None:
        """The bulk-loadable format of a local plain or gzip file (its header, else the default fields)."""
        if location.startswith("s3://"):
            return None
        try:
            with open(location, "rb") as raw:
                zipped = raw.read(2) == GZIP_MAGIC
            with (gzip.open(location, "rt", errors="replace") if zipped
                  else open(location, encoding="utf-8", errors="replace")) as handle:
                text = handle.readline().strip()
        except (OSError, EOFError) as exc:
            raise FlowLogError(f"cannot read the flow log {location}: {exc}") from exc
        header = _header(text)
        columns = header or DEFAULT_FIELDS
        if any(c not in columns for c in REQUIRED):
            return None  # read() reports it
        fields = {
            "start": '"start"::BIGINT', "end": '"end"::BIGINT',
            "src": _either(columns, "pkt-srcaddr", "srcaddr"), "dst": _either(columns, "pkt-dstaddr", "dstaddr"),
            "protocol": '"protocol"::INTEGER', "src_port": _int_or_zero(columns, "srcport"),
            "dst_port": _int_or_zero(columns, "dstport"), "packets": _int_or_zero(columns, "packets"),
            "bytes": _int_or_zero(columns, "bytes"),
            "action": ("CASE \"action\" WHEN 'ACCEPT' THEN 'accept' WHEN 'REJECT' THEN 'reject' END"
                       if "action" in columns else "NULL"),
            "initiator": ("CASE WHEN \"tcp-flags\" IS NULL THEN NULL "
                          "WHEN (\"tcp-flags\"::INTEGER & 18) = 18 THEN 'dst' "
                          "WHEN (\"tcp-flags\"::INTEGER & 2) = 2 THEN 'src' END" if "tcp-flags" in columns else "NULL"),
            "observer": ("coalesce(" + ", ".join(f'"{c}"' for c in ("interface-id", "instance-id", "resource-id")
                                                 if c in columns) + ", '')"
                         if any(c in columns for c in ("interface-id", "instance-id", "resource-id")) else "''"),
        }
        keep = "\"log-status\" = 'OK'" if "log-status" in columns else "TRUE"
        return TableFormat(delimiter=" ", columns=columns, fields=fields, header=header is not None, keep=keep)

    def _objects(self, location: str) -> Iterator[tuple[str, bytes]]:
        if not location.startswith("s3://"):
            yield location, read_bytes(location)
            return
        bucket, _, prefix = location[len("s3://"):].partition("/")
        client = self._s3()
        try:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                    yield f"s3://{bucket}/{item['Key']}", body
        except Exception as exc:  # botocore's errors: named, not swallowed
            if isinstance(exc, FlowLogError):
                raise
            raise FlowLogError(f"cannot read {location}: {type(exc).__name__}: {exc}") from exc

    def _s3(self) -> Any:
        import boto3  # noqa: PLC0415  (only when reading from S3)

        if self.credentials == "anonymous":
            if not self.endpoint_url or not is_loopback_url(self.endpoint_url):
                raise FlowLogError(ANONYMOUS_REFUSAL.format(setting="endpoint_url", url=self.endpoint_url))
            session = boto3.session.Session(aws_access_key_id="anonymous", aws_secret_access_key="anonymous")
        else:
            session = boto3.session.Session(profile_name=self.profile)
        return session.client("s3", region_name=self.region, endpoint_url=self.endpoint_url)


def _either(columns: tuple[str, ...], preferred: str, fallback: str) -> str:
    return f'coalesce("{preferred}", "{fallback}")' if preferred in columns else f'"{fallback}"'


def _int_or_zero(columns: tuple[str, ...], name: str) -> str:
    return f'coalesce("{name}"::BIGINT, 0)' if name in columns else "0"
