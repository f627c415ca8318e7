"""The sensor's sans-I/O session: conversations in the mitmproxy style (bytes in, expected
outputs), impacket as the client against the session behind a loopback socket (SMB1 and SMB2,
ports 445 and 139, benign calls and the MS06-040 / MS08-067 request shapes), TCP 135, the name
service, limits and malformed input, and hypothesis over whole sessions: any split of a
conversation gives the same outputs, and no input makes the session raise."""

from __future__ import annotations

import functools
import json
import random
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from impacket import nmb, smb
from impacket.dcerpc.v5 import srvs, transport
from impacket.smbconnection import SMBConnection

from capture_helpers import tcp_payloads
from stormwatch.events import CATALOGUE, FieldType
from stormwatch.protocols.dcerpc.build import build_bind, build_request
from stormwatch.protocols.dcerpc.interfaces import EPMAPPER, IREMOTEACTIVATION, NDR, SRVSVC, SyntaxId
from stormwatch.protocols.dcerpc.pdu import BindAck, Fault, PType, Response, parse_pdu
from stormwatch.protocols.dcerpc.responses import EPT_S_NOT_REGISTERED
from stormwatch.protocols.netbios import (
    DirectTcpFramer,
    NbssFramer,
    NetbiosName,
    decode_name_packet,
    encode_direct_tcp,
    encode_keep_alive,
    encode_name_query,
    encode_nbss,
    encode_session_request,
)
from stormwatch.protocols.smb1 import (
    Command,
    Flags2,
    Header,
    NegotiateResponse,
    NtStatus,
    ReadAndXResponse,
    SessionSetupAndXResponse,
    TreeConnectAndXResponse,
    decode_smb1,
)
from stormwatch.protocols.smb1.header import build_block
from stormwatch.sensor.limits import ServerLimits, SessionLimits
from stormwatch.sensor.outputs import Close, Emit, Output, Send
from stormwatch.sensor.persona import Persona, generate
from stormwatch.sensor.session import Session, nbns_answer

CLOCK = 1_600_000_000.0
PERSONAS = {name: generate(name, random.Random(3)) for name in ("win2000", "winxp", "win7")}
TYPES = dict(CATALOGUE)


def session(service: str = "smb", template: str = "win2000", limits: SessionLimits | None = None,
            seed: int = 7) -> Session:
    return Session(service, PERSONAS[template], limits or SessionLimits(), random.Random(seed), lambda: CLOCK)


def emits(outputs: list[Output], event: str | None = None) -> list[Emit]:
    return [o for o in outputs if isinstance(o, Emit) and (event is None or o.event == event)]


def check_event(e: Emit) -> None:
    """Every emitted event is of the catalogue, with only its type's own fields, well typed."""
    et = TYPES[e.event]
    py = {FieldType.STRING: str, FieldType.INT: int, FieldType.FLOAT: float, FieldType.BOOL: bool}
    for name, value in e.fields.items():
        f = et.field(name)
        assert f is not None, f"{e.event} has no field {name}"
        if f.type == FieldType.JSON:
            json.dumps(value)
        else:
            assert isinstance(value, py[f.type]) and not (f.type == FieldType.INT and isinstance(value, bool)), \
                (e.event, name, value)
    if e.payload is not None:
        assert e.event == "exploit.attempt" and isinstance(e.payload, bytes)


def replies(outputs: list[Output], framing: str = "smb") -> list[bytes]:
    """The SMB messages sent, unframed."""
    framer = DirectTcpFramer(1 << 20) if framing == "smb" else NbssFramer(1 << 20)
    return [f.payload for f in framer.feed(b"".join(o.data for o in outputs if isinstance(o, Send)))]


# -- requests, written out -------------------------------------------------------------------


def smb1(command: int, words: bytes = b"", data: bytes = b"", *, flags2: int = 0xC001, uid: int = 0, tid: int = 0,
         mid: int = 1, pid: int = 0xFEFF) -> bytes:
    """One SMB1 request in direct TCP framing ([MS-CIFS] 2.2.3.1 header + block)."""
    header = Header(command, flags=0x18, flags2=flags2, tid=tid, pid_low=pid, uid=uid, mid=mid)
    return encode_direct_tcp(header.pack() + build_block(words, data))


NEGOTIATE_NTLM = smb1(Command.NEGOTIATE, data=b"\x02NT LM 0.12\x00", flags2=0xC001)  # no EXTENDED_SECURITY
NEGOTIATE_EXT = smb1(Command.NEGOTIATE, data=b"\x02NT LM 0.12\x00", flags2=0xC001 | Flags2.EXTENDED_SECURITY)


def legacy_logon(account: str = "", password: bytes = b"", *, native_os: str = "Windows 2000 2195") -> bytes:
    """SESSION_SETUP_ANDX, NT LM 0.12 legacy form (WordCount 13), OEM strings (Flags2 without UNICODE)."""
    words = struct.pack("<BBHHHHIHHII", 0xFF, 0, 0, 4356, 10, 0, 0, len(password), 0, 0, 0x40)
    strings = b"".join(s.encode("latin-1") + b"\x00" for s in (account, "WORKGROUP", native_os, "Windows 2000 5.0"))
    return smb1(Command.SESSION_SETUP_ANDX, words, password + strings, flags2=0x4001, mid=2)


def tree_connect(path: str, uid: int, *, service: bytes = b"?????") -> bytes:
    words = struct.pack("<BBHHH", 0xFF, 0, 0, 0x0008, 1)
    return smb1(Command.TREE_CONNECT_ANDX, words, b"\x00" + path.encode() + b"\x00" + service + b"\x00",
                flags2=0x4001, uid=uid, mid=3)


#: nmap smb-vuln-ms17-010 / Metasploit's scanner / WannaCry: TRANSACTION PeekNmPipe on FID 0.
PEEK_NMPIPE_FID0_WORDS = bytes.fromhex(
    "0000"      # TotalParameterCount
    "0000"      # TotalDataCount
    "ffff"      # MaxParameterCount
    "ffff"      # MaxDataCount
    "00"        # MaxSetupCount
    "00"        # Reserved1
    "0000"      # Flags
    "00000000"  # Timeout
    "0000"      # Reserved2
    "0000"      # ParameterCount
    "4a00"      # ParameterOffset: 74
    "0000"      # DataCount
    "4a00"      # DataOffset: 74
    "02"        # SetupCount: 2
    "00"        # Reserved3
    "2300"      # Setup[0]: PeekNmPipe (0x23)
    "0000"      # Setup[1]: FID 0
)
PEEK_NMPIPE_FID0_DATA = b"\\PIPE\\\x00"  # Name (OEM): the bytes ET 2025649 matches

