"""JSON Schema (draft 2020-12) of one policy file, for editors and CI validation of policy YAML."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from orchestrator.model.policy import API_VERSION, NAME_PATTERN, PolicyFile
from orchestrator.model.rules import MAX_PORT

SCHEMA_ID = "https://microseg.dev/schema/policy-v1.json"
DRAFT = "https://json-schema.org/draft/2020-12/schema"

JSON = dict[str, Any]

_NAME: JSON = {"type": "string", "pattern": NAME_PATTERN}
_PORT: JSON = {
    "anyOf": [
        {"type": "integer", "minimum": 0, "maximum": MAX_PORT},
        {"type": "string", "pattern": r"^\s*[0-9]+\s*(-\s*[0-9]+\s*)?$", "description": "a port or 'lo-hi'"},
    ]
}
_LABEL_VALUE: JSON = {"type": ["string", "number"]}


def _one_or_many(item: JSON, description: str, *, nullable: bool = False, min_items: int = 0) -> JSON:
    """A value written either as one item or as a list of items (``from: web`` or ``from: [web, app]``)."""
    many: JSON = {"type": "array", "items": item}
    if min_items:
        many["minItems"] = min_items
    choices = [item, many, *([{"type": "null"}] if nullable else [])]
    return {"anyOf": choices, "description": description}


#: Where the written form is wider than the parsed model (pydantic "before" validators): (definition, property).
_WRITTEN_FORM: dict[tuple[str, str], JSON] = {
    ("Service", "protocol"): {
        "anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0, "maximum": 255}],
        "description": "a protocol name (tcp, udp, sctp, icmp, icmpv6, gre, …), a number 0-255, or any",
    },
    ("Service", "ports"): _one_or_many(_PORT, "destination ports: numbers or 'lo-hi' ranges", nullable=True),
    ("Service", "source_ports"): _one_or_many(_PORT, "source ports: numbers or 'lo-hi' ranges", nullable=True),
    ("PolicyRule", "name"): {**_NAME, "description": "unique across the policy"},
    ("PolicyRule", "from"): _one_or_many(_NAME, "source group name(s), or any", min_items=1),
    ("PolicyRule", "to"): _one_or_many(_NAME, "destination group name(s), or any", min_items=1),
    ("PolicyRule", "services"): _one_or_many(
        {"type": "string"}, "service names, service-group names or inline specs (tcp/443)", min_items=1
    ),
    ("Group", "groups"): _one_or_many(_NAME, "member groups (union)", nullable=True),
    ("Not", "not"): _one_or_many(_LABEL_VALUE, "the label is absent or has none of these values"),
}
_GROUP_KINDS = ("selector", "cidrs", "external", "groups")


def _group_kind(kind: str) -> JSON:
    """A group of one kind: that key set (not null), the other kind keys absent or null."""
    others = {other: {"type": "null"} for other in _GROUP_KINDS if other != kind}
    return {"required": [kind], "properties": {kind: {"not": {"type": "null"}}, **others}}


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema of one policy file (keys as written: ``apiVersion``, ``from``, ``except``, ``not``).

    The same document on every call (a fresh copy: callers may modify it).
    """
    return copy.deepcopy(_schema())


@cache
def _schema() -> JSON:
    generated = PolicyFile.model_json_schema(by_alias=True, mode="validation")
    defs: JSON = generated.pop("$defs")
    for (definition, prop), written in _WRITTEN_FORM.items():
        properties = defs[definition]["properties"]
        if prop not in properties:  # the model changed: this table must follow it
            raise KeyError(f"{definition}.{prop} is not in the generated schema")
        properties[prop] = written
    defs["Selector"]["minProperties"] = 1
    defs["Selector"]["additionalProperties"]["anyOf"][0] = _LABEL_VALUE
    defs["Selector"]["additionalProperties"]["anyOf"][1] = {"type": "array", "items": _LABEL_VALUE}
    defs["Group"]["oneOf"] = [_group_kind(kind) for kind in _GROUP_KINDS]
    sections = generated["properties"]
    for section in ("groups", "services", "service_groups"):
        sections[section]["propertyNames"] = {"pattern": NAME_PATTERN}
    sections["service_groups"]["additionalProperties"] = _one_or_many(
        {"type": "string"}, "names of services or other service groups"
    )
    sections["apiVersion"]["description"] = f"always {API_VERSION}"
    generated.pop("title", None)
    generated.pop("description", None)
    return {
        "$schema": DRAFT,
        "$id": SCHEMA_ID,
        "title": f"microseg policy file ({API_VERSION})",
        "description": (
            "One YAML file of a microseg policy directory; the files of a directory are merged. "
            "Names must be unique across all files; see docs/policy-format.md."
        ),
        **generated,
        "$defs": defs,
    }
