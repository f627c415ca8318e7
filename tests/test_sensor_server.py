"""The sensor's transports and plumbing, driven over loopback with scripted sessions.

The sessions here are fakes with a tiny script (echo, close, raise, exploit, flood) so that the
server's own duties can be checked one by one: identity binding, ``session.closed`` last, limits,
eviction, idle and lifetime sweeps, back-pressure, a crashing session, shutdown. The real session
and real clients (impacket, smbclient, nmap) are in test_sensor_clients.py. Also: the spool, the
payload store, the configuration file, the spool → store conversion and its ingest reader.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import socket
import stat
import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import fields
from pathlib import Path
from typing import Any, ClassVar

import pytest

from stormwatch.errors import TruncatedInput
from stormwatch.events.records import BadRecord, StoreFeed, check_record
from stormwatch.ingest.base import source_for
from stormwatch.ingest.spool import SensorSpoolReader
from stormwatch.sensor.config import ConfigError, TransportLimits, load, parse
from stormwatch.sensor.limits import ServerLimits, SessionLimits
from stormwatch.sensor.outputs import Close, Emit, Output, Send
from stormwatch.sensor.payloads import PayloadStore
from stormwatch.sensor.persona import generate
from stormwatch.sensor.server import SensorServer
from stormwatch.sensor.spool import Identity, Spool, iso_utc
from stormwatch.store import Store

PERSONA = generate("winxp", random.Random(7))
T0 = 1155464467.25  # 2006-08-13 10:21:07.25 UTC


class FakeSession:
    """A scripted session: each received chunk is one command."""

    instances: ClassVar[list[FakeSession]] = []

    def __init__(self, service: str, persona: Any, limits: SessionLimits, rng: random.Random,
                 clock: Callable[[], float]) -> None:
        self.service = service
        self.lost = False
        FakeSession.instances.append(self)

    def receive_data(self, data: bytes) -> list[Output]:
        if data.startswith(b"boom"):
            raise RuntimeError("scripted bug")
        if data.startswith(b"close"):
            return [Send(b"bye"), Emit("session.anomaly", {"kind": "scripted", "detail": "asked"}),
                    Close("anomaly"), Send(b"never")]
        if data.startswith(b"exploit"):
            return [Emit("exploit.attempt", {"vuln": "MS06-040", "cve": "CVE-2006-3439", "kind": "exploit",
                                             "detector": "fake", "evidence": {"n": 1}, "confidence": 1.0},
                         payload=data[7:])]
        if data.startswith(b"flood"):
            return [Send(b"x" * (512 << 10)) for _ in range(8)]
        if data.startswith(b"spoof"):
            return [Emit("smb.tree_connect", {"path": "\\\\X\\IPC$", "share": "IPC$", "src_ip": "6.6.6.6"})]
        return [Send(data.upper()), Emit("smb.tree_connect", {"path": data.decode(), "share": "IPC$"})]

    def connection_lost(self) -> list[Output]:
        self.lost = True
        return [Emit("session.anomaly", {"kind": "final", "detail": self.service})]


def nbns_fake(packet: bytes, persona: Any, addr: str) -> tuple[list[Output], bytes | None]:
    if packet == b"bug":
        raise ValueError("scripted nbns bug")
    return [Emit("nbns.query", {"name": f"{persona.host_name}<20>", "qtype": "NBSTAT"})], b"R:" + packet


class Harness:
    """A started server on ephemeral loopback ports, with its events in memory (and a spool file)."""

    def __init__(self, tmp: Path, **kw: Any) -> None:
        self.records: list[dict[str, Any]] = []
        self.now = [T0]
        self.mono = [100.0]
        self.spool = Spool(tmp / "spool.jsonl", "hp-test", clock=lambda: self.now[0], on_record=self.records.append)
        kw.setdefault("transport_limits", TransportLimits(sweep_interval=3600))
        self.server = SensorServer(spool=self.spool, persona=PERSONA, host="127.0.0.1",
                                   ports={"smb": 0, "netbios-ssn": 0, "dcerpc": 0, "nbns": 0},
                                   clock=lambda: self.now[0], monotonic=lambda: self.mono[0],
                                   rng=random.Random(1), session_factory=FakeSession, nbns_handler=nbns_fake,
                                   payloads=PayloadStore(tmp / "payloads"), **kw)

    def of(self, session: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["session"] == session]

    def sessions(self) -> list[str]:
        return list(dict.fromkeys(r["session"] for r in self.records))


def run(tmp: Path, body: Callable[[Harness], Awaitable[None]], **kw: Any) -> Harness:
    async def main() -> Harness:
        h = Harness(tmp, **kw)
        await h.server.start()
        try:
            await body(h)
        finally:
            await h.server.stop()
        return h
    FakeSession.instances.clear()
    return asyncio.run(main())


async def connect(h: Harness, service: str = "smb") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", h.server.bound[service])


async def until(cond: Callable[[], bool], what: str) -> None:
    for _ in range(500):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def closed_count(h: Harness, n: int) -> None:
    await until(lambda: sum(r["event"] == "session.closed" for r in h.records) >= n, f"{n} session.closed")


def assert_well_formed(h: Harness) -> None:
    """Every session starts with session.connect, ends with exactly one session.closed, and its
    seq numbers run 0, 1, 2 … in spool order."""
    for sid in h.sessions():
        evs = h.of(sid)
        assert evs[0]["event"] == "session.connect", evs
        assert evs[-1]["event"] == "session.closed", evs
        assert [e["event"] for e in evs].count("session.closed") == 1
        assert [e["seq"] for e in evs] == list(range(len(evs)))


# -- the server ---------------------------------------------------------------------------------

def test_session_round_trip_binds_identity(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        r, w = await connect(h, "netbios-ssn")
        w.write(b"hello")
        assert await r.readexactly(5) == b"HELLO"
        w.write(b"spoof")
        await w.drain()
        await until(lambda: len(h.records) >= 3, "spoof event")
        h.now[0] += 2
        h.mono[0] += 2.5
        w.close()
        await closed_count(h, 1)

    h = run(tmp_path, body)
    (sid,) = h.sessions()
    evs = h.of(sid)
    assert [e["event"] for e in evs] == ["session.connect", "smb.tree_connect", "smb.tree_connect",
                                         "session.anomaly", "session.closed"]
    connect_ev, first, spoof, final, closed = evs
    assert connect_ev["service"] == "netbios-ssn" and connect_ev["persona"] == "winxp"
    assert first["path"] == "hello"
    assert spoof["src_ip"] == "127.0.0.1"  # the session's "src_ip" field did not overwrite identity
    assert final["kind"] == "final"  # connection_lost's events come before session.closed
    assert closed["reason"] == "client" and closed["duration"] == 2.5
    assert closed["bytes_in"] == 10 and closed["bytes_out"] == 5
    for e in evs:
        assert e["sensor"] == "hp-test" and e["proto"] == "tcp" and len(e["session"]) == 32
        assert e["dst_port"] == h.server.bound["netbios-ssn"] and e["src_ip"] == e["dst_ip"] == "127.0.0.1"
    assert connect_ev["ts"] == "2006-08-13T10:21:07.250000Z" and closed["ts"] == "2006-08-13T10:21:09.250000Z"
    lines = [json.loads(ln) for ln in (tmp_path / "spool.jsonl").read_text().splitlines()]
    assert [ln["seq"] for ln in lines] == [0, 1, 2, 3, 4]
    assert_well_formed(h)


def test_session_close_sends_what_precedes_then_closes(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        r, w = await connect(h)
        w.write(b"close")
        assert await r.read() == b"bye"  # "never" came after Close and was not sent
        await closed_count(h, 1)

    h = run(tmp_path, body)
    evs = h.records
    assert [e["event"] for e in evs][-3:] == ["session.anomaly", "session.anomaly", "session.closed"]
    assert evs[-1]["reason"] == "anomaly"
    assert_well_formed(h)


def test_crashing_session_closes_only_its_connection(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def body(h: Harness) -> None:
        r1, w1 = await connect(h)
        r2, w2 = await connect(h, "dcerpc")
        w2.write(b"one")
        assert await r2.readexactly(3) == b"ONE"
        w1.write(b"boom")
        assert await r1.read() == b""  # that connection is closed ...
        w2.write(b"two")
        assert await r2.readexactly(3) == b"TWO"  # ... this one is still served
        r3, w3 = await connect(h)  # and new ones are accepted
        w3.write(b"three")
        assert await r3.readexactly(5) == b"THREE"
        for w in (w2, w3):
            w.close()
        await closed_count(h, 3)

    with caplog.at_level(logging.ERROR, logger="stormwatch.sensor.server"):
        h = run(tmp_path, body)
    crashed = [sid for sid in h.sessions() if any(e.get("kind") == "internal_error" for e in h.of(sid))]
    assert len(crashed) == 1
    evs = h.of(crashed[0])
    assert evs[-1]["event"] == "session.closed" and evs[-1]["reason"] == "anomaly"
    assert h.server.counters["internal_errors"] == 1
    assert any("scripted bug" in (r.exc_text or "") for r in caplog.records)  # traceback in the operator log
    assert_well_formed(h)


def test_exploit_payload_is_stored_by_hash(tmp_path: Path) -> None:
    payload = b"\x90" * 64 + b"../../etc/passwd"

    async def body(h: Harness) -> None:
        _, w = await connect(h)
        w.write(b"exploit" + payload)
        await until(lambda: any(e["event"] == "exploit.attempt" for e in h.records), "exploit event")
        w.close()
        await closed_count(h, 1)

    h = run(tmp_path, body)
    (ev,) = [e for e in h.records if e["event"] == "exploit.attempt"]
    assert ev["payload_size"] == len(payload) and len(ev["payload_sha256"]) == 64
    stored = tmp_path / "payloads" / ev["payload_sha256"][:2] / ev["payload_sha256"]
    assert stored.read_bytes() == payload
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600


def test_per_source_limit_refuses_politely(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        conns = [await connect(h) for _ in range(3)]
        r, _ = await connect(h)  # the fourth from the same address
        assert await r.read() == b""
        await closed_count(h, 1)
        r0, w0 = conns[0]
        w0.write(b"ok")
        assert await r0.readexactly(2) == b"OK"  # the admitted ones are untouched
        for _, w in conns:
            w.close()
        await closed_count(h, 4)

    h = run(tmp_path, body, limits=ServerLimits(max_sessions_per_source=3))
    refused = [sid for sid in h.sessions() if any(e.get("kind") == "max_sessions_per_source" for e in h.of(sid))]
    assert len(refused) == 1
    assert h.of(refused[0])[-1]["reason"] == "limit"
    assert h.server.counters["refused"] == 1
    assert_well_formed(h)


def test_full_server_evicts_least_recently_active(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        a = await connect(h)
        h.mono[0] += 1
        b = await connect(h)
        h.mono[0] += 1
        a[1].write(b"still here")  # a is now more recently active than b
        await a[0].readexactly(10)
        h.mono[0] += 1
        c = await connect(h)  # over max_sessions=2: b goes
        assert await b[0].read() == b""
        for r, w in (a, c):
            w.write(b"ping")
            assert await r.readexactly(4) == b"PING"
            w.close()
        await closed_count(h, 3)

    h = run(tmp_path, body, limits=ServerLimits(max_sessions=2))
    evicted = [sid for sid in h.sessions() if any(e.get("kind") == "max_sessions" for e in h.of(sid))]
    assert len(evicted) == 1 and evicted[0] == h.sessions()[1]
    assert h.of(evicted[0])[-1]["reason"] == "limit"
    assert_well_formed(h)


def test_idle_and_lifetime_sweeps(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        quiet = await connect(h)
        chatty = await connect(h)
        await until(lambda: h.server.open_sessions == 2, "two sessions")
        for _ in range(3):
            h.mono[0] += 40
            chatty[1].write(b"hi")
            await chatty[0].readexactly(2)
            h.server.sweep()
        assert await quiet[0].read() == b""  # idle 120 s: closed
        h.mono[0] += 300
        chatty[1].write(b"hi")
        await chatty[0].readexactly(2)
        h.server.sweep()
        assert await chatty[0].read() == b""  # 420 s after connect: over max_session_time
        await closed_count(h, 2)

    h = run(tmp_path, body, limits=ServerLimits(idle_timeout=100, max_session_time=400))
    reasons = [h.of(s)[-1]["reason"] for s in h.sessions()]
    assert reasons == ["idle", "lifetime"]
    assert_well_formed(h)


def test_client_that_does_not_read_is_cut_off(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
        sock.connect(("127.0.0.1", h.server.bound["smb"]))
        sock.sendall(b"flood")  # asks for 4 MiB and never reads
        await closed_count(h, 1)
        sock.close()

    h = run(tmp_path, body, transport_limits=TransportLimits(write_buffer_max=256 << 10, sweep_interval=3600))
    (sid,) = h.sessions()
    assert [e.get("kind") for e in h.of(sid)].count("write_buffer_max") == 1
    assert h.of(sid)[-1]["reason"] == "limit"


def test_stop_closes_every_session_with_reason_shutdown(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        conns = [await connect(h, s) for s in ("smb", "netbios-ssn", "dcerpc")]
        await until(lambda: h.server.open_sessions == 3, "three sessions")
        await h.server.stop()
        for r, _ in conns:
            assert await r.read() == b""
        with pytest.raises(OSError):
            await connect(h)

    h = run(tmp_path, body)
    assert [h.of(s)[-1]["reason"] for s in h.sessions()] == ["shutdown"] * 3
    assert all(s.lost for s in FakeSession.instances)
    assert_well_formed(h)


def test_cancelling_serve_is_the_kill_switch(tmp_path: Path) -> None:
    async def main() -> Harness:
        h = Harness(tmp_path)
        task = asyncio.create_task(h.server.serve())
        await until(lambda: "smb" in h.server.bound, "listening")
        _, w = await connect(h)
        await until(lambda: h.server.open_sessions == 1, "a session")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        w.close()
        return h

    h = asyncio.run(main())
    (sid,) = h.sessions()
    assert h.of(sid)[-1]["reason"] == "shutdown"


def test_nbns_datagrams_and_reflection_limit(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        loop = asyncio.get_running_loop()
        got: list[bytes] = []

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                got.append(data)

        tr, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", h.server.bound["nbns"]))
        for q in (b"q0", b"q1", b"q2", b"bug", b"q3", b"q4"):  # the last two are over the per-source rate
            tr.sendto(q)
        await until(lambda: h.server.counters["nbns"] + h.server.counters["nbns_dropped"] == 6, "six datagrams")
        await until(lambda: len(got) == 3, "three replies")
        tr.close()

    h = run(tmp_path, body, transport_limits=TransportLimits(nbns_per_source=4, sweep_interval=3600))
    assert h.server.counters["nbns_dropped"] == 2
    queries = [e for e in h.records if e["event"] == "nbns.query"]
    assert len(queries) == 3 and queries[0]["name"] == f"{PERSONA.host_name}<20>"
    assert all(e["proto"] == "udp" for e in h.records)
    closed = [e for e in h.records if e["event"] == "session.closed"]
    assert [c["bytes_out"] for c in closed] == [4, 4, 4, 0]
    assert closed[-1]["reason"] == "anomaly"
    assert_well_formed(h)


# -- spool, payload store, configuration ---------------------------------------------------------

def test_spool_lines_and_identity(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s" / "spool.jsonl", "hp1", clock=lambda: T0)
    ident = Identity("ab" * 16, "192.0.2.7", 1045, "198.51.100.2", 445, "tcp")
    spool.emit(ident, "smb.negotiate", {"dialects": ["NT LM 0.12"], "dialect": "NT LM 0.12", "smb_version": 1,
                                        "extended_security": None, "sensor": "evil"})
    spool.emit(ident, "smb.session_setup", {"native_os": "Windows\u202e\x00\U0001f600", "user": "a\nb"})
    with pytest.raises(KeyError):
        spool.emit(ident, "no.such_event", {})
    spool.close()
    raw = (tmp_path / "s" / "spool.jsonl").read_bytes()
    assert raw.isascii() and raw.count(b"\n") == 2  # attacker newlines and odd code points are escaped
    first, second = (json.loads(x) for x in raw.splitlines())
    assert list(first)[:10] == ["event", "ts", "sensor", "session", "seq", "src_ip", "src_port", "dst_ip",
                                "dst_port", "proto"]
    assert first["sensor"] == "hp1" and "extended_security" not in first
    assert second["native_os"] == "Windows\u202e\x00\U0001f600" and second["seq"] == 1
    assert iso_utc(0.0000005) == "1970-01-01T00:00:00.000000Z"


def test_payload_store_limits(tmp_path: Path) -> None:
    ps = PayloadStore(tmp_path / "p", max_payload=100, max_total=150)
    a = ps.keep(b"A" * 80)
    again = ps.keep(b"A" * 80)
    big = ps.keep(b"B" * 101)
    over_quota = ps.keep(b"C" * 80)
    assert a.stored and again.stored and ps.total == 80
    assert not big.stored and big.size == 101 and len(big.sha256) == 64
    assert not over_quota.stored and "quota" in over_quota.why
    assert sorted(p.name for p in (tmp_path / "p").rglob("*") if p.is_file()) == [a.sha256]
    assert PayloadStore(tmp_path / "p").total == 80  # measured again on restart
    with pytest.raises(ValueError):
        ps.path_for("../../etc/passwd")


def test_config_file(tmp_path: Path) -> None:
    cfg_file = tmp_path / "sensor.toml"
    cfg_file.write_text("""
