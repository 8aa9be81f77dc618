"""Lab plumbing: root and tool checks, commands, namespaces and the lab's own processes (by PID, verified)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from orchestrator.model.errors import MicrosegError

NETNS_DIR = Path("/run/netns")
SSHD = "/usr/sbin/sshd"
TOOLS: dict[str, str] = {
    "ip": "apt install iproute2",
    "nft": "apt install nftables",
    "socat": "apt install socat",
    SSHD: "apt install openssh-server",
    "ssh-keygen": "apt install openssh-client",
}

_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
"""Processes started by this Python process, kept so that they can be reaped (no zombies)."""


class LabError(MicrosegError):
    """The lab cannot be built, inspected or torn down."""


def require_root() -> None:
    """Network namespaces need root: raise a LabError saying so otherwise."""
    if os.geteuid() != 0:
        raise LabError("microseg lab needs root (network namespaces); run it with sudo")


def check_tools() -> None:
    """Every program the lab runs must be installed; name all the missing ones and how to get them."""
    missing = [f"{Path(tool).name} ({hint})" for tool, hint in TOOLS.items()
               if not (os.access(tool, os.X_OK) if tool.startswith("/") else shutil.which(tool))]
    if missing:
        raise LabError(f"missing tools: {', '.join(missing)}")


def run(argv: Sequence[str], *, input: str | None = None, timeout: float = 30) -> str:
    """Run a command to completion; a failure raises LabError with its output."""
    try:
        done = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"{' '.join(argv)}: {exc}") from exc
    if done.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({done.returncode}): {(done.stderr or done.stdout).strip()}")
    return done.stdout


def run_parallel(jobs: Sequence[tuple[Sequence[str], str | None]], timeout: float = 30
                 ) -> list[subprocess.CompletedProcess[str]]:
    """Run ``(argv, stdin text)`` jobs concurrently; results in order (exit codes unchecked); a hang raises LabError."""
    children = [subprocess.Popen(list(argv), stdin=subprocess.PIPE if text is not None else subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for argv, text in jobs]
    deadline = time.monotonic() + timeout
    results = []
    try:
        for (argv, text), child in zip(jobs, children, strict=True):
            out, err = child.communicate(text, timeout=max(deadline - time.monotonic(), 0.1))
            results.append(subprocess.CompletedProcess(list(argv), child.returncode, out, err))
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(map(str, exc.cmd))} did not finish within {timeout:g} s") from exc
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    return results


# --------------------------------------------------------------------------- namespaces


def netns_inode(name: str) -> int | None:
    """The inode of the named network namespace (its identity), or None when there is no such name."""
    try:
        return (NETNS_DIR / name).stat().st_ino
    except OSError:
        return None


def pid_netns_inode(pid: int) -> int | None:
    """The inode of the network namespace process ``pid`` lives in, or None when it cannot be read."""
    try:
        link = os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None
    return int(link[link.index("[") + 1:-1]) if link.startswith("net:[") else None


def pids_in_netns(inodes: Iterable[int]) -> dict[int, int]:
    """Every process living in one of the given network namespaces: pid -> namespace inode."""
    wanted = set(inodes)
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            inode = pid_netns_inode(int(entry.name))
            if inode in wanted and inode is not None:
                found[int(entry.name)] = inode
    return found


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class ProcessRecord:
    """One process the lab started: who it is for, and how to recognise it again (start time, cmdline marker)."""

    kind: str
    host: str
    pid: int
    start: int
    marker: str
    netns: int | None = None
    log: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ProcessRecord:
        return cls(**data)  # type: ignore[arg-type]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a process, None when it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[19])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def start_process(argv: Sequence[str], *, kind: str, host: str, marker: str, log: Path,
                  netns: int | None = None) -> ProcessRecord:
    """Start a long-running process in its own session, logging to ``log``; return how to recognise it."""
    with log.open("ab") as out:
        try:
            child = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True, close_fds=True)
        except OSError as exc:
            raise LabError(f"cannot start {kind} for {host}: {exc}") from exc
    _CHILDREN[child.pid] = child
    stat = _stat(child.pid)
    return ProcessRecord(kind=kind, host=host, pid=child.pid, start=stat[1] if stat else -1, marker=marker,
                         netns=netns, log=str(log))


def alive(record: ProcessRecord) -> bool:
    """Whether the recorded process still runs: same PID, same start time, marker in cmdline, same namespace."""
    child = _CHILDREN.get(record.pid)
    if child is not None and child.poll() is not None:
        return False
    stat = _stat(record.pid)
    if stat is None or stat[0] in "ZX" or stat[1] != record.start or record.marker not in _cmdline(record.pid):
        return False
    return record.netns is None or pid_netns_inode(record.pid) == record.netns


def listening_ports(pid: int, table: str = "tcp6") -> set[int]:
    """TCP ports in LISTEN state in the network namespace of process ``pid`` (``/proc/PID/net/tcp`` or ``tcp6``)."""
    try:
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
    except OSError:
        return set()
    return {int(fields[1].rsplit(":", 1)[1], 16) for fields in map(str.split, lines)
            if len(fields) > 3 and fields[3] == "0A"}


def _gone(pid: int, start: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]
        return True
    stat = _stat(pid)
    return stat is None or stat[0] in "ZX" or stat[1] != start


def _signal(pid: int, sig: signal.Signals, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group and os.getpgid(pid) == pid:  # a session leader the lab started: its forked helpers go with it
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def stop_processes(targets: dict[int, int], *, group: bool = True, grace: float = 2.0) -> list[int]:
    """SIGTERM then, after ``grace`` seconds, SIGKILL the verified ``pid -> start time`` targets; return the PIDs.

    With ``group``, a target that leads its process group (as every process the lab starts does) takes its group
    along (socat's and sshd's forked helpers).
    """
    for pid in targets:
        _signal(pid, signal.SIGTERM, group)
    deadline = time.monotonic() + grace
    pending = dict(targets)
    while pending and time.monotonic() < deadline:
        pending = {p: s for p, s in pending.items() if not _gone(p, s)}
        if pending:
            time.sleep(0.02)
    for pid in pending:
        _signal(pid, signal.SIGKILL, group)
    deadline = time.monotonic() + grace
    while pending and time.monotonic() < deadline:
        pending = {p: s for p, s in pending.items() if not _gone(p, s)}
        if pending:
            time.sleep(0.02)
    return sorted(targets)


def start_time(pid: int) -> int | None:
    """The start time (clock ticks after boot) of a live process, None when it is gone or a zombie."""
    stat = _stat(pid)
    return None if stat is None or stat[0] in "ZX" else stat[1]
