"""Small, exact edits of the inventory files a person keeps: a host's ``data.microseg.mode``.

The edit touches one place of ``hosts.yaml`` and nothing else (comments, order, quoting and every other
line stay as written): the host's own ``mode`` value is replaced, or a ``mode`` key is added to the host's
block (its own ``data.microseg``, else its ``data``, else the host).  The file is rewritten atomically, then
read back: if the point's mode is not what was asked, or anything else about the inventory changed, the old
text is put back and the edit fails.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

from orchestrator.model.errors import InventoryError
from orchestrator.model.rules import Mode

HOSTS_FILE = "hosts.yaml"


def _child(node: yaml.Node, key: str) -> tuple[yaml.ScalarNode, yaml.Node] | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    return next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)


def _insert_key(text: str, mapping: yaml.MappingNode, line: str) -> str:
    """``line`` (``key: value``) added as the first key of ``mapping``, in its style."""
    if mapping.flow_style:
        at: int = mapping.start_mark.index + 1  # just after "{"
        return text[:at] + line + (", " if mapping.value else "") + text[at:]
    if not mapping.value:
        raise ValueError("an empty block mapping")
    first = mapping.value[0][0]
    column: int = first.start_mark.column
    start = text.rfind("\n", 0, first.start_mark.index) + 1
    return text[:start] + " " * column + line + "\n" + text[start:]


def with_mode(text: str, host: str, mode: Mode) -> str:
    """``hosts.yaml`` text with ``host``'s ``data.microseg.mode`` set to ``mode`` (see the module docstring)."""
    root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    found = _child(root, host) if root is not None else None
    if found is None or not isinstance(found[1], yaml.MappingNode):
        raise ValueError(f"host {host!r} is not a mapping in the hosts file")
    host_node = found[1]
    data = _child(host_node, "data")
    microseg = _child(data[1], "microseg") if data else None
    current = _child(microseg[1], "mode") if microseg else None
    if current is not None:
        value = current[1]
        return f"{text[:value.start_mark.index]}{mode.value}{text[value.end_mark.index:]}"
    if microseg is not None and isinstance(microseg[1], yaml.MappingNode):
        return _insert_key(text, microseg[1], f"mode: {mode.value}")
    if data is not None and isinstance(data[1], yaml.MappingNode):
        return _insert_key(text, data[1], f"microseg: {{mode: {mode.value}}}")
    return _insert_key(text, host_node, f"data: {{microseg: {{mode: {mode.value}}}}}")


def set_point_mode(directory: Path, host: str, mode: Mode, check: Callable[[], Mode | None]) -> tuple[str, str]:
    """Set ``host``'s mode in ``directory/hosts.yaml``; ``check`` reads the inventory back and returns the point's
    mode (it must raise if anything else went wrong).  Returns (old text, new text); the old text is restored
    when the check fails."""
    path = directory / HOSTS_FILE
    old = path.read_text(encoding="utf-8")
    try:
        new = with_mode(old, host, mode)
    except (ValueError, yaml.YAMLError) as exc:
        raise InventoryError(f"{path}: cannot set the mode of {host}: {exc} — edit it by hand") from exc
    _write(path, new)
    try:
        got = check()
    except Exception:
        _write(path, old)
        raise
    if got is not mode:
        _write(path, old)
        raise InventoryError(f"{path}: setting {host}'s mode to {mode.value} left it {got.value if got else 'unset'} "
                             "(a group or the policy decides it?): the file is as it was — edit it by hand")
    return old, new


def _write(path: Path, text: str) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temp, path.stat().st_mode & 0o777)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