#: DoublePulsar's ping: TRANSACTION2 SESSION_SETUP (0x0E), opcode 0x23 in the Timeout byte sum, MID 65.
DOUBLEPULSAR_PING_WORDS = bytes.fromhex(
    "0c00"      # TotalParameterCount: 12
    "0000"      # TotalDataCount
    "0100"      # MaxParameterCount
    "0000"      # MaxDataCount
    "00"        # MaxSetupCount
    "00"        # Reserved1
    "0000"      # Flags
    "00ee3401"  # Timeout: 0x0134ee00, bytes summed 0x00 + 0xee + 0x34 + 0x01 = 0x123: opcode 0x23 (ping)
    "0000"      # Reserved2
    "0c00"      # ParameterCount: 12
    "4200"      # ParameterOffset: 66
    "0000"      # DataCount
    "4e00"      # DataOffset: 78
    "01"        # SetupCount: 1
    "00"        # Reserved3
    "0e00"      # Setup[0]: SESSION_SETUP (0x0E)
)


def doublepulsar_ping(uid: int, tid: int) -> bytes:
    return smb1(Command.TRANSACTION2, DOUBLEPULSAR_PING_WORDS, b"\x00\x00\x00" + bytes(12), flags2=0xC007, uid=uid,
                tid=tid, mid=65)


def logged_on_ipc(s: Session) -> tuple[int, int, list[Output]]:
    """NEGOTIATE (legacy), anonymous logon and IPC$: (uid, tid, outputs)."""
    out = s.receive_data(NEGOTIATE_NTLM) + s.receive_data(legacy_logon())
    uid = decode_smb1(replies(out)[-1]).header.uid
    more = s.receive_data(tree_connect("\\\\HOST\\IPC$", uid))
    tid = decode_smb1(replies(more)[-1]).header.tid
    return uid, tid, out + more


# -- conversations ---------------------------------------------------------------------------


def test_nbss_session_request_keepalive_and_negative_response() -> None:
    s = session("netbios-ssn")
    request = encode_session_request(NetbiosName("*SMBSERVER", 0x20), NetbiosName("ATTACKER", 0x00))
    assert s.receive_data(request) == [Send(b"\x82\x00\x00\x00")]  # RFC 1002 4.3.3 POSITIVE SESSION RESPONSE
    assert s.receive_data(encode_keep_alive()) == []
    out = s.receive_data(encode_nbss(0x00, NEGOTIATE_NTLM[4:]))
    [reply] = replies(out, "nbss")
    assert isinstance(decode_smb1(reply).body, NegotiateResponse)

    bad = session("netbios-ssn")
    out = bad.receive_data(encode_nbss(0x81, b"\x20" + b"Z" * 32 + b"\x00" * 2))  # 'Z' is not a half-ASCII letter
    assert [type(o) for o in out] == [Emit, Send, Close]
    assert emits(out)[0].fields["kind"] == "malformed_nbss" and out[1] == Send(b"\x83\x00\x00\x01\x82")
    assert out[2] == Close("anomaly") and bad.closed and bad.receive_data(NEGOTIATE_NTLM) == []


def test_nbss_server_packet_types_from_a_client_end_the_session() -> None:
    out = session("netbios-ssn").receive_data(encode_nbss(0x82))
    assert emits(out)[0].fields["kind"] == "nbss_unexpected_type" and out[-1] == Close("anomaly")


def test_legacy_negotiate_draws_a_fresh_challenge_per_session() -> None:
    challenges = set()
    for seed in range(3):
        out = session(seed=seed).receive_data(NEGOTIATE_NTLM)
        [neg] = emits(out, "smb.negotiate")
        assert neg.fields == {"dialects": ["NT LM 0.12"], "dialect": "NT LM 0.12", "smb_version": 1,
                              "extended_security": False}
        body = decode_smb1(replies(out)[0]).body
        assert isinstance(body, NegotiateResponse) and len(body.challenge) == 8
        assert (body.domain_name, body.server_name) == (PERSONAS["win2000"].domain, PERSONAS["win2000"].host_name)
        assert body.system_time == 116_444_736_000_000_000 + int(CLOCK * 10_000_000)
        challenges.add(body.challenge)
    assert len(challenges) == 3


def test_legacy_logons_null_session_and_guest() -> None:
    s = session()
    s.receive_data(NEGOTIATE_NTLM)
    out = s.receive_data(legacy_logon())
    [ev] = emits(out, "smb.session_setup")
    assert ev.fields["auth"] == "anonymous" and ev.fields["native_os"] == "Windows 2000 2195"
    reply = decode_smb1(replies(out)[0])
    assert reply.header.uid == 2048 and isinstance(reply.body, SessionSetupAndXResponse)
    assert (reply.body.action, reply.body.native_os) == (0, "Windows 5.0")
    out = s.receive_data(legacy_logon("administrator", b"secret\x00"))
    [ev] = emits(out, "smb.session_setup")
    assert (ev.fields["auth"], ev.fields["user"], ev.fields["domain"]) == ("legacy", "administrator", "WORKGROUP")
    reply = decode_smb1(replies(out)[0])
    assert reply.header.uid == 2049 and isinstance(reply.body, SessionSetupAndXResponse)
    assert reply.body.action == 1  # guest


@pytest.mark.parametrize(("path", "status", "service"), [
    ("\\\\HOST\\IPC$", NtStatus.SUCCESS, "IPC"),
    ("\\\\HOST\\DECOY", NtStatus.SUCCESS, "A:"),
    ("\\\\HOST\\ADMIN$", NtStatus.ACCESS_DENIED, "?????"),
    ("\\\\HOST\\nothing", NtStatus.BAD_NETWORK_NAME, "?????"),
])
def test_tree_connect(path: str, status: int, service: str) -> None:
    s = session()
    path = path.replace("DECOY", PERSONAS["win2000"].decoy_share)
    s.receive_data(NEGOTIATE_NTLM)
    s.receive_data(legacy_logon())
    out = s.receive_data(tree_connect(path, 2048))
    [ev] = emits(out, "smb.tree_connect")
    assert ev.fields == {"path": path, "share": path.rsplit("\\", 1)[1].upper(), "service": service}
    reply = decode_smb1(replies(out)[0])
    assert reply.header.status == status
    if status == NtStatus.SUCCESS:
        assert isinstance(reply.body, TreeConnectAndXResponse) and reply.body.service == service
        assert reply.body.maximal_share_access is not None  # the extended form asked for (Flags 0x0008)


