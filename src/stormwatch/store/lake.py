"""Export of the events as a Parquet lake partitioned by day (``day=YYYY-MM-DD/``).

The lake is what Spark (or any Parquet reader) runs the analytics on when one machine is not
enough. Exporting again overwrites the partitions it writes, so it is repeatable. ``event_id``
is written as 32 hex digits (Parquet and Spark have no unsigned 128-bit integer).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb

from stormwatch.errors import StoreError
from stormwatch.store.db import Store


def export_lake(store: Store, out_dir: str | Path, *, since: date | None = None) -> int:
    """Write events (from ``since`` on, if given) under ``out_dir``; returns rows written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    where = "WHERE ts >= $since" if since else ""
    params = {"since": since} if since else {}
    n = store.query(f"SELECT count(*) AS n FROM events {where}", params).column("n")[0].as_py()
    sql = (
        f"COPY (SELECT * REPLACE (lower(hex(event_id)) AS event_id), CAST(ts AS DATE) AS day FROM events {where}) "
        f"TO '{_quote(str(out))}' (FORMAT parquet, PARTITION_BY (day), OVERWRITE_OR_IGNORE true, "
        "FILENAME_PATTERN 'events_{i}')"
    )
    cur = store.con.cursor()
    try:
        cur.execute(sql, params)
    except duckdb.Error as exc:
        raise StoreError(f"exporting the lake to {out} failed: {exc}") from exc
    finally:
        cur.close()
    return int(n)


def _quote(s: str) -> str:
    return s.replace("'", "''")
