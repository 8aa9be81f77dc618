"""nftables driver: Linux host firewalls reached over SSH, one dedicated table per host."""

from __future__ import annotations

import json
import re
import shlex
import time
from typing import Any, ClassVar

from pydantic import ValidationError

from drivers.nftables.adopt import foreign_enforcement
from drivers.nftables.conntrack import parse_conntrack
from drivers.nftables.layout import CHAINS, DRIVER, FAMILY, NftSettings, table_spec
from drivers.nftables.parse import decode_listing, is_owned_table, parse_observed, stable_listing
from drivers.nftables.render import render_script
from drivers.nftables.transport import CommandResult, Runner, checked, make_runner
from drivers.sshtrust import settings_error
from orchestrator.model import (
    Action,
    ApplyReport,
    Capabilities,
    Checkpoint,
    Diagnostic,
    Existing,
    FlowRecord,
    Mode,
    NativeChange,
    Observed,
    Ordering,
    ParseError,
    PermanentDriverError,
    PointContext,
    RenderRequest,
    Ruleset,
    Snapshot,
    fingerprint,
)

SEPARATOR = "@@microseg:next@@"  # printed by `echo` between listings
SCRIPT_FORMAT = "nft-script"
QUOTED = re.compile(r'"[^"]*"')
CONNTRACK_LIST = "conntrack -L -o extended"  # read_flows: a fixed command line (with sudo, the sudoers one)
CONNTRACK_MISSING = re.compile(r"conntrack\S*: (?:command )?not found|exec of \S*conntrack\S* failed")


