"""Simulated random-scanning worm outbreaks (stochastic SI model) seen by a monitor, and non-worm
noise series, for bench/eval/eval_outbreak.py.

Worm: ``N`` vulnerable hosts, each infected host scans ``eta`` uniformly random IPv4 addresses per
hour; per step ``dt`` a susceptible host is infected with probability ``1 - exp(-eta dt I / 2^32)``
(binomial draw over the susceptibles), so the early growth rate is ``r = eta N / 2^32`` per hour
(Zou et al.'s alpha in continuous time). A monitor of ``A`` addresses sees an infected host for the
first time with probability ``1 - exp(-eta dt A / 2^32)`` per step (binomial draw over the infected
hosts it has not seen yet): that is the observation bias Zou et al. correct for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

OMEGA = 2.0**32


@dataclass(frozen=True)
class Worm:
    name: str
    scans_per_hour: float
    population: int
    base_bin_hours: float  # the monitor's base bin; the ladder of growth.choose_width multiplies it
    initial: int = 1

    @property
    def rate(self) -> float:
        """Early growth rate of the SI model, per hour."""
        return self.scans_per_hour * self.population / OMEGA

    @property
    def doubling_hours(self) -> float:
        return math.log(2.0) / self.rate


@dataclass(frozen=True)
class Run:
    new: np.ndarray  # new sources seen by the monitor per base bin
    infected: np.ndarray  # infected hosts at the end of each base bin


def simulate(worm: Worm, addresses: float, rng: np.random.Generator, *, until_fraction: float = 0.6,
             substeps: int = 4, max_bins: int = 5000) -> Run:
    """Run the outbreak until ``until_fraction`` of the population is infected (or ``max_bins``)."""
    dt = worm.base_bin_hours / substeps
    see = -math.expm1(-worm.scans_per_hour * dt * addresses / OMEGA)
    infected, unseen = worm.initial, worm.initial
    new, inf = [], []
    for _ in range(max_bins):
        seen = 0
        for _ in range(substeps):
            p_inf = -math.expm1(-worm.scans_per_hour * dt * infected / OMEGA)
            got = int(rng.binomial(worm.population - infected, p_inf))
            s = int(rng.binomial(unseen, see))
            seen += s
            unseen += got - s
            infected += got
        new.append(seen)
        inf.append(infected)
        if infected >= until_fraction * worm.population:
            break
    return Run(np.array(new, dtype=np.float64), np.array(inf, dtype=np.float64))


def noise(kind: str, hours: int, rng: np.random.Generator) -> np.ndarray:
    """Hourly new-source counts of a non-worm scenario."""
    t = np.arange(hours, dtype=np.float64)
    if kind == "constant":  # a steady background of scanners never seen before
        return rng.poisson(5.0, hours).astype(np.float64)
    if kind == "diurnal":  # the same with a strong daily cycle (x9 trough to peak)
        return rng.poisson(5.0 * (1.0 - 0.8 * np.cos(2 * np.pi * t / 24.0))).astype(np.float64)
    if kind == "bursts":  # low background and a campaign of 30-200 sources over 1-3 h every ~3 days
        out = rng.poisson(1.0, hours).astype(np.float64)
        for start in range(int(rng.integers(0, 72)), hours, 72):
            size = int(rng.integers(30, 201))
            span = int(rng.integers(1, 4))
            out[start: start + span] += rng.multinomial(size, [1.0 / span] * span)[: hours - start]
        return out
    if kind == "burst-then-nothing":  # one sweep of 100 sources, then a rare trickle
        out = rng.poisson(0.05, hours).astype(np.float64)
        out[hours // 3] += 100
        return out
    if kind == "ramp":  # new sources rising linearly 1 -> 10 per hour over the month
        return rng.poisson(1.0 + 9.0 * t / hours).astype(np.float64)
    raise ValueError(kind)
