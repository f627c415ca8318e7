"""Captures through the sensor's detectors (stormwatch.collector.replay): real captures replayed
through the honeypot's own Session give the sensor's events, checked against oracles that are not
the replay — Zeek's and suricata-verify's expected logs, the EternalSafety Zeek package's
notice.log, and dpkt's own reading of the packets. Provenance of every capture and log:
../shared/data/SOURCES.md.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import random
import socket
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dpkt
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from capture_helpers import tcp_payloads
from stormwatch.cli.main import cli
from stormwatch.collector import ingest_paths
from stormwatch.collector.replay import CaptureReplay, ReplayLimits, replay_capture
from stormwatch.collector.replay_conn import choose_persona, frame_start
from stormwatch.collector.tcp_streams import ACK, FIN, RST, SYN, Budget, HalfStream, Segment, capture_segments
from stormwatch.ingest.base import Source
from stormwatch.protocols.netbios import DirectTcpFramer, NbssFramer, encode_direct_tcp, encode_nbss
from stormwatch.protocols.smb1 import parse_header
from stormwatch.sensor.limits import SessionLimits
from stormwatch.sensor.outputs import Emit, Send
from stormwatch.sensor.persona import generate
from stormwatch.sensor.session import Session
from stormwatch.store import Store
from test_detect_ms17_010 import FAMILY_OF_NOTICE, TRACES, notices
from test_proto_dcerpc import decode_all, smb_pipe_streams, tcp_connections, zeek_rows
from test_sensor_session import CLOCK, PERSONAS, conversations, session

EXPLOITS = "pcap/exploits"
REF = "pcap/smb-reference"
HONEYNET = f"{EXPLOITS}/honeynet-fc2010-attack-trace-ms04-011.pcap"
Row = dict[str, Any]
Conn4 = tuple[str, int, str, int]


def replay(path: Path, payloads: Path | None = None, **kw: Any) -> list[Row]:
    """Every event of the replay, the data fields merged into the row."""
    rows = []
    for table in replay_capture(Source(str(path), "test"), payloads, **kw):
        rows += [{**r, **json.loads(r["data"])} for r in table.to_pylist()]
    return rows


def of(rows: list[Row], event: str) -> list[Row]:
    return [r for r in rows if r["event"] == event]


def conn_of(r: Row) -> Conn4:
    return r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"]


def by_session(rows: list[Row]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        out[r["session"]].append(r)
    return out


def _segments(path: Path, src: tuple[str, int]) -> list[tuple[float, int, bytes]]:
    """(time, sequence number, payload) of every segment ``src`` sent, in capture order (dpkt)."""
    out = []
    with path.open("rb") as f:
        for ts, buf in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            if (isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP) and ip.data.data
                    and (socket.inet_ntoa(ip.src), ip.data.sport) == src):
                out.append((ts, ip.data.seq, bytes(ip.data.data)))
    return out


def completing_time(path: Path, src: tuple[str, int], needle: bytes) -> datetime:
    """When the client's direct-TCP frame holding ``needle`` was complete: the time of the first
    packet that carried the frame's last byte."""
    segs = _segments(path, src)
    base = min(seq for _, seq, _ in segs)
    stream = bytearray()
    for _, seq, data in sorted(segs, key=lambda s: s[1]):
        stream[seq - base:seq - base + len(data)] = data
    p = bytes(stream).find(needle)
    assert p >= 0
    at = 0
    while True:
        end = at + 4 + int.from_bytes(stream[at + 1:at + 4], "big")
        if at <= p < end:
            break
        at = end
    ts = next(ts for ts, seq, data in segs if seq - base <= end - 1 < seq - base + len(data))
    return datetime.fromtimestamp(round(ts, 6), UTC).replace(tzinfo=None)


# -- MS04-011: a real attack on a honeypot -----------------------------------------------------------

