"""The port report as SQL: written once in DuckDB's dialect over the relation ``events``.

Each constant here runs unchanged in DuckDB (``duckdb stormwatch.duckdb`` and paste it, giving the
``{name}`` parameters as literals) and, transpiled by sqlglot, in Spark over the Parquet lake; see
:mod:`stormwatch.analytics.engine` for why it is SQL and how parameters are substituted.

Definitions follow the SANS Internet Storm Center / DShield port report (research notes
``early-warning-anchors.md`` section 1.2; ``/api/port``, ``/api/topports``, ``/api/porthistory``):

- only ``fw.connection`` events count, each weighted by its ``count`` (DShield collapses repeated
  identical lines into a count and adds them up on import);
- *records*: the sum of ``count``; *targets*: distinct destination addresses; *sources*: distinct
  source addresses; per port, whatever the protocol (ISC reports a port regardless of protocol);
  port-less protocols (ICMP, ICMPv6, ...) have no ``dst_port`` (see the event catalogue) and are left
  out of the per-port figures;
- the queries return exact integers only (``tcp_records``, ``udp_records``, ...): the TCP/UDP
  percentages and the survival time are derived from them in Python, once, in
  :mod:`stormwatch.analytics.ports`, so both engines agree to the last digit (DuckDB and Spark round
  doubles differently);
- a day is a UTC calendar day, selected with a half-open ``ts`` range (``{start}`` <= ts < ``{end}``)
  rather than ``CAST(ts AS DATE) = ...`` so that DuckDB's zone maps on ``ts`` skip the rest of the
  table (events arrive roughly in time order);
- every ``ORDER BY`` is total (ties broken on the port or the address), so both engines return the
  same rows in the same order.
"""

from __future__ import annotations

from typing import Final

# The metrics a port ranking may be ordered by (ISC /api/topports/{records|targets|sources}).
RANK_METRICS: Final = ("records", "targets", "sources")

# One row per (UTC day, destination port).
_PORT_DAY = """
SELECT CAST(ts AS DATE) AS day,
       dst_port AS port,
       CAST(sum(count) AS BIGINT) AS records,
       count(DISTINCT dst_ip) AS targets,
       count(DISTINCT src_ip) AS sources,
       CAST(sum(CASE WHEN proto = 'tcp' THEN count ELSE 0 END) AS BIGINT) AS tcp_records,
       CAST(sum(CASE WHEN proto = 'udp' THEN count ELSE 0 END) AS BIGINT) AS udp_records,
       min(ts) AS first_seen,
       max(ts) AS last_seen
FROM events
WHERE event = 'fw.connection'
  AND dst_port IS NOT NULL
  AND ts >= {start} AND ts < {end}
  {port_filter}
GROUP BY CAST(ts AS DATE), dst_port
"""

PORT_DAY: Final = _PORT_DAY.replace("{port_filter}", "") + "ORDER BY day, port\n"
"""Every (day, port) of the range, by day then port. Parameters: start, end (timestamps)."""

PORT_HISTORY: Final = _PORT_DAY.replace("{port_filter}", "AND dst_port = {port}") + "ORDER BY day\n"
"""One port, one row per day that has records for it. Parameters: start, end, port."""

PORT_HISTORY_ROLLUP: Final = """
SELECT day, port, records, targets, sources, tcp_records, udp_records, first_seen, last_seen
FROM port_day
WHERE port = {port}
  AND day >= CAST({start} AS DATE) AND day < CAST({end} AS DATE)
  AND day IN (SELECT day FROM rollup_days)
ORDER BY day
"""
"""PORT_HISTORY for the days the DuckDB store's rollup holds current
(:mod:`stormwatch.analytics.rollup`); the other days are computed with PORT_HISTORY.
Parameters: start, end, port."""


def _top_ports(metric: str) -> str:
    return f"""
SELECT *
FROM ({_PORT_DAY.replace("{port_filter}", "")}) AS port_day
ORDER BY {metric} DESC, port
LIMIT {{limit}}
"""


# By records, the ranking needs only sums: the ports are chosen first and the distinct counts,
# the costly part, are taken for those ports alone (same rows as _top_ports("records"); at 100M
# rows it halves the time).
_TOP_PORTS_BY_RECORDS = _PORT_DAY.replace(
    "{port_filter}",
    """AND dst_port IN (
      SELECT dst_port
      FROM events
      WHERE event = 'fw.connection'
        AND dst_port IS NOT NULL
        AND ts >= {start} AND ts < {end}
      GROUP BY dst_port
      ORDER BY sum(count) DESC, dst_port
      LIMIT {limit}
  )""",
) + "ORDER BY records DESC, port\n"

TOP_PORTS: Final = {
    "records": _TOP_PORTS_BY_RECORDS,
    **{metric: _top_ports(metric) for metric in RANK_METRICS if metric != "records"},
}
"""The top ports of one day by a metric (the key), ties by port number. Parameters: start, end
(the day's bounds), limit."""

