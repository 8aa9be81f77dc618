"""Timing of the packet-space analyses on realistic synthetic rulesets (run: python benchmarks/packetspace.py)."""

from __future__ import annotations

import ipaddress
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.model.rules import ANY_ADDRESS, Action, AddressSet, Direction, Ordering, Rule
from orchestrator.packetspace import flowset, ruleshape
from orchestrator.packetspace.packetspace import (
    decide,
    difference_witness,
    effective_regions,
    equivalent,
    permitted,
    shadowed_rules,
)

V4_BLOCKS = [ipaddress.IPv4Network(f"10.{n}.0.0/16") for n in (10, 20, 30, 40)]
V6_BLOCKS = [ipaddress.IPv6Network(f"fd00:{n}::/48") for n in (10, 20)]
TCP_PORTS = [22, 80, 443, 3306, 5432, 6379, 8080, 8443, 9200]
UDP_PORTS = [53, 123, 161, 514]


def random_addresses(rng: random.Random, family: int) -> AddressSet:
    """Mostly one /32 (or /128), else one /24 (/64), sometimes a whole block."""
    roll = rng.random()
    if family == 6:
        block6 = rng.choice(V6_BLOCKS)
        length6 = 128 if roll < 0.6 else 64 if roll < 0.95 else 48
        offset6 = rng.getrandbits(80) & ~((1 << (128 - length6)) - 1)
        return AddressSet.of([ipaddress.IPv6Network((int(block6.network_address) + offset6, length6))])
    block = rng.choice(V4_BLOCKS)
    length = 32 if roll < 0.6 else 24 if roll < 0.95 else 16
    offset = rng.getrandbits(16) & ~((1 << (32 - length)) - 1)
    return AddressSet.of([ipaddress.IPv4Network((int(block.network_address) + offset, length))])


def random_rule(rng: random.Random) -> Rule:
    action = Action.PERMIT if rng.random() < 0.85 else Action.DENY
    family = 6 if rng.random() < 0.1 else 4
    src, dst = random_addresses(rng, family), random_addresses(rng, family)
    roll = rng.random()
    if roll < 0.65:
        port = rng.choice(TCP_PORTS) if rng.random() < 0.5 else rng.randrange(1024, 65000)
        width = rng.choice((0, 0, 0, 0, 9))
        return Rule(action, Direction.INGRESS, 6, src, dst, dst_ports=((port, port + width),))
    if roll < 0.85:
        port = rng.choice(UDP_PORTS) if rng.random() < 0.6 else rng.randrange(1024, 65000)
        return Rule(action, Direction.INGRESS, 17, src, dst, dst_ports=((port, port),))
    if roll < 0.97:
        icmp_type, icmp_code = rng.choice(((8, 0), (0, None), (3, None), (None, None)))
        protocol = 1 if family == 4 else 58
        return Rule(action, Direction.INGRESS, protocol, src, dst, icmp_type=icmp_type, icmp_code=icmp_code)
    return Rule(action, Direction.INGRESS, None, src, dst)


def narrower_copy(rng: random.Random, rule: Rule) -> Rule:
    """A rule inside ``rule`` (same or narrower source), with a random action: shadowed by it."""
    network = rule.src.networks[0]
    host = network.network_address + rng.randrange(network.num_addresses)
    src = AddressSet.of([ipaddress.ip_network(host)]) if rng.random() < 0.7 else rule.src
    action = rng.choice((Action.PERMIT, Action.DENY))
    return Rule(action, rule.direction, rule.protocol, src, rule.dst, rule.src_ports, rule.dst_ports,
                rule.icmp_type, rule.icmp_code)


BROAD_RULES = {
    0.1: Rule(Action.DENY, Direction.INGRESS, 6, ANY_ADDRESS, AddressSet.of(["10.30.0.0/16"]), dst_ports=((23, 23),)),
    0.3: Rule(Action.PERMIT, Direction.INGRESS, 1, ANY_ADDRESS, ANY_ADDRESS, icmp_type=8, icmp_code=0),
    0.5: Rule(Action.DENY, Direction.INGRESS, None, AddressSet.of(["10.40.0.0/16"]), AddressSet.of(["10.10.0.0/16"])),
    0.7: Rule(Action.PERMIT, Direction.INGRESS, 6, AddressSet.of(["10.10.0.0/16"]), AddressSet.of(["10.20.0.0/16"]),
              dst_ports=((443, 443),)),
}


def synthetic_ruleset(size: int, seed: int) -> list[Rule]:
    """``size`` rules: random ones, ~8% narrower copies of earlier ones, a few broad rules, a final deny any."""
    rng = random.Random(seed)
    rules: list[Rule] = []
    broad = sorted(BROAD_RULES.items())
    while len(rules) < size - 1:
        if broad and len(rules) >= broad[0][0] * size:
            rules.append(broad.pop(0)[1])
        elif rules and rng.random() < 0.08:
            rules.append(narrower_copy(rng, rng.choice(rules)))
        else:
            rules.append(random_rule(rng))
    rules.append(Rule(Action.DENY, Direction.INGRESS, None, ANY_ADDRESS, ANY_ADDRESS))
    return rules


