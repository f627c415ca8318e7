"""The attack-fingerprint query: one row per exploit session, the session's events pivoted.

Written once in DuckDB's dialect over ``events`` and transpiled by sqlglot for Spark (see
:mod:`stormwatch.analytics.engine`); ``json_extract_string`` becomes ``get_json_object``,
``min_by``/``max_by`` and ``FILTER (WHERE ...)`` exist in both engines.

An *attack* is a sensor session (one TCP connection, see ``events/sensor_types.py``) that has at
least one ``exploit.attempt`` event (an exploit or a probe) with ``since <= ts < until``. Its row
holds exact values only, taken from the events the sensor recorded for that session (all of
them, also those outside the window, so an attack cut by the window boundary keeps its set-up):

- ``*_data``: the ``data`` JSON text of the session's *first* event of a type (``min_by`` on
  ``ts``); for ``exploit.attempt`` the first of kind ``exploit`` and, separately, the first of
  any kind (a probe-only session has only the latter); for ``dcerpc.request`` the first and the
  last request; for ``payload.offer`` the first and the last offer;
- ``t_*``: the time of the first event of each stage (connect, negotiate, session set-up, tree
  connect, pipe open, bind, first and last request, first exploit attempt, close): the timing
  features are gaps between them, computed in Python (engines differ in timestamp arithmetic);
- counts: requests, fragments summed over requests, exploit attempts, offers.

The pivot's JSON text is returned as stored (the same string in both engines); parsing and
every derived feature live in :mod:`stormwatch.analytics.fingerprint`, once.
"""

from __future__ import annotations

from typing import Final


def _first(event: str, alias: str, extra: str = "") -> str:
    return f"min_by(e.data, e.ts) FILTER (WHERE e.event = '{event}'{extra}) AS {alias}"


def _time(event: str, alias: str, agg: str = "min") -> str:
    return f"{agg}(e.ts) FILTER (WHERE e.event = '{event}') AS {alias}"


_COLUMNS = ",\n       ".join([
    "e.sensor",
    "e.session",
    "min(e.src_ip) AS src_ip",
    "min(e.dst_port) FILTER (WHERE e.event = 'session.connect') AS dst_port",
    "min(e.ts) FILTER (WHERE e.event = 'exploit.attempt') AS ts",
    _first("session.connect", "connect_data"),
    _first("smb.negotiate", "negotiate_data"),
    _first("smb.session_setup", "setup_data"),
    _first("smb.tree_connect", "tree_data"),
    _first("smb.pipe_open", "pipe_data"),
    _first("dcerpc.bind", "bind_data"),
    _first("dcerpc.request", "request_data"),
    "max_by(e.data, e.ts) FILTER (WHERE e.event = 'dcerpc.request') AS last_request_data",
    _first("exploit.attempt", "exploit_data", " AND json_extract_string(e.data, '$.kind') = 'exploit'"),
    _first("exploit.attempt", "attempt_data"),
    _first("payload.shellcode", "shellcode_data"),
    _first("payload.offer", "offer_data"),
    "max_by(e.data, e.ts) FILTER (WHERE e.event = 'payload.offer') AS last_offer_data",
    _first("session.closed", "closed_data"),
    _time("session.connect", "t_connect"),
    _time("smb.negotiate", "t_negotiate"),
    _time("smb.session_setup", "t_setup"),
    _time("smb.tree_connect", "t_tree"),
    _time("smb.pipe_open", "t_pipe"),
    _time("dcerpc.bind", "t_bind"),
    _time("dcerpc.request", "t_request"),
    _time("dcerpc.request", "t_last_request", "max"),
    _time("exploit.attempt", "t_exploit"),
    _time("session.closed", "t_closed"),
    "count(*) FILTER (WHERE e.event = 'dcerpc.request') AS requests",
    "CAST(sum(CAST(json_extract_string(e.data, '$.fragments') AS BIGINT))"
    " FILTER (WHERE e.event = 'dcerpc.request') AS BIGINT) AS fragments",
    "count(*) FILTER (WHERE e.event = 'exploit.attempt') AS attempts",
    "count(*) FILTER (WHERE e.event = 'payload.offer') AS offers",
])

ATTACK_FINGERPRINTS: Final = f"""
WITH attacks AS (
    SELECT sensor, session
    FROM events
    WHERE event = 'exploit.attempt'
      AND session IS NOT NULL
      AND ts >= {{since}} AND ts < {{until}}
    GROUP BY sensor, session
)
SELECT {_COLUMNS}
FROM events AS e
JOIN attacks AS a ON a.sensor = e.sensor AND a.session = e.session
GROUP BY e.sensor, e.session
ORDER BY ts, e.sensor, e.session
"""
"""One row per attack (exploit session) of the window, in time order (ties by sensor, session).
Parameters: since, until (timestamps)."""
