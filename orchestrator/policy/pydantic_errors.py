"""Turns pydantic validation errors on a policy file into located, human-readable diagnostics."""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from orchestrator.model.errors import Diagnostic, Location
from orchestrator.model.policy import API_VERSION, Defaults, Exists, Group, Not, PolicyFile, PolicyRule, Service
from orchestrator.model.suggest import closest, did_you_mean
from orchestrator.policy.sources import PathKey, Positions

#: What a value of a failed type check should have been.
_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "tuple_type": "a list",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "date_type": "a date (YYYY-MM-DD)",
    "date_parsing": "a date (YYYY-MM-DD)",
    "date_from_datetime_parsing": "a date (YYYY-MM-DD)",
    "date_from_datetime_inexact": "a date without a time of day",
}
_BOUNDS = {"greater_than_equal": "at least", "less_than_equal": "at most", "greater_than": "more than",
           "less_than": "less than"}
_BOUND_KEYS = {"greater_than_equal": "ge", "less_than_equal": "le", "greater_than": "gt", "less_than": "lt"}

#: The model that holds the fields of each kind of mapping (by its path in the file, or its union branch).
_BRANCH_MODELS: dict[str, type[BaseModel]] = {"Exists": Exists, "Not": Not}
_BRANCH_TEXT = {"Exists": "{exists: true|false}", "Not": "{not: value or [values]}"}
_SECTION_MODELS: dict[str, type[BaseModel]] = {"groups": Group, "services": Service, "rules": PolicyRule}


@dataclass(frozen=True)
class _Error:
    """One pydantic error, resolved against the document: where it is and which union branch raised it."""

    type: str
    path: PathKey  # path in the YAML document, union branch tags removed
    msg: str
    input: Any
    ctx: Mapping[str, Any]
    on_key: bool = False  # the error is about a mapping key, not its value
    branch: str | None = None  # the union member that raised it ("Exists", "tuple[...]", …)
    union_at: int = 0  # len(path) at the union the branch belongs to
    union_input: Any = None


def describe_errors(exc: ValidationError, data: object, positions: Positions) -> list[Diagnostic]:
    """One diagnostic per problem: the errors of a union (one per member) and the missing fields of one
    mapping are condensed into one each."""
    out: list[Diagnostic] = []
    unions: dict[PathKey, list[_Error]] = {}
    missing: dict[PathKey, list[str]] = {}
    errors = [_resolve(raw, data) for raw in exc.errors(include_url=False)]
    for err in errors:
        if err.type == "too_short" and any(_inside(other, err) for other in errors):
            continue  # "must not be empty" only because its items failed: the item errors say why
        if err.branch is not None:
            unions.setdefault(err.path[: err.union_at], []).append(err)
        elif err.type == "missing":
            missing.setdefault(err.path[:-1], []).append(str(err.path[-1]))
        else:
            out.append(_diagnose(err, positions))
    for parent, fields in missing.items():
        out.append(_missing(parent, fields, positions))
    for group in unions.values():
        out.extend(_condense(group, positions))
    return out


def _missing(parent: PathKey, fields: Sequence[str], positions: Positions) -> Diagnostic:
    """The required fields absent from one mapping, located at the mapping."""
    names = [repr(f) for f in fields]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"
    message = f"missing required field{'s' if len(names) > 1 else ''} {listed}"
    hint = f"add 'apiVersion: {API_VERSION}' at the top of the file" if "apiVersion" in fields else None
    return Diagnostic(message, positions.locate(parent), code="missing-field", hint=hint)


def _inside(other: _Error, err: _Error) -> bool:
    return other is not err and other.type != "too_short" and other.path[: len(err.path)] == err.path


def _resolve(raw: Mapping[str, Any], data: object) -> _Error:
    """Walk ``loc`` through the data: keys/indexes found there are the path, other names are union tags."""
    loc: tuple[str | int, ...] = tuple(raw["loc"])
    node: Any = data
    path: list[str | int] = []
    on_key, branch, union_at, union_input = False, None, 0, None
    for i, seg in enumerate(loc):
        if seg == "[key]":
            on_key = True
        elif _has(node, seg):
            path.append(seg)
            node = node[seg]
        elif isinstance(seg, int):
            continue  # a scalar accepted where a list is allowed (``from: web``): it is its own item 0
        elif i == len(loc) - 1 and raw["type"] == "missing":
            path.append(seg)
        elif branch is None:
            branch, union_at, union_input = seg, len(path), node
    return _Error(raw["type"], tuple(path), str(raw["msg"]), raw.get("input"), raw.get("ctx") or {},
                  on_key, branch, union_at, union_input)


def _has(node: object, seg: str | int) -> bool:
    if isinstance(node, dict):
        return seg in node
    return isinstance(node, list) and isinstance(seg, int) and 0 <= seg < len(node)


def _location(err: _Error, positions: Positions) -> Location:
    if err.on_key or err.type in ("extra_forbidden", "invalid_key"):
        return positions.locate_key(err.path)
    return positions.locate(err.path)


def _diagnose(err: _Error, positions: Positions) -> Diagnostic:
    message, hint, code = _explain(err)
    return Diagnostic(message, _location(err, positions), code=code, hint=hint)


