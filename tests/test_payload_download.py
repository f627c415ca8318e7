"""Operator-enabled download of offered payloads (stormwatch.sensor.download), against real servers
on 127.0.0.1 only: Python's http.server, pyftpdlib (passive and active FTP) and a TFTP server
written here from RFC 1350. Every fetch runs in the real child process.

Covered: whole files over each protocol (stored by SHA-256, ``payload.file`` fields the store
takes); the limits (a server that sends for ever is cut at ``max_bytes``, one that stalls ends at the
timeout with what came before, a TFTP server that never answers ends after its retries); refused
destinations (loopback without the allow list, names that resolve to it, private, link-local,
multicast, unspecified: decided without a packet sent); redirects to another host refused;
targets with control characters refused; off by default (configuration, and a live sensor that
records an offer without fetching it); the live sensor fetching an offer from its analyser's
``payload.offer`` and emitting ``payload.file`` before ``session.closed``, once per URL; stopping
with a fetch running; the configuration keys and their documentation; the CLI.
"""

from __future__ import annotations

import http.server
import json
import random
import re
import socket
import struct
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import shellcode_vectors as sv
from stormwatch.cli.payload_cmd import payload
from stormwatch.events.records import check_record
from stormwatch.sensor.analysis import PayloadAnalyser
from stormwatch.sensor.config import ConfigError, SensorConfig, load, parse
from stormwatch.sensor.download import (
    Downloader,
    DownloadLimits,
    Fetched,
    Target,
    fetch,
    file_fields,
    networks,
    parse_target,
    refusal,
    target_from_offer,
)
from stormwatch.sensor.payloads import PayloadStore
from stormwatch.sensor.persona import generate
from stormwatch.sensor.spool import Identity, Spool
from test_sensor_analysis import LiveSensor, assert_last_closed, exploit_stub, send_exploit

LOOPBACK = networks(["127.0.0.0/8"])
WAIT = 30.0
PE = b"MZ" + b"\0" * 58 + struct.pack("<I", 0x80) + b"\0" * 64 + b"PE\0\0" + bytes(range(256)) * 300  # 76,932 bytes
ODD = bytes(random.Random(7).getrandbits(8) for _ in range(5 * 512 + 77))
EVEN = bytes(random.Random(8).getrandbits(8) for _ in range(4 * 512))  # ends with an empty DATA block


# -- HTTP ---------------------------------------------------------------------------------------------

class HttpServer:
    """http.server on 127.0.0.1: files from a directory, plus /forever (sends without end),
    /stall (128 bytes, then nothing until released), /away (302 to another host), /here (302 to /bot.exe)."""

    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        self.release = threading.Event()
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a: Any, **kw: Any) -> None:
                super().__init__(*a, directory=str(root), **kw)

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.requests.append(self.path)
                if self.path == "/forever":
                    self.send_response(200)
                    self.end_headers()
                    try:
                        while not outer.release.is_set():
                            self.wfile.write(b"A" * 65536)
                    except OSError:
                        pass  # the client hung up: expected
                elif self.path == "/stall":
                    self.send_response(200)
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    self.wfile.write(b"B" * 128)
                    self.wfile.flush()
                    outer.release.wait(WAIT)
                elif self.path in ("/away", "/here"):
                    self.send_response(302)
                    where = f"http://127.0.0.2:{outer.port}/bot.exe" if self.path == "/away" else "/bot.exe"
                    self.send_header("Location", where)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def web(tmp_path: Path) -> Iterator[HttpServer]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "bot.exe").write_bytes(PE)
    srv = HttpServer(root)
    yield srv
    srv.close()


# -- FTP (pyftpdlib) --------------------------------------------------------------------------------