def test_requests_before_negotiate_and_bad_uid() -> None:
    out = session().receive_data(legacy_logon())
    assert emits(out)[0].fields["kind"] == "smb_protocol_order" and out[-1] == Close("anomaly")
    s = session()
    s.receive_data(NEGOTIATE_NTLM)
    out = s.receive_data(tree_connect("\\\\HOST\\IPC$", uid=77))
    assert decode_smb1(replies(out)[0]).header.status == NtStatus.SMB_BAD_UID


def test_ms17_010_peeknmpipe_probe_answers_unpatched() -> None:
    s = session()
    uid, tid, _ = logged_on_ipc(s)
    out = s.receive_data(smb1(Command.TRANSACTION, PEEK_NMPIPE_FID0_WORDS, PEEK_NMPIPE_FID0_DATA, flags2=0x4001,
                              uid=uid, tid=tid, mid=64))
    [attempt] = emits(out, "exploit.attempt")
    assert (attempt.fields["vuln"], attempt.fields["kind"], attempt.fields["detector"]) == (
        "MS17-010", "probe", "ms17_010.peeknmpipe_fid0")
    reply = decode_smb1(replies(out)[0])
    assert (reply.header.command, reply.header.status, reply.header.mid) == (
        Command.TRANSACTION, NtStatus.INSUFF_SERVER_RESOURCES, 64)


def test_doublepulsar_ping_answers_uninfected() -> None:
    s = session()
    uid, tid, _ = logged_on_ipc(s)
    out = s.receive_data(doublepulsar_ping(uid, tid))
    [attempt] = emits(out, "exploit.attempt")
    assert attempt.fields["detector"] == "doublepulsar.ping" and attempt.fields["kind"] == "probe"
    assert attempt.fields["evidence"]["opcode"] == 0x23 and attempt.fields["evidence"]["timeout"] == 0x0134EE00
    reply = decode_smb1(replies(out)[0])
    # An implant answers MID + 16 (81); an uninfected Windows keeps 65 and says NOT_IMPLEMENTED.
    assert (reply.header.status, reply.header.mid) == (NtStatus.NOT_IMPLEMENTED, 65)


def test_echo_unknown_command_and_logoff() -> None:
    s = session()
    uid, tid, _ = logged_on_ipc(s)
    out = s.receive_data(smb1(Command.ECHO, struct.pack("<H", 2), b"ping", uid=uid, tid=tid, mid=9))
    assert [decode_smb1(r).body.sequence_number for r in replies(out)] == [1, 2]  # type: ignore[attr-defined]
    out = s.receive_data(smb1(0x9C, b"", b"", uid=uid, tid=tid, mid=10))  # not an SMB1 command at all
    assert decode_smb1(replies(out)[0]).header.status == NtStatus.SMB_BAD_COMMAND
    out = s.receive_data(smb1(Command.QUERY_INFORMATION_DISK, b"", b"", uid=uid, tid=tid, mid=11))
    assert decode_smb1(replies(out)[0]).header.status == NtStatus.NOT_IMPLEMENTED
    out = s.receive_data(smb1(Command.TREE_DISCONNECT, uid=uid, tid=tid, mid=12))
    assert decode_smb1(replies(out)[0]).header.status == NtStatus.SUCCESS
    out = s.receive_data(smb1(Command.LOGOFF_ANDX, struct.pack("<BBH", 0xFF, 0, 0), uid=uid, mid=13))
    assert decode_smb1(replies(out)[0]).header.status == NtStatus.SUCCESS
    out = s.receive_data(tree_connect("\\\\HOST\\IPC$", uid))
    assert decode_smb1(replies(out)[0]).header.status == NtStatus.SMB_BAD_UID


def test_smb2_to_an_smb1_only_persona_is_dropped_like_windows_2000() -> None:
    neg = bytes.fromhex("fe534d42" "4000" "0000" "00000000" "0000" "0000" "00000000" "00000000"
                        "0000000000000000" "00000000" "00000000" "0000000000000000" + "00" * 16)
    body = struct.pack("<HHHHI16sQ", 36, 2, 1, 0, 0, bytes(16), 0) + struct.pack("<HH", 0x0202, 0x0210)
    out = session("smb", "winxp").receive_data(encode_direct_tcp(neg + body))
    assert [e.event for e in emits(out)] == ["smb.negotiate", "session.anomaly"]
    assert emits(out)[0].fields["dialects"] == ["0x0202", "0x0210"] and emits(out)[0].fields["dialect"] == ""
    assert emits(out)[1].fields["kind"] == "smb2_unsupported" and out[-1] == Close("anomaly")
    assert not any(isinstance(o, Send) for o in out)


def test_malformed_frames_and_limits() -> None:
    out = session().receive_data(b"\x01\x00\x00\x10" + bytes(16))
    assert emits(out)[0].fields["kind"] == "malformed_smb" and out[-1] == Close("anomaly")
    out = session().receive_data(encode_direct_tcp(b"\x00SMB" + bytes(40)))
    assert emits(out)[0].fields["kind"] == "malformed_smb" and out[-1] == Close("anomaly")
    out = session(limits=SessionLimits(max_frame=1024)).receive_data(b"\x00\x00\x08\x00")
    anomaly = emits(out)[0]
    assert anomaly.fields["kind"] == "max_frame" and out[-1] == Close("limit")
    # A truncated SESSION_SETUP inside a complete frame is the codec's MalformedMessage.
    s = session()
    s.receive_data(NEGOTIATE_NTLM)
    out = s.receive_data(encode_direct_tcp(legacy_logon()[4:40]))
    anomaly = emits(out)[0]
    assert anomaly.fields["kind"] == "malformed_smb1" and anomaly.fields["field"] and out[-1] == Close("anomaly")


def test_request_and_open_file_limits() -> None:
    s = session(limits=SessionLimits(max_requests=3))
    out = s.receive_data(NEGOTIATE_NTLM + legacy_logon() + tree_connect("\\\\H\\IPC$", 2048) + NEGOTIATE_NTLM)
    assert emits(out)[-1].fields["kind"] == "max_requests" and out[-1] == Close("limit")
    s = session(limits=SessionLimits(max_open_files=2))
    uid, tid, _ = logged_on_ipc(s)
    out = []
    for mid in range(3):
        out += s.receive_data(nt_create("\\srvsvc", uid, tid, mid))
    assert [e.event for e in emits(out)] == ["smb.pipe_open", "smb.pipe_open", "session.anomaly"]
    assert emits(out)[-1].fields["kind"] == "max_open_files" and out[-1] == Close("limit")


