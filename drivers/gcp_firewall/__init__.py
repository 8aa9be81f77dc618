"""GCP VPC firewall rule driver: the rules of one network named ``<prefix><point>-…``, through google-cloud-compute."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from drivers.gcp_firewall.adopt import foreign_enforcement
from drivers.gcp_firewall.native import UNDERSTOOD, RenderError, read_owned, targets_for
from drivers.gcp_firewall.observe import check_quota, log_names, native_parts, observed_ruleset, split_rules
from drivers.gcp_firewall.plan import Call, plan_calls, restore_calls
from drivers.gcp_firewall.settings import DRIVER, GcpSettings, parse_settings
from drivers.settingsmodel import parser_checked

if TYPE_CHECKING:  # the Compute SDK takes ~1.4 s to import: loaded when a driver is made, not for validate
    from google.auth.credentials import Credentials

    from drivers.gcp_firewall.transport import ComputeSession
from orchestrator.model import (
    ApplyReport,
    Capabilities,
    Checkpoint,
    Direction,
    DriverSettings,
    Existing,
    NativeChange,
    Observed,
    Ordering,
    PermanentDriverError,
    PointContext,
    RenderRequest,
    Ruleset,
    Snapshot,
    fingerprint,
)

__all__ = ["GcpFirewallDriver", "GcpSettings"]

CHANGE_FORMAT = "api-calls"
APPLY_VERBS = ("insert", "patch", "delete")


# the settings this driver reads (its parse_settings checks each); the engine types the inventory with them
GCP_KEYS = (
    "api_endpoint", "credentials", "firewall_quota", "network", "operation_timeout", "page_size",
    "priority_base", "project", "rule_name_prefix", "target_service_accounts", "target_tags",
)
GcpSettingsModel = parser_checked("GcpSettingsModel", GCP_KEYS, lambda s: parse_settings("(inventory)", s))


class GcpFirewallDriver:
    """The VPC firewall rules of one network that microseg owns for one point, applied to the point's members
    through target tags (or target service accounts).

    Settings: ``project``, ``network``, ``target_tags`` or ``target_service_accounts``, ``rule_name_prefix``
    (default ``mseg-``), ``api_endpoint`` (default the public Compute endpoint), ``priority_base`` (1000),
    ``firewall_quota`` (500), ``page_size`` (500), ``operation_timeout`` (300 s), ``credentials``
    (``default``: Application Default Credentials; ``anonymous``: test servers only).

    Only the directions the point filters (``PointContext.directions``) are owned: for an ingress-only point
    the ``-e…`` and ``deny-egress`` rules of its prefix are never written, changed or deleted — they are reported
    as unmanaged, like any foreign rule — and a default deny adds no egress deny-all.
    """

    settings_model: ClassVar[type[DriverSettings]] = GcpSettingsModel

    name: ClassVar[str] = "gcp_firewall"
    capabilities: ClassVar[Capabilities] = Capabilities(
        ordering=Ordering.PRIORITY,
        stateful=True,
        monitor_mode=True,  # would-deny rules as logged allows, logged allow-the-rest rules (native.unit_bodies)
        monitor_by_log=True,  # the log marks would-deny evidence: a rule's own log flag is not kept while monitoring
        max_prefixes_per_rule=256,
        mixed_families_per_rule=False,
        icmp_types=False,  # firewall rules match a protocol and ports, never an ICMP type: widened (warning)
    )

    def __init__(self, context: PointContext, *, credentials: Credentials | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.context = context
        self.point = context.name
        self.settings = parse_settings(context.name, context.settings, context.directions)
        self.targets = targets_for(context.members)
        from drivers.gcp_firewall.transport import ComputeSession  # noqa: PLC0415  (see TYPE_CHECKING above)

        self.session: ComputeSession = ComputeSession(self.settings, timeout=context.timeout,
                                                      credentials=credentials, sleep=sleep)

    def _error(self, message: str) -> PermanentDriverError:
        return PermanentDriverError(message, point=self.point, driver=DRIVER)

    # ------------------------------------------------------------------ contract

    def fetch(self) -> Snapshot:
        """Every rule of the project (one paged list): the owned ones are the scope, the network's others unmanaged."""
        native = split_rules(self.session.list_rules(), self.settings)
        return Snapshot(self.point, DRIVER, native, stable=_stable(native["owned"], self.settings))

    def existing(self) -> Existing:
        """The network's rules someone else wrote that apply to the members, plus GCP's implied rules, as rules
        (read-only; for ``microseg adopt``; see :mod:`drivers.gcp_firewall.adopt`)."""
        return foreign_enforcement(self.session.list_rules(), self.settings, self.context.members,
                                   frozenset(self.context.directions), self.point)

    def normalize(self, snapshot: Snapshot) -> Observed:
        owned, unmanaged, _ = native_parts(snapshot.native, self.settings)
        units, defaults = read_owned(owned, self.settings, self.targets)
        ruleset = observed_ruleset(self.point, units, defaults, self.targets, self.settings.directions)
        return Observed(ruleset, tuple(unmanaged), log_names=log_names(ruleset, units))

    def render(self, request: RenderRequest) -> NativeChange:
        """One insert / patch / delete per changed native rule, in a make-before-break order; quota checked."""
        intended = request.intended
        self._check_semantics(intended)
        owned, _, project_rules = native_parts(request.snapshot.native, self.settings)
        units, _ = read_owned(owned, self.settings, self.targets)
        bodies = {str(r["name"]): r for r in owned if self.settings.parse_name(str(r["name"])) is not None}
        try:
            calls = plan_calls(units, intended, self.settings, self.targets, bodies)
        except ValueError as exc:
            raise RenderError(str(exc), point=self.point, driver=DRIVER) from exc
        check_quota(calls, project_rules, self.settings)
        return NativeChange(self.point, DRIVER, CHANGE_FORMAT, tuple(c.command() for c in calls),
                            mutating_calls=len(calls))

    def _check_semantics(self, intended: Ruleset) -> None:
        problems: list[str] = []
        if intended.ordering is not Ordering.PRIORITY:
            problems.append(f"ordering {intended.ordering.value} (GCP evaluates rules by priority)")
        if not intended.stateful:
            problems.append("stateless rules (GCP firewall rules are always stateful)")
        for direction in Direction:
            if direction not in self.settings.directions and intended.for_direction(direction):
                problems.append(f"{direction.value} rules on a point that does not filter {direction.value} "
                                f"(inventory directions)")
        if problems:
            raise RenderError(f"cannot express {'; '.join(problems)}", point=self.point, driver=DRIVER)

    def checkpoint(self) -> Checkpoint:
        """The owned rules exactly as fetched (their fingerprint is fetch()'s)."""
        native = split_rules(self.session.list_rules(), self.settings)
        stable = _stable(native["owned"], self.settings)
        return Checkpoint(self.point, DRIVER, stable, fingerprint(stable))

    def apply(self, change: NativeChange) -> ApplyReport:
        """The change's calls in their order, each awaited until its operation is DONE."""
        if change.empty:
            return ApplyReport(self.point, 0, 0, 0.0)
        calls = self._calls(change)
        started = time.monotonic()
        for call in calls:
            self.session.send(call)
        counts = {verb: sum(1 for c in calls if c.verb == verb) for verb in APPLY_VERBS}
        output = ", ".join(f"{verb} {n}" for verb, n in counts.items() if n)
        return ApplyReport(self.point, len(calls), len(change.commands), time.monotonic() - started, output)

    def _calls(self, change: NativeChange) -> list[Call]:
        """The change's commands read back, refusing anything outside the owned scope."""
        if change.driver != DRIVER or change.format != CHANGE_FORMAT or change.point != self.point:
            raise self._error(f"cannot apply a {change.format} change of driver {change.driver} for {change.point}")
        calls: list[Call] = []
        for number, line in enumerate(change.commands, start=1):
            verb, _, rest = line.partition(" ")
            name, _, text = rest.partition(" ")
            body: dict[str, Any] | None = None
            try:
                body = json.loads(text) if text else None
            except ValueError:
                body = None
            if not self._allowed(verb, name, body):
                raise self._error(f"command {number} of the change is not a call on a rule of this point: {line!r}")
            calls.append(Call(verb, name, int((body or {}).get("priority", 0)), body))
        return calls

    def _allowed(self, verb: str, name: str, body: Mapping[str, Any] | None) -> bool:
        if verb not in APPLY_VERBS or self.settings.parse_name(name) is None:
            return False
        if verb == "delete":
            return body is None
        return (isinstance(body, Mapping) and body.get("name") == name and set(body) <= UNDERSTOOD
                and self.settings.network_matches(body.get("network"))
                and {k: body.get(k) for k in ("targetTags", "targetServiceAccounts") if body.get(k)}
                == self.settings.targets())

    def rollback(self, checkpoint: Checkpoint) -> None:
        """Put every owned rule back as checkpointed (inserting, patching or replacing, deleting); idempotent."""
        native = checkpoint.native
        if (checkpoint.driver != DRIVER or checkpoint.point != self.point or not isinstance(native, Mapping)
                or native.get("network") != self.settings.network or not isinstance(native.get("owned"), list)):
            raise self._error("not a checkpoint of this point's GCP firewall rules")
        wanted = {str(r["name"]): dict(r) for r in native["owned"]}
        unfiltered = sorted(n for n in wanted if self.settings.parse_name(n) is None
                            and self.settings.read_name(n) is not None)
        if unfiltered:  # checkpointed while the point filtered more directions: restoring them is not ours to do
            raise self._error(f"the checkpoint holds rules of a direction this point no longer filters (inventory "
                              f"directions), which it leaves alone: {', '.join(unfiltered)}")
        if any(self.settings.parse_name(n) is None for n in wanted):
            raise self._error("the checkpoint holds rules this point does not own")
        current = {str(r["name"]): r for r in split_rules(self.session.list_rules(), self.settings)["owned"]}
        for call in restore_calls(current, wanted):
            self.session.send(call)

    def close(self) -> None:
        self.session.close()


def _stable(owned: list[dict[str, Any]], settings: GcpSettings) -> dict[str, Any]:
    """What the fingerprint covers: the owned rules of the network (the unmanaged ones may change freely)."""
    return {"network": settings.network, "owned": owned}