@pytest.fixture
def ftp_server(tmp_path: Path) -> Iterator[int]:
    servers = pytest.importorskip("pyftpdlib.servers", reason="pyftpdlib (the dev extra) is not installed")
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler

    root = tmp_path / "ftp"
    root.mkdir()
    (root / "ssms.exe").write_bytes(PE)
    (root / "odd.bin").write_bytes(ODD)
    auth = DummyAuthorizer()
    auth.add_user("x", "y", str(root), perm="elr")
    auth.add_anonymous(str(root))
    handler = type("Handler", (FTPHandler,), {"authorizer": auth, "banner": "220 bot ftp", "use_sendfile": False})
    srv = servers.FTPServer(("127.0.0.1", 0), handler)
    port = srv.socket.getsockname()[1]
    thread = threading.Thread(target=srv.serve_forever, kwargs={"timeout": 0.05}, daemon=True)
    thread.start()
    yield port
    srv.close_all()
    thread.join(WAIT)


# -- TFTP (written here, RFC 1350) ---------------------------------------------------------------

class TftpServer:
    """A TFTP read server: RRQ on its port, each transfer from a new port (its transfer ID).
    ``mode``: ``normal``; ``lose-ack`` (ignores the first ACK, so block 1 is sent again);
    ``forever`` (full blocks without end); ``silent`` (never answers)."""

    def __init__(self, files: dict[str, bytes], mode: str = "normal") -> None:
        self.files, self.mode = files, mode
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.requests: list[tuple[str, str]] = []
        self.resent = 0
        self.errors: list[bytes] = []
        self.threads = [threading.Thread(target=self._serve, daemon=True)]
        self.threads[0].start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                pkt, peer = self.sock.recvfrom(1024)
            except TimeoutError:
                continue
            if pkt[:2] != b"\0\x01" or self.mode == "silent":
                continue
            name, mode = pkt[2:].split(b"\0")[:2]
            self.requests.append((name.decode(), mode.decode()))
            t = threading.Thread(target=self._send, args=(name.decode(), peer), daemon=True)
            self.threads.append(t)
            t.start()

    def _send(self, name: str, peer: tuple[str, int]) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # the transfer's own port
            s.bind(("127.0.0.1", 0))
            s.settimeout(0.5)
            if name not in self.files and self.mode != "forever":
                s.sendto(b"\0\x05\0\x01File not found\0", peer)
                return
            data = self.files.get(name, b"")
            block, lost = 1, self.mode == "lose-ack"
            while not self.stop.is_set():
                chunk = b"Z" * 512 if self.mode == "forever" else data[(block - 1) * 512:block * 512]
                pkt = struct.pack("!HH", 3, block & 0xFFFF) + chunk
                s.sendto(pkt, peer)
                try:
                    ack, _ = s.recvfrom(1024)
                except TimeoutError:
                    continue  # send the block again
                if ack[:2] == b"\0\x05":
                    self.errors.append(ack)
                    return
                if lost:  # pretend the first ACK never came
                    lost = False
                    self.resent += 1
                    continue
                if struct.unpack("!HH", ack[:4]) != (4, block & 0xFFFF):
                    continue
                if len(chunk) < 512:
                    return
                block += 1

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(WAIT)
        self.sock.close()


@pytest.fixture
def tftp() -> Iterator[Callable[..., TftpServer]]:
    made: list[TftpServer] = []

    def make(mode: str = "normal") -> TftpServer:
        srv = TftpServer({"wgareg.exe": ODD, "even.bin": EVEN}, mode)
        made.append(srv)
        return srv

    yield make
    for srv in made:
        srv.close()


# -- targets and the destination policy ------------------------------------------------------------

def test_parse_target_forms() -> None:
    t = parse_target("ftp://x:y@198.51.100.7:8884/ssms.exe")
    assert (t.protocol, t.host, t.port, t.path) == ("ftp", "198.51.100.7", 8884, "ssms.exe")
    assert (t.user, t.password) == ("x", "y")
    assert parse_target("tftp://203.0.113.66/wgareg.exe") == Target("tftp", "203.0.113.66", 69, "wgareg.exe")
    t = parse_target("http://198.51.100.23:8080/a/ircsvc.exe?x=1")
    assert (t.path, t.name, t.url) == ("/a/ircsvc.exe?x=1", "ircsvc.exe", "http://198.51.100.23:8080/a/ircsvc.exe?x=1")
    assert parse_target("203.0.113.66:69:tftp/wgareg.exe") == Target("tftp", "203.0.113.66", 69, "wgareg.exe")
    assert parse_target("[2001:db8::1]:21:ftp/a.exe").host == "2001:db8::1"
    offer = {"protocol": "ftp", "host": "98.114.205.102", "port": 8884, "path": "ssms.exe",
             "url": "ftp://98.114.205.102:8884/ssms.exe", "user": "1", "password": "1"}
    assert target_from_offer(offer) == Target("ftp", "98.114.205.102", 8884, "ssms.exe", "1", "1")
    assert target_from_offer({"protocol": "tftp", "host": "203.0.113.66", "path": "x.exe"}).port == 69


