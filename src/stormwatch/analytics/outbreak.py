"""Outbreak estimation per exploit (or port): unique infected sources over time, Zou's trend
decision, the fitted growth rate, doubling time and vulnerable population.

The hourly counts come from :mod:`stormwatch.analytics.outbreak_queries` (exact integers, DuckDB or
Spark); the maths is :mod:`stormwatch.analytics.growth` (see there for the model, the decision rule
and its parameters). A subject is a bulletin (``"MS06-040"``, from ``exploit.attempt`` events of
kind ``exploit``) or, when it is all digits, a destination port (``"445"``: ``fw.connection`` and
``session.connect``). The series covers at most the ``WINDOW_DAYS`` before ``as_of``; sources first
seen earlier enter as a count carried in (``prior``).

Times: ``until`` is exclusive (events with ``ts < until``); ``as_of`` is the latest event of the
store before it, every subject's series running to that hour (a subject gone quiet shows zeros,
which is how its growth ends). A last hour covered for under a quarter is left out of the series
(too short to tell a rate), but its sources count in ``sources``. The sensors' address-space
coverage and the worms' scan rates are unknown here, so no observation-bias correction is applied
(``b = 1``): the population is that of the infected sources these sensors can see.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal, cast

import numpy as np

from stormwatch.analytics import outbreak_queries as q
from stormwatch.analytics.engine import Engine, Row
from stormwatch.analytics.growth import Growth, analyse
from stormwatch.analytics.signals import Outbreak

WINDOW_DAYS = 30
_HOUR = timedelta(hours=1)
_FAR = datetime(9999, 1, 1)
_EPOCH = datetime(1970, 1, 1)
_MIN_EXPOSURE = 0.25

Decision = Literal["outbreak", "growing", "no-growth", "insufficient-data"]

_LATEST = "SELECT max(ts) AS latest FROM events WHERE ts < {until}\n"


@dataclass(frozen=True)
class SeriesBin:
    """One bin of a subject's series (``width`` hours): new and cumulative sources, attempts, and
    the filter's growth estimate at the end of the bin (``alpha`` per bin; ``rate`` per hour)."""

    start: datetime
    end: datetime
    new_sources: int
    cumulative: int
    attempts: int
    alpha: float | None
    alpha_stderr: float | None
    rate: float | None
    doubling_hours: float | None
    steady: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OutbreakSeries:
    subject: str
    outbreak: Outbreak
    width_hours: int
    bins: list[SeriesBin]


def _is_port(subject: str) -> bool:
    return subject.isdigit() and 0 <= int(subject) <= 65535


def _hour_of(row: Row) -> datetime:
    d: date = row["day"]
    return datetime.combine(d, time(int(row["hr"])))


def _latest(engine: Engine, until: datetime | None) -> datetime | None:
    rows = engine.run(_LATEST, {"until": until or _FAR})
    latest = rows[0]["latest"] if rows else None
    return latest if isinstance(latest, datetime) else None


def _fetch(engine: Engine, until: datetime, subject: str | None) -> tuple[list[Row], list[Row]]:
    if subject is not None and _is_port(subject):
        params: dict[str, int | datetime] = {"until": until, "port": int(subject)}
        return engine.run(q.PORT_SUMMARY, params), engine.run(q.PORT_HOURLY, params)
    summary = engine.run(q.EXPLOIT_SUMMARY, {"until": until})
    hourly = engine.run(q.EXPLOIT_HOURLY, {"until": until})
    if subject is not None:  # subject names never go into SQL: filter here
        summary = [r for r in summary if r["subject"] == subject]
        hourly = [r for r in hourly if r["subject"] == subject]
    return summary, hourly


@dataclass(frozen=True)
class _Series:
    start: datetime
    new: np.ndarray
    attempts: np.ndarray
    exposure: np.ndarray
    prior: int


def _series(rows: list[Row], as_of: datetime) -> _Series | None:
    """Hourly arrays from the subject's first hour (or the window start) to the hour of as_of."""
    if not rows:
        return None
    last_hour = as_of.replace(minute=0, second=0, microsecond=0)
    covered = (as_of - last_hour) / _HOUR
    if covered < _MIN_EXPOSURE:
        last_hour -= _HOUR
        covered = 1.0
    first_hour = _hour_of(rows[0])
    window_start = max(first_hour, last_hour - timedelta(days=WINDOW_DAYS) + _HOUR)
    size = int((last_hour - window_start) / _HOUR) + 1
    if size <= 0:
        return None
    new = np.zeros(size)
    att = np.zeros(size)
    prior = 0
    for r in rows:
        i = int((_hour_of(r) - window_start) / _HOUR)
        if i < 0:
            prior += int(r["new_sources"])
        elif i < size:
            new[i] += int(r["new_sources"])
            att[i] += int(r["attempts"])
    expo = np.ones(size)
    expo[-1] = min(1.0, max(covered, _MIN_EXPOSURE))
    return _Series(window_start, new, att, expo, prior)


