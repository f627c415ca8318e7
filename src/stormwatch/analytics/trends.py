"""Port trends: the SANS ISC "Trend" and "Protocol Ratio Change" (PRC) of each port.

ISC (https://isc.sans.edu/data/trends.html; research notes ``early-warning-anchors.md`` section
1.2) compares a port's reports, sources and targets over the last 30 days with the last 3 days, and
gives the PRC: the average TCP ratio over the last 3 days minus the average over the last 30 days,
the TCP ratio being TCP reports / all reports for the port x 100. Exactly, here, for a ``day``:

- the *recent* window is the :data:`RECENT_DAYS` UTC days ending with ``day`` (inclusive), the
  *baseline* window the :data:`BASELINE_DAYS` days ending with ``day`` (so it contains the recent
  one, as ISC's "last 30 days" does);
- per port and day: records (sum of ``count`` of ``fw.connection`` events), sources and targets
  (distinct source / destination addresses *of that day*), as in the daily port report;
- a window's average of a metric is the sum of its daily values divided by the window's length in
  days: a day without records for the port counts as zero (a port that is quiet most days has a
  low baseline, which is the point). So ``sources_30d`` is the mean number of distinct sources per
  day, not the distinct sources of the whole month;
- ``*_ratio`` = recent average / baseline average (1 = as usual; at most 10 = all of the baseline
  in the last 3 days);
- the TCP ratio of a window is the mean of the daily TCP ratios over the days the port has records
  (a ratio of no records is undefined, so those days are left out rather than counted as 0);
  ``prc`` = ``tcp_3d`` - ``tcp_30d``, in percentage points;
- ports with fewer than ``min_records`` records in the recent window are not trends (one stray
  packet would otherwise rank first); ranking is by the ratio of ``by``, ties by port number;
- ``days``: the days the port has records in the baseline window; ``sensors``: the distinct sensors
  that saw the port in the recent window (a rise seen by several sensors is not one network's
  quirk);
- with fewer than :data:`MIN_BASELINE_DAYS` days of data (any ``fw.connection``) in the baseline
  window, the figures are still given, with a ``note`` saying the baseline is too thin (missing
  days count as zero, so the ratios read high).

The SQL (:data:`stormwatch.analytics.queries.PORT_TRENDS`) returns exact integers; the averages,
ratios and PRC are computed here and rounded to :data:`~stormwatch.analytics.ports.DECIMALS` places,
so both engines give the same figures. The figures are computed from the events, not the rollup.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import TypedDict

from stormwatch.analytics import queries
from stormwatch.analytics.engine import Engine, Param, Row
from stormwatch.analytics.ports import DECIMALS, _day_range, _limit, latest_day

RECENT_DAYS = 3
BASELINE_DAYS = 30
MIN_BASELINE_DAYS = 7
MIN_RECORDS = 10


class PortTrend(TypedDict):
    """A row of :func:`port_trends`. ``*_3d`` / ``*_30d`` are daily averages over each window."""

    rank: int
    port: int
    records_3d: float
    records_30d: float
    records_ratio: float | None  # None when the baseline average is 0
    sources_3d: float
    sources_30d: float
    sources_ratio: float | None  # None when the baseline average is 0
    targets_3d: float
    targets_30d: float
    targets_ratio: float | None  # None when the baseline average is 0
    tcp_3d: float  # percent
    tcp_30d: float
    prc: float  # percentage points
    days: int  # days with records for the port in the baseline window
    sensors: int  # distinct sensors that saw the port in the recent window
    note: str | None


def data_days(engine: Engine, day: date) -> int:
    """Days with any ``fw.connection`` in the baseline window ending with ``day``."""
    rows = engine.run(queries.DATA_DAYS, _day_range(day - timedelta(days=BASELINE_DAYS - 1), day))
    return int(rows[0]["days"]) if rows else 0


def baseline_note(days: int) -> str | None:
    """The warning given when the baseline window holds fewer than MIN_BASELINE_DAYS days of data."""
    if days >= MIN_BASELINE_DAYS:
        return None
    return f"not enough data for a baseline: {days} of {MIN_BASELINE_DAYS} days"


def port_trends(engine: Engine, day: date | None = None, limit: int = 20, by: str = "sources",
                min_records: int = MIN_RECORDS) -> list[PortTrend]:
    """The ``limit`` ports whose ``by`` (records, sources or targets) rose most in the 3 days
    ending ``day`` (default: :func:`latest_day`) against the 30 days ending ``day``; see the module
    docstring for the exact definitions."""
    if by not in queries.RANK_METRICS:
        raise ValueError(f"cannot rank trends by {by!r}; choose one of {', '.join(queries.RANK_METRICS)}")
    if isinstance(min_records, bool) or not isinstance(min_records, int) or min_records < 1:
        raise ValueError(f"min_records must be a positive integer, not {min_records!r}")
    day = day if day is not None else latest_day(engine)
    if day is None:
        return []
    recent = day - timedelta(days=RECENT_DAYS - 1)
    params: dict[str, Param] = {
        **_day_range(day - timedelta(days=BASELINE_DAYS - 1), day),
        "recent_start": datetime.combine(recent, time()), "recent_day": recent,
        "min_records": min_records, "limit": _limit(limit),
    }
    note = baseline_note(data_days(engine, day))
    out: list[PortTrend] = []
    daily: list[float] = []  # the current port's daily TCP ratios, oldest first
    daily_recent: list[float] = []
    for r in engine.run(queries.PORT_TRENDS[by], params):
        if not out or out[-1]["port"] != int(r["port"]):
            if out:
                _finish(out[-1], daily, daily_recent)
            daily, daily_recent = [], []
            out.append(_trend(len(out) + 1, r, note))
        ratio = 100 * int(r["day_tcp_records"]) / int(r["day_records"])
        daily.append(ratio)
        if _as_date(r["day"]) >= recent:
            daily_recent.append(ratio)
    if out:
        _finish(out[-1], daily, daily_recent)
    return out


def _trend(rank: int, r: Row, note: str | None) -> PortTrend:
    rec, src, tgt = (_averages(r, m) for m in ("records", "sources", "targets"))
    return PortTrend(
        rank=rank, port=int(r["port"]),
        records_3d=rec[0], records_30d=rec[1], records_ratio=rec[2],
        sources_3d=src[0], sources_30d=src[1], sources_ratio=src[2],
        targets_3d=tgt[0], targets_30d=tgt[1], targets_ratio=tgt[2],
        tcp_3d=0.0, tcp_30d=0.0, prc=0.0,  # set by _finish once the port's days are read
        days=int(r["days"]), sensors=int(r["sensors"]), note=note,
    )


def _averages(r: Row, metric: str) -> tuple[float, float, float | None]:
    """(recent average, baseline average, their ratio) of one metric, rounded."""
    recent = int(r[f"{metric}_recent"]) / RECENT_DAYS
    base = int(r[f"{metric}_base"]) / BASELINE_DAYS
    # records: base >= recent >= min_records >= 1; sources and targets are 0 only when every event
    # lacks the address
    ratio = round(recent / base, DECIMALS) if base else None
    return round(recent, DECIMALS), round(base, DECIMALS), ratio


def _finish(t: PortTrend, daily: list[float], daily_recent: list[float]) -> None:
    tcp_base = sum(daily) / len(daily)
    tcp_recent = sum(daily_recent) / len(daily_recent)
    t["tcp_3d"] = round(tcp_recent, DECIMALS)
    t["tcp_30d"] = round(tcp_base, DECIMALS)
    t["prc"] = round(tcp_recent - tcp_base, DECIMALS)


def _as_date(value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))
