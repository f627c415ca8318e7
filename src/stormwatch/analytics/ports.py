"""The port report: per-port daily figures, top ports, one port's history, top sources.

The figures are those of the SANS Internet Storm Center / DShield port report (research notes
``early-warning-anchors.md`` section 1.2), computed over ``fw.connection`` events weighted by
``count``; the SQL is in :mod:`stormwatch.analytics.queries` and runs on either engine of
:mod:`stormwatch.analytics.engine` (DuckDB on the store by default, Spark on the Parquet lake) with
identical results. Derived figures, computed here from the exact integer counts:

- ``tcp`` / ``udp``: the share of the port's records that are TCP / UDP, in percent (0-100), as
  ISC's "TCP ratio" (``tcp_records / records * 100``);
- ``survival``: ISC's survival time, "the average time between reports for an average target IP
  address", in seconds: ``86400 * targets / records``. It always takes a full day of 86,400 s,
  also for the current, partial day (which therefore reads longer than it will at the end of the
  day); for a multi-day range (top sources) no survival time is given.

Floats are rounded to :data:`DECIMALS` places with Python's ``round`` (half to even). Days are
``datetime.date`` (UTC); first/last seen are naive ``datetime`` in UTC, as in the store. Days without
any record are absent from a port's history rather than given as zeros (as in ISC's porthistory).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any, TypedDict

from stormwatch.analytics import queries, rollup
from stormwatch.analytics.engine import DuckDBEngine, Engine, Param, Row

DECIMALS = 2
SECONDS_PER_DAY = 86_400
MAX_LIMIT = 10_000
TOP_PORTS_PER_SOURCE = 10

# Open ends of a range: every timestamp DuckDB and Spark can hold lies between them.
EARLIEST = date(1, 1, 1)
LATEST = date(9999, 12, 31)


class PortDay(TypedDict):
    """One port on one day."""

    day: date
    port: int
    records: int
    targets: int
    sources: int
    tcp: float | None  # percent of records, None when there are no records (count 0)
    udp: float | None
    survival: float | None  # seconds
    first_seen: datetime
    last_seen: datetime


class RankedPort(PortDay):
    """A row of :func:`top_ports`: a :class:`PortDay` with its rank (1 = top)."""

    rank: int


class SourcePort(TypedDict):
    port: int
    records: int


class SourceSummary(TypedDict):
    """A row of :func:`top_sources`."""

    rank: int
    src_ip: str
    records: int
    ports: int  # distinct destination ports
    top_ports: list[SourcePort]  # up to TOP_PORTS_PER_SOURCE, by records then port number
    targets: int
    first_seen: datetime
    last_seen: datetime


def latest_day(engine: Engine) -> date | None:
    """The UTC day of the newest ``fw.connection`` event, the default ``--day`` of the report."""
    rows = engine.run(queries.LATEST_DAY)
    return _as_date(rows[0]["day"]) if rows and rows[0]["day"] is not None else None


def port_days(engine: Engine, since: date, until: date | None = None) -> list[PortDay]:
    """Every (day, port) with records from ``since`` to ``until`` (inclusive, default: ``since``),
    ordered by day then port."""
    until = since if until is None else until
    rows = engine.run(queries.PORT_DAY, _day_range(since, until))
    return [_port_day(r) for r in rows]


def top_ports(engine: Engine, day: date | None = None, by: str = "records",
              limit: int = 10) -> list[RankedPort]:
    """The ``limit`` busiest ports of ``day`` (default: :func:`latest_day`) by ``records``,
    ``sources`` or ``targets``; ties go to the lower port number."""
    if by not in queries.RANK_METRICS:
        raise ValueError(f"cannot rank ports by {by!r}; choose one of {', '.join(queries.RANK_METRICS)}")
    day = day if day is not None else latest_day(engine)
    if day is None:
        return []
    rows = engine.run(queries.TOP_PORTS[by], {**_day_range(day, day), "limit": _limit(limit)})
    return [RankedPort(rank=i, **_port_day(r)) for i, r in enumerate(rows, start=1)]


def port_history(engine: Engine, port: int, since: date | None = None,
                 until: date | None = None) -> list[PortDay]:
    """One port's figures per day from ``since`` to ``until`` (inclusive; open ends by default),
    ordered by day; days without records are absent."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"not a port number: {port!r}")
    params: dict[str, Param] = {**_day_range(since or EARLIEST, until or LATEST), "port": port}
    if not isinstance(engine, DuckDBEngine):
        return [_port_day(r) for r in engine.run(queries.PORT_HISTORY, params)]
    # on the store: days the rollup holds current from it, the others live (same SQL, by day range)
    rows = engine.run(queries.PORT_HISTORY_ROLLUP, params)
    lo, hi = since or EARLIEST, until or LATEST
    for first, last in _runs([d for d in rollup.stale_days(engine.store) if lo <= d <= hi]):
        rows += engine.run(queries.PORT_HISTORY, {**_day_range(first, last), "port": port})
    return sorted((_port_day(r) for r in rows), key=lambda r: r["day"])


