"""The hourly series behind surge detection, as SQL in DuckDB's dialect over ``events``.

Each query returns exact integers only (hour indices, counts): the baseline, the change-point test
and every ratio are computed in Python (:mod:`stormwatch.analytics.seasonal`,
:mod:`stormwatch.analytics.surges`), so DuckDB and Spark (through sqlglot) give identical surges.

Hours are returned as an integer index, ``date_diff('hour', {start}, ts)`` with ``{start}`` on an
hour boundary (DuckDB counts hour boundaries crossed, Spark's ``DATEDIFF(HOUR, ...)`` whole hours
elapsed: the same number for an aligned start), rather than as a truncated timestamp: an integer
cannot be shifted into the Python process's time zone on the way out of Spark.

The series, one row per (hour, sensor, subject) with at least one hit:

- ``sources``: distinct source addresses in that hour at that sensor; ``records``: attempts
  (``fw.connection`` weighted by ``count``, as in the port report; one per honeypot session or
  exploit attempt);
- kind ``port``: ``fw.connection`` by ``dst_port``, plus the honeypot's ``session.connect`` by the
  port of the service reached. The honeypot's own ``dst_port`` is the port its listener is bound
  to, which behind a redirect (iptables 445 -> a high port, as DShield's sensor does for cowrie) is
  not the port the attacker aimed at; the ``service`` field names it (``smb`` 445,
  ``netbios-ssn`` 139, ``dcerpc`` 135, ``nbns`` 137), and ``dst_port`` is the fallback;
- kind ``exploit``: ``exploit.attempt`` events with ``kind = 'exploit'`` by bulletin
  (``vuln``); probes (scanners testing for the flaw) are not attacks and are left out;
- kind ``srcnet``: ``fw.connection`` by source network: the IPv4 ``/16``, the IPv6 ``/48``. Why
  /16: it is the block an ISP or hosting provider allocates from and the neighbourhood that
  local-preference worms favour (Code Red II and Blaster scan their own /16 far more often than
  the rest of the Internet), so an outbreak inside one provider or one campus shows up there; a
  /24 splits a surge into series too sparse to test hour by hour, a /8 drowns it in unrelated
  networks. The IPv6 /48 is a site's allocation (RFC 6177); it is cut from the canonical
  (RFC 5952) text: the first three groups when they are written out, else the text before
  ``::`` (the missing groups are zero).

Volume: a store of millions of events has thousands of ports and /16s, most with a handful of
records, too few for an hourly test. Only subjects with at least ``{min_records}`` records over
the window are kept, and of those the ``{top}`` with the most records over the whole window plus
the ``{top}`` with the most in the recent hours (from hour ``{recent_hour}`` on), so that a
subject new this week competes with the month's steady leaders. Ties rank by subject, so both
engines pick the same set.
"""

from __future__ import annotations

from typing import Final

KINDS: Final = ("port", "exploit", "srcnet")

# Rows that count as a sensor being up in an hour (its own traffic): firewall records and honeypot
# sessions. Exploit attempts and SMB events come inside sessions, so they add nothing.
ACTIVITY: Final = """
SELECT hour, sensor, count(*) AS records
FROM (
  SELECT date_diff('hour', {start}, ts) AS hour, sensor
  FROM events
  WHERE event IN ('fw.connection', 'session.connect')
    AND ts >= {start} AND ts < {end}
) AS rows_in_window
GROUP BY hour, sensor
ORDER BY hour, sensor
"""
"""Rows per (hour, sensor): which sensors were reporting in which hours. Parameters: start, end."""

LATEST: Final = """
SELECT max(ts) AS latest
FROM events
WHERE event IN ('fw.connection', 'session.connect', 'exploit.attempt')
"""
"""The newest event a surge series can count (the default end of the window)."""

_HOUR = "date_diff('hour', {start}, ts)"
_WINDOW = "ts >= {start} AND ts < {end}"

