"""The DuckDB store: opening, migrating, writing events and rejects, reading them back.

One :class:`Store` per database file. Writes go through :meth:`Store.write_events` (or the
:class:`~stormwatch.store.writer.BatchWriter` thread that calls it), each batch in one transaction,
so a failure (a full disk, say) leaves the database as it was before that batch.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stormwatch.errors import StoreError
from stormwatch.events import Reject
from stormwatch.store.migrations import MIGRATIONS

DEFAULT_DB_ENV = "STORMWATCH_DB"


def default_db_path() -> Path:
    """``$STORMWATCH_DB`` if set, else ``$XDG_DATA_HOME/stormwatch/stormwatch.duckdb``
    (``~/.local/share/stormwatch/stormwatch.duckdb``)."""
    env = os.environ.get(DEFAULT_DB_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "stormwatch" / "stormwatch.duckdb"


@dataclass
class WriteResult:
    """What one write did: rows offered, rows inserted, and the time range of the rows offered."""

    offered: int = 0
    inserted: int = 0
    first_ts: datetime | None = None
    last_ts: datetime | None = None

    @property
    def duplicates(self) -> int:
        return self.offered - self.inserted

    def add(self, other: WriteResult) -> None:
        self.offered += other.offered
        self.inserted += other.inserted
        for ts in (other.first_ts, other.last_ts):
            if ts is None:
                continue
            self.first_ts = ts if self.first_ts is None else min(self.first_ts, ts)
            self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)


_EVENT_COLUMNS = (
    "event, schema_version, ts, sensor, session, src_ip, src_port, dst_ip, dst_port, proto, "
    "tcp_flags, action, outcome, coalesce(count, 1), data"
)

# The batch's event ids (stormwatch.events.ids): hashed here, or handed over by the reader.
_MD5_ID = "md5_number(event || chr(0) || sensor || chr(0) || key)"
_GIVEN_ID = f"CASE WHEN id_lo IS NULL THEN {_MD5_ID} ELSE (id_hi::UHUGEINT << 64) | id_lo::UHUGEINT END"


def _insert_sql(event_id: str, distinct: bool) -> str:
    """The batch with its event ids, de-duplicated within itself (unless its ids are known to be
    ``distinct``), then anti-joined against the stored events of the same time range (DuckDB's
    zone maps on ts skip the rest of the table)."""
    qualify = "" if distinct else "QUALIFY row_number() OVER (PARTITION BY event_id) = 1"
    return f"""
