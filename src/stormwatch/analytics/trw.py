"""Scan decisions over a source's first contacts: Threshold Random Walk and a Zeek-style threshold.

Pure functions and small state machines, no I/O: :mod:`stormwatch.analytics.scanners` feeds them
the first contacts the SQL of :mod:`stormwatch.analytics.scanner_queries` returns.

**TRW** (Jung, Paxson, Berger, Balakrishnan, "Fast Portscan Detection Using Sequential Hypothesis
Testing", IEEE S&P 2004; research notes ``early-warning-anchors.md`` section 4.1) is Wald's
sequential probability ratio test on the outcomes of a source's first contacts. H0: the source is
benign, each first contact succeeds with probability theta0; H1: it is a scanner, success with
theta1. Each success multiplies the likelihood ratio by theta1 / theta0, each failure by
(1 - theta1) / (1 - theta0). The test stops at the first crossing of eta1 = P_D / P_F (decide
scanner) or eta0 = (1 - P_D) / (1 - P_F) (decide benign). The paper's defaults theta0 = 0.8,
theta1 = 0.2, P_D = 0.99, P_F = 0.01 are ours; with them a failure adds ln 4 to the log ratio and a
success subtracts it, and both thresholds are +-ln 99, so a decision needs a net 4 outcomes one
way. Wald's approximation of the expected number of attempts, E[N|H1] = 5.4 (the paper's example,
:func:`wald_expected_attempts`), ignores the overshoot over the threshold; the exact mean of the
walk (:func:`expected_attempts`) is 6.6 for a scanner whose contacts succeed exactly 20 % of the
time and 4 for one that never succeeds (real scanners mostly fail, hence the paper's "4 or 5").

After a benign decision the walk goes on from the benign threshold ln eta0, which acts as a floor
(Page's CUSUM form of the SPRT): a host that turns into a scanner later is still caught, after
crossing the whole width ln eta1 - ln eta0 (7 net failures instead of 4 with the defaults), while
a busy benign host does not get a fresh 1 % chance of a false alarm every few contacts, as it
would if the test restarted from 0 (measured in ``bench/eval/eval_scanners.py``: 8 % of hosts
with 80 % success flagged over 150 contacts with restarts from 0). A scanner decision is final.
The log ratio is the start value plus counts of successes and failures times the steps.

**Threshold** (Zeek's ``scan.zeek`` of ncsa/bro-simple-scan, for attempts without an outcome): a
source's distinct (host, port) attempts are kept until none arrives for ``window`` (Zeek's
``scan_timeout`` = 15 min, an inactivity expiry); it is a scanner once the set holds ``limit``
attempts (Zeek: 25 for a remote source, 250 for a local one) or, for a remote source, once
``knock_knock`` distinct hosts were tried on one port (Zeek: 20).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import numpy as np

Decision = Literal["scanner", "benign", "pending"]


@dataclass(frozen=True, slots=True)
class TrwParams:
    """TRW's parameters (defaults: Jung et al. 2004). ``theta0``: success probability of a benign
    source's first contact; ``theta1``: of a scanner's; ``p_d``: wanted detection probability
    (the paper's beta); ``p_f``: wanted false-positive probability (alpha)."""

    theta0: float = 0.8
    theta1: float = 0.2
    p_d: float = 0.99
    p_f: float = 0.01

    def __post_init__(self) -> None:
        if not 0 < self.theta1 < self.theta0 < 1:
            raise ValueError(f"TRW needs 0 < theta1 < theta0 < 1, not theta0={self.theta0}, theta1={self.theta1}")
        if not 0 < self.p_f < self.p_d < 1:
            raise ValueError(f"TRW needs 0 < P_F < P_D < 1, not P_D={self.p_d}, P_F={self.p_f}")

    @property
    def eta1(self) -> float:
        """Upper threshold of the likelihood ratio: P_D / P_F (decide scanner)."""
        return self.p_d / self.p_f

    @property
    def eta0(self) -> float:
        """Lower threshold: (1 - P_D) / (1 - P_F) (decide benign)."""
        return (1 - self.p_d) / (1 - self.p_f)

    @property
    def success_step(self) -> float:
        """ln(theta1 / theta0): what a success adds to the log ratio (negative)."""
        return math.log(self.theta1 / self.theta0)

    @property
    def failure_step(self) -> float:
        """ln((1 - theta1) / (1 - theta0)): what a failure adds (positive)."""
        return math.log((1 - self.theta1) / (1 - self.theta0))

    def llr(self, successes: int, failures: int) -> float:
        """The log likelihood ratio after ``successes`` and ``failures``."""
        return successes * self.success_step + failures * self.failure_step

    def decide(self, successes: int, failures: int) -> Decision:
        value = self.llr(successes, failures)
        if value >= math.log(self.eta1):
            return "scanner"
        if value <= math.log(self.eta0):
            return "benign"
        return "pending"


@dataclass(slots=True)
class TrwWalk:
    """One source's random walk. :meth:`observe` one first contact at a time (``failed``: the
    target did not answer, refused, or was a honeypot); ``decision`` is the state after the last
    one. ``attempts``, ``successes`` and ``failures`` count the current test (since the last benign
    restart); ``restarts`` how many benign decisions came before it."""

    params: TrwParams = field(default_factory=TrwParams)
    successes: int = 0
    failures: int = 0
    decision: Decision = "pending"
    restarts: int = 0
    start: float = 0.0  # the log ratio the current test started from: 0, then ln eta0

    @property
    def attempts(self) -> int:
        return self.successes + self.failures

    @property
    def llr(self) -> float:
        return self.start + self.params.llr(self.successes, self.failures)

    def observe(self, failed: bool) -> Decision:
        if self.decision == "scanner":
            return "scanner"
        if self.decision == "benign":  # go on from the floor
            self.successes = self.failures = 0
            self.start = math.log(self.params.eta0)
            self.restarts += 1
        if failed:
            self.failures += 1
        else:
            self.successes += 1
        value = self.llr
        if value >= math.log(self.params.eta1):
            self.decision = "scanner"
        elif value <= math.log(self.params.eta0):
            self.decision = "benign"
        else:
            self.decision = "pending"
        return self.decision


@dataclass(frozen=True, slots=True)
class TrwResult:
    decision: Decision
    attempts: int  # in the deciding (or current) test
    llr: float
    restarts: int


def sprt(failed: list[bool] | tuple[bool, ...], params: TrwParams | None = None) -> TrwResult:
    """TRW over a sequence of first-contact outcomes (True = failed), stopping at a scanner
    decision; the result of the last test otherwise."""
    walk = TrwWalk(params or TrwParams())
    for f in failed:
        if walk.observe(f) == "scanner":
            break
    return TrwResult(walk.decision, walk.attempts, walk.llr, walk.restarts)


def wald_expected_attempts(params: TrwParams | None = None, *, scanner: bool = True) -> float:
    """Wald's approximation of the expected number of attempts to a decision (Jung et al. 2004
    eq. (8) and (9); overshoot ignored). ``scanner``: E[N|H1], else E[N|H0]."""
    p = params or TrwParams()
    ln1, ln0 = math.log(p.eta1), math.log(p.eta0)
    if scanner:
        num = p.p_d * ln1 + (1 - p.p_d) * ln0
        den = p.theta1 * p.success_step + (1 - p.theta1) * p.failure_step
    else:
        num = p.p_f * ln1 + (1 - p.p_f) * ln0
        den = p.theta0 * p.success_step + (1 - p.theta0) * p.failure_step
    return num / den


def expected_attempts(success_rate: float, params: TrwParams | None = None, *,
                      max_attempts: int = 5000) -> tuple[float, float]:
    """The exact mean number of attempts of one test, and the probability it decides
    ``scanner``, for a source whose first contacts succeed independently with ``success_rate``.

    Dynamic programming over the number of failures after each attempt (the log ratio depends only
    on the counts); the mass not absorbed after ``max_attempts`` is ignored (it is below 1e-12
    long before that for any rate)."""
    if not 0 <= success_rate <= 1:
        raise ValueError(f"success_rate must be in [0, 1], not {success_rate}")
    p = params or TrwParams()
    upper, lower = math.log(p.eta1), math.log(p.eta0)
    alive = np.array([1.0])  # alive[f]: probability of f failures so far without a decision
    mean = scanner = 0.0
    for n in range(1, max_attempts + 1):
        nxt = np.zeros(n + 1)
        nxt[:-1] += alive * success_rate
        nxt[1:] += alive * (1 - success_rate)
        f = np.arange(n + 1)
        llr = (n - f) * p.success_step + f * p.failure_step
        up, down = llr >= upper, llr <= lower
        stopped = float(nxt[up].sum() + nxt[down].sum())
        scanner += float(nxt[up].sum())
        mean += n * stopped
        nxt[up | down] = 0.0
        alive = nxt
        if alive.sum() < 1e-15:
            break
    return mean, scanner


@dataclass(frozen=True, slots=True)
class ThresholdParams:
    """The distinct-targets threshold (Zeek ``scan.zeek``). ``limit``: distinct (host, port)
    attempts of a remote (inbound) source; ``local_limit``: of a local (outbound) one; ``knock_knock``:
    distinct hosts on one port (inbound only; 0 disables); ``window``: the set expires after this
    long without an attempt."""

    limit: int = 25
    local_limit: int = 25
    knock_knock: int = 20
    window: timedelta = timedelta(minutes=15)

    def __post_init__(self) -> None:
        if self.limit < 1 or self.local_limit < 1 or self.knock_knock < 0:
            raise ValueError("threshold limits must be positive (knock_knock may be 0: off)")
        if self.window <= timedelta(0):
            raise ValueError("the threshold window must be positive")

    def smallest(self, local: bool | None = None) -> int:
        """The fewest attempts any source (or a local / remote one) needs to be decided."""
        remote = min(self.limit, self.knock_knock) if self.knock_knock else self.limit
        if local is None:
            return min(remote, self.local_limit)
        return self.local_limit if local else remote


@dataclass(slots=True)
class ThresholdWindow:
    """One source's attempt set. :meth:`observe` returns True once the source is decided (and
    stays decided); ``size`` is the set's size at the decision."""

    params: ThresholdParams
    local: bool
    targets: set[tuple[str, int, str]] = field(default_factory=set)
    per_port: Counter[tuple[int, str]] = field(default_factory=Counter)
    last: datetime | None = None
    decided: bool = False
    size: int = 0

    def observe(self, ts: datetime, host: str, port: int, proto: str) -> bool:
        if self.decided:
            return True
        if self.last is not None and ts - self.last > self.params.window:
            self.targets.clear()
            self.per_port.clear()
        self.last = ts
        key = (host, port, proto)
        if key in self.targets:
            return False
        self.targets.add(key)
        self.per_port[port, proto] += 1
        limit = self.params.local_limit if self.local else self.params.limit
        knock = not self.local and self.params.knock_knock and self.per_port[port, proto] >= self.params.knock_knock
        if len(self.targets) >= limit or knock:
            self.decided = True
            self.size = len(self.targets)
        return self.decided
