"""Surge detection: per port, per exploit and per source network, on hourly series with daily and
weekly seasonality, with agreement across sensors.

For each subject (a port, a bulletin, a /16) the store gives, per sensor, the hourly count of
distinct sources (:mod:`stormwatch.analytics.surge_queries`). Each sensor's series gets its own
seasonal baseline and quasi-Poisson CUSUM (:mod:`stormwatch.analytics.seasonal`), refitted every
24 hours on the four weeks before, so every decision uses only the data before it.

- **All sensors together**: the hourly log-likelihood ratios of the sensors reporting in that hour
  are added (for Poisson counts that is exactly the test on the summed series against the summed
  baselines) and run through their own CUSUM. A sensor that is silent in an hour adds nothing:
  it is neither evidence of a rise nor of a drop, so a silent sensor cannot cause a surge, and
  a drop is never alarmed (surges are rises only).
- **Agreement**: a sensor agrees with a surge when a CUSUM of its own ratios, started
  :data:`AGREE_HOURS` hours before the onset, reaches the confirmation level (half the threshold)
  before the surge ends, in an excursion that began no later than :data:`AGREE_HOURS` after the
  onset (so clock skew of a few hours between sensors, and the onset estimate's own error, are
  tolerated, while a sensor's unrelated blip a day later is not agreement). ``sensors``
  counts the agreeing ones, ``sensors_total`` those reporting the subject around the onset; the
  scope is ``"agreed"`` with at least ``min_sensors``, else ``"local"``. A surge one sensor decides
  on its own that no combined surge explains is reported too (``"local"`` unless others agree).
- The metric is ``sources`` (distinct source addresses per hour) for every kind: it measures how
  many machines take part, which is what grows in an outbreak, whereas records can be driven
  by one noisy scanner (that is :mod:`stormwatch.analytics.scanners`' business).
- A surge is reported once its excess over the baseline reaches :data:`MIN_EXCESS` sources (see
  :func:`_enough`); rises that follow each other within :data:`MERGE_GAP_HOURS` are one surge.
- ``baseline`` / ``observed``: per-hour means over the surge (onset to its end, or to the last
  hour), summed over the agreeing sensors (all sensors when none agrees), ``ratio`` their quotient.

The window is the ``days`` x 24 hours ending with the hour that holds ``until`` (default: the
newest event); when ``until`` falls inside an hour, that last hour's baseline is scaled down to the
part of the hour covered. ISC's 3-day / 30-day trend is :func:`stormwatch.analytics.trends.port_trends`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import cast

import numpy as np

from stormwatch.analytics import surge_queries as sq
from stormwatch.analytics.engine import Engine, Param, Row
from stormwatch.analytics.seasonal import (
    CAP_FRACTION,
    CONFIRM_FRACTION,
    DESIGN_RATIO,
    FIT_DAYS,
    THRESHOLD,
    WEEKLY_DAYS,
    BoolArray,
    Cusum,
    Episode,
    FloatArray,
    baseline_note,
    calendar,
    fit_seasonal,
    llr_increments,
    peak_cusum,
)
from stormwatch.analytics.signals import Surge, SurgeKind

AGREE_HOURS = 3  # clock skew and onset error tolerated between sensors
TOP_SUBJECTS = 20  # per kind: the busiest subjects of the window, and of the recent hours
RECENT_HOURS = 72
# floors on a subject's records over the window: below them an hourly test has nothing to go on
# (a /16 is sparser than a port: most send a source every few hours)
MIN_RECORDS = {"port": 48, "exploit": 12, "srcnet": 240}
MIN_EXCESS = 10.0  # sources above the baseline before a surge is reported (see _enough)
MERGE_GAP_HOURS = 24  # episodes closer than this are one surge (see merge_episodes)
SILENCE_P = 1e-3  # an empty run of hours this unlikely at the sensor's rate means it was down
METHOD = "seasonal-cusum"
DECIMALS = 2


@dataclass(frozen=True, slots=True)
class Params:
    """The detector's knobs (defaults from :mod:`stormwatch.analytics.seasonal`)."""

    threshold: float = THRESHOLD
    ratio: float = DESIGN_RATIO
    min_sensors: int = 2
    agree_hours: int = AGREE_HOURS

    @property
    def cap(self) -> float:
        return self.threshold * CAP_FRACTION

    @property
    def confirm(self) -> float:
        return self.threshold * CONFIRM_FRACTION


@dataclass
class SurgeReport:
    """What :func:`surge_report` found, and notes on thin or missing data."""

    surges: list[Surge]
    notes: list[str] = field(default_factory=list)
    start: datetime | None = None
    until: datetime | None = None
    sensors: int = 0