def test_ms04_011_attack_on_the_honeynet(shared_data: Path, tmp_path: Path) -> None:
    """Honeynet Forensic Challenge 2010 #1: the LSASS overflow from 98.114.205.102."""
    path = shared_data / HONEYNET
    rows = replay(path, tmp_path / "payloads")
    (attempt,) = of(rows, "exploit.attempt")
    assert (attempt["vuln"], attempt["kind"], attempt["cve"]) == ("MS04-011", "exploit", "CVE-2003-0533")
    assert conn_of(attempt) == ("98.114.205.102", 1828, "192.150.11.111", 445)
    session = by_session(rows)[attempt["session"]]
    assert [r["event"] for r in session] == [
        "session.connect", "smb.negotiate", "smb.session_setup", "smb.tree_connect", "smb.pipe_open",
        "dcerpc.bind", "dcerpc.request", "exploit.attempt", "payload.shellcode", "session.closed"]
    _, _, _, _, pipe, bind, request, _, shellcode, closed = session
    # the kept argument holds the shellcode: XOR 0x99 over a bind shell on 1957 (the published answer)
    assert (shellcode["decoder"], shellcode["decoder_key"], shellcode["binds"]) == ("xor8", "99", [1957])
    assert pipe["pipe"] == "lsarpc"
    assert (bind["interface_name"], bind["transport"], bind["accepted"]) == ("dssetup", "pipe:lsarpc", True)
    assert (request["opnum"], request["operation"], request["stub_len"]) == (9, "DsRolerUpgradeDownlevelServer", 3208)
    # the payload, by SHA-256, is the oversized DnsDomainName inside the call's stub (decoded by the
    # test's own helpers from the capture)
    digest = attempt["payload_sha256"]
    kept = (tmp_path / "payloads" / digest[:2] / digest).read_bytes()
    assert hashlib.sha256(kept).hexdigest() == digest and len(kept) == attempt["payload_size"] == 2008
    (conn,) = [c for c in tcp_connections(path) if c.server_port == 445 and c.client]
    ((up, _),) = smb_pipe_streams(conn).values()
    stub = decode_all(up)[1].stub  # type: ignore[attr-defined]
    assert kept in stub
    # identity: the capture's time — of the packet that completed the SMB message carrying the call
    assert attempt["ts"] == request["ts"] == completing_time(path, ("98.114.205.102", 1828), stub[-64:])
    assert session[0]["ts"] == datetime(2009, 4, 20, 3, 28, 28, 509145)  # the SYN (tshark frame 5)
    assert (closed["reason"], closed["bytes_in"]) == ("client", len(conn.client))


def test_ids_are_learnt_from_the_captured_server(shared_data: Path) -> None:
    """The client writes to the FID the captured server gave it. A replaying session that is not
    told the server's answers cannot place it, so the pipe's DCE/RPC never reaches the detectors;
    given them (answer after request, paired by MID), it maps that FID to its own."""
    (conn,) = [c for c in tcp_connections(shared_data / HONEYNET) if c.server_port == 445 and c.client]
    requests = [f.payload for f in DirectTcpFramer(1 << 24).feed(conn.client)]
    answers: dict[int, list[bytes]] = defaultdict(list)
    for f in DirectTcpFramer(1 << 24).feed(conn.server):
        answers[parse_header(f.payload).mid].append(f.payload)

    def events(with_server: bool) -> list[str]:
        s = Session("smb", generate("win2000", random.Random(1)), SessionLimits(), random.Random(1), lambda: 1.24e9,
                    replay=True)
        out = []
        for frame in requests:
            out += [o.event for o in s.receive_data(encode_direct_tcp(frame)) if isinstance(o, Emit)]
            if with_server:
                for answer in answers[parse_header(frame).mid]:
                    s.server_data(encode_direct_tcp(answer))
        return out

    assert "smb.pipe_open" in events(False) and "dcerpc.bind" not in events(False)
    assert {"dcerpc.bind", "dcerpc.request", "exploit.attempt"} <= set(events(True))


def _frames(service: str, stream: bytes) -> list[bytes]:
    """A client stream cut at its transport frames, each frame with its header."""
    if service == "smb":
        return [encode_direct_tcp(f.payload) for f in DirectTcpFramer(1 << 24).feed(stream)]
    return [encode_nbss(f.type, f.payload) for f in NbssFramer(1 << 24).feed(stream)]


