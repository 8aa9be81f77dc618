"""microseg from your own Nornir: plan the points of a Nornir group, apply them, plan again.

    python docs/nornir_example.py --policy policies --inventory inventory --group arista-eos [--apply]

Nornir is initialised the way a team already does it (here: ``InitNornir`` with SimpleInventory on the
same files microseg reads); microseg's tasks run in that Nornir's own runner.  Hosts without
``data.microseg`` are reported as not points.  ``tests/test_nornir_tasks.py`` runs this script.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nornir import InitNornir

from orchestrator.engine.nornir_tasks import microseg_apply, microseg_engine, microseg_plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", type=Path, default=Path("policies"))
    parser.add_argument("--inventory", type=Path, default=Path("inventory"))
    parser.add_argument("--group", help="Only the hosts of this Nornir group.")
    parser.add_argument("--store", help="State store URL (default sqlite:///.microseg/state.db).")
    parser.add_argument("--today", help="Evaluate rule expiry as of this date (YYYY-MM-DD).")
    parser.add_argument("--apply", action="store_true", help="Apply the plans, then plan again.")
    args = parser.parse_args(argv)

    nr = InitNornir(
        runner={"plugin": "threaded", "options": {"num_workers": 4}},
        inventory={"plugin": "SimpleInventory", "options": {
            "host_file": str(args.inventory / "hosts.yaml"), "group_file": str(args.inventory / "groups.yaml"),
            "defaults_file": str(args.inventory / "defaults.yaml")}},
        logging={"enabled": False},
    )
    if args.group:
        nr = nr.filter(filter_func=lambda host: args.group in {g.name for g in host.extended_groups()})
    from datetime import date  # noqa: PLC0415

    today = date.fromisoformat(args.today) if args.today else None
    failed = False
    with microseg_engine(args.policy, args.inventory, store=args.store, today=today) as engine:
        steps = [("plan", microseg_plan)] + ([("apply", microseg_apply), ("plan again", microseg_plan)]
                                             if args.apply else [])
        for label, task in steps:
            results = nr.run(task=task, engine=engine, name=f"microseg {label}")
            for host, multi in sorted(results.items()):
                result = multi[0]
                if result.exception is not None:
                    print(f"{label}: {host}: error: {result.exception}")
                    failed = True
                    continue
                data = result.result
                if data == {"point": False}:
                    print(f"{label}: {host}: not a microseg point")
                    continue
                state = "changes" if result.changed else "in sync"
                detail = (f"run {data['run_id']} {data['status']}" if "run_id" in data and "status" in data
                          else f"{len(result.diff.splitlines())} native lines")
                print(f"{label}: {host}: {state}, {detail}" + (" (FAILED)" if result.failed else ""))
                failed = failed or bool(result.failed)
        print(json.dumps({"hosts": len(nr.inventory.hosts)}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