def detect_surges(engine: Engine, *, until: datetime | None = None, days: int = 30,
                  kinds: Sequence[str] = ("port", "exploit", "srcnet"), min_sensors: int = 2) -> list[Surge]:
    """Surges in the ``days`` before ``until`` (default: the newest event); see the module docstring."""
    return surge_report(engine, until=until, days=days, kinds=kinds, min_sensors=min_sensors).surges


def surge_report(engine: Engine, *, until: datetime | None = None, days: int = 30,
                 kinds: Sequence[str] = ("port", "exploit", "srcnet"), min_sensors: int = 2,
                 params: Params | None = None) -> SurgeReport:
    """:func:`detect_surges` with the notes (thin data, silent sensors) and the window used."""
    for kind in kinds:
        if kind not in sq.KINDS:
            raise ValueError(f"unknown surge kind {kind!r}; choose from {', '.join(sq.KINDS)}")
    if days < 1:
        raise ValueError(f"days must be at least 1, not {days}")
    p = params or Params(min_sensors=min_sensors)
    latest = until is None
    if until is None:
        rows = engine.run(sq.LATEST)
        until = rows[0]["latest"] if rows else None
        if until is None:
            return SurgeReport([], ["no events stored yet: nothing to compare"])
    end, start, coverage = window(until, days, inclusive=latest)
    hours = days * 24
    activity = engine.run(sq.ACTIVITY, {"start": start, "end": end})
    active = active_hours(activity, hours)
    report = SurgeReport([], start=start, until=until, sensors=len(active))
    if not active:
        report.notes.append(f"no events in the {days} days before {until:%Y-%m-%d %H:%M}")
        return report
    for sensor, mask in sorted(active.items()):
        note = baseline_note(np.count_nonzero(mask) / 24.0)
        if note:
            report.notes.append(f"{sensor}: {note}")
    params_sql: dict[str, Param] = {"start": start, "end": end, "recent_hour": hours - RECENT_HOURS,
                                    "top": TOP_SUBJECTS}
    for kind in kinds:
        rows = engine.run(sq.SERIES[kind], {**params_sql, "min_records": MIN_RECORDS[kind]})
        for subject, series in _by_subject(rows, hours).items():
            masks = {s: active.get(s, np.zeros(hours, dtype=bool)) for s in series}
            report.surges += subject_surges(cast(SurgeKind, kind), subject, series, masks, start,
                                            coverage=coverage, params=p)
    report.surges.sort(key=lambda s: (not s.active, s.scope != "agreed", -s.strength, s.kind, s.subject))
    return report


def window(until: datetime, days: int, *, inclusive: bool = False) -> tuple[datetime, datetime, float]:
    """(exclusive end of the data, first hour, share of the last hour covered). ``until`` on the
    stroke of an hour ends the window there, unless ``inclusive`` (it is the newest event's time,
    which must be counted)."""
    on_boundary = not inclusive and until == until.replace(minute=0, second=0, microsecond=0)
    end = until if on_boundary else until + timedelta(microseconds=1)
    last = until.replace(minute=0, second=0, microsecond=0) + (timedelta(0) if on_boundary else timedelta(hours=1))
    coverage = (end - (last - timedelta(hours=1))) / timedelta(hours=1)
    return end, last - timedelta(hours=days * 24), coverage


def active_hours(rows: Sequence[Row], hours: int) -> dict[str, BoolArray]:
    """Per sensor, the hours it was reporting: between its first and last record of the window,
    minus runs of empty hours too long to be chance at its average rate (P < :data:`SILENCE_P`)."""
    counts: dict[str, np.ndarray] = {}
    for r in rows:
        h = int(r["hour"])
        if 0 <= h < hours:
            counts.setdefault(str(r["sensor"]), np.zeros(hours))[h] += int(r["records"])
    out: dict[str, BoolArray] = {}
    for sensor, c in counts.items():
        busy = np.flatnonzero(c > 0)
        first, last = int(busy[0]), int(busy[-1])
        rate = float(c.sum()) / (last - first + 1)
        longest_chance_gap = max(1, math.ceil(-math.log(SILENCE_P) / rate))
        mask = np.zeros(hours, dtype=bool)
        mask[first:last + 1] = True
        # trailing hours after the last record: quiet, or down? the same rule
        if hours - 1 - last < longest_chance_gap:
            mask[last + 1:] = True
        run_start = None
        for h in range(first, last + 2):
            empty = h <= last and c[h] == 0
            if empty and run_start is None:
                run_start = h
            elif not empty and run_start is not None:
                if h - run_start >= longest_chance_gap:
                    mask[run_start:h] = False
                run_start = None
        out[sensor] = mask
    return out


