"""``microseg lab up|down|status``: the built-in lab of Linux hosts in network namespaces."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from orchestrator.cli.common import Settings, emit_json, handles_errors, json_option
from orchestrator.cli.render import console
from orchestrator.inventory.inventory import load_inventory

lab_dir_option = click.option("--lab-dir", type=click.Path(path_type=Path), default=Path(".microseg/lab"),
                              show_default=True, help="Where the lab keeps its keys, configs and state.")


def lab_plan_for(inventory_dir: Path, prefix: str) -> Any:
    from orchestrator.lab import plan_lab_from_directory  # noqa: PLC0415  (root-only I/O, loaded on demand)

    return plan_lab_from_directory(inventory_dir, load_inventory(inventory_dir), prefix=prefix)


def register(main: click.Group) -> None:
    """Add ``lab`` to the ``microseg`` group."""

    @main.group()
    def lab() -> None:
        """The built-in lab: the worked example's Linux hosts as network namespaces with sshd and nftables."""

    @lab.command()
    @json_option
    @lab_dir_option
    @click.pass_obj
    @handles_errors
    def up(settings: Settings, as_json: bool, lab_dir: Path) -> None:
        """Create the lab (idempotent: a healthy lab is left as it is). Needs root."""
        from orchestrator.lab import Lab  # noqa: PLC0415

        plan = lab_plan_for(settings.inventory, "mseg")
        status = Lab(lab_dir).up(plan, progress=None if as_json else _say)
        if as_json:
            emit_json({"ok": status.healthy, **status.to_dict()})
        else:
            _print_status(status)
        if not status.healthy:
            sys.exit(1)

    @lab.command()
    @json_option
    @lab_dir_option
    @handles_errors
    def down(as_json: bool, lab_dir: Path) -> None:
        """Remove every namespace and process the lab created (idempotent)."""
        from orchestrator.lab import Lab  # noqa: PLC0415

        removed = Lab(lab_dir).down()
        if as_json:
            emit_json({"ok": True, "removed": removed})
        else:
            console().print(f"lab down: removed {len(removed)} items" if removed else "lab down: nothing to remove")

    @lab.command()
    @json_option
    @lab_dir_option
    @handles_errors
    def status(as_json: bool, lab_dir: Path) -> None:
        """Whether each lab host's namespace, sshd, listener and SSH forwarder are alive."""
        from orchestrator.lab import Lab  # noqa: PLC0415

        current = Lab(lab_dir).status()
        if as_json:
            emit_json({"ok": current.healthy, **current.to_dict()})
        else:
            _print_status(current)
        if not current.healthy:
            sys.exit(1)


def _say(message: str) -> None:
    console().print(f"  [dim]{message}[/]", highlight=False)


def _print_status(status: Any) -> None:
    """One row per counterpart — each host (namespace, sshd, listener, SSH forwarder), each simulated switch and
    each simulated cloud API — then what is missing."""
    data = status.to_dict()
    out = console()
    table = Table(title=f"lab {data['prefix']} ({data['directory']})", title_justify="left")
    for column in ("counterpart", "name", "addresses", "endpoint", "state"):
        table.add_column(column)

    def state(parts: dict[str, object]) -> str:
        down = [name for name, ok in parts.items() if ok is False]
        return "[green]ok[/]" if not down else f"[red]down:[/] {', '.join(down)}"

    for host in data.get("hosts", []):
        ssh = "ssh " + ":".join(map(str, host["ssh"])) if host.get("ssh") else "-"
        parts = {"namespace": host.get("namespace_exists"), "sshd": host.get("sshd"),
                 "listener": host.get("listener"), "SSH forwarder": host.get("forwarder")}
        table.add_row(f"host ({host.get('role')})", host.get("name", "?"),
                      " ".join([*host.get("ipv4", []), *host.get("ipv6", [])]), ssh, state(parts))
    for device in data.get("devices", []):
        table.add_row(f"switch ({device['personality']})", device["name"], "-",
                      f"ssh {device['address']}:{device['port']}", state({"simulator": data.get("simulators")}))
    for cloud in data.get("cloud_points", []):
        scheme = "https" if cloud["kind"] == "azure" else "http"
        table.add_row(f"cloud ({cloud['kind']})", cloud["name"], "-", f"{scheme}://{cloud['endpoint']}",
                      state({"API simulator": data.get("clouds")}))
    if data.get("netflow") is not None:
        host, port = data["netflow_to"]
        table.add_row("NetFlow exporter", "softflowd on the bridge", "-", f"ipfix → udp {host}:{port}",
                      state({"softflowd or its relay": data.get("netflow")}))
    out.print(table)
    for problem in data.get("problems", []):
        out.print(f"  [red]•[/] {problem}", highlight=False)
    out.print(f"lab {'healthy' if status.healthy else 'NOT healthy (run `microseg lab up`)'}", highlight=False)