def nt_create(name: str, uid: int, tid: int, mid: int = 5) -> bytes:
    raw = name.encode("utf-16-le") + b"\x00\x00"
    words = struct.pack("<BBHBHIIIQIIIIIB", 0xFF, 0, 0, 0, len(raw), 0x16, 0, 0x2019F, 0, 0x80, 3, 1, 0x40, 2, 0)
    return smb1(Command.NT_CREATE_ANDX, words, b"\x00" + raw, flags2=0xC001, uid=uid, tid=tid, mid=mid)


def test_unknown_pipe_and_disk_share_opens() -> None:
    s = session()
    uid, tid, _ = logged_on_ipc(s)
    out = s.receive_data(nt_create("\\nosuchpipe", uid, tid))
    assert decode_smb1(replies(out)[0]).header.status == NtStatus.OBJECT_NAME_NOT_FOUND
    out = s.receive_data(tree_connect(f"\\\\H\\{PERSONAS['win2000'].decoy_share}", uid))
    disk = decode_smb1(replies(out)[0]).header.tid
    out = s.receive_data(nt_create("\\secrets.txt", uid, disk))
    assert decode_smb1(replies(out)[0]).header.status == NtStatus.OBJECT_NAME_NOT_FOUND
    assert not emits(out, "smb.pipe_open")


# -- TCP 135 ---------------------------------------------------------------------------------


def test_epmapper_on_135_and_ms03_026() -> None:
    s = session("dcerpc")
    bind = build_bind(1, [ctx_elem(0, EPMAPPER.syntax), ctx_elem(1, SyntaxId(SRVSVC.uuid, 3, 0)),
                          ctx_elem(2, IREMOTEACTIVATION.syntax)], max_recv_frag=5840)
    out = s.receive_data(bind)
    ack = parse_pdu(b"".join(o.data for o in out if isinstance(o, Send)))
    assert isinstance(ack, BindAck) and [r.result for r in ack.results] == [0, 2, 0]  # srvsvc is not on 135
    assert ack.secondary_address == "135"
    assert [e.fields["accepted"] for e in emits(out, "dcerpc.bind")] == [True, False, True]
    # ept_map of some interface: nothing registered
    tower = epm_tower(SRVSVC.syntax)
    stub = struct.pack("<I", 1) + bytes(16) + struct.pack("<II", 0x20000, len(tower)) + struct.pack(
        "<I", len(tower)) + tower + b"\x00" * (-len(tower) % 4) + bytes(20) + struct.pack("<I", 4)
    out = s.receive_data(build_request(2, 0, 3, stub))
    resp = parse_pdu(b"".join(o.data for o in out if isinstance(o, Send)))
    assert isinstance(resp, Response) and struct.unpack_from("<I", resp.stub, len(resp.stub) - 4)[0] == \
        EPT_S_NOT_REGISTERED
    # RemoteActivation with Blaster's over-long server name: MS03-026, then a fault
    out = s.receive_data(build_request(3, 2, 0, remote_activation_stub("\\\\" + "\u9090" * 40 + "\\file")))
    [attempt] = emits(out, "exploit.attempt")
    assert (attempt.fields["vuln"], attempt.fields["kind"]) == ("MS03-026", "exploit") and attempt.payload
    fault = parse_pdu(b"".join(o.data for o in out if isinstance(o, Send)))
    assert isinstance(fault, Fault)


def ctx_elem(cid: int, syntax: SyntaxId) -> Any:
    from stormwatch.protocols.dcerpc.pdu import ContextElem
    return ContextElem(cid, syntax, (NDR,))


def epm_tower(syntax: SyntaxId) -> bytes:
    """[C706] appendix L: a two-floor tower (interface and transfer syntax)."""
    def floor(s: SyntaxId) -> bytes:
        lhs = b"\x0d" + s.uuid.bytes_le + struct.pack("<H", s.major)
        return struct.pack("<H", len(lhs)) + lhs + struct.pack("<HH", 2, s.minor)
    return struct.pack("<H", 2) + floor(syntax) + floor(NDR)


def remote_activation_stub(name: str) -> bytes:
    """IActivation::RemoteActivation in arguments ([MS-DCOM] 3.1.2.5.2.3.1) with ``name`` as
    pwszObjectName, the argument Blaster overflows."""
    raw = name.encode("utf-16-le") + b"\x00\x00"
    n = len(raw) // 2
    stub = struct.pack("<HHII", 5, 6, 0, 0) + bytes(16) + struct.pack("<I", 0)  # ORPCTHIS, no extensions
    stub += bytes(16)  # Clsid
    stub += struct.pack("<IIII", 0x20000, n, 0, n) + raw + b"\x00" * (-len(raw) % 4)  # pwszObjectName
    stub += struct.pack("<I", 0)  # pObjectStorage NULL
    stub += struct.pack("<III", 2, 0, 1)  # ClientImpLevel, Mode, Interfaces
    stub += struct.pack("<II", 0x20004, 1) + bytes(16)  # pIIDs
    stub += struct.pack("<HH", 1, 0) + struct.pack("<IH", 1, 7)  # cRequestedProtseqs, protseqs
    return stub


# -- the name service ------------------------------------------------------------------------


def test_nbns_name_query_and_node_status() -> None:
    p = PERSONAS["win2000"]
    out, reply = nbns_answer(encode_name_query(0x1234, NetbiosName(p.host_name, 0x20)), p, "192.0.2.7")
    assert emits(out)[0].fields == {"name": f"{p.host_name}<20>", "qtype": "NB"}
    assert reply is not None and reply.endswith(bytes([192, 0, 2, 7]))
    assert decode_name_packet(reply).trn_id == 0x1234
    out, reply = nbns_answer(encode_name_query(7, NetbiosName("*"), node_status=True), p, "192.0.2.7")
    assert emits(out)[0].fields["qtype"] == "NBSTAT" and reply is not None
    assert p.mac_bytes in reply and p.host_name.encode() in reply and p.domain.encode() in reply
    out, reply = nbns_answer(encode_name_query(8, NetbiosName("OTHER"), broadcast=True), p, "192.0.2.7")
    assert reply is None and emits(out, "nbns.query")
    out, reply = nbns_answer(encode_name_query(9, NetbiosName("OTHER")), p, "192.0.2.7")
    assert reply is not None and decode_name_packet(reply).rcode == 3  # unicast: NAM_ERR
    out, reply = nbns_answer(encode_name_query(10, NetbiosName(p.host_name)), p, "0.0.0.0")
    assert reply is None  # a wildcard-bound sensor that does not know its address announces nothing
    out, reply = nbns_answer(b"\x00\x01\x02", p, "192.0.2.7")
    assert reply is None and emits(out)[0].fields["kind"] == "malformed_nbns"


