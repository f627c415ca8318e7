"""Complete SMB sessions per second against the sensor, and against impacket's own SMB server.

Method:

1. record the client bytes of real sessions driven by impacket (our reference client) through a
   recording proxy: an MS06-040 exploit session against the sensor (negotiate, anonymous session
   setup, tree connect IPC$, open \\browser, DCE/RPC bind srvsvc, NetprPathCanonicalize with a
   Metasploit-shaped path, close), and a share enumeration (srvsvc NetrShareEnum) against
   impacket's SimpleSMBServer, all SMB1;
2. replay those bytes raw from a load generator in ANOTHER process: many concurrent asyncio
   connections, each sending one recorded client turn, reading the recorded number of NetBIOS
   frames back, and so on to the end, then closing. Server-assigned SMB1 ids (UID, TID, FID)
   are read from the live replies and patched into the later requests, so the replay is valid
   against any server;
3. count complete sessions per second over a fixed time; check afterwards that the sensor's spool
   holds one exploit.attempt per completed exploit session.

The sensor runs exactly as `stormwatch sensor` does (subprocess, spool + store through the batch
writer, default limits); impacket's server runs in its own process too (threads, its usual
configuration with an IPC$ share, logging at WARNING). Run: .venv/bin/python bench/bench_sensor_sessions.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

# SMB1 offsets within a frame (4-byte NBSS/direct-TCP header + 32-byte SMB header) [MS-CIFS] 2.2.3.1
_CMD, _TID, _UID, _WORDS = 4 + 4, 4 + 24, 4 + 28, 4 + 33
_SESSION_SETUP, _TREE_CONNECT, _NT_CREATE = 0x73, 0x75, 0xA2
# where a request carries its FID: WriteAndX/ReadAndX after the AndX block, Close first word,
# Transaction (TransactNmPipe) in Setup[1] after the 28 bytes of fixed words
_FID_AT = {0x2F: _WORDS + 4, 0x2E: _WORDS + 4, 0x04: _WORDS, 0x25: _WORDS + 30}


def frames(data: bytes) -> list[bytes]:
    """Split NBSS / direct-TCP framed bytes (RFC 1002 4.3.1: type, 17-bit length) into frames."""
    out, i = [], 0
    while i + 4 <= len(data):
        n = ((data[i + 1] & 1) << 16) | (data[i + 2] << 8) | data[i + 3]
        out.append(data[i:i + 4 + n])
        i += 4 + n
    return out


def _smb1(frame: bytes) -> bool:
    return frame[4:8] == b"\xffSMB"


def learn(reply: bytes, ids: dict[tuple[str, int], int], recorded: bytes | None) -> None:
    """Map the recorded server-assigned ids to the live ones, from one reply and its recorded twin."""
    if recorded is None or not (_smb1(reply) and _smb1(recorded)) or reply[_CMD] != recorded[_CMD]:
        return
    cmd = reply[_CMD]
    if cmd == _SESSION_SETUP:
        ids[("uid", struct.unpack_from("<H", recorded, _UID)[0])] = struct.unpack_from("<H", reply, _UID)[0]
    elif cmd == _TREE_CONNECT:
        ids[("tid", struct.unpack_from("<H", recorded, _TID)[0])] = struct.unpack_from("<H", reply, _TID)[0]
    elif cmd == _NT_CREATE and len(reply) > _WORDS + 7 and len(recorded) > _WORDS + 7:
        ids[("fid", struct.unpack_from("<H", recorded, _WORDS + 5)[0])] = struct.unpack_from("<H", reply, _WORDS + 5)[0]


def patch(frame: bytes, ids: dict[tuple[str, int], int]) -> bytes:
    if not ids or not _smb1(frame):
        return frame
    b = bytearray(frame)
    for kind, off in (("uid", _UID), ("tid", _TID)):
        v = ids.get((kind, struct.unpack_from("<H", b, off)[0]))
        if v is not None:
            struct.pack_into("<H", b, off, v)
    at = _FID_AT.get(b[_CMD])
    if at is not None and len(b) >= at + 2:
        v = ids.get(("fid", struct.unpack_from("<H", b, at)[0]))
        if v is not None:
            struct.pack_into("<H", b, at, v)
    return bytes(b)


@dataclass
class Turn:
    """What the client sent before waiting, and the server frames that answered it."""

    sent: list[bytes] = field(default_factory=list)
    replies: list[bytes] = field(default_factory=list)


def record(upstream: int, drive: Callable[[int], None]) -> list[Turn]:
    """Run ``drive(port)`` against a recording proxy in front of ``upstream``; the client's turns."""
    lsock = socket.create_server(("127.0.0.1", 0))
    log: list[tuple[str, bytes]] = []
    lock = threading.Lock()

    def pump(src: socket.socket, dst: socket.socket, who: str) -> None:
        while True:
            try:
                data = src.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            with lock:
                log.append((who, data))
            dst.sendall(data)

    def accept() -> None:
        c, _ = lsock.accept()
        u = socket.create_connection(("127.0.0.1", upstream))
        t = threading.Thread(target=pump, args=(u, c, "s"), daemon=True)
        t.start()
        pump(c, u, "c")
        t.join(5)
        c.close()
        u.close()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    drive(lsock.getsockname()[1])
    acceptor.join(10)
    lsock.close()
    turns: list[Turn] = []
    cbuf, sbuf = b"", b""
    for who, data in [*log, ("c", b"")]:
        if who == "c":
            if sbuf:
                turns[-1].replies = frames(sbuf)
                sbuf = b""
            cbuf += data
        else:
            if cbuf:
                turns.append(Turn(sent=frames(cbuf)))
                cbuf = b""
            sbuf += data
    if cbuf:
        turns.append(Turn(sent=frames(cbuf)))
    return turns


