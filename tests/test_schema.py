"""Tests of the JSON Schema of a policy file: shape, determinism, and agreement with the documented format."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.model.policy import PolicyFile
from orchestrator.policy.schema import SCHEMA_ID, policy_json_schema

DOC = Path(__file__).resolve().parent.parent / "docs" / "policy-format.md"


def doc_example() -> dict[str, Any]:
    """The YAML example of docs/policy-format.md, as JSON would carry it (dates as strings)."""
    block = re.search(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert block is not None
    data = yaml.safe_load(block.group(1))
    return json.loads(json.dumps(data, default=lambda v: v.isoformat() if isinstance(v, datetime.date) else v))


def test_header() -> None:
    schema = policy_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == SCHEMA_ID == "https://microseg.dev/schema/policy-v1.json"
    assert schema["title"] == "microseg policy file (microseg/v1)"
    assert "merged" in schema["description"]
    assert list(schema)[:4] == ["$schema", "$id", "title", "description"]
    assert schema["type"] == "object"
    assert schema["required"] == ["apiVersion"]
    assert schema["additionalProperties"] is False


def test_keys_are_written_as_in_yaml() -> None:
    schema = policy_json_schema()
    defs = schema["$defs"]
    assert schema["properties"]["apiVersion"]["const"] == "microseg/v1"
    assert set(schema["properties"]) == {"apiVersion", "description", "defaults", "mode", "groups", "services",
                                         "service_groups", "rules"}
    assert "from" in defs["PolicyRule"]["properties"] and "from_" not in defs["PolicyRule"]["properties"]
    assert defs["PolicyRule"]["required"] == ["name", "from", "to", "services", "action"]
    assert "except" in defs["Group"]["properties"]
    assert defs["Not"]["required"] == ["not"]


def test_written_forms_are_wider_than_the_parsed_model() -> None:
    defs = policy_json_schema()["$defs"]
    rule_from = defs["PolicyRule"]["properties"]["from"]["anyOf"]
    assert rule_from[0] == {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"}
    assert rule_from[1]["type"] == "array" and rule_from[1]["minItems"] == 1
    port = defs["Service"]["properties"]["ports"]["anyOf"][0]["anyOf"]
    assert port[0] == {"type": "integer", "minimum": 0, "maximum": 65535}
    assert defs["Service"]["properties"]["protocol"]["anyOf"][0] == {"type": "string"}


def test_deterministic_and_a_fresh_copy_each_time() -> None:
    first = policy_json_schema()
    text = json.dumps(first)
    first["$defs"].clear()
    assert json.dumps(policy_json_schema()) == text
    assert len(policy_json_schema()["$defs"]) == 10


def test_doc_example_is_a_valid_policy_file() -> None:
    parsed = PolicyFile.model_validate(yaml.safe_load(re.search(r"```yaml\n(.*?)```", DOC.read_text(), re.S)[1]))
    assert [r.name for r in parsed.rules] == ["web-to-app"]
    assert set(parsed.groups) == {"web-prod", "corp-dns", "internet", "all-prod"}


# --------------------------------------------------------------------------- with a JSON Schema validator


@pytest.fixture(scope="module")
def validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    schema = policy_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_schema_accepts_the_documented_example(validator: Any) -> None:
    assert [e.message for e in validator.iter_errors(doc_example())] == []


def test_schema_accepts_the_short_forms(validator: Any) -> None:
    document = {
        "apiVersion": "microseg/v1",
        "groups": {"g": {"selector": {"n": 5, "m": [1, "x"], "z": {"not": "dmz"}}}, "h": {"groups": "g"}},
        "services": {"s": {"protocol": "udp", "ports": 53}, "t": {"protocol": 6, "ports": ["1000 - 2000"]}},
        "service_groups": {"all": "s"},
        "rules": [{"name": "r", "from": "g", "to": ["h"], "services": "all", "action": "deny"}],
    }
    assert [e.message for e in validator.iter_errors(document)] == []
    PolicyFile.model_validate(document)  # the model accepts the same document


BAD_DOCUMENTS: dict[str, tuple[dict[str, Any], str]] = {
    "no apiVersion": ({"groups": {}}, "'apiVersion' is a required property"),
    "wrong apiVersion": ({"apiVersion": "microseg/v2"}, "'microseg/v1' was expected"),
    "unknown section": ({"apiVersion": "microseg/v1", "rule": []}, "('rule' was unexpected)"),
    "rule without services": (
        {"apiVersion": "microseg/v1", "rules": [{"name": "r", "from": "a", "to": "b", "action": "allow"}]},
        "'services' is a required property",
    ),
    "group of two kinds": (
        {"apiVersion": "microseg/v1", "groups": {"g": {"cidrs": ["10.0.0.0/8"], "external": "any"}}},
        "is not valid under any of the given schemas",
    ),
    "group of no kind": ({"apiVersion": "microseg/v1", "groups": {"g": {}}},
                         "is not valid under any of the given schemas"),
    "name with a slash": (
        {"apiVersion": "microseg/v1", "groups": {"a/b": {"external": "any"}}}, "does not match",
    ),
    "port text": (
        {"apiVersion": "microseg/v1", "services": {"s": {"protocol": "tcp", "ports": ["http"]}}},
        "is not valid under any of the given schemas",
    ),
    "empty selector": ({"apiVersion": "microseg/v1", "groups": {"g": {"selector": {}}}}, "should be non-empty"),
    "bad action": (
        {"apiVersion": "microseg/v1", "rules": [{"name": "r", "from": "a", "to": "b", "services": "any",
                                                 "action": "permit"}]},
        "'permit' is not one of ['allow', 'deny']",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_DOCUMENTS))
def test_schema_rejects_bad_documents(validator: Any, name: str) -> None:
    document, expected = BAD_DOCUMENTS[name]
    messages = all_messages(validator.iter_errors(document))
    assert any(expected in m for m in messages), messages


def all_messages(errors: Any) -> list[str]:
    """Messages of the errors and of the sub-errors of their anyOf/oneOf alternatives."""
    out: list[str] = []
    for error in errors:
        out.append(error.message)
        out.extend(all_messages(error.context or ()))
    return out
