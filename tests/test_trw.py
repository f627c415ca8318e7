"""TRW and the threshold detector as pure functions: the SPRT's arithmetic worked by hand, the
paper's expected sample number, simulated scanners, Zeek's threshold semantics, the pattern rule.

With the defaults (theta0 0.8, theta1 0.2, P_D 0.99, P_F 0.01): a failure adds ln 4 = 1.3863 to the
log likelihood ratio, a success subtracts it; the thresholds are ln 99 = 4.5951 and ln(1/99).
3 net failures (4.159) are not enough, 4 (5.545) are.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta

import pytest

from stormwatch.analytics.scanners import scan_pattern
from stormwatch.analytics.trw import (
    ThresholdParams,
    ThresholdWindow,
    TrwParams,
    TrwWalk,
    expected_attempts,
    sprt,
    wald_expected_attempts,
)

F, S = True, False  # failed, succeeded
LN4, LN99 = math.log(4), math.log(99)


def test_thresholds_and_steps_of_the_paper() -> None:
    p = TrwParams()
    assert p.eta1 == pytest.approx(99.0)
    assert p.eta0 == pytest.approx(0.01 / 0.99)
    assert p.failure_step == pytest.approx(LN4)
    assert p.success_step == pytest.approx(-LN4)
    assert [p.decide(0, f) for f in range(5)] == ["pending"] * 4 + ["scanner"]
    assert [p.decide(s, 0) for s in range(5)] == ["pending"] * 4 + ["benign"]
    assert p.decide(3, 7) == "scanner" and p.decide(7, 3) == "benign" and p.decide(5, 8) == "pending"
    assert p.llr(2, 6) == pytest.approx(4 * LN4)


def test_wald_expected_sample_number_is_the_papers_5_4() -> None:
    # (P_D ln eta1 + (1 - P_D) ln eta0) / (theta1 ln(theta1/theta0) + (1 - theta1) ln((1-theta1)/(1-theta0)))
    # = (0.99 - 0.01) ln 99 / ((0.8 - 0.2) ln 4) = 0.98 * 4.59512 / 0.83178 = 5.414
    assert wald_expected_attempts() == pytest.approx(0.98 * LN99 / (0.6 * LN4))
    assert round(wald_expected_attempts(), 1) == 5.4
    # symmetric parameters: the same under H0
    assert wald_expected_attempts(scanner=False) == pytest.approx(wald_expected_attempts())
    # asymmetric ones: theta0 0.9, theta1 0.1, P_D 0.999, P_F 0.001 by hand
    p = TrwParams(theta0=0.9, theta1=0.1, p_d=0.999, p_f=0.001)
    want = (0.999 * math.log(999) + 0.001 * math.log(0.001 / 0.999)) / (0.1 * math.log(1 / 9) + 0.9 * math.log(9))
    assert wald_expected_attempts(p) == pytest.approx(want)


def ruin_mean(p_up: float, start: int, total: int) -> float:
    """Mean duration of the gambler's-ruin walk (+1 with p_up, -1 otherwise) from ``start``
    between 0 and ``total`` (Feller, vol. I, XIV.3)."""
    q = 1 - p_up
    if p_up == q:
        return start * (total - start)
    r = q / p_up
    return start / (q - p_up) - total / (q - p_up) * (1 - r ** start) / (1 - r ** total)


def test_exact_expected_attempts_is_the_gamblers_ruin() -> None:
    # with +-ln 4 steps and +-ln 99 thresholds the walk is absorbed at net +4 or -4: the ruin walk
    # from 4 between 0 and 8, up with the failure probability
    for rate in (0.05, 0.2, 0.5, 0.8, 0.95):
        mean, _ = expected_attempts(rate)
        assert mean == pytest.approx(ruin_mean(1 - rate, 4, 8), rel=1e-9), rate
    mean, p_scan = expected_attempts(0.2)
    assert round(mean, 2) == 6.61  # Wald's 5.4 leaves out the overshoot over ln 99
    assert mean > wald_expected_attempts()
    assert p_scan == pytest.approx((1 - 0.25 ** 4) / (1 - 0.25 ** 8))  # ruin probability of the benign side
    assert expected_attempts(0.0) == (4.0, 1.0)  # every contact fails: 4 attempts, always scanner
    assert expected_attempts(1.0) == (4.0, 0.0)
    with pytest.raises(ValueError):
        expected_attempts(1.5)


@pytest.mark.parametrize("rate", [0.0, 0.05, 0.2])
def test_simulated_scanners_match_the_expected_sample_number(rate: float) -> None:
    rnd = random.Random(20040509)
    runs = 20_000
    total = decided = 0
    for _ in range(runs):
        walk = TrwWalk()
        while walk.decision == "pending":
            walk.observe(rnd.random() >= rate)
        total += walk.attempts
        decided += walk.decision == "scanner"
    mean, p_scan = expected_attempts(rate)
    # the attempts' standard deviation is below 5 here: 5 / sqrt(20000) = 0.035
    assert abs(total / runs - mean) < 0.15
    assert abs(decided / runs - p_scan) < 0.01


def test_sprt_sequences_by_hand() -> None:
    # -1, 0, +1, +2, +3, +4 (net failures): scanner at the 6th attempt
    r = sprt([F, S, F, F, F, F, F])
    assert (r.decision, r.attempts, r.restarts) == ("scanner", 6, 0)
    assert r.llr == pytest.approx(4 * LN4)
    # 4 successes: benign; the walk goes on from ln(1/99): 6 failures reach 3.72 < ln 99, 7 reach 5.11
    r = sprt([S, S, S, S, *[F] * 6])
    assert (r.decision, r.attempts, r.restarts) == ("pending", 6, 1)
    assert r.llr == pytest.approx(-LN99 + 6 * LN4)
    r = sprt([S, S, S, S, *[F] * 7])
    assert (r.decision, r.attempts, r.restarts) == ("scanner", 7, 1)
    # at the floor every success is another benign decision, and the floor does not sink
    r = sprt([S] * 20 + [F] * 7)
    assert (r.decision, r.attempts, r.restarts) == ("scanner", 7, 17)
    r = sprt([S, F, S, F, F])
    assert (r.decision, r.attempts) == ("pending", 5)
    assert r.llr == pytest.approx(LN4)
    assert sprt([S, S, S, S]).decision == "benign"
    assert sprt([]).decision == "pending"


def test_a_scanner_decision_is_final() -> None:
    walk = TrwWalk()
    for _ in range(4):
        walk.observe(F)
    assert walk.decision == "scanner"
    for _ in range(10):
        assert walk.observe(S) == "scanner"
    assert (walk.failures, walk.successes) == (4, 0)


@pytest.mark.parametrize("kw", [dict(theta0=0.2, theta1=0.8), dict(theta1=0.0), dict(theta0=1.0),
                                dict(p_d=0.01, p_f=0.99), dict(p_f=0.0), dict(p_d=1.0)])
def test_bad_parameters_are_refused(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        TrwParams(**kw)


T0 = datetime(2006, 8, 13, 12)


def sec(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def test_threshold_counts_distinct_targets_until_the_limit() -> None:
    w = ThresholdWindow(ThresholdParams(), local=False)
    # 24 hosts on 12 ports (2 each: no knock-knock), one a minute
    for i in range(24):
        assert not w.observe(sec(60 * i), f"192.0.2.{i}", 1000 + i // 2, "tcp")
    assert not w.observe(sec(60 * 24), "192.0.2.0", 1000, "tcp")  # already tried: not a new target
    assert w.observe(sec(60 * 25), "192.0.2.99", 7, "udp")
    assert (w.decided, w.size) == (True, 25)
    assert w.observe(sec(60 * 26), "192.0.2.100", 8, "tcp")  # stays decided


def test_threshold_window_expires_after_15_minutes_of_silence() -> None:
    w = ThresholdWindow(ThresholdParams(), local=False)
    for i in range(24):
        w.observe(sec(i), f"192.0.2.{i}", 2000 + i, "tcp")
    # 15 min exactly since the last attempt: still the same set (Zeek expires after the interval)
    assert w.observe(sec(23 + 900), "192.0.2.200", 3000, "tcp")
    w = ThresholdWindow(ThresholdParams(), local=False)
    for i in range(24):
        w.observe(sec(i), f"192.0.2.{i}", 2000 + i, "tcp")
    # one microsecond more: the set starts over
    assert not w.observe(sec(23 + 900.000001), "192.0.2.200", 3000, "tcp")
    assert len(w.targets) == 1
    # a slow scanner with gaps under 15 min keeps accumulating
    w = ThresholdWindow(ThresholdParams(), local=False)
    assert [w.observe(sec(840 * i), f"198.51.100.{i}", 4000 + i, "tcp") for i in range(25)][-2:] == [False, True]


def test_knock_knock_is_inbound_only_and_local_limit_applies() -> None:
    params = ThresholdParams(limit=25, local_limit=250, knock_knock=20)
    remote, local = ThresholdWindow(params, local=False), ThresholdWindow(params, local=True)
    for i in range(19):
        assert not remote.observe(sec(i), f"192.0.2.{i}", 445, "tcp")
        assert not local.observe(sec(i), f"192.0.2.{i}", 445, "tcp")
    assert remote.observe(sec(19), "192.0.2.19", 445, "tcp") and remote.size == 20
    assert not local.observe(sec(19), "192.0.2.19", 445, "tcp")
    for i in range(20, 249):
        local.observe(sec(i), f"10.1.{i // 250}.{i % 250}", 445, "tcp")
    assert not local.decided
    assert local.observe(sec(250), "10.9.9.9", 445, "tcp") and local.size == 250
    assert ThresholdParams().smallest() == 20
    assert params.smallest(local=True) == 250 and ThresholdParams(knock_knock=0).smallest(local=False) == 25
    with pytest.raises(ValueError):
        ThresholdParams(window=timedelta(0))
    with pytest.raises(ValueError):
        ThresholdParams(limit=0)


@pytest.mark.parametrize(("hosts", "ports", "pattern"), [
    (1, 1, "horizontal"),  # a single contact: Zeek's first rule (one port)
    (200, 1, "horizontal"),
    (40, 5, "horizontal"),
    (1, 50, "vertical"),
    (5, 60, "vertical"),
    (6, 6, "both"),
    (22, 21, "both"),
])
def test_scan_pattern_follows_zeek(hosts: int, ports: int, pattern: str) -> None:
    assert scan_pattern(hosts, ports) == pattern
