"""The ``microseg`` command group: global options, and each command family registered from its module.

Every command takes ``--json`` for machine-readable output on stdout.  Errors
in user input never show a traceback: they print what is wrong and where
(``file:line:column``) and exit 1.

Exit codes: 0 success; 1 invalid input or errors found; 2 check-flow: the
flow is not (fully) allowed.
"""

from __future__ import annotations

import importlib
import logging
import os
from datetime import date
from pathlib import Path

import click

from orchestrator import __version__

# Each command family lives in its own module, imported only when one of its commands runs (or help lists
# them): ``validate`` need not load the store, the engine or the lab.  test_cli checks this table against
# what each module registers.
COMMAND_FAMILIES: dict[str, tuple[str, ...]] = {
    "orchestrator.cli.policy": ("validate", "compile", "check-flow", "lint", "schema"),
    "orchestrator.cli.runs": ("plan", "apply", "drift", "reconcile", "adopt", "rollback", "history", "show"),
    "orchestrator.cli.lab": ("lab",),
    "orchestrator.cli.demo": ("demo",),
    "orchestrator.cli.serve": ("serve",),
}
_FAMILY_OF = {command: module for module, commands in COMMAND_FAMILIES.items() for command in commands}


class LazyGroup(click.Group):
    """A group whose commands are registered by their family module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*_FAMILY_OF, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _FAMILY_OF:
            importlib.import_module(_FAMILY_OF[cmd_name]).register(self)
        return self.commands.get(cmd_name)


def _today(value: str | None) -> date:
    if not value:
        return date.today()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None



@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
@click.pass_context
def main(ctx: click.Context, policy: Path, inventory: Path, today: str | None, store: str | None,
         actor: str | None, config: Path | None) -> None:
    """microseg — one label-based policy, compiled for every enforcement point."""
    # the SSH library logs a device's closed socket on its own; drivers translate every such error already
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    from orchestrator.cli.common import Settings  # noqa: PLC0415  (loaded on first use)

    ctx.obj = Settings(policy, inventory, _today(today), store, actor, config)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("COLUMNS", "120")
    main()