# -- impacket against the session ------------------------------------------------------------


class LoopbackServer:
    """The session behind a socket on 127.0.0.1, as the test's only transport: accept, recv →
    receive_data → send; close on Close. Records every connection's client bytes and events."""

    def __init__(self, service: str, persona: Persona) -> None:
        self.service, self.persona = service, persona
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.events: list[Emit] = []
        self.streams: list[bytearray] = []
        self.errors: list[BaseException] = []
        self.conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        s = Session(self.service, self.persona, SessionLimits(), random.Random(7), lambda: CLOCK)
        stream = bytearray()
        self.streams.append(stream)
        try:
            while (data := conn.recv(65536)):
                stream += data
                for o in s.receive_data(data):
                    if isinstance(o, Send):
                        conn.sendall(o.data)
                    elif isinstance(o, Emit):
                        with self._lock:
                            self.events.append(o)
                    else:
                        return
        except OSError:
            pass
        except Exception as exc:  # noqa: BLE001 - a bug in the session: recorded, the fixture fails on it
            self.errors.append(exc)
        finally:
            s.connection_lost()
            conn.close()

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()

    def named(self, event: str) -> list[Emit]:
        with self._lock:
            return [e for e in self.events if e.event == event]


@pytest.fixture
def serve() -> Iterator[Callable[..., LoopbackServer]]:
    servers: list[LoopbackServer] = []

    def start(service: str = "smb", template: str = "win2000") -> LoopbackServer:
        srv = LoopbackServer(service, PERSONAS[template])
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.close()
        assert not srv.errors, srv.errors
        for e in srv.events:
            check_event(e)


def connect(srv: LoopbackServer, monkeypatch: pytest.MonkeyPatch, *, smb1_only: bool = True) -> SMBConnection:
    if srv.service == "netbios-ssn":  # impacket speaks NBSS only to the port it knows as 139
        monkeypatch.setattr(nmb, "NETBIOS_SESSION_PORT", srv.port)
    kwargs: dict[str, Any] = {"preferredDialect": smb.SMB_DIALECT} if smb1_only else {}
    return SMBConnection(srv.persona.host_name, "127.0.0.1", sess_port=srv.port, timeout=10, **kwargs)


def srvsvc(c: SMBConnection, srv: LoopbackServer, pipe: str = "\\srvsvc") -> Any:
    rpc = transport.SMBTransport("127.0.0.1", srv.port, pipe, smb_connection=c)
    dce = rpc.get_dce_rpc()
    dce.connect()
    dce.bind(srvs.MSRPC_UUID_SRVS)
    return dce


@pytest.mark.parametrize("service", ["smb", "netbios-ssn"])
@pytest.mark.parametrize("template", ["win2000", "winxp"])
def test_impacket_smb1_shares_and_server_info(serve: Any, monkeypatch: pytest.MonkeyPatch, service: str,
                                              template: str) -> None:
    srv = serve(service, template)
    c = connect(srv, monkeypatch)
    c.login("", "")
    assert c.getDialect() == smb.SMB_DIALECT and c.getServerOS() == srv.persona.os.native_os
    shares = [s["shi1_netname"].rstrip("\x00") for s in c.listShares()]
    assert shares == ["IPC$", srv.persona.decoy_share, "ADMIN$"]
    dce = srvsvc(c, srv)
    info = srvs.hNetrServerGetInfo(dce, 101)["InfoStruct"]["ServerInfo101"]
    assert info["sv101_name"].rstrip("\x00") == srv.persona.host_name
    assert (info["sv101_version_major"], info["sv101_version_minor"]) == (srv.persona.os.major, srv.persona.os.minor)
    r = srvs.hNetprPathCanonicalize(dce, "\\pagefile.sys\x00", "c:\x00", 50, 0, 0)
    assert b"".join(r["Outbuf"]).decode("utf-16-le").startswith("c:\\pagefile.sys")
    dce.disconnect()
    c.logoff()
    c.close()
    assert not srv.named("exploit.attempt")
    assert [e.fields["auth"] for e in srv.named("smb.session_setup")] == ["anonymous"]
    assert {e.fields["operation"] for e in srv.named("dcerpc.request")} == {
        "NetrShareEnum", "NetrServerGetInfo", "NetprPathCanonicalize"}


