"""A microseg project on disk: policy directory + inventory directory → compile-ready targets.

This is the I/O edge of the core: it reads files (through the loader and the
inventory), looks up installed drivers' capabilities, and hands pure values
to the compiler.  Errors of the policy and of the inventory are reported
together.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

from pydantic import ValidationError

from orchestrator.compiler.compiler import Compilation, PreparedPolicy, Target, compile_prepared, prepare_policy
from orchestrator.engine.parallel import ForkedChecks
from orchestrator.engine.registry import driver_capabilities, driver_settings_model
from orchestrator.engine.secret_check import check_plugin_references, check_references
from orchestrator.inventory.inventory import EnforcementPoint, Inventory, load_inventory
from orchestrator.inventory.scope import protected_addresses
from orchestrator.model.capabilities import GENERIC, Capabilities
from orchestrator.model.errors import Diagnostic, InventoryError, MicrosegError, PolicyError, collect_errors
from orchestrator.model.rules import AddressSet
from orchestrator.policy.loader import LoadedPolicy, load_policy


@dataclass(frozen=True)
class Project:
    """A loaded policy and inventory, evaluated as of ``today``."""

    loaded: LoadedPolicy
    inventory: Inventory
    today: date

    @property
    def diagnostics(self) -> tuple[Diagnostic, ...]:
        return (*self.loaded.diagnostics, *self.inventory.diagnostics)

    def prepare(self) -> PreparedPolicy:
        return prepare_policy(
            self.loaded.policy, self.inventory.workloads, today=self.today, sources=self.loaded.sources
        )

    def targets(self, names: Iterable[str] | None = None) -> list[Target]:
        points = self.inventory.points if names is None else [self.inventory.point(n) for n in names]
        known = AddressSet.of(str(a) for w in self.inventory.workloads for a in w.addresses)
        return [target_for(p, self.inventory, known) for p in points]

    def compile(self, names: Iterable[str] | None = None, prepared: PreparedPolicy | None = None) -> Compilation:
        """Compile the named points (all by default), reusing ``prepared`` when the caller has it; big proofs run
        on a spare core meanwhile (``orchestrator.engine.parallel``)."""
        return compile_prepared(prepared or self.prepare(), self.targets(names), self.loaded.sources, ForkedChecks())


# What a driver can write, not a limit: an inventory may turn these off for a point, never on where the driver
# does not declare them (its renderer would have no words for such rules).
_RENDERED_ONLY = ("tcp_established",)


def capabilities_for(point: EnforcementPoint) -> Capabilities:
    """The driver's declared capabilities with the inventory's overrides applied."""
    declared = driver_capabilities(point.driver)
    base = declared or GENERIC
    if not point.capabilities_overrides:
        return base
    try:
        merged = base.merged(dict(point.capabilities_overrides))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InventoryError(f"{point.name}: invalid capabilities override: {problems}",
                             [Diagnostic(problems, point.location)]) from exc
    for name in _RENDERED_ONLY:
        if declared is not None and getattr(merged, name) and not getattr(declared, name):
            problem = f"capabilities.{name}: driver {point.driver} cannot write it (only turning it off is allowed)"
            raise InventoryError(f"{point.name}: invalid capabilities override: {problem}",
                                 [Diagnostic(problem, point.location)])
    return merged


def target_for(point: EnforcementPoint, inventory: Inventory, known: AddressSet) -> Target:
    """The compiler's view of ``point``; ``known`` is every workload address of the inventory."""
    scope = protected_addresses(point, inventory.workloads)
    return Target(
        name=point.name,
        scope=scope,
        members=scope.intersection(known),
        directions=frozenset(point.directions),
        capabilities=capabilities_for(point),
        driver=point.driver,
        location=point.location,
        mode=point.mode,
    )


def load_checked_inventory(directory: Path) -> Inventory:
    """The inventory, each point's settings typed by its driver's settings model, and the syntax of its secret
    references checked (never resolved: that is run time)."""
    references = check_references(directory)
    try:
        inventory = load_inventory(directory, settings_models=driver_settings_model)
    except InventoryError as exc:
        if not collect_errors(references):
            raise
        diagnostics = [*exc.diagnostics, *references]
        raise InventoryError(_errors_in(directory, diagnostics), diagnostics) from exc
    if inventory.plugin_data is not None:
        references += check_plugin_references(inventory.plugin_data, known=references)
    if collect_errors(references):
        diagnostics = [*inventory.diagnostics, *references]
        raise InventoryError(_errors_in(directory, diagnostics), diagnostics)
    # the plugin's raw data (credentials too) was only kept for this check
    return replace(inventory, diagnostics=(*inventory.diagnostics, *references), plugin_data=None)


def _errors_in(directory: Path, diagnostics: Iterable[Diagnostic]) -> str:
    count = len(collect_errors(diagnostics))
    return f"inventory {directory} has {count} error{'' if count == 1 else 's'}"


def load_project(policy_dir: Path, inventory_dir: Path, *, today: date) -> Project:
    """Load both directories; when both have errors, all of them are reported in one PolicyError."""
    failures: list[MicrosegError] = []
    loaded: LoadedPolicy | None = None
    inventory: Inventory | None = None
    try:
        loaded = load_policy(policy_dir, today=today)
    except PolicyError as exc:
        failures.append(exc)
    try:
        inventory = load_checked_inventory(inventory_dir)
    except InventoryError as exc:
        failures.append(exc)
    if len(failures) == 1:
        raise failures[0]
    if failures:
        raise PolicyError(
            " and ".join(f.message for f in failures), [d for f in failures for d in f.diagnostics]
        )
    assert loaded is not None and inventory is not None
    return Project(loaded, inventory, today)
