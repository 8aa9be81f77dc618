"""Pure checks over a merged policy: references, cycles, reserved names and expired rules."""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import date
from typing import NamedTuple

from orchestrator.model.errors import Diagnostic, Location, Severity
from orchestrator.model.policy import ANY_GROUP, Policy, is_inline_service, parse_service_spec
from orchestrator.model.suggest import did_you_mean
from orchestrator.policy.sources import Kind, SourceIndex

Broken = Collection[tuple[Kind, str]]


class Reference(NamedTuple):
    """One name written in a reference field: entry ``position`` of ``field`` of the ``kind`` named ``owner``."""

    kind: Kind
    owner: str
    field: str
    position: int
    name: str


#: The fields of each kind of definition that refer to other names (a service group's entries are ``members``).
REFERENCE_FIELDS: Mapping[Kind, tuple[str, ...]] = {
    "rule": ("from", "to", "services"), "group": ("groups",), "service_group": ("members",),
}
_GROUP_FIELDS = frozenset({"from", "to", "groups"})


def check_policy(
    policy: Policy, sources: SourceIndex, *, today: date, broken: Broken = (), broken_refs: Iterable[Reference] = (),
) -> list[Diagnostic]:
    """Every finding over the merged policy.

    ``broken`` names are defined but invalid (already reported); ``broken_refs`` are the well-formed
    references of those invalid definitions, checked like the references of valid ones.
    """
    return [
        *check_names(policy, sources),
        *check_references(policy, sources, broken, broken_refs),
        *check_cycles(policy, sources),
        *check_expired(policy, sources, today),
    ]


def check_names(policy: Policy, sources: SourceIndex) -> Iterator[Diagnostic]:
    """Reserved group name ``any``, service names that read as inline specs, names both service and service group."""
    if ANY_GROUP in policy.groups:
        yield Diagnostic(
            f"group name {ANY_GROUP!r} is reserved: it always means every IPv4 and IPv6 address",
            sources.locate("group", ANY_GROUP), code="reserved-name",
            hint=f"rename the group; rules can use {ANY_GROUP!r} without defining it",
        )
    kinds: tuple[tuple[Kind, Collection[str]], ...] = (
        ("service", policy.services), ("service_group", policy.service_groups),
    )
    for kind, names in kinds:
        for name in names:
            if is_inline_service(name):
                yield Diagnostic(
                    f"{kind.replace('_', ' ')} name {name!r} would be read as an inline service spec",
                    sources.locate(kind, name), code="reserved-name",
                    hint="use a name with a letter in it, e.g. 'svc-" + name.lower() + "'",
                )
    for name in policy.service_groups:
        if name in policy.services:
            yield Diagnostic(
                f"{name!r} is both a service and a service group", sources.locate("service_group", name),
                code="duplicate", hint=f"the service is defined at {sources.locate('service', name)}",
            )


def policy_references(policy: Policy) -> Iterator[Reference]:
    """Every reference of the (valid) rules, groups of groups and service groups of a policy, in written order."""
    for rule in policy.rules:
        for field, names in (("from", rule.from_), ("to", rule.to), ("services", rule.services)):
            yield from (Reference("rule", rule.name, field, i, name) for i, name in enumerate(names))
    for owner, group in policy.groups.items():
        yield from (Reference("group", owner, "groups", i, name) for i, name in enumerate(group.groups or ()))
    for owner, members in policy.service_groups.items():
        yield from (Reference("service_group", owner, "members", i, name) for i, name in enumerate(members))


def check_references(
    policy: Policy, sources: SourceIndex, broken: Broken = (), broken_refs: Iterable[Reference] = (),
) -> Iterator[Diagnostic]:
    """Every name a rule, group or service group refers to must be defined (or be a valid inline spec).

    ``broken_refs`` are the well-formed references of invalid definitions: they are checked the same way.
    """
    groups = {*policy.groups, *(name for kind, name in broken if kind == "group"), ANY_GROUP}
    services = {
        *policy.services, *policy.service_groups,
        *(name for kind, name in broken if kind in ("service", "service_group")),
    }
    for ref in itertools.chain(policy_references(policy), broken_refs):
        yield from _check_reference(ref, groups, services, sources)


