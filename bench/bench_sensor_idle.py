"""10,000 concurrent idle connections held by the sensor: memory per connection.

The sensor runs exactly as `stormwatch sensor` does (subprocess, default limits: the per-source
limit of 64 is respected by spreading the clients over 200 loopback source addresses). The
baseline, in the same run, is a bare asyncio server (a Protocol that does nothing) holding the
same connections: the difference is what the sensor's own bookkeeping and sessions cost.

Phases, RSS of the server process measured after each (VmRSS, /proc/PID/status):
1. N connections opened and left idle (session.connect recorded, nothing sent);
2. each sends an SMB1 NEGOTIATE and reads the reply, then idles (a session with protocol state).
Then the sensor is stopped and must close all N with session.closed reason "shutdown".
Run: .venv/bin/python bench/bench_sensor_idle.py [--connections 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PER_SOURCE = 50  # below the sensor's default max_sessions_per_source (64)

BARE = r"""
import asyncio, resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t
    def data_received(self, d): self.t.write(d[:4] + b"\0" * 64)  # something back, so the client can proceed
async def main():
    srv = await asyncio.get_running_loop().create_server(P, "127.0.0.1", 0, backlog=1024)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def negotiate() -> bytes:
    """An SMB1 NEGOTIATE offering NT LM 0.12, direct-TCP framed ([MS-CIFS] 2.2.4.52.1)."""
    header = (b"\xffSMB" + bytes([0x72]) + b"\0" * 4 + bytes([0x18]) + struct.pack("<H", 0xC853)
              + b"\0" * 12 + struct.pack("<HHHH", 0, 0xFEFF, 0, 1))
    body = b"\x00" + struct.pack("<H", 12) + b"\x02NT LM 0.12\x00"
    smb = header + body
    return b"\x00" + len(smb).to_bytes(3, "big") + smb


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sensor(tmp: Path) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    cfg = tmp / "sensor.toml"
    cfg.write_text(f'[sensor]\nname = "bench"\nhost = "127.0.0.1"\nstate_dir = "{tmp}"\n'
                   f"[ports]\nsmb = {port}\nnetbios = false\nrpc = false\nnbns = false\n")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "stormwatch.cli.sensor_cmd", "--config", str(cfg), "--db",
                             str(tmp / "bench.duckdb"), "--spool", str(tmp / "spool.jsonl")],
                            stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    for line in proc.stderr:
        if "sensor listening" in line:
            return proc, port
    raise SystemExit("sensor did not start")


def start_bare() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-c", BARE], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


async def hold(port: int, n: int, pid: int, stop: Callable[[], float] | None) -> dict[str, float]:
    """Open n connections, measure, negotiate on each, measure, then (while they are still
    open) ``stop`` the server; returns the figures."""
    base = rss_kib(pid)
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    t0 = time.perf_counter()
    for start in range(0, n, 500):
        batch = [asyncio.open_connection("127.0.0.1", port,
                                         local_addr=(f"127.4.{i // PER_SOURCE // 250}.{i // PER_SOURCE % 250 + 1}", 0))
                 for i in range(start, min(n, start + 500))]
        conns += await asyncio.gather(*batch)
    opened = time.perf_counter() - t0
    await asyncio.sleep(2)
    idle = rss_kib(pid)
    msg = negotiate()

    async def nego(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(msg)
        hdr = await r.readexactly(4)
        await r.readexactly(((hdr[1] & 1) << 16) | (hdr[2] << 8) | hdr[3])

    for start in range(0, n, 500):
        await asyncio.gather(*(nego(r, w) for r, w in conns[start:start + 500]))
    await asyncio.sleep(2)
    negotiated = rss_kib(pid)
    alive = sum(not r.at_eof() for r, _ in conns)
    stop_s = await asyncio.to_thread(stop) if stop is not None else 0.0
    for _, w in conns:
        w.transport.abort()
    return {"base": base, "idle": idle, "negotiated": negotiated, "alive": alive, "open_s": opened, "stop_s": stop_s}


def stopper(proc: subprocess.Popen[str]) -> Callable[[], float]:
    def stop() -> float:
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        proc.wait(120)
        return time.perf_counter() - t0
    return stop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=10_000)
    args = ap.parse_args()
    n = args.connections
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < n + 100:
        raise SystemExit(f"the open-file hard limit {hard} is below {n + 100}: raise it (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name, starter in (("bare asyncio server", start_bare), ("sensor", lambda: start_sensor(tmp))):
            proc, port = starter()
            try:
                results[name] = asyncio.run(hold(port, n, proc.pid, stopper(proc) if name == "sensor" else None))
                if name == "sensor":
                    text = (tmp / "spool.jsonl").read_text()
                    results[name]["connects"] = text.count('"session.connect"')
                    results[name]["shutdown"] = text.count('"reason":"shutdown"')
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
    print(f"\n{n} connections; server RSS in MiB (KiB per connection over the server's RSS before them)\n")
    print(f"{'server':22} {'before':>8} {'idle':>8} {'per conn':>9} {'negotiated':>11} {'per conn':>9} {'alive':>7}")
    for name, r in results.items():
        print(f"{name:22} {r['base'] / 1024:8.1f} {r['idle'] / 1024:8.1f} {(r['idle'] - r['base']) / n:8.2f}K "
              f"{r['negotiated'] / 1024:11.1f} {(r['negotiated'] - r['base']) / n:8.2f}K {int(r['alive']):7d}")
    s, b = results["sensor"], results["bare asyncio server"]
    print(f"\nsensor / bare, memory per negotiated connection: "
          f"{(s['negotiated'] - s['base']) / max(b['negotiated'] - b['base'], 1):.2f}x")
    print(f"sensor: {n} connections opened in {s['open_s']:.1f} s; {int(s['connects'])} session.connect; "
          f"stop took {s['stop_s']:.1f} s and closed {int(s['shutdown'])} sessions with reason shutdown")


if __name__ == "__main__":
    main()
