"""What the pages show, fetched from the store and the analytics, and kept briefly.

Everything here reads. Queries bound to one subject (an address, a session, a port) filter on
a time window first where they can: the store is appended in time order, so DuckDB's zone maps
on ``ts`` skip the row groups outside the window, which keeps a page fast on a store of 100
million events. The early-warning signals (surges, scanners, outbreaks, campaigns: a second or
more on a big store) are computed once per evaluation time and kept for :data:`CACHE_SECONDS`,
so an analyst clicking around does not recompute them on every page; a page is therefore at
most that old.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from stormwatch.analytics.campaigns import Campaign, CampaignDetail, campaign, campaigns
from stormwatch.store import Store
from stormwatch.threat.level import LevelStatus, default_at, gather_signals, update_level
from stormwatch.threat.rules import RuleSet, Signals, load_rules
from stormwatch.web.app import WebState

log = logging.getLogger(__name__)

CACHE_SECONDS = 60.0
SENSOR_WINDOW = timedelta(hours=24)
T = TypeVar("T")
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def cached(state: WebState, key: str, compute: Callable[[], T]) -> T:
    """``compute()`` kept on ``state``; one computation per key at a time. A value older than
    :data:`CACHE_SECONDS` is still answered at once while a background thread computes the next
    one (stale while revalidating), so only the very first request for a key waits for it."""
    with _locks_guard:
        lock = _locks.setdefault(f"{id(state)}:{key}", threading.Lock())
    hit = state.cache.get(key)
    if hit is not None:
        if time.monotonic() - hit[0] >= CACHE_SECONDS and lock.acquire(blocking=False):
            threading.Thread(target=_recompute, args=(state, key, compute, lock), name=f"cache:{key}",
                             daemon=True).start()
        value: T = hit[1]
        return value
    with lock:
        hit = state.cache.get(key)
        if hit is not None:  # computed by another request while this one waited
            value = hit[1]
            return value
        value = compute()
        state.cache[key] = (time.monotonic(), value)
        return value


def _recompute(state: WebState, key: str, compute: Callable[[], Any], lock: threading.Lock) -> None:
    try:
        state.cache[key] = (time.monotonic(), compute())
    except Exception:  # the stale value stays; the next request tries again
        log.exception("background refresh of %s failed", key)
    finally:
        lock.release()


WARM_EVERY = 20.0  # seconds between the warmer's rounds


def start_warmer(state: WebState) -> threading.Thread:
    """A daemon thread that keeps the overview's data (the evaluation time, the signals and the
    level, the campaigns, the sensors' health) computed, so that no request pays for it, also
    right after start-up or when new data moves the evaluation time to a new hour."""
    def warm() -> None:
        while not state.closed.wait(0 if not state.cache else WARM_EVERY):
            try:
                at = evaluation_time(state)
                if at is not None:
                    now(state)
                    campaign_list(state, at)
                    sensor_health(state, at)
            except Exception:  # a failed round is retried at the next one
                log.exception("dashboard cache warm-up failed")
                state.closed.wait(WARM_EVERY)

    thread = threading.Thread(target=warm, name="dashboard-warmer", daemon=True)
    thread.start()
    return thread


def rules(state: WebState) -> RuleSet:
    return cached(state, "rules", lambda: load_rules(state.settings.rules_path))


def evaluation_time(state: WebState) -> datetime | None:
    """The end of the hour of the newest event: the dashboard's "now" (a store of old data shows
    that time, not the wall clock)."""
    return cached(state, "at", lambda: default_at(state.engine))


@dataclass(frozen=True)
class Now:
    at: datetime
    signals: Signals
    status: LevelStatus


def now(state: WebState) -> Now | None:
    """Signals and the level in force at :func:`evaluation_time` (the level is evaluated, not
    recorded: recording is ``stormwatch level``'s or the notifier's business)."""
    at = evaluation_time(state)
    if at is None:
        return None

    def compute() -> Now:
        rs = rules(state)
        sig = gather_signals(state.engine, at, window=rs.window)
        status = update_level(state.store, state.engine, at, rules=rs, kb=state.kb, signals=sig, record=False)
        return Now(at, sig, status)

    return cached(state, f"now:{at.isoformat()}", compute)


def campaign_window(at: datetime) -> tuple[datetime, datetime]:
    return at - timedelta(days=30), at


def campaign_list(state: WebState, at: datetime) -> list[Campaign]:
    since, until = campaign_window(at)
    payloads = state.settings.payloads
    return cached(state, f"campaigns:{at.isoformat()}",
                  lambda: campaigns(state.engine, since=since, until=until, payloads=payloads))


def campaign_detail(state: WebState, at: datetime, name: str) -> CampaignDetail | None:
    since, until = campaign_window(at)
    payloads = state.settings.payloads
    return cached(state, f"campaign:{at.isoformat()}:{name.lower()}",
                  lambda: campaign(state.engine, name, since=since, until=until, payloads=payloads))


def rows(store: Store, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = store.query(sql, params or {}).to_pylist()
    return out


# -- sensors ------------------------------------------------------------------------------------

def sensor_health(state: WebState, at: datetime) -> list[dict[str, Any]]:
    """Per sensor: last event, events in the last hour and per hour over the last 24 hours
    (before ``at``), with the 24 hourly counts for a sparkline; ``silent_hours`` is how long
    before the newest event in the store its last event was."""
    def compute() -> list[dict[str, Any]]:
        since = at - SENSOR_WINDOW
        recent = rows(state.store, """
            SELECT sensor, max(ts) AS last_event, sum(records)::BIGINT AS records, sum(n)::BIGINT AS events,
                   list(hour ORDER BY hour) AS hours, list(n ORDER BY hour) AS per_hour
            FROM (SELECT sensor, date_trunc('hour', ts) AS hour, count(*) AS n, sum(count) AS records, max(ts) AS ts
                  FROM events WHERE ts >= $since AND ts < $at GROUP BY ALL)
            GROUP BY sensor""", {"since": since, "at": at})
        seen = {r["sensor"] for r in recent}
        # sensors silent for the whole window: their last event is older (one scan, rarely needed)
        older = rows(state.store, "SELECT sensor, max(ts) AS last_event FROM events WHERE ts < $since GROUP BY sensor",
                     {"since": since})
        out = []
        for r in recent:
            counts = dict(zip(r["hours"], r["per_hour"], strict=True))
            hourly = [float(counts.get(since + timedelta(hours=i), 0)) for i in range(24)]
            out.append({"sensor": r["sensor"], "last_event": r["last_event"], "events_24h": int(r["events"]),
                        "per_hour": r["events"] / 24.0, "last_hour": int(hourly[-1]), "hourly": hourly})
        out += [{"sensor": r["sensor"], "last_event": r["last_event"], "events_24h": 0, "per_hour": 0.0,
                 "last_hour": 0, "hourly": [0.0] * 24} for r in older if r["sensor"] not in seen]
        newest = max((r["last_event"] for r in out), default=at)
        for r in out:
            r["silent_hours"] = (newest - r["last_event"]).total_seconds() / 3600
            r["healthy"] = r["silent_hours"] < 2
        return sorted(out, key=lambda r: r["sensor"])

    return cached(state, f"sensors:{at.isoformat()}", compute)


# -- ports --------------------------------------------------------------------------------------

def port_hourly(store: Store, port: int, since: datetime, until: datetime) -> list[dict[str, Any]]:
    return rows(store, """
        SELECT date_trunc('hour', ts) AS hour, sum(count) AS records, count(DISTINCT src_ip) AS sources,
               count(DISTINCT dst_ip) AS targets
        FROM events WHERE event = 'fw.connection' AND dst_port = $port AND ts >= $since AND ts < $until
        GROUP BY hour ORDER BY hour""", {"port": port, "since": since, "until": until})


def port_sources(store: Store, port: int, since: datetime, until: datetime, limit: int) -> list[dict[str, Any]]:
    return rows(store, """
        SELECT src_ip, sum(count) AS records, count(DISTINCT dst_ip) AS targets, count(DISTINCT sensor) AS sensors,
               min(ts) AS first_seen, max(ts) AS last_seen
        FROM events WHERE event = 'fw.connection' AND dst_port = $port AND ts >= $since AND ts < $until
        GROUP BY src_ip ORDER BY records DESC, src_ip LIMIT $limit""",
                {"port": port, "since": since, "until": until, "limit": limit})


# -- sources ------------------------------------------------------------------------------------

def source_summary(store: Store, ip: str, since: datetime, until: datetime) -> dict[str, Any] | None:
    """What ``ip`` did in the window: by event type and sensor, ports, days, sessions."""
    p = {"ip": ip, "since": since, "until": until}
    where = "src_ip = $ip AND ts >= $since AND ts < $until"
    by = rows(store, f"""SELECT event, sensor, count(*) AS events, sum(count) AS records, min(ts) AS first_seen,
                          max(ts) AS last_seen, count(DISTINCT dst_ip) AS targets
                          FROM events WHERE {where} GROUP BY ALL ORDER BY first_seen""", p)
    if not by:
        return None
    ports = rows(store, f"""SELECT dst_port AS port, proto, sum(count) AS records, count(DISTINCT dst_ip) AS targets,
                             list_sort(list_distinct(list(sensor))) AS sensors
                             FROM events WHERE {where} AND dst_port IS NOT NULL
                             GROUP BY ALL ORDER BY records DESC, port LIMIT 50""", p)
    daily = rows(store, f"""SELECT CAST(ts AS DATE) AS day, sum(count) AS records FROM events WHERE {where}
                             GROUP BY day ORDER BY day""", p)
    sessions = rows(store, f"""SELECT session, min(ts) AS started, any_value(sensor) AS sensor,
                                any_value(dst_port) AS dst_port, count(*) AS events,
                                list_sort(list_distinct(list(json_extract_string(data, '$.vuln'))
                                    FILTER (WHERE event = 'exploit.attempt'))) AS vulns
                                FROM events WHERE {where} AND session IS NOT NULL
                                GROUP BY session ORDER BY started DESC LIMIT 200""", p)
    return {"by": by, "ports": ports, "daily": daily, "sessions": sessions,
            "first_seen": min(r["first_seen"] for r in by), "last_seen": max(r["last_seen"] for r in by),
            "sensors": sorted({r["sensor"] for r in by}), "records": sum(int(r["records"]) for r in by)}


def source_events(store: Store, ip: str, since: datetime, until: datetime, limit: int,
                  offset: int) -> list[dict[str, Any]]:
    return decode(rows(store, """
        SELECT ts, event, sensor, session, src_port, dst_ip, dst_port, proto, tcp_flags, action, outcome, count, data
        FROM events WHERE src_ip = $ip AND ts >= $since AND ts < $until
        ORDER BY ts DESC, event_id LIMIT $limit OFFSET $offset""",
        {"ip": ip, "since": since, "until": until, "limit": limit, "offset": offset}))


def source_range(store: Store, ip: str) -> tuple[datetime, datetime] | None:
    r = rows(store, "SELECT min(ts) AS lo, max(ts) AS hi FROM events WHERE src_ip = $ip", {"ip": ip})[0]
    return None if r["lo"] is None else (r["lo"], r["hi"])


# -- sessions -----------------------------------------------------------------------------------

def decode(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for e in events:
        try:
            value = json.loads(e["data"]) if e.get("data") else {}
        except ValueError:  # a data column that is not JSON is shown as it is
            value = e["data"]
        e["data"] = value if isinstance(value, dict) else {"data": value}
    return events


def session_events(store: Store, session: str, limit: int) -> list[dict[str, Any]]:
    return decode(rows(store, """
        SELECT ts, event, sensor, src_ip, src_port, dst_ip, dst_port, proto, data FROM events
        WHERE session = $session ORDER BY ts, event_id LIMIT $limit""", {"session": session, "limit": limit}))


def vuln_sessions(store: Store, ids: set[str], since: datetime, until: datetime, limit: int) -> list[dict[str, Any]]:
    return rows(store, """
        SELECT session, min(ts) AS ts, any_value(src_ip) AS src_ip, any_value(sensor) AS sensor,
               any_value(json_extract_string(data, '$.kind')) AS kind,
               any_value(json_extract_string(data, '$.payload_sha256')) AS payload_sha256
        FROM events WHERE event = 'exploit.attempt' AND ts >= $since AND ts < $until
          AND (upper(json_extract_string(data, '$.vuln')) IN (SELECT unnest($ids))
               OR upper(json_extract_string(data, '$.cve')) IN (SELECT unnest($ids)))
        GROUP BY session ORDER BY ts DESC LIMIT $limit""",
                {"ids": sorted(ids), "since": since, "until": until, "limit": limit})


def day_start(d: date) -> datetime:
    return datetime(d.year, d.month, d.day)