@pytest.mark.parametrize("text", ["gopher://h/x", "http:///x", "ftp://h/", "h:99999:ftp/x", "no target",
                                  "ftp://h/a%0d%0aDELE%20b", "tftp://h/a%00b", "h:21:smtp/x"])
def test_bad_targets_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_target(text)


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("192.168.0.9", "private"), ("169.254.1.1", "link-local"),
    ("224.0.0.251", "multicast"), ("0.0.0.0", "unspecified"), ("::1", "loopback"), ("fe80::1", "link-local"),
    ("fd00::5", "private"), ("::ffff:10.0.0.1", "private"), ("100.64.0.1", "global"), ("255.255.255.255", ""),
])
def test_refused_destinations(address: str, kind: str) -> None:
    why = refusal(address)
    assert why is not None and kind in why
    assert refusal(address, networks(["0.0.0.0/0", "::/0"])) is None  # the allow list permits anything it names


def test_global_destination_is_permitted() -> None:
    assert refusal("198.51.100.7") is not None  # documentation range: not global
    assert refusal("8.8.8.8") is None and refusal("2a00:1450::1") is None
    assert refusal("127.0.0.1", LOOPBACK) is None and refusal("127.9.9.9", LOOPBACK) is None
    assert refusal("10.0.0.1", LOOPBACK) is not None


def test_refused_without_the_allow_list(web: HttpServer) -> None:
    got = fetch(parse_target(web.url("/bot.exe")))
    assert got.refused and not got.data and "loopback" in got.notes[0]
    got = fetch(parse_target(web.url("/bot.exe").replace("127.0.0.1", "localhost")))  # resolved, then refused
    assert got.refused and "localhost ->" in got.notes[0]
    assert web.requests == []


# -- HTTP ---------------------------------------------------------------------------------------------

def test_http_whole_file_stored_by_hash(web: HttpServer, tmp_path: Path) -> None:
    got = fetch(parse_target(web.url("/bot.exe")), allow=LOOPBACK)
    assert got.complete and got.data == PE and got.address == "127.0.0.1"
    assert (got.expected_size, got.expected_from) == (len(PE), "content_length")
    store = PayloadStore(tmp_path / "payloads")
    kept = store.keep(got.data)
    fields = file_fields(got, kept, "a" * 32)
    assert store.path_for(fields["sha256"]).read_bytes() == PE
    assert fields["stage"] == "download" and fields["file_type"] == "pe" and fields["stored"] is True
    assert (fields["name"], fields["protocol"], fields["source_port"], fields["missing_bytes"]) == \
           ("bot.exe", "http", web.port, 0)
    records: list[dict[str, Any]] = []
    spool = Spool(None, "hp", on_record=records.append)
    spool.emit(Identity("a" * 32, "192.0.2.7", 1045, "198.51.100.2", 445, "tcp"), "payload.file", fields)
    check_record(records[0])


def test_http_redirects_stay_on_the_host(web: HttpServer) -> None:
    got = fetch(parse_target(web.url("/here")), allow=LOOPBACK)
    assert got.complete and got.data == PE
    got = fetch(parse_target(web.url("/away")), allow=networks(["127.0.0.0/8"]))
    assert not got.complete and not got.data
    assert any("redirect to another place refused" in n for n in got.notes), got.notes
    assert web.requests.count("/bot.exe") == 1  # only the same-host redirect was followed
    got = fetch(parse_target(web.url("/missing.exe")), allow=LOOPBACK)
    assert not got.complete and any("404" in n for n in got.notes)