def _by_subject(rows: Sequence[Row], hours: int) -> dict[str, dict[str, FloatArray]]:
    out: dict[str, dict[str, FloatArray]] = {}
    for r in rows:
        h = int(r["hour"])
        if 0 <= h < hours:
            per = out.setdefault(str(r["subject"]), {})
            per.setdefault(str(r["sensor"]), np.zeros(hours))[h] = int(r["sources"])
    return out


@dataclass
class Track:
    """One sensor's series through the detector: counts, reporting hours, expected counts,
    dispersion, CUSUM increments (NaN where no test ran: silent, or no baseline yet), days of
    history behind each hour's baseline, its CUSUM, and the hours left out of later fits."""

    y: FloatArray
    active: BoolArray
    mu: FloatArray
    phi: FloatArray
    inc: FloatArray
    days: FloatArray
    cusum: Cusum
    excluded: BoolArray


def subject_surges(kind: SurgeKind, subject: str, series: Mapping[str, FloatArray], active: Mapping[str, BoolArray],
                   start: datetime, *, coverage: float = 1.0, params: Params | None = None) -> list[Surge]:
    """The surges of one subject, from each sensor's hourly counts and reporting hours (pure)."""
    p = params or Params()
    if not series:
        return []
    tracks, pooled = run_detector(series, active, start, coverage=coverage, params=p)
    hours = len(next(iter(tracks.values())).y)
    out: list[Surge] = []
    spans: list[tuple[int, int]] = []
    ok = [~np.isnan(t.inc) for t in tracks.values()]
    y_all = sum((np.where(m, t.y, 0.0) for m, t in zip(ok, tracks.values(), strict=True)), np.zeros(hours))
    mu_all = sum((np.where(m, t.mu, 0.0) for m, t in zip(ok, tracks.values(), strict=True)), np.zeros(hours))
    for ep in merge_episodes([e for e in pooled.episodes if e.detected_at is not None]):
        if (found := _enough(ep, y_all, mu_all, hours)) is not None:
            out.append(_surge(kind, subject, found, tracks, start, hours, p, spans))
    # a sensor's own surge that no surge above explains
    own = sorted(((ep, s) for s, t in tracks.items()
                  for ep in merge_episodes([e for e in t.cusum.episodes if e.detected_at is not None])),
                 key=lambda e: (e[0].onset, e[1]))
    for ep, sensor in own:
        end = ep.end if ep.end is not None else hours - 1
        if any(ep.onset <= b + p.agree_hours and end >= a - p.agree_hours for a, b in spans):
            continue
        t = tracks[sensor]
        if (found := _enough(ep, np.nan_to_num(t.y), np.nan_to_num(t.mu), hours)) is not None:
            out.append(_surge(kind, subject, found, tracks, start, hours, p, spans))
    return out


def _enough(ep: Episode, y: FloatArray, mu: FloatArray, hours: int) -> Episode | None:
    """``ep`` decided no earlier than the hour its excess over the baseline (observed - expected,
    from the onset) reaches :data:`MIN_EXCESS`; None if it never does. Why: on a sparse series (a
    /16 that sends a source every few hours) a likelihood ratio can pass the threshold on a handful
    of sources, and among dozens of sparse subjects one will; a surge of fewer than ten extra
    sources is not one an operator can act on."""
    assert ep.detected_at is not None
    end = ep.end if ep.end is not None else hours - 1
    excess = np.cumsum(y[ep.onset:end + 1] - mu[ep.onset:end + 1])
    ready = np.flatnonzero(excess[ep.detected_at - ep.onset:] >= MIN_EXCESS)
    if ready.size == 0:
        return None
    return replace(ep, detected_at=ep.detected_at + int(ready[0]))


