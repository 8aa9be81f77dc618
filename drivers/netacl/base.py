"""The switch ACL driver skeleton: fetch → normalize → render in-place edits → push under the platform's safety net.

A platform driver is a subclass that names its syntax module (vendor
parse/render, see ``drivers/<platform>/syntax.py``), its netmiko device type,
and its safety lifecycle: ``_push`` sends configuration lines so that a lost
session or a refused line leaves the device old (revert timer, checkpoint,
configuration session, private candidate + ``commit confirmed``),
``confirm`` makes a verified change permanent, ``_settle`` resolves a change
still waiting for its confirmation before a rollback.
"""

from __future__ import annotations

import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

from drivers.netacl.ace import Ace, Acl, AclLine, Binding, DeviceAcls, Remark
from drivers.netacl.edits import EditScript, plan_exact, plan_numbered
from drivers.netacl.layout import (
    AclSettings,
    AclSettingsModel,
    deletable,
    entries_of,
    existing_enforcement,
    foreign_binding_conflicts,
    observed_ruleset,
    owned_state,
    parse_settings,
    replaced_acls,
    replaced_entries,
    replaced_names,
    target_aces,
    with_remarks,
    without_counters,
)
from drivers.sshtrust import refuse_connection_host_key_policy

if TYPE_CHECKING:  # netmiko loads on first connection: validate and compile never connect
    from drivers.netacl.transport import CliTransport
from orchestrator.model import (
    ApplyReport,
    Capabilities,
    Checkpoint,
    Existing,
    NativeChange,
    Observed,
    Ordering,
    ParseError,
    PermanentDriverError,
    PointContext,
    RenderRequest,
    Ruleset,
    Snapshot,
)

log = logging.getLogger(__name__)


def acl_capabilities(**overrides: Any) -> Capabilities:
    """What every ACL platform shares: first match, stateless (TCP replies let back as ``established`` segments),
    one prefix and port range per entry; monitor mode as ``permit … log`` in place of each deny (see
    ``layout.target_aces``)."""
    return Capabilities(**{
        "ordering": Ordering.FIRST_MATCH, "stateful": False, "tcp_established": True,
        "monitor_mode": True, "monitor_by_log": True,
        "max_rules": 1000,
        "count_families_separately": True, "max_prefixes_per_rule": 1, "max_port_ranges_per_rule": 1,
        "mixed_families_per_rule": False, **overrides,
    })


