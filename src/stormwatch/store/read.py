"""Reading stored events, rejects and ingest runs back, with filters and a bounded page size."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from stormwatch.store.db import Store

MAX_LIMIT = 100_000

_EVENT_FIELDS = ("ts", "event", "sensor", "session", "src_ip", "src_port", "dst_ip", "dst_port", "proto",
                 "tcp_flags", "action", "outcome", "count", "data")


def list_events(store: Store, *, event: str | None = None, since: datetime | None = None,
                until: datetime | None = None, src: str | None = None, dst_port: int | None = None,
                sensor: str | None = None, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    """Stored events, newest first, filtered; ``data`` is decoded from JSON."""
    where: list[str] = []
    params: dict[str, Any] = {}
    for col, op, value in (("event", "=", event), ("ts", ">=", since), ("ts", "<", until),
                           ("src_ip", "=", src), ("dst_port", "=", dst_port), ("sensor", "=", sensor)):
        if value is not None:
            name = f"p{len(params)}"
            where.append(f"{col} {op} ${name}")
            params[name] = value
    sql = (f"SELECT {', '.join(_EVENT_FIELDS)} FROM events "
           f"{'WHERE ' + ' AND '.join(where) if where else ''} "
           f"ORDER BY ts DESC, event_id LIMIT {min(max(limit, 0), MAX_LIMIT)} OFFSET {max(offset, 0)}")
    rows: list[dict[str, Any]] = store.query(sql, params).to_pylist()
    for r in rows:
        r["data"] = json.loads(r["data"]) if r["data"] else {}
    return rows


def list_rejects(store: Store, *, source: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Kept rejected records, by source and line."""
    where = "WHERE source = $source" if source else ""
    params = {"source": source} if source else {}
    sql = (f"SELECT source, line, format, reason, raw, recorded_at FROM rejects {where} "
           f"ORDER BY source, line LIMIT {min(max(limit, 0), MAX_LIMIT)}")
    rows: list[dict[str, Any]] = store.query(sql, params).to_pylist()
    return rows


def count_rejects(store: Store, *, source: str | None = None) -> int:
    where = "WHERE source = $source" if source else ""
    params = {"source": source} if source else {}
    return int(store.query(f"SELECT count(*) AS n FROM rejects {where}", params).column("n")[0].as_py())


def db_summary(store: Store) -> dict[str, Any]:
    """Counts per event type, time range, rejects and ingest runs."""
    types = store.query(
        "SELECT event, count(*) AS n, min(ts) AS first, max(ts) AS last FROM events GROUP BY event ORDER BY event"
    ).to_pylist()
    runs = store.query("SELECT count(*) AS n FROM ingest_runs").column("n")[0].as_py()
    return {"path": store.path, "events": types, "rejects": count_rejects(store), "ingest_runs": runs,
            "migrations": [f"{n} {name}" for n, name, _ in store.migrations()]}
