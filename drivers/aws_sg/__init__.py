"""AWS security group driver (boto3): one dedicated, tagged security group per point, attached to the members' ENIs."""

from __future__ import annotations

import time
import weakref
from collections.abc import Hashable, Sequence
from typing import Any, ClassVar

from drivers.aws_sg.adopt import foreign_enforcement, foreign_groups, member_interfaces
from drivers.aws_sg.change import ChangeChecker
from drivers.aws_sg.permissions import DRIVER
from drivers.aws_sg.plan import NEW_GROUP, Call, Planner, encode
from drivers.aws_sg.ratelimit import account_key
from drivers.aws_sg.restore import restore_calls
from drivers.aws_sg.settings import parse_settings
from drivers.aws_sg.shared import NEVER, Part, ReadRegistry
from drivers.aws_sg.state import Observation, normalize_native, observation_of, snapshot_of
from drivers.aws_sg.vpcview import VpcView, group_rules, interest_of, load_view
from drivers.settingsmodel import parser_checked
from orchestrator.model import (
    Action,
    ApplyReport,
    Capabilities,
    Checkpoint,
    DriverSettings,
    Existing,
    NativeChange,
    Observed,
    Ordering,
    PermanentDriverError,
    PointContext,
    RenderRequest,
    Snapshot,
)

CALLS_FORMAT = "api-calls"
READS: ReadRegistry[VpcView] = ReadRegistry()
"""The process's shared VPC reads (one per account key and VPC)."""
ENIS: Part = ("enis",)


# the settings this driver reads (its parse_settings checks each); the engine types the inventory with them
AWS_KEYS = (
    "account_id", "credentials", "endpoint_url", "max_mutating_calls_per_second", "mutating_call_burst", "owner_tag",
    "page_size", "profile", "region", "retry_base_seconds", "rules_per_sg", "security_group_name",
    "security_groups_per_eni", "sg_references", "shared_read_ttl", "throttle_retries", "vpc_id",
)
AwsSettingsModel = parser_checked("AwsSettingsModel", AWS_KEYS, lambda s: parse_settings("(inventory)", s))


