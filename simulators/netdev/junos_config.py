"""Junos configuration hierarchy for the Junos simulator: path parsing, set/delete/insert, display set, compare."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

from simulators.netdev.junos_schema import ROOT, Stmt, ValueCheckError, accepts, check_value

#: element text (``filter F``, ``term T10``, ``accept``) -> children; insertion-ordered like the candidate
Node = dict[str, "Node"]


class JunosCliError(Exception):
    """A line Junos refuses: caret under token ``index``, then ``message``."""

    def __init__(self, index: int, message: str = "syntax error.") -> None:
        super().__init__(message)
        self.index = index
        self.message = message


@dataclass(frozen=True)
class Step:
    """One element of a configuration path; ``element`` None means "every ``keyword`` statement" (delete/show)."""

    element: str | None
    keyword: str
    stmt: Stmt  # schema of the element's children
    parent: Stmt
    index: int  # token index where the element starts


def parse_path(tokens: list[str], schema: Stmt = ROOT, *, partial: bool = False) -> list[Step]:
    """The statement path named by ``tokens``; ``partial`` accepts a trailing keyword without its value."""
    steps: list[Step] = []
    stmt, i = schema, 0
    while i < len(tokens):
        found = stmt.child(tokens[i])
        if found is None:
            raise JunosCliError(i)
        _, keyword, child = found
        if keyword == "*" or child.kind in ("container", "flag"):
            steps.append(Step(tokens[i], keyword, child, stmt, i))
            stmt, i = child, i + 1
            if child.kind == "flag" and i < len(tokens):
                raise JunosCliError(i)
            continue
        if i + 1 >= len(tokens) or (child.kind == "optleaf" and not accepts(child.value, tokens[i + 1])):
            if child.kind == "optleaf" and i + 1 >= len(tokens):
                steps.append(Step(keyword, keyword, child, stmt, i))
            elif partial and i + 1 >= len(tokens):
                steps.append(Step(None, keyword, child, stmt, i))
            else:
                raise JunosCliError(i + 1, "missing argument." if i + 1 >= len(tokens) else "syntax error.")
            return steps
        step, stmt = _valued_step(tokens, i, keyword, child, stmt)
        steps.append(step)
        i += 2
        if child.kind in ("leaf", "optleaf") and i < len(tokens):
            raise JunosCliError(i)
    return steps


def _valued_step(tokens: list[str], i: int, keyword: str, child: Stmt, parent: Stmt) -> tuple[Step, Stmt]:
    value = tokens[i + 1]
    if child.variants:
        variant = child.variant(value)
        if variant is None:
            raise JunosCliError(i + 1)
        return Step(f"{keyword} {value}", keyword, variant[1], parent, i), variant[1]
    try:
        value = check_value(child.value, value)
    except ValueCheckError as exc:
        raise JunosCliError(i + 1, str(exc) or "syntax error.") from exc
    return Step(f"{keyword} {value}", keyword, child, parent, i), child


def keyword_of(parent: Stmt, element: str) -> str:
    first = element.split(maxsplit=1)[0]
    return first if any(keyword == first for keyword, _ in parent.children) else "*"


def _child_schema(parent: Stmt, element: str) -> tuple[tuple[int, int], Stmt]:
    """(display rank, schema) of an element stored under ``parent``."""
    words = element.split()
    found = parent.child(words[0])
    if found is None:  # cannot happen for elements made by parse_path
        return (len(parent.children), 0), Stmt("container")
    rank, _, stmt = found
    if stmt.variants and len(words) > 1:
        variant = stmt.variant(words[1])
        if variant is not None:
            return (rank, variant[0]), variant[1]
    return (rank, 0), stmt


def ordered(node: Node, schema: Stmt) -> list[tuple[str, Node, Stmt]]:
    """Children in Junos display order: schema order; entries of one list keep their configured order."""
    ranked = [(_child_schema(schema, element), element, child) for element, child in node.items()]
    ranked.sort(key=lambda item: item[0][0])
    return [(element, child, stmt) for (_, stmt), element, child in ranked]


def set_path(tree: Node, steps: list[Step]) -> None:
    """``set``: create the path; a single-valued statement or a choice replaces its rivals."""
    node = tree
    for step in steps:
        assert step.element is not None
        if step.element not in node:
            for rival in [e for e in node if _rivals(step, e)]:
                del node[rival]
        node = node.setdefault(step.element, {})


def _rivals(step: Step, element: str) -> bool:
    keyword = keyword_of(step.parent, element)
    if step.stmt.kind in ("leaf", "optleaf") and keyword == step.keyword:
        return True
    if not step.stmt.choice:
        return False
    found = step.parent.child(keyword)
    return found is not None and found[2].choice == step.stmt.choice


def walk(tree: Node, steps: list[Step]) -> Node | None:
    node: Node | None = tree
    for step in steps:
        if node is None or step.element is None:
            return node
        node = node.get(step.element)
    return node


def delete_path(tree: Node, steps: list[Step]) -> bool:
    """``delete``: remove the subtree (all statements of the keyword when no value); prune emptied containers."""
    nodes = [tree]
    for step in steps[:-1]:
        following = nodes[-1].get(step.element or "")
        if following is None:
            return False
        nodes.append(following)
    last, node = steps[-1], nodes[-1]
    if last.element is None:
        victims = [e for e in node if keyword_of(last.parent, e) == last.keyword]
    else:
        victims = [last.element] if last.element in node else []
    for victim in victims:
        del node[victim]
    for depth in range(len(steps) - 1, 0, -1):
        step = steps[depth - 1]
        if nodes[depth] or step.stmt.kind != "container" or step.element is None:
            break
        del nodes[depth - 1][step.element]
    return bool(victims)


def insert_path(tree: Node, steps: list[Step], where: str, reference: list[str], base: int) -> None:
    """``insert PATH before|after KEYWORD NAME``: move (or create) the last element of PATH next to a sibling."""
    last = steps[-1]
    if last.element is None or last.stmt.kind not in ("named", "list") or last.stmt.variants:
        raise JunosCliError(base + last.index)
    if where not in ("before", "after"):
        raise JunosCliError(base)
    if len(reference) != 2 or reference[0] != last.keyword:
        raise JunosCliError(base + 1, "syntax error." if reference else "missing argument.")
    parent = walk(tree, steps[:-1])
    try:
        target = f"{last.keyword} {check_value(last.stmt.value, reference[1])}"
    except ValueCheckError as exc:
        raise JunosCliError(base + 2, str(exc) or "syntax error.") from exc
    if parent is None or target not in parent:
        raise JunosCliError(base + 2, f"error: statement not found: {' '.join(reference)}")
    set_path(tree, steps)
    moved = parent.pop(last.element)
    items = list(parent.items())
    position = [e for e, _ in items].index(target) + (where == "after")
    items.insert(position, (last.element, moved))
    parent.clear()
    parent.update(items)


def leaf_paths(node: Node, schema: Stmt = ROOT) -> Iterator[tuple[str, ...]]:
    """Every leaf (statement without children) as its path of elements, in display order."""
    for element, child, stmt in ordered(node, schema):
        if child:
            for path in leaf_paths(child, stmt):
                yield (element, *path)
        else:
            yield (element,)


def display_set(tree: Node, steps: list[Step]) -> str:
    """``show configuration PATH | display set``."""
    node = walk(tree, steps)
    if node is None:
        return ""
    prefix = [s.element for s in steps if s.element is not None]
    schema = steps[-1].stmt if steps else ROOT
    if steps and steps[-1].element is None:
        keyword, schema = steps[-1].keyword, steps[-1].parent
        node = {e: c for e, c in node.items() if keyword_of(schema, e) == keyword}
    return "\n".join("set " + " ".join([*prefix, *path]) for path in leaf_paths(node, schema))


def braces(node: Node, schema: Stmt = ROOT, depth: int = 0) -> list[str]:
    """The curly-brace form (``show configuration``), lists folded as Junos folds them."""
    pad, out = "    " * depth, []
    items = ordered(node, schema)
    i = 0
    while i < len(items):
        element, child, stmt = items[i]
        keyword = keyword_of(schema, element)
        if stmt.kind == "list":
            end = i
            while end < len(items) and keyword_of(schema, items[end][0]) == keyword:
                end += 1
            group = items[i:end]
            shown = [it[0].split(None, 1)[1] + "".join(f" {flag}" for flag in it[1]) for it in group]
            if stmt.style == "block":
                out += [f"{pad}{keyword} {{", *(f"{pad}    {value};" for value in shown), f"{pad}}}"]
            elif stmt.style == "lines":
                out += [f"{pad}{keyword} {value};" for value in shown]
            else:
                folded = shown[0] if len(shown) == 1 else f"[ {' '.join(shown)} ]"
                out.append(f"{pad}{keyword} {folded};")
            i += len(group)
            continue
        inner = braces(child, stmt, depth + 1)
        if element == "then" and len(inner) == 1:  # Junos prints a one-action `then` on one line
            out.append(f"{pad}then {inner[0].strip()}")
        else:
            out += [f"{pad}{element} {{", *inner, f"{pad}}}"] if child else [f"{pad}{element};"]
        i += 1
    return out


def compare(old: Node, new: Node) -> str:
    """``show | compare``: the leaves removed (-) and added (+), under their ``[edit …]`` parents."""
    old_paths, new_paths = list(leaf_paths(old)), list(leaf_paths(new))
    old_set, new_set = set(old_paths), set(new_paths)
    groups: dict[tuple[str, ...], list[str]] = {}
    for sign, paths, other in (("-", old_paths, new_set), ("+", new_paths, old_set)):
        for path in paths:
            if path not in other:
                groups.setdefault(path[:-1], []).append(f"{sign}    {path[-1]};")
    lines: list[str] = []
    for parent, changes in groups.items():
        lines += [f"[edit {' '.join(parent)}]".replace("[edit ]", "[edit]"), *changes]
    return "\n".join(lines)


def same(a: Node, b: Node) -> bool:
    """Equal including order (dict equality ignores the order of terms)."""
    return list(a) == list(b) and all(same(a[key], b[key]) for key in a)


def clone(tree: Node) -> Node:
    return copy.deepcopy(tree)


def check_commit(tree: Node) -> list[str]:
    """What `commit` / `commit check` refuses: a bound filter that is not defined (for that family)."""
    firewall = tree.get("firewall", {})
    defined = {("inet", e.split()[1]) for e in firewall if e.startswith("filter ")}
    for family in ("inet", "inet6"):
        defined |= {(family, e.split()[1]) for e in firewall.get(f"family {family}", {}) if e.startswith("filter ")}
    errors: list[str] = []
    for ifd, interface in tree.get("interfaces", {}).items():
        for unit, unit_node in interface.items():
            for family_element, family_node in unit_node.items() if unit.startswith("unit ") else ():
                family = family_element.split()[1] if family_element.startswith("family ") else ""
                for binding in family_node.get("filter", {}) if family else ():
                    direction, name = binding.split()
                    if (family, name) not in defined:
                        errors += [
                            f"[edit interfaces {ifd} {unit} {family_element} filter]",
                            f"  '{direction} {name}'",
                            f"    error: Referenced filter '{name}' is not defined",
                        ]
    return errors


def commit_options(words: list[str]) -> dict[str, str | None]:
    """`commit` options: check, confirmed [MINUTES] (default 10), and-quit, comment TEXT, synchronize."""
    options: dict[str, str | None] = {}
    i = 1
    while i < len(words):
        word = words[i]
        if word == "confirmed":
            following = words[i + 1] if i + 1 < len(words) else ""
            minutes = following if following.isdigit() and 1 <= int(following) <= 65535 else None
            options["confirmed"] = minutes or "10"
            i += 2 if minutes else 1
        elif word == "comment" and i + 1 < len(words):
            options["comment"] = words[i + 1]
            i += 2
        elif word in ("check", "and-quit", "synchronize") and word not in options:
            options[word] = None
            i += 1
        else:
            raise JunosCliError(i)
    if "check" in options and len(options) > 1:
        raise JunosCliError(1)
    return options


def split_pipes(words: list[str]) -> tuple[list[str], list[list[str]]]:
    """A command's words and its `| …` pipes."""
    parts: list[list[str]] = [[]]
    for word in words:
        if word == "|":
            parts.append([])
        else:
            parts[-1].append(word)
    return parts[0], parts[1:]
