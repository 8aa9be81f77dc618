"""SSH for the lab: key pairs, the sshd configuration of each point, and a known_hosts file for the endpoints."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from orchestrator.lab.plan import SSH_PORT, LabDevice, LabHost
from orchestrator.lab.system import run

CLIENT_KEY = "id_ed25519"
HOST_KEY = "ssh_host_ed25519_key"
AUTHORIZED_KEYS = "authorized_keys"
KNOWN_HOSTS = "known_hosts"
PRIVSEP_DIR = Path("/run/sshd")


def ensure_keys(directory: Path) -> None:
    """The lab's client and host key pairs (ed25519, no passphrase), made once; authorized_keys holds the client's."""
    for name, comment in ((CLIENT_KEY, "microseg-lab"), (HOST_KEY, "microseg-lab-host")):
        key = directory / name
        if not key.exists() or not key.with_suffix(".pub").exists():
            key.unlink(missing_ok=True)
            key.with_suffix(".pub").unlink(missing_ok=True)
            run(["ssh-keygen", "-q", "-N", "", "-t", "ed25519", "-C", comment, "-f", str(key)])
    (directory / AUTHORIZED_KEYS).write_text((directory / f"{CLIENT_KEY}.pub").read_text())
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory


def write_known_hosts(directory: Path, points: Iterable[LabHost], devices: Iterable[LabDevice] = ()) -> Path:
    """A known_hosts file naming every SSH endpoint of the lab (hosts and switch simulators) with its host key."""
    key = " ".join((directory / f"{HOST_KEY}.pub").read_text().split()[:2])
    lines = [f"[{h.ssh[0]}]:{h.ssh[1]} {key}" for h in points if h.ssh is not None]
    lines += [f"[{d.address}]:{d.port} {key}" for d in devices]
    path = directory / KNOWN_HOSTS
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def sshd_config_path(directory: Path, host: str) -> Path:
    return directory / "sshd" / f"{host}.conf"


def write_sshd_config(directory: Path, host: str, extra: str = "") -> Path:
    """The sshd configuration of point ``host`` (key-only root login, everything in the lab directory)."""
    path = sshd_config_path(directory, host)
    path.parent.mkdir(exist_ok=True)
    settings = [
        f"Port {SSH_PORT}",
        "ListenAddress 0.0.0.0",
        "ListenAddress ::",
        f"HostKey {directory / HOST_KEY}",
        f"AuthorizedKeysFile {directory / AUTHORIZED_KEYS}",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "UseDNS no",
        f"PidFile {directory / 'sshd' / f'{host}.pid'}",
        "Subsystem sftp internal-sftp",
    ]
    path.write_text("".join(f"{line}\n" for line in _merged(settings, extra)))
    return path


def _merged(settings: list[str], extra: str) -> list[str]:
    """sshd keeps the first value it reads for a keyword, so extra lines go first to win; a Match block goes last."""
    lines = extra.splitlines()
    match = next((i for i, line in enumerate(lines) if line.strip().lower().startswith("match ")), len(lines))
    return [*lines[:match], *settings, *lines[match:]]


def sshd_command(config: Path, log: Path) -> list[str]:
    """sshd in the foreground (its PID is the one the lab starts), logging to ``log``; absolute path for re-exec."""
    return ["/usr/sbin/sshd", "-D", "-f", str(config), "-E", str(log)]
