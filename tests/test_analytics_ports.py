"""The port report on DuckDB, against figures computed by hand from a small, known store.

The events (UTC) are listed in ``KNOWN``; the expected figures in each test are worked out from
that list in the comments, following the ISC definitions in ``stormwatch.analytics.ports``.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from stormwatch.analytics import (
    DuckDBEngine,
    latest_day,
    port_days,
    port_history,
    top_ports,
    top_sources,
)
from stormwatch.analytics.engine import render
from stormwatch.events import EventBatchBuilder
from stormwatch.store import Store

D1, D2, D4 = date(2024, 8, 13), date(2024, 8, 14), date(2024, 8, 16)  # no event on 2024-08-15


def ts(day: date, h: int, m: int = 0, s: int = 0, us: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, h, m, s, us)


# (event, ts, src_ip, dst_ip, dst_port, proto, count)
KNOWN: list[tuple[str, datetime, str, str, int | None, str, int]] = [
    # day 1
    ("fw.connection", ts(D1, 8), "198.51.100.7", "192.0.2.10", 445, "tcp", 3),
    ("fw.connection", ts(D1, 8, 5), "198.51.100.7", "192.0.2.11", 445, "tcp", 1),
    ("fw.connection", ts(D1, 9), "2001:db8::66", "2001:db8:1::10", 445, "tcp", 2),
    ("fw.connection", ts(D1, 10), "203.0.113.5", "192.0.2.10", 445, "udp", 2),
    ("fw.connection", ts(D1, 11), "203.0.113.5", "192.0.2.10", 139, "tcp", 1),
    ("fw.connection", ts(D1, 12), "203.0.113.5", "192.0.2.12", 139, "tcp", 1),
    ("fw.connection", ts(D1, 13), "198.51.100.7", "192.0.2.10", None, "icmp", 5),
    ("fw.connection", ts(D1, 14), "203.0.113.9", "192.0.2.10", 53, "udp", 4),
    ("fw.connection", ts(D1, 16), "203.0.113.9", "192.0.2.13", 139, "udp", 1),
    ("ids.alert", ts(D1, 15), "198.51.100.7", "192.0.2.10", 445, "tcp", 1),  # not a connection
    # day 2, from midnight (inclusive) to its last microsecond
    ("fw.connection", ts(D2, 0), "198.51.100.7", "192.0.2.10", 445, "tcp", 1),
    ("fw.connection", ts(D2, 23, 59, 59, 999_999), "198.51.100.8", "192.0.2.20", 445, "tcp", 2),
    ("fw.connection", ts(D2, 12), "2001:db8::66", "2001:db8:1::10", 22, "tcp", 1),
    ("fw.connection", ts(D2, 13), "2001:db8::66", "2001:db8:1::10", None, "icmp6", 1),
    ("fw.connection", ts(D2, 14), "100.64.0.1", "192.0.2.10", None, "icmp", 2),
    # day 4
    ("fw.connection", ts(D4, 6, 30), "203.0.113.5", "192.0.2.10", 445, "tcp", 7),
    # a later alert must not move the report's latest day
    ("ids.alert", ts(D4 + timedelta(days=1), 1), "198.51.100.7", "192.0.2.10", 445, "tcp", 1),
]


def build(store: Store, rows: list[tuple[str, datetime, str, str, int | None, str, int]]) -> None:
    b = EventBatchBuilder("edge-1")
    for i, (event, t, src, dst, dport, proto, count) in enumerate(rows):
        fields: dict[str, Any] = {"src_ip": src, "dst_ip": dst, "dst_port": dport, "proto": proto,
                                  "count": count, "src_port": None if dport is None else 40000 + i}
        if event == "fw.connection":
            fields["action"] = "drop"
            fields["tcp_flags"] = "S" if proto == "tcp" else None
        b.add(event, t, f"line {i}", **fields)
    store.write_events(b.take())


@pytest.fixture
def engine(store: Store) -> DuckDBEngine:
    build(store, KNOWN)
    return DuckDBEngine(store)


def port_row(rows: list[Any], port: int) -> dict[str, Any]:
    (row,) = [r for r in rows if r["port"] == port]
    return dict(row)


def test_latest_day_ignores_other_events(engine: DuckDBEngine) -> None:
    assert latest_day(engine) == D4


def test_port_day_figures(engine: DuckDBEngine) -> None:
    rows = port_days(engine, D1)
    assert [(r["day"], r["port"]) for r in rows] == [(D1, 53), (D1, 139), (D1, 445)]
    # 445: counts 3+1+2 (tcp) + 2 (udp) = 8 records; targets .10 .11 and 2001:db8:1::10;
    # sources 198.51.100.7, 2001:db8::66, 203.0.113.5; the ids.alert is not counted
    assert port_row(rows, 445) == {
        "day": D1, "port": 445, "records": 8, "targets": 3, "sources": 3,
        "tcp": 75.0, "udp": 25.0, "survival": 32400.0,  # 86400 * 3 / 8
        "first_seen": ts(D1, 8), "last_seen": ts(D1, 10),
    }
    # 139: 1+1 tcp + 1 udp; targets .10 .12 .13; sources 203.0.113.5 and .9
    assert port_row(rows, 139) == {
        "day": D1, "port": 139, "records": 3, "targets": 3, "sources": 2,
        "tcp": 66.67, "udp": 33.33, "survival": 86400.0,
        "first_seen": ts(D1, 11), "last_seen": ts(D1, 16),
    }
    assert port_row(rows, 53)["tcp"] == 0.0
    assert port_row(rows, 53)["udp"] == 100.0
    assert port_row(rows, 53)["survival"] == 21600.0  # 86400 * 1 / 4


def test_port_days_over_a_range_skip_portless_protocols(engine: DuckDBEngine) -> None:
    rows = port_days(engine, D1, D4)
    assert [(r["day"], r["port"]) for r in rows] == [
        (D1, 53), (D1, 139), (D1, 445), (D2, 22), (D2, 445), (D4, 445)]
    # day 2, port 445: midnight belongs to day 2, and so does 23:59:59.999999
    assert port_row([r for r in rows if r["day"] == D2], 445) == {
        "day": D2, "port": 445, "records": 3, "targets": 2, "sources": 2,
        "tcp": 100.0, "udp": 0.0, "survival": 57600.0,  # 86400 * 2 / 3
        "first_seen": ts(D2, 0), "last_seen": ts(D2, 23, 59, 59, 999_999),
    }


def test_top_ports_by_each_metric(engine: DuckDBEngine) -> None:
    by_records = top_ports(engine, D1, "records", 10)
    assert [(r["rank"], r["port"], r["records"]) for r in by_records] == [(1, 445, 8), (2, 53, 4), (3, 139, 3)]
    assert by_records[0]["survival"] == 32400.0
    assert [(r["port"], r["sources"]) for r in top_ports(engine, D1, "sources", 10)] == [
        (445, 3), (139, 2), (53, 1)]
    # 139 and 445 both have 3 targets: the lower port number ranks first
    assert [(r["rank"], r["port"], r["targets"]) for r in top_ports(engine, D1, "targets", 2)] == [
        (1, 139, 3), (2, 445, 3)]


def test_top_ports_default_day_is_the_latest(engine: DuckDBEngine) -> None:
    rows = top_ports(engine)
    assert [(r["day"], r["port"], r["records"], r["targets"]) for r in rows] == [(D4, 445, 7, 1)]
    assert rows[0]["survival"] == 12342.86  # 86400 * 1 / 7 = 12342.857...


def test_port_history_leaves_out_days_without_records(engine: DuckDBEngine) -> None:
    rows = port_history(engine, 445)
    assert [(r["day"], r["records"], r["targets"], r["sources"]) for r in rows] == [
        (D1, 8, 3, 3), (D2, 3, 2, 2), (D4, 7, 1, 1)]
    assert [r["day"] for r in port_history(engine, 445, since=D2)] == [D2, D4]
    assert [r["day"] for r in port_history(engine, 445, since=D2, until=D2 + timedelta(days=1))] == [D2]
    assert [r["day"] for r in port_history(engine, 445, until=D1)] == [D1]
    assert port_history(engine, 22) == port_days(engine, D2)[:1]
    assert port_history(engine, 8080) == []


def test_top_sources_of_a_day(engine: DuckDBEngine) -> None:
    rows = top_sources(engine, D1)
    assert [(r["rank"], r["src_ip"], r["records"], r["ports"], r["targets"]) for r in rows] == [
        (1, "198.51.100.7", 9, 1, 2),  # 3 + 1 on 445, 5 ICMP (target .10 already counted)
        (2, "203.0.113.9", 5, 2, 2),
        (3, "203.0.113.5", 4, 2, 2),
        (4, "2001:db8::66", 2, 1, 1),
    ]
    assert rows[0]["top_ports"] == [{"port": 445, "records": 4}]
    # 2 records each on 139 and 445: ties go to the lower port
    assert rows[2]["top_ports"] == [{"port": 139, "records": 2}, {"port": 445, "records": 2}]
    assert rows[1]["top_ports"] == [{"port": 53, "records": 4}, {"port": 139, "records": 1}]
    assert (rows[0]["first_seen"], rows[0]["last_seen"]) == (ts(D1, 8), ts(D1, 13))


def test_top_sources_ties_by_address_and_icmp_only_sources(engine: DuckDBEngine) -> None:
    rows = top_sources(engine, D2)
    assert [(r["src_ip"], r["records"], r["ports"], r["top_ports"]) for r in rows] == [
        ("100.64.0.1", 2, 0, []),  # ICMP only: no ports
        ("198.51.100.8", 2, 1, [{"port": 445, "records": 2}]),
        ("2001:db8::66", 2, 1, [{"port": 22, "records": 1}]),
        ("198.51.100.7", 1, 1, [{"port": 445, "records": 1}]),
    ]
    # the cut falls inside a three-way tie: the lower addresses (as text) make it
    assert [r["src_ip"] for r in top_sources(engine, D2, limit=2)] == ["100.64.0.1", "198.51.100.8"]


def test_top_sources_since_a_date(engine: DuckDBEngine) -> None:
    rows = top_sources(engine, since=D1, limit=4)
    assert [(r["src_ip"], r["records"], r["ports"], r["targets"]) for r in rows] == [
        ("203.0.113.5", 11, 2, 2), ("198.51.100.7", 10, 1, 2), ("203.0.113.9", 5, 2, 2),
        ("2001:db8::66", 4, 2, 1)]
    assert rows[0]["top_ports"] == [{"port": 445, "records": 9}, {"port": 139, "records": 2}]
    assert rows[0]["last_seen"] == ts(D4, 6, 30)
    assert rows[3]["top_ports"] == [{"port": 445, "records": 2}, {"port": 22, "records": 1}]
    assert [r["src_ip"] for r in top_sources(engine, since=D2, until=D2)] == [
        r["src_ip"] for r in top_sources(engine, D2)]
    assert top_sources(engine) == top_sources(engine, D4)


def test_top_sources_lists_at_most_ten_ports(store: Store) -> None:
    # one scanner hits ports 1..12, port p with p records: its top ten are 12 down to 3
    build(store, [("fw.connection", ts(D1, 1, p), "192.0.2.200", "198.51.100.1", p, "tcp", p)
                  for p in range(1, 13)])
    (row,) = top_sources(DuckDBEngine(store), D1)
    assert row["ports"] == 12
    assert row["records"] == sum(range(1, 13))
    assert row["top_ports"] == [{"port": p, "records": p} for p in range(12, 2, -1)]


def test_empty_store(store: Store) -> None:
    engine = DuckDBEngine(store)
    assert latest_day(engine) is None
    assert top_ports(engine) == []
    assert top_sources(engine) == []
    assert port_history(engine, 445) == []


def reference_port_days(rows: list[tuple[str, datetime, str, str, int | None, str, int]]) -> list[dict[str, Any]]:
    """The port_day figures computed in plain Python, straight from the ISC definitions."""
    acc: dict[tuple[date, int], dict[str, Any]] = {}
    for event, t, src, dst, port, proto, count in rows:
        if event != "fw.connection" or port is None:
            continue
        a = acc.setdefault((t.date(), port), {"records": 0, "tcp": 0, "udp": 0, "dst": set(), "src": set(),
                                               "first": t, "last": t})
        a["records"] += count
        a[proto] = a.get(proto, 0) + count
        a["dst"].add(dst)
        a["src"].add(src)
        a["first"], a["last"] = min(a["first"], t), max(a["last"], t)
    return [{"day": day, "port": port, "records": a["records"], "targets": len(a["dst"]),
             "sources": len(a["src"]), "tcp": round(100 * a["tcp"] / a["records"], 2),
             "udp": round(100 * a["udp"] / a["records"], 2),
             "survival": round(86400 * len(a["dst"]) / a["records"], 2),
             "first_seen": a["first"], "last_seen": a["last"]}
            for (day, port), a in sorted(acc.items())]


def reference_top_sources(rows: list[tuple[str, datetime, str, str, int | None, str, int]],
                          day: date) -> list[tuple[str, int, int, int, list[tuple[int, int]]]]:
    records: dict[str, int] = defaultdict(int)
    targets: dict[str, set[str]] = defaultdict(set)
    ports: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for event, t, src, dst, port, _proto, count in rows:
        if event == "fw.connection" and t.date() == day:
            records[src] += count
            targets[src].add(dst)
            if port is not None:
                ports[src][port] += count
    ranked = sorted(records, key=lambda s: (-records[s], s))
    return [(s, records[s], len(ports[s]), len(targets[s]),
             sorted(ports[s].items(), key=lambda pr: (-pr[1], pr[0]))[:10]) for s in ranked]


def test_against_a_plain_python_reference(store: Store) -> None:
    # few ports and addresses, so that rankings tie often and the tie-breaks are exercised
    rnd = random.Random(445)
    rows: list[tuple[str, datetime, str, str, int | None, str, int]] = []
    for _ in range(3000):
        t = datetime.combine(D1, datetime.min.time()) + timedelta(seconds=rnd.randrange(3 * 86400))
        proto = rnd.choice(["tcp", "tcp", "tcp", "udp", "icmp"])
        port = None if proto == "icmp" else rnd.choice([22, 23, 139, 445, 1433, 3389, rnd.randrange(1, 65536)])
        rows.append((rnd.choice(["fw.connection"] * 9 + ["ids.alert"]), t,
                     rnd.choice([f"203.0.113.{i}" for i in range(25)] + ["2001:db8::1", "2001:db8::2"]),
                     rnd.choice([f"192.0.2.{i}" for i in range(10)]), port, proto, rnd.choice([1, 1, 1, 2, 7])))
    build(store, rows)
    engine = DuckDBEngine(store)
    expected = reference_port_days(rows)
    assert [dict(r) for r in port_days(engine, D1, D1 + timedelta(days=2))] == expected
    for day in (D1, D1 + timedelta(days=1), D1 + timedelta(days=2)):
        of_day = [r for r in expected if r["day"] == day]
        for by in ("records", "sources", "targets"):
            for limit in (1, 3, 6, 50):
                ranked = sorted(of_day, key=lambda r, by=by: (-r[by], r["port"]))[:limit]
                got = top_ports(engine, day, by, limit)
                assert [{k: v for k, v in r.items() if k != "rank"} for r in got] == ranked
        for limit in (1, 4, 9, 100):
            got_sources = [(r["src_ip"], r["records"], r["ports"], r["targets"],
                            [(p["port"], p["records"]) for p in r["top_ports"]])
                           for r in top_sources(engine, day, limit=limit)]
            assert got_sources == reference_top_sources(rows, day)[:limit]


@pytest.mark.parametrize(("call", "error"), [
    (lambda e: top_ports(e, D1, "bytes", 10), ValueError),
    (lambda e: top_ports(e, D1, "records", 0), ValueError),
    (lambda e: top_ports(e, D1, "records", True), ValueError),
    (lambda e: port_history(e, 65536), ValueError),
    (lambda e: port_history(e, "445"), ValueError),
    (lambda e: port_history(e, 445, since=D2, until=D1), ValueError),
    (lambda e: top_sources(e, D1, since=D1), ValueError),
    (lambda e: port_days(e, datetime(2024, 8, 13, 12)), TypeError),
])
def test_bad_arguments_are_refused(engine: DuckDBEngine, call: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        call(engine)


def test_render_makes_literals_only_from_typed_values() -> None:
    sql = "SELECT {n}, {d}, {t}"
    assert render(sql, {"n": 445, "d": D1, "t": datetime(2024, 8, 13, 1, 2, 3, 4)}) == (
        "SELECT 445, DATE '2024-08-13', TIMESTAMP '2024-08-13 01:02:03.000004'")
    assert render("{t}", {"t": datetime(2024, 8, 13, tzinfo=UTC)}) == "TIMESTAMP '2024-08-13 00:00:00.000000'"
    for bad in ("445", "1; DROP TABLE events", True, 4.5, None):
        with pytest.raises(TypeError):
            render("SELECT {n}", {"n": bad})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        render("{t}", {"t": datetime(2024, 8, 13, tzinfo=timezone(timedelta(hours=2)))})
    with pytest.raises(KeyError):
        render("SELECT {n}", {})
    with pytest.raises(KeyError):
        render("SELECT 1", {"n": 1})
