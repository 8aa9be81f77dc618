"""The README's "Writing a driver" example: imported from docs/examples and run through the contract suite."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.testing import DriverContract, plan_and_apply
from orchestrator.model import (
    Action,
    AddressSet,
    Connection,
    Direction,
    Mode,
    Ordering,
    ParseError,
    PointContext,
    Rule,
    Ruleset,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "jsonfile_driver.py"
POINT = "fw-json"


def _load_example() -> Any:
    spec = importlib.util.spec_from_file_location("jsonfile_driver_example", EXAMPLE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = _load_example()


def _driver(path: Path) -> Any:
    return example.JsonFileDriver(PointContext(POINT, "jsonfile", Connection("localhost"), {"path": str(path)}))


@pytest.fixture
def document(tmp_path: Path) -> Path:
    path = tmp_path / "firewall.json"
    path.write_text(json.dumps({"vendor-rules": [{"allow": "everything"}], "comment": "hand-written"}))
    return path


@pytest.fixture
def driver(document: Path) -> Iterator[Any]:
    drv = _driver(document)
    yield drv
    drv.close()


@pytest.fixture
def intended() -> list[Ruleset]:
    web = Rule(Action.PERMIT, Direction.INGRESS, 6, AddressSet.of(["10.0.0.0/8"]), AddressSet.of(["0.0.0.0/0"]),
               dst_ports=((443, 443),))
    dns = Rule(Action.PERMIT, Direction.EGRESS, 17, AddressSet.of(["::/0"]), AddressSet.of(["fd00::53"]),
               dst_ports=((53, 53),), log=True)
    return [
        Ruleset(POINT, Ordering.FIRST_MATCH, Action.DENY, (web, dns)),
        Ruleset(POINT, Ordering.FIRST_MATCH, Action.PERMIT, (dns,), Mode.MONITOR, stateful=False),
    ]


class TestJsonFileDriverContract(DriverContract):
    """The same suite every built-in driver runs."""


def test_foreign_keys_are_unmanaged_and_never_touched(driver: Any, document: Path, intended: list[Ruleset]) -> None:
    foreign = json.loads(document.read_text())
    observed = driver.normalize(driver.fetch())
    assert {(u.kind, u.name) for u in observed.unmanaged} == {("key", "vendor-rules"), ("key", "comment")}
    checkpoint = driver.checkpoint()
    plan_and_apply(driver, intended[0])
    after = json.loads(document.read_text())
    assert {k: after[k] for k in foreign} == foreign
    driver.rollback(checkpoint)
    assert json.loads(document.read_text()) == foreign


def test_an_unreadable_owned_entry_fails_closed_naming_the_file(driver: Any, document: Path) -> None:
    document.write_text(json.dumps({"microseg": {"ordering": "first_match", "rules": [{"action": "maybe"}]}}))
    with pytest.raises(ParseError, match=re.escape(str(document))):
        driver.normalize(driver.fetch())


def test_the_example_imports_only_the_public_face_of_the_model() -> None:
    imported = {node.module for node in ast.walk(ast.parse(EXAMPLE.read_text()))
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("orchestrator")}
    assert imported == {"orchestrator.model"}


def test_the_readme_shows_the_example_verbatim() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"```python\n{EXAMPLE.read_text(encoding='utf-8')}```" in readme
