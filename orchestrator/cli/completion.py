"""``microseg completion bash|zsh|fish``: the shell's completion script, with point and group names."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.shell_completion import CompletionItem, get_completion_class

if TYPE_CHECKING:
    from orchestrator.inventory.inventory import Inventory

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_MICROSEG_COMPLETE"


def _inventory_dir(ctx: click.Context) -> Path:
    root = ctx.find_root()
    return Path(root.params.get("inventory") or "inventory")


def _inventory(ctx: click.Context) -> Inventory | None:
    """The inventory of ``--inventory`` (default ``inventory``), or None when it cannot be read: completion
    never fails, a half-written inventory must not break the shell."""
    from orchestrator.inventory.inventory import load_inventory  # noqa: PLC0415  (only when completing)

    try:
        return load_inventory(_inventory_dir(ctx))
    except Exception:
        return None


def complete_points(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The enforcement points of the inventory starting with ``incomplete``."""
    inventory = _inventory(ctx)
    points = inventory.points if inventory is not None else ()
    return [CompletionItem(p.name, help=p.driver) for p in points if p.name.startswith(incomplete)]


def complete_groups(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The Nornir groups of the inventory starting with ``incomplete``."""
    inventory = _inventory(ctx)
    groups = sorted(inventory.groups) if inventory is not None else []
    return [CompletionItem(name) for name in groups if name.startswith(incomplete)]


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL: commands, options, and point and group names from the inventory.

    \b
    bash: eval "$(microseg completion bash)"         (in ~/.bashrc)
    zsh:  eval "$(microseg completion zsh)"          (in ~/.zshrc)
    fish: microseg completion fish > ~/.config/fish/completions/microseg.fish
    """
    root = ctx.find_root()
    cls = get_completion_class(shell)
    assert cls is not None  # every choice has a class
    click.echo(cls(root.command, {}, "microseg", COMPLETE_VAR).source())


def register(main: click.Group) -> None:
    """Add ``completion`` to the ``microseg`` group."""
    main.add_command(completion)
