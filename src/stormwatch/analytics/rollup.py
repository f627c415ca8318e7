"""The per-(day, port) rollup of the port report on the DuckDB store.

A port's history over months would otherwise count distinct addresses over every event of that
port (5.5 s for port 445 in 100 million events). The store's ``port_day`` table holds, for each
day listed in ``rollup_days``, exactly the rows :data:`stormwatch.analytics.queries.PORT_DAY`
gives for it — filled by that same query, so the figures cannot drift from the live ones. Every
write removes the days it touched from ``rollup_days``; :func:`refresh` recomputes the days not
listed (run it after ingesting, in the writing process; the CLI does); readers
(:data:`~stormwatch.analytics.queries.PORT_HISTORY_ROLLUP`) take listed days from the rollup and
compute all others live, so a reader never sees old figures, refreshed or not. Spark has no
rollup: it computes from the lake, and the engine-equivalence tests compare the two.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import duckdb

from stormwatch.analytics import queries
from stormwatch.analytics.engine import render
from stormwatch.errors import StoreError
from stormwatch.store import Store
from stormwatch.store.db import rollback


def stale_days(store: Store) -> list[date]:
    """Days with events whose rollup rows are missing or out of date."""
    rows = store.query("""SELECT DISTINCT CAST(ts AS DATE) AS day FROM events
                          WHERE day NOT IN (SELECT day FROM rollup_days) ORDER BY day""").to_pylist()
    return [r["day"] for r in rows]


def refresh(store: Store) -> int:
    """Recompute the rollup of every stale day; returns the number of days refreshed. Each day is
    one transaction."""
    days = stale_days(store)
    cur = store.con.cursor()
    try:
        for day in days:
            start = datetime.combine(day, time())
            select = render(queries.PORT_DAY, {"start": start, "end": start + timedelta(days=1)})
            cur.execute("BEGIN TRANSACTION")
            cur.execute("DELETE FROM port_day WHERE day = $day", {"day": day})
            cur.execute(f"INSERT INTO port_day SELECT * FROM ({select})")
            cur.execute("INSERT OR REPLACE INTO rollup_days VALUES ($day, now()::TIMESTAMP)", {"day": day})
            cur.execute("COMMIT")
    except duckdb.Error as exc:
        rollback(cur)
        raise StoreError(f"refreshing the port rollup of {store.path} failed: {exc}") from exc
    finally:
        cur.close()
    return len(days)
