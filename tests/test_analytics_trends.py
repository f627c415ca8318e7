"""Port trends (ISC Trend and Protocol Ratio Change) on DuckDB: figures worked out by hand from a
small store, the demo data's MS06-040 surge, thin data, and the CLI.

Windows for DAY = 2024-08-20: recent = 08-18..08-20 (3 days), baseline = 07-22..08-20 (30 days).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from engine_helpers import both_engines
from stormwatch.analytics import DuckDBEngine
from stormwatch.analytics.trends import PortTrend, port_trends
from stormwatch.cli.main import cli
from stormwatch.collector import ingest_paths
from stormwatch.demo import DemoPlan, generate
from stormwatch.demo.generate import SENSORS
from stormwatch.events import EventBatchBuilder
from stormwatch.store import Store

DAY = date(2024, 8, 20)
A, B, C, D, E = "198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4", "203.0.113.5"
T1, T2, T3 = "192.0.2.1", "192.0.2.2", "192.0.2.3"

# (event, sensor, ts, src, dst, dst_port, proto, count)
Ev = tuple[str, str, datetime, str, str, int | None, str, int]


def at(month: int, day: int, hour: int = 12) -> datetime:
    return datetime(2024, month, day, hour)


KNOWN: list[Ev] = [
    # port 445, 08-01 (baseline only): records 10, sources {A, B}, targets {T1}, tcp 6/10 = 60 %
    ("fw.connection", "edge-1", at(8, 1), A, T1, 445, "tcp", 6),
    ("fw.connection", "edge-1", at(8, 1, 13), B, T1, 445, "udp", 4),
    # 08-19: records 12, sources {A, C, D}, targets {T1, T2}, tcp 100 %
    ("fw.connection", "edge-1", at(8, 19), A, T1, 445, "tcp", 5),
    ("fw.connection", "edge-2", at(8, 19, 1), C, T2, 445, "tcp", 5),
    ("fw.connection", "edge-2", at(8, 19, 2), D, T2, 445, "tcp", 2),
    # 08-20: records 3, sources {A}, targets {T3}, tcp 0 %
    ("fw.connection", "edge-2", at(8, 20, 23), A, T3, 445, "udp", 3),
    # outside both windows (the day before the baseline, the day after DAY): ignored
    ("fw.connection", "edge-1", at(7, 21, 23), C, T1, 445, "tcp", 100),
    ("fw.connection", "edge-1", at(8, 21, 0), C, T1, 445, "tcp", 100),
    # not a connection, and no port: ignored by the per-port figures
    ("ids.alert", "edge-1", at(8, 20), E, T1, 445, "tcp", 50),
    ("fw.connection", "edge-2", at(8, 20), E, T1, None, "icmp", 50),
    # one stray packet on 80 and on 8080 (records 1 in the recent window)
    ("fw.connection", "edge-2", at(8, 20, 3), E, T1, 80, "tcp", 1),
    ("fw.connection", "edge-2", at(8, 19, 3), E, T1, 8080, "tcp", 1),
]
# port 22: 4 records a day from E to T1, every day of the baseline window: a flat line
KNOWN += [("fw.connection", "edge-1", datetime.combine(DAY - timedelta(days=i), datetime.min.time()), E, T1, 22,
           "tcp", 4) for i in range(30)]


def build(store: Store, rows: list[Ev]) -> None:
    for sensor in sorted({r[1] for r in rows}):
        b = EventBatchBuilder(sensor)
        for i, (event, s, t, src, dst, dport, proto, count) in enumerate(rows):
            if s != sensor:
                continue
            fields: dict[str, Any] = {"src_ip": src, "dst_ip": dst, "dst_port": dport, "proto": proto,
                                      "count": count, "src_port": None if dport is None else 40000 + i}
            if event == "fw.connection":
                fields["action"] = "drop"
            b.add(event, t, f"line {i}", **fields)
        store.write_events(b.take())


@pytest.fixture
def engine(store: Store) -> DuckDBEngine:
    build(store, KNOWN)
    return DuckDBEngine(store)


def by_port(rows: list[PortTrend]) -> dict[int, PortTrend]:
    return {r["port"]: r for r in rows}


def test_figures_by_hand(engine: DuckDBEngine) -> None:
    rows = port_trends(engine, DAY)
    assert [(r["rank"], r["port"]) for r in rows] == [(1, 445), (2, 22)]  # 80, 8080: < 10 records
    t = by_port(rows)[445]
    # records: recent 12 + 3 = 15 -> 5.0 a day; baseline 10 + 15 = 25 -> 0.83; ratio 5 / (25/30) = 6
    assert (t["records_3d"], t["records_30d"], t["records_ratio"]) == (5.0, 0.83, 6.0)
    # daily distinct sources: 2 (08-01), 3 (08-19), 1 (08-20): recent 4/3, baseline 6/30
    assert (t["sources_3d"], t["sources_30d"], t["sources_ratio"]) == (1.33, 0.2, 6.67)
    # daily distinct targets: 1, 2, 1: recent 3/3 = 1, baseline 4/30; ratio 7.5
    assert (t["targets_3d"], t["targets_30d"], t["targets_ratio"]) == (1.0, 0.13, 7.5)
    # daily TCP ratios 60, 100, 0: recent (100 + 0) / 2 = 50, baseline 160/3 = 53.33; prc -3.33
    assert (t["tcp_3d"], t["tcp_30d"], t["prc"]) == (50.0, 53.33, -3.33)
    assert (t["days"], t["sensors"], t["note"]) == (3, 2, None)
    flat = by_port(rows)[22]
    assert (flat["records_3d"], flat["records_30d"], flat["records_ratio"]) == (4.0, 4.0, 1.0)
    assert (flat["sources_ratio"], flat["targets_ratio"], flat["prc"]) == (1.0, 1.0, 0.0)
    assert (flat["tcp_3d"], flat["days"], flat["sensors"]) == (100.0, 30, 1)


def test_ranking_min_records_and_ties(engine: DuckDBEngine) -> None:
    # with min_records 1 the stray packets rank first (ratio 10: all of the baseline is recent),
    # tied, so by port number
    rows = port_trends(engine, DAY, min_records=1, by="records")
    assert [(r["port"], r["records_ratio"]) for r in rows] == [(80, 10.0), (8080, 10.0), (445, 6.0), (22, 1.0)]
    assert [r["port"] for r in port_trends(engine, DAY, by="targets", min_records=1, limit=3)] == [80, 8080, 445]
    # the threshold is inclusive: 445 has exactly 15 recent records
    assert [r["port"] for r in port_trends(engine, DAY, min_records=15)] == [445]
    assert port_trends(engine, DAY, min_records=16) == []
    # the day defaults to the newest with fw.connection data (08-21: the late 445 record; the
    # ids.alert is not a connection): 445 then has 12 + 3 + 100 recent records, 10 + 115 in 30 days
    latest = port_trends(engine, min_records=1)
    assert latest == port_trends(engine, date(2024, 8, 21), min_records=1)
    assert (by_port(latest)[445]["records_3d"], by_port(latest)[445]["records_ratio"]) == (38.33, 9.2)


def test_bad_arguments(engine: DuckDBEngine) -> None:
    with pytest.raises(ValueError, match="rank trends"):
        port_trends(engine, DAY, by="tcp")
    with pytest.raises(ValueError, match="min_records"):
        port_trends(engine, DAY, min_records=0)
    with pytest.raises(ValueError, match="limit"):
        port_trends(engine, DAY, limit=0)


def test_thin_data_gives_a_note(store: Store) -> None:
    build(store, [r for r in KNOWN if r[2].date() in (date(2024, 8, 19), DAY)])
    rows = port_trends(DuckDBEngine(store), DAY)
    assert rows and all(r["note"] == "not enough data for a baseline: 2 of 7 days" for r in rows)
    # still computed: port 22 has 2 recent days of 4 records and nothing else, 8/3 against 8/30
    assert by_port(rows)[445]["records_ratio"] == 10.0


def test_an_empty_store(store: Store) -> None:
    assert port_trends(DuckDBEngine(store)) == []


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("demo")
    db = tmp / "demo.duckdb"
    with Store(db) as store:
        for path, sensor in zip(generate(tmp / "logs", DemoPlan()), SENSORS, strict=True):
            (summary,) = ingest_paths(store, [str(path)], sensor=sensor)
            assert summary.error is None and summary.accepted > 0
    yield db


def test_demo_surge_on_139_and_445(demo_db: Path) -> None:
    with Store(demo_db, read_only=True) as store:
        eng = DuckDBEngine(store)
        rows = port_trends(eng, date(2006, 8, 14), limit=50)
        flat = port_trends(eng, date(2006, 8, 1), limit=50)
    assert [r["port"] for r in rows[:2]] == [139, 445]
    t = by_port(rows)
    # 139: ~500 sources a day, then 690, 1037, 2823 on 08-12..14; the 30-day baseline holds the
    # surge days too (ISC's "last 30 days"), so the ratio is 1516.67 / 594.9 = 2.55 rather than ~3
    assert t[139]["sources_ratio"] is not None and t[139]["sources_ratio"] > 2.5
    assert t[139]["records_ratio"] is not None and t[139]["records_ratio"] > 4
    assert t[445]["sources_ratio"] is not None and t[445]["sources_ratio"] > 1.4
    # well above every other port
    assert all(r["sources_ratio"] is not None and r["sources_ratio"] < 1.2 for r in rows[2:])
    assert t[139]["sensors"] == t[445]["sensors"] == 3
    assert t[22]["sources_ratio"] is not None and 0.7 < t[22]["sources_ratio"] < 1.3
    assert all(r["note"] is None for r in rows)
    # before the surge nothing stands out
    assert all(r["sources_ratio"] is not None and r["sources_ratio"] < 2 for r in flat)


def test_cli(demo_db: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["report", "trends", "--db", str(demo_db), "--limit", "3"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "port trends by sources on 2006-08-14" in res.output and "note:" not in res.output
    body = res.output.splitlines()
    assert any(line.split()[:2] in (["1", "139"], ["1", "445"]) for line in body)
    res = CliRunner().invoke(cli, ["report", "trends", "--db", str(demo_db), "--format", "json", "--by", "records",
                                   "--day", "2006-08-14", "--min-records", "5", "--limit", "5"],
                             catch_exceptions=False)
    rows = json.loads(res.output)
    assert len(rows) == 5 and rows[0]["port"] == 139 and rows[0]["note"] is None
    assert [r["records_ratio"] for r in rows] == sorted((r["records_ratio"] for r in rows), reverse=True)
    res = CliRunner().invoke(cli, ["report", "trends", "--db", str(demo_db), "--format", "csv", "--limit", "2"],
                             catch_exceptions=False)
    assert res.output.splitlines()[0].startswith("rank,port,records_3d,records_30d,records_ratio")
    assert len(res.output.splitlines()) == 3
    # thin data: the note is printed
    db = tmp_path / "thin.duckdb"
    with Store(db) as store:
        build(store, [r for r in KNOWN if r[2].date() in (date(2024, 8, 19), DAY)])
    res = CliRunner().invoke(cli, ["report", "trends", "--db", str(db), "--day", "2024-08-20"],
                             catch_exceptions=False)
    assert "note: not enough data for a baseline: 2 of 7 days" in res.output
    assert res.exit_code == 0


@pytest.mark.spark
@pytest.mark.parametrize("by", ["records", "sources", "targets"])
def test_spark_gives_the_same_trends(spark_engines: tuple[DuckDBEngine, Any], by: str) -> None:
    duck, spark = spark_engines
    for day in (DAY, date(2024, 8, 21), None):
        expected = port_trends(duck, day, by=by, min_records=1)
        assert expected and port_trends(spark, day, by=by, min_records=1) == expected


@pytest.fixture(scope="module")
def spark_engines(tmp_path_factory: pytest.TempPathFactory, spark: Any) -> Iterator[tuple[DuckDBEngine, Any]]:
    tmp = tmp_path_factory.mktemp("trends-spark")
    with Store(tmp / "known.duckdb") as store:
        build(store, KNOWN)
        yield both_engines(store, tmp / "lake", spark)