TOP_SOURCES: Final = """
WITH conn AS (
    SELECT src_ip, dst_ip, dst_port, ts, count
    FROM events
    WHERE event = 'fw.connection'
      AND src_ip IS NOT NULL
      AND ts >= {start} AND ts < {end}
),
-- the ranking needs only sums; the distinct counts are then taken for the chosen sources alone
ranked AS (
    SELECT src_ip
    FROM conn
    GROUP BY src_ip
    ORDER BY sum(count) DESC, src_ip
    LIMIT {limit}
),
top_conn AS (
    SELECT * FROM conn WHERE src_ip IN (SELECT src_ip FROM ranked)
),
top_sources AS (
    SELECT src_ip,
           CAST(sum(count) AS BIGINT) AS records,
           count(DISTINCT dst_port) AS ports,
           count(DISTINCT dst_ip) AS targets,
           min(ts) AS first_seen,
           max(ts) AS last_seen
    FROM top_conn
    GROUP BY src_ip
),
source_ports AS (
    SELECT src_ip,
           dst_port AS port,
           CAST(sum(count) AS BIGINT) AS port_records,
           row_number() OVER (PARTITION BY src_ip ORDER BY sum(count) DESC, dst_port) AS port_rank
    FROM top_conn
    WHERE dst_port IS NOT NULL
    GROUP BY src_ip, dst_port
)
SELECT top_sources.*, source_ports.port, source_ports.port_records, source_ports.port_rank
FROM top_sources
LEFT JOIN source_ports
       ON source_ports.src_ip = top_sources.src_ip AND source_ports.port_rank <= {top_ports}
ORDER BY top_sources.records DESC, top_sources.src_ip, source_ports.port_rank
"""
"""The busiest source addresses of a time range, one row per (source, one of its top ports); a
source that hit no port (ICMP only) has one row with an empty port. Sources are ranked by records,
ties by address text; their ports by records, ties by port number. Parameters: start, end, limit,
top_ports."""

LATEST_DAY: Final = """
SELECT CAST(max(ts) AS DATE) AS day
FROM events
WHERE event = 'fw.connection'
"""
"""The UTC day of the newest ``fw.connection`` event (NULL when there is none)."""

# -- trends (ISC "Trend" and "Protocol Ratio Change", early-warning-anchors.md section 1.2) --------

_PORT_TRENDS = """
WITH port_day AS (
    SELECT CAST(ts AS DATE) AS day,
           dst_port AS port,
           CAST(sum(count) AS BIGINT) AS records,
           count(DISTINCT src_ip) AS sources,
           count(DISTINCT dst_ip) AS targets,
           CAST(sum(CASE WHEN proto = 'tcp' THEN count ELSE 0 END) AS BIGINT) AS tcp_records
    FROM events
    WHERE event = 'fw.connection'
      AND dst_port IS NOT NULL
      AND ts >= {start} AND ts < {end}
    GROUP BY CAST(ts AS DATE), dst_port
),
port_sum AS (
    SELECT port,
           CAST(sum(CASE WHEN day >= {recent_day} THEN records ELSE 0 END) AS BIGINT) AS records_recent,
           CAST(sum(records) AS BIGINT) AS records_base,
           CAST(sum(CASE WHEN day >= {recent_day} THEN sources ELSE 0 END) AS BIGINT) AS sources_recent,
           CAST(sum(sources) AS BIGINT) AS sources_base,
           CAST(sum(CASE WHEN day >= {recent_day} THEN targets ELSE 0 END) AS BIGINT) AS targets_recent,
           CAST(sum(targets) AS BIGINT) AS targets_base,
           count(*) AS days
    FROM port_day
    GROUP BY port
),
recent_sensors AS (
    SELECT dst_port AS port, count(DISTINCT sensor) AS sensors
    FROM events
    WHERE event = 'fw.connection'
      AND dst_port IS NOT NULL
      AND ts >= {recent_start} AND ts < {end}
    GROUP BY dst_port
),
ranked AS (
    SELECT port_sum.*, recent_sensors.sensors,
           CAST({by}_recent AS DOUBLE) / CAST(NULLIF({by}_base, 0) AS DOUBLE) AS rank_key
    FROM port_sum
    JOIN recent_sensors ON recent_sensors.port = port_sum.port
    WHERE records_recent >= {min_records}
    ORDER BY rank_key DESC NULLS LAST, port
    LIMIT {limit}
)
SELECT ranked.port, ranked.records_recent, ranked.records_base, ranked.sources_recent,
       ranked.sources_base, ranked.targets_recent, ranked.targets_base, ranked.days, ranked.sensors,
       port_day.day, port_day.records AS day_records, port_day.tcp_records AS day_tcp_records
FROM ranked
JOIN port_day ON port_day.port = ranked.port
ORDER BY ranked.rank_key DESC NULLS LAST, ranked.port, port_day.day
"""

PORT_TRENDS: Final = {metric: _PORT_TRENDS.replace("{by}", metric) for metric in RANK_METRICS}
"""The ports whose ``{metric}`` (the key) rose most in the recent window against the baseline
window that contains it, one row per (port, day with records in the baseline window). Per port:
the sums over the days of each window of the daily records, daily distinct sources and daily
distinct targets (``*_recent``, ``*_base``), the number of days it has records (``days``) and the
distinct sensors that saw it in the recent window; per day its records and TCP records (for the
TCP ratio). Ports with fewer than ``{min_records}`` records in the recent window are left out.
Ranked by ``{metric}_recent / {metric}_base`` (doubles divided exactly as IEEE 754 prescribes, the
same in both engines; the window lengths are constant, so this orders as the ratio of averages;
NULL, last, when the baseline is 0, as for sources of events without a source address), ties by
port. Parameters: start, end (the baseline window), recent_start (timestamp) and
recent_day (date) where the recent window begins, min_records, limit."""

DATA_DAYS: Final = """
SELECT count(DISTINCT CAST(ts AS DATE)) AS days
FROM events
WHERE event = 'fw.connection'
  AND ts >= {start} AND ts < {end}
"""
"""The number of UTC days with at least one ``fw.connection`` event. Parameters: start, end."""
