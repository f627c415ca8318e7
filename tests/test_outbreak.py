"""Outbreak estimation over a store (stormwatch.analytics.outbreak), its SQL (counts worked out by
hand, and DuckDB = Spark), the demo store's MS06-040 outbreak, thin data, and the CLI."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from engine_helpers import both_engines
from stormwatch.analytics import DuckDBEngine
from stormwatch.analytics import outbreak_queries as q
from stormwatch.analytics.outbreak import estimate_outbreaks, outbreak_series
from stormwatch.cli.outbreak_cmd import outbreak_cmd
from stormwatch.events import EventBatchBuilder
from stormwatch.store import Store

DEMO = Path("/work/demo/demo.duckdb")
T0 = datetime(2024, 3, 1)


def exploit(b: EventBatchBuilder, ts: datetime, src: str, vuln: str = "MS06-040", kind: str = "exploit") -> None:
    b.add("exploit.attempt", ts, f"{ts.isoformat()} {src} {vuln} {kind}", src_ip=src, dst_ip="192.0.2.1",
          dst_port=445, proto="tcp", vuln=vuln, kind=kind, detector="test")


def worm_store(store: Store, *, rate: float = 0.08, hours: int = 96, seed: int = 4) -> int:
    """An exploit whose new sources grow exponentially (two sensors), a flat one, and noise."""
    rng = np.random.default_rng(seed)
    sensors = [EventBatchBuilder("hp-1"), EventBatchBuilder("hp-2")]
    total = 0
    for h in range(hours):
        for i in range(int(rng.poisson(0.5 * math.exp(rate * h)))):
            at = T0 + timedelta(hours=h, minutes=int(rng.integers(60)))
            exploit(sensors[i % 2], at, f"10.{h}.{i // 250}.{i % 250}")
            total += 1
        for i in range(int(rng.poisson(2.0))):  # a steady trickle on another bulletin
            exploit(sensors[0], T0 + timedelta(hours=h, minutes=i), f"172.16.{h}.{i}", vuln="MS04-011")
        exploit(sensors[1], T0 + timedelta(hours=h), f"198.51.100.{h % 200}", vuln="MS08-067", kind="probe")
    for s in sensors:
        store.write_events(s.take())
    return total


def test_hourly_counts_by_hand(store: Store) -> None:
    b = EventBatchBuilder("hp")
    a, c = "203.0.113.1", "203.0.113.2"
    exploit(b, T0 + timedelta(minutes=5), a)
    exploit(b, T0 + timedelta(minutes=50), a)  # same hour, same source
    exploit(b, T0 + timedelta(hours=1, minutes=1), a)  # active again, not new
    exploit(b, T0 + timedelta(hours=1, minutes=2), c)  # new
    exploit(b, T0 + timedelta(hours=1, minutes=3), c, kind="probe")  # probes do not count
    b2 = EventBatchBuilder("hp-2")
    exploit(b2, T0 + timedelta(hours=1, minutes=30), c)  # second sensor, c not new again
    store.write_events(b.take())
    store.write_events(b2.take())
    rows = DuckDBEngine(store).run(q.EXPLOIT_HOURLY, {"until": T0 + timedelta(days=1)})
    got = [(r["hr"], r["new_sources"], r["active_sources"], r["attempts"], r["sensors"]) for r in rows]
    assert got == [(0, 1, 1, 2, 1), (1, 1, 2, 3, 2)]
    summary = DuckDBEngine(store).run(q.EXPLOIT_SUMMARY, {"until": T0 + timedelta(days=1)})
    assert [(r["subject"], r["sources"], r["sensors"], r["attempts"]) for r in summary] == [("MS06-040", 2, 2, 5)]
    # until is exclusive: the second hour is cut off
    rows = DuckDBEngine(store).run(q.EXPLOIT_HOURLY, {"until": T0 + timedelta(hours=1)})
    assert [(r["hr"], r["new_sources"]) for r in rows] == [(0, 1)]


def test_growing_exploit_is_an_outbreak(store: Store) -> None:
    total = worm_store(store)
    out = estimate_outbreaks(DuckDBEngine(store))
    by = {o.subject: o for o in out}
    assert set(by) == {"MS06-040", "MS04-011"}  # probes (MS08-067) are not infections
    worm = by["MS06-040"]
    assert out[0] is worm
    assert worm.decision == "outbreak" and worm.decided_at is not None
    assert worm.sources == total and worm.sensors == 2
    assert worm.rate == pytest.approx(0.08, rel=0.2)
    assert worm.doubling_hours == pytest.approx(math.log(2) / worm.rate)
    assert by["MS04-011"].decision == "no-growth"
    # the decision was reached early: with the data up to then it already says outbreak
    assert worm.decided_at is not None
    again = estimate_outbreaks(DuckDBEngine(store), until=worm.decided_at + timedelta(hours=1), subject="MS06-040")
    assert again[0].decision == "outbreak"
    assert again[0].sources < total / 4


def test_series_and_until(store: Store) -> None:
    worm_store(store)
    eng = DuckDBEngine(store)
    s = outbreak_series(eng, "MS06-040")
    assert s is not None and s.bins
    assert s.bins[-1].cumulative == s.outbreak.sources
    assert sum(b.new_sources for b in s.bins) == s.outbreak.sources
    assert all(b.end - b.start <= timedelta(hours=s.width_hours) for b in s.bins)
    assert any(b.steady for b in s.bins)
    early = estimate_outbreaks(eng, until=T0 + timedelta(hours=6), subject="MS06-040")
    assert early and early[0].decision == "insufficient-data" and early[0].rate is None
    assert early[0].note and "not enough data" in early[0].note
    assert outbreak_series(eng, "MS99-999") is None
    assert estimate_outbreaks(eng, subject="MS99-999") == []


def test_empty_single_event_and_one_source(store: Store) -> None:
    eng = DuckDBEngine(store)
    assert estimate_outbreaks(eng) == []
    assert outbreak_series(eng, "MS06-040") is None
    b = EventBatchBuilder("hp")
    exploit(b, T0, "203.0.113.9")
    store.write_events(b.take())
    (one,) = estimate_outbreaks(eng)
    assert one.decision == "insufficient-data" and one.sources == 1 and one.rate is None
    assert one.population is None and one.decided_at is None
    b = EventBatchBuilder("hp")
    for h in range(48):  # one source, again and again
        exploit(b, T0 + timedelta(hours=h, minutes=7), "203.0.113.9")
    store.write_events(b.take())
    (same,) = estimate_outbreaks(eng)
    assert same.decision == "insufficient-data" and same.sources == 1


def test_port_subject(store: Store) -> None:
    b = EventBatchBuilder("fw")
    rng = np.random.default_rng(2)
    for h in range(72):
        for i in range(int(rng.poisson(3))):
            b.add("fw.connection", T0 + timedelta(hours=h, minutes=i), f"fw {h} {i}", src_ip=f"10.9.{h}.{i}",
                  dst_ip="192.0.2.7", dst_port=139, proto="tcp", count=2)
    store.write_events(b.take())
    (o,) = estimate_outbreaks(DuckDBEngine(store), subject="139")
    assert o.subject == "139" and o.decision == "no-growth"
    assert estimate_outbreaks(DuckDBEngine(store), subject="445") == []


@pytest.fixture(scope="module")
def demo() -> Iterator[DuckDBEngine]:
    if not DEMO.exists():
        pytest.skip(f"demo store not built at {DEMO} (make demo)")
    st = Store(DEMO, read_only=True)
    yield DuckDBEngine(st)
    st.close()


def test_demo_ms06_040(demo: DuckDBEngine) -> None:
    """The demo's MS06-040 bots double daily (16, 32, then 64 in the last half day): the series
    grows about x2 then x4 in 18 h, a doubling of about 9-12 h; the filter calls it late on 14 Aug,
    with about 100 sources seen. MS04-011's steady three a day is not growth."""
    by = {o.subject: o for o in estimate_outbreaks(demo)}
    ms06 = by["MS06-040"]
    assert ms06.decision == "outbreak"
    assert ms06.decided_at is not None and datetime(2006, 8, 14) <= ms06.decided_at <= ms06.as_of
    assert ms06.doubling_hours is not None and 6 < ms06.doubling_hours < 24
    assert ms06.population is None  # still exponential when the data ends
    assert by["MS04-011"].decision == "no-growth"
    before = estimate_outbreaks(demo, until=datetime(2006, 8, 12), subject="MS06-040")
    assert before == []