def _doubling(rate: float | None) -> float | None:
    return math.log(2.0) / rate if rate is not None and rate > 0 else None


def _outbreak(subject: str, summ: Row, s: _Series | None, as_of: datetime) -> tuple[Outbreak, Growth | None]:
    note: str | None
    if s is None:
        g = None
        decision, note = "insufficient-data", "not enough data for a growth rate: no complete hour of data"
    else:
        g = analyse(s.new, s.exposure, prior=s.prior, phase=int((s.start - _EPOCH) / _HOUR))
        decision, note = g.decision, g.note
    rate = g.rate if g is not None and decision != "insufficient-data" else None
    se = g.rate_stderr if g is not None and rate is not None else None
    fit = g.fit if g is not None else None
    decided_at = None
    if g is not None and g.decided_bin is not None and s is not None:
        decided_at = min(as_of, s.start + (g.offset + (g.decided_bin + 1) * g.width) * _HOUR)
    pop = fit.population if fit is not None else None
    if pop is not None:
        extra = "population = infected sources these sensors can see (address-space coverage unknown)"
        note = f"{note}; {extra}" if note else extra
    return Outbreak(
        subject=subject, first_seen=summ["first_seen"], as_of=as_of, sources=int(summ["sources"]),
        sensors=int(summ["sensors"]), rate=rate, rate_stderr=se, doubling_hours=_doubling(rate),
        population=pop, population_low=fit.population_low if fit is not None and pop is not None else None,
        population_high=fit.population_high if fit is not None and pop is not None else None,
        decision=cast(Decision, decision),
        decided_at=decided_at, note=note,
    ), g


_ORDER = {"outbreak": 0, "growing": 1, "no-growth": 2, "insufficient-data": 3}


def estimate_outbreaks(engine: Engine, *, until: datetime | None = None,
                       subject: str | None = None) -> list[Outbreak]:
    """One :class:`Outbreak` per bulletin exploited (or the one ``subject``: a bulletin or a port),
    with the data before ``until`` (default: all). Outbreaks first, then by sources. An empty store
    or an unknown subject gives an empty list."""
    latest = _latest(engine, until)
    if latest is None:
        return []
    end = until or latest + timedelta(microseconds=1)
    summary, hourly = _fetch(engine, end, subject)
    by_subject: dict[str, list[Row]] = {}
    for r in hourly:
        by_subject.setdefault(str(r["subject"]), []).append(r)
    out = [_outbreak(str(s["subject"]), s, _series(by_subject.get(str(s["subject"]), []), latest), latest)[0]
           for s in summary]
    return sorted(out, key=lambda o: (_ORDER[o.decision], -o.sources, o.subject))


def outbreak_series(engine: Engine, subject: str, until: datetime | None = None) -> OutbreakSeries | None:
    """The binned series behind :func:`estimate_outbreaks` for one subject (None when the subject
    has no data): per bin the new and cumulative sources, attempts and the growth estimate."""
    latest = _latest(engine, until)
    if latest is None:
        return None
    end = until or latest + timedelta(microseconds=1)
    summary, hourly = _fetch(engine, end, subject)
    if not summary:
        return None
    s = _series(hourly, latest)
    ob, g = _outbreak(subject, summary[0], s, latest)
    if g is None or s is None:
        return OutbreakSeries(subject, ob, 1, [])
    att = np.concatenate([np.zeros(-g.offset), s.attempts, np.zeros(g.new.size * g.width + g.offset - s.attempts.size)])
    att = att.reshape(-1, g.width).sum(axis=1)
    bins = []
    for k in range(g.new.size):
        start = s.start + (g.offset + k * g.width) * _HOUR
        a = se = None
        if g.trace is not None and k < g.trace.alpha.size and not np.isnan(g.trace.alpha[k]):
            a, se = float(g.trace.alpha[k]), float(g.trace.alpha_se[k])
        rate = math.log1p(a) / g.bin_hours if a is not None and a > -1.0 else None
        bins.append(SeriesBin(
            start=start, end=min(latest, start + g.width * _HOUR), new_sources=int(g.new[k]),
            cumulative=int(g.cumulative[k]), attempts=int(att[k]), alpha=a, alpha_stderr=se, rate=rate,
            doubling_hours=_doubling(rate),
            steady=bool(g.trace.steady[k]) if g.trace is not None and k < g.trace.steady.size else False,
        ))
    return OutbreakSeries(subject, ob, g.width, bins)