def test_impacket_ntlm_logon_with_credentials(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    srv = serve("smb", "winxp")
    c = connect(srv, monkeypatch)
    c.login("alice", "Passw0rd", "CORP")
    assert c.getServerName() == srv.persona.host_name and c.getServerDomain() == srv.persona.domain
    c.close()
    [ev] = srv.named("smb.session_setup")
    assert (ev.fields["auth"], ev.fields["user"], ev.fields["domain"], ev.fields["ntlm_version"]) == (
        "ntlmssp", "alice", "CORP", "v2")
    assert ev.fields["ntlm_flags"] & 0x1  # NEGOTIATE_UNICODE


def test_impacket_legacy_logon_without_extended_security(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    srv = serve("smb", "win2000")
    # impacket always asks for extended security; without the flag it does what nmap's first
    # session does: a legacy negotiate, the 8-byte challenge, and an LM/NTLM response logon.
    monkeypatch.setattr(smb.SMB, "FLAGS2_EXTENDED_SECURITY", 0)
    c = connect(srv, monkeypatch)
    c.login("bob", "hunter2")
    assert c.getServerOS() == "Windows 5.0" and c.getServerDomain() == srv.persona.domain
    c.close()
    [neg] = srv.named("smb.negotiate")
    assert neg.fields["extended_security"] is False
    [ev] = srv.named("smb.session_setup")
    assert (ev.fields["auth"], ev.fields["user"], ev.fields["ntlm_version"]) == ("legacy", "bob", "v1")


def test_impacket_transact_named_pipe(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    srv = serve("smb", "win2000")
    c = connect(srv, monkeypatch)
    c.login("", "")
    tid = c.connectTree("IPC$")
    fid = c.openFile(tid, "\\browser")
    bind = build_bind(1, [ctx_elem(0, SRVSVC.syntax)])
    answer = c.getSMBServer().TransactNamedPipe(tid, fid, bind, waitAnswer=True)
    ack = parse_pdu(answer)
    assert isinstance(ack, BindAck) and ack.results[0].result == 0 and ack.secondary_address == "\\PIPE\\browser"
    c.close()
    assert [e.fields["transport"] for e in srv.named("dcerpc.bind")] == ["pipe:browser"]


def ndr_string(raw: bytes) -> bytes:
    """A conformant varying wchar_t string from raw UTF-16 bytes (NUL included), padded to 4."""
    n = len(raw) // 2
    return struct.pack("<III", n, 0, n) + raw + b"\x00" * (-len(raw) % 4)


def ms06_040_stub(rng: random.Random) -> bytes:
    """Metasploit ms06_040_netapi, target 1 (Windows 2000): ServerName "" (unique), PathName of
    1000 bytes of NOPs and shellcode + 16 return addresses 0x00020804 + NUL (533 units, raw bytes,
    not text), OutbufLen 1-250, Prefix U+02EB, PathType 1-250, Flags 0."""
    bad = {0x00, 0x0A, 0x0D, 0x5C, 0x5F, 0x2F, 0x2E}
    shellcode = bytes(rng.choice([b for b in range(256) if b not in bad]) for _ in range(370))
    path = (b"\x90" * (1000 - len(shellcode)) + shellcode + struct.pack("<I", 0x00020804) * 16 + b"\x00\x00")
    return (struct.pack("<I", rng.getrandbits(32)) + ndr_string(b"\x00\x00") + ndr_string(path)
            + struct.pack("<I", rng.randint(1, 250)) + ndr_string(b"\xeb\x02\x00\x00")
            + struct.pack("<II", rng.randint(1, 250), 0))


def ms08_067_stub(rng: random.Random) -> bytes:
    """Metasploit ms08_067_netapi: a random server name, the path "\\" + 100 alpha bytes + payload
    + UTF-16 "\\..\\..\\" + 7 letters + return addresses, Prefix "\\", PathType 0x1001."""
    alpha = bytes(rng.randint(0x41, 0x5A) for _ in range(100))
    payload = bytes(rng.randint(0x80, 0xFF) for _ in range(408))
    path = ("\\".encode("utf-16-le") + alpha + payload + "\\..\\..\\".encode("utf-16-le")
            + "ABCDEFG".encode("utf-16-le") + struct.pack("<I", 0x00020408) * 8 + b"\xeb\x62" * 35 + b"\x00\x00")
    server = "XYZ\x00".encode("utf-16-le")
    return (struct.pack("<I", 0x20000) + ndr_string(server) + ndr_string(path)
            + struct.pack("<I", rng.randint(0, 1023)) + ndr_string("\\\x00".encode("utf-16-le"))
            + struct.pack("<II", 0x1001, 0))


@pytest.mark.parametrize("service", ["smb", "netbios-ssn"])
@pytest.mark.parametrize("pipe", ["\\browser", "\\srvsvc"])
def test_ms06_040_over_the_pipe(serve: Any, monkeypatch: pytest.MonkeyPatch, service: str, pipe: str) -> None:
    srv = serve(service, "win2000")
    c = connect(srv, monkeypatch)
    c.login("", "")
    dce = srvsvc(c, srv, pipe)
    stub = ms06_040_stub(random.Random(40))
    dce.call(0x1F, stub)  # Metasploit does not wait for an answer, and sends the call twice
    dce.call(0x1F, stub)
    c.close()
    attempts = srv.named("exploit.attempt")
    assert [(a.fields["vuln"], a.fields["kind"]) for a in attempts] == [("MS06-040", "exploit")] * 2
    assert attempts[0].fields["evidence"]["path_units"] == 533 and attempts[0].payload is not None
    assert [e.fields["transport"] for e in srv.named("dcerpc.request")] == [f"pipe:{pipe[1:]}"] * 2


def test_ms08_067_over_browser_and_its_check(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    srv = serve("smb", "winxp")
    c = connect(srv, monkeypatch)
    c.login("", "")
    dce = srvsvc(c, srv, "\\browser")
    # nmap smb-vuln-ms08-067: NetprPathCompare("\\" + 39*"A" + "\\..\\n", "\\n"): 0 reads "vulnerable"
    r = srvs.hNetprPathCompare(dce, "\\" + "A" * 39 + "\\..\\n\x00", "\\n\x00", 1, 0)
    assert r["ErrorCode"] == 0
    dce.call(0x1F, ms08_067_stub(random.Random(67)))
    c.close()
    kinds = [(a.fields["vuln"], a.fields["kind"]) for a in srv.named("exploit.attempt")]
    assert kinds == [("MS08-067", "probe"), ("MS08-067", "exploit")]


@pytest.mark.parametrize("service", ["smb", "netbios-ssn"])
def test_impacket_smb2_against_windows_7(serve: Any, monkeypatch: pytest.MonkeyPatch, service: str) -> None:
    srv = serve(service, "win7")
    c = connect(srv, monkeypatch, smb1_only=False)
    c.login("", "")
    assert c.getDialect() in (0x0202, 0x0210)
    shares = [s["shi1_netname"].rstrip("\x00") for s in c.listShares()]
    assert shares == ["IPC$", srv.persona.decoy_share, "ADMIN$"]
    dce = srvsvc(c, srv)
    assert srvs.hNetrServerGetInfo(dce, 101)["InfoStruct"]["ServerInfo101"]["sv101_version_major"] == 6
    dce.disconnect()
    # FSCTL_PIPE_TRANSCEIVE carries one PDU in, its answer out
    tid = c.connectTree("IPC$")
    fid = c.openFile(tid, "\\srvsvc")
    out = c.getSMBServer().ioctl(tid, fid, 0x0011C017, 1, build_bind(9, [ctx_elem(0, SRVSVC.syntax)]), 0, 4280)
    assert isinstance(parse_pdu(out), BindAck)
    with pytest.raises(Exception, match="BAD_NETWORK_NAME"):
        c.connectTree("NOSUCH")
    c.logoff()
    c.close()
    negotiates = srv.named("smb.negotiate")
    assert all(e.fields["smb_version"] == 2 for e in negotiates) and not srv.named("exploit.attempt")
    assert {e.fields["share"] for e in srv.named("smb.tree_connect")} == {"IPC$", "NOSUCH"}


def test_impacket_smb2_user_logon_and_ms06_040(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    srv = serve("smb", "win7")
    c = connect(srv, monkeypatch, smb1_only=False)
    c.login("mallory", "x", "EVIL")
    dce = srvsvc(c, srv, "\\browser")
    dce.call(0x1F, ms06_040_stub(random.Random(1)))
    c.close()
    [ev] = srv.named("smb.session_setup")
    assert (ev.fields["user"], ev.fields["domain"], ev.fields["auth"]) == ("mallory", "EVIL", "ntlmssp")
    assert [a.fields["vuln"] for a in srv.named("exploit.attempt")] == ["MS06-040"]


# -- whole sessions under hypothesis ---------------------------------------------------------


@functools.cache
def conversations() -> list[tuple[str, str, bytes]]:
    """(service, persona, client bytes) of real client conversations: impacket's, recorded once
    against the session (which is deterministic, so the replay meets the same answers)."""
    out: list[tuple[str, str, bytes]] = []
    for service, template, smb1_only in (("smb", "win2000", True), ("smb", "win7", False),
                                         ("netbios-ssn", "winxp", True)):
        srv = LoopbackServer(service, PERSONAS[template])
        port_139 = nmb.NETBIOS_SESSION_PORT
        try:
            if service == "netbios-ssn":
                nmb.NETBIOS_SESSION_PORT = srv.port
            kwargs: dict[str, Any] = {"preferredDialect": smb.SMB_DIALECT} if smb1_only else {}
            c = SMBConnection(srv.persona.host_name, "127.0.0.1", sess_port=srv.port, timeout=10, **kwargs)
            c.login("", "")
            c.listShares()
            dce = srvsvc(c, srv, "\\browser")
            dce.call(0x1F, ms06_040_stub(random.Random(2)))
            c.close()
        finally:
            nmb.NETBIOS_SESSION_PORT = port_139
            srv.close()
        out += [(service, template, bytes(s)) for s in srv.streams if s]
    return out



def _run(service: str, template: str, chunks: list[bytes]) -> list[Output]:
    s = session(service, template)
    out: list[Output] = []
    for chunk in chunks:
        out += s.receive_data(chunk)
    return out


def _merge_sends(outputs: list[Output]) -> list[Output]:
    """Consecutive Sends joined: how bytes are grouped into writes is not part of the contract."""
    merged: list[Output] = []
    for o in outputs:
        if isinstance(o, Send) and merged and isinstance(merged[-1], Send):
            merged[-1] = Send(merged[-1].data + o.data)
        else:
            merged.append(o)
    return merged


def test_recorded_conversations_are_complete() -> None:
    assert len(conversations()) >= 3
    for service, template, stream in conversations():
        out = _run(service, template, [stream])
        assert not any(isinstance(o, Close) for o in out)
        assert emits(out, "dcerpc.request") and emits(out, "exploit.attempt")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), cuts=st.lists(st.integers(0, 1 << 16), max_size=40))
def test_any_split_gives_the_same_outputs(data: st.DataObject, cuts: list[int]) -> None:
    service, template, stream = data.draw(st.sampled_from(conversations()))
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert _merge_sends(_run(service, template, chunks)) == _merge_sends(_run(service, template, [stream]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(template=st.sampled_from(sorted(PERSONAS)), negotiate=st.sampled_from([NEGOTIATE_NTLM, NEGOTIATE_EXT]),
       junk=st.binary(max_size=600))
def test_random_bytes_after_a_valid_negotiate(template: str, negotiate: bytes, junk: bytes) -> None:
    s = session("smb", template)
    out = s.receive_data(negotiate) + s.receive_data(junk) + s.receive_data(encode_direct_tcp(junk))
    out += s.connection_lost()
    for o in out:
        assert isinstance(o, Send | Emit | Close)
        if isinstance(o, Emit):
            check_event(o)
    assert sum(isinstance(o, Close) for o in out) <= 1


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_conversations_never_raise(data: st.DataObject) -> None:
    service, template, stream = data.draw(st.sampled_from(conversations()))
    raw = bytearray(stream)
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    out = _run(service, template, [bytes(raw)])
    for o in out:
        if isinstance(o, Emit):
            check_event(o)


@settings(max_examples=300, deadline=None)
@given(service=st.sampled_from(["smb", "netbios-ssn", "dcerpc"]), data=st.binary(max_size=300))
def test_raw_bytes_on_every_service(service: str, data: bytes) -> None:
    out = session(service, "win7").receive_data(data)
    assert all(isinstance(o, Send | Emit | Close) for o in out)


# -- benign real traffic ---------------------------------------------------------------------

#: Reference traces of benign SMB / DCE-RPC. smb-filename is left out on purpose: it carries
#: real EternalChampion and EternalBlue (see test_detect_ms17_010).
BENIGN = ["mapi.pcap", "smb1.pcap", "raw_ntlm_in_smb.pcap", "cs_window7-join_stream092.pcap",
          "dssetup_DsRoleGetPrimaryDomainInformation_standalone_workstation.cap",
          "smb1_transaction_request.pcap", "smb1_transaction2_request.pcap",
          "smb1_transaction_secondary_request.pcap", "smb1_transaction2_secondary_request.pcap",
          "suricata-verify-output-eve-smb-01/input.pcap", "suricata-verify-smb-named-pipe-ascii/input.pcap",
          "suricata-verify-smb1-02/smb1_osx.pcap"]
SERVICE_OF_PORT = {445: "smb", 139: "netbios-ssn", 135: "dcerpc"}


@pytest.mark.parametrize("trace", BENIGN)
def test_benign_traces_raise_no_exploit_attempt(shared_data: Path, trace: str) -> None:
    streams = tcp_payloads(shared_data / "pcap/smb-reference" / trace)
    served = 0
    for (_, _, _, dport), data in streams.items():
        # DCE/RPC on a dynamic port (the Windows 7 domain join) is served as on 135.
        service = SERVICE_OF_PORT.get(dport) or ("dcerpc" if data[:3] == b"\x05\x00\x0b" else None)
        if service is not None:
            for template in ("winxp", "win7"):
                out = session(service, template).receive_data(data)
                assert not emits(out, "exploit.attempt"), trace
                for e in emits(out):
                    check_event(e)
            served += 1
    assert served


def test_server_limits_defaults() -> None:
    limits = ServerLimits()
    assert (limits.max_sessions, limits.max_sessions_per_source, limits.idle_timeout, limits.max_session_time) == (
        20000, 64, 120.0, 600.0)


SMB1_COMMANDS = [Command.TRANSACTION, Command.TRANSACTION2, Command.NT_TRANSACT, Command.TRANSACTION_SECONDARY,
                 Command.TRANSACTION2_SECONDARY, Command.NT_TRANSACT_SECONDARY, Command.WRITE_ANDX,
                 Command.READ_ANDX, Command.NT_CREATE_ANDX, Command.CLOSE, Command.ECHO, Command.SESSION_SETUP_ANDX,
                 Command.TREE_CONNECT_ANDX, Command.TREE_DISCONNECT, Command.LOGOFF_ANDX, Command.NT_CANCEL, 0x9C]


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=st.lists(st.tuples(st.sampled_from(SMB1_COMMANDS), st.binary(max_size=60), st.binary(max_size=120),
                                   st.integers(0, 0xFFFF), st.booleans()), min_size=1, max_size=6))
def test_random_smb1_requests_in_a_logged_on_session(messages: list[tuple[int, bytes, bytes, int, bool]]) -> None:
    """Well-framed SMB1 requests with valid UID and TID but random parameters and data reach every
    handler; only Send / Emit / Close come out."""
    s = session()
    uid, tid, _ = logged_on_ipc(s)
    s.receive_data(nt_create("\\srvsvc", uid, tid))
    for command, words, data, mid, unicode in messages:
        words = words[: len(words) & ~1]
        out = s.receive_data(smb1(command, words, data, flags2=0xC001 if unicode else 0x4001, uid=uid, tid=tid,
                                  mid=mid))
        for o in out:
            if isinstance(o, Emit):
                check_event(o)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 40), st.binary(max_size=200)), min_size=1,
                      max_size=5))
