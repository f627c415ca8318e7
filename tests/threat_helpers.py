"""Signals built directly, for the threat-level and advisory tests: each factory gives a plausible
signal with every field set, and the test overrides what it is about."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from stormwatch.analytics.exploits import ExploitActivity
from stormwatch.analytics.signals import Outbreak, Scanner, Surge
from stormwatch.threat.rules import Signals

AT = datetime(2006, 8, 14, 16, 0)
HISTORY = datetime(2006, 8, 1)  # the honeypot has been watching since


def exploit(vuln: str = "MS06-040", **kw: Any) -> ExploitActivity:
    base: dict[str, Any] = dict(vuln=vuln, cve="CVE-2006-3439", attempts=150, probes=0, sources=112, sensors=1,
                                sessions=140, first_seen=AT - timedelta(hours=20), last_seen=AT - timedelta(minutes=5),
                                first_seen_ever=AT - timedelta(hours=30), probe_sources=0)
    base.update(kw)
    return ExploitActivity(**base)


def surge(subject: str = "139", **kw: Any) -> Surge:
    base: dict[str, Any] = dict(kind="port", subject=subject, metric="sources", since=AT - timedelta(hours=4),
                                detected_at=AT - timedelta(hours=3), baseline=20.0, observed=82.0, ratio=4.1,
                                strength=12.0, threshold=5.0, sensors=3, sensors_total=3, scope="agreed", active=True,
                                method="seasonal+shiryaev-roberts")
    base.update(kw)
    return Surge(**base)


def outbreak(subject: str = "MS06-040", **kw: Any) -> Outbreak:
    base: dict[str, Any] = dict(subject=subject, first_seen=AT - timedelta(hours=30), as_of=AT, sources=112, sensors=1,
                                rate=0.064, rate_stderr=0.01, doubling_hours=10.8, population=None,
                                population_low=None, population_high=None, decision="outbreak",
                                decided_at=AT - timedelta(hours=10))
    base.update(kw)
    return Outbreak(**base)


def scanner(src: str = "10.1.2.3", **kw: Any) -> Scanner:
    base: dict[str, Any] = dict(src=src, direction="outbound", pattern="horizontal", method="trw",
                                first_seen=AT - timedelta(hours=1), decided_at=AT - timedelta(minutes=50),
                                attempts_to_decision=5, targets=150, ports=(445,), failures=140, successes=10,
                                sensors=1, score=4.6)
    base.update(kw)
    return Scanner(**base)


def signals(at: datetime = AT, **kw: Any) -> Signals:
    base: dict[str, Any] = dict(at=at, exploit_history_since=HISTORY)
    base.update(kw)
    for k in ("exploits", "surges", "outbreaks", "scanners"):
        if k in base:
            base[k] = tuple(base[k])
    return Signals(**base)
