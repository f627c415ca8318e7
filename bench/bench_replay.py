"""Benchmark: replaying captures through the sensor's detectors (stormwatch.collector.replay).

Builds a large capture from the real attack captures of ../shared/data (WannaCry, Metasploit
EternalBlue, EternalChampion, the honeynet MS04-011 attack and suricata-verify's smb-filename),
each repeated ``--copies`` times with its IPv4 addresses and times shifted so that every copy is a
set of new connections, then times on the same file, in the same run:

- a dpkt loop that decodes every frame and reassembles the TCP payload of every connection to
  445/139/135 by sequence number (what a script needs before any SMB work: the baseline);
- the ``pcap`` reader (``fw.connection`` events, vectorised), which ``stormwatch ingest`` runs first;
- :func:`~stormwatch.collector.tcp_streams.capture_segments` alone (packet extraction);
- :func:`~stormwatch.collector.replay.replay_capture`: reassembly, a Session per connection, events.

Prints packets and MB per second (best of ``--runs``), events, and the ratios to the baseline.

    .venv/bin/python bench/bench_replay.py [--copies 25] [--runs 2]
"""

from __future__ import annotations

import argparse
import resource
import struct
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
CAPTURES = ["pcap/exploits/wannacry-eternalsafety.pcap", "pcap/exploits/metasploit-ms017-010-win7x64.pcap",
            "pcap/exploits/eternalchampion.pcap", "pcap/exploits/honeynet-fc2010-attack-trace-ms04-011.pcap",
            "pcap/smb-reference/suricata-verify-smb-filename/input.pcap"]
PORTS = {445, 139, 135}


def build(path: Path, copies: int) -> int:
    """Concatenate the captures ``copies`` times (Ethernet, classic pcap, microseconds); copy k has
    the first two octets of every IPv4 address set to (10 + k // 256, k % 256) and its times moved
    on by an hour per copy. Returns the packet count."""
    records: list[tuple[int, bytes]] = []
    for name in CAPTURES:
        data = (DATA / name).read_bytes()
        assert data[:4] == b"\xd4\xc3\xb2\xa1" and struct.unpack_from("<I", data, 20)[0] == 1, name
        off = 24
        while off + 16 <= len(data):
            sec, usec, incl, _ = struct.unpack_from("<IIII", data, off)
            records.append((sec * 1_000_000 + usec, data[off + 16:off + 16 + incl]))
            off += 16 + incl
    records.sort(key=lambda r: r[0])
    base = records[0][0]
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    n = 0
    for k in range(copies):
        prefix = bytes((10 + k // 256, k % 256))
        for ts, frame in records:
            f = bytearray(frame)
            if len(f) >= 34 and f[12:14] == b"\x08\x00":
                f[26:28] = prefix
                f[30:32] = prefix
            t = ts - base + 1_500_000_000_000_000 + k * 3_600_000_000
            out.append(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(f), len(f)) + bytes(f))
            n += 1
    path.write_bytes(b"".join(out))
    return n


def run_dpkt(path: Path) -> tuple[float, int]:
    """Decode every frame with dpkt and reassemble each 445/139/135 direction by sequence number."""
    import dpkt

    t = time.perf_counter()
    segs: dict[tuple[bytes, int, bytes, int], dict[int, bytes]] = defaultdict(dict)
    with open(path, "rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP):
                tcp = ip.data
                if tcp.data and (tcp.sport in PORTS or tcp.dport in PORTS):
                    segs[(ip.src, tcp.sport, ip.dst, tcp.dport)].setdefault(tcp.seq, bytes(tcp.data))
    total = 0
    for parts in segs.values():
        out, nxt = bytearray(), None
        for seq in sorted(parts):
            chunk = parts[seq]
            if nxt is not None and seq > nxt:
                break
            out += chunk[(nxt - seq) if nxt is not None and seq < nxt else 0:]
            nxt = max(nxt or 0, seq + len(chunk))
        total += len(out)
    return time.perf_counter() - t, len(segs)


def run_reader(path: Path) -> tuple[float, int]:
    from stormwatch.ingest.base import Source
    from stormwatch.ingest.pcap import PcapReader

    t = time.perf_counter()
    events = sum(c.events.num_rows for c in PcapReader().read(Source(str(path), "bench")))
    return time.perf_counter() - t, events


def run_segments(path: Path) -> tuple[float, int]:
    from stormwatch.collector.tcp_streams import capture_segments
    from stormwatch.ingest.base import Source

    t = time.perf_counter()
    n = sum(1 for _ in capture_segments(Source(str(path), "bench")))
    return time.perf_counter() - t, n


def run_replay(path: Path) -> tuple[float, int]:
    from stormwatch.collector.replay import replay_capture
    from stormwatch.ingest.base import Source

    t = time.perf_counter()
    events = sum(table.num_rows for table in replay_capture(Source(str(path), "bench")))
    return time.perf_counter() - t, events


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=25)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--replay-only", default=None, help=argparse.SUPPRESS)  # child run for the memory figure
    args = ap.parse_args()
    if args.replay_only:
        run_replay(Path(args.replay_only))
        return 0
    if not (DATA / "SOURCES.md").exists():
        print(f"the real captures are not at {DATA}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "attacks.pcap")
        packets = build(path, args.copies)
        mb = path.stat().st_size / 1e6
        print(f"built {packets:,} packets ({mb:.0f} MB) from {len(CAPTURES)} real captures x {args.copies}")
        rows = []
        for name, run in (("dpkt decode + reassembly", run_dpkt), ("pcap reader (fw.connection)", run_reader),
                          ("capture_segments", run_segments), ("replay_capture", run_replay)):
            secs, count = min(run(path) for _ in range(args.runs))
            rows.append((name, secs, count))
        subprocess.run([sys.executable, __file__, "--replay-only", str(path)], check=True)
        child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"{'stage':<30}{'seconds':>9}{'packets/s':>12}{'MB/s':>8}{'output':>10}")
    for name, secs, count in rows:
        print(f"{name:<30}{secs:>9.2f}{packets / secs:>12,.0f}{mb / secs:>8.1f}{count:>10,}")
    base = rows[0][1]
    print(f"ratio replay_capture / dpkt baseline: {base / rows[3][1]:.2f}x the baseline's speed; "
          f"capture_segments: {base / rows[2][1]:.1f}x; pcap reader: {base / rows[1][1]:.1f}x")
    print(f"peak RSS of a process that only replays the capture: {child_rss:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