[sensor]
name = "hp-berlin-1"
host = "127.0.0.1"
state_dir = "state"
spool = "events.jsonl"

[ports]
smb = 4445
netbios = false
nbns = 0

[persona]
template = "win2003"
host_name = "FILESRV07"

[limits]
max_sessions = 500
idle_timeout = 30
write_buffer_max = 65536

[session_limits]
max_frame = 65536

[payloads]
max_total_bytes = 1000000
""")
    cfg = load(cfg_file)
    assert cfg.sensor == "hp-berlin-1" and cfg.host == "127.0.0.1"
    assert cfg.ports == {"smb": 4445, "netbios-ssn": None, "dcerpc": 135, "nbns": 0}
    assert cfg.state_dir == tmp_path / "state" and cfg.spool_path == tmp_path / "state" / "events.jsonl"
    assert cfg.payload_path == tmp_path / "state" / "payloads"
    assert cfg.persona_template == "win2003" and cfg.persona_overrides == {"host_name": "FILESRV07"}
    assert cfg.limits == ServerLimits(max_sessions=500, idle_timeout=30.0)
    assert cfg.transport_limits.write_buffer_max == 65536 and cfg.session_limits.max_frame == 65536
    assert cfg.max_total_payload_bytes == 1000000
    over = cfg.with_overrides(smb_port=0, host=None, sensor="other")
    assert over.ports["smb"] == 0 and over.host == "127.0.0.1" and over.sensor == "other"
    assert load(None).ports == {"smb": 445, "netbios-ssn": 139, "dcerpc": 135, "nbns": 137}


def test_docs_configuration_reference_is_complete_and_valid() -> None:
    """The TOML block of docs/sensor.md parses as a configuration, names every limit, and its
    values are the defaults."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "sensor.md").read_text()
    (block,) = [b for b in re.findall(r"```toml\n(.*?)```", doc, re.S) if "[limits]" in b]
    cfg = parse(tomllib.loads(block), base=Path("/"))
    assert cfg.limits == ServerLimits() and cfg.session_limits == SessionLimits()
    assert cfg.transport_limits == TransportLimits()
    for cls in (ServerLimits, SessionLimits, TransportLimits):
        for f in fields(cls):
            assert re.search(rf"^{f.name} = ", block, re.M), f"docs/sensor.md does not document {f.name}"


