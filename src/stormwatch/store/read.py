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


# -- the honeypot's view: exploit attempts, sessions, payloads -------------------------------------------

def _where(sensor: str | None, since: datetime | None, until: datetime | None,
           params: dict[str, Any]) -> str:
    """``AND ...`` conditions (on the events table) for the optional filters, filling ``params``."""
    parts = []
    for col, op, value in (("sensor", "=", sensor), ("ts", ">=", since), ("ts", "<", until)):
        if value is not None:
            name = f"p{len(params)}"
            parts.append(f" AND {col} {op} ${name}")
            params[name] = value
    return "".join(parts)


def exploit_summary(store: Store, *, sensor: str | None = None, since: datetime | None = None,
                    until: datetime | None = None) -> list[dict[str, Any]]:
    """``exploit.attempt`` events by vulnerability and kind (exploit or probe): attempts, sessions,
    distinct sources, first and last seen; most attempts first."""
    params: dict[str, Any] = {}
    sql = ("SELECT json_extract_string(data, '$.vuln') AS vuln, json_extract_string(data, '$.cve') AS cve, "
           "json_extract_string(data, '$.kind') AS kind, count(*) AS attempts, "
           "count(DISTINCT session) AS sessions, count(DISTINCT src_ip) AS sources, "
           "min(ts) AS first_seen, max(ts) AS last_seen "
           f"FROM events WHERE event = 'exploit.attempt'{_where(sensor, since, until, params)} "
           "GROUP BY ALL ORDER BY attempts DESC, vuln, kind")
    rows: list[dict[str, Any]] = store.query(sql, params).to_pylist()
    return rows


def session_summary(store: Store, *, sensor: str | None = None, since: datetime | None = None,
                    until: datetime | None = None) -> list[dict[str, Any]]:
    """Sensor sessions per UTC day (the day of ``session.connect``): sessions, distinct sources,
    sessions with an ``exploit.attempt`` of kind exploit, with probes only, and the rest (benign)."""
    params: dict[str, Any] = {}
    where = _where(sensor, since, until, params)
    sql = f"""
        WITH s AS (
            SELECT session, min(ts) FILTER (WHERE event = 'session.connect') AS started, any_value(src_ip) AS src_ip,
                   count(*) FILTER (WHERE event = 'exploit.attempt'
                                    AND json_extract_string(data, '$.kind') = 'exploit') AS exploits,
                   count(*) FILTER (WHERE event = 'exploit.attempt') AS attempts
            FROM events WHERE session IS NOT NULL{where}
            GROUP BY session)
        SELECT CAST(started AS DATE) AS day, count(*) AS sessions, count(DISTINCT src_ip) AS sources,
               count(*) FILTER (WHERE exploits > 0) AS exploit_sessions,
               count(*) FILTER (WHERE exploits = 0 AND attempts > 0) AS probe_sessions,
               count(*) FILTER (WHERE attempts = 0) AS benign_sessions
        FROM s WHERE started IS NOT NULL GROUP BY day ORDER BY day"""
    rows: list[dict[str, Any]] = store.query(sql, params).to_pylist()
    return rows


def list_sessions(store: Store, *, sensor: str | None = None, since: datetime | None = None,
                  until: datetime | None = None, exploits: bool | None = None,
                  limit: int = 20) -> list[dict[str, Any]]:
    """Sensor sessions, newest first, one row each: start, source, service, the client's NativeOS,
    pipes opened, DCE/RPC operations called, vulnerabilities seen, events, bytes in and why it
    closed. ``exploits`` True keeps the sessions with an ``exploit.attempt``, False those without."""
    params: dict[str, Any] = {}
    where = _where(sensor, since, until, params)
    having = {None: "", True: "HAVING count(*) FILTER (WHERE event = 'exploit.attempt') > 0",
              False: "HAVING count(*) FILTER (WHERE event = 'exploit.attempt') = 0"}[exploits]
    sql = f"""
        SELECT session, min(ts) AS started, any_value(sensor) AS sensor, any_value(src_ip) AS src_ip,
               any_value(dst_port) AS dst_port,
               any_value(json_extract_string(data, '$.service')) FILTER (WHERE event = 'session.connect') AS service,
               any_value(json_extract_string(data, '$.native_os'))
                   FILTER (WHERE event = 'smb.session_setup') AS native_os,
               list_sort(list_distinct(list(json_extract_string(data, '$.pipe'))
                   FILTER (WHERE event = 'smb.pipe_open'))) AS pipes,
               list_sort(list_distinct(list(json_extract_string(data, '$.operation'))
                   FILTER (WHERE event = 'dcerpc.request'))) AS operations,
               list_sort(list_distinct(list(json_extract_string(data, '$.vuln') || ' '
                   || json_extract_string(data, '$.kind')) FILTER (WHERE event = 'exploit.attempt'))) AS vulns,
               count(*) AS events,
               any_value(CAST(json_extract(data, '$.bytes_in') AS BIGINT))
                   FILTER (WHERE event = 'session.closed') AS bytes_in,
               any_value(json_extract_string(data, '$.reason')) FILTER (WHERE event = 'session.closed') AS reason
        FROM events WHERE session IS NOT NULL{where}
        GROUP BY session {having}
        ORDER BY started DESC, session LIMIT {min(max(limit, 0), MAX_LIMIT)}"""
    rows: list[dict[str, Any]] = store.query(sql, params).to_pylist()
    return rows


def payload_summary(store: Store, *, sensor: str | None = None, since: datetime | None = None,
                    until: datetime | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """Payloads kept from ``exploit.attempt`` events, by SHA-256: size, vulnerability, attempts,
    distinct sources, first and last seen; most sources first."""
    params: dict[str, Any] = {}
    sql = ("SELECT json_extract_string(data, '$.payload_sha256') AS sha256, "
           "max(CAST(json_extract(data, '$.payload_size') AS BIGINT)) AS size, "
           "string_agg(DISTINCT json_extract_string(data, '$.vuln'), ',') AS vuln, count(*) AS attempts, "
           "count(DISTINCT src_ip) AS sources, min(ts) AS first_seen, max(ts) AS last_seen "
           "FROM events WHERE event = 'exploit.attempt' "
           f"AND json_extract_string(data, '$.payload_sha256') IS NOT NULL{_where(sensor, since, until, params)} "
           f"GROUP BY sha256 ORDER BY sources DESC, attempts DESC, first_seen, sha256 "
           f"LIMIT {min(max(limit, 0), MAX_LIMIT)}")
    rows: list[dict[str, Any]] = store.query(sql, params).to_pylist()
    return rows
