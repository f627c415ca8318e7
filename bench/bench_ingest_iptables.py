"""Benchmark: iptables LOG lines into the DuckDB store — the vectorised reader against a Python loop.

Writes a synthetic ``kern.log`` (BSD syslog headers with the kernel's uptime stamp; DShield, ufw
and other prefixes; TCP SYNs mostly, then UDP, ICMP and some IPv6; a few other programs' lines) to
a temporary directory, then times in the same run:

- the baseline: a straightforward loop with one compiled regular expression per line building
  the same fields into an EventBatchBuilder and writing them to a Store (on the first
  ``--subset`` lines: it is slow);
- ``IptablesReader().read()`` alone (parse only, Arrow chunks out);
- the real path end to end: a Store in the temporary directory and
  ``stormwatch.collector.ingest_paths(store, [path], fmt="iptables")``;
- the store alone: the reader's chunks written again to a fresh Store through the BatchWriter;
- DuckDB alone, no parsing: one fused ``INSERT INTO events SELECT md5_number(...), <fixed slices
  of the line> FROM read_csv(...)`` into a fresh Store, with no checks and no de-duplication (the
  cost of reading, hashing and storing the lines with DuckDB's own functions; the compiled
  scanner hashes faster than md5_number and so beats it with the parsing included);
- the SQL path the reader takes without the compiled scanner (no C compiler at install).

It prints lines per second (best of ``--runs``), CPU microseconds per line (all threads of the
process) and the ratios; the baseline and the reader must find the same events on the subset.
The CPU figures are the steadier ones when other processes share the machine.

    .venv/bin/python bench/bench_ingest_iptables.py [--lines 2000000] [--subset 200000] [--runs 2]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from stormwatch.collector.ingest import ingest_paths
from stormwatch.events import EventBatchBuilder
from stormwatch.ingest import netfilter_fast
from stormwatch.ingest.base import Source
from stormwatch.ingest.iptables import IptablesReader
from stormwatch.store import BatchWriter, Store

YEAR = 2026
MAC = "MAC=00:16:3e:5e:6c:00:00:16:3e:0c:01:02:08:00"
PREFIXES = ("DSHIELDINPUT ", "DSHIELDINPUT ", "[UFW BLOCK] ", "DROP-IN: ", "fw-in ")
OTHER = ("sshd[812]: Failed password for root from 198.51.100.7 port 50022 ssh2",
         "CRON[4410]: (root) CMD (   cd / && run-parts --report /etc/cron.hourly)",
         "systemd[1]: Started Session 42 of user pi.")


def generate(path: Path, n: int, seed: int = 7) -> None:
    """``n`` lines, time-ordered over about a day from Nov 26 00:00."""
    r = random.Random(seed)
    sensor = "192.0.2.10"
    v6dst = "2001:0db8:0000:0000:0000:0000:0000:000a"
    with open(path, "w") as f:
        uptime = 86_400.0
        for i in range(n):
            t = i * 86_000 // n
            uptime += r.random() * 0.05
            head = f"Nov {26 + t // 86400:2d} {t // 3600 % 24:02}:{t // 60 % 60:02}:{t % 60:02} sensor "
            x = r.random()
            if x < 0.03:
                f.write(head + r.choice(OTHER) + "\n")
                continue
            head += f"kernel: [{uptime:12.6f}] {r.choice(PREFIXES)}"
            ttl, ident = r.randint(30, 250), r.randint(0, 65535)
            if x < 0.08:  # IPv6, written in full as the kernel's %pI6 does
                src = f"2001:0db8:{r.randint(0, 0xffff):04x}:0000:0000:0000:0000:{r.randint(1, 0xffff):04x}"
                f.write(f"{head}IN=eth0 OUT= MAC=00:16:3e:5e:6c:00:00:16:3e:0c:01:02:86:dd SRC={src} DST={v6dst} "
                        f"LEN=80 TC=0 HOPLIMIT={ttl} FLOWLBL=0 PROTO=TCP SPT={r.randint(1024, 65535)} DPT=445 "
                        "WINDOW=28800 RES=0x00 SYN URGP=0\n")
                continue
            src = f"{r.randint(1, 223)}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
            ip = f"IN=eth0 OUT= {MAC} SRC={src} DST={sensor} "
            if x < 0.72:
                dpt = r.choice((445, 445, 139, 22, 23, 80, 3389, 8080, 1433))
                f.write(f"{head}{ip}LEN=44 TOS=0x00 PREC=0x00 TTL={ttl} ID={ident} PROTO=TCP "
                        f"SPT={r.randint(1024, 65535)} DPT={dpt} WINDOW=1024 RES=0x00 SYN URGP=0 \n")
            elif x < 0.92:
                dpt = r.choice((137, 53, 1900, 5060, 123))
                f.write(f"{head}{ip}LEN=78 TOS=0x00 PREC=0x00 TTL={ttl} ID={ident} PROTO=UDP "
                        f"SPT={r.randint(1024, 65535)} DPT={dpt} LEN=58 \n")
            else:
                f.write(f"{head}{ip}LEN=84 TOS=0x00 PREC=0x00 TTL={ttl} ID={ident} DF PROTO=ICMP TYPE=8 CODE=0 "
                        f"ID={r.randint(0, 65535)} SEQ=1 \n")


# --- the baseline: one regular expression per line -------------------------------------------------

_LINE = re.compile(
    r"(?P<mon>[A-Z][a-z]{2}) (?P<day>[ \d]\d) (?P<hms>\d\d:\d\d:\d\d) \S+ kernel: (?:\[ *\d+\.\d+\] )?"
    r"(?P<rule>.*?)IN=(?P<in>\S*) OUT=(?P<out>\S*) .*?SRC=(?P<src>\S+) DST=(?P<dst>\S+) LEN=(?P<len>\d+) "
    r".*?(?:TTL|HOPLIMIT)=(?P<ttl>\d+) .*?PROTO=(?P<proto>\S+)"
    r"(?: SPT=(?P<spt>\d+) DPT=(?P<dpt>\d+))?(?: TYPE=(?P<type>\d+) CODE=(?P<code>\d+))?"
    r"(?:.*? RES=0x\w\w (?P<flags>(?:[A-Z]{3} )*)URGP=)?")
_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                       "Nov", "Dec"), 1)}
_PROTOS = {"TCP": "tcp", "UDP": "udp", "ICMP": "icmp", "ICMPv6": "icmp6"}
_LETTERS = {"CWR": "C", "ECE": "E", "URG": "U", "ACK": "A", "PSH": "P", "RST": "R", "SYN": "S", "FIN": "F"}


def _compress6(a: str) -> str:
    import ipaddress
    return ipaddress.ip_address(a).compressed if ":" in a else a


def baseline(path: Path, n: int, store: Store) -> int:
    """Parse the first ``n`` lines with one regex each, build events, write them to ``store``."""
    out = EventBatchBuilder("bench")
    with open(path) as f:
        for _, line in zip(range(n), f, strict=False):
            line = line.rstrip("\n")
            m = _LINE.match(line)
            if m is None:
                continue
            g = m.groupdict()
            hh, mm, ss = (int(x) for x in g["hms"].split(":"))
            ts = datetime(YEAR, _MONTHS[g["mon"]], int(g["day"]), hh, mm, ss)
            rule = g["rule"].strip() or None
            low = (rule or "").lower()
            action = ("reject" if "reject" in low else "drop" if any(w in low for w in ("drop", "block", "deny"))
                      else "accept" if any(w in low for w in ("accept", "allow")) else "log")
            proto = _PROTOS.get(g["proto"], g["proto"].lower())
            flags = None
            if proto == "tcp" and g["flags"] is not None:
                words = g["flags"].split()
                flags = "".join(c for w, c in _LETTERS.items() if w in words)
            icmp = proto in ("icmp", "icmp6")
            out.add("fw.connection", ts, line, src_ip=_compress6(g["src"]), dst_ip=_compress6(g["dst"]),
                    src_port=None if icmp or g["spt"] is None else int(g["spt"]),
                    dst_port=None if icmp or g["dpt"] is None else int(g["dpt"]), proto=proto, tcp_flags=flags,
                    action=action, format="iptables", rule=rule, in_iface=g["in"] or None,
                    out_iface=g["out"] or None, length=int(g["len"]), ttl=int(g["ttl"]),
                    icmp_type=int(g["type"]) if icmp and g["type"] else None,
                    icmp_code=int(g["code"]) if icmp and g["code"] else None)
    table = out.take()
    store.write_events(table)
    return int(table.num_rows)


# --- the floor: storing with MD5 ids and no parsing ------------------------------------------------

# Columns of about the sizes the parse produces (addresses, a JSON-sized data text), cut at fixed
# places of the line; the event id is hashed exactly as the store hashes it.
FLOOR_SQL = """
INSERT INTO events
SELECT md5_number('fw.connection' || chr(0) || 'bench' || chr(0) || line), 'fw.connection', 1,
  TIMESTAMP '2026-11-26' + to_microseconds(length(line)), 'bench', NULL, substr(line, 100, 14), length(line),
  substr(line, 114, 10), 445, 'tcp', 'S', 'drop', NULL, 1, substr(line, 40, 80)
