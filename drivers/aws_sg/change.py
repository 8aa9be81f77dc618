"""Checking a change before apply sends it: only the calls render produces, only on what this point owns."""

from __future__ import annotations

import json
from typing import Any

from drivers.aws_sg.permissions import DRIVER
from drivers.aws_sg.plan import NEW_GROUP, Call
from drivers.aws_sg.settings import AwsSettings
from drivers.aws_sg.state import BOTH, Observation
from orchestrator.model import Direction, PermanentDriverError

GROUP_CALLS = frozenset({"authorize_security_group_ingress", "authorize_security_group_egress",
                         "revoke_security_group_ingress", "revoke_security_group_egress"})
APPLY_CALLS = GROUP_CALLS | {"create_security_group", "modify_network_interface_attribute"}


class ChangeChecker:
    """Decodes the JSON lines of a change against the state apply is about to change (fail closed)."""

    def __init__(self, point: str, settings: AwsSettings, seen: Observation,
                 directions: frozenset[Direction] = BOTH) -> None:
        self.point = point
        self.settings = settings
        self.seen = seen
        self.directions = directions
        group = seen.native["group"]
        self.owned: str | None = group["id"] if group else None
        self.created = False

    def fail(self, number: int, message: str) -> PermanentDriverError:
        return PermanentDriverError(f"line {number} of the change {message}", point=self.point, driver=DRIVER)

    def decode(self, lines: tuple[str, ...]) -> list[Call]:
        return [self.check(number, line) for number, line in enumerate(lines, start=1)]

    def check(self, number: int, line: str) -> Call:
        try:
            call: Any = json.loads(line)
        except ValueError:
            raise self.fail(number, f"is not a JSON call: {line[:120]!r}") from None
        if not isinstance(call, dict) or call.get("call") not in APPLY_CALLS or not isinstance(call.get("params"),
                                                                                                   dict):
            raise self.fail(number, f"is not a call this driver sends: {line[:120]!r}")
        name, params = call["call"], call["params"]
        if name == "create_security_group":
            self.check_create(number, params)
        elif name in GROUP_CALLS:
            self.check_direction(number, name, params.get("GroupId"))
            self.check_group(number, params.get("GroupId"))
            self.check_rule_ids(number, params.get("SecurityGroupRuleIds"))
            self.check_references(number, params.get("IpPermissions"), call.get("references"))
        else:
            self.check_modify(number, params)
        return call

    def check_create(self, number: int, params: dict[str, Any]) -> None:
        if params.get("GroupName") != self.settings.group_name or params.get("VpcId") != self.settings.vpc_id:
            raise self.fail(number, f"creates a group other than {self.settings.group_name} in {self.settings.vpc_id}")
        if self.owned is not None or self.created:
            raise self.fail(number, f"creates {self.settings.group_name}, which exists already ({self.owned})")
        self.created = True

    def check_direction(self, number: int, name: str, group_id: Any = None) -> None:
        direction = Direction(name.rsplit("_", 1)[1])
        if direction not in self.directions and not (name.startswith("revoke") and group_id == NEW_GROUP
                                                     and self.created):  # a new group's defaults: see Planner
            raise self.fail(number, f"edits {direction} rules of {self.settings.group_name}, but the point does not "
                                    f"filter {direction} (inventory directions): they are not its to change")

    def check_group(self, number: int, group_id: Any) -> None:
        allowed = {self.owned} | ({NEW_GROUP} if self.created else set())
        if group_id not in allowed:
            raise self.fail(number, f"edits {group_id}, not the owned group {self.settings.group_name} "
                                    f"({self.owned or 'absent'})")

    def check_rule_ids(self, number: int, ids: Any) -> None:
        """Rules revoked by id must be rules of the owned group now (else the group changed since the plan)."""
        if ids is None:
            return
        present = {r.get("SecurityGroupRuleId") for r in self.seen.native["rules"]}
        if not isinstance(ids, list) or not ids or not set(ids) <= present:
            missing = sorted(set(ids) - present) if isinstance(ids, list) else ids
            raise self.fail(number, f"revokes rule(s) {missing}, which {self.owned or 'the group'} does not hold "
                                    f"now: the group changed since the plan — plan again")

    def check_references(self, number: int, permissions: Any, expected: Any) -> None:
        """A reference may name another group of the VPC only, whose members are still those render chose it for."""
        pairs = [p for item in permissions or [] if isinstance(item, dict)
                 for p in item.get("UserIdGroupPairs", [])]
        expected = expected if isinstance(expected, dict) else {}
        for pair in pairs:
            gid = pair.get("GroupId") if isinstance(pair, dict) else None
            if not isinstance(gid, str) or gid in (self.owned, NEW_GROUP) or gid not in expected:
                raise self.fail(number, f"references {gid!r}, which render did not choose")
            now = self.seen.members(gid)
            if sorted(expected[gid]) != now:
                raise self.fail(number, f"references {gid}, whose members changed since the plan ({expected[gid]} "
                                        f"→ {now}): plan again")

    def check_modify(self, number: int, params: dict[str, Any]) -> None:
        """An ENI's groups may change by exactly the owned group (attach or detach), nothing else."""
        eni = self.seen.enis.get(str(params.get("NetworkInterfaceId")))
        groups = params.get("Groups")
        if eni is None or not isinstance(groups, list) or not groups:
            raise self.fail(number, f"modifies {params.get('NetworkInterfaceId')}, not an ENI of "
                                    f"{self.settings.vpc_id} (or without groups)")
        ours = {g for g in (self.owned, NEW_GROUP if self.created else None) if g}
        changed = set(groups) ^ set(eni.group_ids)
        if len(changed) != 1 or not changed <= ours:
            raise self.fail(number, f"changes the groups of {eni.id} by {sorted(changed)}: only the owned group "
                                    f"may be attached or detached")