def _comparable(events: list[Emit]) -> list[tuple[str, dict[str, Any]]]:
    return [(e.event, {k: v for k, v in e.fields.items() if k != "fid"}) for e in events]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_recorded_impacket_conversations_replay_with_other_ids(index: int) -> None:
    """impacket's conversations with the sensor (SMB1 on 445, SMB2 on 445, SMB1 over NBSS on 139),
    the sensor being the "captured server": a replaying session with other randomness hands out
    other FIDs, SMB2 SessionIds and FileIds, learns the server's from its answers, and records the
    same events; without the answers it cannot follow the pipes."""
    service, template, stream = [c for c in conversations() if len(c[2]) > 1000][index]
    live = session(service, template)
    replayed = Session(service, PERSONAS[template], SessionLimits(), random.Random(99), lambda: CLOCK, replay=True)
    blind = Session(service, PERSONAS[template], SessionLimits(), random.Random(99), lambda: CLOCK, replay=True)
    seen: dict[str, list[Emit]] = {"live": [], "replayed": [], "blind": []}
    for frame in _frames(service, stream):
        out = live.receive_data(frame)
        seen["live"] += [o for o in out if isinstance(o, Emit)]
        seen["replayed"] += [o for o in replayed.receive_data(frame) if isinstance(o, Emit)]
        seen["blind"] += [o for o in blind.receive_data(frame) if isinstance(o, Emit)]
        replayed.server_data(b"".join(o.data for o in out if isinstance(o, Send)))
    assert _comparable(seen["replayed"]) == _comparable(seen["live"])
    assert {e.event for e in seen["live"]} >= {"dcerpc.bind", "dcerpc.request", "exploit.attempt"}
    fids = [[e.fields["fid"] for e in seen[k] if e.event == "smb.pipe_open"] for k in ("live", "replayed")]
    assert fids[0] and all(a != b for a, b in zip(*fids, strict=True))  # the ids did differ
    assert "exploit.attempt" not in {e.event for e in seen["blind"]}


def test_a_capture_of_the_client_side_only(shared_data: Path) -> None:
    """Without a single packet of the server (a one-sided tap), the session places the server's
    ids on its own most recent ones and the attack is still seen."""
    replayer = CaptureReplay("test")
    for seg in capture_segments(Source(str(shared_data / HONEYNET), "test")):
        if seg.dport == 445:
            replayer.segment(seg)
    replayer.finish()
    table = replayer.feed.take()
    assert table is not None
    rows = [{**r, **json.loads(r["data"])} for r in table.to_pylist()]
    assert [r["detector"] for r in of(rows, "exploit.attempt")] == ["dssetup.upgrade_downlevel_overflow"]
    assert [r["operation"] for r in of(rows, "dcerpc.request")] == ["DsRolerUpgradeDownlevelServer"]


# -- MS17-010: per connection, as EternalSafety names it ------------------------------------------------

@pytest.mark.parametrize("trace", sorted(TRACES))
def test_ms17_010_families_match_eternalsafety(shared_data: Path, trace: str) -> None:
    expected = notices(shared_data / "expected/eternalsafety" / TRACES[trace])
    rows = replay(shared_data / EXPLOITS / trace)
    conns = {conn_of(r) for r in of(rows, "session.connect")}
    assert set(expected) <= conns, "every noticed connection is replayed"
    found: dict[Conn4, set[str]] = defaultdict(set)
    for r in of(rows, "exploit.attempt"):
        assert r["vuln"] == "MS17-010"
        found[conn_of(r)].add(r["detector"])
    for conn in conns:
        families = {d.split(".")[0] for d in found[conn]} - {"ms17_010", "smb1"}
        want = {FAMILY_OF_NOTICE[n] for n in expected.get(conn, ()) if n in FAMILY_OF_NOTICE}
        assert families == want, (conn, found[conn], expected.get(conn))
    assert any(found.values())


