"""Compile race with Aerleon (issue #13): one estate in both formats, IOS + Junos + nftables, timed and checked.

For each size, ``benchmarks/estate.py`` writes ONE seeded estate twice: a microseg project (policy YAML
with CIDR groups, nested groups, named services, ordered rules; an inventory of three points) and an
Aerleon directory (``def/networks.net`` NETWORK and ``def/services.svc`` SERVICES definitions with the
same names, one ``.pol`` per point, the terms in shared ``#include`` files).  Each tool then turns it into
the native configuration of three enforcement points — Cisco IOS extended ACL, Juniper Junos filter,
nftables — each protecting 10.0.0.0/8, ingress only.  Both run in their own subprocess (their own
interpreter start-up, their own memory), ``--repeat`` times, alternating:

* microseg: a ``python -c`` driver that does what ``microseg compile`` does (``load_project`` on the
  policy and inventory directories, ``Project.compile`` — which verifies every optimized ruleset
  equivalent to the unoptimized one, the big proofs in a forked child on the spare core while it goes on
  (``orchestrator.engine.parallel``; CPU seconds count both) — and then what ``compile --native`` does: a
  device that has no owned ACL/table yet, rendered by each point's driver (``engine.native.fresh_change``),
  three native texts;
* Aerleon 1.18.0 as a user runs it: ``aclgen --optimize`` on the directory (its default pool renders the
  three ``.pol`` files in parallel worker processes; CPU seconds are printed beside wall time).

How the job is matched:

* Same groups, services, rules and order.  microseg's evaluation order is priority, deny-before-allow,
  written order; every rule gets ``priority: i+1`` so the written, interleaved order holds, as Aerleon's
  term order does.  One protocol per rule (Aerleon crosses a term's protocols with all of its ports).
* IOS and Junos are stateless (microseg's ios/junos capabilities: ``stateful: false``, one prefix and one
  port range per entry; the inventory lifts the default ``max_rules: 1000`` TCAM budget so that big
  sizes compile at all).  microseg puts return-path rules first in the ingress ACL: permits of the
  replies of the outbound rules (5% of the policy, internal → partner, permit only), sides and ports
  swapped, TCP segments with ACK or RST only (``established``), echo → echo-reply.  Aerleon derives no
  replies; its users write reply terms by hand.  (Its ``option:: established`` on a stateless target
  also adds destination ports 1024-65535, for UDP only those ports, for ICMP an error — a wider, other
  job.)  So the Aerleon policy carries the same replies as explicit terms first (``source-port::`` = the
  service, ``option:: tcp-established`` on TCP, ``icmp-type:: echo-reply``); both filters then enforce
  exactly the same flow set (checked below; sampled TCP flows are openings and replies).
* nftables is stateful on both sides: microseg's ``ingress`` chain (hook input) starts with ``ct state
  established,related accept`` (and its fixed preamble: ``ct state invalid drop``, ``iif lo accept``,
  ICMPv6 neighbour discovery), Aerleon's base chain (``nftables inet input``: ``table ip``, hook input)
  with the same established accept, ``ct state new`` on each permit.  No reply terms there.  Aerleon
  renders each term as its own chain plus a ``jump``; microseg renders an ``inet`` table with an
  ``ingress`` chain only (the point filters ingress only, so it owns no ``egress`` chain).
* Default deny on both: IOS and Junos implicit deny/discard, nftables ``policy drop``.

Counts come from the written outputs, the same way for both: IOS — entries of the ACL as parsed by
microseg's own IOS parser; Junos — distinct term names of the filter; nftables — rule statements inside
chains (``type …``/chain ``comment`` lines excluded, Aerleon's ``jump`` lines included).  Peak RSS is
``wait4``'s ``ru_maxrss``: the largest single process of the run (for Aerleon, its biggest pool worker or
its main process; for microseg, its main process or a proof's child — not their sum).

Correctness: ``--flows`` 5-tuples (seeded, mostly on the edges of rule addresses and ports) are decided
first-match by microseg's IOS ACL and Aerleon's IOS ACL — both read by ``drivers.cisco_ios.syntax
.parse_running_config_acls`` — and by the estate's reference semantics; any disagreement is printed with
the flow and the deciding entries and makes the script exit 1.  ``--exact`` adds an exact equivalence
check of the two ACLs with the packet-space module.  What that parser cannot read is left out and
printed: Aerleon's configuration-mode wrapper (``no ip access-list extended …``, ``exit``) and microseg's
interface binding (``interface …``, ``ip access-group …``); Aerleon's unnumbered entries are numbered
here as IOS numbers them (the parser's own numbering is quadratic: ~1 min at 16k entries).  Aerleon's
Junos text is brace-style, which our set-style Junos parser does not read: only IOS is flow-checked.

    .venv/bin/python benchmarks/aerleon.py                              # 100, 1,000, 5,000, 20,000 rules
    .venv/bin/python benchmarks/aerleon.py --sizes 100 1000 --repeat 3
    .venv/bin/python benchmarks/aerleon.py --sizes 5000 --repeat 1 --timeout 900
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.estate import FILTER, Estate, make_estate, reference_rules, sample_flows, write_aerleon, write_microseg
from drivers.cisco_ios import syntax as ios
from drivers.netacl.ace import Ace
from orchestrator.model.rules import Action, Direction, Rule
from orchestrator.packetspace.flowset import Flow
from orchestrator.packetspace.packetspace import difference_witness, rule_matches

ROOT = Path(__file__).resolve().parents[1]
TODAY = date(2026, 1, 1)
SIZES = (100, 1_000, 5_000, 20_000)
POINTS = {"ios": "edge-ios", "junos": "edge-junos", "nft": "edge-nft"}
AERLEON_FILES = {"ios": "edge-ios.acl", "junos": "edge-junos.jcl", "nft": "edge-nft.nft"}
# The timed job imports only what it runs (benchmarks/aerleon_job.py), not this harness and its checkers.
MICROSEG_JOB = "import sys; sys.path.insert(0, sys.argv[1]); from benchmarks.aerleon_job import render_microseg; " \
               "render_microseg(*sys.argv[2:])"


# ------------------------------------------------------------------ measuring

@dataclass(frozen=True)
class Run:
    status: str  # "ok" | "timeout" | "failed" | "skipped"
    seconds: float = math.nan
    cpu: float = math.nan
    rss_mb: float = math.nan


def measure(command: Sequence[str], *, cwd: Path, timeout: float, log: Path) -> Run:
    """Wall time, CPU (user+sys) and peak RSS of one subprocess and its descendants; killed at ``timeout``."""
    killed = threading.Event()

    def kill(pgid: int) -> None:
        killed.set()
        with contextlib.suppress(ProcessLookupError):  # it ended just now
            os.killpg(pgid, signal.SIGKILL)  # the whole group we started (aclgen's pool workers too)

    with log.open("wb") as sink:
        started = time.perf_counter()
        proc = subprocess.Popen(command, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        timer = threading.Timer(timeout, kill, (proc.pid,))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        elapsed = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    if killed.is_set():
        return Run("timeout", elapsed)
    state = "ok" if proc.returncode == 0 else "failed"
    return Run(state, elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


@dataclass
class Timing:
    runs: list[Run] = field(default_factory=list)

    @property
    def ok(self) -> list[Run]:
        return [r for r in self.runs if r.status == "ok"]

    @property
    def status(self) -> str:
        return "ok" if self.ok else (self.runs[0].status if self.runs else "skipped")

    @property
    def best(self) -> float:
        return min((r.seconds for r in self.ok), default=math.nan)

    @property
    def median(self) -> float:
        return statistics.median(r.seconds for r in self.ok) if self.ok else math.nan

    @property
    def rss_mb(self) -> float:
        return max((r.rss_mb for r in self.ok), default=math.nan)

    @property
    def cpu(self) -> float:
        return min((r.cpu for r in self.ok), default=math.nan)


def aclgen() -> Path:
    path = Path(sys.executable).with_name("aclgen")
    if not path.exists():
        sys.exit(f"{path} not found: install Aerleon into the venv (.venv/bin/pip install 'aerleon==1.18.0')")
    return path


def byte_compile() -> None:
    """Byte-compile microseg's packages before timing it, as pip did for Aerleon when it installed it: an
    editable install leaves them as source, and with PYTHONDONTWRITEBYTECODE set every run would compile them
    again (0.2-0.3 s), which is start-up a user of an installed microseg does not pay."""
    for package in ("orchestrator", "drivers"):
        compileall.compile_dir(ROOT / package, quiet=1, workers=0)


def run_microseg(work: Path, timeout: float) -> Run:
    out = _fresh(work / "microseg" / "out")
    command = [sys.executable, "-c", MICROSEG_JOB, str(ROOT), "policies", "inventory", str(out)]
    return measure(command, cwd=work / "microseg", timeout=timeout, log=work / "microseg.log")


def run_aerleon(work: Path, timeout: float) -> Run:
    _fresh(work / "aerleon" / "out")  # aclgen writes only files that changed: start empty every time
    command = [str(aclgen()), "--optimize", "--base_directory=policies", "--definitions_directory=def",
               "--output_directory=out"]
    return measure(command, cwd=work / "aerleon", timeout=timeout, log=work / "aerleon.log")


def _fresh(directory: Path) -> Path:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


# ------------------------------------------------------------------ reading the outputs

IOS_SKIPPED = re.compile(r"(?P<kind>no ip access-list|exit|interface|ip access-group)\b.*")
IOS_ENTRY = re.compile(r"(?:\d+ )?(?:permit|deny|remark)\b.*")


def ios_acl(text: str, name: str = FILTER) -> tuple[list[Rule], list[str], dict[str, int]]:
    """The named ACL of a configuration-mode text as normalized ingress rules (plus each entry's line), via
    microseg's IOS running-config parser; also the lines that parser cannot read and that were left out
    (``no ip access-list``/``exit`` of Aerleon, ``interface``/``ip access-group`` of microseg)."""
    kept: list[str] = []
    skipped: dict[str, int] = {}
    in_acl, highest = False, 0
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("!"):
            continue
        if stripped.startswith("ip access-list "):
            kept.append(stripped)
            in_acl, highest = True, 0
        elif in_acl and IOS_ENTRY.fullmatch(stripped):
            head = stripped.split(maxsplit=1)[0]
            if head.isdigit():
                highest = max(highest, int(head))
            elif head != "remark":  # number it as IOS does (highest + 10): the parser's own numbering is O(n²)
                highest += 10
                stripped = f"{highest} {stripped}"
            kept.append(" " + stripped)
        elif m := IOS_SKIPPED.fullmatch(stripped):
            skipped[m["kind"]] = skipped.get(m["kind"], 0) + 1
            in_acl = False
        else:
            kept.append(stripped)  # let the parser refuse it, with its line number
    acls = [a for a in ios.parse_running_config_acls("\n".join(kept), point="bench") if a.name == name]
    if len(acls) != 1:
        raise ValueError(f"expected one ACL {name}, found {[a.name for a in acls]}")
    rules, lines = [], []
    for entry in acls[0].entries:
        if not isinstance(entry.body, Ace):
            raise ValueError(f"ACL entry {entry.seq} cannot be modelled: {entry.body}")
        rules.append(entry.body.to_rule(Direction.INGRESS))
        lines.append(ios.format_entry(int(entry.seq), entry.body))
    return rules, lines, skipped


def junos_terms(text: str) -> int:
    """Distinct term names (``term NAME {`` in Aerleon's hierarchy, ``… term NAME …`` in set commands)."""
    return len(set(re.findall(r"(?:^|\s)term\s+(\S+)", text)) - {"{"})


def nft_rules(text: str) -> int:
    """Rule statements inside chains (``type … hook …`` and chain comment lines are not rules)."""
    count, in_chain = 0, False
    for line in text.splitlines():
        stripped = line.strip()
        if re.fullmatch(r"chain \S+ \{", stripped):
            in_chain = True
        elif in_chain and stripped == "}":
            in_chain = False
        elif in_chain and stripped and not stripped.startswith(("type ", "comment ")):
            count += 1
    return count


@dataclass(frozen=True)
class Outputs:
    ios: list[Rule]
    ios_lines: list[str]
    ios_skipped: dict[str, int]
    junos_terms: int
    nft_rules: int


COUNTS: dict[str, Callable[[Outputs], int]] = {
    "ios": lambda o: len(o.ios), "junos": lambda o: o.junos_terms, "nft": lambda o: o.nft_rules}


def read_outputs(texts: dict[str, str]) -> Outputs:
    rules, lines, skipped = ios_acl(texts["ios"])
    return Outputs(rules, lines, skipped, junos_terms(texts["junos"]), nft_rules(texts["nft"]))


def microseg_texts(work: Path) -> dict[str, str]:
    return {kind: (work / "microseg" / "out" / f"{point}.txt").read_text() for kind, point in POINTS.items()}


def aerleon_texts(work: Path) -> dict[str, str]:
    return {kind: (work / "aerleon" / "out" / name).read_text() for kind, name in AERLEON_FILES.items()}


# ------------------------------------------------------------------ first-match evaluation

class FirstMatch:
    """First-match decisions over normalized rules (IPv4), default deny, indexed by destination prefix."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = list(rules)
        self.buckets: dict[int, dict[int, list[int]]] = {}
        for index, rule in enumerate(self.rules):
            for network in rule.dst.networks:
                if network.version == 4:
                    table = self.buckets.setdefault(network.prefixlen, {})
                    table.setdefault(int(network.network_address), []).append(index)

    def decide(self, flow: Flow) -> tuple[Action, int | None]:
        candidates: set[int] = set()
        for prefixlen, table in self.buckets.items():
            shift = 32 - prefixlen
            candidates.update(table.get(flow.dst >> shift << shift, ()))
        for index in sorted(candidates):
            if rule_matches(self.rules[index], flow):
                return self.rules[index].action, index
        return Action.DENY, None


def describe(flow: Flow) -> str:
    src, dst = (".".join(str(v >> s & 255) for s in (24, 16, 8, 0)) for v in (flow.src, flow.dst))
    if flow.protocol in (6, 17):
        name = "tcp" if flow.protocol == 6 else "udp"
        return f"{name} {src}:{flow.src_port} → {dst}:{flow.dst_port}"
    if flow.protocol == 1:
        return f"icmp {src} → {dst} type {flow.icmp >> 8} code {flow.icmp & 255}"
    return f"proto {flow.protocol} {src} → {dst}"


@dataclass
class Check:
    flows: int = 0
    permitted: int = 0
    disagreements: list[str] = field(default_factory=list)
    exact: str = "not run"


def check_flows(flows: Sequence[Flow], sides: Mapping[str, tuple[Sequence[Rule], Sequence[str]]]) -> Check:
    """Decide every flow with every side (name → rules and a line per rule); any difference is reported."""
    deciders = {name: (FirstMatch(rules), lines) for name, (rules, lines) in sides.items()}
    result = Check(len(flows))
    for flow in flows:
        decisions = {name: fm.decide(flow) for name, (fm, _) in deciders.items()}
        actions = {action for action, _ in decisions.values()}
        if actions == {Action.PERMIT}:
            result.permitted += 1
        elif len(actions) > 1:
            parts = [f"{name} {action.value} by "
                     + ("default deny" if index is None else f"#{index + 1}: {deciders[name][1][index]}")
                     for name, (action, index) in decisions.items()]
            result.disagreements.append(f"{describe(flow)}: " + "; ".join(parts))
    return result


def exact_check(a: Sequence[Rule], b: Sequence[Rule]) -> str:
    witness = difference_witness(a, Action.DENY, b, Action.DENY)
    return "equivalent (exact)" if witness is None else f"DIFFERENT, e.g. {describe(witness)}"


# ------------------------------------------------------------------ one size

@dataclass
class Result:
    size: int
    microseg: Timing
    aerleon: Timing
    counts: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)
    check: Check | None = None
    skipped_lines: dict[str, dict[str, int]] = field(default_factory=dict)


def prepare(estate: Estate, work: Path) -> None:
    write_microseg(estate, work / "microseg")
    write_aerleon(estate, work / "aerleon")


def run_size(size: int, args: argparse.Namespace, work: Path, give_up: set[str]) -> Result:
    estate = make_estate(size, args.seed)
    prepare(estate, work)
    result = Result(size, Timing(), Timing())
    tools = {"microseg": (run_microseg, result.microseg), "aerleon": (run_aerleon, result.aerleon)}
    for repeat in range(args.repeat):
        for name in (("microseg", "aerleon") if repeat % 2 == 0 else ("aerleon", "microseg")):
            runner, timing = tools[name]
            if name in give_up or (timing.runs and timing.status != "ok"):
                continue
            run = runner(work, args.timeout)
            timing.runs.append(run)
            print(f"  {size:>6} rules  {name:<8} run {repeat + 1}: {run.status} {run.seconds:.2f} s wall, "
                  f"{run.cpu:.2f} s CPU, {run.rss_mb:.0f} MB", flush=True)
            if run.status == "timeout":
                give_up.add(name)  # larger sizes would time out too
            elif run.status == "failed":
                print((work / f"{name}.log").read_text()[-3000:], file=sys.stderr)
    done = {name for name in tools if tools[name][1].status == "ok"}
    verify(result, estate, work, done, flows=args.flows, seed=args.seed, exact=args.exact)
    return result


def verify(result: Result, estate: Estate, work: Path, done: set[str], *, flows: int, seed: int,
           exact: bool) -> None:
    """Count the entries of the outputs ``done`` left in ``work`` and decide the sampled flows with each."""
    outputs: dict[str, Outputs] = {}
    if "microseg" in done:
        outputs["microseg"] = read_outputs(microseg_texts(work))
    if "aerleon" in done:
        outputs["aerleon"] = read_outputs(aerleon_texts(work))
    m, a = outputs.get("microseg"), outputs.get("aerleon")
    result.counts = {kind: (None if m is None else count(m), None if a is None else count(a))
                     for kind, count in COUNTS.items()}
    result.skipped_lines = {name: o.ios_skipped for name, o in outputs.items()}
    reference = reference_rules(estate)
    sides = {name: (o.ios, o.ios_lines) for name, o in outputs.items()}
    sides["reference"] = (reference, [f"{r.action.value} {r.service_text()} {r.src} → {r.dst}" for r in reference])
    result.check = check_flows(sample_flows(estate, flows, seed), sides)
    if exact and m is not None and a is not None:
        result.check.exact = exact_check(m.ios, a.ios)


def exit_code(results: Sequence[Result]) -> int:
    """1 when a tool failed (not a timeout) or the outputs disagree, else 0."""
    failed = [r.size for r in results for t in (r.microseg, r.aerleon) if t.status == "failed"]
    wrong = [r.size for r in results if r.check and (r.check.disagreements or r.check.exact.startswith("DIFF"))]
    if failed:
        print(f"a tool failed at {failed} rules (its log is above)", file=sys.stderr)
    if wrong:
        print(f"the outputs disagree at {wrong} rules", file=sys.stderr)
    return 1 if failed or wrong else 0


# ------------------------------------------------------------------ report

def _seconds(t: Timing) -> str:
    if t.status == "timeout":
        return f"timeout (> {t.runs[0].seconds:.0f} s)"
    if t.status != "ok":
        return t.status
    return f"{t.best:.2f} s (median {t.median:.2f})"


def _cpu(t: Timing) -> str:
    return f"{t.cpu:.2f}" if t.ok else t.status


def _pair(pair: tuple[int | None, int | None]) -> str:
    m, a = pair
    text = " / ".join("—" if v is None else f"{v:,}" for v in pair)
    return f"{text} ({m / a:.2f}×)" if m is not None and a else text


def report(results: Sequence[Result]) -> None:
    print("\n| policy rules | microseg | Aerleon | ratio | microseg peak RSS | Aerleon peak RSS "
          "| IOS ACEs m/a | Junos terms m/a | nft rules m/a |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        ratio = r.microseg.best / r.aerleon.best if r.microseg.ok and r.aerleon.ok else math.nan
        rss = [f"{t.rss_mb:.0f} MB" if t.ok else "—" for t in (r.microseg, r.aerleon)]
        print(f"| {r.size:,} | {_seconds(r.microseg)} | {_seconds(r.aerleon)} | "
              f"{'—' if math.isnan(ratio) else f'{ratio:.2f}×'} | {rss[0]} | {rss[1]} | "
              f"{_pair(r.counts['ios'])} | {_pair(r.counts['junos'])} | {_pair(r.counts['nft'])} |")
    print("\nCPU seconds (best run, user+sys of the process tree): "
          + ", ".join(f"{r.size:,}: microseg {_cpu(r.microseg)} / Aerleon {_cpu(r.aerleon)}" for r in results))
    for tool in ("microseg", "aerleon"):
        timed = [(r.size, getattr(r, tool)) for r in results if getattr(r, tool).ok and r.size >= 1_000]
        if len(timed) >= 2:
            (n1, t1), (n2, t2) = timed[0], timed[-1]
            k_wall, k_cpu = (math.log(b / a) / math.log(n2 / n1) for a, b in ((t1.best, t2.best), (t1.cpu, t2.cpu)))
            print(f"{tool} time growth {n1:,} → {n2:,} rules: t ∝ n^{k_wall:.2f} (wall), n^{k_cpu:.2f} (CPU)")
    for r in results:
        c = r.check
        if c is None:
            continue
        skipped = "; ".join(f"{name}: " + ", ".join(f"{k!r} ×{v}" for k, v in lines.items())
                            for name, lines in r.skipped_lines.items() if lines)
        print(f"{r.size:,} rules: {c.flows:,} flows, {c.permitted:,} permitted by all, "
              f"{len(c.disagreements)} disagreements; exact: {c.exact}"
              + (f"; IOS lines our parser does not read, left out: {skipped}" if skipped else ""))
        for line in c.disagreements[:20]:
            print(f"  DISAGREE {line}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="Policy rules per estate.")
    parser.add_argument("--repeat", type=int, default=3, help="Runs per tool and size (best and median shown).")
    parser.add_argument("--timeout", type=float, default=600.0, help="Seconds per run before it counts as timeout.")
    parser.add_argument("--flows", type=int, default=2_000, help="Sampled flows for the equivalence check.")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--exact", action="store_true", help="Also check the two IOS ACLs exactly equivalent.")
    parser.add_argument("--workdir", type=Path, help="Keep the generated estates and outputs here.")
    args = parser.parse_args(argv)
    aclgen()
    byte_compile()
    load = os.getloadavg()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="mseg-aerleon-"))
    results: list[Result] = []
    give_up: set[str] = set()
    try:
        for size in sorted(args.sizes):
            work = root / str(size)
            work.mkdir(parents=True, exist_ok=True)
            results.append(run_size(size, args, work, give_up))
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    report(results)
    after = os.getloadavg()
    print(f"load average (1/5/15 min) before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
          f"after: {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}; {os.cpu_count()} CPUs")
    return exit_code(results)


if __name__ == "__main__":
    sys.exit(main())