def test_random_dcerpc_calls_on_135(calls: list[tuple[int, int, bytes]]) -> None:
    """Bound interfaces called with random opnums and stubs: decoders, detectors and answers."""
    s = session("dcerpc")
    s.receive_data(build_bind(1, [ctx_elem(0, EPMAPPER.syntax), ctx_elem(1, IREMOTEACTIVATION.syntax),
                                  ctx_elem(2, SRVSVC.syntax)]))
    for i, (context, opnum, stub) in enumerate(calls):
        for o in s.receive_data(build_request(i + 2, context, opnum, stub)):
            if isinstance(o, Emit):
                check_event(o)
            if isinstance(o, Send):
                assert parse_pdu(o.data).header.ptype in (PType.RESPONSE, PType.FAULT)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(opnum=st.sampled_from([15, 21, 31, 32, 34]), stub=st.binary(max_size=300))
def test_random_srvsvc_stubs_over_a_pipe(opnum: int, stub: bytes) -> None:
    s = session()
    uid, tid, _ = logged_on_ipc(s)
    out = s.receive_data(nt_create("\\srvsvc", uid, tid, mid=90))
    [opened] = emits(out, "smb.pipe_open")
    fid = opened.fields["fid"]
    for pdu in (build_bind(1, [ctx_elem(0, SRVSVC.syntax)]), build_request(2, 0, opnum, stub)):
        words = struct.pack("<BBHHIIHHHHHI", 0xFF, 0, 0, fid, 0, 0, 8, len(pdu), 0, len(pdu), 64, 0)
        out = s.receive_data(smb1(Command.WRITE_ANDX, words, b"\x00" + pdu, uid=uid, tid=tid, mid=91))
        assert decode_smb1(replies(out)[0]).header.status == NtStatus.SUCCESS
        read = struct.pack("<BBHHIHHIH", 0xFF, 0, 0, fid, 0, 4280, 4280, 0, 0)
        out = s.receive_data(smb1(Command.READ_ANDX, read, uid=uid, tid=tid, mid=92))
        for o in out:
            if isinstance(o, Emit):
                check_event(o)
        answer = decode_smb1(replies(out)[0]).body
        assert isinstance(answer, ReadAndXResponse)
        assert parse_pdu(answer.data).header.ptype in (PType.BIND_ACK, PType.RESPONSE, PType.FAULT)