def _explain(err: _Error) -> tuple[str, str | None, str]:
    """(message, hint, code) for one error: what is wrong and what is expected."""
    field = next((str(seg) for seg in reversed(err.path) if isinstance(seg, str)), "value")
    if err.type == "extra_forbidden":
        return f"unknown field {field!r}", did_you_mean(field, _valid_fields(err)), "unknown-field"
    if err.type == "literal_error" and err.path == ("apiVersion",):
        return f"unsupported apiVersion {err.input!r}", f"use 'apiVersion: {API_VERSION}'", "api-version"
    if err.type == "value_error":
        return str(err.ctx.get("error", err.msg.removeprefix("Value error, "))), None, "invalid"
    if err.type == "invalid_key":
        return f"invalid key {_show(err.input)}: keys must be text", None, "invalid"
    if err.on_key and err.type == "string_type":
        return f"invalid name {err.input!r}: a name must be text (quote it: \"{err.input}\")", None, "invalid"
    subject = _subject(err)
    if err.type in ("literal_error", "enum"):
        choices = re.findall(r"'([^']*)'", str(err.ctx.get("expected", "")))
        hint = did_you_mean(err.input, choices) if isinstance(err.input, str) else None
        return f"{subject}: expected {err.ctx.get('expected')}, got {_show(err.input)}", hint, "invalid"
    if err.type in _BOUNDS:
        bound = err.ctx.get(_BOUND_KEYS[err.type])
        return f"{subject}: must be {_BOUNDS[err.type]} {bound}, got {_show(err.input)}", None, "invalid"
    if err.type == "too_short":
        return f"{subject}: must not be empty", None, "invalid"
    if err.type.startswith("date") and "error" in err.ctx:
        return f"{subject}: invalid date {_show(err.input)}: {err.ctx['error']}", None, "invalid"
    if err.type in _EXPECTED:
        return f"{subject}: expected {_EXPECTED[err.type]}, got {_show(err.input)}", None, "invalid"
    return f"{subject}: {err.msg}", None, "invalid"


def _subject(err: _Error) -> str:
    """What the value is, for a message: ``priority``, ``label 'tier'``, ``group 'web'``, ``entry 2 of 'from'``."""
    return _subject_of(err.path)


def _subject_of(path: PathKey) -> str:
    if not path:
        return "the file"
    last = path[-1]
    if isinstance(last, int):
        if path[:-1] == ("rules",):
            return f"rule {last + 1}"
        parent = _subject_of(path[:-1])
        return f"entry {last + 1} of {parent!r}" if parent == str(path[-2]) else f"entry {last + 1} of {parent}"
    if len(path) == 2 and path[0] in ("groups", "services", "service_groups"):
        return f"{str(path[0]).removesuffix('s').replace('_', ' ')} {last!r}"
    if len(path) == 4 and path[0] == "groups" and path[2] == "selector":
        return f"label {last!r}"
    return str(last)


def _valid_fields(err: _Error) -> list[str]:
    """The field names allowed in the mapping that holds the unknown field."""
    parent = err.path[:-1]
    model: type[BaseModel] | None
    if err.branch is not None:
        model = _BRANCH_MODELS.get(err.branch)
    elif not parent:
        model = PolicyFile
    elif parent == ("defaults",):
        model = Defaults
    elif len(parent) == 2:
        model = _SECTION_MODELS.get(str(parent[0]))
    else:
        model = None
    return _fields_of(model) if model is not None else []


def _show(value: object) -> str:
    """A value as the user wrote it in YAML."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, datetime.date):
        return str(value)
    return repr(value)


def _fits(errors: Sequence[_Error]) -> bool:
    """A union branch fits when the value has its shape: nothing missing, no error on the value as a whole."""
    return all(len(e.path) > e.union_at and e.type != "missing" for e in errors)


def _condense(errors: Sequence[_Error], positions: Positions) -> list[Diagnostic]:
    """The errors of one union: those of the only branch the value fits, else one 'expected …' message."""
    branches: dict[str, list[_Error]] = {}
    for err in errors:
        branches.setdefault(err.branch or "", []).append(err)
    fitting = [b for b, errs in branches.items() if _fits(errs)]
    if len(fitting) == 1:
        return [_diagnose(e, positions) for e in branches[fitting[0]]]
    first = errors[0]
    value_path = first.path[: first.union_at]
    choices = [_branch_text(b) for b in branches]
    expected = ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]
    subject = _subject(_Error("union", value_path, "", None, {}))
    message = f"{subject}: expected {expected}, got {_show(first.union_input)}"
    hint = None
    if isinstance(first.union_input, dict):
        fields = [f for b in branches if b in _BRANCH_MODELS for f in _fields_of(_BRANCH_MODELS[b])]
        unknown = [k for k in first.union_input if isinstance(k, str) and k not in fields]
        match = closest(unknown[0], fields) if unknown else None
        hint = f"did you mean {match!r} instead of {unknown[0]!r}?" if match else None
    return [Diagnostic(message, positions.locate(value_path), code="invalid", hint=hint)]


def _fields_of(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _branch_text(tag: str) -> str:
    """How to write a value of one union member: ``a string``, ``a list of strings``, ``{exists: …}``."""
    if tag in _BRANCH_TEXT:
        return _BRANCH_TEXT[tag]
    if tag.startswith(("tuple[", "list[")):
        return "a list of strings" if tag.endswith("str], ...]") or tag == "tuple[str, ...]" else "a list"
    if tag == "str" or tag.endswith(", str]"):
        return "a string"
    if tag in ("int", "bool", "date"):
        return {"int": "an integer", "bool": "true or false", "date": "a date (YYYY-MM-DD)"}[tag]
    return tag