# The port a honeypot session was aimed at: the service's well-known port (see the docstring).
_SERVICE_PORT = """coalesce(CASE json_extract_string(data, '$.service')
                   WHEN 'smb' THEN 445 WHEN 'netbios-ssn' THEN 139
                   WHEN 'dcerpc' THEN 135 WHEN 'nbns' THEN 137 END, dst_port)"""

# IPv4 a.b.c.d -> 'a.b.0.0/16'; IPv6 -> its /48 (see the docstring). No backslashes in the
# patterns: Spark SQL string literals would read them as escapes.
_SRCNET = """CASE
  WHEN strpos(src_ip, ':') = 0 THEN regexp_extract(src_ip, '^([0-9]+[.][0-9]+)[.]', 1) || '.0.0/16'
  WHEN regexp_extract(src_ip, '^([0-9a-f]{1,4}:[0-9a-f]{1,4}:[0-9a-f]{1,4}):', 1) <> ''
    THEN regexp_extract(src_ip, '^([0-9a-f]{1,4}:[0-9a-f]{1,4}:[0-9a-f]{1,4}):', 1) || '::/48'
  ELSE split_part(src_ip, '::', 1) || '::/48'
END"""

_HITS: Final = {
    "port": f"""
  SELECT {_HOUR} AS hour, sensor, CAST(dst_port AS VARCHAR) AS subject, src_ip, count AS n
  FROM events
  WHERE event = 'fw.connection' AND dst_port IS NOT NULL AND {_WINDOW}
  UNION ALL
  SELECT {_HOUR} AS hour, sensor, CAST({_SERVICE_PORT} AS VARCHAR) AS subject, src_ip, 1 AS n
  FROM events
  WHERE event = 'session.connect' AND {_WINDOW}""",
    "exploit": f"""
  SELECT {_HOUR} AS hour, sensor, json_extract_string(data, '$.vuln') AS subject, src_ip, 1 AS n
  FROM events
  WHERE event = 'exploit.attempt' AND json_extract_string(data, '$.kind') = 'exploit'
    AND json_extract_string(data, '$.vuln') IS NOT NULL AND {_WINDOW}""",
    "srcnet": f"""
  SELECT {_HOUR} AS hour, sensor, {_SRCNET} AS subject, src_ip, count AS n
  FROM events
  WHERE event = 'fw.connection' AND src_ip IS NOT NULL AND {_WINDOW}""",
}


def _series(hits: str) -> str:
    return f"""
WITH hits AS ({hits}
),
totals AS (
  SELECT subject,
         sum(n) AS total,
         sum(CASE WHEN hour >= {{recent_hour}} THEN n ELSE 0 END) AS recent
  FROM hits
  WHERE subject IS NOT NULL AND subject <> ''
  GROUP BY subject
),
ranked AS (
  SELECT subject, recent,
         row_number() OVER (ORDER BY total DESC, subject) AS rank_total,
         row_number() OVER (ORDER BY recent DESC, subject) AS rank_recent
  FROM totals
  WHERE total >= {{min_records}}
),
chosen AS (
  SELECT subject FROM ranked
  WHERE rank_total <= {{top}} OR (rank_recent <= {{top}} AND recent > 0)
)
SELECT hits.hour AS hour, hits.sensor AS sensor, hits.subject AS subject,
       count(DISTINCT hits.src_ip) AS sources,
       CAST(sum(hits.n) AS BIGINT) AS records
FROM hits JOIN chosen ON hits.subject = chosen.subject
GROUP BY hits.hour, hits.sensor, hits.subject
ORDER BY subject, sensor, hour
"""


SERIES: Final = {kind: _series(hits) for kind, hits in _HITS.items()}
"""Per kind: one row per (hour, sensor, subject) with hits, ordered by subject, sensor, hour.
Parameters: start, end (timestamps), recent_hour, min_records, top (ints)."""
