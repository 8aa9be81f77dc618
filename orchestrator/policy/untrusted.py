"""Untrusted documents (ticket fields, API bodies): bounded in size, depth and node count before they are built.

YAML anchors and aliases are refused outright: an alias makes a few hundred bytes expand into 10^9 nodes
(the "billion laughs"), and a self-referencing one into a cycle that every later step (validation,
fingerprints, JSON) would chase.  The YAML is first read as a stream of events, which costs at most its
size, and only a stream within the limits is built into Python values.  JSON bodies are scanned the same way
(:func:`json_problem`) before a JSON parser — recursive, so deep nesting would crash it — sees them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from orchestrator.model.errors import PolicyError


class UntrustedInputError(PolicyError):
    """An untrusted document is over a limit, not YAML, or uses a construct that is refused (YAML aliases)."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail or message


@dataclass(frozen=True, slots=True)
class UntrustedLimits:
    """How large an untrusted document may be: bytes, nesting depth, and values (scalars and collections)."""

    max_bytes: int = 64 * 1024
    max_depth: int = 32
    max_nodes: int = 10_000


_OPENERS = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSERS = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def _check_events(text: str, limits: UntrustedLimits) -> None:
    depth = nodes = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            mark = event.start_mark
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            raise UntrustedInputError(f"YAML anchors and aliases (&name, *name) are not accepted here{where}: "
                                      "write the values out")
        if isinstance(event, _OPENERS):
            depth += 1
            if depth > limits.max_depth:
                raise UntrustedInputError(f"nested deeper than {limits.max_depth} levels")
        elif isinstance(event, _CLOSERS):
            depth -= 1
        if isinstance(event, (*_OPENERS, yaml.ScalarEvent)):
            nodes += 1
            if nodes > limits.max_nodes:
                raise UntrustedInputError(f"more than {limits.max_nodes} values")


def load_untrusted_yaml(text: str, limits: UntrustedLimits = UntrustedLimits()) -> Any:
    """The value of one YAML (or JSON) document from outside, within ``limits``; UntrustedInputError if not."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limits.max_bytes:
        raise UntrustedInputError(f"larger than {limits.max_bytes} bytes ({size})")
    try:
        _check_events(text, limits)
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UntrustedInputError("not JSON or YAML", str(exc)) from exc


def json_problem(data: bytes, limits: UntrustedLimits) -> str | None:
    """Why a JSON text is over ``limits`` (depth, values), or None — a scan that never recurses or builds values.

    Values are counted as containers opened plus commas plus one: an upper bound of the document's nodes
    that is exact enough to stop a flood of tiny values.
    """
    depth = nodes = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
            continue
        if byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            nodes += 1
            if depth > limits.max_depth:
                return f"JSON nested deeper than {limits.max_depth} levels"
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
        elif byte == 0x2C:  # ,
            nodes += 1
        if nodes > limits.max_nodes:
            return f"JSON with more than {limits.max_nodes} values"
    return None
