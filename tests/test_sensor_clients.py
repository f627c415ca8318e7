"""The sensor against real clients over loopback: impacket, smbclient, nmblookup, nmap and the CLI.

These clients are the oracle: if impacket can log in anonymously and enumerate shares, smbclient
lists them, and nmap's smb scripts read the persona's OS, the honeypot talks SMB well enough to
be attacked; the attacks (MS06-040 and MS08-067 shapes sent with impacket, nmap's MS17-010 check)
must then come out as ``exploit.attempt`` events in the spool and the store. All traffic goes to
127.0.0.1 (or another 127/8 address). Binaries that are missing skip their test with the reason;
``.ci/run`` installs smbclient and nmap.

The NetBIOS session service (NBSS, port 139 framing) is reached on an ephemeral port: impacket
chooses NBSS framing only when the port *equals* ``nmb.NETBIOS_SESSION_PORT`` (it sends the
session request in ``NetBIOSSession.__init__`` and switches the negotiate dialects in
``SMBConnection.negotiateSession``), so the tests point that constant at the sensor's port.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("stormwatch.sensor.session", reason="the sensor's Session (issue 3 step 2) is not written yet")

from impacket import nmb, smb
from impacket.dcerpc.v5 import srvs, transport
from impacket.smbconnection import SMBConnection

from stormwatch.events.records import StoreFeed
from stormwatch.ingest.base import source_for
from stormwatch.ingest.spool import SensorSpoolReader
from stormwatch.sensor.payloads import PayloadStore
from stormwatch.sensor.persona import Persona, generate
from stormwatch.sensor.server import SensorServer
from stormwatch.sensor.spool import Spool
from stormwatch.store import Store

REPO = Path(__file__).resolve().parent.parent


class LiveSensor:
    """A real sensor (real sessions) on ephemeral loopback ports, served from a thread of its own
    so that blocking clients can run in the test's thread."""

    def __init__(self, tmp: Path, persona: Persona, *, host: str = "127.0.0.1",
                 ports: dict[str, int | None] | None = None) -> None:
        self.persona = persona
        self.records: list[dict[str, Any]] = []
        self.feed = StoreFeed()
        self.spool_path = tmp / "spool.jsonl"
        self.payloads = PayloadStore(tmp / "payloads")
        self.spool = Spool(self.spool_path, "hp-test", on_record=self._record)
        self.server = SensorServer(spool=self.spool, persona=persona, host=host,
                                   ports=ports or {"smb": 0, "netbios-ssn": 0, "dcerpc": 0, "nbns": 0},
                                   payloads=self.payloads, rng=random.Random(3))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sensor", daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        self.port = self.server.bound

    def _record(self, r: dict[str, Any]) -> None:
        self.records.append(r)
        self.feed.add(r)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        self.spool.close()

    def wait_closed(self, n: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while sum(r["event"] == "session.closed" for r in list(self.records)) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"waited for {n} session.closed; events: {self.kinds()}")
            time.sleep(0.02)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [r for r in list(self.records) if r["event"] == name]

    def kinds(self) -> list[str]:
        return [r["event"] for r in list(self.records)]


@pytest.fixture
def persona() -> Persona:
    return generate("win2000", random.Random(2006))


@pytest.fixture
def sensor(tmp_path: Path, persona: Persona) -> Iterator[LiveSensor]:
    s = LiveSensor(tmp_path, persona)
    yield s
    s.stop()


def _need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (apt-get install smbclient nmap; .ci/run does)")
    return path


# -- impacket ---------------------------------------------------------------------------------------

def _smb1(sensor: LiveSensor, framing: str, monkeypatch: pytest.MonkeyPatch) -> SMBConnection:
    """An anonymous SMB1 connection over direct TCP (``smb``) or NBSS (``netbios-ssn``)."""
    port = sensor.port[framing]
    if framing == "netbios-ssn":
        monkeypatch.setattr(nmb, "NETBIOS_SESSION_PORT", port)
    conn = SMBConnection(sensor.persona.host_name, "127.0.0.1", sess_port=port, timeout=10,
                         preferredDialect=smb.SMB_DIALECT)
    conn.login("", "")
    return conn


