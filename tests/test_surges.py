"""Surge detection: the pure per-subject detector on synthetic seasonal series, the SQL series on
small stores (ports, honeypot services, exploits, source networks), thin and bad data, the
demo-like case through the store, the CLI, and DuckDB/Spark parity of the SQL."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from engine_helpers import both_engines
from stormwatch.analytics import DuckDBEngine
from stormwatch.analytics import surge_queries as sq
from stormwatch.analytics.surges import active_hours, detect_surges, subject_surges, surge_report, window
from stormwatch.cli.surges_cmd import surges_cmd
from stormwatch.events import EventBatchBuilder
from stormwatch.store import Store

START = datetime(2024, 7, 1)  # a Monday
DAYS = 21


def seasonal(base: float, days: int = DAYS, seed: int = 0, ratio: float = 1.0, onset: int | None = None,
             spike: int | None = None) -> np.ndarray:
    """Poisson counts with a diurnal cycle and quiet weekends; x ``ratio`` from ``onset``; one
    hour x 10 at ``spike``."""
    rng = np.random.default_rng(seed)
    idx = np.arange(days * 24)
    hod, dow = idx % 24, (idx // 24) % 7
    mu = base * (1 + 0.5 * np.cos(2 * np.pi * (hod - 15) / 24)) * np.where(dow >= 5, 0.7, 1.0)
    if onset is not None:
        mu = np.where(idx >= onset, ratio * mu, mu)
    if spike is not None:
        mu[spike] *= 10
    return rng.poisson(mu).astype(np.float64)


def run(series: dict[str, np.ndarray], active: dict[str, np.ndarray] | None = None) -> list[Any]:
    masks = active or {s: np.ones(len(y), dtype=bool) for s, y in series.items()}
    return subject_surges("port", "139", series, masks, START)


ONSET = 18 * 24 + 10  # a Thursday, 10:00


# --- the pure detector -------------------------------------------------------------------------


@pytest.mark.parametrize("base", [2.0, 20.0, 200.0])
def test_quiet_seasonal_series_give_no_agreed_surge_and_rare_local_ones(base: float) -> None:
    # 4 runs x 3 sensors x 14 monitored days = 5.6 sensor-months of quiet data: the design is
    # about 0.2 false alarms per sensor-month (bench/eval/eval_surges.py), so a couple at most
    found = [s for seed in range(4) for s in run({f"s{i}": seasonal(base, seed=10 * seed + i) for i in range(3)})]
    assert len(found) <= 2


def test_a_2x_surge_at_every_sensor_is_agreed_with_its_onset_near_the_truth() -> None:
    series = {f"s{i}": seasonal(30.0, seed=i, ratio=2.0, onset=ONSET) for i in range(3)}
    (s,) = run(series)
    onset = START + timedelta(hours=ONSET)
    assert abs((s.since - onset) / timedelta(hours=1)) <= 2
    assert timedelta(hours=1) <= s.detected_at - onset <= timedelta(hours=4)
    assert s.scope == "agreed" and s.sensors == 3 and s.sensors_total == 3 and s.active
    assert s.ratio is not None and 1.6 <= s.ratio <= 2.5
    assert s.strength >= s.threshold and s.metric == "sources" and s.note is None


def near(surges: list[Any], hour: int, slack: int = 3) -> list[Any]:
    """The surges whose span (onset to decision) comes within ``slack`` hours of ``hour``."""
    t = START + timedelta(hours=hour)
    return [s for s in surges if s.since - timedelta(hours=slack) <= t <= s.detected_at + timedelta(hours=slack)]


def test_a_single_noisy_hour_is_no_surge() -> None:
    series = {f"s{i}": seasonal(20.0, seed=i, spike=ONSET if i == 0 else None) for i in range(3)}
    assert series["s0"][ONSET] > 100
    assert near(run(series), ONSET) == []
    series = {f"s{i}": seasonal(20.0, seed=i, spike=ONSET) for i in range(3)}  # at every sensor, still one hour
    assert near(run(series), ONSET) == []


def test_a_surge_at_one_sensor_only_is_local() -> None:
    series = {f"s{i}": seasonal(20.0, seed=i, ratio=3.0 if i == 1 else 1.0, onset=ONSET) for i in range(3)}
    (s,) = near(run(series), ONSET)
    assert s.scope == "local" and s.sensors == 1 and s.sensors_total == 3
    assert s.ratio is not None and s.ratio > 2.2  # the surging sensor's own figures, not diluted


def test_clock_skew_between_sensors_is_tolerated() -> None:
    series = {f"s{i}": seasonal(20.0, seed=i, ratio=2.0, onset=ONSET + 2 * (i - 1)) for i in range(3)}
    (s,) = near(run(series), ONSET)
    assert s.scope == "agreed" and s.sensors == 3


def test_a_silent_sensor_raises_no_surge_and_no_drop() -> None:
    series = {f"s{i}": seasonal(20.0, seed=i) for i in range(3)}
    active = {s: np.ones(DAYS * 24, dtype=bool) for s in series}
    series["s0"][9 * 24:12 * 24] = 0  # down three days in the middle, then back
    active["s0"][9 * 24:12 * 24] = False
    series["s2"][-30:] = 0  # gone quiet for the last 30 hours
    active["s2"][-30:] = False
    found = run(series, active)
    assert near(found, 9 * 24, slack=12) == [] and near(found, 12 * 24, slack=12) == []
    assert [s for s in found if s.active] == []


def test_a_short_history_falls_back_with_a_note() -> None:
    days = 4
    series = {f"s{i}": seasonal(20.0, days=days, seed=i, ratio=4.0, onset=3 * 24 + 10) for i in range(2)}
    (s,) = run(series)
    assert s.since >= START + timedelta(hours=3 * 24 + 8)
    assert s.note is not None and "not enough data for a baseline: 3 of 7 days" in s.note
    assert run({"s0": seasonal(20.0, days=1, seed=1)}) == []  # under a day: no baseline, no test


def test_a_new_subject_from_nothing() -> None:
    y = np.zeros(DAYS * 24)
    y[ONSET:] = 6  # a port never seen before, six sources an hour
    (s,) = run({"s0": y})
    assert s.ratio is None and s.baseline == 0.0 and s.since == START + timedelta(hours=ONSET)


def test_the_window_ends_with_the_hour_holding_until() -> None:
    end, start, coverage = window(datetime(2024, 7, 10, 14, 30), 2)
    assert start == datetime(2024, 7, 8, 15) and coverage == pytest.approx(0.5, abs=1e-6)
    assert end == datetime(2024, 7, 10, 14, 30, 0, 1)
    end, start, coverage = window(datetime(2024, 7, 10, 15), 1)
    assert (end, start, coverage) == (datetime(2024, 7, 10, 15), datetime(2024, 7, 9, 15), 1.0)


def test_silence_is_told_from_quiet_by_the_sensor_rate() -> None:
    busy = [{"hour": h, "sensor": "fw", "records": 100} for h in range(48) if not 10 <= h < 12]
    sparse = [{"hour": h, "sensor": "hp", "records": 1} for h in (0, 5, 30, 47)]
    masks = active_hours(busy + sparse, 48)
    assert not masks["fw"][10:12].any() and masks["fw"][:10].all() and masks["fw"][12:].all()
    assert masks["hp"].all()  # a honeypot that sees one visitor in hours: quiet, not down


# --- through the store -------------------------------------------------------------------------


def add_port_hours(b: EventBatchBuilder, port: int, counts: np.ndarray, salt: int, start: datetime = START) -> None:
    """``counts[h]`` distinct sources on ``port`` in hour ``h`` (one record each), at random in 10/8."""
    rng = np.random.default_rng(salt)
    for h, k in enumerate(counts.astype(int)):
        octets = rng.choice(250 * 250, size=k, replace=False)
        for j in range(k):
            src = f"10.{rng.integers(0, 256)}.{octets[j] // 250}.{octets[j] % 250 + 1}"
            b.add("fw.connection", start + timedelta(hours=h, minutes=(7 * j) % 60), f"{port} {h} {j} {salt}",
                  src_ip=src, dst_ip="192.0.2.1", src_port=40000 + j, dst_port=port, proto="tcp", action="drop")


@pytest.fixture(scope="module")
def demo_like_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 firewall sensors for 21 days: 139 surges 2.5x at all of them from ONSET, 445 3x at
    fw-b only; a honeypot with MS06-040 attempts (and probes) rising from the same hour."""
    path = tmp_path_factory.mktemp("surges") / "demo-like.duckdb"
    st = Store(path)
    for i, sensor in enumerate(("fw-a", "fw-b", "fw-c")):
        b = EventBatchBuilder(sensor)
        add_port_hours(b, 139, seasonal(12.0, seed=i, ratio=2.5, onset=ONSET), i)
        add_port_hours(b, 445, seasonal(12.0, seed=10 + i, ratio=3.0 if sensor == "fw-b" else 1.0, onset=ONSET),
                       10 + i)
        st.write_events(b.take())
    hp = EventBatchBuilder("honeypot")
    rng = np.random.default_rng(5)
    for h in range(DAYS * 24):
        n = rng.poisson(0.2 if h < ONSET else 3.0)
        for j in range(n):
            t = START + timedelta(hours=h, minutes=j)
            src = f"203.0.{h % 200}.{j + 1}"
            hp.add("session.connect", t, f"c {h} {j}", src_ip=src, dst_ip="127.0.0.1", src_port=1000 + j,
                   dst_port=36779, proto="tcp", service="netbios-ssn", persona="win2000")
            hp.add("exploit.attempt", t, f"x {h} {j}", src_ip=src, dst_ip="127.0.0.1", src_port=1000 + j,
                   dst_port=36779, proto="tcp", vuln="MS06-040", cve="CVE-2006-3439",
                   kind="probe" if j == 1 else "exploit", detector="test", confidence=0.9)
    st.write_events(hp.take())
    st.close()
    return path


