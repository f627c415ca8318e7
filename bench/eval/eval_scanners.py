"""Evaluation of scanner detection: TRW (ours, Jung et al. 2004 defaults) against Zeek's threshold.

Labelled scenarios, seeded (same figures every run):

- simulated scanners (``SCANNERS``): random scanning of a /16 with 1 % of contacts answered
  (worm-like, Blaster/Sasser era rates), inbound and outbound; a 445 bot at one contact per 30 s;
  a very slow scanner at one contact per 20 min; a fast vertical scan of ports 1-1024 with 2 %
  open; scanners whose contacts succeed 20 % (TRW's theta1) and 40 % of the time;
- simulated benign hosts (``BENIGN``): local clients with 95 % and 80 % (TRW's theta0) of first
  contacts answered, and busy remote clients (1 contact/s, 90 % answered, e.g. a mail relay);
- real logs from ``../shared/data/logs``: the labelled CTU-SME-11 Zeek log (every source is a
  negative: no flow is labelled a scan) and the Slips scan samples (positives: the horizontal
  sample, nmap's vertical scan of scanme.nmap.org, the test11 port scan + ping sweep).

Scored per detector: detection rate, mean first contacts to the decision (all contacts of the
source up to and including the deciding one; the anchor: TRW "4 or 5", E[N|H1] = 5.4 by Wald's
approximation), median time to decision, false-positive rate on benign hosts. Detectors:
``trw`` (ours, TRW alone), ``auto`` (ours: TRW with outcomes, 25-target threshold without),
``zeek`` (Zeek scan.zeek: 25 failed distinct host+port in 15 min remote, 250 local, knock-knock 20).
Last, the time to analyse 1M first contacts: the pure decision code alone, and the whole
``detect_scanners`` on a store of 1M events.

    .venv/bin/python bench/eval/eval_scanners.py
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from stormwatch.analytics import DuckDBEngine
from stormwatch.analytics.scanners import Assessment, assess_contacts, detect_scanners
from stormwatch.analytics.trw import ThresholdParams, expected_attempts, wald_expected_attempts
from stormwatch.collector import ingest_paths
from stormwatch.store import Store

T0 = datetime(2006, 8, 13)
DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "logs"
ZEEK = ThresholdParams(limit=25, local_limit=250, knock_knock=20)
DETECTORS: dict[str, dict[str, Any]] = {
    "trw": {"method": "trw"},
    "auto": {"method": "auto"},
    "zeek": {"method": "threshold", "threshold": ZEEK},
}


@dataclass(frozen=True)
class Scenario:
    name: str
    hosts: int
    contacts: int  # first contacts per host
    interval: float  # mean seconds between contacts (exponential)
    hit: float  # probability a contact is answered
    vertical: bool = False
    local: bool = False
    with_outcome: bool = True


SCANNERS = [
    Scenario("worm /16, 1 % hits, 10/s, outbound", 200, 400, 0.1, 0.01, local=True),
    Scenario("worm /16, 1 % hits, 10/s, inbound", 200, 400, 0.1, 0.01),
    Scenario("bot on 445, 5 % hits, 1 per 30 s", 200, 200, 30, 0.05),
    Scenario("slow, 2 % hits, 1 per 20 min", 200, 60, 1200, 0.02),
    Scenario("vertical 1-1024, 2 % open, 50/s", 200, 1024, 0.02, 0.02, vertical=True),
    Scenario("20 % hits (theta1), 1/s", 200, 300, 1, 0.20),
    Scenario("40 % hits, 1/s", 200, 300, 1, 0.40),
    Scenario("firewall log only, 1/s (no outcomes)", 200, 100, 1, 0.0, with_outcome=False),
]
BENIGN = [
    Scenario("local clients, 95 % answered", 1000, 150, 120, 0.95, local=True),
    Scenario("local clients, 80 % answered (theta0)", 500, 150, 120, 0.80, local=True),
    Scenario("busy remote clients, 90 % answered, 1/s", 100, 1000, 1, 0.90),
]


def simulate(sc: Scenario, index: int, rnd: random.Random) -> Iterator[dict[str, Any]]:
    """One scenario's first contacts, source after source, in time order."""
    for h in range(sc.hosts):
        src = f"10.{index}.{h // 250}.{h % 250 + 1}" if sc.local else f"198.{18 + index}.{h // 250}.{h % 250 + 1}"
        t = T0 + timedelta(seconds=rnd.uniform(0, 3600))
        seen: set[tuple[str, int]] = set()
        target = f"172.20.{rnd.randrange(256)}.{rnd.randrange(256)}"
        ports = rnd.sample(range(1, 1025), min(sc.contacts, 1024)) if sc.vertical else []
        for i in range(sc.contacts):
            if sc.vertical:
                dst, port = target, ports[i]
            else:
                while True:  # a new target each time: these are first contacts
                    dst, port = f"172.20.{rnd.randrange(256)}.{rnd.randrange(256)}", 445
                    if (dst, port) not in seen:
                        break
                seen.add((dst, port))
            t += timedelta(seconds=rnd.expovariate(1 / sc.interval))
            outcome = None if not sc.with_outcome else ("answered" if rnd.random() < sc.hit else
                                                        rnd.choice(["unanswered", "unanswered", "reset"]))
            yield {"src_ip": src, "ts": t, "dst_ip": dst, "dst_port": port, "proto": "tcp", "outcome": outcome,
                   "sensors": 1}


