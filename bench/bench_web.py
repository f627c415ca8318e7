"""Dashboard page times on a big store.

Builds a store of ``--events`` rows (default 10 million) directly with DuckDB SQL into the events
table: ``--days`` days of firewall records from four sensors in time order (as ingest appends
them), a Zipf-like port mix, a pool of sources, plus honeypot sessions with exploit attempts and
offers, then refreshes the port rollup (as ``stormwatch ingest`` does), and times every page
through the ASGI app (FastAPI's TestClient, no network): the first request (cold: the
early-warning signals are computed) and the median of three more (warm: the signals are cached
for 60 s). The baseline, run in the same process, is one full scan of the events table
(``SELECT count(DISTINCT src_ip)``); ratios are page time / that scan.

    .venv/bin/python bench/bench_web.py [--events 10000000] [--days 60] [--db PATH] [--keep]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from datetime import datetime
from pathlib import Path

from stormwatch.analytics import refresh_rollup
from stormwatch.store import Store
from stormwatch.web.app import create_app
from stormwatch.web.settings import WebSettings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

START = datetime(2006, 6, 1)
SESSIONS = 20_000  # honeypot sessions, each with 5 events

FILL_FW = """
INSERT INTO events
SELECT i::UHUGEINT, 'fw.connection', 1,
       TIMESTAMP '{start}' + to_microseconds((i::HUGEINT * {span_us} // {n})::BIGINT),
       ['dshield-pi', 'campus-fw', 'branch-dshield', 'edge-fw'][1 + (hash(i) % 4)::INTEGER],
       NULL,
       '10.' || (hash(i * 7) % 200)::VARCHAR || '.' || (hash(i * 11) % 250)::VARCHAR || '.'
             || (hash(i * 13) % 250)::VARCHAR,
       1024 + (hash(i * 3) % 60000)::INTEGER,
       '192.0.2.' || (hash(i * 5) % 250)::VARCHAR,
       [445, 135, 139, 1026, 22, 1433, 80, 3389, 4899, 5900, 8080, 23, 25, 3306, 1434,
        (hash(i * 17) % 65535)::INTEGER]
       [1 + least(15, floor(-ln((hash(i * 19) % 1000000 + 1) / 1000001.0) * 3))::INTEGER],
       'tcp', 'S', 'drop', NULL, 1, NULL
FROM range({n}) t(i)
"""

FILL_HONEYPOT = """
INSERT INTO events
SELECT ({n} + s * 5 + k)::UHUGEINT,
       ['session.connect', 'smb.session_setup', 'exploit.attempt', 'payload.offer', 'session.closed'][k + 1],
       1, TIMESTAMP '{start}' + to_microseconds((s::HUGEINT * {span_us} // {sessions})::BIGINT + k * 1000),
       'honeypot', md5(s::VARCHAR), '127.' || (s % 250)::VARCHAR || '.' || (s // 250 % 250)::VARCHAR || '.9',
       40000 + k, '127.0.0.1', 445, 'tcp', NULL, NULL, NULL, 1,
       CASE k WHEN 0 THEN '{{"service":"smb","persona":"win2000"}}'
              WHEN 1 THEN '{{"auth":"anonymous","native_os":"Windows 2000 2195","user":""}}'
              WHEN 2 THEN '{{"vuln":"MS06-040","cve":"CVE-2006-3439","kind":"exploit","detector":"srvsvc",'
                          || '"confidence":0.95,"payload_sha256":"' || sha256((s % 50)::VARCHAR)
                          || '","payload_size":710}}'
              WHEN 3 THEN '{{"url":"tftp://203.0.113.' || (s % 9)::VARCHAR || ':69/bot.exe","protocol":"tftp",'
                          || '"host":"203.0.113.1","port":69,"filename":"bot.exe"}}'
              ELSE '{{"bytes_in":900,"bytes_out":700,"reason":"client"}}' END
FROM range({sessions}) a(s), range(5) b(k)
"""


def build(db: Path, n: int, days: int) -> float:
    t = time.perf_counter()
    span_us = days * 86_400 * 1_000_000
    with Store(db) as store:
        store.con.execute(FILL_FW.format(start=START, span_us=span_us, n=n))
        store.con.execute(FILL_HONEYPOT.format(start=START, span_us=span_us, n=n, sessions=SESSIONS))
        store.con.execute("CHECKPOINT")
        t_fill = time.perf_counter() - t
        print(f"filled {n:,} + {SESSIONS * 5:,} events in {t_fill:.1f} s", flush=True)
        refreshed = refresh_rollup(store)
        print(f"rollup: {refreshed} days in {time.perf_counter() - t - t_fill:.1f} s", flush=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--db", type=Path, default=None, help="reuse this store if it exists, else build it there")
    ap.add_argument("--keep", action="store_true", help="keep the temporary store")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-web-"))
    db = args.db or tmp / "big.duckdb"
    if not db.exists():
        build(db, args.events, args.days)
    app = create_app(WebSettings(db=db, read_only=True, api_tokens=()))
    store = app.state.web.store
    total = store.query("SELECT count(*) AS n FROM events").column("n")[0].as_py()
    t = time.perf_counter()
    store.query("SELECT count(DISTINCT src_ip) AS n FROM events")
    base = time.perf_counter() - t
    session = store.query("SELECT session FROM events WHERE session IS NOT NULL ORDER BY ts DESC LIMIT 1"
                          ).column("session")[0].as_py()
    src = store.query("SELECT src_ip FROM events WHERE event = 'fw.connection' ORDER BY ts DESC LIMIT 1"
                      ).column("src_ip")[0].as_py()
    pages = ["/", "/ports", "/ports/445", "/ports/139?days=365", "/vulns", "/vulns/MS06-040",
             "/vulns/MS06-040/advisory", "/campaigns", "/sessions", f"/sessions/{session}", f"/sources/{src}",
             "/sources/127.1.1.9"]
    print(f"\nstore: {total:,} events over {args.days} days ({db}); baseline full scan "
          f"count(DISTINCT src_ip): {base * 1000:.0f} ms\n")
    print(f"{'page':<34} {'status':>6} {'cold ms':>9} {'warm ms':>9} {'warm/scan':>10}")
    with TestClient(app) as c:
        for url in pages:
            t = time.perf_counter()
            status = c.get(url, headers={"accept": "text/html"}).status_code
            cold = time.perf_counter() - t
            warm = []
            for _ in range(3):
                t = time.perf_counter()
                c.get(url, headers={"accept": "text/html"})
                warm.append(time.perf_counter() - t)
            w = statistics.median(warm)
            print(f"{url[:34]:<34} {status:>6} {cold * 1000:>9.0f} {w * 1000:>9.0f} {w / base:>10.2f}")
    if not args.keep and args.db is None:
        store.close()
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()
    else:
        print(f"\nstore kept at {db}")


if __name__ == "__main__":
    main()