def test_http_endless_body_is_cut_at_max_bytes(web: HttpServer) -> None:
    got = fetch(parse_target(web.url("/forever")), allow=LOOPBACK, limits=DownloadLimits(max_bytes=300_000))
    assert len(got.data) == 300_000 and not got.complete
    assert "cut at max_bytes (300000)" in got.notes


def test_http_stalling_server_ends_at_the_timeout(web: HttpServer) -> None:
    got = fetch(parse_target(web.url("/stall")), allow=LOOPBACK,
                limits=DownloadLimits(timeout=1.0, connect_timeout=30.0))
    assert got.data == b"B" * 128 and not got.complete  # what came before the stall is kept
    assert any(n.startswith("timeout") for n in got.notes), got.notes
    fields = file_fields(got, None)
    assert (fields["expected_size"], fields["missing_bytes"], fields["stored"]) == (100000, 100000 - 128, False)


# -- FTP ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("active", [False, True], ids=["passive", "active"])
def test_ftp_login_and_binary_transfer(ftp_server: int, active: bool) -> None:
    t = Target("ftp", "127.0.0.1", ftp_server, "ssms.exe", "x", "y", active=active)
    got = fetch(t, allow=LOOPBACK)
    assert got.complete and got.data == PE, got.notes
    anon = fetch(parse_target(f"127.0.0.1:{ftp_server}:ftp/odd.bin"), allow=LOOPBACK)
    assert anon.complete and anon.data == ODD


def test_ftp_errors_and_limits(ftp_server: int) -> None:
    got = fetch(Target("ftp", "127.0.0.1", ftp_server, "ssms.exe", "x", "wrong"), allow=LOOPBACK)
    assert not got.complete and not got.data and any("530" in n for n in got.notes), got.notes
    got = fetch(Target("ftp", "127.0.0.1", ftp_server, "nothere.exe"), allow=LOOPBACK)
    assert not got.complete and any("550" in n for n in got.notes), got.notes
    got = fetch(Target("ftp", "127.0.0.1", ftp_server, "ssms.exe"), allow=LOOPBACK,
                limits=DownloadLimits(max_bytes=1000))
    assert got.data == PE[:1000] and not got.complete


# -- TFTP -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "data"), [("wgareg.exe", ODD), ("even.bin", EVEN)])
def test_tftp_octet_transfer(tftp: Callable[..., TftpServer], name: str, data: bytes) -> None:
    srv = tftp()
    got = fetch(parse_target(f"tftp://127.0.0.1:{srv.port}/{name}"), allow=LOOPBACK)
    assert got.complete and got.data == data, got.notes
    assert srv.requests == [(name, "octet")]


def test_tftp_lost_ack_and_errors(tftp: Callable[..., TftpServer]) -> None:
    srv = tftp("lose-ack")
    got = fetch(parse_target(f"tftp://127.0.0.1:{srv.port}/wgareg.exe"), allow=LOOPBACK,
                limits=DownloadLimits(tftp_wait=0.2))
    assert got.complete and got.data == ODD and srv.resent == 1
    got = fetch(parse_target(f"tftp://127.0.0.1:{srv.port}/nothere.exe"), allow=LOOPBACK)
    assert not got.complete and "tftp error 1: File not found" in got.notes


def test_tftp_silent_server_and_endless_file(tftp: Callable[..., TftpServer]) -> None:
    silent = tftp("silent")
    got = fetch(parse_target(f"tftp://127.0.0.1:{silent.port}/x.exe"), allow=LOOPBACK,
                limits=DownloadLimits(tftp_wait=0.1, tftp_retries=3))
    assert not got.complete and "tftp: no answer after 4 tries" in got.notes
    endless = tftp("forever")
    got = fetch(parse_target(f"tftp://127.0.0.1:{endless.port}/x.exe"), allow=LOOPBACK,
                limits=DownloadLimits(max_bytes=10_000))
    assert got.data == b"Z" * 10_000 and not got.complete
    deadline = time.monotonic() + WAIT
    while not endless.errors and time.monotonic() < deadline:
        time.sleep(0.01)
    assert endless.errors and endless.errors[0][:4] == b"\0\x05\0\x03"  # told the server to stop


