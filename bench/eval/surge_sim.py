"""Simulated hourly source counts for the surge evaluation: seasonal, overdispersed, drifting.

One *scenario* is a few sensors watching one port for some weeks. Each sensor's expected distinct
sources per hour is ``base * sensor share * daily(hour) * weekly(weekday) * drift(day)``:

- daily: a cosine with a peak in the (UTC) afternoon, amplitude 0.3-0.6 (scan traffic follows the
  waking hours of the infected machines' owners);
- weekly: weekends 0.75-0.95 of weekdays;
- drift: a multiplicative random walk of the daily level, 3 % a day (background changes slowly);
- counts: negative binomial (a gamma-Poisson mixture) with ``var = mu + mu^2 / 30``, so the
  variance grows like ``a * mean`` with ``a`` rising from 1 at low rates to ~4 at 100 an hour;
- noisy hours: about one hour a week per sensor is 3x (one burst: must not be a surge);
- a surge multiplies the rate by ``ratio`` from ``onset`` on (on every sensor, or on one).

Seeded: a scenario is a pure function of its parameters and seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

START = datetime(2024, 7, 1)  # a Monday
NB_SIZE = 30.0
NOISY_HOURS_PER_WEEK = 1.0


@dataclass(frozen=True)
class Scenario:
    base: float  # sources per hour at an average sensor, before seasonality
    days: int = 35
    sensors: int = 3
    ratio: float = 1.0  # 1 = quiet
    onset: int | None = None  # hour index of the surge start
    surge_sensors: int | None = None  # how many sensors see the surge (None: all)
    seed: int = 0


def simulate(sc: Scenario) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(sc.seed)
    hours = sc.days * 24
    idx = np.arange(hours)
    hod = (START.hour + idx) % 24
    dow = ((START.weekday() * 24 + START.hour + idx) // 24) % 7
    out: dict[str, np.ndarray] = {}
    shares = np.linspace(0.7, 1.3, sc.sensors) if sc.sensors > 1 else np.ones(1)
    surged = sc.sensors if sc.surge_sensors is None else sc.surge_sensors
    for i in range(sc.sensors):
        amp = rng.uniform(0.3, 0.6)
        peak = rng.uniform(13, 18)
        weekend = rng.uniform(0.75, 0.95)
        daily = 1 + amp * np.cos(2 * np.pi * (hod - peak) / 24)
        weekly = np.where(dow >= 5, weekend, 1.0)
        drift = np.exp(np.cumsum(rng.normal(0, 0.03, sc.days)))[idx // 24]
        mu = sc.base * shares[i] * daily * weekly * drift
        noisy = rng.random(hours) < NOISY_HOURS_PER_WEEK / 168
        mu = np.where(noisy, 3 * mu, mu)
        if sc.onset is not None and i < surged:
            mu = np.where(idx >= sc.onset, sc.ratio * mu, mu)
        lam = rng.gamma(NB_SIZE, mu / NB_SIZE)
        out[f"s{i + 1}"] = rng.poisson(lam).astype(np.float64)
    return out
