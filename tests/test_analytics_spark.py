"""The port report on Spark (local mode, over the Parquet lake) equals the one on DuckDB.

One generated store (seeded randomness: a few thousand events over a week, skewed ports, IPv4
and IPv6, tcp/udp/icmp/icmp6, counts above 1, events on the stroke of midnight, and ``ids.alert``
noise) is exported as the lake; every query of the report must give identical results on both
engines. ``tests/test_analytics_ports.py`` pins the DuckDB figures by hand, so together they pin
Spark's. A local Spark session takes seconds to start: one is shared by the whole test session.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stormwatch.analytics import (
    DuckDBEngine,
    SparkEngine,
    latest_day,
    port_days,
    port_history,
    top_ports,
    top_sources,
)
from stormwatch.errors import EngineError
from stormwatch.events import EventBatchBuilder
from stormwatch.store import Store, export_lake

pytestmark = pytest.mark.spark

FIRST_DAY = date(2024, 8, 9)
DAYS = 7
ROWS = 4000
HOT_PORTS = [445, 139, 135, 22, 23, 80, 3389, 1433, 53, 5060]


def generate(seed: int) -> list[tuple[str, datetime, str, str, int | None, str, int]]:
    rnd = random.Random(seed)
    # few enough addresses that sources, targets and rankings tie often (the tie-breaks matter)
    sources = [f"203.0.113.{i}" for i in range(1, 40)] + [f"2001:db8:bad::{i:x}" for i in range(1, 15)]
    targets = [f"192.0.2.{i}" for i in range(1, 30)] + [f"2001:db8:1::{i:x}" for i in range(1, 8)]
    rows = []
    for i in range(ROWS):
        day = FIRST_DAY + timedelta(days=rnd.randrange(DAYS))
        if i % 97 == 0:  # on the stroke of midnight, or the last microsecond before it
            t = datetime.combine(day, datetime.min.time()) - timedelta(microseconds=rnd.choice([0, 1]))
        else:
            t = datetime.combine(day, datetime.min.time()) + timedelta(microseconds=rnd.randrange(86_400_000_000))
        proto = rnd.choices(["tcp", "udp", "icmp", "icmp6"], weights=[80, 14, 4, 2])[0]
        port = None if proto.startswith("icmp") else (
            rnd.choice(HOT_PORTS) if rnd.random() < 0.7 else rnd.randrange(1, 65536))
        count = 1 if rnd.random() < 0.8 else rnd.randrange(2, 50)
        event = "ids.alert" if rnd.random() < 0.03 else "fw.connection"
        rows.append((event, t, rnd.choice(sources), rnd.choice(targets), port, proto, count))
    return rows


@pytest.fixture(scope="module")
def engines(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DuckDBEngine, SparkEngine]]:
    tmp = tmp_path_factory.mktemp("equivalence")
    store = Store(tmp / "gen.duckdb")
    b = EventBatchBuilder("gen")
    for i, (event, t, src, dst, dport, proto, count) in enumerate(generate(seed=20060813)):
        b.add(event, t, f"rec {i}", src_ip=src, dst_ip=dst, dst_port=dport, proto=proto, count=count,
              src_port=None if dport is None else 1024 + i)
    store.write_events(b.take())
    assert export_lake(store, tmp / "lake") == ROWS
    yield DuckDBEngine(store), SparkEngine(tmp / "lake", spark)
    store.close()


def test_latest_day_and_all_port_days(engines: tuple[DuckDBEngine, SparkEngine]) -> None:
    duck, spark = engines
    assert latest_day(spark) == latest_day(duck)
    expected = port_days(duck, FIRST_DAY - timedelta(days=1), FIRST_DAY + timedelta(days=DAYS))
    assert len(expected) > 1000  # many (day, port) rows, so the comparison means something
    assert port_days(spark, FIRST_DAY - timedelta(days=1), FIRST_DAY + timedelta(days=DAYS)) == expected


@pytest.mark.parametrize("by", ["records", "sources", "targets"])
def test_top_ports(engines: tuple[DuckDBEngine, SparkEngine], by: str) -> None:
    duck, spark = engines
    for offset in range(-1, DAYS):  # the whole ranking of every day (and of a day with none)
        day = FIRST_DAY + timedelta(days=offset)
        assert top_ports(spark, day, by, 1000) == top_ports(duck, day, by, 1000)
    assert top_ports(spark, by=by, limit=3) == top_ports(duck, by=by, limit=3)


@pytest.mark.parametrize("port", [445, 139, 5060, 8080])
def test_port_history(engines: tuple[DuckDBEngine, SparkEngine], port: int) -> None:
    duck, spark = engines
    assert port_history(spark, port) == port_history(duck, port)
    since, until = FIRST_DAY + timedelta(days=2), FIRST_DAY + timedelta(days=4)
    assert port_history(spark, port, since, until) == port_history(duck, port, since, until)


def test_top_sources(engines: tuple[DuckDBEngine, SparkEngine]) -> None:
    duck, spark = engines
    for offset in range(DAYS):
        day = FIRST_DAY + timedelta(days=offset)
        assert top_sources(spark, day, limit=15) == top_sources(duck, day, limit=15)
    rows = top_sources(duck, since=FIRST_DAY, limit=100)
    assert len(rows) > 40 and all(len(r["top_ports"]) == 10 for r in rows[:5])
    assert top_sources(spark, since=FIRST_DAY, limit=100) == rows
    since = FIRST_DAY + timedelta(days=3)
    assert (top_sources(spark, since=since, until=since, limit=5)
            == top_sources(duck, since=since, until=since, limit=5))


def test_a_missing_lake_is_an_engine_error(spark: Any, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="no Parquet lake"):
        SparkEngine(tmp_path / "nowhere", spark)
