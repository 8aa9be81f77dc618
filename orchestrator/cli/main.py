"""The ``microseg`` command group: global options, and each command family registered from its module.

Every command takes ``--json`` for machine-readable output on stdout.  Errors
in user input never show a traceback: they print what is wrong and where
(``file:line:column``) and exit 1.  Exit codes: :data:`EXIT_CODES` (0 success,
1 error, 2 found: drift, denied, changes, 3 unknown state, 64 usage error).
"""

from __future__ import annotations

import importlib
import logging
import os
from datetime import date
from pathlib import Path
from typing import Any

import click

from orchestrator import __version__

# Each command family lives in its own module, imported only when one of its commands runs (or help lists
# them): ``validate`` need not load the store, the engine or the lab.  test_cli checks this table against
# what each module registers.
COMMAND_FAMILIES: dict[str, tuple[str, ...]] = {
    "orchestrator.cli.policy": ("validate", "compile", "check-flow", "lint", "schema", "import"),
    "orchestrator.cli.runs": ("plan", "apply", "drift", "reconcile", "adopt", "rollback", "history", "show",
                              "force-unlock"),
    "orchestrator.cli.lab": ("lab",),
    "orchestrator.cli.demo": ("demo",),
    "orchestrator.cli.serve": ("serve",),
    "orchestrator.cli.completion": ("completion",),
    "orchestrator.cli.flows": ("collect", "discover", "simulate", "promote", "hits"),
    "orchestrator.cli.workers": ("worker", "workers"),
    "orchestrator.cli.report": ("report",),
}
LONG_RUNNING = frozenset({"serve", "worker"})  # keep CPython's garbage collection (orchestrator.engine.runtime)
_FAMILY_OF = {command: module for module, commands in COMMAND_FAMILIES.items() for command in commands}


# Exit codes, one table for every command (README "Exit codes"); each command's --help lists its own.
EXIT_USAGE = 64  # EX_USAGE; the other codes are the commands' own (runs.EXIT_DRIFT, EXIT_UNKNOWN …)
EXIT_CODES: dict[str, str] = {
    "validate": "0 valid, 1 errors (warnings too with --strict)",
    "compile": "0 compiled, 1 errors",
    "check-flow": "0 allowed, 2 denied, partly allowed or not enforced, 1 error",
    "lint": "0 clean, 1 findings that are errors",
    "schema": "0 written, 1 error",
    "import": "aerleon: 0 every term carried over, 2 some terms left out (listed), 1 error",
    "plan": "0 planned, 1 a point could not be planned; with --detailed-exitcode: 0 no changes, 2 changes",
    "apply": "0 every point new or unchanged, 1 refused or a point failed (restored), 3 a point in unknown state",
    "drift": "0 in sync, 2 drift, 1 error",
    "reconcile": "0 (now) in sync, 2 drift remains, 1 error, 3 a point in unknown state",
    "adopt": "0 every proposal proven equivalent, 2 one is not, 1 error",
    "rollback": "0 restored, 1 refused or failed, 3 a point in unknown state",
    "history": "0, 1 error",
    "show": "0, 1 no such run",
    "force-unlock": "0 released (or was not locked), 1 error",
    "lab": "0, 1 error (or an unhealthy lab for up/status)",
    "demo": "0 every step behaved, 1 one did not",
    "serve": "runs until stopped; 1 when it cannot start",
    "completion": "0",
    "collect": "0 imported (malformed records skipped and reported), 1 a location could not be read",
    "discover": "0 map and proposal written, 1 error (e.g. no flows)",
    "simulate": "0 the policy denies no observed flow, 2 it would deny some, 1 error",
    "promote": "0 promoted, 2 refused: enforcing would deny observed flows, 1 error",
    "hits": "0, 1 error",
    "report": "0 written, 1 error",
    "worker": "runs until stopped; 1 when it cannot start",
    "workers": "0 workers answered, 1 none did",
}
USAGE_NOTE = f"{EXIT_USAGE} a usage error (unknown option, bad value)"


class LazyGroup(click.Group):
    """A group whose commands are registered by their family module on first use.

    A usage error (unknown option, missing argument, bad value) exits 64 (EX_USAGE), never 2: 2 means
    "drift found" or "denied", which a scheduler may treat as a normal outcome.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*_FAMILY_OF, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _FAMILY_OF:
            importlib.import_module(_FAMILY_OF[cmd_name]).register(self)
            for name, command in self.commands.items():
                if name in EXIT_CODES and not command.epilog:
                    command.epilog = f"Exit codes: {EXIT_CODES[name]}; {USAGE_NOTE}."
        return self.commands.get(cmd_name)

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            exc.exit_code = EXIT_USAGE  # type: ignore[misc]  # per instance: click declares it per class
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a subcommand's own usage error
            exc.exit_code = EXIT_USAGE  # type: ignore[misc]  # per instance: click declares it per class
            raise


def _today(value: str | None) -> date:
    if not value:
        return date.today()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None



@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog="Exit codes: 0 success, 1 error, 2 found (drift, denied, changes with --detailed-exitcode), "
                    "3 a point in unknown state, 64 usage error; each command's --help says which it uses.")
@click.version_option(__version__, prog_name="microseg")
@click.option("--policy", "-p", type=click.Path(path_type=Path), default="policies", show_default=True,
              envvar="MICROSEG_POLICY", help="Policy directory (YAML files).")
@click.option("--inventory", "-i", type=click.Path(path_type=Path), default="inventory", show_default=True,
              envvar="MICROSEG_INVENTORY", help="Inventory directory (Nornir hosts/groups/defaults + workloads).")
@click.option("--today", envvar="MICROSEG_TODAY", metavar="YYYY-MM-DD",
              help="Evaluate expiry as of this date (default: today).")
@click.option("--store", envvar="MICROSEG_STORE", metavar="URL",
              help="State store: sqlite:///path.db or postgresql://… (default: sqlite:///.microseg/state.db).")
@click.option("--actor", envvar="MICROSEG_ACTOR", help="Who runs this, for the audit trail (default: login name).")
@click.option("--config", "config", type=click.Path(path_type=Path), envvar="MICROSEG_CONFIG",
              help="microseg's own configuration (change windows); default ./microseg.yaml when it exists.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines (results and errors still print).")
@click.option("--no-color", is_flag=True, help="Plain text without colours (or set NO_COLOR).")
@click.pass_context
def main(ctx: click.Context, policy: Path, inventory: Path, today: str | None, store: str | None,
         actor: str | None, config: Path | None, quiet: bool, no_color: bool) -> None:
    """microseg — one label-based policy, compiled for every enforcement point."""
    # the SSH library logs a device's closed socket on its own; drivers translate every such error already
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    from orchestrator.cli.common import Settings  # noqa: PLC0415  (loaded on first use)
    from orchestrator.cli.style import Style  # noqa: PLC0415  (loaded on first use)

    Style.no_color = no_color
    if ctx.invoked_subcommand not in LONG_RUNNING:
        from orchestrator.engine.runtime import batch_gc  # noqa: PLC0415  (loaded on first use)

        batch_gc()
    ctx.obj = Settings(policy, inventory, _today(today), store, actor, config, quiet=quiet)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("COLUMNS", "120")
    main()