def test_gaps_of_the_wannacry_capture_are_where_dpkt_sees_them(shared_data: Path) -> None:
    """wannacry-eternalsafety.pcap misses most of EternalBlue's 64 KiB transactions (and every
    SYN). Per connection, the bytes replayed are exactly dpkt's reassembly up to its first hole, and
    a capture_gap is reported exactly where the capture has client bytes beyond that hole."""
    path = shared_data / EXPLOITS / "wannacry-eternalsafety.pcap"
    streams = tcp_payloads(path)
    extent: dict[Conn4, tuple[int, int]] = {}
    with path.open("rb") as f:
        for _, buf in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP) and ip.data.data:
                key = (socket.inet_ntoa(ip.src), ip.data.sport, socket.inet_ntoa(ip.dst), ip.data.dport)
                lo, hi = extent.get(key, (ip.data.seq, ip.data.seq))
                extent[key] = (min(lo, ip.data.seq), max(hi, ip.data.seq + len(ip.data.data)))
    beyond = {k for k, (lo, hi) in extent.items() if k[3] == 445 and hi - lo > len(streams[k])}
    rows = replay(path)
    gaps = {conn_of(r) for r in of(rows, "session.anomaly") if r["kind"] == "capture_gap"}
    assert gaps == beyond and len(gaps) == 15
    for r in of(rows, "session.closed"):
        assert r["bytes_in"] == len(streams[conn_of(r)])
        assert r["reason"] == ("anomaly" if conn_of(r) in gaps else "capture_end")


def test_smb_filename_reference_trace_has_its_real_attacks_only(shared_data: Path) -> None:
    """suricata-verify's smb-filename capture carries EternalChampion on three connections and
    EternalBlue after a PeekNmPipe probe on a fourth (found by the detector tests); nothing else."""
    rows = replay(shared_data / REF / "suricata-verify-smb-filename/input.pcap")
    found: dict[int, set[str]] = defaultdict(set)
    for r in of(rows, "exploit.attempt"):
        found[r["src_port"]].add(r["detector"])
    assert found == {49193: {"eternalchampion.completed_trans_race"}, 49452: {"eternalchampion.completed_trans_race"},
                     49453: {"eternalchampion.completed_trans_race"},
                     49455: {"eternalblue.nt_trans2_confusion", "ms17_010.peeknmpipe_fid0"}}
    # its SMB2 clients are answered in SMB2 (the replay takes the win7 persona for them)
    assert {r["dialect"] for r in of(rows, "smb.negotiate") if r["smb_version"] == 2} == {"0x02ff", "0x0210"}


# -- the Zeek and suricata-verify reference traces ------------------------------------------------------

BENIGN = ["mapi.pcap", "smb1.pcap", "raw_ntlm_in_smb.pcap", "smb1-logoff-andx-advance.pcap",
          "smb1-logoff-andx-no-advance.pcap", "cifs_negotiate_lanman.pcap", "cs_window7-join_stream092.pcap",
          "dssetup_DsRoleGetPrimaryDomainInformation_standalone_workstation.cap", "smb1_transaction_request.pcap",
          "smb1_transaction_response.pcap", "smb1_transaction2_request.pcap", "smb1_transaction_secondary_request.pcap",
          "smb1_transaction2_secondary_request.pcap", "suricata-verify-output-eve-smb-01/input.pcap",
          "suricata-verify-smb-named-pipe-ascii/input.pcap", "suricata-verify-smb1-02/smb1_osx.pcap"]


@pytest.mark.parametrize("trace", BENIGN)
def test_benign_reference_traces_have_no_exploit(shared_data: Path, trace: str) -> None:
    rows = replay(shared_data / REF / trace)
    assert of(rows, "session.connect"), "the capture's SMB / DCE-RPC connections are replayed"
    assert not of(rows, "exploit.attempt")
    for events in by_session(rows).values():  # every session opens and closes exactly once
        assert events[0]["event"] == "session.connect" and events[-1]["event"] == "session.closed"
        assert len(of(events, "session.connect")) == len(of(events, "session.closed")) == 1


def calls(rows: list[Row]) -> list[tuple[int, int, str, str]]:
    return [(r["src_port"], r["dst_port"], r["interface_name"], r["operation"]) for r in of(rows, "dcerpc.request")]


