"""SQL of the scanner detector: each source's first contacts, in time order (DuckDB dialect over
``events``; Spark runs it transpiled, see :mod:`stormwatch.analytics.engine`).

A *contact* is one (source, destination, destination port, protocol): a service the source tried.
TRW (Jung et al. 2004) judges a source by the outcome of its *first* attempt at each target, so a
client retrying the one server it uses counts once. Exactly:

- attempts are ``fw.connection`` records and honeypot ``session.connect`` events with both
  addresses, of TCP, UDP, or ICMP/ICMPv6 echo requests (``icmp_type`` 8 / 128 in ``data``: a ping
  sweep is an address scan; other ICMP messages are answers or errors, not contacts; an echo
  contact has port -1);
- left out: multicast destinations (224.0.0.0/4, ff00::/8) and the limited broadcast, which are
  not targets; accepted connections whose outcome is unknown (``action = 'accept'`` without
  ``outcome``: a firewall's log of allowed traffic says nothing about failure); and UDP flows with
  an outcome, because an unanswered UDP flow is normal (one-way protocols, unicast replies to a
  multicast query show as new "unanswered" flows) and Zeek's detector ignores UDP too. UDP records
  of a firewall (no outcome) stay: a dropped UDP probe is an attempt;
- ``outcome`` of a contact: ``honeypot`` for a honeypot session (see
  :mod:`stormwatch.analytics.scanners` for what that means), else the ``outcome`` of its earliest
  attempt that has one (a flow record beats a firewall line of the same contact), else NULL;
  ``ts`` is its earliest attempt; ties are broken by outcome, sensor and event id, so the choice is
  the same on every engine;
- only sources with at least ``{min_failures}`` contacts that were not answered are returned (a
  source with fewer cannot be decided a scanner by either test: this is where millions of benign
  contacts are dropped inside the database);
- ``sensors``: distinct sensors with an attempt of the source (before the contact reduction).

Rows are ordered by source, then time, destination, port and protocol (a total order: the four
make a contact unique), so the caller streams one source after another.
"""

from __future__ import annotations

from datetime import datetime

from stormwatch.analytics.engine import Param

_FIRST_CONTACTS = """
WITH attempts AS (
    SELECT src_ip, dst_ip, COALESCE(dst_port, -1) AS dst_port, proto, ts, sensor, event_id,
           CASE WHEN event = 'session.connect' THEN 'honeypot' ELSE outcome END AS outcome
    FROM events
    WHERE event IN ('fw.connection', 'session.connect')
      AND src_ip IS NOT NULL AND dst_ip IS NOT NULL
      {time_filter}
      AND (proto IN ('tcp', 'udp')
           OR (proto = 'icmp' AND json_extract_string(data, '$.icmp_type') = '8')
           OR (proto = 'icmp6' AND json_extract_string(data, '$.icmp_type') = '128'))
      AND (event = 'session.connect' OR outcome IS NOT NULL OR COALESCE(action, '') <> 'accept')
      AND NOT (event = 'fw.connection' AND proto = 'udp' AND outcome IS NOT NULL)
      AND NOT (dst_ip LIKE '2__.%' AND dst_ip >= '224.' AND dst_ip < '240.')
      AND dst_ip NOT LIKE 'ff__:%'
      AND dst_ip <> '255.255.255.255'
      {port_filter}
),
ranked AS (
    SELECT src_ip, dst_ip, dst_port, proto, outcome,
           MIN(ts) OVER (PARTITION BY src_ip, dst_ip, dst_port, proto) AS first_ts,
           ROW_NUMBER() OVER (PARTITION BY src_ip, dst_ip, dst_port, proto
                              ORDER BY CASE WHEN outcome IS NULL THEN 1 ELSE 0 END, ts, outcome, sensor,
                                       event_id) AS rn
    FROM attempts
),
contacts AS (
    SELECT src_ip, dst_ip, dst_port, proto, outcome, first_ts FROM ranked WHERE rn = 1
),
candidates AS (
    SELECT src_ip
    FROM contacts
    GROUP BY src_ip
    HAVING SUM(CASE WHEN outcome = 'answered' THEN 0 ELSE 1 END) >= {min_failures}
),
source_sensors AS (
    SELECT src_ip, COUNT(DISTINCT sensor) AS sensors FROM attempts GROUP BY src_ip
)
SELECT c.src_ip, c.first_ts AS ts, c.dst_ip, c.dst_port, c.proto, c.outcome, s.sensors
FROM contacts AS c
JOIN candidates AS k ON k.src_ip = c.src_ip
JOIN source_sensors AS s ON s.src_ip = c.src_ip
ORDER BY c.src_ip, c.first_ts, c.dst_ip, c.dst_port, c.proto
"""


def first_contacts(*, since: datetime | None = None, until: datetime | None = None, port: int | None = None,
                   min_failures: int = 1) -> tuple[str, dict[str, Param]]:
    """The first-contact query and its parameters: attempts with ``since <= ts < until`` (either
    bound optional), to destination ``port`` only when given, of sources with at least
    ``min_failures`` unanswered contacts. Columns: ``src_ip``, ``ts``, ``dst_ip``, ``dst_port``
    (-1 for ICMP echo), ``proto``, ``outcome`` (answered/reset/unanswered/honeypot/NULL),
    ``sensors``."""
    params: dict[str, Param] = {"min_failures": max(0, int(min_failures))}
    time_filter = ""
    if since is not None:
        time_filter += "AND ts >= {since} "
        params["since"] = since
    if until is not None:
        time_filter += "AND ts < {until} "
        params["until"] = until
    port_filter = ""
    if port is not None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0..65535, not {port}")
        port_filter = "AND dst_port = {port}"
        params["port"] = port
    # only fixed fragments of this module are pasted in; values go through the engine's parameters
    sql = _FIRST_CONTACTS.replace("{time_filter}", time_filter).replace("{port_filter}", port_filter)
    return sql, params
