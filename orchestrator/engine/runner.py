"""Running one piece of work per enforcement point on Nornir's threaded runner."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from nornir.core import Nornir
from nornir.core.inventory import Inventory as NornirInventory
from nornir.core.task import Result, Task
from nornir.plugins.runners import ThreadedRunner

from orchestrator.model.errors import InventoryError

T = TypeVar("T")


class TaskCrashed(Exception):
    """Work for one point raised something that is not a MicrosegError (a bug): carried as a value."""


def _point_task(task: Task, work: Callable[[str], Any]) -> Result:
    return Result(host=task.host, result=work(task.host.name))


def run_on_points(inventory: NornirInventory, names: Iterable[str], work: Callable[[str], T],
                  workers: int) -> dict[str, T | TaskCrashed]:
    """``work(name)`` for every named point, ``workers`` at a time; exceptions come back as values."""
    wanted = set(names)
    if not wanted:
        return {}
    nornir = Nornir(inventory=inventory, runner=ThreadedRunner(num_workers=max(1, workers)))
    selected = nornir.filter(filter_func=lambda host: host.name in wanted)
    missing = wanted - set(selected.inventory.hosts)
    if missing:
        raise InventoryError(f"not in the Nornir inventory (any more): {', '.join(sorted(missing))}")
    aggregated = selected.run(task=_point_task, work=work, on_failed=True, name="microseg")
    out: dict[str, T | TaskCrashed] = {}
    for name, multi in aggregated.items():
        first = multi[0]
        if first.exception is not None:
            out[name] = TaskCrashed(f"{type(first.exception).__name__}: {first.exception}")
        else:
            out[name] = first.result
    return out
