"""The driver contract test suite every driver runs, built-in or third party.

Subclass :class:`DriverContract` in a test module (the class name must start
with ``Test``) and provide two pytest fixtures:

* ``driver`` — a fresh driver instance for one point of a real (or faithfully
  simulated) counterpart, whose owned scope the tests may change; closed by
  the fixture afterwards;
* ``intended`` — a list of at least two different :class:`Ruleset` s for that
  point, valid for the driver's capabilities (the suite applies them in turn).

Optionally, ``ingress_only_driver`` — a driver for the same point and counterpart as ``driver`` whose
``PointContext.directions`` is ingress only: the suite then checks that it owns (installs) nothing for
egress.

Then pytest runs: contract shape and capabilities sanity, the round trip
(normalize∘fetch after apply(render(plan)) equals the intent), the
idempotency twin (a second plan after apply is empty), rollback restoring
the checkpoint (and being idempotent), re-application over a non-empty
state, directions (a point that filters ingress only gets no egress filtering),
and, where the driver has a monitor mode, the round trip enforce → monitor →
enforce → monitor (each verified, each idempotent).
"""

from __future__ import annotations

import inspect
from dataclasses import replace
from typing import Any

from orchestrator.engine.diff import diff_rulesets
from orchestrator.model import (
    DRIVER_METHODS,
    Action,
    ApplyReport,
    Capabilities,
    Checkpoint,
    ConfirmingDriver,
    Direction,
    Mode,
    NativeChange,
    Observed,
    RenderRequest,
    Ruleset,
    Snapshot,
)


def plan_and_apply(driver: Any, intended: Ruleset) -> tuple[NativeChange, ApplyReport | None]:
    """The engine's path for one point, without the engine: fetch, normalize, diff, render, apply."""
    snapshot = driver.fetch()
    observed = driver.normalize(snapshot)
    diff = diff_rulesets(observed.ruleset, intended)
    if diff.empty:
        return NativeChange(intended.point, driver.name, "none", (), 0), None
    change = driver.render(RenderRequest(intended.point, intended, observed.ruleset, snapshot, diff.added,
                                         diff.removed))
    report = driver.apply(change)
    if isinstance(driver, ConfirmingDriver):  # as the executor does: verify first, then confirm
        assert_matches(driver, intended)
        driver.confirm()
    return change, report


def as_monitor(ruleset: Ruleset, caps: Capabilities) -> Ruleset:
    """``ruleset`` in monitor mode as the compiler gives it to a driver with ``caps`` (log flags dropped where
    the platform marks would-deny entries by logging them)."""
    rules = tuple(replace(r, log=False) for r in ruleset.rules) if caps.monitor_by_log else ruleset.rules
    return replace(ruleset, mode=Mode.MONITOR, rules=rules)


def assert_matches(driver: Any, intended: Ruleset) -> None:
    observed = driver.normalize(driver.fetch()).ruleset
    remaining = diff_rulesets(observed, intended)
    assert remaining.empty, f"after apply the point still differs from the intent: {remaining.to_dict()}"


