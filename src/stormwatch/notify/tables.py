"""Reading and writing the notifier's tables (migration 6, ``create_notifications``).

Every write is one transaction on a private cursor, so a failure leaves the tables as they were;
reads answer empty on a store opened read-only before migration 6 ran.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import duckdb

from stormwatch.errors import StoreError
from stormwatch.store import Store

TABLES = ("notify_subscriptions", "notify_facts", "notify_sent", "notify_outbox", "notify_deliveries",
          "notify_runs")
Statement = tuple[str, Sequence[Any]]


def has_tables(store: Store) -> bool:
    rows = store.query("SELECT count(*) AS n FROM duckdb_tables() WHERE table_name IN "
                       f"({', '.join(repr(t) for t in TABLES)})").to_pylist()
    return int(rows[0]["n"]) == len(TABLES)


def rows(store: Store, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    if not has_tables(store):
        return []
    out: list[dict[str, Any]] = store.query(sql, list(params)).to_pylist()
    return out


def write(store: Store, statements: Sequence[Statement]) -> list[list[tuple[Any, ...]]]:
    """Run ``statements`` in one transaction; returns each statement's rows (for RETURNING)."""
    cur = store.con.cursor()
    results: list[list[tuple[Any, ...]]] = []
    try:
        cur.execute("BEGIN TRANSACTION")
        for sql, params in statements:
            cur.execute(sql, list(params))
            results.append(cur.fetchall() if "RETURNING" in sql else [])
        cur.execute("COMMIT")
    except duckdb.Error as exc:
        with contextlib.suppress(duckdb.Error):  # no transaction left open: nothing to undo
            cur.execute("ROLLBACK")
        if not has_tables(store):
            raise StoreError(f"{store.path} has no notification tables (open it read-write once to migrate it)") \
                from exc
        raise StoreError(f"writing notifications to {store.path} failed: {exc}") from exc
    finally:
        cur.close()
    return results
