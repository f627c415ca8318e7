"""The outbreak series as SQL: new and active distinct sources per subject and UTC hour.

Written once in DuckDB's dialect over ``events`` and run unchanged by DuckDB or, transpiled by
sqlglot, by Spark (see :mod:`stormwatch.analytics.engine`). Every value returned is an exact integer,
a date or a timestamp; the growth maths is done once, in Python (:mod:`stormwatch.analytics.growth`).

Subjects:

- a *bulletin* (``"MS06-040"``): ``exploit.attempt`` events of ``kind = 'exploit'`` (probes are
  scanners testing for the flaw, not infected hosts spreading it, so they are left out), keyed by
  the ``vuln`` field of ``data``;
- a *port* (``"445"``, optional): ``fw.connection`` and honeypot ``session.connect`` events to that
  destination port. A port carries the whole background of scanners as well as a worm, so its
  series is only meaningful with the trend test of :mod:`~stormwatch.analytics.growth` on top.

Per (subject, hour): ``new_sources`` is the number of source addresses whose first attempt on the
subject (over all the data before ``{until}``, every sensor together) falls in that hour;
``active_sources`` the distinct sources seen that hour; ``attempts`` the events (weighted by
``count`` for firewall records, which DShield-style logs collapse); ``sensors`` the distinct sensors.
Hours without events have no row. Hours are returned as a UTC date plus an hour number (0-23), so
neither engine's timestamp truncation type gets in the way. Subject names are never pasted into
SQL (the engine only takes int/date/datetime parameters): every bulletin comes back and the caller
picks. ``ORDER BY`` is total so both engines return the same rows in the same order.
"""

from __future__ import annotations

from typing import Final

_EXPLOIT_HITS = """
SELECT json_extract_string(data, '$.vuln') AS subject,
       ts, src_ip, sensor, 1 AS weight
FROM events
WHERE event = 'exploit.attempt'
  AND json_extract_string(data, '$.kind') = 'exploit'
  AND json_extract_string(data, '$.vuln') IS NOT NULL
  AND src_ip IS NOT NULL
  AND ts < {until}
"""

_PORT_HITS = """
SELECT CAST(dst_port AS VARCHAR) AS subject,
       ts, src_ip, sensor, coalesce(count, 1) AS weight
FROM events
WHERE event IN ('fw.connection', 'session.connect')
  AND dst_port = {port}
  AND src_ip IS NOT NULL
  AND ts < {until}
"""


def _hourly(hits: str) -> str:
    return f"""
WITH hits AS ({hits}),
marked AS (
  SELECT subject, ts, src_ip, sensor, weight,
         min(ts) OVER (PARTITION BY subject, src_ip) AS first_ts
  FROM hits
)
SELECT subject,
       CAST(ts AS DATE) AS day,
       hour(ts) AS hr,
       count(DISTINCT CASE WHEN CAST(first_ts AS DATE) = CAST(ts AS DATE) AND hour(first_ts) = hour(ts)
                           THEN src_ip END) AS new_sources,
       count(DISTINCT src_ip) AS active_sources,
       CAST(sum(weight) AS BIGINT) AS attempts,
       count(DISTINCT sensor) AS sensors
FROM marked
GROUP BY subject, CAST(ts AS DATE), hour(ts)
ORDER BY subject, day, hr
"""


def _summary(hits: str) -> str:
    return f"""
WITH hits AS ({hits})
SELECT subject,
       min(ts) AS first_seen,
       max(ts) AS last_seen,
       count(DISTINCT src_ip) AS sources,
       count(DISTINCT sensor) AS sensors,
       CAST(sum(weight) AS BIGINT) AS attempts
FROM hits
GROUP BY subject
ORDER BY subject
"""


EXPLOIT_HOURLY: Final = _hourly(_EXPLOIT_HITS)
"""Every bulletin's hourly series. Parameters: until (timestamp, exclusive)."""

EXPLOIT_SUMMARY: Final = _summary(_EXPLOIT_HITS)
"""Per bulletin: first_seen, last_seen, sources, sensors, attempts. Parameters: until."""

PORT_HOURLY: Final = _hourly(_PORT_HITS)
"""One destination port's hourly series (subject = the port as text). Parameters: until, port."""

PORT_SUMMARY: Final = _summary(_PORT_HITS)
"""One port's summary. Parameters: until, port."""