# -- the sessions impacket drives -----------------------------------------------------------------

def _ndr_wstring(raw: bytes) -> bytes:
    n = len(raw) // 2
    b = struct.pack("<III", n, 0, n) + raw
    return b + b"\0" * (-len(b) % 4)


def ms06_040_stub(rng: random.Random) -> bytes:
    """Metasploit ms06_040_netapi, Windows 2000 target: 1000 bytes of sled+payload, the return
    address 0x00020804 x16, NUL; Prefix U+02EB (see tests/test_sensor_clients.py)."""
    bad = set(b"\x00\x0a\x0d\x5c\x5f\x2f\x2e")
    payload = bytes(rng.choice([c for c in range(256) if c not in bad]) for _ in range(400))
    path = b"\x90" * 600 + payload + struct.pack("<I", 0x00020804) * 16 + b"\0\0"
    stub = struct.pack("<I", rng.getrandbits(32) | 1) + _ndr_wstring(b"\0\0")
    stub += _ndr_wstring(path) + struct.pack("<I", rng.randint(1, 250))
    return stub + _ndr_wstring(b"\xeb\x02\x00\x00") + struct.pack("<II", rng.randint(1, 250), 0)


def drive_exploit(port: int) -> None:
    from impacket import smb  # type: ignore[import-untyped]
    from impacket.dcerpc.v5 import srvs, transport  # type: ignore[import-untyped]
    from impacket.smbconnection import SMBConnection  # type: ignore[import-untyped]

    conn = SMBConnection("HOST", "127.0.0.1", sess_port=port, timeout=10, preferredDialect=smb.SMB_DIALECT)
    conn.login("", "")
    rpc = transport.SMBTransport("127.0.0.1", filename=r"\browser", smb_connection=conn)
    dce = rpc.get_dce_rpc()
    dce.connect()
    dce.bind(srvs.MSRPC_UUID_SRVS)
    dce.call(31, ms06_040_stub(random.Random(40)))
    time.sleep(0.2)  # let the reply to the write arrive before hanging up, as the replay will wait for it
    conn.close()


def drive_share_enum(port: int) -> None:
    from impacket import smb
    from impacket.smbconnection import SMBConnection

    conn = SMBConnection("HOST", "127.0.0.1", sess_port=port, timeout=10, preferredDialect=smb.SMB_DIALECT)
    conn.login("", "")
    shares = conn.listShares()
    assert any(s["shi1_netname"][:-1] == "IPC$" for s in shares)
    conn.close()


