"""Compile benchmark: a synthetic estate of N workloads, R rules and P points, timed.

Prints wall time, peak memory (RSS), emitted vs. naive rule counts, and the
time ratio when the input is doubled.  Every optimized ruleset is verified
equivalent to its unoptimized form by the compiler itself, so the figures
include that verification.

    .venv/bin/python benchmarks/compile.py                 # the issue's targets
    .venv/bin/python benchmarks/compile.py --points 100    # a quick run
    .venv/bin/python benchmarks/compile.py --worked-example  # only the worked example's switch points
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import resource
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.compiler.compiler import Target, compile_policy
from orchestrator.model.capabilities import Capabilities
from orchestrator.model.policy import Policy
from orchestrator.model.rules import Action, AddressSet, Direction, Ordering

REPO = Path(__file__).resolve().parents[1]
TIERS = ("web", "app", "db")
PORTS = {"web": [80, 443], "app": [8443, 9000], "db": [5432, 6432]}
HOST_FW = Capabilities()
SWITCH_ACL = Capabilities(stateful=False, max_prefixes_per_rule=1, max_port_ranges_per_rule=1,
                          mixed_families_per_rule=False, max_rules=4000)
CLOUD_SG = Capabilities(actions=frozenset({Action.PERMIT}), ordering=Ordering.UNORDERED_ALLOW, max_rules=1000,
                        max_prefixes_per_rule=1, max_port_ranges_per_rule=1, count_families_separately=True)


@dataclass(frozen=True)
class Workload:
    name: str
    addresses: tuple[ipaddress.IPv4Address, ...]
    labels: dict[str, str]


def is_dev(app: int) -> bool:
    return app % 4 == 0


def subnet(app: int, tier: int) -> ipaddress.IPv4Network:
    """Prod apps in 10.0.0.0/10, dev apps in 10.64.0.0/10: one /24 per app tier."""
    block = 64 if is_dev(app) else 0
    index = (app // 4 if is_dev(app) else app - app // 4 - 1) * len(TIERS) + tier
    return ipaddress.ip_network(f"10.{block + index // 256}.{index % 256}.0/24")


def make_estate(
    workloads: int, rules: int, points: int, seed: int = 7
) -> tuple[Policy, list[Workload], list[Target]]:
    rnd = random.Random(seed)
    apps = max(1, points // len(TIERS))
    per_subnet = max(1, workloads // (apps * len(TIERS)))
    hosts = []
    for app in range(apps):
        for t, tier in enumerate(TIERS):
            net = subnet(app, t)
            for h in range(per_subnet):
                hosts.append(Workload(f"a{app}-{tier}-{h}", (net.network_address + 10 + h,),
                                      {"app": f"a{app}", "tier": tier, "env": "dev" if is_dev(app) else "prod"}))
    groups: dict[str, object] = {
        f"a{app}-{tier}": {"selector": {"app": f"a{app}", "tier": tier}} for app in range(apps) for tier in TIERS
    }
    groups["dev"] = {"cidrs": ["10.64.0.0/10"]}
    groups["prod"] = {"cidrs": ["10.0.0.0/10"]}
    groups["monitoring"] = {"cidrs": ["10.250.0.90/32", "10.250.0.91/32"]}
    groups["jump"] = {"cidrs": ["10.250.0.21/32", "10.250.0.22/32"]}
    groups["internet"] = {"external": "internet"}
    policy_rules: list[dict[str, object]] = [
        {"name": "no-dev-to-prod", "from": "dev", "to": "prod", "services": ["any"], "action": "deny"},
        {"name": "monitoring", "from": "monitoring", "to": ["dev", "prod"], "services": ["tcp/9100"],
         "action": "allow"},
        {"name": "ssh", "from": "jump", "to": ["dev", "prod"], "services": ["tcp/22"], "action": "allow"},
    ]
    for app in range(apps):
        policy_rules += [
            {"name": f"a{app}-edge", "from": "internet", "to": f"a{app}-web", "services": ["tcp/80", "tcp/443"],
             "action": "allow"},
            {"name": f"a{app}-web-app", "from": f"a{app}-web", "to": f"a{app}-app", "services": ["tcp/8443"],
             "action": "allow"},
            {"name": f"a{app}-app-db", "from": f"a{app}-app", "to": f"a{app}-db", "services": ["tcp/5432"],
             "action": "allow"},
        ]
    while len(policy_rules) < rules:
        src, dst = rnd.randrange(apps), rnd.randrange(apps)
        tier = rnd.choice(TIERS)
        port = rnd.choice(PORTS[tier]) + rnd.randrange(3)
        policy_rules.append({"name": f"x{len(policy_rules)}", "from": f"a{src}-app", "to": f"a{dst}-{tier}",
                             "services": [f"tcp/{port}"], "action": "allow"})
    policy = Policy.model_validate({"groups": groups, "rules": policy_rules})
    targets = []
    kinds = (HOST_FW, SWITCH_ACL, CLOUD_SG)
    for p in range(points):
        app, tier = divmod(p, len(TIERS))
        app %= apps
        caps = kinds[p % 5 % 3]
        targets.append(Target(f"pt{p}", AddressSet.of([subnet(app, tier)]),
                              frozenset({Direction.INGRESS, Direction.EGRESS}), caps, driver="synthetic"))
    return policy, hosts, targets


def run_once(workloads: int, rules: int, points: int) -> dict[str, float]:
    policy, hosts, targets = make_estate(workloads, rules, points)
    started = time.perf_counter()
    compilation = compile_policy(policy, targets, hosts, today=date(2026, 1, 1))
    elapsed = time.perf_counter() - started
    emitted = sum(p.stats.emitted for p in compilation.points.values())
    naive = sum(p.stats.naive for p in compilation.points.values())
    return {"seconds": elapsed, "emitted": emitted, "naive": naive, "points": len(compilation.points)}


def worked_example(today: date) -> None:
    """The repository's own policy and inventory: entries per switch point, as compiled and with neither
    carve-outs nor covers (the one-prefix-per-entry rendering, compiled in the same run as the baseline)."""
    from orchestrator.compiler import compiler
    from orchestrator.engine.project import load_project

    def entries() -> dict[str, tuple[str, int]]:
        compiled = load_project(REPO / "policies", REPO / "inventory", today=today).compile()
        return {name: (point.target.driver, len(point.ruleset.rules)) for name, point in compiled.points.items()
                if not point.target.capabilities.stateful}

    now = entries()
    carve, cover = compiler._carved, compiler._covered
    compiler._carved = compiler._covered = lambda rules, target, default: rules  # type: ignore[assignment]
    try:
        plain = entries()
    finally:
        compiler._carved, compiler._covered = carve, cover
    print("worked example, switch points (entries; Junos: terms):")
    print(f"  {'point':<16} {'driver':<6} {'plain':>6} {'now':>5} {'share':>6}")
    for name, (driver, count) in sorted(now.items()):
        print(f"  {name:<16} {driver:<6} {plain[name][1]:>6} {count:>5} {100 * count / plain[name][1]:>5.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", type=int, default=6000)
    parser.add_argument("--rules", type=int, default=3000)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--no-doubling", action="store_true", help="Skip the doubled run.")
    parser.add_argument("--worked-example", action="store_true", help="Only the worked example's switch points.")
    args = parser.parse_args()
    worked_example(date(2026, 12, 7))
    if args.worked_example:
        return

    base = run_once(args.workloads, args.rules, args.points)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    saved = 100 * (1 - base["emitted"] / base["naive"]) if base["naive"] else 0.0
    print(f"estate: {args.workloads} workloads, {args.rules} policy rules, {args.points} points")
    print(f"compile: {base['seconds']:.2f} s wall, peak RSS {peak_mb:.0f} MB (includes equivalence verification)")
    print(f"rules: {base['emitted']:.0f} emitted vs {base['naive']:.0f} naive src×dst×service ({saved:.1f}% fewer)")
    if not args.no_doubling:
        doubled = run_once(args.workloads * 2, args.rules * 2, args.points * 2)
        ratio = doubled["seconds"] / base["seconds"]
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"doubled: {doubled['seconds']:.2f} s for {doubled['emitted']:.0f} emitted rules "
              f"→ {ratio:.2f}× the time for 2× the input (peak RSS {peak_mb:.0f} MB)")


if __name__ == "__main__":
    main()
