"""A small demo store built the way `make demo` builds the big one (about 10 s): three firewall
sensors' generated logs with the MS06-040 surge, the honeypot attacked live by impacket bots on
loopback, the rollup, and the threat level replayed over the surge. Tests of the dashboard, the
API and the exports read it."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from stormwatch.analytics import DuckDBEngine, refresh_rollup
from stormwatch.collector import ingest_paths
from stormwatch.demo import DemoPlan, generate
from stormwatch.demo.attack import LivePlan
from stormwatch.demo.generate import SENSORS
from stormwatch.store import Store
from stormwatch.threat.level import replay_level

PLAN = DemoPlan(start=datetime(2006, 7, 31), days=15, background_per_day=400, surge_sources_day1=40)
LIVE = LivePlan(quiet_days=1, ms06_040_day1=4, ms08_067_per_day=1, ms04_011_per_day=1, benign_per_day=1,
                concurrency=4)


def build_demo_store(tmp: Path) -> Path:
    """Build it under ``tmp``; returns the store's path. Needs impacket (the bots' client)."""
    from stormwatch.demo.live import run_live  # imports impacket

    db = tmp / "demo.duckdb"
    paths = generate(tmp / "logs", PLAN)
    with Store(db) as store:
        for path, sensor in zip(paths, SENSORS, strict=True):
            (summary,) = ingest_paths(store, [str(path)], sensor=sensor)
            assert summary.error is None, summary
        live = run_live(store, tmp / "live", PLAN, LIVE)
        assert live.report.failed == 0, live.report.errors
        refresh_rollup(store)
        changes = replay_level(store, DuckDBEngine(store), datetime(2006, 8, 12), PLAN.end, step=timedelta(hours=12))
        assert changes, "the replay over the surge must raise the level"
    return db