# -- the servers ----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sensor:
    """`stormwatch sensor` in a subprocess, SMB on one port, the other services off."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.spool = tmp / "spool.jsonl"
        cfg = tmp / "sensor.toml"
        cfg.write_text(f'[sensor]\nname = "bench"\nhost = "127.0.0.1"\nstate_dir = "{tmp}"\n'
                       f"[ports]\nsmb = {self.port}\nnetbios = false\nrpc = false\nnbns = false\n")
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        self.proc = subprocess.Popen([sys.executable, "-m", "stormwatch.cli.sensor_cmd", "--config", str(cfg),
                                      "--db", str(tmp / "bench.duckdb"), "--spool", str(self.spool)],
                                     stderr=subprocess.PIPE, text=True, env=env)
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if "sensor listening" in line:
                break
        else:
            raise SystemExit("sensor did not start")
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # keep the pipe drained

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(60)

    def count(self, event: str) -> int:
        pat = f'"event":"{event}"'
        with open(self.spool) as f:
            return sum(pat in ln for ln in f)


def _impacket_server(port: int, share_dir: str, ready: Any) -> None:
    from impacket import smbserver

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("impacket").setLevel(logging.WARNING)
    server = smbserver.SimpleSMBServer(listenAddress="127.0.0.1", listenPort=port)  # it always has IPC$
    server.setSMB2Support(False)
    server.addShare("PUBLIC", share_dir, "")  # with IPC$ alone its NetrShareEnum answers an empty list
    ready.set()
    server.start()


class ImpacketServer:
    def __init__(self, share_dir: Path) -> None:
        self.port = free_port()
        ready = mp.Event()
        self.proc = mp.Process(target=_impacket_server, args=(self.port, str(share_dir), ready), daemon=True)
        self.proc.start()
        ready.wait(30)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                break
            except OSError:
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.join(10)


# -- the load generator (runs in its own process) --------------------------------------------------

_READ_BUFFER = memoryview(bytearray(1 << 16))  # one per generator process: one callback runs at a time


class _Replay(asyncio.BufferedProtocol):
    """One replayed session as a protocol (cheaper than streams: the generator must not be the
    bottleneck): send a turn, count the reply frames, send the next turn when all arrived. Reads
    go to one shared buffer (asyncio's plain Protocol allocates 256 KiB per read)."""

    def __init__(self, turns: list[Turn], done: asyncio.Future[bool]) -> None:
        self.turns = turns
        self.done = done
        self.ids: dict[tuple[str, int], int] = {}
        self.buf = b""
        self.turn = -1
        self.got = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._next()

    def _next(self) -> None:
        assert self.transport is not None
        while True:
            self.turn += 1
            self.got = 0
            if self.turn == len(self.turns):
                self.transport.close()
                if not self.done.done():
                    self.done.set_result(True)
                return
            t = self.turns[self.turn]
            self.transport.write(b"".join([patch(f, self.ids) for f in t.sent]))
            if t.replies:
                return

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        buf = self.buf + _READ_BUFFER[:nbytes]
        i = 0
        replies = self.turns[self.turn].replies if 0 <= self.turn < len(self.turns) else []
        while len(buf) - i >= 4:
            n = 4 + (((buf[i + 1] & 1) << 16) | (buf[i + 2] << 8) | buf[i + 3])
            if len(buf) - i < n:
                break
            if self.got < len(replies):
                learn(buf[i:i + n], self.ids, replies[self.got])
            self.got += 1
            i += n
            if self.got == len(replies):
                self.buf = buf[i:]
                self._next()
                return
        self.buf = buf[i:]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(False)


SESSION_TIMEOUT = 10.0  # seconds a replayed session may take before it counts as failed


async def _one(port: int, turns: list[Turn], local: str) -> bool:
    """One replayed session; False if it could not connect, was cut short or timed out
    (asyncio.timeout, not asyncio.wait_for, which wraps every session in a task of its own)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bool] = loop.create_future()
    transport: asyncio.BaseTransport | None = None
    try:
        async with asyncio.timeout(SESSION_TIMEOUT):
            transport, _ = await loop.create_connection(lambda: _Replay(turns, done), "127.0.0.1", port,
                                                        local_addr=(local, 0))
            return await done
    except (OSError, TimeoutError):
        return False
    finally:
        if transport is not None:
            transport.close()


async def _load(port: int, turns: list[Turn], seconds: float, concurrency: int) -> tuple[int, int, float, float]:
    done = failed = 0
    stop_at = time.perf_counter() + seconds
    locals_ = [f"127.3.0.{i}" for i in range(1, 33)]  # spread sources: the sensor limits sessions per source

    async def worker(i: int) -> None:
        nonlocal done, failed
        local = locals_[i % len(locals_)]
        while time.perf_counter() < stop_at:
            if await _one(port, turns, local):
                done += 1
            else:
                failed += 1

    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return done, failed, time.perf_counter() - t0, time.process_time() - c0


def _load_process(port: int, turns: list[Turn], seconds: float, concurrency: int, out: Any) -> None:
    out.put(asyncio.run(_load(port, turns, seconds, concurrency)))


def load(port: int, turns: list[Turn], seconds: float, concurrency: int) -> tuple[int, int, float, float]:
    q: mp.Queue[tuple[int, int, float, float]] = mp.Queue()
    p = mp.Process(target=_load_process, args=(port, turns, seconds, concurrency, q))
    p.start()
    res = q.get(timeout=seconds + 120)
    p.join(30)
    return res


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads (proc(5): fields 14 and 15 of stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds(pid: int) -> float:
    """CPU time of the live child processes of ``pid`` (the sensor's store follower)."""
    total = 0.0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                total += cpu_seconds(int(d))
        except (OSError, ValueError):
            continue
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()
    mp.set_start_method("fork")
    rows: list[tuple[str, int, int, float, float, float, float, int | None]] = []
    with tempfile.TemporaryDirectory() as tmp:
        sensor = Sensor(Path(tmp))
        imp = ImpacketServer(Path(tmp))
        try:
            exploit = record(sensor.port, drive_exploit)
            enum = record(imp.port, drive_share_enum)
            print(f"recorded: exploit session {len(exploit)} turns, {sum(len(b) for t in exploit for b in t.sent)} "
                  f"client bytes; share enumeration {len(enum)} turns, {sum(len(b) for t in enum for b in t.sent)} "
                  "client bytes")
            for name, pid, port, turns in (
                    ("sensor: MS06-040 exploit session", sensor.proc.pid, sensor.port, exploit),
                    ("sensor: share enumeration", sensor.proc.pid, sensor.port, enum),
                    ("impacket smbserver: share enumeration", imp.proc.pid or 0, imp.port, enum)):
                load(port, turns, 1.0, args.concurrency)  # warm up
                time.sleep(1.5)  # let the sensor's store writer catch up
                before, cpu0, kids0 = sensor.count("exploit.attempt"), cpu_seconds(pid), children_cpu_seconds(pid)
                done, failed, secs, gen_cpu = load(port, turns, args.seconds, args.concurrency)
                server_cpu = cpu_seconds(pid) - cpu0
                time.sleep(1.5)  # the store follower stores the last second
                store_cpu = children_cpu_seconds(pid) - kids0
                exploits = sensor.count("exploit.attempt") - before
                rows.append((name, done, failed, done / secs, 1000 * server_cpu / max(done, 1),
                             1000 * store_cpu / max(done, 1), 1000 * gen_cpu / max(done, 1),
                             exploits if "MS06" in name else None))
        finally:
            sensor.stop()
            imp.stop()
    print(f"\nconcurrency {args.concurrency}, {args.seconds:.0f} s per run, {os.cpu_count()} CPUs. CPU ms per "
          "session: server = the serving process (all threads); store = the sensor's store follower process; "
          "client = the load generator; capacity = 1000 / server ms (sessions/s one core can serve)\n")
    print(f"{'run':40} {'sessions':>9} {'failed':>7} {'sessions/s':>11} {'server ms':>10} {'store ms':>9} "
          f"{'client ms':>10} {'capacity':>9}")
    for name, done, failed, rate, server_ms, store_ms, gen_ms, attempts in rows:
        note = f"   exploit.attempt events: {attempts}" if attempts is not None else ""
        print(f"{name:40} {done:9d} {failed:7d} {rate:11.0f} {server_ms:10.2f} {store_ms:9.2f} {gen_ms:10.2f} "
              f"{1000 / server_ms:9.0f}{note}")
    print(f"\nratio sensor / impacket on the same share-enumeration session: {rows[1][3] / rows[2][3]:.2f}x "
          f"sessions/s, {rows[2][4] / rows[1][4]:.2f}x less CPU per session")


if __name__ == "__main__":
    main()
