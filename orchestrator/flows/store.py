"""The flow store: observed flows in an embedded analytic database (DuckDB, ``.microseg/flows.duckdb``).

Every source's records land in one table, aggregated per time window (default one hour) and flow key — the
5-tuple, who opened it where the source knows, the action, the observation point, the rule the source says
decided it (Azure and GCP name it) and the source — with packet,
byte and record counts and first/last seen.  The SQL is plain (``GROUP BY``, ``count(DISTINCT …)``): a team that
outgrows one machine runs the same aggregation where its flow logs live.

Records come in two ways: a Python iterable of :class:`FlowRecord` (written to a temporary TSV file and loaded
by the database), or a delimited file the database reads itself through the source's :class:`TableFormat`
(rows it cannot read are reported with file and line, never loaded).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import operator
import os
import re
import tempfile
import time
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.model import Diagnostic, FlowRecord, Location, MicrosegError, TableFormat

WINDOW_SECONDS = 3600
MEMORY_LIMIT = "1GB"  # DuckDB spills to disk beyond it (benchmarks/flows.py: 10 M records stay near 1.1 GB peak)
COLUMNS = ("start", "end", "src", "dst", "protocol", "src_port", "dst_port", "packets", "bytes", "action",
           "initiator", "observer", "rule")
SQL_TYPES = {"start": "BIGINT", "end": "BIGINT", "src": "VARCHAR", "dst": "VARCHAR", "protocol": "INTEGER",
             "src_port": "INTEGER", "dst_port": "INTEGER", "packets": "BIGINT", "bytes": "BIGINT",
             "action": "VARCHAR", "initiator": "VARCHAR", "observer": "VARCHAR", "rule": "VARCHAR"}
NUMERIC = {"BIGINT", "INTEGER"}
_ROW = operator.attrgetter(*COLUMNS)
SCHEMA = """
CREATE TABLE IF NOT EXISTS flows (
    window_start BIGINT NOT NULL, src VARCHAR NOT NULL, dst VARCHAR NOT NULL, protocol INTEGER NOT NULL,
    src_port INTEGER NOT NULL, dst_port INTEGER NOT NULL, initiator VARCHAR, action VARCHAR,
    observer VARCHAR NOT NULL, source VARCHAR NOT NULL, packets BIGINT NOT NULL, bytes BIGINT NOT NULL,
    records BIGINT NOT NULL, first_seen BIGINT NOT NULL, last_seen BIGINT NOT NULL,
    import_digest VARCHAR NOT NULL, rule VARCHAR NOT NULL DEFAULT '');
ALTER TABLE flows ADD COLUMN IF NOT EXISTS rule VARCHAR DEFAULT '';
CREATE TABLE IF NOT EXISTS imports (
    digest VARCHAR PRIMARY KEY, source VARCHAR NOT NULL, location VARCHAR NOT NULL, records BIGINT NOT NULL,
    problems BIGINT NOT NULL, imported_at BIGINT NOT NULL);
"""
# a row whose address is not an address is not loaded (the bulk path checks text, Python checks with ipaddress)
OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
ADDRESS_CHECK = (rf"(regexp_full_match({{0}}, '({OCTET}\.){{{{3}}}}{OCTET}') "
                 r"OR regexp_full_match({0}, '[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*'))")
MAX_REPORTED = 50


class FlowStoreError(MicrosegError):
    """The flow store cannot be opened or written (the message names the file)."""


@dataclass
class ImportReport:
    """What one import did: records loaded, rows refused (with where), and whether it was new."""

    source: str
    location: str
    records: int = 0
    skipped: int = 0
    already_imported: bool = False
    problems: list[Diagnostic] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "location": self.location, "records": self.records, "skipped": self.skipped,
                "already_imported": self.already_imported, "seconds": round(self.seconds, 3),
                "problems": [p.to_dict() for p in self.problems[:MAX_REPORTED]],
                "problems_total": len(self.problems)}


def _duckdb() -> Any:
    try:
        import duckdb  # noqa: PLC0415  (loaded with the flow commands only)
    except ImportError as exc:  # pragma: no cover - a dependency
        raise FlowStoreError("the flow store needs duckdb (pip install duckdb)") from exc
    return duckdb


def default_path() -> Path:
    return Path.cwd() / ".microseg" / "flows.duckdb"


def _digest(location: str, source: str) -> str:
    """An import's identity: the source, the location and, for a local file, its size and modification time."""
    try:
        stat = os.stat(location)
        marker = f"{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        marker = ""
    return hashlib.sha256(f"{source}\0{os.path.abspath(location) if marker else location}\0{marker}".encode()
                          ).hexdigest()[:32]


