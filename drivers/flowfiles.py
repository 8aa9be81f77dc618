"""Reading flow-log files the same way in every flow source: a local file's bytes, gunzipped when they start with
the gzip magic bytes (not by the file's name), decoded as UTF-8 — each failure one :class:`FlowLogError` naming
the file — and the whitespace skip of the sources that track where in a JSON text an entry starts."""

from __future__ import annotations

import gzip
import re
import zlib
from pathlib import Path

from orchestrator.model import FlowLogError

GZIP_MAGIC = b"\x1f\x8b"
_SPACE = re.compile(r"[ \t\n\r]*")


def read_bytes(location: str) -> bytes:
    """The content of the local file ``location``."""
    try:
        return Path(location).read_bytes()
    except OSError as exc:
        raise FlowLogError(f"cannot read the flow log {location}: {exc.strerror or exc}") from exc


def gunzip(location: str, data: bytes) -> bytes:
    """``data`` (of ``location``), decompressed when it is gzip."""
    if data[:2] != GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise FlowLogError(f"cannot read the flow log {location}: not a readable gzip file ({exc})") from exc


def decode(location: str, data: bytes) -> str:
    """The text of ``data`` (of ``location``): gunzipped, UTF-8 (a byte-order mark dropped)."""
    try:
        return gunzip(location, data).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FlowLogError(f"cannot read the flow log {location}: not UTF-8 text (byte {exc.start})") from exc


def skip_space(text: str, index: int) -> int:
    """The index of the first character at or after ``index`` that is not JSON whitespace."""
    match = _SPACE.match(text, index)
    return match.end() if match else index
