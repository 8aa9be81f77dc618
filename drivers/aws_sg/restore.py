"""Pure: the EC2 calls that put the owned group and its ENI attachments back as a checkpoint recorded them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drivers.aws_sg.permissions import DRIVER, ip_permissions
from drivers.aws_sg.plan import Call, revoke_call
from drivers.aws_sg.state import BOTH, Observation, direction_of, interfaces, permissions, split_rows
from drivers.aws_sg.vpcview import Interface
from orchestrator.model import Direction, PermanentDriverError, shown


def _fail(point: str, message: str) -> PermanentDriverError:
    return PermanentDriverError(message, point=point, driver=DRIVER)


def _modify(eni: Interface, groups: list[str], note: str) -> Call:
    return {"call": "modify_network_interface_attribute", "note": note,
            "params": {"NetworkInterfaceId": eni.id, "Groups": groups}}


def _detach(point: str, eni: Interface, gid: str) -> Call:
    groups = [g for g in eni.group_ids if g != gid]
    if not groups:
        raise _fail(point, f"cannot detach {gid} from {eni.id}: it is that ENI's only security group")
    return _modify(eni, groups, f"detach {gid}")


def _owned_rows(rows: Any, directions: frozenset[Direction]) -> Any:
    return split_rows(rows, directions)[0] if isinstance(rows, list | tuple) else rows  # else permissions() refuses


def _saved_directions(point: str, saved: Mapping[str, Any]) -> frozenset[Direction]:
    """The directions a checkpoint covers (one recorded before directions were recorded covers both)."""
    recorded = saved.get("directions")
    if recorded is None:
        return BOTH
    try:
        return frozenset(Direction(d) for d in recorded)
    except (TypeError, ValueError):
        raise _fail(point, f"the checkpoint's directions {shown(recorded)} are not ingress/egress") from None


def _rule_calls(point: str, gid: str, saved: Mapping[str, Any], now: Mapping[str, Any],
                directions: frozenset[Direction]) -> list[Call]:
    want = {p.key(): p for p in permissions(_owned_rows(saved["rules"], directions), point)}
    have = {p.key(): p for p in permissions(_owned_rows(now["rules"], directions), point)}
    calls: list[Call] = []
    for egress, suffix in ((False, "ingress"), (True, "egress")):
        if direction_of(egress) not in directions:
            continue
        add = [p for k, p in want.items() if k not in have and p.egress is egress]
        remove = [p for k, p in have.items() if k not in want and p.egress is egress]
        if add:
            calls.append({"call": f"authorize_security_group_{suffix}",
                          "params": {"GroupId": gid, "IpPermissions": ip_permissions(add)}})
        if remove:
            calls.append(revoke_call(point, gid, egress, remove))
    return calls


def _attachment_calls(point: str, gid: str, saved: Mapping[str, Any], now: Observation) -> list[Call]:
    had = {e.id for e in interfaces(saved) if gid in e.group_ids}
    calls: list[Call] = []
    for eni in sorted(now.enis.values(), key=lambda e: e.id):
        if eni.id in had and gid not in eni.group_ids:
            calls.append(_modify(eni, [*eni.group_ids, gid], f"re-attach {gid}"))
        elif eni.id not in had and gid in eni.group_ids:
            calls.append(_detach(point, eni, gid))
    return calls


def restore_calls(point: str, saved: Mapping[str, Any], now: Observation,
                  directions: frozenset[Direction] = BOTH) -> list[Call]:
    """Calls from the state ``now`` back to the checkpoint ``saved`` (empty when already there).

    Rules are restored only for the directions the point filters (``directions``) that the checkpoint covers
    too: the group's rules of any other direction are left as they are, whatever the checkpoint holds.
    """
    if saved.get("vpc_id") != now.native["vpc_id"] or saved.get("group_name") != now.native["group_name"]:
        raise _fail(point, f"the checkpoint is of {saved.get('group_name')} in {saved.get('vpc_id')}, not of this "
                           f"point's group {now.native['group_name']} in {now.native['vpc_id']}")
    old, current = saved["group"], now.native["group"]
    if old is None:
        if current is None:
            return []
        gid = current["id"]
        detach = [_detach(point, e, gid) for _, e in sorted(now.enis.items()) if gid in e.group_ids]
        return [*detach, {"call": "delete_security_group", "note": "it did not exist at the checkpoint",
                          "params": {"GroupId": gid}}]
    if current is None or current["id"] != old["id"]:
        found = current["id"] if current else "none"
        raise _fail(point, f"security group {old['id']} of the checkpoint no longer exists (found: {found}); "
                           f"its rules cannot be restored in place")
    owned = directions & _saved_directions(point, saved)
    return (_rule_calls(point, old["id"], saved, now.native, owned)
            + _attachment_calls(point, old["id"], saved, now))