class AwsSecurityGroupDriver:
    """One security group per point, found by name and owner tag in the VPC, created on first apply.

    Settings: ``region``, ``vpc_id`` (required); ``security_group_name`` (default ``mseg-<point>``);
    ``owner_tag`` (default ``{"microseg:managed": <point>}``; a group with the name but not the tag is never
    touched); ``endpoint_url``, ``profile``, ``account_id``; ``credentials`` (``default``: the profile, environment
    or role; ``anonymous``: placeholder keys, for a loopback ``endpoint_url`` such as the lab's moto only);
    ``max_mutating_calls_per_second`` (5) and
    ``mutating_call_burst`` (= the rate): one bucket per account and region for the whole process, at the lowest
    rate its points ask for; ``rules_per_sg`` (60, per direction and family); ``security_groups_per_eni`` (5);
    ``page_size`` (1000); ``throttle_retries`` (4); ``retry_base_seconds`` (1.0); ``shared_read_ttl`` (2 s: how
    long one describe round of the VPC may serve the points' first fetches); ``sg_references`` (true: reference
    another managed group where that saves rules, see :mod:`drivers.aws_sg.references`).  Rules name only the
    peer; they apply to the members (``PointContext.members``).  Revokes name rules by id; reads come from
    describe rounds of the VPC shared by its points (:mod:`drivers.aws_sg.shared`).  A point that filters one
    direction only (``PointContext.directions``) owns only the group's rules of that direction: those of the other
    are never rendered, revoked, restored or fingerprinted, and are reported as unmanaged — and a group it creates
    gives up EC2's default allow-all egress at once, since an ENI's groups add up: without egress rules the group
    leaves each member's egress as its other groups make it.
    """

    settings_model: ClassVar[type[DriverSettings]] = AwsSettingsModel

    name: ClassVar[str] = DRIVER
    capabilities: ClassVar[Capabilities] = Capabilities(
        actions=frozenset({Action.PERMIT}),
        ordering=Ordering.UNORDERED_ALLOW,
        stateful=True,
        logging=False,
        monitor_mode=True,  # allow-all rules beside the policy's, marked (see permissions.monitor_permissions)
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
        self.directions = frozenset(context.directions)
        if not self.directions:
            raise self._error("the point filters no direction (inventory `directions`): nothing to own")
        self.reads = READS.of(account_key(self.settings), self.settings.vpc_id)
        self.interest: Hashable = interest_of(self.settings)
        self.reads.register(self.interest)  # no I/O: tells the VPC's shared loads to describe this group's rules
        self._unregister: weakref.finalize[Any, Any] | None = weakref.finalize(self, self.reads.unregister,
                                                                             self.interest)
        from drivers.aws_sg.transport import Ec2Api  # noqa: PLC0415  (boto3 loads when a driver is made)

        self.api = Ec2Api(context.name, self.settings, context.timeout, session=session, on_change=self.reads.changed)
        self.planner = Planner(context.name, self.settings, context.members, self.directions)
        self._seen: Observation | None = None
        """The latest observation, until a call changes the state: what apply checks a change against."""
        self._fetched = False
        """After the first fetch, every fetch is served by a describe begun after it was asked for."""

    def _error(self, message: str) -> PermanentDriverError:
        return PermanentDriverError(message, point=self.point, driver=DRIVER)

    @property
    def _deps(self) -> tuple[Part, ...]:
        return (("group", self.settings.group_name), ENIS)

    def _observe(self) -> Observation:
        """This point's state out of a describe round of its VPC shared with the points fetching meanwhile."""
        not_before = time.monotonic() if self._fetched else NEVER
        view = self.reads.read(self.point, self.interest, self._deps, not_before, self.settings.shared_read_ttl,
                               self._load, self._covers)
        owned = self._owned(view)
        ipv6 = None if owned else view.vpc_ipv6(self.api)
        self._seen = observation_of(view, self.settings, self.members, ipv6, self.directions)
        self._fetched = True
        return self._seen

    def _load(self, interests: Any, narrow: bool) -> VpcView:
        return load_view(self.api, self.settings.vpc_id, interests, narrow)

    def _owned(self, view: VpcView) -> str | None:
        return next((g.id for g in view.named(self.settings.group_name)
                     if g.carries(self.settings.owner_tag.items())), None)

    def _covers(self, view: VpcView) -> bool:
        owned = self._owned(view)
        return owned is None or owned in view.rules

    # ------------------------------------------------------------------ contract

    def fetch(self) -> Snapshot:
        """The owned group (by name + owner tag), its rules, and the ENIs that hold members or the group."""
        return snapshot_of(self.point, self._observe())

    def existing(self) -> Existing:
        """The security groups someone else attached to the members' ENIs, as rules (read-only; for ``microseg
        adopt``): one describe round of the VPC, then the rules of those groups (see :mod:`drivers.aws_sg.adopt`)."""
        view = self._load([self.interest], True)
        enis = member_interfaces(view, self.members)
        groups, problems = foreign_groups(view, enis, self._owned(view))
        rows = group_rules(self.api, groups, self.settings.vpc_id)
        return foreign_enforcement(view, rows, self.members, enis, groups, self.directions, self.point, problems)

    def normalize(self, snapshot: Snapshot) -> Observed:
        return normalize_native(snapshot.native, self.members, self.point)

    def render(self, request: RenderRequest) -> NativeChange:
        """The EC2 calls, one JSON line each: intended rules against the snapshot's rules and attachments."""
        calls = self.planner.render(request.snapshot.native, request.intended)
        return NativeChange(request.point, DRIVER, CALLS_FORMAT, tuple(encode(c) for c in calls), len(calls))

    def checkpoint(self) -> Checkpoint:
        """The group's rules (with descriptions), whether it existed, and the relevant ENIs' groups."""
        snapshot = self.fetch()
        native = {k: v for k, v in snapshot.native.items() if k != "peers"}  # render's input, not restore's
        return Checkpoint(self.point, DRIVER, native, snapshot.fingerprint())

    def apply(self, change: NativeChange) -> ApplyReport:
        """Send the rendered calls in order (rate-limited); the engine re-fetches to verify, never the responses."""
        if change.driver != DRIVER or change.format != CALLS_FORMAT or change.point != self.point:
            raise self._error(f"cannot apply a {change.format} change of {change.driver} for {change.point}")
        seen = self._seen or self._observe()
        calls = ChangeChecker(self.point, self.settings, seen, self.directions).decode(change.commands)
        started = time.monotonic()
        output = self._run(calls)
        return ApplyReport(self.point, len(calls), len(change.commands), time.monotonic() - started,
                           "\n".join(output))

    def rollback(self, checkpoint: Checkpoint) -> None:
        """Authorize/revoke back to the checkpoint's rules (of the directions the point filters) and attachments;
        delete the group if it was absent."""
        if checkpoint.driver != DRIVER or checkpoint.point != self.point or not isinstance(checkpoint.native, dict):
            raise self._error(f"not an aws_sg checkpoint of {self.point}")
        self._run(restore_calls(self.point, checkpoint.native, self._observe(), self.directions))

    def close(self) -> None:
        self.api.close()
        if self._unregister is not None:
            self._unregister()
            self._unregister = None

    # ------------------------------------------------------------------ calls

    def _run(self, calls: Sequence[Call]) -> list[str]:
        """Execute ``calls`` in order, putting the created group's id where the placeholder stands."""
        created: str | None = None
        output: list[str] = []
        for call in calls:
            self._seen = None
            params = self._substitute(call["params"], created)
            subject = self._subject(call["call"], params)
            parts = (ENIS,) if call["call"] == "modify_network_interface_attribute" else self._deps[:1]
            response = self.api.mutate(call["call"], subject, params, parts)
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
