"""Generate realistic firewall logs for the demo: weeks of background Internet scanning seen by
three sensors, then the MS06-040 bot surge on TCP 139 and 445.

The story follows August 2006: Microsoft published MS06-040 on 8 August; from about 12 August bot
families exploiting it scanned 139 and 445, the SANS ISC saw port 139 sources climb, and Symantec
raised ThreatCon to 2. The generator is seeded, so a demo is the same every time.

Three sensors, three formats:
- ``dshield-pi``: a DShield pi honeypot's iptables log (``<epoch> host kernel:[..] DSHIELDINPUT ...``);
- ``campus-fw``: a campus firewall's iptables log in RFC 5424 syslog;
- ``branch-dshield``: a branch office's DShield tab-separated report.

Background ports and weights follow what ISC's port reports of mid-2006 showed at the top (445,
135, 139, 1026/udp messenger spam, 22, 1433, 4899, 3389, 80, 5900, 2967 …) with a daily cycle;
the surge grows the number of distinct 139/445 sources exponentially (doubling about daily),
with each bot sweeping consecutive target addresses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

# (port, proto, weight) of the background.
BACKGROUND_PORTS: tuple[tuple[int, str, float], ...] = (
    (445, "TCP", 18.0), (135, "TCP", 10.0), (139, "TCP", 5.0), (1026, "UDP", 8.0), (1027, "UDP", 4.0),
    (22, "TCP", 6.0), (1433, "TCP", 5.0), (4899, "TCP", 3.0), (3389, "TCP", 2.0), (80, "TCP", 4.0),
    (5900, "TCP", 2.0), (2967, "TCP", 1.5), (6129, "TCP", 1.0), (1434, "UDP", 2.0), (137, "UDP", 3.0),
    (25, "TCP", 1.5), (8080, "TCP", 1.5), (3306, "TCP", 1.0), (23, "TCP", 1.0), (0, "ICMP", 4.0),
)


@dataclass(frozen=True)
class DemoPlan:
    """What to generate; the defaults make a ~36-day data set of a few hundred thousand lines."""

    start: datetime = datetime(2006, 7, 10)
    days: int = 36
    surge_start: datetime = datetime(2006, 8, 12, 14, 0)
    background_per_day: int = 2500  # records per sensor per day before the surge
    surge_sources_day1: int = 150  # distinct bots on the first surge day, per sensor
    surge_growth: float = 2.0  # daily growth factor of bot numbers
    probes_per_bot: int = 6
    infected_at: datetime = datetime(2006, 8, 13, 9, 12)  # a campus host caught by a bot starts scanning out
    infected_host: int = 0x0A141E22  # 10.20.30.34, behind the campus firewall
    seed: int = 2006

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)


SENSORS = ("dshield-pi", "campus-fw", "branch-dshield")


def generate(out_dir: str | Path, plan: DemoPlan | None = None) -> list[Path]:
    """Write one log file per sensor under ``out_dir``; returns the paths (in SENSORS order)."""
    plan = plan or DemoPlan()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(plan.seed)
    paths = []
    for i, sensor in enumerate(SENSORS):
        recs = _records(plan, rng, sensor_index=i)
        path = out / _FILE_NAMES[sensor]
        with open(path, "w", encoding="ascii", newline="\n") as f:
            f.writelines(_WRITERS[sensor](recs, sensor))
        paths.append(path)
    return paths


_FILE_NAMES = {"dshield-pi": "dshield-pi.log", "campus-fw": "campus-fw.syslog",
               "branch-dshield": "branch.dshield.tsv"}


@dataclass
class _Records:
    ts: np.ndarray  # epoch seconds (float)
    src: np.ndarray  # uint32
    dst: np.ndarray  # uint32
    sport: np.ndarray
    dport: np.ndarray
    proto: np.ndarray  # object: "TCP"/"UDP"/"ICMP"


def _epoch(dt: datetime) -> float:
    return dt.replace(tzinfo=UTC).timestamp()


def _records(plan: DemoPlan, rng: np.random.Generator, sensor_index: int) -> _Records:
    # each sensor watches its own /24 (TEST-NET ranges, never real hosts)
    net = (0xC0000200, 0xC6336400, 0xCB007100)[sensor_index]  # 192.0.2/24, 198.51.100/24, 203.0.113/24
    start = _epoch(plan.start)
    ports = np.array([p for p, _, _ in BACKGROUND_PORTS])
    protos = np.array([pr for _, pr, _ in BACKGROUND_PORTS], dtype=object)
    weights = np.array([w for _, _, w in BACKGROUND_PORTS])
    weights = weights / weights.sum()
    # background: a persistent pool of scanners (some return every day) plus one-off sources
    pool = rng.integers(0x0B000000, 0xDF000000, size=4000, dtype=np.uint32)
    parts: list[tuple[np.ndarray, ...]] = []
    for day in range(plan.days):
        n = rng.poisson(plan.background_per_day * (1.0 + 0.1 * sensor_index))
        # daily cycle: more scanning in the (UTC) evening
        hour = rng.choice(24, size=n, p=_diurnal())
        ts = start + day * 86400 + hour * 3600 + rng.uniform(0, 3600, size=n)
        k = rng.choice(len(ports), size=n, p=weights)
        src = np.where(rng.random(n) < 0.6, rng.choice(pool, size=n),
                       rng.integers(0x0B000000, 0xDF000000, size=n, dtype=np.uint32))
        parts.append((ts, src, net + rng.integers(1, 255, size=n, dtype=np.uint32),
                      rng.integers(1025, 65535, size=n), ports[k], protos[k]))
    # the surge: bots appear from surge_start, their number growing by surge_growth a day
    t0 = _epoch(plan.surge_start)
    end = _epoch(plan.end)
    day = 0
    while t0 + day * 86400 < end:
        nbots = int(plan.surge_sources_day1 * plan.surge_growth ** day * (0.8 + 0.2 * sensor_index))
        lo = t0 + day * 86400
        hi = min(lo + 86400, end)
        bots = rng.integers(0x0B000000, 0xDF000000, size=nbots, dtype=np.uint32)
        n = nbots * plan.probes_per_bot
        src = np.repeat(bots, plan.probes_per_bot)
        first = rng.uniform(lo, hi, size=nbots)
        ts = np.repeat(first, plan.probes_per_bot) + np.tile(np.arange(plan.probes_per_bot) * 0.4, nbots)
        base = rng.integers(1, 240, size=nbots, dtype=np.uint32)
        dst = net + np.repeat(base, plan.probes_per_bot) + np.tile(
            np.arange(plan.probes_per_bot, dtype=np.uint32) // 2, nbots)
        dport = np.where(rng.random(n) < 0.55, 139, 445)
        keep = ts < end
        parts.append((ts[keep], src[keep], dst[keep], rng.integers(1025, 5000, size=n)[keep], dport[keep],
                      np.full(int(keep.sum()), "TCP", dtype=object)))
        day += 1
    if SENSORS[sensor_index] == "campus-fw":
        parts.append(_infected(plan, rng))
    cols = [np.concatenate([p[i] for p in parts]) for i in range(6)]
    order = np.argsort(cols[0], kind="stable")
    return _Records(*(c[order] for c in cols))


def _infected(plan: DemoPlan, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """A campus host infected by a bot: every ~20 minutes it sweeps 150 random Internet addresses on
    139 or 445 within a few seconds (what ISC's diary described for Randex.GEL), dropped outbound by
    the campus firewall. ``stormwatch scanners`` should name it."""
    t = _epoch(plan.infected_at)
    end = _epoch(plan.end)
    parts = []
    while t < end:
        n = 150
        ts = t + np.sort(rng.uniform(0, 4, size=n))
        dst = rng.integers(0x0B000000, 0xDF000000, size=n, dtype=np.uint32)
        port = 139 if rng.random() < 0.5 else 445
        keep = ts < end
        parts.append((ts[keep], np.full(int(keep.sum()), plan.infected_host, dtype=np.uint32), dst[keep],
                      rng.integers(1025, 5000, size=n)[keep], np.full(int(keep.sum()), port),
                      np.full(int(keep.sum()), "TCP", dtype=object)))
        t += rng.uniform(900, 1500)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(6))


def _diurnal() -> np.ndarray:
    h = np.arange(24)
    w = 1.0 + 0.35 * np.sin((h - 14) / 24 * 2 * np.pi)
    return np.asarray(w / w.sum())


def _ip(n: int) -> str:
    return f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def _iptables_body(i: int, src: int, dst: int, sport: int, dport: int, proto: str) -> str:
    # a private source is a campus host going out (forwarded from eth1 to eth0); anything else comes in
    ifaces = "IN=eth1 OUT=eth0" if src >> 24 == 10 else "IN=eth0 OUT="
    head = (f"DSHIELDINPUT {ifaces} MAC=00:16:3e:5e:6c:00:00:16:3e:0c:01:02:08:00 SRC={_ip(src)} "
            f"DST={_ip(dst)} ")
    if proto == "ICMP":
        return head + f"LEN=60 TOS=0x00 PREC=0x00 TTL=113 ID={i % 65536} PROTO=ICMP TYPE=8 CODE=0 ID=512 SEQ={i % 999}"
    if proto == "UDP":
        return head + f"LEN=78 TOS=0x00 PREC=0x00 TTL=110 ID={i % 65536} PROTO=UDP SPT={sport} DPT={dport} LEN=58"
    return head + (f"LEN=48 TOS=0x00 PREC=0x00 TTL=112 ID={i % 65536} DF PROTO=TCP SPT={sport} DPT={dport} "
                   "WINDOW=64240 RES=0x00 SYN URGP=0")


def _rows(r: _Records):  # type: ignore[no-untyped-def]
    return zip(r.ts.tolist(), r.src.tolist(), r.dst.tolist(), r.sport.tolist(), r.dport.tolist(),
               r.proto.tolist(), strict=True)


def _write_pi(r: _Records, sensor: str) -> list[str]:
    boot = float(r.ts[0]) - 1000.0
    return [f"{int(ts)} {sensor} kernel:[{ts - boot:.6f}] {_iptables_body(i, s, d, sp, dp, pr)}\n"
            for i, (ts, s, d, sp, dp, pr) in enumerate(_rows(r))]


def _write_5424(r: _Records, sensor: str) -> list[str]:
    out = []
    boot = float(r.ts[0]) - 5000.0
    for i, (ts, s, d, sp, dp, pr) in enumerate(_rows(r)):
        stamp = datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        out.append(f"<4>1 {stamp} {sensor} kernel - - - [{ts - boot:.6f}] "
                   f"{_iptables_body(i, s, d, sp, dp, pr)}\n")
    return out


def _write_dshield(r: _Records, sensor: str) -> list[str]:
    out = []
    for ts, s, d, sp, dp, pr in _rows(r):
        stamp = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S +00:00")
        if pr == "ICMP":
            out.append(f"{stamp}\t1234567\t1\t{_ip(s)}\t8\t{_ip(d)}\t0\t1\t\n")
        else:
            flags = "S" if pr == "TCP" else ""
            num = 6 if pr == "TCP" else 17
            out.append(f"{stamp}\t1234567\t1\t{_ip(s)}\t{sp}\t{_ip(d)}\t{dp}\t{num}\t{flags}\n")
    return out


_WRITERS = {"dshield-pi": _write_pi, "campus-fw": _write_5424, "branch-dshield": _write_dshield}
