"""Run every benchmark of bench/ one after the other with its default sizes (see bench/README.md).

    .venv/bin/python bench/run_all.py [--only NAME[,NAME...]] [--quick]

``--quick`` uses small sizes (a smoke run, not figures to quote). Each benchmark prints its own
table with ratios against the baseline it runs in the same process.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name -> (script, default arguments, quick arguments)
BENCHES: dict[str, tuple[str, list[str], list[str]]] = {
    "ingest_iptables": ("bench_ingest_iptables.py", [], ["--lines", "300000", "--subset", "50000", "--runs", "1"]),
    "ingest_pcap": ("bench_ingest_pcap.py", [], ["--packets", "200000", "--subset", "50000"]),
    "port_report": ("bench_port_report.py", [], ["--rows", "1M"]),
    "sensor_sessions": ("bench_sensor_sessions.py", [], ["--seconds", "3"]),
    "sensor_idle": ("bench_sensor_idle.py", [], ["--connections", "2000"]),
    "replay": ("bench_replay.py", [], ["--copies", "5", "--runs", "1"]),
    "payload": ("bench_payload.py", [], []),
    "campaigns": ("bench_campaigns.py", [], ["--attacks", "100k", "--families", "20"]),
    "web": ("bench_web.py", [], ["--events", "1000000", "--days", "30"]),
    # the early-warning evaluations (issue 4): detection delay, misses, false alarms
    "eval_surges": ("eval/eval_surges.py", [], ["--runs", "3", "--quick"]),
    "eval_scanners": ("eval/eval_scanners.py", [], []),
    "eval_outbreak": ("eval/eval_outbreak.py", [], []),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated names: " + ", ".join(BENCHES))
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    args = ap.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHES)
    failed = []
    for name in names:
        script, default, quick = BENCHES[name]
        cmd = [sys.executable, str(HERE / script), *(quick if args.quick else default)]
        print(f"\n==== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd)
        print(f"==== {name}: exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
