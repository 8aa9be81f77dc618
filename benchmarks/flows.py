"""Flow benchmark: ingest N AWS VPC flow-log records (~100 bytes each) into the flow store and build the
application map, timed beside the raw read speed of the same file.

The file is generated (by DuckDB, so generating 10 million lines takes seconds) for a synthetic estate of
``--workloads`` workloads in ``--apps`` applications of three tiers: web → app → db conversations on fixed
service ports from ephemeral ports, both directions of each with TCP flags, one record per direction per
minute.  Prints: the file size, ``wc -l`` time (the raw read speed), the ingest time and records/s, the ratio
ingest / wc -l, the discover time (orientation in SQL, then the map over the inventory's workloads), the number
of conversations and edges, and the peak memory (RSS) of this process, which holds the database.

    .venv/bin/python benchmarks/flows.py                      # the issue's target: 10 million records
    .venv/bin/python benchmarks/flows.py --records 1000000    # a quick run
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drivers.aws_sg.flowlogs import VpcFlowLogSource
from orchestrator.flows.discover import build_map, conversations
from orchestrator.flows.sources import import_location
from orchestrator.flows.store import MEMORY_LIMIT, FlowStore
from orchestrator.inventory import Workload

TIERS = (("web", 443), ("app", 8443), ("db", 5432))


def workloads(count: int, apps: int) -> list[Workload]:
    out = []
    for n in range(count):
        app, tier = n % apps, (n // apps) % 3
        out.append(Workload(name=f"w{n}", addresses=(f"10.{n // 65536}.{(n // 256) % 256}.{n % 256}",),
                            labels={"app": f"app{app}", "tier": TIERS[tier][0], "env": "prod"}))
    return out


def generate(path: Path, records: int, count: int, apps: int) -> None:
    """``records`` lines (half requests, half replies) of web→app and app→db conversations inside each app."""
    import duckdb

    bases = max(1, count // (3 * apps))  # workloads per tier and app
    address = "'10.' || ({n} // 65536) || '.' || (({n} // 256) % 256) || '.' || ({n} % 256)"
    # workload n has app n % apps and tier (n // apps) % 3: a client of tier t talks to a server of tier t + 1
    sql = f"""
    COPY (
      WITH c AS (
        SELECT i, i % {apps} AS app, (i // {apps}) % 2 AS tier, (i * 7919) % {bases} AS cb,
               (i * 104729 + i // 13) % {bases} AS sb, 32768 + (i * 31) % 28000 AS eph,
               1765000000 + i // 5000 * 60 AS t FROM range({records // 2}) r(i)),
      e AS (
        SELECT i, {address.format(n=f"(cb * 3 * {apps} + app + {apps} * tier)")} AS client,
               {address.format(n=f"(sb * 3 * {apps} + app + {apps} * (tier + 1))")} AS server,
               CASE tier WHEN 0 THEN 8443 ELSE 5432 END AS port, eph, t FROM c)
      SELECT line FROM (
        SELECT 2 * i AS k, '5 eni-' || (i % 997) || ' ' || client || ' ' || server || ' ' || eph || ' ' || port ||
               ' 6 10 900 ' || t || ' ' || (t + 59) || ' ACCEPT 2 OK' AS line FROM e
        UNION ALL
        SELECT 2 * i + 1, '5 eni-' || (i % 997) || ' ' || server || ' ' || client || ' ' || port || ' ' || eph ||
               ' 6 8 700 ' || t || ' ' || (t + 59) || ' ACCEPT 18 OK' FROM e)
      ORDER BY k
    ) TO '{path}' (FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\t')
    """
    header = ("version interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action "
              "tcp-flags log-status\n")
    with duckdb.connect() as db:
        db.execute(sql)
    body = path.read_bytes()
    path.write_bytes(header.encode() + body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--workloads", type=int, default=3000)
    parser.add_argument("--apps", type=int, default=50)
    parser.add_argument("--keep", type=Path, help="Keep the generated file and the database in this directory.")
    parser.add_argument("--memory-limit", default=MEMORY_LIMIT,
                        help=f"DuckDB's memory_limit for the flow store (default: the store's, {MEMORY_LIMIT}).")
    parser.add_argument("--generate-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate_only:
        generate(args.generate_only, args.records, args.workloads, args.apps)
        return
    directory = args.keep or Path(tempfile.mkdtemp(prefix="microseg-flows-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / "flows.log"
    started = time.monotonic()
    # generated in a child process, so this process's peak memory is the flow store's alone
    subprocess.run([sys.executable, __file__, "--generate-only", str(log), "--records", str(args.records),
                    "--workloads", str(args.workloads), "--apps", str(args.apps)], check=True)
    print(f"generated {args.records:,} records ({log.stat().st_size / 1e9:.2f} GB) in "
          f"{time.monotonic() - started:.1f} s", flush=True)

    started = time.monotonic()
    lines = int(subprocess.run(["wc", "-l", str(log)], capture_output=True, text=True, check=True).stdout.split()[0])
    raw = time.monotonic() - started
    print(f"wc -l: {lines:,} lines in {raw:.2f} s ({lines / raw / 1e6:.1f} M lines/s)", flush=True)

    database = directory / "flows.duckdb"
    database.unlink(missing_ok=True)
    with FlowStore(database, memory_limit=args.memory_limit) as store:
        started = time.monotonic()
        report = import_location(store, "vpc", VpcFlowLogSource(), str(log))
        ingest = time.monotonic() - started
        print(f"ingest: {report.records:,} records in {ingest:.1f} s ({report.records / ingest / 1e6:.2f} M "
              f"records/s), {len(report.problems)} problems; ingest / wc -l = {ingest / raw:.1f}×", flush=True)
        started = time.monotonic()
        found = conversations(store)
        oriented = time.monotonic() - started
        app = build_map(found, workloads(args.workloads, args.apps), None, ("app", "tier"))
        mapped = time.monotonic() - started
    print(f"discover: {len(found):,} conversations in {oriented:.1f} s, map of {len(app.edges):,} edges and "
          f"{len(app.nodes):,} nodes in {mapped:.1f} s ({app.explained / max(app.records, 1):.0%} explained)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"ingest + discover: {ingest + mapped:.1f} s; peak RSS {peak:.0f} MB (this process: the store)")
    if not args.keep:
        log.unlink()
        database.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
