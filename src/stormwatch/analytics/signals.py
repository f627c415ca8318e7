"""The early-warning signals the analytics hand to the threat layer: surges, scanners, outbreaks.

These are plain frozen records, computed by :mod:`stormwatch.analytics.surges`,
:mod:`stormwatch.analytics.scanners` and :mod:`stormwatch.analytics.outbreak` from aggregates the
engines return (so DuckDB and Spark give the same signals), and read by :mod:`stormwatch.threat`
(threat level, advisories) and the command line. Every time is a naive UTC ``datetime``. Each
record says what it is about, since when, by how much, how many sensors agree and how strong the
evidence is, so that a threat-level reason can quote it in words and numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

SurgeKind = Literal["port", "exploit", "srcnet"]
Scope = Literal["local", "agreed"]


@dataclass(frozen=True, slots=True)
class Surge:
    """A rise of one hourly series above its seasonal baseline, decided by a change-point test.

    ``subject`` names the series: a port (``"139"``), a bulletin (``"MS06-040"``) or a source
    network (``"203.0.113.0/24"``, ``"2001:db8::/48"``); ``metric`` is what was counted per hour
    (``"sources"``: distinct source addresses, ``"records"``: connection attempts / attacks).
    ``baseline`` and ``observed`` are per-hour means over the surge (expected vs seen), ``ratio``
    observed / baseline (None when the baseline is 0). ``strength`` is the detector's statistic at
    the decision (e.g. the log Shiryaev-Roberts or CUSUM value) and ``threshold`` the value it had
    to cross; ``sensors`` how many sensors' own series surged at the same time, out of
    ``sensors_total`` that report the subject; ``scope`` is ``"local"`` when fewer than the
    agreement minimum did. ``active``: still above baseline at the end of the data."""

    kind: SurgeKind
    subject: str
    metric: str
    since: datetime
    detected_at: datetime
    baseline: float
    observed: float
    ratio: float | None
    strength: float
    threshold: float
    sensors: int
    sensors_total: int
    scope: Scope
    active: bool
    method: str
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Scanner:
    """A source address decided to be scanning.

    ``direction``: ``"outbound"`` when the source is one of the operator's own networks (an
    infected local host scanning out), ``"inbound"`` otherwise. ``pattern``: ``"horizontal"``
    (many hosts, few ports), ``"vertical"`` (one host, many ports) or ``"both"``. ``method``:
    ``"trw"`` (sequential hypothesis test on connection outcomes) or ``"threshold"`` (distinct
    targets per window, for attempts without outcomes). ``attempts_to_decision`` is how many first
    contacts the test needed; ``ports`` the most-probed ports, most first."""

    src: str
    direction: Literal["inbound", "outbound"]
    pattern: Literal["horizontal", "vertical", "both"]
    method: Literal["trw", "threshold"]
    first_seen: datetime
    decided_at: datetime
    attempts_to_decision: int
    targets: int
    ports: tuple[int, ...]
    failures: int
    successes: int
    sensors: int
    score: float  # log likelihood ratio (trw) or distinct targets in the window (threshold)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Outbreak:
    """The growth of one exploit's (or campaign's) infected population, as the sensors see it.

    ``sources`` is the cumulative number of distinct attacking sources at ``as_of``; ``rate`` the
    fitted per-hour growth rate of the infected population (Zou et al.'s alpha), ``rate_stderr``
    its standard error; ``doubling_hours`` ln 2 / rate when rate > 0. ``population`` is the
    estimated vulnerable population with its interval (``None`` until the curve bends enough to
    tell). ``decision`` is ``"outbreak"`` (a steady positive growth rate: Zou-style early warning),
    ``"growing"`` (positive but not yet steady), ``"no-growth"`` or ``"insufficient-data"``;
    ``decided_at`` the hour the outbreak decision was first reached, ``note`` says why when data
    is thin."""

    subject: str
    first_seen: datetime
    as_of: datetime
    sources: int
    sensors: int
    rate: float | None
    rate_stderr: float | None
    doubling_hours: float | None
    population: float | None
    population_low: float | None
    population_high: float | None
    decision: Literal["outbreak", "growing", "no-growth", "insufficient-data"]
    decided_at: datetime | None
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