def test_dcerpc_over_tcp_on_a_dynamic_port_matches_zeek(shared_data: Path) -> None:
    """cs_window7-join_stream092.pcap: drsuapi on TCP 1024 (a port the endpoint mapper handed out),
    found by its bind; the calls are Zeek's dce-rpc.context log, in order."""
    rows = replay(shared_data / REF / "cs_window7-join_stream092.pcap")
    zeek = zeek_rows(shared_data / "expected/zeek/dce-rpc.context/dce_rpc.log")
    assert calls(rows) == [(int(r[3]), int(r[5]), r[8], r[9]) for r in zeek]
    assert {(r["interface_name"], r["transport"]) for r in of(rows, "dcerpc.bind")} == {("drsuapi", "tcp")}


def test_smb1_transaction_dcerpc_matches_zeek(shared_data: Path) -> None:
    """A capture that begins after NEGOTIATE and SESSION_SETUP (the session is lenient with the
    server's UID and TID it never saw granted): Zeek's smb.smb1-transaction-dcerpc log. Zeek's
    named_pipe column is the bind_ack's secondary address (\\PIPE\\lsass); the client opened lsarpc."""
    rows = replay(shared_data / REF / "dssetup_DsRoleGetPrimaryDomainInformation_standalone_workstation.cap")
    zeek = zeek_rows(shared_data / "expected/zeek/smb.smb1-transaction-dcerpc/dce_rpc.log")
    assert calls(rows) == [(int(r[3]), int(r[5]), r[8], r[9]) for r in zeek]
    assert [r["pipe"] for r in of(rows, "smb.pipe_open")] == ["lsarpc"]
    assert [(r["interface_name"], r["accepted"]) for r in of(rows, "dcerpc.bind")] == [("dssetup", True)]


def test_mapi_trace_matches_zeek(shared_data: Path) -> None:
    """mapi.pcap: epmapper on 135, nspi and exchange_mapi on the ports it handed out, LSA over SMB on
    139 (the last not in Zeek's log). Zeek logs the request of connection 1073 that never got an
    answer (call 7, EcDoRpc) under the previous call's name; the replay names it by its opnum."""
    rows = replay(shared_data / REF / "mapi.pcap")
    log = shared_data / "expected/zeek/dce-rpc.mapi/dce_rpc.log"
    zeek = [(int(r[3]), int(r[5]), r[8], r[9]) for r in zeek_rows(log)]
    assert zeek[-1] == zeek[-2] == (1073, 1032, "exchange_mapi", "EcRRegisterPushNotification")
    ours = [c for c in calls(rows) if c[1] != 139]
    per_conn: dict[int, list[tuple[int, int, str, str]]] = defaultdict(list)
    for c in ours:
        per_conn[c[0]].append(c)
    want: dict[int, list[tuple[int, int, str, str]]] = defaultdict(list)
    for c in [*zeek[:-1], (1073, 1032, "exchange_mapi", "EcDoRpc")]:
        want[c[0]].append(c)
    assert per_conn == want
    lsa = {c[3] for c in calls(rows) if c[1] == 139}
    assert {"LsarOpenPolicy2", "LsarQueryInformationPolicy", "LsarLookupSids", "LsarClose"} <= lsa
    on_139 = [r for r in of(rows, "dcerpc.request") if r["dst_port"] == 139]
    assert {r["transport"] for r in on_139 if r["interface_name"]} == {"pipe:lsarpc"}
    # twice a call on a pipe opened and bound before the capture began (FID 0xa00c): no name for
    # it, as tshark has none ("Request: call_id: 152/153, opnum 2")
    assert [(r["transport"], r["opnum"]) for r in on_139 if not r["interface_name"]] == [("pipe:?", 2)] * 2


def test_suricata_verify_dce_stub_data_02(shared_data: Path) -> None:
    """test.yaml: one DCE/RPC call, dssetup DsRolerUpgradeDownlevelServer, alerted on — it is the
    MS04-011 call itself, cut from the honeynet attack."""
    rows = replay(shared_data / REF / "suricata-verify-dcerpc-dce-stub-data-02/input.pcap")
    assert calls(rows) == [(1234, 135, "dssetup", "DsRolerUpgradeDownlevelServer")]
    assert [(r["vuln"], r["kind"]) for r in of(rows, "exploit.attempt")] == [("MS04-011", "exploit")]