def _smb2_logged_on() -> tuple[Session, int, int]:
    """A win7 session replayed from impacket's recorded SMB2 conversation up to its first tree:
    (session, SessionId, TreeId) as the session handed them out."""
    service, template, stream = next(c for c in conversations() if c[1] == "win7")
    s = session(service, template)
    for frame in DirectTcpFramer(1 << 20).feed(stream):
        out = s.receive_data(encode_direct_tcp(frame.payload))
        if emits(out, "smb.tree_connect"):
            [reply] = replies(out)
            session_id, tree_id = struct.unpack_from("<Q", reply, 40)[0], struct.unpack_from("<I", reply, 36)[0]
            return s, session_id, tree_id
    raise AssertionError("no tree connect in the recorded conversation")


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=st.lists(st.tuples(st.integers(0, 20), st.one_of(st.sampled_from([36, 25, 9, 4, 57, 24, 49]),
                                                                  st.integers(0, 0xFFFF)),
                                   st.binary(max_size=150)), min_size=1, max_size=5))
def test_random_smb2_requests_in_a_logged_on_session(messages: list[tuple[int, int, bytes]]) -> None:
    s, session_id, tree_id = _smb2_logged_on()
    for i, (command, size, body) in enumerate(messages):
        header = struct.pack("<4sHHIHHIIQIIQ16s", b"\xfeSMB", 64, 1, 0, command, 1, 0, 0, 100 + i, 0xFEFF, tree_id,
                             session_id, bytes(16))
        for o in s.receive_data(encode_direct_tcp(header + struct.pack("<H", size) + body)):
            assert isinstance(o, Send | Emit | Close)
            if isinstance(o, Emit):
                check_event(o)


@functools.cache
def _exploit_streams(root: Path) -> list[bytes]:
    streams = tcp_payloads(root / "pcap/exploits/metasploit-ms017-010-win7x64.pcap")
    champion = tcp_payloads(root / "pcap/exploits/eternalchampion.pcap")
    return [streams[("192.168.198.224", 37063, "192.168.198.225", 445)],
            champion[("10.1.75.167", 62340, "10.1.75.4", 445)]]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), cuts=st.lists(st.integers(0, 1 << 20), max_size=60))
def test_any_split_of_real_exploit_streams(shared_data: Path, data: st.DataObject, cuts: list[int]) -> None:
    stream = data.draw(st.sampled_from(_exploit_streams(shared_data)))
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    whole = _run("smb", "win7", [stream])
    assert emits(whole, "exploit.attempt")
    assert _merge_sends(_run("smb", "win7", chunks)) == _merge_sends(whole)
