"""The lab: a built-in, disposable network of Linux hosts in network namespaces, managed over real SSH.

Uses ``orchestrator.model`` and ``orchestrator.inventory`` (the points it builds counterparts for).
"""

from __future__ import annotations

from orchestrator.lab.lab import Lab, default_lab_dir, plan_lab_from_directory
from orchestrator.lab.plan import DEFAULT_PORTS, LabHost, LabPlan, nornir_endpoints, plan_lab
from orchestrator.lab.probe import ProbeResult
from orchestrator.lab.status import HostStatus, LabStatus
from orchestrator.lab.system import LabError, check_tools, require_root

__all__ = [
    "DEFAULT_PORTS",
    "HostStatus",
    "Lab",
    "LabError",
    "LabHost",
    "LabPlan",
    "LabStatus",
    "ProbeResult",
    "check_tools",
    "default_lab_dir",
    "nornir_endpoints",
    "plan_lab",
    "plan_lab_from_directory",
    "require_root",
]
