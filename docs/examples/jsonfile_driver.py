"""A complete, minimal microseg driver: its enforcement point is a JSON document on disk.

The point owns one key of the document (``"microseg"``); every other key is someone else's and is
listed as unmanaged, never touched.  A third-party driver imports only the public face
``orchestrator.model`` and registers its class under the ``microseg.drivers`` entry-point group::

    [project.entry-points."microseg.drivers"]
    jsonfile = "my_package.jsonfile_driver:JsonFileDriver"
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, ClassVar

from orchestrator.model import (
    Action,
    ApplyReport,
    Capabilities,
    Checkpoint,
    NativeChange,
    Observed,
    ParseError,
    PermanentDriverError,
    PointContext,
    RenderRequest,
    Ruleset,
    Snapshot,
    Unmanaged,
    canonical_json,
)

OWNED = "microseg"


class JsonFileDriver:
    name: ClassVar[str] = "jsonfile"
    capabilities: ClassVar[Capabilities] = Capabilities()  # first match, permit and deny, IPv4 and IPv6

    def __init__(self, context: PointContext) -> None:  # no I/O in the constructor
        self.point = context.name
        self.path = Path(str(context.settings["path"]))

    def _read(self) -> dict[str, Any]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8")) if self.path.exists() else {}
        except (OSError, ValueError) as exc:  # foreign errors are translated once, here
            raise ParseError(f"{self.path}: not readable JSON ({exc})", point=self.point, driver=self.name) from exc
        if not isinstance(document, dict):
            raise ParseError(f"{self.path}: not a JSON object", point=self.point, driver=self.name)
        return document

    def _write(self, owned: Any) -> None:
        document = self._read()
        if owned is None:
            document.pop(OWNED, None)
        else:
            document[OWNED] = owned
        scratch = self.path.with_name(self.path.name + ".tmp")
        try:
            scratch.write_text(json.dumps(document, indent=2, sort_keys=True), encoding="utf-8")
            os.replace(scratch, self.path)  # atomic: the point is fully old or fully new
        except OSError as exc:
            raise PermanentDriverError(f"{self.path}: {exc}", point=self.point, driver=self.name) from exc

    def fetch(self) -> Snapshot:
        document = self._read()
        return Snapshot(self.point, self.name, document, stable={OWNED: document.get(OWNED)})

    def normalize(self, snapshot: Snapshot) -> Observed:
        foreign = tuple(Unmanaged("key", key, "not owned by microseg") for key in sorted(snapshot.native)
                        if key != OWNED)
        owned = snapshot.native.get(OWNED)
        if owned is None:
            return Observed(Ruleset(self.point, self.capabilities.ordering, Action.DENY, ()), foreign)
        try:
            return Observed(Ruleset.from_dict({**owned, "point": self.point}), foreign)
        except (KeyError, TypeError, ValueError) as exc:  # an owned entry we cannot read: fail closed
            raise ParseError(f"{self.path}: key {OWNED!r} unreadable ({exc!r})", point=self.point,
                             driver=self.name) from exc

    def render(self, request: RenderRequest) -> NativeChange:
        owned = request.intended.to_dict(with_provenance=False)
        return NativeChange(self.point, self.name, "json", (canonical_json(owned),))

    def checkpoint(self) -> Checkpoint:
        snapshot = self.fetch()
        return Checkpoint(self.point, self.name, snapshot.native.get(OWNED), snapshot.fingerprint())

    def apply(self, change: NativeChange) -> ApplyReport:
        started = time.monotonic()
        self._write(json.loads(change.commands[0]))
        return ApplyReport(self.point, 1, len(change.commands), time.monotonic() - started)

    def rollback(self, checkpoint: Checkpoint) -> None:
        self._write(checkpoint.native)  # idempotent: writes the same owned key every time

    def close(self) -> None:
        return None
