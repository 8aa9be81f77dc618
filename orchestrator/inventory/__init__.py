"""Points and workloads: the Nornir inventory of enforcement points, the workloads and their labels, their sources.

Uses ``orchestrator.model`` and ``orchestrator.policy`` (the YAML reader with positions).  This package's
``__all__`` is the public face a workload source plugin (entry-point group ``microseg.workload_sources``)
imports; drivers that ship one never import a module path inside it.
"""

from __future__ import annotations

from orchestrator.inventory.scope import Workload
from orchestrator.inventory.workloads import (
    WORKLOAD_SOURCE_ENTRY_POINT_GROUP,
    WorkloadLoad,
    WorkloadSource,
    label_mapping,
)

__all__ = ["WORKLOAD_SOURCE_ENTRY_POINT_GROUP", "Workload", "WorkloadLoad", "WorkloadSource", "label_mapping"]