def _check_reference(
    ref: Reference, groups: Collection[str], services: Collection[str], sources: SourceIndex,
) -> Iterator[Diagnostic]:
    name = ref.name
    if name in (groups if ref.field in _GROUP_FIELDS else services):
        return
    where = sources.locate_ref(ref.kind, ref.owner, ref.field, ref.position)
    if ref.field in _GROUP_FIELDS:
        yield _unknown("group", name, groups, where)
    elif ref.kind == "rule":
        yield from _check_service_ref(name, services, where)
    elif is_inline_service(name):
        yield Diagnostic(
            f"{name!r} is an inline service spec: a service group lists service and service-group names",
            where, code="invalid-service", hint="define a service for it under 'services:'",
        )
    else:
        yield _unknown("service", name, services, where)


def _check_service_ref(ref: str, services: Collection[str], where: Location | None) -> Iterator[Diagnostic]:
    """A rule's service that is not a defined name: a valid inline spec, or an error."""
    if not is_inline_service(ref):
        yield _unknown("service", ref, services, where)
        return
    try:
        parse_service_spec(ref)
    except ValueError as exc:
        message = str(exc) if repr(ref) in str(exc) else f"invalid service {ref!r}: {exc}"
        yield Diagnostic(message, where, code="invalid-service", hint=_INLINE_HINT)


_INLINE_HINT = "inline specs: tcp/443, tcp/8000-8080, udp/53, icmp/8, icmp/3/4, proto/47, any"
_DEFINE_HINT = {
    "group": "define it under 'groups:', or use 'any'",
    "service": "define it under 'services:' or 'service_groups:', or write an inline spec such as tcp/443",
}


def _unknown(kind: str, name: str, known: Collection[str], where: Location | None) -> Diagnostic:
    hint = did_you_mean(name, known) or _DEFINE_HINT[kind]
    return Diagnostic(f"unknown {kind} {name!r}", where, code="unknown-reference", hint=hint)


def check_cycles(policy: Policy, sources: SourceIndex) -> Iterator[Diagnostic]:
    """Groups of groups and service groups must not contain themselves, directly or not."""
    group_edges = {name: group.groups or () for name, group in policy.groups.items()}
    for cycle, index in find_cycles(group_edges):
        yield Diagnostic(
            f"groups form a cycle: {' → '.join(cycle)}", sources.locate_ref("group", cycle[-2], "groups", index),
            code="cycle", hint="a group of groups cannot contain itself",
        )
    for cycle, index in find_cycles(policy.service_groups):
        yield Diagnostic(
            f"service groups form a cycle: {' → '.join(cycle)}",
            sources.locate_ref("service_group", cycle[-2], "members", index),
            code="cycle", hint="a service group cannot contain itself",
        )


def find_cycles(edges: Mapping[str, Sequence[str]]) -> list[tuple[list[str], int]]:
    """Each cycle closed by a back edge of a depth-first search, in definition order.

    Returns ``(["a", "b", "a"], i)``: the cycle, and the index of the closing reference in the members of
    the next-to-last node (``b``'s ``i``-th member is ``a``).  Members that are not nodes are ignored.
    """
    done: set[str] = set()
    found: list[tuple[list[str], int]] = []
    for root in edges:
        if root in done:
            continue
        path: list[str] = [root]  # the nodes on the current DFS path, each with its next member index
        todo: list[int] = [0]
        while path:
            node, i = path[-1], todo[-1]
            members = edges[node]
            if i == len(members):
                done.add(path.pop())
                todo.pop()
                continue
            todo[-1] += 1
            member = members[i]
            if member in path:
                found.append(([*path[path.index(member):], member], i))
            elif member in edges and member not in done:
                path.append(member)
                todo.append(0)
    return found


def check_expired(policy: Policy, sources: SourceIndex, today: date) -> Iterator[Diagnostic]:
    """Rules whose ``expires`` date is before ``today`` are not compiled: a warning each."""
    for rule in policy.rules:
        if rule.expires is not None and rule.expires < today:
            yield Diagnostic(
                f"rule {rule.name!r} expired on {rule.expires.isoformat()}: it is not compiled",
                sources.locate_field("rule", rule.name, "expires"), severity=Severity.WARNING, code="expired",
                hint="remove the rule or move its expiry date",
            )