def test_child_memory_limit_is_in_force(web: HttpServer) -> None:
    """The child limits its own address space before it fetches: with 8 MiB it cannot build the
    request, and that is a failed fetch (a note), not an exception here."""
    got = fetch(parse_target(web.url("/bot.exe")), allow=LOOPBACK, limits=DownloadLimits(memory=8 << 20))
    assert not got.complete and not got.data and any("MemoryError" in n for n in got.notes), got.notes
    assert web.requests == []


# -- configuration and its documentation ------------------------------------------------------------

def test_download_is_off_by_default_and_configurable(tmp_path: Path) -> None:
    cfg = SensorConfig()
    assert cfg.download is False and cfg.download_allow == ()
    assert load(None).download is False
    on = parse(tomllib.loads('[payloads]\ndownload = true\ndownload_max_bytes = 1000\ndownload_timeout = 5\n'
                             'download_allow = ["127.0.0.0/8", "::1/128"]\n'), base=tmp_path)
    assert (on.download, on.download_max_bytes, on.download_timeout, on.download_allow) == \
           (True, 1000, 5.0, ("127.0.0.0/8", "::1/128"))


@pytest.mark.parametrize(("text", "message"), [
    ("download = 1", "payloads.download must be true or false"),
    ("download_max_bytes = 0", "payloads.download_max_bytes must be a positive integer"),
    ("download_timeout = -1", "payloads.download_timeout must be a positive number"),
    ('download_allow = "127.0.0.0/8"', "payloads.download_allow must be a list of CIDR networks"),
    ('download_allow = ["127.0.0.300/8"]', "payloads.download_allow must be a list of CIDR networks"),
    ("download_alow = []", "unknown setting payloads.download_alow"),
])
def test_download_config_errors(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(f"[payloads]\n{text}\n")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(p)


def test_docs_name_every_download_setting_with_its_default() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "sensor.md").read_text()
    (block,) = [b for b in re.findall(r"```toml\n(.*?)```", doc, re.S) if "[limits]" in b]
    for key in ("download", "download_max_bytes", "download_timeout", "download_allow"):
        assert re.search(rf"^{key} = ", block, re.M), f"docs/sensor.md does not document payloads.{key}"
    cfg = parse(tomllib.loads(block), base=Path("/"))
    default = SensorConfig()
    assert (cfg.download, cfg.download_max_bytes, cfg.download_timeout, cfg.download_allow) == \
           (default.download, default.download_max_bytes, default.download_timeout, default.download_allow)
    payloads_doc = Path(__file__).resolve().parent.parent / "docs" / "payloads.md"
    assert "## Downloading offered files" in payloads_doc.read_text()


# -- the CLI --------------------------------------------------------------------------------------------

