"""AWS security group driver (boto3): one dedicated, tagged security group per point, attached to the members' ENIs."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar

from drivers.aws_sg.change import ChangeChecker
from drivers.aws_sg.permissions import DRIVER
from drivers.aws_sg.plan import NEW_GROUP, Call, Planner, encode
from drivers.aws_sg.restore import restore_calls
from drivers.aws_sg.settings import parse_settings
from drivers.aws_sg.state import Observation, normalize_native, observe, snapshot_of
from drivers.aws_sg.transport import Ec2Api
from orchestrator.capabilities import Capabilities
from orchestrator.driver import (
    ApplyReport,
    Checkpoint,
    NativeChange,
    Observed,
    PointContext,
    RenderRequest,
    Snapshot,
)
from orchestrator.errors import PermanentDriverError
from orchestrator.rules import Action, Ordering

CALLS_FORMAT = "api-calls"


class AwsSecurityGroupDriver:
    """One security group per point, found by name and owner tag in the VPC, created on first apply.

    Settings: ``region``, ``vpc_id`` (required); ``security_group_name`` (default ``mseg-<point>``);
    ``owner_tag`` (default ``{"microseg:managed": <point>}``; a group with the name but not the tag is never
    touched); ``endpoint_url``, ``profile``; ``max_mutating_calls_per_second`` (5); ``rules_per_sg`` (60, per
    direction and family); ``security_groups_per_eni`` (5); ``page_size`` (1000); ``throttle_retries`` (4);
    ``retry_base_seconds`` (1.0).  Rules name only the peer; they apply to the members (``PointContext.members``).
    """

    name: ClassVar[str] = DRIVER
    capabilities: ClassVar[Capabilities] = Capabilities(
        actions=frozenset({Action.PERMIT}),
        ordering=Ordering.UNORDERED_ALLOW,
        stateful=True,
        logging=False,
        monitor_mode=False,
        max_rules=60,
        count_families_separately=True,
        max_prefixes_per_rule=1,
        max_port_ranges_per_rule=1,
        mixed_families_per_rule=False,  # an EC2 rule is IPv4 or IPv6, and applies to the members of that family
        scope_implicit=True,
    )

    def __init__(self, context: PointContext, *, session: Any = None) -> None:
        """``session``: a boto3 Session to build the client from (default: a new one for ``profile``)."""
        self.context = context
        self.point = context.name
        self.settings = parse_settings(context.name, context.settings)
        self.members = context.members
        self.api = Ec2Api(context.name, self.settings, context.timeout, session=session)
        self.planner = Planner(context.name, self.settings, context.members)
        self._seen: Observation | None = None
        """The latest observation, until a call changes the state: what apply checks a change against."""

    def _error(self, message: str) -> PermanentDriverError:
        return PermanentDriverError(message, point=self.point, driver=DRIVER)

    def _observe(self) -> Observation:
        self._seen = observe(self.api, self.settings, self.members)
        return self._seen

    # ------------------------------------------------------------------ contract

    def fetch(self) -> Snapshot:
        """The owned group (by name + owner tag), its rules, and the ENIs that hold members or the group."""
        return snapshot_of(self.point, self._observe())

    def normalize(self, snapshot: Snapshot) -> Observed:
        return normalize_native(snapshot.native, self.members, self.point)

    def render(self, request: RenderRequest) -> NativeChange:
        """The EC2 calls, one JSON line each: intended rules against the snapshot's rules and attachments."""
        calls = self.planner.render(request.snapshot.native, request.intended)
        return NativeChange(request.point, DRIVER, CALLS_FORMAT, tuple(encode(c) for c in calls), len(calls))

    def checkpoint(self) -> Checkpoint:
        """The group's rules (with descriptions), whether it existed, and the relevant ENIs' groups."""
        snapshot = self.fetch()
        return Checkpoint(self.point, DRIVER, snapshot.native, snapshot.fingerprint())

    def apply(self, change: NativeChange) -> ApplyReport:
        """Send the rendered calls in order (rate-limited); the engine re-fetches to verify, never the responses."""
        if change.driver != DRIVER or change.format != CALLS_FORMAT or change.point != self.point:
            raise self._error(f"cannot apply a {change.format} change of {change.driver} for {change.point}")
        seen = self._seen or self._observe()
        calls = ChangeChecker(self.point, self.settings, seen).decode(change.commands)
        started = time.monotonic()
        output = self._run(calls)
        return ApplyReport(self.point, len(calls), len(change.commands), time.monotonic() - started,
                           "\n".join(output))

    def rollback(self, checkpoint: Checkpoint) -> None:
        """Authorize/revoke back to the checkpoint's rules and attachments; delete the group if it was absent."""
        if checkpoint.driver != DRIVER or checkpoint.point != self.point or not isinstance(checkpoint.native, dict):
            raise self._error(f"not an aws_sg checkpoint of {self.point}")
        self._run(restore_calls(self.point, checkpoint.native, self._observe()))

    def close(self) -> None:
        self.api.close()

    # ------------------------------------------------------------------ calls

    def _run(self, calls: Sequence[Call]) -> list[str]:
        """Execute ``calls`` in order, putting the created group's id where the placeholder stands."""
        created: str | None = None
        output: list[str] = []
        for call in calls:
            self._seen = None
            params = self._substitute(call["params"], created)
            subject = self._subject(call["call"], params)
            response = self.api.mutate(call["call"], subject, params)
            if call["call"] == "create_security_group":
                created = str(response["GroupId"])
            output.append(f"{call['call']} {subject}: ok")
        return output

    def _subject(self, call: str, params: dict[str, Any]) -> str:
        if call == "modify_network_interface_attribute":
            return f"{params['NetworkInterfaceId']} (groups {', '.join(params['Groups'])})"
        if call == "create_security_group":
            return f"{self.settings.group_name} in {self.settings.vpc_id}"
        return f"{params.get('GroupId')} ({self.settings.group_name})"

    def _substitute(self, params: dict[str, Any], created: str | None) -> dict[str, Any]:
        """``params`` with the new group's id in place of the placeholder (only after the create call)."""
        def swap(value: Any) -> Any:
            if value != NEW_GROUP:
                return value
            if created is None:
                raise self._error("the change uses the new security group before creating it")
            return created

        out = dict(params)
        if "GroupId" in out:
            out["GroupId"] = swap(out["GroupId"])
        if "Groups" in out:
            out["Groups"] = [swap(g) for g in out["Groups"]]
        return out