def reordered_equivalent(rules: Sequence[Rule], seed: int) -> list[Rule]:
    """The same rules with every run of consecutive same-action rules shuffled: same first-match semantics."""
    rng = random.Random(seed)
    out: list[Rule] = []
    run: list[Rule] = []
    for rule in rules:
        if run and rule.action is not run[0].action:
            rng.shuffle(run)
            out.extend(run)
            run = []
        run.append(rule)
    rng.shuffle(run)
    return out + run


def one_rule_changed(rules: Sequence[Rule]) -> list[Rule]:
    """The first permit after the middle that decides something gets another destination port."""
    shadowed = {s.index for s in shadowed_rules(rules)}
    middle = len(rules) // 2
    index = next(i for i in range(middle, len(rules))
                 if rules[i].action is Action.PERMIT and rules[i].protocol == 6 and i not in shadowed)
    rule = rules[index]
    port = rule.dst_ports[0][0]
    changed = Rule(rule.action, rule.direction, 6, rule.src, rule.dst, dst_ports=((port + 1, port + 1),))
    return [*rules[:index], changed, *rules[index + 1 :]]


def clear_caches() -> None:
    """Forget the memoized address and prefix conversions, so that every figure is a cold one."""
    flowset.address_intervals.cache_clear()
    ruleshape._networks.cache_clear()
    ruleshape._address_set.cache_clear()


def timed(label: str, action: Callable[[], object], repeat: int = 3) -> object:
    times: list[float] = []
    result: object = None
    for _ in range(repeat):
        clear_caches()
        start = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - start)
    print(f"  {label:<58} best {min(times) * 1000:8.1f} ms   median {statistics.median(times) * 1000:8.1f} ms")
    return result


def large_ruleset_figures(size: int = 5000) -> None:
    rules = synthetic_ruleset(size, seed=7)
    reordered = reordered_equivalent(rules, seed=8)
    changed = one_rule_changed(rules)
    print(f"{size}-rule first-match ruleset (default deny):")
    shadows = timed("shadowed_rules", lambda: shadowed_rules(rules))
    assert isinstance(shadows, list)
    print(f"    -> {len(shadows)} shadowed ({100 * len(shadows) / size:.1f}%), "
          f"{sum(s.conflicting for s in shadows)} conflicting")
    same = timed("equivalent(ruleset, reordered copy)", lambda: equivalent(rules, Action.DENY, reordered, Action.DENY))
    print(f"    -> equivalent: {same}")
    differs = timed(
        "equivalent(ruleset, one rule changed)", lambda: equivalent(rules, Action.DENY, changed, Action.DENY)
    )
    witness = difference_witness(rules, Action.DENY, changed, Action.DENY)
    assert witness is not None
    print(f"    -> equivalent: {differs}; witness {witness.describe()}: "
          f"{decide(rules, Action.DENY, witness)[0].value} vs {decide(changed, Action.DENY, witness)[0].value}")
    allowed = timed("permitted(...).to_rules() (allow-only compile)",
                    lambda: permitted(rules, Action.DENY, Ordering.FIRST_MATCH).to_rules(Action.PERMIT,
                                                                                        Direction.INGRESS), 1)
    assert isinstance(allowed, list)
    print(f"    -> {len(allowed)} allow rules")
    timed("equivalent(first-match, its allow-only compilation)",
          lambda: equivalent(rules, Action.DENY, allowed, Action.DENY, Ordering.FIRST_MATCH, Ordering.UNORDERED_ALLOW))
    print("  the costly shape: a broad rule behind thousands (its region is everything minus all of them)")
    timed("permitted(default permit): the complement of the denies", lambda: permitted(rules[:-1], Action.PERMIT), 1)
    timed("effective_regions (last rule: deny any any)", lambda: effective_regions(rules), 1)


def small_ruleset_figures(size: int = 200, count: int = 100) -> None:
    rulesets = [synthetic_ruleset(size, seed) for seed in range(count)]
    copies = [reordered_equivalent(rules, seed) for seed, rules in enumerate(rulesets)]
    totals = dict.fromkeys(("shadowed_rules", "equivalent(reordered copy)", "permitted(...).to_rules()",
                            "equivalent(first-match, allow-only compilation)"), 0.0)
    compiled_sizes: list[int] = []
    for rules, copy in zip(rulesets, copies, strict=True):
        clear_caches()
        laps = [time.perf_counter()]
        shadowed_rules(rules)
        laps.append(time.perf_counter())
        assert equivalent(rules, Action.DENY, copy, Action.DENY)
        laps.append(time.perf_counter())
        allowed = permitted(rules, Action.DENY, Ordering.FIRST_MATCH).to_rules(Action.PERMIT, Direction.INGRESS)
        laps.append(time.perf_counter())
        assert equivalent(rules, Action.DENY, allowed, Action.DENY, Ordering.FIRST_MATCH, Ordering.UNORDERED_ALLOW)
        laps.append(time.perf_counter())
        for label, start, end in zip(totals, laps, laps[1:], strict=False):
            totals[label] += end - start
        compiled_sizes.append(len(allowed))
    print(f"{count} first-match rulesets of {size} rules (mean per ruleset):")
    for label, total in totals.items():
        print(f"  {label:<58} {total / count * 1000:8.2f} ms")
    print(f"    -> allow-only compilations: median {statistics.median(compiled_sizes):.0f} rules")


if __name__ == "__main__":
    large_ruleset_figures()
    small_ruleset_figures(200)
    small_ruleset_figures(100)