@pytest.fixture
def demo_like(demo_like_path: Path) -> Iterator[Store]:
    st = Store(demo_like_path, read_only=True)
    yield st
    st.close()


def test_demo_like_store_agreed_and_local_surges(demo_like: Store) -> None:
    eng = DuckDBEngine(demo_like)
    onset = START + timedelta(hours=ONSET)
    until = onset + timedelta(hours=30)
    report = surge_report(eng, until=until, kinds=("port", "exploit"))
    found = {(s.kind, s.subject): s for s in report.surges}
    s139 = found[("port", "139")]
    assert s139.scope == "agreed" and s139.sensors >= 3 and s139.active
    assert abs((s139.since - onset) / timedelta(hours=1)) <= 2
    assert s139.detected_at - onset <= timedelta(hours=4)
    s445 = found[("port", "445")]
    assert s445.scope == "local" and s445.sensors == 1 and s445.sensors_total == 3
    exploit = found[("exploit", "MS06-040")]
    assert exploit.scope == "local" and exploit.sensors == 1
    assert set(found) <= {("port", "139"), ("port", "445"), ("exploit", "MS06-040")}
    assert report.notes == [] and report.sensors == 4
    # before the onset: nothing
    assert detect_surges(eng, until=onset - timedelta(hours=1)) == []
    # only the kind asked for, and the agreement minimum is the caller's
    only = detect_surges(eng, until=until, kinds=("port",), min_sensors=5)
    assert {(s.subject, s.scope) for s in only} == {("139", "local"), ("445", "local")}