class AclDriver(ABC):
    """Owned ACLs (see :mod:`drivers.netacl.layout`) on one device, edited in place."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    device_type: ClassVar[str]
    syntax: ClassVar[ModuleType]
    settings_model: ClassVar[type[AclSettingsModel]]
    max_seq: ClassVar[int] = 2147483647
    connection_plugin: ClassVar[str] = "netmiko"  # Nornir's name: connection_options.netmiko applies too

    @classmethod
    def connection_plugin_for(cls, settings: Mapping[str, Any]) -> tuple[str, ...]:
        """The Nornir connection plugins whose ``connection_options.NAME`` a point's connection fields are read
        under, the first present wins: ``napalm`` for a point driven through napalm (``transport: napalm``) —
        then ``netmiko``, which such points read before — else the CLI's ``netmiko``."""
        if settings.get("transport") == "napalm":
            return ("napalm", cls.connection_plugin)
        return (cls.connection_plugin,)

    def __init__(self, context: PointContext, *, transport: CliTransport | None = None) -> None:
        self.context = context
        self.point = context.name
        self.settings: AclSettings = parse_settings(context.settings, context.name, self.name, context.members,
                                                    model=self.settings_model, max_seq=self.max_seq,
                                                    directions=context.directions)
        refuse_connection_host_key_policy(context.connection, point=self.point, driver=self.name)
        self._transport = transport  # None: made on first use (render, compile and plan --native never connect)
        self.pending: str | None = None  # a change pushed but not yet confirmed (timer, checkpoint, session)

    @property
    def transport(self) -> CliTransport:
        if self._transport is None:
            self._transport = self.make_transport()
        return self._transport

    def make_transport(self) -> CliTransport:
        """The connection to the device, made on first use: the CLI over SSH (a platform may offer another)."""
        from drivers.netacl.transport import CliTransport  # noqa: PLC0415  (netmiko loads on first use)

        context = self.context
        return CliTransport(
            context.connection, device_type=self.device_type, point=self.point, driver=self.name,
            timeout=context.timeout, error_pattern=self.syntax.ERROR_PATTERN,
            key_file=context.settings.get("key_file"), host_keys=self.settings.host_keys)

    @classmethod
    def fresh_snapshot(cls, point: str) -> Snapshot:
        """The snapshot of a device where microseg owns nothing yet (``compile --native`` renders against it)."""
        return Snapshot(point, cls.name, {"acls": [], "bindings": [], "other_acls": [], "unread": []})

    def _error(self, message: str) -> PermanentDriverError:
        return PermanentDriverError(f"{self.point}: {message}", point=self.point, driver=self.name)

    # ------------------------------------------------------------ contract

    def fetch(self) -> Snapshot:
        """The owned ACLs (by name where the platform can list one ACL) and the interface sections, read
        tolerantly: only what microseg owns must be readable (see ``layout.owned_state``)."""
        owned = [(name, family) for name, (_, family) in self.settings.owned_names().items()]
        device = self._read(owned)
        replaced = None
        if self.settings.delete_replaced and (names := replaced_names(device, self.settings)):
            device, replaced = self._replaced(device, names)
        state = owned_state(device, self.settings, point=self.point, driver=self.name, replaced=replaced)
        return Snapshot(self.point, self.name, state, stable=without_counters(state))

    def _replaced(self, device: DeviceAcls, acls: Sequence[tuple[str, int]]) -> tuple[DeviceAcls, list[dict[str, Any]]]:
        """For ``delete_replaced``: ``device`` with the listings of the ACLs a take-over replaces (by name), and
        what may be done with each (``layout.replaced_acls``) — from the running configuration, read whole, since
        whatever else names an ACL (a vty line, the control plane, a route map) forbids deleting it."""
        names = {name for name, _ in acls}
        extra = self._read(acls)
        device = DeviceAcls(device.acls + tuple(a for a in extra.acls if a.name in names), device.bindings,
                            device.unread + tuple(u for u in extra.unread if u.acl in names))
        text = self.transport.show(self.syntax.RUNNING_CONFIG)
        complete = self.syntax.complete_config(text)  # a truncated answer could hide a use: nothing is deleted
        config = {(name, family): self.syntax.acl_config(text, name, family) if complete else (None, [])
                  for name, family in acls}
        comments = getattr(self.syntax, "comments_command", None)  # Junos: annotations show only in text form
        for name, family in acls if comments is not None and complete else ():
            body, uses = config[(name, family)]
            if body is not None and "/*" in self.transport.show(comments(name, family)):
                config[(name, family)] = ([*body, "/* an annotation */"], uses)
        return device, replaced_acls(device, self.settings, config, self.syntax.definition_problem, self.syntax.bind)

    def existing(self) -> Existing:
        """The ACLs someone else bound on the point's interfaces, as rules (read-only; for ``adopt``): the whole
        listings are read, tolerantly — a line outside the bound ACLs never stops it."""
        return existing_enforcement(self._read(()), self.settings, self.point)

    def _read(self, acls: Sequence[tuple[str, int]]) -> DeviceAcls:
        """The device's answers to the fetch commands for ``acls`` (none: the whole listings), parsed."""
        outputs = {command: self.transport.show(command) for command in self.syntax.fetch_commands(acls)}
        device: DeviceAcls = self.syntax.parse(outputs, point=self.point)
        counters = getattr(self.syntax, "counter_commands", None)  # a platform that lists counters apart (Junos)
        if counters is not None and acls:
            answers = {command: self.transport.show(command) for command in counters(device, acls)}
            try:
                device = self.syntax.with_counters(device, answers, point=self.point) if answers else device
            except ParseError as exc:  # counters are evidence, not state: an unreadable answer never stops a fetch
                log.warning("%s: hit counters not read (they stay unknown): %s", self.point, exc.message)
        return device

    def normalize(self, snapshot: Snapshot) -> Observed:
        hits: list[int | None] = []
        ruleset, notes = observed_ruleset(snapshot.native, self.settings, self.point, self.name, hits)
        return Observed(ruleset, notes, tuple(hits) if any(h is not None for h in hits) else ())

    def render(self, request: RenderRequest) -> NativeChange:
        labels: dict[str, list[str | None]] = {}
        targets, marked = self._targets(request.intended, labels)
        wanted = {b for b in self.settings.wanted_bindings(request.intended.mode) if targets.get(b.acl)}
        lines = self.render_state(request.snapshot.native, marked, wanted, labels=labels)
        return NativeChange(self.point, self.name, "cli", tuple(lines), mutating_calls=1 if lines else 0)

    def _targets(self, intended: Ruleset, labels: dict[str, list[str | None]],
                 ) -> tuple[dict[str, list[Ace]], Mapping[str, Sequence[AclLine]]]:
        """Each owned ACL's target entries, and the same with their remarks where the platform writes them."""
        remarks: dict[str, list[tuple[str, ...]]] | None = {} if getattr(self.syntax, "REMARKS", False) else None
        try:
            targets = target_aces(intended, self.settings, labels, remarks)
        except ValueError as exc:
            raise self._error(f"cannot express as ACL entries: {exc}") from exc
        if self.capabilities.max_prefixes_per_rule == 1:
            several = next((a for aces in targets.values() for a in aces if not a.single), None)
            if several is not None:
                sides = " → ".join(", ".join(map(str, side)) for side in (several.sources, several.destinations))
                raise self._error(f"cannot express as ACL entries: one prefix per side of an entry, not {sides}")
        return targets, self.marked(targets, remarks)

    def annotate(self, request: RenderRequest) -> NativeChange:
        """For a point whose rules are in sync: the change that only writes the remarks naming the policy rules
        where they are missing or out of date (ACLs written by a release without remarks, a renamed rule, someone
        else's remark in an owned ACL): remark lines added into the gaps between entries and stale ones deleted,
        nothing else (not even the ACL's counter setting).  Nothing on platforms without numbered remarks, and
        nothing for an ACL whose remarks are right or where bringing them up to date would move an entry
        (renumber, re-add): the next change of that ACL's rules writes them with the entries, as before."""
        if not getattr(self.syntax, "REMARKS", False):
            return NativeChange(self.point, self.name, "none", (), 0)
        _, marked = self._targets(request.intended, {})
        state = request.snapshot.native
        lines: list[str] = []
        for name, (_, family) in self.settings.owned_names().items():
            current, target = entries_of(state, name), marked.get(name)
            if current is None or target is None:
                continue
            script = self.plan_acl(name, family, current, target)
            remark_seqs = {seq for seq, line in current if isinstance(line, Remark)}
            if script.create or script.resequence or any(not isinstance(a.ace, Remark) for a in script.adds) \
                    or any(seq not in remark_seqs for seq in script.deletes):
                continue  # an entry would move: left to this ACL's next rule change
            lines += self.script_lines(script, counters=False)
        return NativeChange(self.point, self.name, "cli", tuple(lines), mutating_calls=1 if lines else 0)

    @staticmethod
    def marked(targets: dict[str, list[Ace]],
               remarks: Mapping[str, Sequence[tuple[str, ...]]] | None) -> Mapping[str, Sequence[AclLine]]:
        """The target entries with a remark before each policy rule's run of them, on platforms that list
        numbered remarks (the syntax module's ``REMARKS``: ``remarks`` given; ``layout.with_remarks``); as they
        are elsewhere."""
        if remarks is None:
            return targets
        return {name: with_remarks(aces, remarks[name]) for name, aces in targets.items()}

    def checkpoint(self) -> Checkpoint:
        snapshot = self.fetch()
        return Checkpoint(self.point, self.name, snapshot.native, snapshot.fingerprint())

    def apply(self, change: NativeChange) -> ApplyReport:
        started, before = time.monotonic(), self.transport.lines_sent
        output = self._push(change.commands) if change.commands else ""
        return ApplyReport(self.point, 1 if change.commands else 0, self.transport.lines_sent - before,
                           time.monotonic() - started, output[-4000:])

    def rollback(self, checkpoint: Checkpoint) -> None:
        """Back to the checkpoint's owned ACLs and bindings (idempotent): settle, then edit in place and confirm."""
        self._settle()
        snapshot = self.fetch()
        if snapshot.fingerprint() == checkpoint.fingerprint:
            return
        saved = checkpoint.native
        targets: dict[str, list[tuple[int | str, AclLine]] | None] = dict.fromkeys(self.settings.owned_names())
        for data in saved["acls"]:
            acl = Acl.from_dict(data)
            targets[acl.name] = [(e.seq, e.body) for e in acl.entries if isinstance(e.body, Ace | Remark)]
        # the bindings the checkpoint had in the slots the point manages: owned ACLs, and someone else's a
        # take-over replaced (bound again, in the same change that restores the owned ACLs)
        slots = self.settings.managed_slots()
        wanted = {b for b in map(Binding.from_dict, saved["bindings"])
                  if b.acl in targets or self.settings.slot(b) in slots}
        # the replaced ACLs the change deleted (deletable ones only) and that are gone now: written back before
        # any binding line binds them again; any other ACL is left as it is — a rollback never edits or deletes
        # someone else's ACL
        candidates = [i for i in saved.get("replaced", ()) if deletable(i)
                      and any(b.acl == i["name"] and b.family == i["family"] for b in wanted)]
        listed = self._listed(candidates)
        gone = [i for i in candidates if (i["name"], i["family"]) not in listed]
        rewritten = [line for item in gone for line in self.script_lines(
            plan_exact(item["name"], item["family"], None, replaced_entries(item)), counters=False)]
        lines = rewritten + self.render_state(snapshot.native, targets, wanted, exact=True)
        if lines:
            self._push(lines)
            self.confirm()
        written = self._listed(gone)  # checked here: the point's fingerprint does not cover what was written back
        for item in gone:
            now = written.get((item["name"], item["family"]))
            if now is None or [(e.seq, e.body) for e in now.entries] != replaced_entries(item):
                raise self._error(f"rollback wrote {item['name']} back, but it does not read as it was")

    def _listed(self, items: Sequence[Mapping[str, Any]]) -> dict[tuple[str, int], Acl]:
        """The ACLs of ``items`` (replaced ACLs, by name and family) the device lists now, in one read."""
        if not items:
            return {}
        wanted = {(i["name"], i["family"]) for i in items}
        return {(a.name, a.family): a for a in self._read(sorted(wanted)).acls if (a.name, a.family) in wanted}

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # ------------------------------------------------------------ rendering

    def render_state(self, state: Mapping[str, Any], targets: Mapping[str, Sequence[Any] | None],
                     wanted: set[Binding], *, exact: bool = False,
                     labels: Mapping[str, Sequence[str | None]] | None = None) -> list[str]:
        """Config lines taking the owned state to ``targets`` (None: the ACL must not exist) and ``wanted``.

        ``targets`` lists aces (numbered freely) or, with ``exact``, (seq or term, ace) pairs to restore as they were;
        ``labels`` says per ACL why each new entry exists (``layout.entry_label``), for platforms that name entries.
        """
        # someone else's ACL in a slot microseg binds: refused unless the point takes such bindings over — a
        # rollback putting back what its checkpoint had (a take-over undone) is no conflict
        conflicts = [c for c in foreign_binding_conflicts(state, self.settings) if c not in wanted]
        if conflicts and not self.settings.take_over:
            c = conflicts[0]
            raise self._error(f"{c.interface} already has ACL {c.acl} bound {c.direction} (IPv{c.family}); "
                              f"microseg never replaces an ACL it does not own — unbind it, drop the binding, or "
                              f"take it over (settings take_over: true; see `microseg adopt`)")
        lines: list[str] = []
        drop: list[tuple[str, int]] = []
        for name, (_, family) in self.settings.owned_names().items():
            current, target = entries_of(state, name), targets.get(name)
            if target is None:
                if current is not None:
                    drop.append((name, family))
                continue
            script = (plan_exact(name, family, current, target) if exact
                      else self.plan_acl(name, family, current, target, (labels or {}).get(name)))
            lines += self.script_lines(script)
        owned = self.settings.owned_names()
        present = {Binding.from_dict(b) for b in state["bindings"]}
        bound = {b for b in present if b.acl in owned}
        rebound = {self.settings.slot(b) for b in wanted - present}
        for binding in sorted(wanted - present):  # one line replaces whatever the slot holds (make-before-break)
            lines += self.syntax.bind(binding)
        for binding in sorted(bound - wanted):
            if self.settings.slot(binding) not in rebound:  # a rebound slot holds its new ACL already
                lines += self.syntax.unbind(binding)
        for name, family in drop:
            lines.append(self.syntax.delete_acl(name, family))
        for item in () if exact else state.get("replaced", ()):  # delete_replaced (never in a rollback): once
            # the take-over leaves it bound nowhere and nothing else names it, the replaced ACL goes too
            slots = {self.settings.slot(b) for b in present if b.acl == item["name"] and b.family == item["family"]}
            if deletable(item) and slots and slots <= rebound:
                lines.append(self.syntax.delete_acl(item["name"], item["family"]))
        return lines

    def plan_acl(self, name: str, family: int, current: Sequence[tuple[Any, AclLine]] | None,
                 target: Sequence[AclLine], labels: Sequence[str | None] | None = None) -> EditScript:
        """The edit of one owned ACL to ``target``; ``labels`` (per entry, why it exists) is for platforms that
        name entries: a numbered ACL has no place for them."""
        return plan_numbered(name, family, current, target, max_seq=self.max_seq,
                             can_resequence=self.syntax.resequence(name, family) is not None)

    def script_lines(self, script: EditScript, *, counters: bool = True) -> list[str]:
        """The lines of one ACL's edit: resequence, enter the ACL, add (new first), then delete; ``counters``:
        with the platform's per-entry counter line (owned ACLs; never someone else's written back)."""
        if script.empty:
            return []
        lines = list(self.syntax.resequence(script.name, script.family) or ()) if script.resequence else []
        lines.append(self.syntax.acl_mode(script.name, script.family))
        lines += self.entry_counter_lines() if counters else []
        try:
            adds = [self.syntax.format_entry(int(a.key), a.ace) for a in script.adds]
        except ValueError as exc:  # an entry (or a remark a rollback writes back) the platform cannot take
            raise self._error(f"{script.name}: cannot write: {exc}") from exc
        deletes = [self.syntax.delete_entry(int(seq), script.family) for seq in script.deletes]
        return lines + (deletes + adds if script.deletes_first else adds + deletes)

    def entry_counter_lines(self) -> list[str]:
        """The ACL-mode line that makes the platform count per entry (``ENTRY_COUNTERS`` of its syntax module), or
        its ``no`` form when the point's settings say ``entry_counters: false``; none on platforms that always
        count."""
        line = getattr(self.syntax, "ENTRY_COUNTERS", None)
        if not line:
            return []
        return [line] if getattr(self.settings.typed, "entry_counters", True) else [f"no {line}"]

    # ------------------------------------------------------------ safety lifecycle (per platform)

    @abstractmethod
    def _push(self, lines: Sequence[str]) -> str:
        """Send configuration lines so that a refused line or a lost session leaves the device old."""

    @abstractmethod
    def confirm(self) -> None:
        """Make the verified change permanent (the executor calls this only after verification)."""

    @abstractmethod
    def _settle(self) -> None:
        """Before a rollback: resolve a change still waiting for confirmation."""

    @staticmethod
    def change_name() -> str:
        return f"mseg-{uuid.uuid4().hex[:8]}"