def test_cli(store: Store, tmp_path: Path) -> None:
    worm_store(store)
    store.close()
    db = str(tmp_path / "test.duckdb")
    runner = CliRunner()
    r = runner.invoke(outbreak_cmd, ["--db", db])
    assert r.exit_code == 0, r.output
    assert "MS06-040" in r.output and "outbreak" in r.output
    r = runner.invoke(outbreak_cmd, ["--db", db, "--format", "json"])
    rows = json.loads(r.output)
    assert rows[0]["subject"] == "MS06-040" and rows[0]["decision"] == "outbreak"
    r = runner.invoke(outbreak_cmd, ["MS06-040", "--series", "--db", db, "--format", "json"])
    bins = json.loads(r.output)
    assert bins[-1]["cumulative"] == rows[0]["sources"]
    r = runner.invoke(outbreak_cmd, ["--series", "--db", db])
    assert r.exit_code != 0
    r = runner.invoke(outbreak_cmd, ["MS99-999", "--series", "--db", db, "--format", "json"])
    assert r.exit_code == 0 and json.loads(r.stdout) == []


@pytest.mark.spark
def test_spark_parity(spark: Any, tmp_path: Path) -> None:
    st = Store(tmp_path / "gen.duckdb")
    worm_store(st, hours=60)
    b = EventBatchBuilder("fw")
    for h in range(30):
        b.add("fw.connection", T0 + timedelta(hours=h, minutes=59, seconds=59, microseconds=999_999), f"x{h}",
              src_ip=f"10.1.{h % 7}.1", dst_ip="192.0.2.3", dst_port=445, proto="tcp", count=3)
    st.write_events(b.take())
    duck, sp = both_engines(st, tmp_path / "lake", spark)
    until = T0 + timedelta(hours=50)
    port: dict[str, int | datetime] = {"until": until, "port": 445}
    for sql, params in [(q.EXPLOIT_HOURLY, {"until": until}), (q.EXPLOIT_SUMMARY, {"until": until}),
                        (q.PORT_HOURLY, port), (q.PORT_SUMMARY, port)]:
        expected = duck.run(sql, params)
        assert expected
        assert sp.run(sql, params) == expected
    assert estimate_outbreaks(sp, until=until) == estimate_outbreaks(duck, until=until)
    st.close()
