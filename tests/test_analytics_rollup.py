"""The DuckDB rollup of the port report gives exactly the live figures, fresh or stale."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from stormwatch.analytics import DuckDBEngine, port_history, queries, refresh_rollup
from stormwatch.analytics.ports import _day_range, _port_day
from stormwatch.analytics.rollup import stale_days
from stormwatch.events import EventBatchBuilder
from stormwatch.store import Store

T0 = datetime(2006, 8, 1)


def _write(store: Store, n: int, seed: int, days: int = 6) -> None:
    rng = random.Random(seed)
    b = EventBatchBuilder(f"s{seed % 3}")
    for i in range(n):
        ts = T0 + timedelta(seconds=rng.randrange(days * 86400))
        b.add("fw.connection", ts, f"{seed}-{i}", src_ip=f"198.51.100.{rng.randrange(60)}",
              dst_ip=f"192.0.2.{rng.randrange(30)}", src_port=rng.randrange(1024, 65535),
              dst_port=rng.choice([139, 445, 22, 80]), proto=rng.choice(["tcp", "tcp", "udp"]),
              count=rng.choice([1, 1, 1, 3]))
    store.write_events(b.take())


def _live(engine: DuckDBEngine, port: int) -> list[dict[str, object]]:
    params = {**_day_range(T0.date(), (T0 + timedelta(days=30)).date()), "port": port}
    return [dict(_port_day(r)) for r in engine.run(queries.PORT_HISTORY, params)]


def test_rollup_matches_live_before_and_after_refresh_and_after_new_writes(store: Store) -> None:
    eng = DuckDBEngine(store)
    _write(store, 3000, seed=1)
    assert len(stale_days(store)) == 6
    live = _live(eng, 445)
    assert [dict(r) for r in port_history(eng, 445)] == live  # all stale: computed live
    assert refresh_rollup(store) == 6
    assert stale_days(store) == []
    assert [dict(r) for r in port_history(eng, 445)] == live  # all from the rollup
    # a later write touches two days: those are stale again, the rest still from the rollup
    _write(store, 500, seed=2, days=2)
    assert len(stale_days(store)) == 2
    live2 = _live(eng, 445)
    assert live2 != live
    assert [dict(r) for r in port_history(eng, 445)] == live2
    refresh_rollup(store)
    assert [dict(r) for r in port_history(eng, 445)] == live2
    since = (T0 + timedelta(days=2)).date()
    assert [dict(r) for r in port_history(eng, 445, since=since)] == [r for r in live2 if r["day"] >= since]


def test_rows_written_around_the_store_writer_are_still_counted(store: Store) -> None:
    """A day the rollup never heard of is computed live, not dropped."""
    eng = DuckDBEngine(store)
    _write(store, 300, seed=4, days=2)
    refresh_rollup(store)
    store.con.execute("INSERT INTO events SELECT * REPLACE (ts + INTERVAL 10 DAY AS ts, md5_number(event_id::VARCHAR) "
                      "AS event_id) FROM events")
    assert [r["day"] for r in port_history(eng, 445)] == sorted(
        {r["day"] for r in _live(eng, 445)})


def test_duplicates_do_not_mark_days_stale(store: Store) -> None:
    _write(store, 100, seed=3)
    refresh_rollup(store)
    _write(store, 100, seed=3)  # the same records again: nothing inserted
    assert stale_days(store) == []