def contact_index(rows: list[dict[str, Any]]) -> dict[str, list[datetime]]:
    out: dict[str, list[datetime]] = {}
    for r in rows:
        out.setdefault(r["src_ip"], []).append(r["ts"])
    return out


def score(rows: list[dict[str, Any]], **kw: Any) -> tuple[int, list[int], list[float]]:
    """(sources decided scanner, first contacts to each decision, seconds to each decision)."""
    times = contact_index(rows)
    found, attempts, delays = 0, [], []
    for a in assess_contacts(rows, **kw):
        if a.decision == "scanner" and a.decided_at is not None:
            found += 1
            attempts.append(sum(1 for t in times[a.src] if t <= a.decided_at))
            delays.append((a.decided_at - a.first_seen).total_seconds())
    return found, attempts, delays


def fmt_mean(xs: list[int] | list[float]) -> str:
    return f"{statistics.fmean(xs):.2f}" if xs else "-"


def fmt_median_time(xs: list[float]) -> str:
    if not xs:
        return "-"
    s = statistics.median(xs)
    return f"{s:.0f} s" if s < 600 else f"{s / 60:.0f} min"


def simulated() -> None:
    rnd = random.Random(20040509)
    print("simulated scanners: detection rate, mean first contacts to decision, median time to decision")
    print(f"{'scenario':42} " + "  ".join(f"{d + ' det':>9} {d + ' N':>7} {d + ' t':>9}" for d in DETECTORS))
    for i, sc in enumerate(SCANNERS):
        rows = list(simulate(sc, i, rnd))
        cells = []
        for kw in DETECTORS.values():
            found, attempts, delays = score(rows, **kw)
            cells.append(f"{100 * found / sc.hosts:8.1f}% {fmt_mean(attempts):>7} {fmt_median_time(delays):>9}")
        print(f"{sc.name:42} " + "  ".join(cells))
    print()
    print("simulated benign hosts: false-positive rate")
    print(f"{'scenario':42} " + "  ".join(f"{d + ' FP':>9}" for d in DETECTORS))
    for i, sc in enumerate(BENIGN):
        rows = list(simulate(sc, 50 + i, rnd))
        cells = [f"{100 * score(rows, **kw)[0] / sc.hosts:8.2f}%" for kw in DETECTORS.values()]
        print(f"{sc.name:42} " + "  ".join(cells))
    print()
    exact = [expected_attempts(r)[0] for r in (0.0, 0.01, 0.2)]
    print(f"anchors: Wald E[N|H1] = {wald_expected_attempts():.2f} (Jung et al.: 'after 4 or 5 attempts'); "
          f"exact mean of the walk at 0 % / 1 % / 20 % hits: {exact[0]:.2f} / {exact[1]:.2f} / {exact[2]:.2f}; "
          f"P(scanner) of one test at 80 % hits: {expected_attempts(0.8)[1]:.4f}")