@pytest.mark.parametrize(("text", "message"), [
    ("[limits]\nmax_sesions = 5\n", "unknown setting limits.max_sesions"),
    ("[limits]\nidle_timeout = -1\n", "limits.idle_timeout must be a positive number"),
    ("[limits]\nmax_sessions = 2.5\n", "limits.max_sessions must be a positive integer"),
    ("[ports]\nsmb = 70000\n", "ports.smb must be a port number"),
    ("[persona]\ntemplate = \"win95\"\n", "persona.template 'win95'"),
    ("[persona]\nos = \"x\"\n", "unknown setting persona.os"),
    ("[bogus]\n", "unknown setting bogus"),
    ("[sensor\n", "not valid TOML"),
])
def test_config_errors(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load(p)


# -- spool → store ------------------------------------------------------------------------------

def _write_spool(path: Path, sessions: range = range(3)) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    spool = Spool(path, "hp1", clock=lambda: T0, on_record=records.append)
    for i in sessions:
        ident = Identity(f"{i:032x}", "192.0.2.7", 1045 + i, "198.51.100.2", 445, "tcp")
        spool.emit(ident, "session.connect", {"service": "smb", "persona": "win2000"})
        spool.emit(ident, "exploit.attempt", {"vuln": "MS06-040", "cve": "CVE-2006-3439", "kind": "exploit",
                                              "detector": "d", "evidence": {"path_units": 412}, "confidence": 0.9,
                                              "payload_sha256": "0" * 64, "payload_size": 824})
        spool.emit(ident, "session.closed", {"reason": "client", "duration": 0.5, "bytes_in": 10, "bytes_out": 20})
    spool.close()
    return records


def test_live_feed_and_reread_spool_agree_and_add_nothing_twice(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "spool.jsonl"
    records = _write_spool(path)
    feed = StoreFeed()
    for r in records:
        feed.add(r)
    live = feed.take()
    assert live is not None and feed.take() is None
    assert store.write_events(live).inserted == 9
    reader = SensorSpoolReader()
    assert reader.sniff(path.read_bytes()[:300])
    (chunk,) = reader.read(source_for(str(path), "ignored"))
    assert chunk.read == 9 and not chunk.rejects
    assert chunk.events.equals(live)  # byte for byte what the live sensor handed the store
    assert store.write_events(chunk.events).inserted == 0
    assert sorted(chunk.events.column("key").to_pylist())[:2] == [f"{0:032x}:0", f"{0:032x}:1"]
    assert set(chunk.events.column("sensor").to_pylist()) == {"hp1"}
    # the spool grows: only the new session is added
    _write_spool(path, range(3, 4))
    (chunk,) = reader.read(source_for(str(path), "x"))
    assert chunk.read == 12 and store.write_events(chunk.events).inserted == 3
    row = store.con.execute("SELECT data FROM events WHERE event = 'exploit.attempt' LIMIT 1").fetchone()
    assert row is not None and json.loads(row[0])["evidence"] == {"path_units": 412}


def test_spool_reader_rejects_and_truncation(tmp_path: Path) -> None:
    path = tmp_path / "spool.jsonl"
    _write_spool(path, range(1))
    good = path.read_text().splitlines()
    bad = [
        "not json",
        json.dumps({**json.loads(good[0]), "seq": 7, "service": 5}),
        json.dumps({**json.loads(good[0]), "seq": 8, "event": "smb.nonsense"}),
        json.dumps({**json.loads(good[0]), "seq": 9, "src_ip": "999.1.1.1"}),
        json.dumps({**json.loads(good[0]), "seq": 10, "ts": "yesterday"}),
        json.dumps({**json.loads(good[0]), "seq": 11, "colour": "red"}),
        "[1, 2]",
    ]
    path.write_text("\n".join([*good, *bad]) + "\n" + good[0][:40])
    chunks = []
    with pytest.raises(TruncatedInput, match="line 11 cut short"):
        for c in SensorSpoolReader().read(source_for(str(path), "x")):
            chunks.append(c)
    (chunk,) = chunks
    assert chunk.events.num_rows == 3
    assert [r.line for r in chunk.rejects] == [4, 5, 6, 7, 8, 9, 10]
    assert "service is not of type string" in chunk.rejects[1].reason
    assert "unknown event type" in chunk.rejects[2].reason


def test_check_record_refuses_before_touching_the_builder() -> None:
    rec = {"event": "session.closed", "ts": "2006-08-13T10:21:07.250000Z", "sensor": "s", "session": "a",
           "seq": 0, "src_ip": "::ffff:192.0.2.1", "src_port": 1, "proto": "tcp", "reason": "client"}
    sensor, ts, fields = check_record(rec)
    assert sensor == "s" and ts == 1155464467250000 and fields["src_ip"] == "::ffff:c000:201"
    feed = StoreFeed()
    for broken in ({**rec, "seq": -1}, {**rec, "seq": True}, {**rec, "src_port": 70000},
                   {**rec, "ts": "2006-08-13T10:21:07"}, {**rec, "bytes_in": "ten"}, {**rec, "sensor": ""}):
        with pytest.raises(BadRecord):
            feed.add(broken)
    feed.add(rec)
    table = feed.take()
    assert table is not None and table.num_rows == 1


def test_spool_reader_sniff() -> None:
    reader = SensorSpoolReader()
    assert not reader.sniff(b'{"timestamp":"2024-01-01T00:00:00+0000","event_type":"flow"}\n')
    assert not reader.sniff(b"Aug 14 10:00:01 fw kernel: DSHIELDINPUT\n")
    assert not reader.sniff(b"")


def test_payload_dir_is_private(tmp_path: Path) -> None:
    ps = PayloadStore(tmp_path / "p")
    kept = ps.keep(b"MZ\x90\x00")
    f = ps.path_for(kept.sha256)
    assert not os.access(f, os.X_OK)
    assert stat.S_IMODE(f.parent.stat().st_mode) == 0o700