def test_the_series_count_honeypot_sessions_by_service_and_exploits_not_probes(demo_like: Store) -> None:
    eng = DuckDBEngine(demo_like)
    params = {"start": START, "end": START + timedelta(days=DAYS), "recent_hour": 0, "min_records": 1, "top": 50}
    ports = {(r["sensor"], r["subject"]) for r in eng.run(sq.SERIES["port"], params)}
    assert ("honeypot", "139") in ports and not any(s == "36779" for _, s in ports)
    exploits = eng.run(sq.SERIES["exploit"], params)
    total = sum(r["records"] for r in exploits)
    probes = demo_like.query("SELECT count(*) AS n FROM events WHERE event = 'exploit.attempt' "
                             "AND json_extract_string(data, '$.kind') = 'probe'").to_pylist()[0]["n"]
    attempts = demo_like.query("SELECT count(*) AS n FROM events WHERE event = 'exploit.attempt'").to_pylist()[0]["n"]
    assert probes > 0 and total == attempts - probes


def test_source_networks_ipv4_16_and_ipv6_48(store: Store) -> None:
    b = EventBatchBuilder("fw")
    addresses = ["198.51.100.7", "198.51.7.1", "2001:db8:1::5", "2001:db8::5", "2001:db8:aa:bb::1", "::1",
                 "203.0.113.9"]
    for i, src in enumerate(addresses):
        b.add("fw.connection", START + timedelta(minutes=i), f"r{i}", src_ip=src, dst_ip="192.0.2.1", dst_port=445,
              proto="tcp", count=2)
    store.write_events(b.take())
    rows = DuckDBEngine(store).run(sq.SERIES["srcnet"], {"start": START, "end": START + timedelta(hours=1),
                                                         "recent_hour": 0, "min_records": 1, "top": 50})
    got = {r["subject"]: (r["sources"], r["records"]) for r in rows}
    assert got == {"198.51.0.0/16": (2, 4), "2001:db8:1::/48": (1, 2), "2001:db8::/48": (1, 2),
                   "2001:db8:aa::/48": (1, 2), "::/48": (1, 2), "203.0.0.0/16": (1, 2)}


def test_top_and_floor_keep_the_busy_subjects(store: Store) -> None:
    b = EventBatchBuilder("fw")
    for port, n in ((22, 30), (23, 20), (80, 5)):
        for j in range(n):
            b.add("fw.connection", START + timedelta(minutes=j), f"{port} {j}", src_ip=f"198.51.100.{j + 1}",
                  dst_ip="192.0.2.1", dst_port=port, proto="tcp")
    b.add("fw.connection", START + timedelta(hours=5), "new", src_ip="198.51.100.1", dst_ip="192.0.2.1",
          dst_port=8080, proto="tcp", count=9)  # few records overall, but all of them recent
    store.write_events(b.take())
    eng = DuckDBEngine(store)

    def subjects(top: int, floor: int) -> set[str]:
        rows = eng.run(sq.SERIES["port"], {"start": START, "end": START + timedelta(hours=6), "recent_hour": 5,
                                           "min_records": floor, "top": top})
        return {r["subject"] for r in rows}

    assert subjects(1, 1) == {"22", "8080"}  # the month's leader and the recent hours' leader
    assert subjects(2, 6) == {"22", "23", "8080"}
    assert subjects(50, 10) == {"22", "23"}