def real_logs(tmp: Path) -> None:
    if not (DATA / "slips_ctu-sme-11-win_zeek_conn.log.labeled").exists():
        print(f"(real logs not found under {DATA}: skipped)")
        return
    print()
    print("real logs")
    with Store(tmp / "benign.duckdb") as st:
        ingest_paths(st, [str(DATA / "slips_ctu-sme-11-win_zeek_conn.log.labeled")])
        sources = {r["src_ip"] for r in st.query("SELECT DISTINCT src_ip FROM events").to_pylist()}
        for name, kw in DETECTORS.items():
            flagged = {s.src for s in detect_scanners(DuckDBEngine(st), **kw)}
            print(f"  CTU-SME-11 labelled, {len(sources)} sources, none a scanner: {name:5} flags {len(flagged)} "
                  f"({100 * len(flagged) / len(sources):.1f} % false positives)")
    known = {"10.0.2.112": "horizontal", "192.168.1.9": "vertical", "10.8.0.69": "vertical + ping sweep"}
    with Store(tmp / "scans.duckdb") as st:
        ingest_paths(st, [str(DATA / n) for n in ("slips_portscan_horizontal_zeek_conn.log",
                                                  "slips_portscan_vertical_zeek_conn.log",
                                                  "slips_test11-portscan.binetflow")])
        for name, kw in DETECTORS.items():
            found = {s.src: s for s in detect_scanners(DuckDBEngine(st), **kw)}
            hits = ", ".join(f"{src} ({what}): " + (f"{found[src].pattern} after {found[src].attempts_to_decision}"
                                                    if src in found else "missed") for src, what in known.items())
            print(f"  Slips scan samples, {name:5}: {len([s for s in known if s in found])} of 3 -- {hits}")


FILL = """
INSERT INTO events
SELECT i AS event_id, 'fw.connection', 1,
       TIMESTAMP '2006-08-13 00:00:00' + to_microseconds(CAST(i * 86400000000 // $n AS BIGINT)),
       'bench', NULL,
       '198.' || (src // 65536) % 256 || '.' || (src // 256) % 256 || '.' || src % 256 AS src_ip,
       40000, '172.20.' || hash(i, 7) % 256 || '.' || (hash(i, 7) >> 8) % 256 AS dst_ip,
       CASE WHEN hash(src, 2) % 50 = 0 THEN 445 ELSE 80 + hash(i, 3) % 3 END AS dst_port, 'tcp', 'S', 'log',
       CASE WHEN hash(i, 5) % 100 < CASE WHEN hash(src, 2) % 50 = 0 THEN 2 ELSE 92 END THEN 'answered'
            ELSE 'unanswered' END AS outcome, 1, NULL
FROM (SELECT i, CAST(floor(20000 * pow((hash(i, 10) % 1000003) / 1000003.0, 2)) AS BIGINT) AS src
      FROM range($n) t(i))
"""


def timing(tmp: Path, n: int = 1_000_000) -> None:
    print()
    print(f"time to analyse {n:,} first contacts")
    rnd = random.Random(1)
    mix = [Scenario("scanners", 2000, 100, 1, 0.02), Scenario("clients", 9000, 100, 60, 0.92, local=True)]
    rows = [r for i, sc in enumerate(mix) for r in simulate(sc, i, rnd)][:n]
    t0 = time.perf_counter()
    verdicts: list[Assessment] = list(assess_contacts(rows))
    pure = time.perf_counter() - t0
    print(f"  decision code alone (assess_contacts): {pure:.2f} s, {len(verdicts)} sources, "
          f"{sum(a.decision == 'scanner' for a in verdicts)} scanners ({n / pure / 1e6:.2f} M contacts/s)")
    with Store(tmp / "big.duckdb") as st:
        st.query(FILL, {"n": n})
        eng = DuckDBEngine(st)
        t0 = time.perf_counter()
        found = detect_scanners(eng)
        whole = time.perf_counter() - t0
        t0 = time.perf_counter()
        detect_scanners(eng)
        warm = time.perf_counter() - t0
    print(f"  detect_scanners on a store of {n:,} events (~20,000 sources, 2 % of them scanning 445): "
          f"{whole:.2f} s cold, {warm:.2f} s warm, {len(found)} scanners")


def main() -> int:
    simulated()
    with tempfile.TemporaryDirectory(prefix="eval-scanners-") as tmp:
        real_logs(Path(tmp))
        timing(Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