def test_suricata_verify_smb1_02(shared_data: Path) -> None:
    """test.yaml: three NEGOTIATEs offering and agreeing on NT LM 0.12 (the macOS client)."""
    rows = replay(shared_data / REF / "suricata-verify-smb1-02/smb1_osx.pcap")
    negotiates = of(rows, "smb.negotiate")
    assert len(negotiates) == 3
    assert all(r["dialect"] == r["dialects"][0] == "NT LM 0.12" for r in negotiates)


# -- identity, keys, the store ----------------------------------------------------------------------

def test_replays_are_reproducible_and_keys_unique(shared_data: Path) -> None:
    path = shared_data / EXPLOITS / "eternalchampion.pcap"
    first, second = replay(path), replay(path)
    assert first == second
    keys = [r["key"] for r in first]
    assert len(set(keys)) == len(keys)
    sessions = by_session(first)
    assert len({conn_of(rows[0]) for rows in sessions.values()}) == len(sessions) == 7
    for sid, rows in sessions.items():
        assert [r["key"] for r in rows] == [f"{sid}:{i}" for i in range(len(rows))]


def test_pcapng_and_gzip_give_the_same_events(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / HONEYNET
    ng = tmp_path / "attack.pcapng.gz"
    with path.open("rb") as f, gzip.open(ng, "wb") as out:
        writer = dpkt.pcapng.Writer(out, snaplen=65535)
        for ts, buf in dpkt.pcap.Reader(f):
            writer.writepkt(buf, ts=ts)
    src = Source(str(ng), "test", compression="gzip")
    got = [r for t in replay_capture(src) for r in t.to_pylist()]
    assert got == [r for t in replay_capture(Source(str(path), "test")) for r in t.to_pylist()]


def test_ingest_twice_adds_nothing_and_lists_the_attempt(shared_data: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "db" / "s.duckdb")
    runner = CliRunner()
    first = runner.invoke(cli, ["ingest", str(shared_data / HONEYNET), "--db", db, "--output", "json"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(cli, ["ingest", str(shared_data / HONEYNET), "--db", db, "--output", "json"])
    (s1,), (s2,) = json.loads(first.output), json.loads(second.output)
    assert s1["accepted"] == s2["duplicates"] > 0 and s2["accepted"] == 0
    listed = runner.invoke(cli, ["events", "--type", "exploit.attempt", "--db", db, "--format", "json"])
    assert listed.exit_code == 0, listed.output
    (event,) = json.loads(listed.output)
    assert (event["src_ip"], event["dst_port"], event["event"]) == ("98.114.205.102", 445, "exploit.attempt")
    data = event["data"] if isinstance(event["data"], dict) else json.loads(event["data"])
    assert (tmp_path / "db" / "payloads" / data["payload_sha256"][:2] / data["payload_sha256"]).exists()


def test_damaged_capture_is_replayed_up_to_the_damage(shared_data: Path, tmp_path: Path) -> None:
    raw = (shared_data / HONEYNET).read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(raw[:120_000] + b"\xff" * 16)  # a record header claiming 4 GiB: the framing is lost
    with Store(tmp_path / "s.duckdb") as store:
        (summary,) = ingest_paths(store, [str(cut)])
        assert summary.error is not None  # the pcap reader reports the damage
        kinds = {r[0] for r in store.con.execute("SELECT DISTINCT event FROM events").fetchall()}
    assert {"fw.connection", "session.connect", "dcerpc.request", "exploit.attempt", "session.closed"} <= kinds


def test_connections_beyond_the_limit_are_evicted_like_the_sensor_does(shared_data: Path) -> None:
    rows = replay(shared_data / EXPLOITS / "wannacry-eternalsafety.pcap", limits=ReplayLimits(max_connections=2))
    evicted = [r for r in of(rows, "session.anomaly") if r["kind"] == "max_sessions"]
    assert evicted
    closed = {r["session"]: r["reason"] for r in of(rows, "session.closed")}
    assert all(closed[r["session"]] == "limit" for r in evicted)
    assert len(closed) == len(of(rows, "session.connect")) == 75


def test_idle_and_over_long_connections_close_as_the_sensor_closes_them(shared_data: Path) -> None:
    """The sensor's idle_timeout and max_session_time, in capture time."""
    rows = replay(shared_data / HONEYNET, limits=ReplayLimits(max_session_time=2.0))
    session = by_session(rows)[of(rows, "exploit.attempt")[0]["session"]]  # the exploit came 1.67 s in
    closed = session[-1]
    assert (closed["event"], closed["reason"], closed["duration"]) == ("session.closed", "lifetime", 2.0)
    assert (closed["ts"] - session[0]["ts"]).total_seconds() == 2.0
    rows = replay(shared_data / EXPLOITS / "wannacry-eternalsafety.pcap", limits=ReplayLimits(idle_timeout=10.0))
    idle = [r for r in of(rows, "session.closed") if r["reason"] == "idle"]
    assert idle
    for r in idle:
        events = by_session(rows)[r["session"]]
        assert (r["ts"] - events[-2]["ts"]).total_seconds() >= 10.0
        assert r["duration"] == pytest.approx((r["ts"] - events[0]["ts"]).total_seconds())


# -- the reassembler ----------------------------------------------------------------------------------

def stream(max_held: int = 1 << 20, limit: int = 1 << 30) -> HalfStream:
    return HalfStream(Budget(limit), max_held)


def test_retransmissions_overlaps_and_reordering() -> None:
    s = stream()
    s.start_syn(1000)
    assert s.add(1001, b"abc") == b"abc"
    assert s.add(1001, b"abc") == b""  # a retransmission
    assert s.add(1007, b"ghi") == b""  # beyond a hole: waits
    assert s.add(1002, b"XCdef") == b"def" + b"ghi"  # an overlap: the first copy of a byte wins
    assert (s.waiting, s.hole(), s.delivered) == (0, None, 9)


def test_sequence_numbers_wrap() -> None:
    s = stream()
    s.start_syn(0xFFFFFFFE)
    assert s.add(0xFFFFFFFF, b"ab") == b"ab"
    assert s.add(3, b"d") == b""
    assert s.add(1, b"cc") == b"ccd"


def test_a_gap_stops_the_direction() -> None:
    s = stream()
    assert s.add(5000, b"hello") == b"hello"  # no SYN seen: the stream starts at the first payload
    assert s.add(5010, b"later") == b""
    s.ack(5015)  # the receiver has bytes 5005-5009 that the capture lost
    assert s.gap is not None and "acknowledged" in s.gap and s.waiting == 0
    assert s.add(5005, b"12345") == b""  # nothing is delivered after a gap
    small = stream(max_held=4)
    small.add(1, b"a")
    small.add(10, b"toolong")
    assert small.gap is not None and "waited behind a hole" in small.gap


def test_the_total_budget_is_shared() -> None:
    budget = Budget(10)
    a, b = HalfStream(budget, 100), HalfStream(budget, 100)
    for s in (a, b):
        s.add(1, b"x")
        s.add(5, b"123456")
    assert a.gap is None and b.gap is not None and budget.used == 6
    a.drop()
    assert budget.used == 0


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.lists(st.integers(0, 299), max_size=12), st.randoms(),
       st.integers(0, 2**32 - 1))
def test_any_segmentation_order_and_duplication_gives_the_stream(data: bytes, cuts: list[int], rnd: random.Random,
                                                                 isn: int) -> None:
    edges = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    pieces = [(a, data[a:b]) for a, b in itertools.pairwise(edges)]
    pieces += rnd.sample(pieces, k=len(pieces) // 2)  # retransmissions
    rnd.shuffle(pieces)
    s = stream()
    s.start_syn(isn)
    out = b"".join(s.add((isn + 1 + at) % 2**32, piece) for at, piece in pieces)
    assert out == data and s.waiting == 0


# -- the protocol questions the replay asks --------------------------------------------------------------

def test_frame_start_of_a_direction_captured_mid_stream() -> None:
    smb = b"\x00\x00\x00\x23" + b"\xffSMB" + bytes(31)
    assert frame_start("smb", b"\x00junk\xffSMBtail" + smb) == 13
    assert frame_start("netbios-ssn", smb) == 0
    assert frame_start("smb", b"\xffSMB without a header") is None
    pdu = bytes.fromhex("05000b03100000004800000001000000")
    assert frame_start("dcerpc", b"\x05\x00\xff" + pdu) == 3
    assert frame_start("dcerpc", pdu[:9]) is None


def test_persona_follows_the_dialect_the_client_went_on_in() -> None:
    def frame(body: bytes) -> bytes:
        return encode_direct_tcp(body)
    offer = frame(b"\xffSMB\x72" + bytes(27) + b"\x00\x02NT LM 0.12\x00\x02SMB 2.002\x00")
    smb1_only = frame(b"\xffSMB\x72" + bytes(27) + b"\x00\x02NT LM 0.12\x00")
    smb2 = frame(b"\xfeSMB" + bytes(60))
    smb1 = frame(b"\xffSMB\x73" + bytes(27))
    assert choose_persona("smb", smb2, b"", final=False) == "win7"
    assert choose_persona("smb", smb1_only, b"", final=False) == "win2000"
    assert choose_persona("smb", offer, b"", final=False) is None  # the server's answer decides
    assert choose_persona("smb", offer, smb2, final=False) == "win7"
    assert choose_persona("smb", offer, smb1, final=False) == "win2000"
    assert choose_persona("smb", offer + smb1, b"", final=False) == "win2000"  # or the client's next message
    assert choose_persona("smb", offer, b"", final=True) == "win2000"
    assert choose_persona("dcerpc", b"", b"", final=False) == "win2000"


# -- robustness -------------------------------------------------------------------------------------------

_NEGOTIATE = encode_direct_tcp(b"\xffSMB\x72" + bytes(27) + b"\x0c\x00\x02NT LM 0.12\x00")
_BIND = bytes.fromhex("05000b03100000004800000001000000b810b810000000000100000000000100"
                      "c84f324b7016d30112785a47bf6ee18803000000045d888aeb1cc9119fe808002b10486002000000")
PSH = 0x08
_FLAGS = [SYN, SYN | ACK, ACK, ACK | PSH, ACK | FIN, RST, RST | ACK, FIN]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([445, 139, 135, 4000]),
       st.lists(st.tuples(st.booleans(), st.sampled_from(_FLAGS), st.integers(-40, 200),
                          st.sampled_from([b"", _NEGOTIATE, _NEGOTIATE[:20], _BIND, b"\0\0\0\5junk!", b"A" * 70])),
                max_size=30))
def test_any_segment_sequence_keeps_every_session_whole(port: int, segs: list[tuple[bool, int, int, bytes]]) -> None:
    """Whatever the segments (order, flags, overlaps, holes, garbage), the replay never raises and
    every session it starts has one session.connect first and one session.closed last."""
    replayer = CaptureReplay("test", limits=ReplayLimits(max_held=64, max_undecided=100, max_resync=100))
    for i, (from_client, flags, offset, payload) in enumerate(segs):
        ends = (("192.0.2.1", 1025), ("198.51.100.2", port))
        (src, sport), (dst, dport) = ends if from_client else ends[::-1]
        seq = (0xFFFFFF00 + offset) % 2**32 if from_client else 5000 + offset
        replayer.segment(Segment(i + 1, 1_000_000 * (i + 1), src, sport, dst, dport, seq, 0xFFFFFF01, flags, payload))
    replayer.finish()
    table = replayer.feed.take()
    rows = table.to_pylist() if table is not None else []
    for events in by_session(rows).values():
        assert events[0]["event"] == "session.connect" and events[-1]["event"] == "session.closed"
        assert sum(e["event"] in ("session.connect", "session.closed") for e in events) == 2
    assert len({r["key"] for r in rows}) == len(rows)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(24, 189_102), st.integers(0, 255)), min_size=1, max_size=40))
def test_damaged_packets_never_break_the_replay(shared_data: Path, tmp_path_factory: pytest.TempPathFactory,
                                                edits: list[tuple[int, int]]) -> None:
    raw = bytearray((shared_data / HONEYNET).read_bytes())
    for at, value in edits:
        raw[at] = value
    path = tmp_path_factory.mktemp("fuzz") / "edited.pcap"
    path.write_bytes(bytes(raw))
    for events in by_session(replay(path)).values():
        assert events[0]["event"] == "session.connect" and events[-1]["event"] == "session.closed"
