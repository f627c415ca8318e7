"""Growth of an infected population from new-source counts: Zou's trend test and a logistic fit.

Pure functions over numpy arrays (no I/O, no clock); :mod:`stormwatch.analytics.outbreak` feeds them
the hourly series of :mod:`stormwatch.analytics.outbreak_queries`.

**Model.** A random-scanning worm follows the discrete SI (logistic) model of Zou, Gong, Towsley,
Gao ("Monitoring and Early Warning for Internet Worms", CCS 2003; "The Monitoring and Early
Detection of Internet Worms", IEEE/ACM ToN 13(5), 2005): ``I_t - I_{t-1} = alpha I_{t-1} (1 -
I_{t-1}/N)``, ``alpha = eta * N / 2^32`` for a scan rate ``eta`` per bin. Early on (``I << N``) the
infected count grows by a constant factor, and the number of *new* sources a monitor sees in a bin
is proportional to the infected count before it: ``y_t = alpha H_t + v_t`` with ``y_t`` the new
sources of bin ``t`` and ``H_t`` the cumulative before it. That is linear in ``alpha``, so a Kalman
filter estimates it bin by bin (:func:`zou_filter`).

**Decision** ("detect the trend, not the burst"): a worm's ``alpha`` estimate settles on a positive
constant; background noise makes it wander around zero or decay (a constant trickle of new sources
gives ``alpha ~ 1/age``, a burst a spike then a fall). An outbreak is declared when, for
``CONSECUTIVE`` bins in a row: the estimate is positive by ``Z`` standard errors, its range over the
last ``WINDOW`` bins is at most ``MAX_REL_RANGE`` of its value, ``alpha * age >= MIN_GROWTH``
(the cumulative has grown faster than any linear trickle can, for which ``alpha * age ~ 1``), and
at least ``MIN_SOURCES`` sources have been seen.

**Logistic fit** (:func:`fit_logistic`): Poisson likelihood of the new-source counts under the
logistic curve ``N / (1 + exp(-r (t - t0)))``; ``N`` is profiled out in closed form, ``(r, t0)`` on a
coarse-then-fine grid. Intervals are profile-likelihood intervals (chi-square 1 dof, 95 %). While
the curve has not bent, larger ``N`` fit as well: when the upper bound runs off the grid the
population is ``None``.

**Sparse counts** (:func:`choose_width`): the base bins (an hour in the store) are merged into
``BIN_LADDER`` multiples: the narrowest width whose bins, from the first source on, hold on average
``MIN_PER_BIN`` new sources, keeping at least ``MIN_BINS`` bins; if none reaches the average, the
widest that keeps ``MIN_BINS`` bins. Bins are aligned on multiples of their width in absolute
time (so a bin's content does not change as data arrives); the last bin, still filling, carries
its exposure (covered fraction), which scales its expected count and its variance.

**Decisions**: ``outbreak`` (the rule above was met at some bin), ``growing`` (the latest estimate is
significantly positive with ``alpha * age >= MIN_GROWTH``, not yet steady), ``no-growth``, or
``insufficient-data`` (fewer than ``MIN_SOURCES`` sources or ``MIN_BINS`` bins).

**Observation bias.** A monitor covering a fraction ``p`` of the address space sees an infected host
only after it has scanned there: per bin with probability ``b = 1 - (1 - p)^(eta Delta)``
(:func:`detection_probability`). Zou's correction estimates the infected count as
``I_t = C_t + (C_{t+1} - C_t) / b`` (:func:`bias_corrected`); the logistic fit folds the same
observation model into its likelihood (``c_{k+1} = c_k + b (L_{k+1} - c_k)``). Both need ``p`` and
``eta``; for the store's sensors they are unknown, so by default ``b = 1`` (every infected host is
seen at once) and the population is that of the sources *these sensors can see*. The growth rate
does not depend on ``b`` (a constant share of an exponential grows at the same rate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]

BIN_LADDER = (1, 2, 3, 6, 12, 24)  # base bins per bin (hours, in the store)
MIN_PER_BIN = 3.0  # adaptive binning target: mean new sources per bin (Poisson sd <= 58 %)
MIN_BINS = 4  # fewest bins from the first source on worth a trend
MIN_SOURCES = 5  # fewer distinct sources: insufficient data for any rate
FORGETTING = 0.8  # Kalman: P /= FORGETTING each step, a memory of ~5 bins, so alpha tracks the trend
WINDOW = 4  # stability window (bins)
MAX_REL_RANGE = 0.6  # (max - min) / alpha over WINDOW bins
MIN_GROWTH = 3.0  # alpha * age: a linear trickle of new sources stays near 1
CONSECUTIVE = 2  # bins in a row meeting every condition
Z = 2.0  # alpha must be this many standard errors above zero
CHI2_95 = 3.841  # chi-square 1 dof, 95 %: profile-likelihood cut is half of it
N_RANGE = 1.0e4  # population grid up to this many times the sources seen
_CHUNK = 1024  # grid cells evaluated at once
P0 = 4.0  # prior variance of alpha (per bin); the prior mean is 0 (no growth)


# -- binning -----------------------------------------------------------------------------------


def choose_width(counts: Array, *, ladder: tuple[int, ...] = BIN_LADDER, min_per_bin: float = MIN_PER_BIN,
                 min_bins: int = MIN_BINS) -> int | None:
    """The number of base bins to merge (see the module docstring), or None when even the
    narrowest width leaves fewer than ``min_bins`` bins from the first source on."""
    nz = np.flatnonzero(counts > 0)
    if nz.size == 0:
        return None
    span = counts.size - int(nz[0])  # base bins from the first source to the end
    total = float(counts.sum())
    usable = [m for m in ladder if math.ceil(span / m) >= min_bins]
    if not usable:
        return None
    for m in usable:
        if total / math.ceil(span / m) >= min_per_bin:
            return m
    return usable[-1]


def rebin(counts: Array, exposure: Array, width: int, phase: int = 0) -> tuple[Array, Array, int]:
    """``counts`` summed over ``width`` base bins, the bins aligned on multiples of ``width`` of the
    absolute base-bin index (``phase`` is the index of ``counts[0]``), so a bin's content does not
    change as later data arrives. ``exposure`` (the covered fraction of each base bin) is averaged
    the same way: the last bin, still filling, has exposure below 1. Returns the counts, the
    exposures and the offset of the first bin (``-pad``): the leading partial bin is padded with the
    zero counts that precede the series (its first row is the first source)."""
    pad = phase % width
    tail = (-(pad + counts.size)) % width
    c = np.concatenate([np.zeros(pad), counts, np.zeros(tail)]).reshape(-1, width).sum(axis=1)
    e = np.concatenate([np.ones(pad), exposure, np.zeros(tail)]).reshape(-1, width).mean(axis=1)
    return c, e, -pad


# -- observation bias (Zou et al.) --------------------------------------------------------------


def detection_probability(addresses: float, scans_per_hour: float, bin_hours: float) -> float:
    """Probability that one infected host scanning uniformly at ``scans_per_hour`` hits a monitor of
    ``addresses`` IPv4 addresses within a bin: ``1 - (1 - p)^(eta Delta)``, ``p = addresses / 2^32``."""
    p = addresses / 2.0**32
    return float(-math.expm1(scans_per_hour * bin_hours * math.log1p(-p)))


def bias_corrected(cumulative: Array, b: float) -> Array:
    """Zou's estimate of the infected count from the monitored cumulative ``C``:
    ``I_t = C_t + (C_{t+1} - C_t) / b`` (each infected, not yet seen host is seen with probability
    ``b`` per bin). One bin shorter than ``cumulative``: it needs the next bin."""
    return cumulative[:-1] + np.diff(cumulative) / b


# -- Zou's Kalman filter -------------------------------------------------------------------------


@dataclass(frozen=True)
class Trace:
    """The filter's path: per bin, the estimate of alpha (NaN before the first informative bin),
    its standard error, and whether every decision condition held."""

    alpha: Array
    alpha_se: Array
    steady: NDArray[np.bool_]
    decided: int | None  # first bin of the outbreak decision (CONSECUTIVE steady bins), or None


def zou_filter(new: Array, exposure: Array | None = None, *, b: float | None = None, prior: int = 0,
               forgetting: float = FORGETTING, window: int = WINDOW, max_rel_range: float = MAX_REL_RANGE,
               min_growth: float = MIN_GROWTH, consecutive: int = CONSECUTIVE, z: float = Z,
               min_sources: int = MIN_SOURCES) -> Trace:
    """Run the Kalman filter on the new-source counts per bin and apply the decision rule.

    Observation ``y_k = alpha H_k + v_k`` with ``y_k`` the new sources of bin ``k`` per full bin
    (divided by its exposure) and ``H_k`` the cumulative before it; with a detection probability
    ``b`` the bias-corrected infected estimates replace both (``y_k = I_k - I_{k-1}``,
    ``H_k = I_{k-1}``; the estimate for bin ``k`` then uses bin ``k + 1``). ``v_k`` has the Poisson
    variance of the count, ``max(alpha H_k, y_k, 1)`` (over ``b`` when corrected). The state is a random
    walk with exponential forgetting: a constant alpha is not assumed forever, so the estimate
    follows the current trend instead of averaging all history (which would settle for any input).
    ``prior`` sources were seen before the series began: they count in ``H`` from the first bin.
    """
    n = np.asarray(new, dtype=np.float64)
    e = np.ones_like(n) if exposure is None else np.asarray(exposure, dtype=np.float64)
    k_bins = n.size
    cum = np.cumsum(n) + prior
    if b is not None and b < 1.0:
        infected = bias_corrected(cum, b)  # index k -> bin k, needs bin k + 1
        h = np.concatenate([[float(prior)], infected[:-1]])
        y = np.diff(np.concatenate([[float(prior)], infected]))
        r_scale = 1.0 / b
    else:
        h = np.concatenate([[float(prior)], cum[:-1]])
        y = n / np.maximum(e, 1e-9)
        r_scale = 1.0
    m = y.size
    alpha = np.full(k_bins, np.nan)
    se = np.full(k_bins, np.nan)
    steady = np.zeros(k_bins, dtype=bool)
    a, p = 0.0, P0
    updated = False
    first = 0 if prior > 0 else (int(np.flatnonzero(n > 0)[0]) if np.any(n > 0) else k_bins)
    run = 0
    decided: int | None = None
    for k in range(m):
        if h[k] > 0:
            p = p / forgetting
            # Poisson variance at the larger of the predicted and the observed count: a burst
            # is then a noisy observation, not a precise one that pins alpha high
            r = max(a * h[k], y[k], 1.0) * r_scale / max(float(e[k]), 1e-9)
            gain = p * h[k] / (h[k] * h[k] * p + r)
            a = a + gain * (y[k] - a * h[k])
            p = (1.0 - gain * h[k]) * p
            updated = True
        if not updated:
            continue
        alpha[k], se[k] = a, math.sqrt(p)
        recent = alpha[max(0, k - window + 1): k + 1]
        ok = (
            k - window + 1 >= 0 and not np.isnan(recent).any()
            and a > z * se[k]
            and float(recent.max() - recent.min()) <= max_rel_range * a
            and a * (k - first + 1) >= min_growth
            and cum[k] >= min_sources
        )
        steady[k] = ok
        run = run + 1 if ok else 0
        if decided is None and run >= consecutive:
            decided = k
    return Trace(alpha, se, steady, decided)


# -- logistic fit --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogisticFit:
    """Maximum-likelihood logistic growth with 95 % profile-likelihood intervals; per hour."""

    rate: float
    rate_low: float | None  # None: the interval runs off the grid on that side
    rate_high: float | None
    rate_stderr: float | None
    population: float | None  # None while the curve has not bent enough to bound it
    population_low: float | None
    population_high: float | None
    inflection_hours: float  # t0, hours from the series start
    note: str | None = None


def _cells(r: Array, v: Array, t_end: float) -> tuple[Array, Array]:
    rr, vv = np.meshgrid(r, v, indexing="ij")
    return rr.ravel(), (vv / rr + t_end).ravel()  # v = r (t0 - t_end)


def _expected_shares(rates: Array, t0: Array, edges: Array, b: float, prior: bool) -> Array:
    """Per cell and bin, the expected new sources divided by N (the observation model above).
    With ``prior`` the first bin is everything before the series (seen in full by then)."""
    x = rates[:, None] * (edges[None, :] - t0[:, None])
    lgt = 0.5 * (1.0 + np.tanh(0.5 * x))  # logistic without overflow
    if b >= 1.0:
        c = lgt[:, 1:].copy()
    else:
        c = np.empty((rates.size, edges.size - 1))
        prev = np.zeros(rates.size)
        for k in range(edges.size - 1):
            bk = 1.0 if (k == 0 and prior) else b
            prev = prev + bk * (lgt[:, k + 1] - prev)
            c[:, k] = prev
    # b = 1: the hosts infected before the series are not counted in it (a sparse sensor may not
    # have seen them; the first row is only the first source *seen*); b < 1 models them as unseen
    start = lgt[:, :1] if b >= 1.0 else np.zeros((rates.size, 1))
    return np.diff(np.concatenate([start, c], axis=1), axis=1)


def _loglik(g: Array, n: Array, e: Array) -> tuple[Array, Array, Array]:
    """Per cell: S1 = sum n log(g e), S2 = sum g e, and the profile log-likelihood at N-hat."""
    ge = np.clip(g, 0.0, None) * e[None, :]
    pos = n > 0
    with np.errstate(divide="ignore"):
        s1 = (n[pos][None, :] * np.log(ge[:, pos])).sum(axis=1)
    s2 = ge.sum(axis=1)
    total = float(n.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        nhat = np.where(s2 > 0, total / s2, np.nan)
        ll = np.where(np.isfinite(s1) & (s2 > 0), s1 + total * np.log(nhat) - total, -np.inf)
    return s1, s2, ll


def fit_logistic(new: Array, exposure: Array | None = None, *, bin_hours: float = 1.0,
                 b: float | None = None, prior: int = 0, grid: int = 64) -> LogisticFit | None:
    """Fit the logistic curve to the new-source counts per bin (see the module docstring); ``prior``
    sources were first seen before the series began (they enter as one bin reaching back to the
    start of the epidemic). None when there are fewer than ``MIN_SOURCES`` sources or fewer than 3
    bins."""
    n = np.asarray(new, dtype=np.float64)
    e = np.ones_like(n) if exposure is None else np.asarray(exposure, dtype=np.float64)
    if n.size < 3 or float(n.sum()) + prior < MIN_SOURCES:
        return None
    bb = 1.0 if b is None else float(b)
    edges = np.arange(n.size + 1, dtype=np.float64) * bin_hours
    t_end = float(edges[-1])
    if prior > 0:
        n = np.concatenate([[float(prior)], n])
        e = np.concatenate([[1.0], e])
        edges = np.concatenate([[-1.0e12], edges])
    total = float(n.sum())
    v_hi = math.log(N_RANGE) + 3.0

    def scan(r: Array, v: Array) -> tuple[Array, Array, Array, Array, Array]:
        rates, t0 = _cells(r, v, t_end)
        parts = []
        for lo in range(0, rates.size, _CHUNK):  # bounded memory on long series
            sl = slice(lo, lo + _CHUNK)
            parts.append(_loglik(_expected_shares(rates[sl], t0[sl], edges, bb, prior > 0), n, e))
        s1, s2, ll = (np.concatenate([p[i] for p in parts]) for i in range(3))
        return rates, t0, s1, s2, ll

    r_lo, r_hi = 0.3 / t_end, 4.0 / bin_hours
    v_lo = -min(r_hi * t_end, 40.0) - 2.0
    coarse = scan(np.geomspace(r_lo, r_hi, grid), np.linspace(v_lo, v_hi, grid))
    ll_max = float(np.max(coarse[4]))
    if not math.isfinite(ll_max):
        return None
    near = coarse[4] >= ll_max - 8.0
    rs, vs = coarse[0][near], coarse[0][near] * (coarse[1][near] - t_end)
    r_step, v_step = (r_hi / r_lo) ** (1.0 / (grid - 1)), (v_hi - v_lo) / (grid - 1)
    fine = scan(np.geomspace(max(r_lo, rs.min() / r_step), min(r_hi, rs.max() * r_step), grid),
                np.linspace(max(v_lo, vs.min() - v_step), min(v_hi, vs.max() + v_step), grid))
    rates, t0, s1, s2, ll = (np.concatenate([c, f]) for c, f in zip(coarse, fine, strict=True))
    best = int(np.argmax(ll))
    ll_max = float(ll[best])
    cut = ll_max - CHI2_95 / 2.0
    inside = ll >= cut
    r_in = rates[inside]
    lo_r = float(r_in.min()) if r_in.min() > r_lo * 1.0001 else None
    hi_r = float(r_in.max()) if r_in.max() < r_hi * 0.9999 else None
    se = (hi_r - lo_r) / (2 * 1.96) if lo_r is not None and hi_r is not None else None
    # population: profile over N, each cell's likelihood at that N being S1 + n log N - N S2
    n_grid = np.geomspace(total, total * N_RANGE, 800)
    with np.errstate(invalid="ignore"):
        prof = np.max(np.where(np.isfinite(s1)[None, :],
                               s1[None, :] + total * np.log(n_grid)[:, None] - n_grid[:, None] * s2[None, :],
                               -np.inf), axis=1)
    n_in = n_grid[prof >= cut]
    n_hat = total / float(s2[best])
    note = None
    if n_in.size == 0 or n_in.max() >= n_grid[-2]:
        pop = pop_lo = pop_hi = None
        note = "the curve has not bent yet: the vulnerable population cannot be bounded"
    else:
        pop = n_hat  # the grid is discrete: keep the point estimate inside its interval
        pop_lo, pop_hi = float(max(min(n_in.min(), n_hat), total)), float(max(n_in.max(), n_hat))
    return LogisticFit(float(rates[best]), lo_r, hi_r, se, pop, pop_lo, pop_hi, float(t0[best]), note)


# -- everything together ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Growth:
    """The analysis of one subject's series: the chosen bins, the filter's path, the decision and
    the logistic fit. Bin ``k`` covers base bins ``[offset + k * width, offset + (k + 1) * width)``
    of the input (``offset`` is negative when the first bin was padded)."""

    width: int
    bin_hours: float
    offset: int
    new: Array
    exposure: Array
    cumulative: Array
    trace: Trace | None
    decision: str  # "outbreak", "growing", "no-growth", "insufficient-data"
    decided_bin: int | None
    fit: LogisticFit | None
    note: str | None

    @property
    def rate(self) -> float | None:
        """Per-hour growth rate: the logistic fit's, else the filter's last alpha."""
        if self.fit is not None:
            return self.fit.rate
        a = self._last_alpha()
        return None if a is None or a <= -1.0 else math.log1p(a) / self.bin_hours

    @property
    def rate_stderr(self) -> float | None:
        if self.fit is not None:
            return self.fit.rate_stderr
        a = self._last_alpha()
        if a is None or self.trace is None or a <= -1.0:
            return None
        return float(self.trace.alpha_se[~np.isnan(self.trace.alpha)][-1]) / ((1.0 + a) * self.bin_hours)

    def _last_alpha(self) -> float | None:
        if self.trace is None or np.isnan(self.trace.alpha).all():
            return None
        return float(self.trace.alpha[~np.isnan(self.trace.alpha)][-1])


def analyse(new: Array, exposure: Array | None = None, *, bin_hours: float = 1.0, b: float | None = None,
            prior: int = 0, phase: int = 0, fit: bool = True, width: int | None = None) -> Growth:
    """Bin the base series adaptively (or by ``width``), run the filter and decide; fit the
    logistic curve when there is growth to fit (``fit``). ``b`` is the detection probability per
    *base* bin (None: every infected source is seen at once); ``prior`` the sources first seen
    before the series (a window cut out of a longer history); ``phase`` the absolute index of the
    first base bin (e.g. hours since the epoch), on which the bins are aligned."""
    counts = np.asarray(new, dtype=np.float64)
    expo = np.ones_like(counts) if exposure is None else np.asarray(exposure, dtype=np.float64)
    total = float(counts.sum()) + prior
    m = width or choose_width(counts)
    if m is None or total < MIN_SOURCES:
        why = (f"only {int(total)} distinct source{'s' if total != 1 else ''} (need {MIN_SOURCES})"
               if total < MIN_SOURCES else f"fewer than {MIN_BINS} bins since the first source")
        c, e, offset = rebin(counts, expo, m or 1, phase)
        return Growth(m or 1, bin_hours * (m or 1), offset, c, e, np.cumsum(c) + prior, None,
                      "insufficient-data", None, None, f"not enough data for a growth rate: {why}")
    c, e, offset = rebin(counts, expo, m, phase)
    bm = None if b is None else 1.0 - (1.0 - b) ** m
    trace = zou_filter(c, e, b=bm, prior=prior)
    last = trace.alpha[~np.isnan(trace.alpha)]
    first = 0 if prior > 0 else int(np.flatnonzero(c > 0)[0])
    note = None
    if trace.decided is not None:
        decision = "outbreak"
    elif last.size and last[-1] > Z * float(trace.alpha_se[~np.isnan(trace.alpha)][-1]) \
            and last[-1] * (c.size - first) >= MIN_GROWTH:
        decision = "growing"
    elif last.size == 0:
        decision, note = "insufficient-data", "not enough data for a growth rate: no bin after the first sources"
    else:
        decision = "no-growth"
    lf = None
    if fit and decision in ("outbreak", "growing"):
        lf = fit_logistic(c, e, bin_hours=bin_hours * m, b=bm, prior=prior)
    if lf is not None and lf.note:
        note = lf.note
    return Growth(m, bin_hours * m, offset, c, e, np.cumsum(c) + prior, trace, decision, trace.decided, lf, note)