INSERT INTO events
SELECT event_id, {_EVENT_COLUMNS}
FROM (SELECT {event_id} AS event_id, * FROM _batch) b
WHERE NOT EXISTS (
    SELECT 1 FROM events e
    WHERE e.event_id = b.event_id AND e.ts >= $lo AND e.ts <= $hi
)
{qualify}
"""


_INSERT_EVENTS = _insert_sql(_MD5_ID, distinct=False)
_INSERT_GIVEN = _insert_sql(_GIVEN_ID, distinct=False)
_INSERT_DISTINCT = _insert_sql(_GIVEN_ID, distinct=True)


def _insert_for(batch: pa.Table) -> str:
    """The insert for ``batch``: ids given for every row and all different (the common case of
    the compiled iptables path; a sort of the low halves shows it) spare the window that
    de-duplicates within the batch."""
    if "id_lo" not in batch.schema.names:
        return _INSERT_EVENTS
    lo = batch.column("id_lo")
    if lo.null_count:
        return _INSERT_GIVEN
    ordered = np.sort(lo.to_numpy())
    return _INSERT_GIVEN if bool((ordered[1:] == ordered[:-1]).any()) else _INSERT_DISTINCT


# Days written to are no longer current in the port report's rollup.
_MARK_STALE = """
DELETE FROM rollup_days WHERE day IN (SELECT DISTINCT CAST(ts AS DATE) FROM _batch)
"""


class Store:
    """A stormwatch database: one DuckDB file (or ``:memory:``)."""

    def __init__(self, path: str | Path, *, read_only: bool = False, threads: int | None = None) -> None:
        self.path = str(path)
        if self.path != ":memory:" and not read_only:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
        if threads:
            config["threads"] = threads
        try:
            self.con = duckdb.connect(self.path, read_only=read_only, config=config)
        except (duckdb.Error, OSError) as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        if not read_only:
            self.migrate()

    # -- schema -----------------------------------------------------------------------------
    def migrate(self) -> list[str]:
        """Apply the migrations not yet recorded; returns the names applied."""
        con = self.con
        con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(number INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)"
        )
        done = {r[0] for r in con.execute("SELECT number FROM schema_migrations").fetchall()}
        applied = []
        for m in MIGRATIONS:
            if m.number in done:
                continue
            try:
                con.execute("BEGIN TRANSACTION")
                con.execute(m.sql)
                con.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)", [m.number, m.name, _now()]
                )
                con.execute("COMMIT")
            except duckdb.Error as exc:
                con.execute("ROLLBACK")
                raise StoreError(f"migration {m.number} {m.name} failed: {exc}") from exc
            applied.append(m.name)
        return applied

    def migrations(self) -> list[tuple[int, str, datetime]]:
        rows = self.con.execute("SELECT number, name, applied_at FROM schema_migrations ORDER BY number").fetchall()
        return [(int(n), str(name), at) for n, name, at in rows]

    # -- writing ----------------------------------------------------------------------------
    def write_events(self, batch: pa.Table) -> WriteResult:
        """Insert a batch of :func:`stormwatch.events.arrow_schema` (optionally followed by the
        id columns of :mod:`stormwatch.events.ids`); rows already stored (same event id) are
        skipped. One transaction per call."""
        if batch.num_rows == 0:
            return WriteResult()
        lo, hi = pc.min_max(batch.column("ts")).values()
        with self._lock:
            cur = self.con.cursor()
            try:
                cur.register("_batch", batch)
                cur.execute("BEGIN TRANSACTION")
                inserted = cur.execute(_insert_for(batch), {"lo": lo.as_py(), "hi": hi.as_py()}).fetchall()[0][0]
                if inserted:
                    cur.execute(_MARK_STALE)
                cur.execute("COMMIT")
            except duckdb.Error as exc:
                rollback(cur)
                raise StoreError(f"writing {batch.num_rows} events to {self.path} failed: {exc}") from exc
            finally:
                cur.close()
        return WriteResult(batch.num_rows, int(inserted), lo.as_py(), hi.as_py())

    def write_rejects(self, rejects: Sequence[Reject]) -> int:
        """Keep rejected records; the same (source, line, raw) is kept once. Returns rows added."""
        if not rejects:
            return 0
        tbl = pa.table({
            "source": [r.source for r in rejects],
            "line": pa.array([r.line for r in rejects], pa.int64()),
            "format": [r.format for r in rejects],
            "reason": [r.reason for r in rejects],
            "raw": [r.raw for r in rejects],
        })
        with self._lock:
            cur = self.con.cursor()
            try:
                cur.register("_rej", tbl)
                n = cur.execute(
                    """INSERT INTO rejects
                    SELECT rid, source, line, format, reason, raw, $now FROM
                      (SELECT md5_number(source || chr(0) || line::VARCHAR || chr(0) || coalesce(raw, ''))
                       AS rid, * FROM _rej) r
                    WHERE rid NOT IN (SELECT reject_id FROM rejects)
                    QUALIFY row_number() OVER (PARTITION BY rid) = 1""",
                    {"now": _now()},
                ).fetchall()[0][0]
            except duckdb.Error as exc:
                raise StoreError(f"writing rejects to {self.path} failed: {exc}") from exc
            finally:
                cur.close()
        return int(n)

    def record_run(self, source: str, fmt: str | None, sensor: str | None, started: datetime,
                   read: int, result: WriteResult, rejected: int, error: str | None = None) -> None:
        """Record one ingest of one input in ``ingest_runs``."""
        with self._lock:
            self.con.execute(
                """INSERT INTO ingest_runs (source, format, sensor, started_at, finished_at, read,
                   accepted, rejected, duplicates, first_ts, last_ts, error)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                [source, fmt, sensor, started, _now(), read, result.inserted, rejected,
                 result.duplicates, result.first_ts, result.last_ts, error],
            )

    # -- reading ----------------------------------------------------------------------------
    def query(self, sql: str, params: Iterable[Any] | dict[str, Any] | None = None) -> pa.Table:
        """Run a read query on a private cursor and return all of it as Arrow."""
        cur = self.con.cursor()
        try:
            return cur.sql(sql, params=params).to_arrow_table()
        finally:
            cur.close()

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rollback(cur: duckdb.DuckDBPyConnection) -> None:
    """Roll back the open transaction of ``cur``, if any."""
    try:
        cur.execute("ROLLBACK")
    except duckdb.Error:  # no transaction open any more: nothing to undo
        return


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
