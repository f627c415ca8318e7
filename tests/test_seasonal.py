"""The seasonal baseline and the CUSUM of stormwatch.analytics.seasonal, on synthetic series."""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import pytest

from stormwatch.analytics.seasonal import (
    Cusum,
    baseline_note,
    calendar,
    dispersion,
    fit_seasonal,
    llr_increments,
    peak_cusum,
)

MONDAY = datetime(2024, 7, 1)


def profile(hours: int, level: float = 40.0, start: datetime = MONDAY) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected counts with a diurnal peak at 15:00 (x1.5, trough x0.5) and weekends at 0.6."""
    hod, dow = calendar(start, hours)
    mu = level * (1 + 0.5 * np.cos(2 * np.pi * (hod - 15) / 24)) * np.where(dow >= 5, 0.6, 1.0)
    return mu, hod, dow


def test_calendar_counts_hours_and_weekdays_from_the_start() -> None:
    hod, dow = calendar(datetime(2024, 7, 7, 22), 4)  # a Sunday, 22:00
    assert hod.tolist() == [22, 23, 0, 1]
    assert dow.tolist() == [6, 6, 0, 0]


def test_fit_recovers_the_daily_and_weekly_profile() -> None:
    # many counts an hour, so that what is left is the method's bias, not sampling noise
    mu, hod, dow = profile(28 * 24, level=1000.0)
    y = np.random.default_rng(1).poisson(mu).astype(float)
    fit = fit_seasonal(y, np.ones(y.size, dtype=bool), hod, dow)
    assert fit.mode == "weekly" and fit.note is None
    got = fit.expected(hod, dow)
    assert np.max(np.abs(got / mu - 1)) < 0.05
    assert fit.daily[15] / fit.daily[3] == pytest.approx(3.0, rel=0.1)
    assert fit.weekly[6] / fit.weekly[2] == pytest.approx(0.6, rel=0.1)
    assert 0.9 <= fit.dispersion < 1.3  # Poisson


def test_dispersion_follows_variance_proportional_to_the_mean() -> None:
    mu, hod, dow = profile(28 * 24)
    rng = np.random.default_rng(2)
    # gamma-Poisson with var = 3 * mean: gamma shape mu / 2, scale 2
    y = rng.poisson(rng.gamma(mu / 2, 2.0)).astype(float)
    fit = fit_seasonal(y, np.ones(y.size, dtype=bool), hod, dow)
    assert fit.dispersion == pytest.approx(3.0, rel=0.3)
    assert dispersion(np.zeros(5), np.zeros(5), np.ones(5, dtype=bool)) == 1.0


def test_one_huge_hour_does_not_lift_the_baseline() -> None:
    mu, hod, dow = profile(14 * 24)
    y = np.random.default_rng(3).poisson(mu).astype(float)
    clean = fit_seasonal(y, np.ones(y.size, dtype=bool), hod, dow)
    y[100] = 50_000
    spiked = fit_seasonal(y, np.ones(y.size, dtype=bool), hod, dow)
    assert spiked.level == pytest.approx(clean.level, rel=0.05)


def test_masked_hours_are_not_learned_from() -> None:
    mu, hod, dow = profile(14 * 24, level=1000.0)
    y = np.random.default_rng(4).poisson(mu).astype(float)
    ok = np.ones(y.size, dtype=bool)
    y[200:260] = 0  # a silent sensor reads zero: masked, it must not drag the level down
    ok[200:260] = False
    fit = fit_seasonal(y, ok, hod, dow)
    assert np.max(np.abs(fit.expected(hod, dow) / mu - 1)) < 0.08


def test_thin_history_falls_back_and_says_so() -> None:
    mu, hod, dow = profile(3 * 24)
    y = np.random.default_rng(5).poisson(mu).astype(float)
    fit = fit_seasonal(y, np.ones(y.size, dtype=bool), hod, dow)
    assert fit.mode == "daily" and np.all(fit.weekly == 1.0)
    assert fit.note == "not enough data for a baseline: 3 of 7 days (hour-of-day profile only)"
    none = fit_seasonal(y[:20], np.ones(20, dtype=bool), hod[:20], dow[:20])
    assert none.mode == "none" and none.days < 1
    assert baseline_note(7) is None and baseline_note(2.5) == "not enough data for a baseline: 2 of 7 days"


def test_an_all_zero_history_has_a_zero_baseline() -> None:
    _, hod, dow = profile(10 * 24)
    fit = fit_seasonal(np.zeros(hod.size), np.ones(hod.size, dtype=bool), hod, dow)
    assert fit.level == 0.0 and np.all(fit.expected(hod, dow) == 0.0)


def test_the_increment_is_positive_above_the_break_even_count() -> None:
    mu = np.array([10.0, 10.0, 10.0])
    inc = llr_increments(np.array([14.0, 15.0, 20.0]), mu, 1.0, ratio=2.0)
    # break-even at mu (rho - 1) / ln rho = 14.43
    assert inc[0] < 0 < inc[1]
    assert inc[2] == pytest.approx(20 * math.log(2) - 10)
    assert llr_increments(np.array([20.0]), np.array([10.0]), 2.0)[0] == pytest.approx(inc[2] / 2)


def test_one_hour_alone_never_decides_a_surge() -> None:
    c = Cusum(threshold=9.0, confirm=4.5, cap=5.4)
    c.step(0, 1000.0)  # capped at 5.4
    assert c.stat == pytest.approx(5.4) and c.current is not None and c.current.detected_at is None
    c.step(1, -20.0)
    assert c.stat == 0.0 and c.current is None
    assert [e.detected_at for e in c.episodes] == [None]  # it reached the confirmation level only


def test_two_strong_hours_decide_with_the_onset_at_the_first() -> None:
    c = Cusum(threshold=9.0, confirm=4.5, cap=5.4)
    for t, inc in enumerate([-1.0, -2.0, 0.5, -0.2, 5.0, 5.0, 5.0]):
        c.step(t, inc)
    (ep,) = c.episodes
    # the excursion that led to the decision began at hour 2 (the stat never returned to 0)
    assert ep.onset == 2 and ep.detected_at == 5 and ep.end is None and c.in_surge
    assert ep.peak == pytest.approx(15.3)
    for t in range(7, 20):  # the rise is over: the statistic falls by the threshold from its peak
        c.step(t, -1.0)
    assert ep.end == 15 and not c.in_surge  # at 15.3 - 9 = 6.3 the rise is over


def test_peak_cusum_skips_hours_without_data() -> None:
    assert peak_cusum(np.array([3.0, np.nan, 3.0, -10.0, 2.0]), cap=5.0) == pytest.approx(6.0)
    assert peak_cusum(np.array([100.0, np.nan]), cap=5.0) == pytest.approx(5.0)
    assert peak_cusum(np.array([np.nan]), cap=5.0) == 0.0