def test_empty_store_single_event_and_gaps(store: Store) -> None:
    eng = DuckDBEngine(store)
    report = surge_report(eng)
    assert report.surges == [] and report.notes == ["no events stored yet: nothing to compare"]
    b = EventBatchBuilder("fw")
    b.add("fw.connection", START, "one", src_ip="198.51.100.1", dst_ip="192.0.2.1", dst_port=445, proto="tcp")
    store.write_events(b.take())
    report = surge_report(eng)
    assert report.surges == [] and report.notes == ["fw: not enough data for a baseline: 0 of 7 days"]
    assert detect_surges(eng, until=START - timedelta(days=60)) == []
    assert surge_report(eng, until=START - timedelta(days=60)).notes[0].startswith("no events in the 30 days")
    # three weeks with a four-day hole at every sensor: the hole is no drop, the return no surge
    b = EventBatchBuilder("fw")
    for i in range(2):
        y = seasonal(15.0, seed=i)
        y[8 * 24:12 * 24] = 0
        add_port_hours(b, 445, y, i)
    store.write_events(b.take())
    assert detect_surges(eng, until=START + timedelta(days=DAYS) - timedelta(seconds=1)) == []
    with pytest.raises(ValueError, match="unknown surge kind"):
        detect_surges(eng, kinds=("ports",))


def test_cli_table_json_and_notes(demo_like_path: Path, tmp_path: Path) -> None:
    until = (START + timedelta(hours=ONSET + 30)).isoformat()
    path = str(demo_like_path)
    runner = CliRunner()
    res = runner.invoke(surges_cmd, ["--db", path, "--until", until, "--kind", "port"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("surges from 2024-06-20 16:00 to 2024-07-20 16:00 UTC, 4 sensors")
    row139 = next(line for line in lines if line.startswith("port") and " 139 " in line)
    assert "agreed" in row139 and "4/4" in row139  # the honeypot's netbios-ssn sessions rise too
    res = runner.invoke(surges_cmd, ["--db", path, "--until", until, "--format", "json", "--kind", "port",
                                     "--kind", "exploit"])
    rows = json.loads(res.stdout)
    assert {(r["kind"], r["subject"], r["scope"]) for r in rows} == {
        ("port", "139", "agreed"), ("port", "445", "local"), ("exploit", "MS06-040", "local")}
    empty = tmp_path / "empty.duckdb"
    Store(empty).close()
    res = runner.invoke(surges_cmd, ["--db", str(empty)])
    assert res.exit_code == 0 and "note: no events stored yet" in res.output and "(no rows)" in res.output


# --- DuckDB and Spark ----------------------------------------------------------------------------


@pytest.mark.spark
def test_spark_gives_the_same_series_and_surges(spark: Any, demo_like_path: Path, tmp_path: Path) -> None:
    shutil.copy(demo_like_path, tmp_path / "copy.duckdb")
    st = Store(tmp_path / "copy.duckdb")
    b = EventBatchBuilder("fw-v6")  # IPv6 sources for the /48 expression
    for i, src in enumerate(["2001:db8:1::5", "2001:db8::5", "2001:db8:aa:bb::1", "198.51.100.3"] * 10):
        b.add("fw.connection", START + timedelta(hours=i), f"v6 {i}", src_ip=src, dst_ip="192.0.2.1", dst_port=445,
              proto="tcp", count=1 + i % 3)
    st.write_events(b.take())
    duck, sp = both_engines(st, tmp_path / "lake", spark)
    params = {"start": START, "end": START + timedelta(days=DAYS), "recent_hour": 400, "min_records": 3, "top": 5}
    for kind, sql in sq.SERIES.items():
        expected = duck.run(sql, params)
        assert expected, kind
        assert sp.run(sql, params) == expected, kind
    window_params = {"start": START, "end": START + timedelta(days=DAYS)}
    assert sp.run(sq.ACTIVITY, window_params) == duck.run(sq.ACTIVITY, window_params)
    assert sp.run(sq.LATEST) == duck.run(sq.LATEST)
    until = START + timedelta(hours=ONSET + 30)
    surges = detect_surges(duck, until=until)
    assert surges and detect_surges(sp, until=until) == surges
    st.close()