class FlowStore:
    """One DuckDB database file (``:memory:`` for a throw-away store); use as a context manager."""

    def __init__(self, path: Path | str | None = None, *, window_seconds: int = WINDOW_SECONDS,
                 threads: int | None = None, memory_limit: str | None = MEMORY_LIMIT, read_only: bool = False) -> None:
        self.path = str(path or default_path())
        if self.path != ":memory:" and not read_only:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.window_seconds = window_seconds
        self._rule_column: bool | None = None
        duckdb = _duckdb()
        try:
            self.db = duckdb.connect(self.path, read_only=read_only)
        except duckdb.Error as exc:
            raise FlowStoreError(f"cannot open the flow store {self.path}: {exc}") from exc
        if threads:
            self.db.execute(f"SET threads = {int(threads)}")
        if memory_limit:
            self.db.execute("SET memory_limit = ?", [memory_limit])
        if not read_only:  # a reader takes the store as it is (an older one has no rule column yet)
            self.db.execute(SCHEMA)

    def __enter__(self) -> FlowStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ writing

    def import_records(self, source: str, location: str, records: Iterable[FlowRecord],
                       problems: list[Diagnostic] | None = None, *, force: bool = False) -> ImportReport:
        """Load ``records`` (read from ``location`` by ``source``) unless that exact file was imported before."""
        started = time.monotonic()
        report = ImportReport(source, location, problems=problems if problems is not None else [])
        digest = _digest(location, source)
        if not force and self._imported(digest):
            report.already_imported = True
            return report
        self._forget(digest)
        before = len(report.problems)
        with tempfile.TemporaryDirectory(prefix="microseg-flows-") as scratch:
            path = Path(scratch) / "records.tsv"
            with path.open("w", newline="") as handle:
                writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
                texts = (COLUMNS.index("observer"), COLUMNS.index("rule"))
                for record in records:  # None is an empty cell; only the free texts (observer, rule) need cleaning
                    row = list(_ROW(record))
                    for column in texts:
                        row[column] = _cell(row[column])
                    writer.writerow(row)
                    report.records += 1
            if report.records:
                self._load(f"SELECT * FROM read_csv(?, delim='\t', header=false, quote='', escape='', "
                           f"nullstr='', columns={_columns_sql(COLUMNS, SQL_TYPES)})", [str(path)], source, digest)
            report.skipped = len(report.problems) - before
        self._record_import(digest, report, force)
        report.seconds = time.monotonic() - started
        return report

    def import_table(self, source: str, location: str, table: TableFormat, *, force: bool = False) -> ImportReport:
        """Load a delimited file the database reads itself; unreadable rows are reported with their line."""
        started = time.monotonic()
        report = ImportReport(source, location)
        digest = _digest(location, source)
        if not force and self._imported(digest):
            report.already_imported = True
            return report
        self._forget(digest)
        types = {c: table.types.get(c, "VARCHAR") for c in table.columns}
        for column in ("start", "end", "srcport", "dstport", "protocol", "packets", "bytes", "tcp-flags"):
            if column in types and column in table.columns and types[column] == "VARCHAR":
                types[column] = "BIGINT"  # read as numbers: a row where one is not is refused with its line
        # a column the format lacks is a typed NULL (DuckDB 1.x types a bare NULL as INTEGER)
        select = ", ".join(f"{table.fields.get(c, f'CAST(NULL AS {SQL_TYPES[c]})')} AS {c}" for c in COLUMNS)
        reader = (f"read_csv(?, delim=?, header={'true' if table.header else 'false'}, quote='', escape='', "
                  f"nullstr=?, columns={_columns_sql(table.columns, types)}, auto_detect=false, "
                  "ignore_errors=true, store_rejects=true, rejects_scan='mseg_scan', rejects_table='mseg_errors', "
                  "compression='auto')")
        query = f"SELECT {select} FROM {reader} WHERE {table.keep}"
        self.db.execute("DROP TABLE IF EXISTS mseg_errors; DROP TABLE IF EXISTS mseg_scan")
        try:
            loaded, refused = self._load(query, [location, table.delimiter, table.missing], source, digest)
        except _duckdb().Error as exc:
            raise FlowStoreError(f"cannot read {location}: {exc}") from exc
        rejects = self.db.execute("SELECT line, first(error_message ORDER BY column_idx NULLS FIRST) FROM mseg_errors "
                                  "GROUP BY line ORDER BY line").fetchall()  # one per line (a short row: one per field)
        report.problems += [Diagnostic(f"unreadable record: {_first_line(message)}", Location(location, int(line)),
                                       code="flow-log") for line, message in rejects]
        if refused:
            noun = "record" if refused == 1 else "records"
            report.problems.append(Diagnostic(f"{refused} {noun} with an invalid address or protocol not loaded",
                                              Location(location), code="flow-log"))
        report.records, report.skipped = loaded, len(rejects) + refused
        self._record_import(digest, report, force)
        report.seconds = time.monotonic() - started
        return report

    def _load(self, query: str, params: list[Any], source: str, digest: str) -> tuple[int, int]:
        """Aggregate the rows of ``query`` (FlowRecord columns) into ``flows``: (rows loaded, rows refused)."""
        window = int(self.window_seconds)
        valid = f"({ADDRESS_CHECK.format('src')}) AND ({ADDRESS_CHECK.format('dst')}) AND protocol BETWEEN 0 AND 255"
        self.db.execute(f"CREATE OR REPLACE TEMP TABLE mseg_incoming AS {query}", params)
        total, good = self.db.execute(f"SELECT count(*), count(*) FILTER (WHERE {valid}) FROM mseg_incoming"
                                      ).fetchone()
        self.db.execute(f"""
            INSERT INTO flows (window_start, src, dst, protocol, src_port, dst_port, initiator, action, observer,
                               source, packets, bytes, records, first_seen, last_seen, import_digest, rule)
            SELECT ("start" // {window}) * {window}, src, dst, protocol, coalesce(src_port, 0), coalesce(dst_port, 0),
                   initiator, action, coalesce(observer, ''), ?, sum(coalesce(packets, 0)), sum(coalesce(bytes, 0)),
                   count(*), min("start"), max("end"), ?, coalesce(rule, '')
            FROM mseg_incoming WHERE {valid}
            GROUP BY ALL""", [source, digest])
        self.db.execute("DROP TABLE mseg_incoming")
        return int(good), int(total) - int(good)

    def _forget(self, digest: str) -> None:
        """Drop what an earlier import of the same file loaded (``--force`` replaces it, never doubles it)."""
        self.db.execute("DELETE FROM flows WHERE import_digest = ?", [digest])

    def _imported(self, digest: str) -> bool:
        return self.db.execute("SELECT 1 FROM imports WHERE digest = ?", [digest]).fetchone() is not None

    def _record_import(self, digest: str, report: ImportReport, force: bool) -> None:
        if force:
            self.db.execute("DELETE FROM imports WHERE digest = ?", [digest])
        self.db.execute("INSERT OR REPLACE INTO imports VALUES (?, ?, ?, ?, ?, ?)",
                        [digest, report.source, report.location, report.records, len(report.problems),
                         int(time.time())])

    # ------------------------------------------------------------------ reading

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Rows of a read-only query over ``flows`` (plain SQL)."""
        return list(self.db.execute(sql, params or []).fetchall())

    def logged_rules(self, since: int | None = None) -> list[tuple[str, int, int, int, int]]:
        """(rule, records, packets, first seen, last seen) per rule name the flow logs give and time window
        (``WINDOW_SECONDS``), for the windows that end no earlier than ``since`` (epoch seconds; all without)."""
        if not self._has_rule_column():
            return []
        rows = self.db.execute(
            "SELECT rule, sum(records), sum(packets), min(first_seen), max(last_seen) FROM flows "
            "WHERE rule <> '' AND last_seen >= ? GROUP BY rule, window_start ORDER BY rule, window_start",
            [since if since is not None else -(1 << 62)]).fetchall()
        return [(str(r), int(n), int(p), int(first), int(last)) for r, n, p, first, last in rows]

    def unnamed_extent(self, sources: Collection[str], since: int | None = None) -> tuple[int | None, set[str]]:
        """(first seen, observers) of the flows ``sources`` logged under no rule name in the windows that end no
        earlier than ``since``: where and from when :meth:`unnamed_flows` may have something (None, empty:
        nothing)."""
        if not sources:
            return None, set()
        rule = "rule = '' AND " if self._has_rule_column() else ""
        first, observers = self.db.execute(
            "SELECT min(first_seen), list(DISTINCT observer) FROM flows "
            f"WHERE {rule}last_seen >= ? AND list_contains(?, source)",
            [since if since is not None else -(1 << 62), sorted(sources)]).fetchone()
        return (int(first) if first is not None else None), {str(o) for o in observers or ()}

    def _has_rule_column(self) -> bool:
        """Whether a release with rule names has written to the store (one opened read-only may predate them);
        asked once per open store."""
        if self._rule_column is None:
            self._rule_column = "rule" in {str(row[0]) for row in self.db.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'flows'").fetchall()}
        return self._rule_column

    def sources(self) -> set[str]:
        """The names of the flow sources the store holds records of."""
        return {str(row[0]) for row in self.db.execute("SELECT DISTINCT source FROM flows").fetchall()}

    def unnamed_flows(self, sources: Collection[str], observers: Iterable[str], since: int | None = None, *,
                      source_ports: Collection[str] = (), not_before: int | None = None) -> list[tuple[Any, ...]]:
        """(observer, src, dst, protocol, src port, dst port, initiator, action, records, packets, first seen, last
        seen) per flow key and time window that ``sources`` logged at ``observers`` under no rule name (AWS VPC
        Flow Logs name the ENI only), for the windows that end no earlier than ``since``.  The source port is
        kept only at ``source_ports`` (observers whose rules match on it; elsewhere it is 0): each connection's
        ephemeral port would otherwise be a row of its own.  ``not_before``: only rows first seen then or later
        (what :meth:`unnamed_extent` saw: a log imported since then may be older than the plans read for it)."""
        wanted = sorted(set(observers))
        if not wanted or not sources:
            return []
        rule = "rule = '' AND " if self._has_rule_column() else ""
        rows = self.db.execute(
            "SELECT observer, src, dst, protocol, port, dst_port, initiator, action, sum(records), sum(packets), "
            "min(first_seen), max(last_seen) FROM (SELECT *, CASE WHEN list_contains(?, observer) THEN src_port "
            f"ELSE 0 END AS port FROM flows WHERE {rule}last_seen >= ? AND first_seen >= ? "
            "AND list_contains(?, observer) AND list_contains(?, source)) "
            "GROUP BY observer, src, dst, protocol, port, dst_port, initiator, action, window_start "
            "ORDER BY min(first_seen), observer, src, dst, protocol, port, dst_port",
            [sorted(source_ports) or ["\x00"], since if since is not None else -(1 << 62),
             not_before if not_before is not None else -(1 << 62), wanted, sorted(sources)]
        ).fetchall()
        return [(str(o), str(s), str(d), int(p), int(sp), int(dp), i, a, int(n), int(k), int(f), int(la))
                for o, s, d, p, sp, dp, i, a, n, k, f, la in rows]

    def summary(self) -> dict[str, Any]:
        records, rows, first, last = self.db.execute(
            "SELECT coalesce(sum(records), 0), count(*), min(first_seen), max(last_seen) FROM flows").fetchone()
        sources = dict(self.db.execute("SELECT source, sum(records) FROM flows GROUP BY source ORDER BY source"
                                       ).fetchall())
        return {"records": int(records), "rows": int(rows), "first_seen": first, "last_seen": last,
                "sources": {k: int(v) for k, v in sources.items()}, "path": self.path}


def _cell(value: object) -> object:
    """A TSV cell: None is empty; text loses tabs and line breaks (an observer name could hold them)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.replace("\t", " ").replace("\r", " ").replace("\n", " ")
    return value


def _columns_sql(columns: Iterable[str], types: dict[str, str]) -> str:
    """A DuckDB struct literal ``{'name': 'TYPE', …}`` for read_csv's ``columns``."""
    return "{" + ", ".join(f"'{_quote(c)}': '{types.get(c, 'VARCHAR')}'" for c in columns) + "}"


def _quote(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", text):
        raise FlowStoreError(f"invalid column name {text!r}")
    return text


def _first_line(message: str) -> str:
    return str(message).strip().splitlines()[0][:200] if message else "unreadable"


@contextlib.contextmanager
def open_flow_store(path: Path | str | None = None, **options: Any) -> Iterator[FlowStore]:
    store = FlowStore(path, **options)
    try:
        yield store
    finally:
        store.close()
