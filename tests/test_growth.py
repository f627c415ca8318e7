"""Growth estimation (stormwatch.analytics.growth) on simulated SI epidemics and non-worm noise.

Simulated series are seeded. Tolerances: the fitted rate within 15 % of the true rate once the
epidemic has run for a few doublings; the population within 10 % (and inside its interval) once
the curve has passed its inflection; the population None before the curve bends.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from stormwatch.analytics.growth import (
    MIN_SOURCES,
    analyse,
    bias_corrected,
    choose_width,
    detection_probability,
    fit_logistic,
    rebin,
    zou_filter,
)


def si_counts(rng: np.random.Generator, *, n: int, rate: float, hours: int, t0: float, b: float = 1.0) -> np.ndarray:
    """Stochastic SI (binomial infections per hour) seen by a monitor catching each infected,
    unseen host with probability ``b`` per hour; returns new sources seen per hour."""
    infected = max(1, round(n / (1 + math.exp(rate * t0))))
    unseen = infected
    out = []
    for _ in range(hours):
        got = int(rng.binomial(n - infected, -math.expm1(-rate * infected / n)))
        seen = int(rng.binomial(unseen, b))
        unseen += got - seen
        infected += got
        out.append(seen)
    return np.array(out, dtype=np.float64)


def test_si_epidemic_rate_and_population() -> None:
    rng = np.random.default_rng(7)
    new = si_counts(rng, n=3000, rate=0.12, hours=140, t0=70)
    early = analyse(new[:50])
    assert early.decision == "outbreak"
    assert early.fit is not None
    assert early.fit.rate == pytest.approx(0.12, rel=0.15)
    assert early.fit.population is None  # before the bend: unbounded above
    assert early.note is not None and "not bent" in early.note
    late = analyse(new)
    assert late.fit is not None and late.fit.population is not None
    assert late.fit.population == pytest.approx(3000, rel=0.10)
    assert late.fit.population_low is not None and late.fit.population_high is not None
    assert late.fit.population_low <= 3000 <= late.fit.population_high * 1.02
    assert late.fit.rate == pytest.approx(0.12, rel=0.15)
    assert late.rate_stderr is not None and 0 < late.rate_stderr < 0.05


def test_decided_early_in_the_outbreak() -> None:
    rng = np.random.default_rng(11)
    n = 5000
    new = si_counts(rng, n=n, rate=0.1, hours=150, t0=110)
    first_flag = next(t for t in range(1, new.size + 1) if analyse(new[:t], fit=False).decision == "outbreak")
    # infected then (b = 1: every infected host is a seen source) under 2 % of the population
    assert new[:first_flag].sum() < 0.02 * n


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_constant_background_is_not_an_outbreak(seed: int) -> None:
    rng = np.random.default_rng(seed)
    series = rng.poisson(4.0, 24 * 20).astype(np.float64)
    for t in range(24, series.size + 1, 7):
        assert analyse(series[:t], fit=False).decision in ("no-growth", "insufficient-data")


def test_burst_then_nothing_is_not_an_outbreak() -> None:
    series = np.zeros(24 * 5)
    series[:30] = [1, 0, 0, 1, 0, 0, 0, 1, 0, 0] * 3
    series[40] = 120
    series[41] = 80
    for t in range(1, series.size + 1):
        assert analyse(series[:t], fit=False).decision != "outbreak", t


def test_noisy_bursts_on_a_background_are_not_an_outbreak() -> None:
    rng = np.random.default_rng(5)
    series = rng.poisson(1.0, 24 * 10).astype(np.float64)
    series[[30, 100, 170]] += [150, 60, 200]
    for t in range(1, series.size + 1, 3):
        assert analyse(series[:t], fit=False).decision != "outbreak", t


def test_sparse_counts_are_binned_wider() -> None:
    rng = np.random.default_rng(3)
    # a single honeypot's view: well under one new source per hour, growing
    hourly = rng.poisson(0.1 * np.exp(0.025 * np.arange(150)))
    width = choose_width(hourly.astype(np.float64))
    assert width is not None and width > 1
    g = analyse(hourly.astype(np.float64))
    assert g.width == width
    assert g.new.sum() == hourly.sum()
    assert g.decision in ("outbreak", "growing")
    assert g.rate == pytest.approx(0.025, rel=0.35)


def test_rebin_aligns_bins_and_keeps_counts() -> None:
    counts = np.arange(1.0, 8.0)  # base bins with absolute indices 5..11
    c, e, offset = rebin(counts, np.ones(7), 3, phase=5)
    # bins [3,6) [6,9) [9,12): index 5 is the last of the first bin
    assert offset == -2
    assert c.tolist() == [1.0, 2 + 3 + 4, 5 + 6 + 7]
    assert e.tolist() == [1.0, 1.0, 1.0]
    c, e, _ = rebin(counts[:5], np.ones(5), 3, phase=5)
    assert c.tolist() == [1.0, 9.0, 5.0]
    assert e[-1] == pytest.approx(1 / 3)  # the last bin is still filling


def test_insufficient_data() -> None:
    assert analyse(np.array([])).decision == "insufficient-data"
    assert analyse(np.zeros(48)).decision == "insufficient-data"
    one = analyse(np.array([0, 0, 1, 0, 0], dtype=np.float64))
    assert one.decision == "insufficient-data"
    assert one.note is not None and "1 distinct source" in one.note
    assert one.rate is None and one.fit is None
    assert fit_logistic(np.array([1.0, 1.0])) is None
    assert analyse(np.full(3, float(MIN_SOURCES))).decision == "insufficient-data"  # 3 bins only


def test_prior_sources_slow_the_apparent_growth() -> None:
    series = np.full(48, 3.0)
    assert zou_filter(series, prior=10_000).decided is None
    g = analyse(series, prior=10_000)
    assert g.cumulative[-1] == 10_000 + 144


def test_bias_correction_and_detection_probability() -> None:
    # a /16 telescope and Code Red's 358 scans/min: about 0.28 per hour
    b = detection_probability(65536, 358 * 60, 1.0)
    assert b == pytest.approx(1 - (1 - 2.0**-16) ** (358 * 60), rel=1e-9)
    assert b == pytest.approx(1 - math.exp(-358 * 60 / 65536), rel=1e-4)
    cum = np.array([0.0, 10.0, 30.0, 70.0])
    assert bias_corrected(cum, 0.5).tolist() == [20.0, 50.0, 110.0]
    assert bias_corrected(cum, 1.0).tolist() == cum[1:].tolist()


def test_population_with_known_observation_bias() -> None:
    rng = np.random.default_rng(21)
    # each infected host reaches the monitor with probability 0.3 per hour: the seen curve lags
    new = si_counts(rng, n=2000, rate=0.15, hours=110, t0=50, b=0.3)
    naive = fit_logistic(new)
    corrected = fit_logistic(new, b=0.3)
    assert corrected is not None and corrected.population is not None
    assert corrected.population == pytest.approx(2000, rel=0.15)
    assert corrected.rate == pytest.approx(0.15, rel=0.2)
    assert naive is not None
    # without the correction the rate is still about right (a constant share of an exponential)
    assert naive.rate == pytest.approx(0.15, rel=0.3)