def test_cli_fetch(web: HttpServer, tmp_path: Path) -> None:
    out = tmp_path / "got"
    res = CliRunner().invoke(payload, ["fetch", web.url("/bot.exe"), "--allow", "127.0.0.0/8", "--out-dir", str(out),
                                       "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["complete"] is True and doc["size"] == len(PE) and Path(doc["path"]).read_bytes() == PE
    res = CliRunner().invoke(payload, ["fetch", web.url("/bot.exe"), "--out-dir", str(out)])
    assert res.exit_code == 1 and "refused: 127.0.0.1 is loopback" in res.output
    res = CliRunner().invoke(payload, ["fetch", web.url("/forever"), "--allow", "127.0.0.1/32", "--max-bytes", "5000",
                                       "--out-dir", str(out)])
    assert res.exit_code == 1 and "cut at max_bytes (5000)" in res.output
    res = CliRunner().invoke(payload, ["fetch", "gopher://x/y"])
    assert res.exit_code == 2 and "not a URL" in res.output


# -- the live sensor --------------------------------------------------------------------------------------

PERSONA = generate("win2000", random.Random(2006))


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Callable[[Downloader | None], LiveSensor]]:
    made: list[LiveSensor] = []

    def make(downloader: Downloader | None) -> LiveSensor:
        pytest.importorskip("unicorn", reason="payload analysis needs the unicorn emulator")
        s = LiveSensor(tmp_path / f"s{len(made)}", PERSONA, PayloadAnalyser(), downloader)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def download_exploit(url: str) -> bytes:
    return exploit_stub(sv.xor8_callpop(sv.download_exec(url, "bot.exe"), 0x99))


def test_live_sensor_fetches_an_offer_once_per_url(live: Callable[[Downloader | None], LiveSensor],
                                                  web: HttpServer) -> None:
    sensor = live(Downloader(allow=["127.0.0.0/8"]))
    stub = download_exploit(web.url("/bot.exe"))
    send_exploit(sensor, stub)
    [first] = sensor.attack_session()
    sensor.until(lambda: sensor.closed(first), "session.closed")
    kinds = sensor.kinds(first)
    order = ["exploit.attempt", "payload.shellcode", "payload.offer", "payload.file", "session.closed"]
    assert [k for k in kinds if k in order] == order, kinds
    [f] = sensor.events("payload.file")
    assert (f["stage"], f["complete"], f["stored"], f["attack"], f["session"]) == ("download", True, True, first, first)
    assert (f["url"], f["source_host"], f["name"]) == (web.url("/bot.exe"), "127.0.0.1", "bot.exe")
    assert f["file_type"] == "pe"
    assert sensor.payloads.path_for(f["sha256"]).read_bytes() == PE
    send_exploit(sensor, stub)  # the same offer again: not fetched twice
    second = sensor.attack_session(2)[1]
    sensor.until(lambda: sensor.closed(second), "the second session.closed")
    again = [r for r in sensor.of(second) if r["event"] == "payload.file"]
    assert len(again) == 1 and again[0]["sha256"] == f["sha256"]
    assert any("fetched before" in n for n in again[0]["notes"])
    assert web.requests == ["/bot.exe"]
    assert_last_closed(sensor)


def test_live_sensor_does_not_download_by_default(live: Callable[[Downloader | None], LiveSensor],
                                                  web: HttpServer) -> None:
    sensor = live(None)
    send_exploit(sensor, download_exploit(web.url("/bot.exe")))
    [sid] = sensor.attack_session()
    sensor.until(lambda: sensor.closed(sid), "session.closed")
    assert [r["url"] for r in sensor.events("payload.offer")] == [web.url("/bot.exe")]
    assert sensor.events("payload.file") == [] and web.requests == []


def test_live_sensor_refuses_a_destination_outside_the_allow_list(
        live: Callable[[Downloader | None], LiveSensor], web: HttpServer) -> None:
    sensor = live(Downloader())  # enabled, but 127.0.0.1 is not allowed
    send_exploit(sensor, download_exploit(web.url("/bot.exe")))
    [sid] = sensor.attack_session()
    sensor.until(lambda: sensor.closed(sid), "session.closed")
    [f] = sensor.events("payload.file")
    assert f["complete"] is False and f["size"] == 0 and "sha256" not in f
    assert any("loopback" in n for n in f["notes"]) and web.requests == []
    assert_last_closed(sensor)


def test_stop_kills_a_running_fetch(live: Callable[[Downloader | None], LiveSensor], web: HttpServer,
                                    caplog: pytest.LogCaptureFixture) -> None:
    downloader = Downloader(DownloadLimits(timeout=WAIT, connect_timeout=WAIT), allow=["127.0.0.0/8"])
    sensor = live(downloader)
    send_exploit(sensor, download_exploit(web.url("/stall")))
    [sid] = sensor.attack_session()
    sensor.until(lambda: "/stall" in web.requests, "the fetch to start")
    assert not sensor.closed(sid)  # its session.closed waits for the download
    sensor.call(sensor.server.stop())
    assert sensor.closed(sid) and sensor.server.open_sessions == 0
    assert "did not close" not in caplog.text  # the child was killed, not waited out
    assert sensor.events("payload.file") == []
    assert not web.release.is_set()
    assert_last_closed(sensor)


def test_fetched_result_of_a_refused_offer_has_no_hash() -> None:
    fields = file_fields(Fetched(Target("tftp", "0.0.0.0", 69, "x.exe"), refused=True, notes=("refused: x",)), None)
    assert fields["sha256"] is None and fields["complete"] is False and fields["notes"] == ["refused: x"]