def run_detector(series: Mapping[str, FloatArray], active: Mapping[str, BoolArray], start: datetime, *,
                 coverage: float = 1.0, params: Params | None = None) -> tuple[dict[str, Track], Cusum]:
    """Each sensor's series and the pooled one through baseline and CUSUM, 24 hours at a time:
    every day's baseline is fitted on the four weeks before it, leaving out the hours of surges
    already decided (so a long surge does not become the baseline). Returns the sensors' tracks
    and the pooled CUSUM (its ``episodes``)."""
    p = params or Params()
    hours = len(next(iter(series.values())))
    hod, dow = calendar(start, hours)
    scale = np.ones(hours)
    scale[-1] = coverage
    tracks = {s: Track(np.asarray(series[s], dtype=np.float64), np.asarray(active[s], dtype=bool),
                       np.full(hours, np.nan), np.full(hours, np.nan), np.full(hours, np.nan), np.zeros(hours),
                       Cusum(p.threshold, p.confirm, p.cap), np.zeros(hours, dtype=bool))
              for s in sorted(series)}
    # warm-up: a week of history when the sensor has more than a week, else a day (thin-data mode)
    warm = {s: (WEEKLY_DAYS if np.count_nonzero(t.active) >= (WEEKLY_DAYS + 1) * 24 else 1) * 24
            for s, t in tracks.items()}
    pooled = Cusum(p.threshold, p.confirm, p.cap)
    for block in range(0, hours, 24):
        stop = min(hours, block + 24)
        lo = max(0, block - FIT_DAYS * 24)
        for s, t in tracks.items():
            ok = t.active[lo:block] & ~t.excluded[lo:block]
            if np.count_nonzero(t.active[:block]) < warm[s]:
                continue
            age = (block - np.arange(lo, block)) / 24.0
            fit = fit_seasonal(t.y[lo:block], ok, hod[lo:block], dow[lo:block], age)
            if fit.mode == "none":
                continue
            mu = fit.expected(hod[block:stop], dow[block:stop]) * scale[block:stop]
            t.mu[block:stop] = mu
            t.phi[block:stop] = fit.dispersion
            t.days[block:stop] = fit.days
            inc = llr_increments(t.y[block:stop], mu, fit.dispersion, p.ratio)
            t.inc[block:stop] = np.where(t.active[block:stop], inc, np.nan)
        for h in range(block, stop):
            total, any_data = 0.0, False
            for t in tracks.values():
                if not math.isnan(t.inc[h]):
                    t.cusum.step(h, float(t.inc[h]))
                    total += float(t.inc[h])
                    any_data = True
                    if t.cusum.in_surge and t.cusum.current is not None:
                        t.excluded[t.cusum.current.onset:h + 1] = True
            if any_data:
                pooled.step(h, total)
                if pooled.in_surge and pooled.current is not None:
                    for t in tracks.values():
                        t.excluded[pooled.current.onset:h + 1] = True
    return tracks, pooled


def merge_episodes(episodes: Sequence[Episode], gap: int = MERGE_GAP_HOURS) -> list[Episode]:
    """Detected episodes that follow each other within ``gap`` hours, as one: a rise that pauses
    overnight (a diurnal trough brings the statistic down by the threshold) is one surge."""
    out: list[Episode] = []
    for ep in episodes:
        prev = out[-1] if out else None
        if prev is not None and prev.end is not None and ep.onset - prev.end <= gap:
            out[-1] = Episode(onset=prev.onset, confirmed_at=prev.confirmed_at, detected_at=prev.detected_at,
                              end=ep.end, peak=max(prev.peak, ep.peak),
                              peak_at=prev.peak_at if prev.peak >= ep.peak else ep.peak_at)
        else:
            out.append(ep)
    return out


def _surge(kind: SurgeKind, subject: str, ep: Episode, tracks: Mapping[str, Track], start: datetime, hours: int,
           p: Params, spans: list[tuple[int, int]]) -> Surge:
    assert ep.detected_at is not None
    end = ep.end if ep.end is not None else hours - 1
    spans.append((ep.onset, end))
    lo = max(0, ep.onset - p.agree_hours)
    around = slice(lo, min(hours, ep.onset + p.agree_hours + 1))
    reporting = [s for s, t in tracks.items() if np.any(~np.isnan(t.inc[around]))]
    agreeing = [s for s in reporting
                if peak_cusum(tracks[s].inc[lo:end + 1], p.cap, ep.onset + p.agree_hours - lo) >= p.confirm]
    use = agreeing or reporting
    span = slice(ep.onset, end + 1)
    observed = expected = 0.0
    counted = np.zeros(end + 1 - ep.onset, dtype=bool)
    for s in use:
        t = tracks[s]
        ok = ~np.isnan(t.inc[span])
        observed += float(t.y[span][ok].sum())
        expected += float(t.mu[span][ok].sum())
        counted |= ok
    n = max(1, int(np.count_nonzero(counted)))
    baseline, seen = expected / n, observed / n
    thin = [f"{s}: {note}" for s in use
            if (note := baseline_note(float(tracks[s].days[ep.detected_at]))) and tracks[s].days[ep.detected_at] > 0]
    return Surge(
        kind=kind, subject=subject, metric="sources",
        since=start + timedelta(hours=ep.onset),
        detected_at=start + timedelta(hours=ep.detected_at + 1),
        baseline=round(baseline, DECIMALS), observed=round(seen, DECIMALS),
        ratio=round(seen / baseline, DECIMALS) if baseline > 0 else None,
        strength=round(ep.peak, DECIMALS), threshold=p.threshold,
        sensors=len(agreeing), sensors_total=len(reporting),
        scope="agreed" if len(agreeing) >= p.min_sensors else "local",
        active=ep.end is None, method=METHOD,
        note="; ".join(f"{n} (hour-of-day profile only)" for n in thin) or None,
    )
