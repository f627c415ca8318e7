"""A robust seasonal baseline for hourly counts, and a CUSUM change-point test on its residuals.

Pure functions over numpy arrays (no I/O, no clock): :mod:`stormwatch.analytics.surges` feeds them
the hourly series of the store; ``bench/eval/eval_surges.py`` feeds them simulated ones.

**Baseline.** The expected count of an hour is ``level * daily[hour of day] * weekly[weekday]``,
fitted on the (at most) :data:`FIT_DAYS` days before it. Why a product of a 24-hour and a 7-day
profile rather than 168 hour-of-week medians: four weeks give each hour-of-week cell only four
values, so its median is as noisy as one day's count; the product has 31 factors, each estimated
from at least four days of data, and it is still the daily x weekly shape of scan traffic
(office-hours peaks, quiet weekends). Robustness: a first fit (on counts capped at twice their
99th percentile) is used to clip every hour at ``expected + 4 sd + 2`` (one burst, one scanner's
hour, cannot lift the profile), then the fit is redone on the clipped counts. Recent weeks weigh
more (half-life :data:`HALF_LIFE_DAYS` days), so the level follows slow drifts. Each factor is
shrunk towards 1 by a gamma prior of a few counts, so a sparse series gets a flat profile rather
than one made of noise (the prior matters for a series of a few counts a day, not for one of
hundreds an hour). With less than :data:`WEEKLY_DAYS` days of history the weekday profile is left
out (``mode = "daily"``) and a note says so
("not enough data for a baseline: 3 of 7 days"); with less than a day there is no baseline.

**Variance.** Counts of sources or attempts per hour are overdispersed Poisson: the variance is
about ``a * mean`` (Polunchenko, Tartakovsky, Mukhopadhyay 2012; research notes section 4.4), with
``a`` (the *dispersion*, phi) >= 1. phi is estimated from the Pearson residuals of the fit,
``(y - mu) / sqrt(mu)``, robustly: the median of their squares over the median of chi-square(1)
(0.4549), never below 1 (a series is not assumed to be more regular than Poisson).

**Change-point test.** CUSUM on the quasi-likelihood ratio of a rise by the design ratio ``rho``
(default 2, the target of issue 4): each hour adds ``(y ln rho - (rho - 1) mu) / phi``, which is
the log-likelihood ratio of ``rho * mu`` against ``mu`` for a Poisson count, scaled by phi for
overdispersion (Lucas 1985's Poisson CUSUM; the standardised residual weighted by the hour's
expected count). It is positive only when ``y > mu (rho - 1) / ln rho`` (1.44 mu for rho = 2), so a
baseline that is a few percent off does not accumulate. Why CUSUM rather than Shiryaev-Roberts:
the two have near-identical delays at the false-alarm rates we run at (Polunchenko et al. find SR
slightly ahead for faint changes only), and CUSUM gives the onset for free (the last hour its
statistic was zero, the maximum-likelihood change point), which a surge must report; its decision
statistic is a log-likelihood ratio, readable as a strength. Each hour's contribution is capped at
:data:`CAP_FRACTION` of the threshold, so one noisy hour can never decide a surge on its own: at
least two hours of evidence are needed. An episode ends when the statistic has fallen by the
threshold from its peak (the rise is over), or back to zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

FIT_DAYS = 28  # the baseline looks back four weeks
HALF_LIFE_DAYS = 14.0  # weight of an hour halves every two weeks back
WEEKLY_DAYS = 7  # a weekday profile needs a week of history
MIN_DAYS = 1.0  # below a day of history there is no baseline at all
DAILY_PRIOR_COUNTS = 5.0  # pseudo-counts pulling each hour-of-day factor towards 1
WEEKLY_PRIOR_COUNTS = 10.0  # pseudo-counts pulling each weekday factor towards 1
CLIP_SD = 4.0  # robust pass: counts above expected + 4 sd + 2 are clipped
CHI2_1_MEDIAN = 0.4549364231195724  # median of chi-square with 1 degree of freedom

DESIGN_RATIO = 2.0  # the rise the CUSUM is tuned to (issue 4's target: 2x baseline)
THRESHOLD = 9.0  # log-likelihood ratio to decide a surge (tuned in bench/eval/eval_surges.py)
CONFIRM_FRACTION = 0.5  # a sensor agrees with a surge at half the threshold
CAP_FRACTION = 0.6  # one hour adds at most 0.6 x threshold: two hours needed to decide

Mode = Literal["weekly", "daily", "none"]


def calendar(start: datetime, hours: int) -> tuple[IntArray, IntArray]:
    """Hour of day (0-23) and weekday (Monday 0) of each of ``hours`` hours from ``start``."""
    first = start.weekday() * 24 + start.hour
    index = np.arange(hours, dtype=np.int64) + first
    return index % 24, (index // 24) % 7


def hour_starts(start: datetime, hours: int) -> list[datetime]:
    return [start + timedelta(hours=i) for i in range(hours)]


def baseline_note(days: float) -> str | None:
    """The note given when a baseline rests on less than a week of data."""
    if days >= WEEKLY_DAYS:
        return None
    return f"not enough data for a baseline: {int(days)} of {WEEKLY_DAYS} days"


@dataclass(frozen=True, slots=True)
class SeasonalFit:
    """A fitted baseline: ``expected(hod, dow) = level * daily[hod] * weekly[dow]`` per hour."""

    level: float
    daily: FloatArray
    weekly: FloatArray
    dispersion: float
    days: float  # days of history the fit used
    mode: Mode

    def expected(self, hod: IntArray, dow: IntArray) -> FloatArray:
        out: FloatArray = self.level * self.daily[hod] * self.weekly[dow]
        return out

    @property
    def note(self) -> str | None:
        note = baseline_note(self.days)
        if note and self.mode == "daily":
            return note + " (hour-of-day profile only)"
        return note


NO_FIT = SeasonalFit(0.0, np.ones(24), np.ones(7), 1.0, 0.0, "none")


def fit_seasonal(y: FloatArray, ok: BoolArray, hod: IntArray, dow: IntArray,
                 age_days: FloatArray | None = None) -> SeasonalFit:
    """The baseline of the hours where ``ok`` holds (see the module docstring).

    ``y``: counts; ``ok``: the hours to learn from (the sensor was reporting and no surge was
    under way); ``age_days``: how old each hour is at the time of the forecast (for the weights;
    default: all equal)."""
    days = float(np.count_nonzero(ok)) / 24.0
    if days < MIN_DAYS:
        return SeasonalFit(0.0, np.ones(24), np.ones(7), 1.0, days, "none")
    mode: Mode = "weekly" if days >= WEEKLY_DAYS else "daily"
    weights = np.where(ok, 1.0, 0.0)
    if age_days is not None:
        weights = weights * np.power(0.5, age_days / HALF_LIFE_DAYS)
    y = np.asarray(y, dtype=np.float64)
    # a first, rough cap (twice the 99th percentile): one hour of 50,000 must not set the scale
    # the robust pass below measures against
    rough = np.minimum(y, 2.0 * float(np.quantile(y[ok], 0.99)) + 5.0)
    first = _fit(rough, weights, hod, dow, mode == "weekly")
    mu = first.level * first.daily[hod] * first.weekly[dow]
    phi = dispersion(y, mu, ok)
    clipped = np.minimum(y, mu + CLIP_SD * np.sqrt(phi * mu) + 2.0)
    level, daily, weekly = _fit(clipped, weights, hod, dow, mode == "weekly").parts()
    mu = level * daily[hod] * weekly[dow]
    return SeasonalFit(level, daily, weekly, dispersion(y, mu, ok), days, mode)


@dataclass(frozen=True, slots=True)
class _Parts:
    level: float
    daily: FloatArray
    weekly: FloatArray

    def parts(self) -> tuple[float, FloatArray, FloatArray]:
        return self.level, self.daily, self.weekly


def _fit(y: FloatArray, w: FloatArray, hod: IntArray, dow: IntArray, weekly_on: bool) -> _Parts:
    total_w = float(w.sum())
    mean = float((w * y).sum()) / total_w
    daily, weekly = np.ones(24), np.ones(7)
    if mean <= 0.0:
        return _Parts(0.0, daily, weekly)
    # Alternate the two profiles (iterative proportional fitting); two rounds settle them.
    for _ in range(2):
        base = mean * weekly[dow]
        num = np.bincount(hod, weights=w * y, minlength=24)
        den = np.bincount(hod, weights=w * base, minlength=24)
        daily = (num + DAILY_PRIOR_COUNTS) / (den + DAILY_PRIOR_COUNTS)
        daily = daily / daily.mean()
        if weekly_on:
            base = mean * daily[hod]
            num = np.bincount(dow, weights=w * y, minlength=7)
            den = np.bincount(dow, weights=w * base, minlength=7)
            weekly = (num + WEEKLY_PRIOR_COUNTS) / (den + WEEKLY_PRIOR_COUNTS)
            weekly = weekly / weekly.mean()
        shape = daily[hod] * weekly[dow]
        mean = float((w * y).sum()) / float((w * shape).sum())
    return _Parts(mean, daily, weekly)


def dispersion(y: FloatArray, mu: FloatArray, ok: BoolArray) -> float:
    """phi of ``var = phi * mean``: median squared Pearson residual / median of chi-square(1), >= 1,
    over the busier half of the hours. Why the busier half: real counts are more overdispersed
    the higher the rate (a negative binomial's variance grows like mean + mean^2 / k), and the
    busy hours are where a surge is tested hardest; their phi is the conservative one."""
    sel = ok & (mu > 0)
    if not np.any(sel):
        return 1.0
    sel &= mu >= np.median(mu[sel])
    r2 = (y[sel] - mu[sel]) ** 2 / mu[sel]
    return max(1.0, float(np.median(r2)) / CHI2_1_MEDIAN)


def llr_increments(y: FloatArray, mu: FloatArray, phi: FloatArray | float,
                   ratio: float = DESIGN_RATIO) -> FloatArray:
    """Per hour, the quasi-log-likelihood ratio of ``ratio * mu`` against ``mu`` for count ``y``."""
    out: FloatArray = (np.asarray(y, dtype=np.float64) * math.log(ratio) - (ratio - 1.0) * mu) / phi
    return out


@dataclass(slots=True)
class Episode:
    """One excursion of a CUSUM statistic: from ``onset`` (first hour of the rise) to ``end``
    (the hour it was over; None while it lasts). ``confirmed_at`` / ``detected_at``: the hours it
    crossed the confirmation level / the threshold (None if it never did); ``peak``: its maximum."""

    onset: int
    confirmed_at: int | None = None
    detected_at: int | None = None
    end: int | None = None
    peak: float = 0.0
    peak_at: int = 0


@dataclass(slots=True)
class Cusum:
    """A one-sided CUSUM over increments given hour by hour (hours without data are skipped:
    the statistic holds). Episodes that reached the confirmation level are kept in ``episodes``."""

    threshold: float = THRESHOLD
    confirm: float = THRESHOLD * CONFIRM_FRACTION
    cap: float = THRESHOLD * CAP_FRACTION
    stat: float = 0.0
    current: Episode | None = None
    episodes: list[Episode] = field(default_factory=list)

    def step(self, t: int, inc: float) -> None:
        inc = min(inc, self.cap)
        if self.stat <= 0.0:
            if inc <= 0.0:
                return
            self.current = Episode(onset=t)
        ep = self.current
        assert ep is not None
        self.stat = max(0.0, self.stat + inc)
        if self.stat > ep.peak:
            ep.peak, ep.peak_at = self.stat, t
        if ep.confirmed_at is None and self.stat >= self.confirm:
            ep.confirmed_at = t
            self.episodes.append(ep)
        if ep.detected_at is None and self.stat >= self.threshold:
            ep.detected_at = t
        if self.stat <= 0.0 or (ep.detected_at is not None and self.stat <= ep.peak - self.threshold):
            if ep.confirmed_at is not None:
                ep.end = t
            self.stat, self.current = 0.0, None

    @property
    def in_surge(self) -> bool:
        return self.current is not None and self.current.detected_at is not None


def peak_cusum(increments: FloatArray, cap: float, start_by: int | None = None) -> float:
    """The highest value a fresh CUSUM reaches over ``increments`` (NaN = no data, skipped),
    counting only excursions that began at index ``start_by`` or before (None: any)."""
    stat = best = 0.0
    onset = 0
    for i, inc in enumerate(increments):
        if math.isnan(inc):
            continue
        if stat <= 0.0:
            onset = i
        stat = max(0.0, stat + min(float(inc), cap))
        if start_by is None or onset <= start_by:
            best = max(best, stat)
    return best