FROM read_csv('{path}', columns = {{'line': 'VARCHAR'}}, delim = chr(1), quote = '', escape = '', header = false,
              auto_detect = false)
"""


# --- timing ---------------------------------------------------------------------------------------


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)  # all threads: DuckDB's and the writer's too
    return r.ru_utime + r.ru_stime


CPU: dict[str, float] = {}


def best(runs: int, fn: Callable[[], int], name: str) -> tuple[float, int]:
    """Best wall time of ``runs`` calls of ``fn`` (its CPU seconds go to CPU[name])."""
    times, result = [], 0
    for _ in range(runs):
        t0, c0 = time.perf_counter(), _cpu()
        result = fn()
        times.append(time.perf_counter() - t0)
        CPU[name] = min(CPU.get(name, 1e9), _cpu() - c0)
    return min(times), result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=2_000_000)
    ap.add_argument("--subset", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-iptables-") as tmp:
        d = Path(tmp)
        path, subset = d / "kern.log", d / "subset.log"
        t0 = time.perf_counter()
        generate(path, args.lines)
        with open(path) as f, open(subset, "w") as g:
            for _, line in zip(range(args.subset), f, strict=False):
                g.write(line)
        size = path.stat().st_size / 1e6
        print(f"generated {args.lines:,} lines ({size:.0f} MB) in {time.perf_counter() - t0:.1f} s")
        src, sub = Source(str(path), "bench", None, YEAR), Source(str(subset), "bench", None, YEAR)
        reader = IptablesReader()

        def base_run() -> int:
            with Store(d / f"base-{time.monotonic_ns()}.duckdb") as st:
                return baseline(subset, args.subset, st)

        def parse(s: Source) -> int:
            return sum(c.events.num_rows for c in reader.read(s))

        def e2e() -> int:
            with Store(d / f"e2e-{time.monotonic_ns()}.duckdb") as st:
                (summary,) = ingest_paths(st, [str(path)], fmt="iptables", sensor="bench")
                assert summary.error is None, summary.error
                return summary.accepted

        tables = [c.events for c in reader.read(src)]

        def store_only() -> int:
            with Store(d / f"store-{time.monotonic_ns()}.duckdb") as st, BatchWriter(st) as w:
                for t in tables:
                    w.put(t)
                return w.flush().inserted

        def floor() -> int:
            with Store(d / f"floor-{time.monotonic_ns()}.duckdb") as st:
                return int(st.con.execute(FLOOR_SQL.format(path=str(path).replace("'", "''"))).fetchall()[0][0])

        t_base, n_base = best(1, base_run, "base")
        n_check = parse(sub)
        if n_check != n_base:
            print(f"MISMATCH: baseline found {n_base} events on the subset, the reader {n_check}")
            return 1
        t_sub, _ = best(args.runs, lambda: parse(sub), "sub")
        t_parse, n_parse = best(args.runs, lambda: parse(src), "parse")
        t_store, n_store = best(args.runs, store_only, "store")
        t_e2e, n_e2e = best(args.runs, e2e, "e2e")
        t_floor, _ = best(args.runs, floor, "floor")
        sql_reader = IptablesReader()
        sql_reader.use_compiled = False
        t_sql, n_sql = best(1, lambda: sum(c.events.num_rows for c in sql_reader.read(src)), "sql")
        events = sum(t.num_rows for t in tables)
        tables.clear()
        rows = [
            ("baseline: regex loop + builder + store", args.subset, t_base, "base"),
            ("IptablesReader parse only (subset)", args.subset, t_sub, "sub"),
            ("IptablesReader parse only", args.lines, t_parse, "parse"),
            ("store only (BatchWriter, same events)", args.lines, t_store, "store"),
            ("end to end: ingest_paths into a Store", args.lines, t_e2e, "e2e"),
            ("DuckDB alone: read_csv + md5 + insert", args.lines, t_floor, "floor"),
            ("SQL path parse only (no compiler)", args.lines, t_sql, "sql"),
        ]
        print(f"\n{'path':42s} {'lines':>10s} {'seconds':>8s} {'lines/s':>12s} {'cpu us/line':>12s}")
        for name, n, t, key in rows:
            print(f"{name:42s} {n:>10,} {t:>8.2f} {n / t:>12,.0f} {CPU[key] / n * 1e6:>12.2f}")
        base_rate = args.subset / t_base
        print(f"\nevents: {events:,} of {args.lines:,} lines (stored: {n_store:,}, end to end: {n_e2e:,})")
        print(f"end to end / baseline:  {args.lines / t_e2e / base_rate:5.1f}x")
        print(f"parse only / baseline:  {args.lines / t_parse / base_rate:5.1f}x")
        print(f"CPU per line, baseline / end to end: {CPU['base'] / args.subset / (CPU['e2e'] / args.lines):5.1f}x"
              f"  (load average now {os.getloadavg()[0]:.2f}: other processes share the 2 cores)")
        print(f"end to end / DuckDB alone (no parsing): {t_floor / t_e2e:5.2f}")
        print(f"parse only, compiled / SQL path: {t_sql / t_parse:5.2f}"
              f"  (compiled scanner built: {netfilter_fast.available()}, MD5 lanes: "
              f"{netfilter_fast.md5_lanes() if netfilter_fast.available() else '-'})")
        print(f"end to end >= 1,000,000 lines/s: {'yes' if args.lines / t_e2e >= 1e6 else 'no'}")
        assert n_parse == events == n_e2e == n_store == n_sql
    return 0


if __name__ == "__main__":
    pa.set_cpu_count(2)
    sys.exit(main())
