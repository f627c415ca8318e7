"""Benchmark: the port report on DuckDB over 1M, 10M (default) and 100M fw.connection rows.

For each size N a fresh store in a temporary directory is filled inside DuckDB (``INSERT ...
SELECT ... FROM range(N)``) with hash-based pseudo-random, skewed traffic over 30 days in time
order (as ingest writes it): a few hot ports (445 alone is a fifth of it, then 22, 23, 80, 3389,
139, ...), 85 % tcp / 12 % udp / 3 % icmp, a few hundred heavy scanners behind a third of the
records, a /16 of targets, one record in ten with a count above 1. Then the report is timed:

- ``latest``: the default day (newest fw.connection day);
- ``top ports``: the top 10 ports of that day by records;
- ``history 445``: port 445 per day over all days, from the rollup (its live computation and the
  one-off refresh of all days are timed and printed too);
- ``top sources``: the top 10 sources of that day.

Each query runs once cold (first after filling) and then three times; the table shows the cold
time and the best warm time, and the ratio of each to the smallest N run in the same process.
Target: the whole report (the sum) under 5 s at 100M rows.

    .venv/bin/python bench/bench_port_report.py                 # 1M and 10M
    .venv/bin/python bench/bench_port_report.py --rows 100M     # needs a few GB in --tmp
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stormwatch.analytics import DuckDBEngine, latest_day, port_history, refresh_rollup, top_ports, top_sources
from stormwatch.store import Store

DAY_US = 86_400_000_000
START = "2024-07-15 00:00:00"
DAYS = 30

# Every column is a function of the row number i and a salt, through DuckDB's hash(): the same N
# always gives the same data, and DuckDB builds it in parallel without leaving SQL.
FILL = f"""
INSERT INTO events
SELECT i AS event_id, 'fw.connection', 1,
       make_timestamp(epoch_us(TIMESTAMP '{START}') + CAST(i::HUGEINT * {DAYS * DAY_US} // $n AS BIGINT)),
       'bench', NULL,
       CASE WHEN kind < 30 THEN '198.51.' || (hash(i, 5) % 200) || '.' || (hash(i, 5) % 7 + 1)
            WHEN kind < 33 THEN '2001:db8:' || printf('%x', hash(src, 6) % 65536) || '::'
                                || printf('%x', src % 65536)
            ELSE (hash(src, 6) % 223 + 1) || '.' || (hash(src, 6) >> 8) % 256 || '.'
                 || (hash(src, 6) >> 16) % 256 || '.' || (hash(src, 6) >> 24) % 256
       END AS src_ip,
       CASE WHEN proto = 'icmp' THEN NULL ELSE 1024 + hash(i, 9) % 64000 END AS src_port,
       '172.16.' || (hash(i, 7) % 256) || '.' || (hash(i, 7) >> 8) % 256 AS dst_ip,
       CASE WHEN proto = 'icmp' THEN NULL
            WHEN r < 200 THEN 445 WHEN r < 300 THEN 22 WHEN r < 380 THEN 23 WHEN r < 430 THEN 80
            WHEN r < 470 THEN 3389 WHEN r < 500 THEN 139 WHEN r < 520 THEN 1433 WHEN r < 535 THEN 135
            ELSE 1 + hash(i, 2) % 65535 END AS dst_port,
       proto,
       CASE WHEN proto = 'tcp' THEN 'S' END AS tcp_flags,
       'drop', 'unanswered',
       CASE WHEN hash(i, 8) % 10 = 0 THEN 2 + hash(i, 8) % 9 ELSE 1 END AS count,
       NULL
FROM (SELECT *,
             -- background sources: a skewed draw (u squared) from a pool that slides by a third of
             -- its size a day, so that sources churn from day to day as in DShield's data
             CAST(floor(CASE WHEN kind < 33 THEN 8192 ELSE 131072 END
                        * pow((hash(i, 10) % 1000000007) / 1000000007.0, 2)) AS BIGINT)
               + day * 43691 AS src
      FROM (SELECT i, i * {DAYS} // $n AS day, hash(i, 4) % 100 AS kind, hash(i, 1) % 1000 AS r,
                   CASE WHEN hash(i, 3) % 100 < 85 THEN 'tcp' WHEN hash(i, 3) % 100 < 97 THEN 'udp'
                        ELSE 'icmp' END AS proto
            FROM range($n) t(i)))
"""

SIZES = {"1M": 1_000_000, "10M": 10_000_000, "100M": 100_000_000}


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def cpu_timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """Wall and CPU seconds (all of DuckDB's threads): on a shared machine the CPU time is the
    steadier figure; on an idle one, wall ~ CPU / threads."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def run(n: int, tmp: Path) -> dict[str, Any]:
    db = tmp / f"bench_{n}.duckdb"
    store = Store(db)
    fill_s, _ = timed(lambda: store.con.execute(FILL, {"n": n}))
    # the fill bypasses the writer, so no day is in the rollup yet: history runs live first
    engine = DuckDBEngine(store)
    live_s, live = timed(lambda: port_history(engine, 445))
    refresh_s, days = timed(lambda: refresh_rollup(store))
    store.con.execute("CHECKPOINT")
    size = db.stat().st_size
    day = latest_day(engine)
    assert day is not None
    report: dict[str, Callable[[], Any]] = {
        "latest": lambda: latest_day(engine),
        "top ports": lambda: top_ports(engine, day, "records", 10),
        "history 445": lambda: port_history(engine, 445),
        "top sources": lambda: top_sources(engine, day, limit=10),
    }
    cold, warm, cpu, results = {}, {}, {}, {}
    for name, fn in report.items():
        cold[name], results[name] = timed(fn)
        warm[name], cpu[name] = min(cpu_timed(fn) for _ in range(3))
    store.close()
    db.unlink()
    assert results["history 445"] == live, "the rollup must give exactly the live history"
    return {"n": n, "fill": fill_s, "size": size, "cold": cold, "warm": warm, "cpu": cpu, "results": results,
            "live_history": live_s, "refresh": refresh_s, "days": days}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="1M,10M", help="comma-separated sizes among 1M, 10M, 100M (default 1M,10M)")
    ap.add_argument("--tmp", default=None, help="directory for the temporary databases")
    args = ap.parse_args()
    sizes = [SIZES[s.strip().upper()] for s in args.rows.split(",")]
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench_port_report_", dir=args.tmp) as tmp:
        for n in sizes:
            r = run(n, Path(tmp))
            runs.append(r)
            top = r["results"]["top ports"][0]
            print(f"N={n:,}: filled in {r['fill']:.1f} s, {r['size'] / 2**20:,.0f} MiB; top port of "
                  f"{top['day']}: {top['port']} ({top['records']:,} records, {top['sources']:,} sources, "
                  f"{top['targets']:,} targets)", flush=True)
            print(f"  history 445 computed live (no rollup): {r['live_history']:.3f} s; rollup refresh of "
                  f"{r['days']} days: {r['refresh']:.1f} s ({r['refresh'] / max(r['days'], 1):.2f} s/day)", flush=True)
    base = runs[0]
    print()
    print(f"{'rows':>12} {'query':<12} {'cold s':>8} {'warm s':>8} {'cpu s':>8} {'x warm':>8} {'x cpu':>8}")
    for r in runs:
        for name in [*base["cold"], "report"]:
            def fig(run: dict[str, Any], key: str, name: str = name) -> float:
                return float(sum(run[key].values()) if name == "report" else run[key][name])
            print(f"{r['n']:>12,} {name:<12} {fig(r, 'cold'):>8.3f} {fig(r, 'warm'):>8.3f} "
                  f"{fig(r, 'cpu'):>8.3f} {fig(r, 'warm') / fig(base, 'warm'):>8.1f} "
                  f"{fig(r, 'cpu') / fig(base, 'cpu'):>8.1f}")
    print(f"\nx: ratio to N={base['n']:,} run in this process (rows ratio up to "
          f"{runs[-1]['n'] / base['n']:.0f}x); cold = first run, warm = best of 3, cpu = its CPU time")


if __name__ == "__main__":
    main()