def _no_alarm(sensor: LiveSensor) -> None:
    assert not sensor.events("exploit.attempt"), sensor.events("exploit.attempt")
    assert not sensor.events("session.anomaly"), sensor.events("session.anomaly")


@pytest.mark.parametrize("framing", ["smb", "netbios-ssn"])
def test_impacket_anonymous_share_enumeration_is_benign(sensor: LiveSensor, framing: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    conn = _smb1(sensor, framing, monkeypatch)
    assert conn.getServerOS() == sensor.persona.os.native_os
    shares = {s["shi1_netname"][:-1] for s in conn.listShares()}
    assert {"IPC$", sensor.persona.decoy_share} <= shares
    rpc = transport.SMBTransport("127.0.0.1", filename=r"\srvsvc", smb_connection=conn)
    dce = rpc.get_dce_rpc()
    dce.connect()
    dce.bind(srvs.MSRPC_UUID_SRVS)
    info = srvs.hNetrServerGetInfo(dce, 101)["InfoStruct"]["ServerInfo101"]
    assert info["sv101_name"][:-1].upper() == sensor.persona.host_name
    assert (info["sv101_version_major"], info["sv101_version_minor"]) == (sensor.persona.os.major,
                                                                          sensor.persona.os.minor)
    enum = srvs.hNetrShareEnum(dce, 1)["InfoStruct"]["ShareInfo"]["Level1"]["Buffer"]
    assert {s["shi1_netname"][:-1] for s in enum} == shares
    dce.disconnect()
    conn.close()
    sensor.wait_closed(1)
    kinds = sensor.kinds()
    for name in ("session.connect", "smb.negotiate", "smb.session_setup", "smb.tree_connect", "smb.pipe_open",
                 "dcerpc.bind", "dcerpc.request", "session.closed"):
        assert name in kinds, (name, kinds)
    assert sensor.events("session.connect")[0]["service"] == framing
    assert sensor.events("smb.session_setup")[0]["user"] in ("", None)
    ops = {r.get("operation") for r in sensor.events("dcerpc.request")}
    assert {"NetrShareEnum", "NetrServerGetInfo"} <= ops, ops
    _no_alarm(sensor)


def _ndr_wstring(raw: bytes) -> bytes:
    """[C706] 14.3.4 conformant varying string of UTF-16 units, raw bytes as given (shellcode is
    not text), padded to 4: max count, offset 0, actual count, units."""
    n = len(raw) // 2
    b = struct.pack("<III", n, 0, n) + raw
    return b + b"\0" * (-len(b) % 4)


_BAD = set(b"\x00\x0a\x0d\x5c\x5f\x2f\x2e")  # Metasploit's BadChars for both modules


def _payload(rng: random.Random, n: int) -> bytes:
    return bytes(rng.choice([c for c in range(256) if c not in _BAD]) for _ in range(n))


def ms06_040_stub(rng: random.Random) -> tuple[bytes, bytes]:
    """(stub, path bytes) in the shape of Metasploit's ms06_040_netapi, target Windows 2000:
    1000 bytes of sled and payload, the return address 0x00020804 sixteen times, NUL; Prefix
    U+02EB; random OutbufLen and PathType (research notes 2.1)."""
    path = b"\x90" * 600 + _payload(rng, 400) + struct.pack("<I", 0x00020804) * 16 + b"\0\0"
    stub = struct.pack("<I", rng.getrandbits(32) | 1) + _ndr_wstring(b"\0\0")  # ServerName -> ""
    stub += _ndr_wstring(path) + struct.pack("<I", rng.randint(1, 250))
    stub += _ndr_wstring(b"\xeb\x02\x00\x00") + struct.pack("<II", rng.randint(1, 250), 0)
    return stub, path


def ms08_067_stub(rng: random.Random) -> bytes:
    """Metasploit's ms08_067_netapi shape: a random server name, a path ``\\`` + alpha + payload
    + ``\\..\\..\\`` + pad + addresses + jumper, Prefix ``\\``, PathType 0x1001 (research notes 2.2)."""
    u16 = lambda s: s.encode("utf-16-le")  # noqa: E731
    server = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(rng.randint(1, 8)))
    path = (u16("\\") + bytes(rng.choice(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(100)) + _payload(rng, 408)
            + u16("\\..\\..\\") + u16("ABCDEFG") + struct.pack("<II", 0x00020408, 0x6F8916E2)
            + b"\xeb\x62" + _payload(rng, 68) + b"\0\0")
    stub = struct.pack("<I", rng.getrandbits(32) | 1) + _ndr_wstring(u16(server + "\0"))
    stub += _ndr_wstring(path) + struct.pack("<I", rng.randrange(1024))
    stub += _ndr_wstring(u16("\\\0")) + struct.pack("<II", 0x1001, 0)
    return stub


def _attack(sensor: LiveSensor, framing: str, pipe: str, stub: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Anonymous login, IPC$, open the pipe, bind srvsvc, call opnum 31 without waiting (as the
    Metasploit modules do), hang up."""
    conn = _smb1(sensor, framing, monkeypatch)
    rpc = transport.SMBTransport("127.0.0.1", filename=pipe, smb_connection=conn)
    dce = rpc.get_dce_rpc()
    dce.connect()
    dce.bind(srvs.MSRPC_UUID_SRVS)
    dce.call(31, stub)
    time.sleep(0.05)
    conn.close()
    sensor.wait_closed(1)


@pytest.mark.parametrize("pipe", [r"\browser", r"\srvsvc"])
@pytest.mark.parametrize("framing", ["smb", "netbios-ssn"])
def test_impacket_ms06_040_is_recorded(sensor: LiveSensor, framing: str, pipe: str,
                                       monkeypatch: pytest.MonkeyPatch, store: Store) -> None:
    stub, path = ms06_040_stub(random.Random(f"{framing}{pipe}"))
    _attack(sensor, framing, pipe, stub, monkeypatch)
    [ev] = sensor.events("exploit.attempt")
    assert (ev["vuln"], ev["cve"], ev["kind"]) == ("MS06-040", "CVE-2006-3439", "exploit"), ev
    assert ev["payload_size"] > 0
    assert sensor.payloads.path_for(ev["payload_sha256"]).read_bytes().startswith(path[:64])
    pipes = [r["pipe"] for r in sensor.events("smb.pipe_open")]
    assert pipe.strip("\\") in pipes
    spooled = [json.loads(ln) for ln in sensor.spool_path.read_text().splitlines()]
    assert [r["vuln"] for r in spooled if r["event"] == "exploit.attempt"] == ["MS06-040"]
    table = sensor.feed.take()
    assert table is not None
    store.write_events(table)
    rows = store.con.execute("SELECT session, src_ip, dst_port, data FROM events "
                             "WHERE event = 'exploit.attempt'").fetchall()
    assert len(rows) == 1 and rows[0][1] == "127.0.0.1" and rows[0][2] == sensor.port[framing]
    assert json.loads(rows[0][3])["vuln"] == "MS06-040"


@pytest.mark.parametrize("framing", ["smb", "netbios-ssn"])
def test_impacket_ms08_067_is_recorded(sensor: LiveSensor, framing: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _attack(sensor, framing, r"\browser", ms08_067_stub(random.Random(framing)), monkeypatch)
    [ev] = sensor.events("exploit.attempt")
    assert (ev["vuln"], ev["cve"], ev["kind"]) == ("MS08-067", "CVE-2008-4250", "exploit"), ev


# -- smbclient ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra", [[], ["--option=client min protocol=NT1"]], ids=["m-NT1", "min-protocol-NT1"])
def test_smbclient_lists_shares(sensor: LiveSensor, extra: list[str]) -> None:
    exe = _need("smbclient")
    res = subprocess.run([exe, "-L", "//127.0.0.1", "-p", str(sensor.port["smb"]), "-N", "-m", "NT1", *extra],
                         check=False, capture_output=True, text=True, timeout=60)
    out = res.stdout + res.stderr
    if not extra and "NT_STATUS_INVALID_PARAMETER_MIX" in out:
        pytest.skip("this smbclient refuses -m NT1 below its 'client min protocol' (Samba >= 4.11 default)")
    assert res.returncode == 0, out
    assert re.search(r"^\s+IPC\$\s+IPC", out, re.M), out
    assert re.search(rf"^\s+{re.escape(sensor.persona.decoy_share)}\s+Disk", out, re.M), out
    sensor.wait_closed(1)
    assert not sensor.events("exploit.attempt")


# -- nmap ---------------------------------------------------------------------------------------------

def _nmap(port: int, *args: str) -> str:
    exe = _need("nmap")
    if os.geteuid() != 0:
        pytest.skip("nmap's SYN and UDP scans need root here")
    res = subprocess.run([exe, "-Pn", "-n", *args, "--script-args", f"smbport={port}", "127.0.0.1"],
                         check=False, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def test_nmap_smb_discovery_reads_the_persona(sensor: LiveSensor, tmp_path: Path) -> None:
    """smb-os-discovery in nmap 7.93 looks the SMB port up as UDP unless it is 139 or 445 (and
    fails on the nil), so the same port number is scanned over UDP too: the state entry is all
    it needs."""
    port = sensor.port["smb"]
    xml = tmp_path / "nmap.xml"
    out = _nmap(port, "-sS", "-sU", "-p", f"T:{port},U:{port}", "-oX", str(xml),
                "--script", "smb-os-discovery,smb-protocols,smb-security-mode")
    assert "smb-os-discovery" in out and "ERROR" not in out, out
    assert f"OS: Windows 2000 ({sensor.persona.os.native_lanman})" in out, out  # nmap names "Windows 5.0"
    elems = dict(re.findall(r'<elem key="(\w+)">([^<]*)</elem>', xml.read_text()))
    assert elems["os"] == sensor.persona.os.native_os  # the NativeOS string itself
    assert elems["lanmanager"] == sensor.persona.os.native_lanman
    assert elems["server"].removesuffix("\\x00") == sensor.persona.host_name
    assert re.search(r"NT LM 0\.12 \(SMBv1\)", out), out  # smb-protocols
    assert "message_signing:" in out, out  # smb-security-mode
    sensor.wait_closed(1)
    assert not sensor.events("exploit.attempt")
    assert not [e for e in sensor.events("session.anomaly") if e["kind"] == "internal_error"]


def test_nmap_ms17_010_check_is_a_probe(sensor: LiveSensor) -> None:
    port = sensor.port["smb"]
    out = _nmap(port, "-p", str(port), "--script", "smb-vuln-ms17-010")
    assert "VULNERABLE" in out, out
    evs = sensor.events("exploit.attempt")
    assert evs and {(e["vuln"], e["kind"]) for e in evs} == {("MS17-010", "probe")}, evs


# -- NBNS (UDP 137) -------------------------------------------------------------------------------------

def test_nmblookup_node_status(tmp_path: Path, persona: Persona) -> None:
    """nmblookup (and nmap's nbstat) always ask port 137, so this needs 137 itself: it binds a
    loopback address of its own on 137 when it may (root), and skips otherwise."""
    exe = _need("nmblookup")
    addr = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
    try:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind((addr, 137))
        probe.close()
    except OSError as exc:
        pytest.skip(f"cannot bind {addr}:137 for nmblookup ({exc}); it needs root or cap_net_bind_service")
    s = LiveSensor(tmp_path, persona, host=addr, ports={"nbns": 137})
    try:
        res = subprocess.run([exe, "-A", addr], check=False, capture_output=True, text=True, timeout=30)
    finally:
        s.stop()
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(rf"^\s+{re.escape(persona.host_name)}\s+<20>", res.stdout, re.M), res.stdout
    assert re.search(rf"^\s+{re.escape(persona.domain)}\s+<00> - <GROUP>", res.stdout, re.M), res.stdout
    [q] = [r for r in s.records if r["event"] == "nbns.query"]
    assert q["qtype"] == "NBSTAT" and q["proto"] == "udp" and q["dst_ip"] == addr


# -- the command line, end to end -------------------------------------------------------------------------

def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _wait_for(cond: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_cli_sensor_spools_stores_and_stops_on_sigterm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    smb_port, nb_port, rpc_port = _free_ports(3)
    cfg = tmp_path / "sensor.toml"
    cfg.write_text('[sensor]\nname = "hp-cli"\nstate_dir = "state"\n[persona]\nhost_name = "ACCT07"\n'
                   "[ports]\nnbns = false\n")
    db, spool = tmp_path / "s.duckdb", tmp_path / "spool.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stormwatch.cli.sensor_cmd", "--config", str(cfg), "--db", str(db), "--spool",
         str(spool), "--host", "127.0.0.1", "--smb-port", str(smb_port), "--netbios-port", str(nb_port),
         "--rpc-port", str(rpc_port), "--persona", "win2000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    err_lines: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: err_lines.extend(iter(proc.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        _wait_for(lambda: any("sensor listening" in ln for ln in err_lines) or proc.poll() is not None,
                  "the sensor to listen")
        assert proc.poll() is None, "".join(err_lines)
        stub, _ = ms06_040_stub(random.Random(1))
        monkeypatch.setattr(nmb, "NETBIOS_SESSION_PORT", nb_port)
        conn = SMBConnection("ACCT07", "127.0.0.1", sess_port=nb_port, timeout=10, preferredDialect=smb.SMB_DIALECT)
        conn.login("", "")
        rpc = transport.SMBTransport("127.0.0.1", filename=r"\browser", smb_connection=conn)
        dce = rpc.get_dce_rpc()
        dce.connect()
        dce.bind(srvs.MSRPC_UUID_SRVS)
        dce.call(31, stub)
        conn.close()
        idle = socket.create_connection(("127.0.0.1", rpc_port))  # left open: closed by the shutdown
        _wait_for(lambda: spool.exists() and spool.read_text().count('"session.connect"') >= 2, "two sessions")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(10)
        idle.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = "".join(err_lines)
    assert proc.returncode == 0, err
    assert "events stored" in err
    records = [json.loads(ln) for ln in spool.read_text().splitlines()]
    by_session: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_session.setdefault(r["session"], []).append(r)
    assert len(by_session) == 2
    attack, quiet = sorted(by_session.values(), key=len, reverse=True)
    assert attack[0]["service"] == "netbios-ssn" and attack[-1]["event"] == "session.closed"
    assert [r["vuln"] for r in attack if r["event"] == "exploit.attempt"] == ["MS06-040"]
    assert quiet[0]["service"] == "dcerpc" and quiet[-1]["reason"] == "shutdown"
    assert {r["sensor"] for r in records} == {"hp-cli"}
    assert (tmp_path / "state" / "persona.json").exists()
    st = Store(db)
    try:
        n, exploits = st.con.execute("SELECT count(*), count(*) FILTER (WHERE event = 'exploit.attempt') "
                                     "FROM events").fetchone() or (0, 0)
        assert (n, exploits) == (len(records), 1)
        # `stormwatch ingest` of the same spool afterwards adds nothing: the same keys as the live feed
        reread = [st.write_events(c.events).inserted for c in SensorSpoolReader().read(source_for(str(spool), "x"))]
        assert sum(reread) == 0
    finally:
        st.close()