def top_sources(engine: Engine, day: date | None = None, since: date | None = None,
                until: date | None = None, limit: int = 10) -> list[SourceSummary]:
    """The ``limit`` source addresses with the most records, for one ``day`` or from ``since`` to
    ``until`` (inclusive, open-ended by default); with neither, for :func:`latest_day`.

    Records and targets count every ``fw.connection`` of the source (ICMP included); ``ports``
    counts its distinct destination ports and ``top_ports`` lists up to
    :data:`TOP_PORTS_PER_SOURCE` of them by records (ties by port number). Sources are ranked by
    records, ties by address text."""
    if day is not None and (since is not None or until is not None):
        raise ValueError("give either a day or a since/until range, not both")
    if day is None and since is None:
        day = latest_day(engine)
        if day is None:
            return []
    lo, hi = (day, day) if day is not None else (since or EARLIEST, until or LATEST)
    params: dict[str, Param] = {**_day_range(lo, hi), "limit": _limit(limit),
                                "top_ports": TOP_PORTS_PER_SOURCE}
    out: list[SourceSummary] = []
    for r in engine.run(queries.TOP_SOURCES, params):
        if not out or out[-1]["src_ip"] != r["src_ip"]:
            out.append(SourceSummary(
                rank=len(out) + 1, src_ip=str(r["src_ip"]), records=int(r["records"]),
                ports=int(r["ports"]), top_ports=[], targets=int(r["targets"]),
                first_seen=_as_datetime(r["first_seen"]), last_seen=_as_datetime(r["last_seen"]),
            ))
        if r["port"] is not None:
            out[-1]["top_ports"].append(SourcePort(port=int(r["port"]), records=int(r["port_records"])))
    return out


# -- helpers -----------------------------------------------------------------------------------

def _day_range(first: date, last: date) -> dict[str, Param]:
    """The half-open timestamp range [first 00:00, last+1 00:00) of whole UTC days."""
    if isinstance(first, datetime) or isinstance(last, datetime):
        raise TypeError("day ranges take dates, not datetimes")
    if last < first:
        raise ValueError(f"empty range: {first} is after {last}")
    start = datetime.combine(first, time())
    # the day after LATEST does not exist: the open end stops at its last microsecond
    end = (datetime.combine(last + timedelta(days=1), time()) if last < LATEST
           else datetime.combine(last, time.max))
    return {"start": start, "end": end}


def _runs(days: list[date]) -> list[tuple[date, date]]:
    """Sorted days as (first, last) runs of consecutive days."""
    out: list[tuple[date, date]] = []
    for d in days:
        if out and out[-1][1] + timedelta(days=1) == d:
            out[-1] = (out[-1][0], d)
        else:
            out.append((d, d))
    return out


def _limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be an integer from 1 to {MAX_LIMIT}, not {limit!r}")
    return limit


def _port_day(r: Row) -> PortDay:
    records, targets = int(r["records"]), int(r["targets"])
    return PortDay(
        day=_as_date(r["day"]),
        port=int(r["port"]),
        records=records,
        targets=targets,
        sources=int(r["sources"]),
        tcp=_percent(int(r["tcp_records"]), records),
        udp=_percent(int(r["udp_records"]), records),
        survival=round(SECONDS_PER_DAY * targets / records, DECIMALS) if records > 0 else None,
        first_seen=_as_datetime(r["first_seen"]),
        last_seen=_as_datetime(r["last_seen"]),
    )


def _percent(part: int, whole: int) -> float | None:
    return round(100 * part / whole, DECIMALS) if whole > 0 else None


def _as_date(v: Any) -> date:
    if isinstance(v, datetime) or not isinstance(v, date):
        raise TypeError(f"expected a date from the engine, got {v!r}")
    return v


def _as_datetime(v: Any) -> datetime:
    if not isinstance(v, datetime):
        raise TypeError(f"expected a timestamp from the engine, got {v!r}")
    return v
