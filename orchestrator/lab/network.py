"""The lab network: namespaces, a bridge in the switch namespace, one veth pair per host, on-link addressing."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence

from orchestrator.lab.plan import LabHost, LabPlan
from orchestrator.lab.system import LabError, netns_inode, run, run_parallel

BRIDGE = "br0"


def check_free(plan: LabPlan, recorded: Sequence[str] = ()) -> None:
    """No namespace of the plan may exist unless the lab recorded it: the lab never adopts what it did not create."""
    names = [plan.switch, *(h.namespace for h in plan.hosts)]
    foreign = [n for n in names if n not in recorded and netns_inode(n) is not None]
    if foreign:
        raise LabError(f"network namespaces {', '.join(foreign)} exist but this lab did not create them (another lab "
                       "with the same prefix, or leftovers?); use another prefix, or remove them with "
                       "`ip netns del NAME` if they are yours")


def create_namespaces(plan: LabPlan, record: Callable[[str, int], None]) -> None:
    """Create the switch and host namespaces, calling ``record(name, inode)`` right after each one exists."""
    for name in (plan.switch, *(h.namespace for h in plan.hosts)):
        run(["ip", "netns", "add", name])  # fails when the name exists: the lab only records what it created
        inode = netns_inode(name)
        if inode is None:
            raise LabError(f"namespace {name} vanished right after `ip netns add`")
        record(name, inode)


def _switch_batch(plan: LabPlan) -> str:
    lines = ["link set lo up", f"link add {BRIDGE} type bridge mcast_snooping 0", f"link set {BRIDGE} up"]
    for index, host in enumerate(plan.hosts):
        host_end, bridge_end = plan.interfaces(index)
        lines += [f"link add {bridge_end} type veth peer name {host_end} netns {host.namespace}",
                  f"link set {bridge_end} master {BRIDGE}", f"link set {bridge_end} up"]
    return "\n".join(lines) + "\n"


def _host_batch(host_end: str, host: LabHost) -> str:
    """Addresses as /32 and /128 (no DAD) and default routes through the veth: every address is on-link."""
    lines = ["link set lo up"]
    lines += [f"address add {a}/32 dev {host_end}" for a in host.ipv4]
    lines += [f"address add {a}/128 dev {host_end} nodad" for a in host.ipv6]
    lines.append(f"link set {host_end} up")
    if host.ipv4:
        lines.append(f"route add 0.0.0.0/0 dev {host_end}")
    if host.ipv6:
        lines.append(f"route add ::/0 dev {host_end}")
    return "\n".join(lines) + "\n"


def wire(plan: LabPlan) -> None:
    """Build the bridge and veth pairs (inside the switch namespace), then address every host concurrently."""
    run(["ip", "-n", plan.switch, "-batch", "-"], input=_switch_batch(plan))
    jobs = [(["ip", "-n", host.namespace, "-batch", "-"], _host_batch(plan.interfaces(index)[0], host))
            for index, host in enumerate(plan.hosts)]
    failures = [f"{argv[2]}: {done.stderr.strip()}" for (argv, _), done in zip(jobs, run_parallel(jobs), strict=True)
                if done.returncode != 0]
    if failures:
        raise LabError("cannot configure the lab hosts: " + "; ".join(failures))


def delete_namespaces(names: Sequence[str]) -> list[str]:
    """Delete the named namespaces (one `ip -batch`); return those that are gone afterwards."""
    if names:
        subprocess.run(["ip", "-force", "-batch", "-"], input="".join(f"netns delete {n}\n" for n in names),
                       capture_output=True, text=True, timeout=30, check=False)
    return [n for n in names if netns_inode(n) is None]