class DriverContract:
    """Mixin of contract tests; see the module docstring."""

    def test_contract_shape(self, driver: Any) -> None:
        cls = type(driver)
        assert isinstance(getattr(cls, "name", None), str) and cls.name
        assert isinstance(getattr(cls, "capabilities", None), Capabilities)
        for method in DRIVER_METHODS:
            assert callable(getattr(driver, method, None)), f"{cls.__name__} lacks {method}()"
        params = {m: list(inspect.signature(getattr(driver, m)).parameters) for m in DRIVER_METHODS}
        assert params["fetch"] == [] and params["checkpoint"] == [] and params["close"] == []
        for method in ("normalize", "render", "apply", "rollback"):
            assert len(params[method]) == 1, f"{method}() takes exactly one argument, not {params[method]}"

    def test_capabilities_sane(self, driver: Any) -> None:
        caps: Capabilities = type(driver).capabilities
        assert caps.actions, "a driver must support at least one action"
        assert Action.PERMIT in caps.actions
        assert caps.directions
        if caps.allow_only:
            assert caps.ordering.value == "unordered_allow"
        for limit in (caps.max_rules, caps.max_prefixes_per_rule, caps.max_port_ranges_per_rule):
            assert limit is None or limit >= 1

    def test_fetch_normalize_types(self, driver: Any) -> None:
        snapshot = driver.fetch()
        assert isinstance(snapshot, Snapshot)
        assert snapshot.fingerprint() == driver.fetch().fingerprint(), "fetching twice must fingerprint the same"
        assert isinstance(driver.normalize(snapshot), Observed)

    def test_round_trip_and_idempotency_twin(self, driver: Any, intended: list[Ruleset]) -> None:
        assert len(intended) >= 2, "the contract needs two different rulesets"
        for ruleset in intended:
            change, report = plan_and_apply(driver, ruleset)
            assert report is not None and isinstance(report, ApplyReport)
            assert not change.empty and report.mutating_calls >= 1
            assert_matches(driver, ruleset)
            twin, twin_report = plan_and_apply(driver, ruleset)
            assert twin.empty and twin_report is None, "a second plan after apply must be empty"

    def test_rollback_restores_checkpoint(self, driver: Any, intended: list[Ruleset]) -> None:
        plan_and_apply(driver, intended[0])
        before = driver.fetch()
        checkpoint = driver.checkpoint()
        assert isinstance(checkpoint, Checkpoint)
        assert checkpoint.fingerprint == before.fingerprint(), "a checkpoint fingerprints like fetch()"
        plan_and_apply(driver, intended[1])
        assert driver.fetch().fingerprint() != before.fingerprint()
        driver.rollback(checkpoint)
        assert driver.fetch().fingerprint() == before.fingerprint()
        assert driver.normalize(driver.fetch()).ruleset == driver.normalize(before).ruleset
        driver.rollback(checkpoint)  # idempotent
        assert driver.fetch().fingerprint() == before.fingerprint()

    def test_monitor_round_trip(self, driver: Any, intended: list[Ruleset]) -> None:
        """enforce → monitor → enforce → monitor, each verified and idempotent (a second plan is empty), where
        the driver has a monitor mode (capabilities.monitor_mode)."""
        import pytest  # noqa: PLC0415  (this module is imported by test suites only)

        caps: Capabilities = type(driver).capabilities
        if not caps.monitor_mode:
            pytest.skip(f"driver {type(driver).name} has no monitor mode")
        enforce = intended[0]
        monitor = as_monitor(enforce, caps)
        for ruleset in (enforce, monitor, enforce, monitor):
            change, report = plan_and_apply(driver, ruleset)
            assert report is not None and not change.empty, f"switching to {ruleset.mode.value} changed nothing"
            assert_matches(driver, ruleset)
            assert driver.normalize(driver.fetch()).ruleset.mode is ruleset.mode
            twin, twin_report = plan_and_apply(driver, ruleset)
            assert twin.empty and twin_report is None, f"a second {ruleset.mode.value} plan must be empty"

    def test_render_is_pure(self, driver: Any, intended: list[Ruleset]) -> None:
        snapshot = driver.fetch()
        observed = driver.normalize(snapshot)
        request = RenderRequest(intended[0].point, intended[0], observed.ruleset, snapshot)
        assert driver.render(request) == driver.render(request)
        assert driver.fetch().fingerprint() == snapshot.fingerprint(), "render must not change the point"

    def test_owns_nothing_for_directions_it_is_not_given(self, request: Any, driver: Any,
                                                          intended: list[Ruleset]) -> None:
        """An ingress-only point's default deny must not become an egress policy (every outbound connection of
        the protected members cut): after it applies, a driver of the same point filtering both directions
        still finds egress to enforce.  Where a point's rules add up with other objects attached beside it (a
        contract module's ``additive_attachments`` fixture is true: security groups), no egress rule at all is
        what leaves egress as it was."""
        import pytest  # noqa: PLC0415  (this module is imported by test suites only)

        try:
            ingress_only = request.getfixturevalue("ingress_only_driver")
        except pytest.FixtureLookupError:
            pytest.skip("this contract module gives no ingress_only_driver: directions are not checked")
        inbound = intended[0].for_direction(Direction.INGRESS)
        assert inbound, "intended[0] needs ingress rules for this test"
        ruleset = Ruleset(intended[0].point, intended[0].ordering, Action.DENY, inbound, intended[0].mode,
                          intended[0].stateful)
        plan_and_apply(ingress_only, ruleset)
        assert_matches(ingress_only, ruleset)
        seen_by_both = driver.normalize(driver.fetch()).ruleset
        try:
            additive = bool(request.getfixturevalue("additive_attachments"))
        except pytest.FixtureLookupError:
            additive = False
        if additive:  # rule sets that add up across attachments (security groups): neutral means no rule at all
            assert not seen_by_both.for_direction(Direction.EGRESS), "an ingress-only point holds egress rules"
        else:
            assert not diff_rulesets(seen_by_both, ruleset).empty, "an ingress-only point installed egress filtering"
