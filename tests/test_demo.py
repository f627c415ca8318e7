"""`stormwatch demo` end to end: the surge on 139/445 must be visible in the port report, and the
live phase must put real honeypot traffic into the same store: MS06-040 bots from many 127.x
addresses on the surge days, some MS08-067 and MS04-011, and benign clients that raise nothing."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from stormwatch.analytics import DuckDBEngine, port_history, top_ports
from stormwatch.cli.main import cli
from stormwatch.demo import DemoPlan
from stormwatch.demo.attack import LivePlan, schedule, waves
from stormwatch.demo.live import SENSOR, StoryClock
from stormwatch.store import Store, count_rejects, list_events
from stormwatch.store.read import exploit_summary, list_sessions, payload_summary, session_summary


@dataclass
class DemoRun:
    db: Path
    workdir: Path
    output: str


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    tmp = tmp_path_factory.mktemp("demo")
    db, workdir = tmp / "demo.duckdb", tmp / "logs"
    res = CliRunner().invoke(cli, ["demo", "--db", str(db), "--workdir", str(workdir)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return DemoRun(db, workdir, res.output)


@pytest.fixture
def store(demo_run: DemoRun) -> Iterator[Store]:
    with Store(demo_run.db, read_only=True) as st:
        yield st


def test_demo_runs_and_shows_the_surge(demo_run: DemoRun, store: Store) -> None:
    assert "port 139, last 10 days" in demo_run.output
    assert "ERROR" not in demo_run.output
    assert count_rejects(store) == 0
    eng = DuckDBEngine(store)
    hist = {r["day"].isoformat(): r for r in port_history(eng, 139)}
    baseline = sum(hist[f"2006-08-0{d}"]["sources"] for d in range(1, 8)) / 7
    # ISC-style: sources on 139 on the last day are several times the week before
    assert hist["2006-08-14"]["sources"] > 4 * baseline
    top = top_ports(eng, hist["2006-08-14"]["day"], by="sources", limit=2)
    assert {r["port"] for r in top} == {139, 445}
    before = top_ports(eng, hist["2006-08-05"]["day"], by="sources", limit=1)
    assert before[0]["port"] != 139


def _bot_address(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    return addr in ipaddress.ip_network("127.0.0.0/8") and ip != "127.0.0.1"


def test_live_ms06_040_from_many_bots_on_the_surge_days(demo_run: DemoRun, store: Store) -> None:
    assert "(0 failed)" in demo_run.output and "live attacks at" in demo_run.output
    hits = [e for e in list_events(store, event="exploit.attempt", sensor=SENSOR, limit=10_000)
            if e["data"]["vuln"] == "MS06-040"]
    sources = {e["src_ip"] for e in hits}
    assert len(sources) >= 20 and all(_bot_address(s) for s in sources), sources
    # the injected clock puts them on the story's surge days, beside the firewall logs' surge
    assert min(e["ts"] for e in hits) >= DemoPlan().surge_start
    assert max(e["ts"] for e in hits) < DemoPlan().end
    for e in hits:
        assert (e["data"]["kind"], e["data"]["cve"]) == ("exploit", "CVE-2006-3439")
        assert e["data"]["evidence"]["path_units"] in (355, 403, 533)
        assert e["data"]["evidence"]["traversal"] is False
        assert e["dst_ip"] == "127.0.0.1"
    # the store's identity is the socket's: every exploit source also opened a session
    connects = {e["src_ip"] for e in list_events(store, event="session.connect", sensor=SENSOR, limit=10_000)}
    assert sources <= connects
    by_day = {r["day"].isoformat(): r for r in session_summary(store, sensor=SENSOR)}
    assert by_day["2006-08-12"]["exploit_sessions"] < by_day["2006-08-13"]["exploit_sessions"] \
        < by_day["2006-08-14"]["exploit_sessions"]


def test_live_ms08_067_and_ms04_011_are_told_apart(store: Store) -> None:
    rows = {(r["vuln"], r["kind"]): r for r in exploit_summary(store, sensor=SENSOR)}
    assert rows[("MS08-067", "exploit")]["attempts"] >= 1
    assert rows[("MS04-011", "exploit")]["sources"] >= 3
    assert set(rows) <= {("MS06-040", "exploit"), ("MS08-067", "exploit"), ("MS08-067", "probe"),
                         ("MS04-011", "exploit")}
    ms04 = [e for e in list_events(store, event="exploit.attempt", sensor=SENSOR, limit=10_000)
            if e["data"]["vuln"] == "MS04-011"]
    assert {e["data"]["evidence"]["argument"] for e in ms04} == {"dns_domain_name"}
    ms08 = [e for e in list_events(store, event="exploit.attempt", sensor=SENSOR, limit=10_000)
            if e["data"]["vuln"] == "MS08-067" and e["data"]["kind"] == "exploit"]
    assert all(e["data"]["evidence"]["traversal"] and e["data"]["evidence"]["path_type"] == 0x1001 for e in ms08)


def test_live_benign_clients_raise_nothing(store: Store) -> None:
    benign = list_sessions(store, sensor=SENSOR, exploits=False, limit=10_000)
    assert len(benign) >= 10
    assert all(_bot_address(s["src_ip"]) for s in benign)
    assert all(set(s["operations"]) & {"NetrShareEnum", "NetrServerGetInfo"} for s in benign), benign
    assert {s["native_os"] for s in benign} >= {"Unix", "Windows 2000 2195", "Windows 2002 Service Pack 2 2600"}
    attacks = list_sessions(store, sensor=SENSOR, exploits=True, limit=10_000)
    assert not [s for s in attacks if "NetrShareEnum" in s["operations"]]
    assert {s["service"] for s in attacks} == {"smb", "netbios-ssn"}
    assert {p for s in attacks for p in s["pipes"]} == {"browser", "srvsvc", "lsarpc"}
    # the sensor understood every byte: no anomalies, every session closed by its client
    assert list_events(store, event="session.anomaly", sensor=SENSOR) == []
    assert {s["reason"] for s in benign + attacks} == {"client"}


def test_live_spool_and_payloads_match_the_store(demo_run: DemoRun, store: Store) -> None:
    spooled = [json.loads(line) for line in (demo_run.workdir / "sensor-spool.jsonl").read_text().splitlines()]
    stored = store.query("SELECT count(*) AS n FROM events WHERE sensor = $s", {"s": SENSOR}).column("n")[0]
    assert len(spooled) == stored.as_py() > 1000
    payloads = payload_summary(store, sensor=SENSOR, limit=1000)
    assert payloads and {p["vuln"] for p in payloads} == {"MS06-040", "MS08-067", "MS04-011"}
    for p in payloads:
        kept = demo_run.workdir / "payloads" / p["sha256"][:2] / p["sha256"]
        assert kept.stat().st_size == p["size"]
    # a family's bots send the same bytes: the Windows 2000 MS06-040 payload comes from many sources
    assert payloads[0]["sources"] >= 10 and payloads[0]["size"] == 2 * 533


def _epoch(dt: datetime) -> float:
    return dt.replace(tzinfo=UTC).timestamp()


def test_schedule_follows_the_story() -> None:
    plan, live = DemoPlan(), LivePlan()
    visits = schedule(plan, live)
    assert visits == schedule(plan, live)  # seeded: the same demo every time
    assert [v.at for v in visits] == sorted(v.at for v in visits)
    assert len({v.src_ip for v in visits}) == len(visits)
    assert all(_bot_address(v.src_ip) and not v.src_ip.startswith("127.0.") for v in visits)
    t0 = _epoch(plan.surge_start)
    assert min(v.at for v in visits) >= t0 - live.quiet_days * 86400 and max(v.at for v in visits) < _epoch(plan.end)
    # MS06-040 bots only from the surge on, their number growing by surge_growth a day
    ms06 = [v.at for v in visits if v.profile.attack == "MS06-040"]
    per_day = [sum(1 for at in ms06 if t0 + d * 86400 <= at < t0 + (d + 1) * 86400) for d in range(3)]
    assert min(ms06) >= t0 and sum(per_day) == len(ms06)
    assert per_day == [round(live.ms06_040_day1 * plan.surge_growth ** d) for d in range(3)]
    # the other visitors come every day, before the surge too
    for attack in ("benign", "MS04-011"):
        assert min(v.at for v in visits if v.profile.attack == attack) < t0 - 2 * 86400


def test_waves_stay_small_and_close_in_time() -> None:
    visits = schedule(DemoPlan(), LivePlan())
    cut = waves(visits, 6)
    assert [v for w in cut for v in w] == visits
    assert max(len(w) for w in cut) == 6  # the surge days fill whole waves
    assert all(w[-1].at - w[0].at <= 3600 for w in cut)


def test_story_clock_jumps_forward_only() -> None:
    now = [100.0]
    clock = StoryClock(1_155_391_200.0, monotonic=lambda: now[0])
    assert clock() == 1_155_391_200.0
    now[0] += 2.5
    assert clock() == 1_155_391_202.5  # real speed between jumps
    clock.jump(1_155_400_000.0)
    assert clock() == 1_155_400_000.0
    clock.jump(1_155_000_000.0)  # earlier: it holds the time it has
    assert clock() == 1_155_400_000.0
