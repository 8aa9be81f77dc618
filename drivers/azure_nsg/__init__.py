"""Azure network security group driver: a name-prefix + priority band of one NSG, written whole in one ETag'd PUT."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from drivers.azure_nsg.adopt import foreign_enforcement
from drivers.azure_nsg.layout import DRIVER, NsgSettings, parse_settings, writable_nsg, writable_rule
from drivers.azure_nsg.parse import observed, partition_rules, split_view, stable_state
from drivers.azure_nsg.render import Renderer, parse_change
from drivers.azure_nsg.tags import ServiceTags, nics_of, resolve
from drivers.settingsmodel import parser_checked

if TYPE_CHECKING:  # the Azure SDK loads when a driver is made, not for validate
    from azure.core.credentials import TokenCredential

    from drivers.azure_nsg.transport import ArmTransport
from orchestrator.model import (
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

# the settings this driver reads (its parse_settings checks each); the engine types the inventory with them
NSG_KEYS = (
    "application_security_groups", "asg_member_scope", "base_url", "ca_bundle", "credentials", "location",
    "nsg_name",
    "operation_timeout", "poll_interval", "priority_max", "priority_min", "resource_group", "rule_name_prefix",
    "subscription_id",
)
NsgSettingsModel = parser_checked("NsgSettingsModel", NSG_KEYS, lambda s: parse_settings(s, "(inventory)"))


class AzureNsgDriver:
    """The rules of one NSG whose name starts with ``rule_name_prefix`` AND whose priority is in the band.

    Settings: ``subscription_id``, ``resource_group``, ``nsg_name`` (required); ``location`` (only to create a
    missing NSG); ``rule_name_prefix`` (default ``mseg-``); ``priority_min`` / ``priority_max`` (default 100 /
    4096; ``priority_max`` holds the catch-all deny); ``base_url`` (ARM endpoint, default the public one);
    ``ca_bundle`` (CA file for TLS); ``poll_interval`` (seconds between operation polls when ARM sends no
    Retry-After, default 5); ``operation_timeout`` (default 600).  The credential is passed to the constructor;
    without one, azure-identity's DefaultAzureCredential is used when installed; ``credentials: anonymous``
    sends a placeholder token instead, to a loopback ``base_url`` only (the lab's ARM simulator).

    Directions: only the point's (inventory ``directions``) are owned — an ingress-only point neither writes nor
    removes an Outbound rule (no Outbound catch-all deny), and leaves the band's Outbound rules alone, as unmanaged.

    Application security groups: ``application_security_groups`` lists the ASGs (resource ids, or names in the
    NSG's resource group; same subscription) the driver may use.  Their members are the private addresses of the
    NIC ip-configurations that reference them, listed (paged) in the resource groups of the NSG and of the ASGs,
    or the whole subscription with ``asg_member_scope: subscription``.  fetch reads each ASG and the NICs; the
    members are part of the fingerprint, so a NIC joining or leaving an ASG is drift.  Where a newly written
    rule's source or destination addresses are exactly one configured ASG's members of the rule's address family,
    render writes ``source/destinationApplicationSecurityGroups`` (one ASG per side, in place of the prefixes) —
    only when the rule still means exactly the same: the ASG is in the NSG's region and not empty, two ASGs in
    one rule share a virtual network, an ASG with members of the other family is used only opposite a prefix
    side (which pins the family), and an Icmp rule takes an ASG only opposite prefixes.  Rules kept unchanged
    keep their form.  normalize expands an ASG in an owned rule to its current members (the diff stays
    address-based); an ASG that is not configured or no longer exists fails closed (ParseError naming the rule
    and the ASG).  Extra permissions: ``Microsoft.Network/applicationSecurityGroups/read`` and
    ``/joinNetworkSecurityGroup/action``, ``Microsoft.Network/networkInterfaces/read``.
    """

    settings_model: ClassVar[type[DriverSettings]] = NsgSettingsModel

    name: ClassVar[str] = "azure_nsg"
    capabilities: ClassVar[Capabilities] = Capabilities(
        ordering=Ordering.PRIORITY,
        stateful=True,
        logging=False,
        monitor_mode=True,  # would-deny rules as marked Allow rules, an allow-the-rest catch-all (render.native_rule)
        max_rules=1000,
        max_prefixes_per_rule=4000,
        mixed_families_per_rule=False,
        icmp_types=False,  # the Icmp protocol matches every ICMP type: the compiler widens, with a warning
        protocols=frozenset({1, 6, 17, 50, 51}),  # Icmp, Tcp, Udp, Esp, Ah (and * for any)
    )

    def __init__(self, context: PointContext, *, credential: TokenCredential | None = None,
                 transport: ArmTransport | None = None) -> None:
        self.context = context
        self.point = context.name
        self.settings: NsgSettings = parse_settings(context.settings, context.name, context.directions)
        if transport is None:
            from drivers.azure_nsg.transport import ArmTransport  # noqa: PLC0415  (see TYPE_CHECKING above)

            transport = ArmTransport(self.settings, self.point, context.timeout, credential)
        self.transport = transport
        self.renderer = Renderer(self.settings, self.point)

    def _error(self, message: str) -> PermanentDriverError:
        return PermanentDriverError(message, point=self.point, driver=DRIVER)

    def fetch(self) -> Snapshot:
        """One GET of the NSG: its raw JSON and ETag (``exists`` False on 404); with application_security_groups
        also one GET per ASG and the NIC listing (its pages) that gives their members."""
        nsg, etag = self.transport.get_nsg()
        native: dict[str, Any] = {"exists": nsg is not None, "etag": etag, "nsg": nsg}
        if self.settings.application_security_groups:
            native["asgs"] = self.transport.asg_state()
        return Snapshot(self.point, DRIVER, native, stable=stable_state(native, self.settings))

    def existing(self) -> Existing:
        """The NSG's rules outside microseg's band and its default rules, as rules (read-only; for ``microseg
        adopt``; see :mod:`drivers.azure_nsg.adopt`).  Where a rule that is reached names a service tag, the NICs
        are listed (as for ASGs: ``asg_member_scope``) and each member NIC's effective security rules read once,
        for what Azure expands the tags to there (:mod:`drivers.azure_nsg.tags`)."""
        view = split_view(self.fetch().native, self.settings, self.point)
        members = self.context.members
        nsg_id = str((view.nsg or {}).get("id") or self.settings.path)

        def service_tags() -> ServiceTags:
            try:
                nics = nics_of(self.transport.list_nics(self.settings.nic_groups))
            except PermanentDriverError as exc:  # e.g. no networkInterfaces/read: the tags stay unknown, named
                return ServiceTags((), ((members, f"the network interfaces could not be listed: {exc.message}"),))
            return resolve(members, nics, lambda nic: self.transport.effective_nsgs(nic.id), nsg_id)

        return foreign_enforcement(view, self.settings, members, frozenset(self.context.directions), self.point,
                                   service_tags)

    def normalize(self, snapshot: Snapshot) -> Observed:
        return observed(split_view(snapshot.native, self.settings, self.point), self.settings, self.point)

    def render(self, request: RenderRequest) -> NativeChange:
        return self.renderer.render(request)

    def checkpoint(self) -> Checkpoint:
        """The NSG's writable body (owned rules listed apart) as fetched; its fingerprint is fetch()'s."""
        snapshot = self.fetch()
        nsg = snapshot.native["nsg"]
        if nsg is None:
            native: dict[str, Any] = {"exists": False, "owned": [], "nsg": None}
        else:
            owned, _ = partition_rules(nsg, self.settings, self.point)
            native = {"exists": True, "owned": [writable_rule(r) for r in owned], "nsg": writable_nsg(nsg)}
        return Checkpoint(self.point, DRIVER, native, snapshot.fingerprint())

    def apply(self, change: NativeChange) -> ApplyReport:
        """Exactly one write: the conditional whole-NSG PUT of the change, polled to its end."""
        if change.empty:
            return ApplyReport(self.point, 0, 0, 0.0)
        parsed = parse_change(change, self.settings, self.point)
        started = time.monotonic()
        self.transport.put_nsg(parsed.body, parsed.headers)
        return ApplyReport(self.point, 1, len(change.commands), time.monotonic() - started,
                           f"PUT {self.settings.nsg_name} ({parsed.rules} security rules) succeeded")

    def rollback(self, checkpoint: Checkpoint) -> None:
        """Put the owned rules back as checkpointed, keeping the current unmanaged ones; idempotent (no write when
        already there).  An NSG microseg created (absent at the checkpoint) is deleted when nothing else uses it."""
        native = checkpoint.native
        if checkpoint.driver != DRIVER or not isinstance(native, Mapping) or not isinstance(native.get("owned"), list):
            raise self._error("not an azure_nsg checkpoint")
        nsg, etag = self.transport.get_nsg()
        if nsg is None:
            if native.get("exists") and isinstance(native.get("nsg"), Mapping):
                self.transport.put_nsg(native["nsg"], {"If-None-Match": "*"})
            return
        owned, unmanaged = partition_rules(nsg, self.settings, self.point)
        wanted: list[Any] = [r for r in native["owned"] if not self.settings.leaves_alone(_direction(r))] \
            if native.get("exists") else []  # a direction the point does not filter is never put back
        if not native.get("exists") and not unmanaged and not _associations(nsg):
            self.transport.delete_nsg()
            return
        if _canonical(writable_rule(r) for r in owned) == _canonical(wanted):
            return
        body = writable_nsg(nsg)
        body["properties"]["securityRules"] = [writable_rule(r) for r in unmanaged] + list(wanted)
        self.transport.put_nsg(body, {"If-Match": etag or "*"})

    def close(self) -> None:
        self.transport.close()


def _canonical(rules: Any) -> str:
    return json.dumps(sorted(rules, key=lambda r: str(r.get("name"))), sort_keys=True)


def _direction(rule: Any) -> object:
    """A checkpointed rule's native direction (None when unreadable)."""
    props = rule.get("properties") if isinstance(rule, Mapping) else None
    return props.get("direction") if isinstance(props, Mapping) else None


def _associations(nsg: Mapping[str, Any]) -> Sequence[Any]:
    """The subnets and NICs the NSG is attached to (an attached NSG is never deleted)."""
    props = nsg.get("properties") or {}
    return [*(props.get("subnets") or []), *(props.get("networkInterfaces") or [])]