class NftablesDriver:
    """One host's dedicated nft table (``inet microseg`` by default), replaced whole in one ``nft -f`` transaction.

    Settings: ``table`` (default microseg), ``family`` (only ``inet``), ``nft`` (path, default nft; with
    ``sudo`` the absolute path sudo runs, default /usr/sbin/nft), ``transport`` (ssh | local), ``netns``
    (local only), ``key_file``, ``host_key_policy`` (accept-new, the default | strict | insecure) and
    ``known_hosts`` (see drivers.sshtrust), ``sudo`` (only nft — and conntrack, for :meth:`read_flows` — runs
    under ``sudo -n``, never a shell).
    """

    name: ClassVar[str] = "nftables"
    connection_plugin: ClassVar[str] = "paramiko"  # Nornir's name: connection_options.paramiko applies too
    settings_model: ClassVar[type[NftSettings]] = NftSettings
    capabilities: ClassVar[Capabilities] = Capabilities(
        ordering=Ordering.FIRST_MATCH,
        stateful=True,
        ipv6=True,
        logging=True,
        monitor_mode=True,
        mixed_families_per_rule=False,
        atomic_replace=True,
    )

    def __init__(self, context: PointContext, *, runner: Runner | None = None) -> None:
        self.context = context
        self.point = context.name
        settings = context.settings
        try:
            typed = NftSettings.model_validate(dict(settings))
        except ValidationError as exc:
            raise settings_error(exc, point=self.point, driver=DRIVER) from exc
        self.table = typed.table
        self.spec = table_spec(self.table)
        self.chains = tuple(c for c in CHAINS if c.direction in context.directions)  # only what the point filters
        if not self.chains:
            raise self._error("the point filters no direction (inventory `directions`): nothing to own")
        self.nft = shlex.quote(typed.nft)
        self.timeout = context.timeout
        self.runner: Runner = runner or make_runner(self.point, context.connection, typed, context.timeout)

    def _error(self, message: str) -> PermanentDriverError:
        return PermanentDriverError(message, point=self.context.name, driver=DRIVER)

    def _run(self, command: str, stdin: str | None = None) -> CommandResult:
        return self.runner.run(command, stdin=stdin, timeout=self.timeout)

    def _script(self, middle: str, if_owned: str, otherwise: str = ":") -> str:
        """Shell: print ``list tables`` JSON, a separator, ``middle``, then ``if_owned`` when the table is listed.

        The table test matches nft's JSON text; the caller cross-checks it against the decoded listing, so a
        different nft output format fails closed instead of reading as "no table".
        """
        pattern = shlex.quote(f'"family": "{FAMILY}", "name": "{self.table}",')
        return (
            f"set -e\ntables=$({self.nft} -j list tables)\nprintf '%s\\n' \"$tables\"\necho {SEPARATOR}\n{middle}"
            f'case "$tables" in\n*{pattern}*)\n{if_owned}\n;;\n*)\n{otherwise}\n;;\nesac'
        )

    def _listed(self, tables: Any) -> bool:
        """Whether the decoded ``list tables`` output holds the owned table."""
        objects = decode_listing(tables, what="nft -j list tables", point=self.point)
        return any(is_owned_table(o.get("table"), self.table) for o in objects)

    # ------------------------------------------------------------------ contract

    def fetch(self) -> Snapshot:
        """``list tables``, ``list chains`` and (when present) the owned table, in one command."""
        middle = f"{self.nft} -j list chains\necho {SEPARATOR}\n"
        command = self._script(middle, f"{self.nft} -j -p list table {self.spec}")
        parts = self._run(command).stdout.split(f"\n{SEPARATOR}\n")
        if len(parts) != 3:
            raise ParseError(f"fetch printed {len(parts)} sections instead of 3 (tables, chains, table): "
                             f"{parts[0][:200]!r}", point=self.point, driver=DRIVER)
        tables, chains, table = (_decoded(p) for p in parts)
        native = {"tables": tables, "chains": chains, "table": table if parts[2].strip() else None}
        return Snapshot(self.point, DRIVER, native, stable=self._stable(native["table"]))

    def _stable(self, listing: Any) -> Any:
        try:
            objects = None if listing is None else decode_listing(listing, what="table", point=self.point)
        except PermanentDriverError:
            return {"table": self.spec, "raw": listing}  # normalize will raise the ParseError
        return {"table": self.spec, "objects": stable_listing(objects)}

    def existing(self) -> Existing:
        """The base chains of other tables that filter the point's directions, as rules (read-only; for
        ``microseg adopt``): ``nft -j list ruleset``, read by :func:`drivers.nftables.adopt.foreign_enforcement`."""
        listing = self._run(f"{self.nft} -j list ruleset").stdout
        return foreign_enforcement(listing, point=self.point, table=self.table,
                                   directions=[chain.direction for chain in self.chains])

    def normalize(self, snapshot: Snapshot) -> Observed:
        return parse_observed(snapshot.native, point=self.point, table=self.table, owned=self.chains)

    @classmethod
    def fresh_snapshot(cls, point: str) -> Snapshot:
        """A host without microseg's table (``compile --native`` renders against it; the script replaces the
        table whatever was there)."""
        return Snapshot(point, DRIVER, {"exists": False, "script": ""})

    def render(self, request: RenderRequest) -> NativeChange:
        commands = render_script(request.intended, table=self.table, chains=self.chains)
        return NativeChange(request.point, DRIVER, SCRIPT_FORMAT, commands, mutating_calls=1)

    def checkpoint(self) -> Checkpoint:
        """The owned table as ``nft list table`` prints it (restorable with ``nft -f``), or that it is absent."""
        both = (
            f"echo present\n{self.nft} list table {self.spec}\n"
            f"echo {SEPARATOR}\n{self.nft} -j -p list table {self.spec}"
        )
        tables, _, out = self._run(self._script("", both, "echo absent")).stdout.partition(f"\n{SEPARATOR}\n")
        status, _, rest = out.partition("\n")
        if self._listed(_decoded(tables)) != (status == "present"):
            raise self._error(f"checkpoint: cannot tell whether table {self.spec} exists (nft output format?)")
        if status == "absent":
            return Checkpoint(self.point, DRIVER, {"exists": False, "script": ""}, fingerprint(self._stable(None)))
        text, sep, listing = rest.partition(f"\n{SEPARATOR}\n")
        if status != "present" or not sep:
            raise ParseError("checkpoint output is not the expected text and JSON listing", point=self.point,
                             driver=DRIVER)
        native = {"exists": True, "script": text + "\n"}
        return Checkpoint(self.point, DRIVER, native, fingerprint(self._stable(_decoded(listing))))

    def apply(self, change: NativeChange) -> ApplyReport:
        """One ``nft -f -`` transaction: all of the change or nothing."""
        if change.empty:
            return ApplyReport(self.point, 0, 0, 0.0)
        self._check_change(change)
        started = time.monotonic()
        calls = 1
        if any("ct state established" in line for line in change.commands):
            calls += self._start_conntrack()
        result = self._run(f"{self.nft} -f -", stdin=change.text() + "\n")
        output = (result.stdout + result.stderr).strip()
        return ApplyReport(self.point, calls, len(change.commands), time.monotonic() - started, output)

    def _start_conntrack(self) -> int:
        """First install on a host without the table: load it permit-all with its conntrack rules first.

        Connection tracking only starts in a network namespace once a rule uses it, so the SSH session
        microseg is talking over would be untracked: its next packet from the host would count as ``new``
        and the stateful ruleset would drop it, hanging the session.  A separate round trip with a table
        that filters nothing (exactly what an absent table does) lets conntrack see the session both ways;
        the real change then finds it ``established``.  Returns the number of mutating calls made (0 or 1).
        """
        bootstrap = Ruleset(self.point, Ordering.FIRST_MATCH, Action.PERMIT, (), Mode.ENFORCE, stateful=True)
        script = "\n".join(render_script(bootstrap, table=self.table, chains=self.chains)) + "\n"
        exists = f"{self.nft} list tables | grep -qx {shlex.quote('table ' + self.spec)}"
        result = self._run(f"if {exists}; then echo present; else {self.nft} -f - && echo loaded; fi", stdin=script)
        return 1 if result.stdout.strip() == "loaded" else 0

    def _check_change(self, change: NativeChange) -> None:
        if change.driver != DRIVER or change.format != SCRIPT_FORMAT or change.point != self.point:
            raise self._error(f"cannot apply a {change.format} change of driver {change.driver} for {change.point}")
        allowed = {f"add table {self.spec}", f"delete table {self.spec}", f"table {self.spec} {{", "}", ""}
        for number, line in enumerate(change.commands, start=1):
            bare = QUOTED.sub('""', line).strip()  # comments and log prefixes are data, not commands
            if line[:1] in ("\t", " "):
                header = bare.startswith("type filter hook ")
                ok = not any(word in bare for word in ("table", "ruleset")) and (header or ";" not in bare)
            else:
                ok = line.rstrip() in allowed
            if not ok:
                raise self._error(f"line {number} of the change touches something but table {self.spec}: {line!r}")

    def rollback(self, checkpoint: Checkpoint) -> None:
        """Put the owned table back as checkpointed (removed if it did not exist); idempotent, one transaction."""
        native = checkpoint.native
        if checkpoint.driver != DRIVER or not isinstance(native, dict) or not isinstance(native.get("script"), str):
            raise self._error("not an nftables checkpoint")
        script = native["script"] if native.get("exists") else ""
        if script and not script.lstrip().startswith(f"table {self.spec} {{"):
            raise self._error(f"checkpoint does not hold table {self.spec}")
        self._run(f"{self.nft} -f -", stdin=f"add table {self.spec}\ndelete table {self.spec}\n{script}")

    def read_flows(self, problems: list[Diagnostic]) -> list[FlowRecord]:
        """The host's connection tracking table (``conntrack -L -o extended`` over the driver's session) as flows
        observed at the point: initiator the original direction's source (see :mod:`drivers.nftables.conntrack`).

        Needs conntrack-tools on the host; with ``sudo`` it runs ``sudo -n /usr/sbin/conntrack -L -o extended``.
        The kernel tracks connections in a network namespace only once something there uses conntrack — a rule
        with ``ct state`` (the stateful ruleset microseg installs has one), NAT — so a host or namespace without
        such a rule lists nothing.  Packet and byte counts are 0 unless ``net.netfilter.nf_conntrack_acct=1``.
        """
        result = self.runner.run(CONNTRACK_LIST, timeout=self.timeout, check=False)
        if result.rc == 127 or CONNTRACK_MISSING.search(result.stderr):
            raise self._error(f"conntrack not found on {self.point}: install conntrack-tools (Debian: conntrack)")
        checked(result, CONNTRACK_LIST, self.point)
        return parse_conntrack(result.stdout, self.point, problems, source=self.point, now=int(time.time()))

    def close(self) -> None:
        self.runner.close()


def _decoded(text: str) -> Any:
    """JSON text decoded when it is JSON; kept as text otherwise (normalize then raises the ParseError)."""
    try:
        return json.loads(text)
    except ValueError:
        return text
