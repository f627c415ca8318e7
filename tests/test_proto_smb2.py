"""SMB2/3 codec (stormwatch.protocols.smb2): vectors, impacket in both directions, a whole impacket
client session driven through the codecs, real captures checked against tshark, and fuzzing.

Captures (../shared/data, see SOURCES.md): Zeek's ``smb1.pcap`` (despite its name, SMB2 with
compounded CREATE/QUERY_INFO/CLOSE) and suricata-verify ``smb-filename`` (a Windows 7 client
that goes SMB1 multi-protocol -> SMB2 0x02FF -> SMB 2.1, Kerberos logon, IPC$, DFS IOCTL).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from impacket import smb3structs as s3
from impacket.smb3 import SMB3, SessionError
from impacket.spnego import SPNEGO_NegTokenResp

from capture_helpers import tcp_payloads
from stormwatch.protocols import ntlmssp, spnego
from stormwatch.protocols.errors import MalformedMessage, NeedMoreData, ProtocolError
from stormwatch.protocols.smb2 import (
    Cipher,
    Command,
    ContextType,
    Dialect,
    Header,
    NtStatus,
    ShareType,
    Unparsed,
    build_close_response,
    build_compound,
    build_create_response,
    build_empty,
    build_error,
    build_ioctl_response,
    build_message,
    build_negotiate_response,
    build_read_response,
    build_session_setup_response,
    build_tree_connect_response,
    build_write_response,
    files,
    multiprotocol_dialect,
    negotiate,
    parse_frame,
    parse_header,
    parse_message,
    response_contexts,
    response_header,
    select_dialect,
    session,
    split_compound,
)
from stormwatch.protocols.smb2.constants import FSCTL_PIPE_TRANSCEIVE, IOCTL_IS_FSCTL

SERVER_GUID = bytes.fromhex("0bff6538547e6c42a43e12d211971644")
NOW = 133_000_000_000_000_000  # a FILETIME (2022-06-18)


# ------------------------------------------------------------------------------------------ vectors
HEADER_SYNC = bytes.fromhex(
    "fe534d42"            # ProtocolId
    "4000"                # StructureSize 64
    "0100"                # CreditCharge 1
    "00000000"            # Status / ChannelSequence
    "0300"                # Command TREE_CONNECT
    "1f00"                # CreditRequest 31
    "00000000"            # Flags: request, sync
    "00000000"            # NextCommand
    "0300000000000000"    # MessageId 3
    "fffe0000"            # Reserved (ProcessId 0xfeff)
    "00000000"            # TreeId 0
    "1500000000100000"    # SessionId 0x0000100000000015
    "00000000000000000000000000000000"  # Signature
)
HEADER_ASYNC_PENDING = bytes.fromhex(
    "fe534d42"            # ProtocolId
    "4000"                # StructureSize 64
    "0000"                # CreditCharge
    "03010000"            # Status STATUS_PENDING
    "0b00"                # Command IOCTL
    "0100"                # CreditResponse 1
    "03000000"            # Flags SERVER_TO_REDIR | ASYNC_COMMAND
    "00000000"            # NextCommand
    "0700000000000000"    # MessageId 7
    "2a00000000000000"    # AsyncId 42
    "1500000000100000"    # SessionId
    "00000000000000000000000000000000"  # Signature
) + bytes.fromhex(
    "0900"                # ERROR StructureSize 9
    "00"                  # ErrorContextCount
    "00"                  # Reserved
    "00000000"            # ByteCount 0
    "00"                  # ErrorData: the one zero byte
)
NEGOTIATE_311_BODY = bytes.fromhex(
    "2400"                # StructureSize 36
    "0300"                # DialectCount 3
    "0100"                # SecurityMode SIGNING_ENABLED
    "0000"                # Reserved
    "7f000000"            # Capabilities
    "00112233445566778899aabbccddeeff"  # ClientGuid
    "70000000"            # NegotiateContextOffset 112 (from the header)
    "0300"                # NegotiateContextCount 3
    "0000"                # Reserved2
    "0202" "1002" "1103"  # Dialects 2.0.2, 2.1, 3.1.1
    "000000000000"        # Padding: the contexts start 8-byte aligned
    "0100" "2600" "00000000"  # context PREAUTH, DataLength 38
    "0100" "2000" "0100"  # HashAlgorithmCount 1, SaltLength 32, SHA-512
    + "ab" * 32 +         # Salt
    "0000"                # Padding to 8
    "0200" "0600" "00000000"  # context ENCRYPTION, DataLength 6
    "0200" "0200" "0100"  # CipherCount 2: AES-128-GCM, AES-128-CCM
    "0000"                # Padding to 8
    "0500" "0c00" "00000000"  # context NETNAME, DataLength 12
    + "Host10".encode("utf-16-le").hex()  # NetName (no terminator)
)


def test_header_vectors() -> None:
    h = parse_header(HEADER_SYNC)
    assert (h.command, h.credit_charge, h.credits, h.message_id, h.process_id, h.tree_id, h.session_id) == (
        Command.TREE_CONNECT, 1, 31, 3, 0xFEFF, 0, 0x0000100000000015)
    assert not h.is_response and not h.is_async and h.async_id is None
    assert h.pack() == HEADER_SYNC
    a = parse_header(HEADER_ASYNC_PENDING)
    assert a.is_async and a.is_response and a.async_id == 42 and a.tree_id == 0
    assert a.pack() == HEADER_ASYNC_PENDING[:64]
    m = parse_message(HEADER_ASYNC_PENDING)
    assert isinstance(m.body, session.ErrorResponse) and m.body.data == b"\x00"


def test_header_refuses_other_protocols() -> None:
    for magic, detail in ((b"\xfdSMB", "encrypted"), (b"\xfcSMB", "compressed"), (b"\xffSMB", "not")):
        with pytest.raises(MalformedMessage, match=detail):
            parse_header(magic + HEADER_SYNC[4:])
    with pytest.raises(MalformedMessage, match="StructureSize"):
        parse_header(HEADER_SYNC[:4] + b"\x41\x00" + HEADER_SYNC[6:])


def test_negotiate_311_vector() -> None:
    req = parse_message(HEADER_SYNC[:12] + b"\x00\x00" + HEADER_SYNC[14:] + NEGOTIATE_311_BODY).body
    assert isinstance(req, negotiate.NegotiateRequest)
    assert req.dialects == (0x0202, 0x0210, 0x0311)
    assert req.client_guid == bytes.fromhex("00112233445566778899aabbccddeeff")
    assert req.hash_algorithms == (1,) and req.salt == b"\xab" * 32
    assert req.ciphers == (Cipher.AES_128_GCM, Cipher.AES_128_CCM)
    assert req.netname == "Host10" and req.signing_algorithms is None
    assert [c.context_type for c in req.contexts] == [1, 2, 5]
    ctx = response_contexts(req, salt=b"\x5a" * 32, ciphers=(Cipher.AES_128_CCM, Cipher.AES_128_GCM))
    assert ctx is not None
    assert ctx[0].data == b"\x01\x00\x20\x00\x01\x00" + b"\x5a" * 32
    assert ctx[1] == negotiate.NegotiateContext(ContextType.ENCRYPTION_CAPABILITIES, b"\x01\x00\x01\x00")
    assert select_dialect(req.dialects, (0x0202, 0x0210, 0x0300)) == 0x0210
    assert select_dialect(req.dialects, (0x0300,)) is None


def test_unknown_negotiate_contexts_are_kept_and_skipped() -> None:
    contexts = (negotiate.NegotiateContext(0x7777, b"\x01\x02\x03"),  # unknown type, odd length
                negotiate.NegotiateContext(1, b"\x01\x00\x04\x00\x01\x00salt"),
                negotiate.NegotiateContext(8, b"\x02\x00\x02\x00\x01\x00"))  # SIGNING: GMAC, CMAC
    lst = contexts[0].pack() + bytes(5) + contexts[1].pack() + bytes(6) + contexts[2].pack()  # 8-aligned
    fixed = negotiate.NEGOTIATE_REQUEST.pack(36, 1, 1, 0, 0, bytes(16), 104, 3, 0)
    req = parse_message(Header(Command.NEGOTIATE).pack() + fixed + b"\x11\x03" + bytes(2) + lst).body
    assert isinstance(req, negotiate.NegotiateRequest)
    assert req.contexts == contexts and req.salt == b"salt" and req.signing_algorithms == (2, 1)
    out = response_contexts(req, salt=b"s" * 32)
    assert out is not None and [c.context_type for c in out] == [1, 8]
    assert out[1].data == b"\x01\x00\x01\x00"  # AES-CMAC: the server's first preference the client offered


def test_negotiate_without_preauth_overlap() -> None:
    req = negotiate.NegotiateRequest((0x0311,), 1, 0, bytes(16), None, hash_algorithms=(2,))
    assert response_contexts(req, salt=bytes(32)) is None
    assert response_contexts(negotiate.NegotiateRequest((0x0311,), 1, 0, bytes(16), None), salt=bytes(32)) is None


# --------------------------------------------------------------------------- impacket -> our parsers
def _impacket(command: int, body: Any, **hdr: Any) -> bytes:
    p = s3.SMB2Packet()
    p["Command"] = command
    p["MessageID"] = hdr.get("mid", 5)
    p["SessionID"] = hdr.get("sid", 0x44)
    p["TreeID"] = hdr.get("tid", 7)
    p["CreditRequestResponse"] = 31
    p["Data"] = body
    return bytes(p.getData())


def test_impacket_requests_decode() -> None:
    neg = s3.SMB2Negotiate()
    neg["Dialects"] = [0x0202, 0x0210, 0x0300]
    neg["DialectCount"] = 3
    neg["SecurityMode"] = 1
    neg["ClientGuid"] = b"G" * 16
    m = parse_message(_impacket(s3.SMB2_NEGOTIATE, neg, mid=0))
    assert isinstance(m.body, negotiate.NegotiateRequest)
    assert m.body.dialects == (0x0202, 0x0210, 0x0300) and m.body.client_guid == b"G" * 16
    assert (m.header.message_id, m.header.session_id, m.header.tree_id, m.header.credits) == (0, 0x44, 7, 31)

    tc = s3.SMB2TreeConnect()
    tc["Buffer"] = "\\\\10.0.0.1\\IPC$".encode("utf-16-le")
    tc["PathLength"] = len(tc["Buffer"])
    body = parse_message(_impacket(s3.SMB2_TREE_CONNECT, tc)).body
    assert isinstance(body, session.TreeConnectRequest)
    assert body.path == "\\\\10.0.0.1\\IPC$" and body.share == "IPC$"

    cr = s3.SMB2Create()
    cr["Buffer"] = "srvsvc".encode("utf-16-le")
    cr["NameLength"] = len(cr["Buffer"])
    cr["DesiredAccess"] = 0x0012019F
    cr["ImpersonationLevel"] = 2
    cr["CreateDisposition"] = 1
    body = parse_message(_impacket(s3.SMB2_CREATE, cr)).body
    assert isinstance(body, files.CreateRequest)
    assert (body.name, body.pipe_name, body.desired_access, body.contexts) == ("srvsvc", "srvsvc", 0x0012019F, ())

    fid = bytes(range(16))
    wr = s3.SMB2Write()
    wr["FileID"] = fid
    wr["Buffer"] = b"\x05\x00\x0b\x03bind"
    wr["Length"] = len(wr["Buffer"])
    body = parse_message(_impacket(s3.SMB2_WRITE, wr)).body
    assert body == files.WriteRequest(0, fid, 0, b"\x05\x00\x0b\x03bind")

    rd = s3.SMB2Read()
    rd["FileID"] = fid
    rd["Length"] = 4280
    rd["Padding"] = 0x50
    body = parse_message(_impacket(s3.SMB2_READ, rd)).body
    assert isinstance(body, files.ReadRequest) and (body.length, body.file_id) == (4280, fid)

    io = s3.SMB2Ioctl()
    io["FileID"] = fid
    io["CtlCode"] = FSCTL_PIPE_TRANSCEIVE
    io["Buffer"] = b"\x05\x00\x00\x03req"
    io["InputCount"] = len(io["Buffer"])
    io["MaxOutputResponse"] = 1024
    io["Flags"] = IOCTL_IS_FSCTL
    body = parse_message(_impacket(s3.SMB2_IOCTL, io)).body
    assert isinstance(body, files.IoctlRequest)
    assert (body.ctl_code, body.input, body.max_output_response, body.flags) == (
        FSCTL_PIPE_TRANSCEIVE, b"\x05\x00\x00\x03req", 1024, 1)

    cl = s3.SMB2Close()
    cl["FileID"] = fid
    assert parse_message(_impacket(s3.SMB2_CLOSE, cl)).body == files.CloseRequest(0, fid)
    for cmd, cls in ((s3.SMB2_ECHO, s3.SMB2Echo), (s3.SMB2_LOGOFF, s3.SMB2Logoff),
                     (s3.SMB2_TREE_DISCONNECT, s3.SMB2TreeDisconnect)):
        assert parse_message(_impacket(cmd, cls())).body == session.EmptyBody(cmd)

    ss = s3.SMB2SessionSetup()
    ss["Buffer"] = spnego.build_neg_token_init(mech_token=ntlmssp.build_negotiate(0xE0088297), hint_name=None)
    ss["SecurityBufferLength"] = len(ss["Buffer"])
    ss["SecurityMode"] = 1
    body = parse_message(_impacket(s3.SMB2_SESSION_SETUP, ss)).body
    assert isinstance(body, session.SessionSetupRequest)
    blob = spnego.parse_security_blob(body.security_buffer)
    assert blob.ntlm is not None and ntlmssp.parse_negotiate(blob.ntlm).flags == 0xE0088297


# --------------------------------------------------------------------------- our builders -> impacket
def _response(command: int, body: bytes, status: int = 0, **ids: int) -> s3.SMB2Packet:
    req = Header(command, message_id=9, session_id=ids.get("sid", 0), tree_id=ids.get("tid", 0), credits=10)
    hdr = response_header(req, status=status, credits=10, session_id=ids.get("sid"), tree_id=ids.get("tid"))
    pkt = s3.SMB2Packet(build_message(hdr, body))
    assert (pkt["MessageID"], pkt["Status"], pkt["Flags"] & 1, pkt["CreditRequestResponse"]) == (9, status, 1, 10)
    return pkt


def test_builders_parse_in_impacket() -> None:
    hint = spnego.build_neg_token_init_hint()
    body = build_negotiate_response(dialect=0x0210, server_guid=SERVER_GUID, system_time=NOW, security_buffer=hint,
                                    capabilities=0x7, max_read_size=0x100000)
    r = s3.SMB2Negotiate_Response(_response(Command.NEGOTIATE, body)["Data"])
    assert (r["DialectRevision"], r["ServerGuid"], r["SystemTime"], r["Buffer"], r["Capabilities"],
            r["MaxReadSize"]) == (0x0210, SERVER_GUID, NOW, hint, 7, 0x100000)

    challenge = ntlmssp.build_challenge(0xE2088297, b"\x01" * 8, ntlmssp.ServerIdentity("SRV", "WG"))
    body = build_session_setup_response(spnego.accept_incomplete(challenge))
    pkt = _response(Command.SESSION_SETUP, body, NtStatus.MORE_PROCESSING_REQUIRED, sid=0x10000041)
    assert pkt["SessionID"] == 0x10000041
    ss = s3.SMB2SessionSetup_Response(pkt["Data"])
    assert SPNEGO_NegTokenResp(ss["Buffer"])["ResponseToken"] == challenge

    tc = s3.SMB2TreeConnect_Response(_response(Command.TREE_CONNECT, build_tree_connect_response(), tid=5)["Data"])
    assert (tc["ShareType"], tc["ShareFlags"], tc["MaximalAccess"]) == (ShareType.PIPE, 0x30, 0x011F01FF)

    fid = bytes(range(16))
    cr = s3.SMB2Create_Response(_response(Command.CREATE, build_create_response(fid))["Data"])
    assert (cr["FileID"].getData(), cr["CreateAction"], cr["AllocationSize"]) == (fid, 1, 4096)
    rd = s3.SMB2Read_Response(_response(Command.READ, build_read_response(b"\x05\x00\x02\x03ack"))["Data"])
    assert rd["Buffer"] == b"\x05\x00\x02\x03ack" and rd["DataRemaining"] == 0
    assert s3.SMB2Write_Response(_response(Command.WRITE, build_write_response(72))["Data"])["Count"] == 72
    io = s3.SMB2Ioctl_Response(_response(Command.IOCTL, build_ioctl_response(FSCTL_PIPE_TRANSCEIVE, fid, b"out"))[
        "Data"])
    assert (io["CtlCode"], io["FileID"].getData(), io["Buffer"]) == (FSCTL_PIPE_TRANSCEIVE, fid, b"out")
    cl = s3.SMB2Close_Response(_response(Command.CLOSE, build_close_response())["Data"])
    assert cl["StructureSize"] == 60
    # impacket reads a failure from the header status alone (its SMB2Error cannot parse a real one)
    err = _response(Command.CREATE, build_error(), NtStatus.OBJECT_NAME_NOT_FOUND)
    with pytest.raises(SessionError) as caught:
        err.isValidAnswer(0)
    assert caught.value.get_error_code() == NtStatus.OBJECT_NAME_NOT_FOUND
    assert err["Data"] == bytes.fromhex("0900" "00" "00" "00000000" "00")  # size 9, no contexts, ByteCount 0, one byte
    assert s3.SMB2Echo(_response(Command.ECHO, build_empty())["Data"])["StructureSize"] == 4


def test_builders_round_trip_through_our_parsers() -> None:
    ctx = (negotiate.NegotiateContext(1, b"\x01\x00\x20\x00\x01\x00" + bytes(32)),
           negotiate.NegotiateContext(2, b"\x01\x00\x02\x00"))
    body = build_negotiate_response(dialect=0x0311, server_guid=SERVER_GUID, system_time=NOW,
                                    security_buffer=spnego.build_neg_token_init_hint(), contexts=ctx)
    m = parse_message(build_message(response_header(Header(0)), body))
    assert isinstance(m.body, negotiate.NegotiateResponse) and m.body.contexts == ctx
    fid = b"F" * 16
    cases: list[tuple[int, bytes, int, object]] = [
        (Command.SESSION_SETUP, build_session_setup_response(b"tok", 1), NtStatus.MORE_PROCESSING_REQUIRED,
         session.SessionSetupResponse(1, b"tok")),
        (Command.TREE_CONNECT, build_tree_connect_response(ShareType.DISK, share_flags=0, maximal_access=0x1F01FF),
         0, session.TreeConnectResponse(1, 0, 0, 0x1F01FF)),
        (Command.CREATE, build_create_response(fid, end_of_file=9), 0, files.CreateResponse(0, 1, 0x80, 9, fid)),
        (Command.READ, build_read_response(b"abc", 5), NtStatus.BUFFER_OVERFLOW, files.ReadResponse(b"abc", 5)),
        (Command.WRITE, build_write_response(3), 0, files.WriteResponse(3)),
        (Command.IOCTL, build_ioctl_response(1, fid, b""), 0, files.IoctlResponse(1, fid, b"")),
        (Command.CLOSE, build_close_response(), 0, files.CloseResponse(0, 0, 0)),
        (Command.LOGOFF, build_empty(), 0, session.EmptyBody(Command.LOGOFF)),
        (Command.TREE_CONNECT, build_error(), NtStatus.BAD_NETWORK_NAME, session.ErrorResponse(0, b"\x00")),
        (Command.SESSION_SETUP, build_error(), NtStatus.LOGON_FAILURE, session.ErrorResponse(0, b"\x00")),
    ]
    for command, body, status, expected in cases:
        got = parse_message(build_message(response_header(Header(command), status=status), body)).body
        assert got == expected, command


# ------------------------------------------------------------------------------------ compounding
def test_compound_round_trip_and_limits() -> None:
    parts = [build_message(Header(Command.ECHO, message_id=i), build_empty() + b"x" * i) for i in range(3)]
    frame = build_compound(parts)
    msgs = split_compound(frame)
    assert [parse_header(m).message_id for m in msgs] == [0, 1, 2]
    assert [len(m) for m in msgs] == [72, 72, 70]  # 68 and 69 padded to 8; the last not padded
    with pytest.raises(MalformedMessage, match="more than 2"):
        split_compound(frame, max_messages=2)
    bad = frame[:20] + (10).to_bytes(4, "little") + frame[24:]
    with pytest.raises(MalformedMessage, match="inside the header"):
        split_compound(bad)
    with pytest.raises(NeedMoreData):
        split_compound(frame[:100])


# ------------------------------------------------------------------ multi-protocol (SMB1 -> SMB2)
WIN7_SMB1_DIALECTS = ("PC NETWORK PROGRAM 1.0", "LANMAN1.0", "Windows for Workgroups 3.1a", "LM1.2X002",
                      "LANMAN2.1", "NT LM 0.12", "SMB 2.002", "SMB 2.???")


def test_multiprotocol_dialect_choice() -> None:
    assert multiprotocol_dialect(WIN7_SMB1_DIALECTS, (0x0202, 0x0210)) == 0x02FF
    assert multiprotocol_dialect(WIN7_SMB1_DIALECTS, (0x0202,)) == 0x0202
    assert multiprotocol_dialect(WIN7_SMB1_DIALECTS, ()) is None  # an XP persona stays SMB1
    assert multiprotocol_dialect(("NT LM 0.12", "SMB 2.002"), (0x0202, 0x0311)) == 0x0202
    assert multiprotocol_dialect(("NT LM 0.12",), (0x0202, 0x0311)) is None


# -------------------------------------------------------------------------------- capture helpers
def session_frames(stream: bytes) -> list[bytes]:
    """NBSS / direct-TCP session-message payloads (both framings share the 4-byte header shape)."""
    out, off = [], 0
    while off + 4 <= len(stream):
        length = int.from_bytes(stream[off + 1:off + 4], "big") & 0x1FFFF
        if off + 4 + length > len(stream):
            break
        if stream[off] == 0:
            out.append(stream[off + 4:off + 4 + length])
        off += 4 + length
    return out


def smb2_messages(path: Path) -> list[tuple[tuple[str, int, str, int], Any]]:
    out = []
    for key, stream in sorted(tcp_payloads(path).items()):
        for frame in session_frames(stream):
            if frame[:4] == b"\xfeSMB":
                out.extend((key, m) for m in parse_frame(frame))
    return out


def tshark(path: Path, *fields: str, display: str = "smb2") -> list[list[str]]:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    cmd = ["tshark", "-r", str(path), "-Y", display, "-T", "fields", "-E", "separator=|"]
    for f in fields:
        cmd += ["-e", f]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return [line.split("|") for line in res.stdout.splitlines()]


# trace -> number of SMB2 messages in it (compound members counted one by one; tshark agrees below)
SMB2_TRACES = {"pcap/smb-reference/smb1.pcap": 42, "pcap/smb-reference/suricata-verify-smb-filename/input.pcap": 26}


@pytest.mark.shared
@pytest.mark.parametrize("trace", SMB2_TRACES)
def test_every_smb2_message_of_the_traces_decodes(shared_data: Path, trace: str) -> None:
    messages = smb2_messages(shared_data / trace)
    assert len(messages) == SMB2_TRACES[trace]
    for _key, m in messages:
        # every message comes back typed, byte for byte the message it was cut from
        assert parse_message(m.raw) == m
        if m.header.command in (Command.QUERY_INFO, Command.QUERY_DIRECTORY):
            assert m.body.command == m.header.command  # Unparsed, but kept


@pytest.mark.shared
def test_no_other_capture_holds_smb2(shared_data: Path) -> None:
    """Every capture of the data set, SMB1 ones included: only the two traces above carry SMB2
    (the SMB1-only captures must not be mistaken for it)."""
    found = {}
    for path in sorted(p for p in (shared_data / "pcap").rglob("*") if p.suffix in (".pcap", ".cap")):
        n = len(smb2_messages(path))
        if n:
            found[str(path.relative_to(shared_data))] = n
    assert found == SMB2_TRACES


@pytest.mark.shared
@pytest.mark.tshark
@pytest.mark.parametrize("trace", SMB2_TRACES)
def test_traces_agree_with_tshark(shared_data: Path, trace: str) -> None:
    path = shared_data / trace
    ours = Counter((int(m.header.command), m.header.message_id, m.header.is_response) for _k, m in smb2_messages(path))
    theirs: Counter[tuple[int, int, bool]] = Counter()
    for cmds, mids, resp in tshark(path, "smb2.cmd", "smb2.msg_id", "smb2.flags.response"):
        for c, i, r in zip(cmds.split(","), mids.split(","), resp.split(","), strict=True):
            theirs[(int(c), int(i), r in ("1", "True"))] += 1
    assert ours == theirs
    chosen = [m.body.dialect for _k, m in smb2_messages(path) if isinstance(m.body, negotiate.NegotiateResponse)]
    shark = tshark(path, "smb2.dialect", display="smb2.cmd == 0 && smb2.flags.response == 1")
    assert sorted(chosen) == sorted(int(row[0], 16) for row in shark)
    offered = [m.body.dialects for _k, m in smb2_messages(path) if isinstance(m.body, negotiate.NegotiateRequest)]
    shark = tshark(path, "smb2.dialect", display="smb2.cmd == 0 && smb2.flags.response == 0")
    assert sorted(offered) == sorted(tuple(int(d, 16) for d in row[0].split(",")) for row in shark)
    trees = sorted(m.body.path for _k, m in smb2_messages(path) if isinstance(m.body, session.TreeConnectRequest))
    assert trees == sorted(r[0] for r in tshark(path, "smb2.tree", display="smb2.cmd == 3 && smb2.flags.response == 0"))


@pytest.mark.shared
def test_windows7_multiprotocol_and_kerberos_session(shared_data: Path) -> None:
    """The suricata-verify trace: Windows 7 sends the SMB1 negotiate above, Windows 2008 R2 answers
    SMB2 0x02FF with MessageId 0, then 2.1 is negotiated. Our builder answers the same way."""
    path = shared_data / "pcap/smb-reference/suricata-verify-smb-filename/input.pcap"
    streams = tcp_payloads(path)
    smb1 = [f for k, st_ in streams.items() if k[1] == 49511 for f in session_frames(st_) if f[:5] == b"\xffSMBr"]
    # [MS-CIFS] 2.2.4.52.1: WordCount 0, ByteCount, then 0x02-prefixed NUL-terminated dialect names
    assert tuple(d.rstrip(b"\x00").decode() for d in smb1[0][35:].split(b"\x02")[1:]) == WIN7_SMB1_DIALECTS
    msgs = [m for _k, m in smb2_messages(path)]
    first = next(m for m in msgs if isinstance(m.body, negotiate.NegotiateResponse))
    assert isinstance(first.body, negotiate.NegotiateResponse) and first.body.dialect == Dialect.WILDCARD
    assert first.header.message_id == 0 and first.header.is_response
    hint = spnego.parse_security_blob(first.body.security_buffer)
    assert hint.init is not None and spnego.NTLMSSP_OID in hint.init.mech_types
    assert hint.init.hint_name == spnego.HINT_NAME
    ours = parse_message(build_message(
        Header(Command.NEGOTIATE, flags=1, credits=1),
        build_negotiate_response(dialect=multiprotocol_dialect(WIN7_SMB1_DIALECTS, (0x0202, 0x0210)) or 0,
                                 server_guid=first.body.server_guid, system_time=first.body.system_time,
                                 security_buffer=first.body.security_buffer, security_mode=1, capabilities=7)))
    assert isinstance(ours.body, negotiate.NegotiateResponse)
    assert (ours.body.dialect, ours.body.security_buffer) == (first.body.dialect, first.body.security_buffer)
    setups = [m.body for m in msgs if isinstance(m.body, session.SessionSetupRequest)]
    blob = spnego.parse_security_blob(setups[0].security_buffer)
    assert blob.wrapping == "spnego" and blob.ntlm is None and blob.mech == spnego.MS_KRB5_OID
    assert blob.init is not None and blob.init.mech_token is not None and blob.init.mech_token[:1] == b"\x60"


@pytest.mark.shared
def test_compounded_requests_of_zeek_trace(shared_data: Path) -> None:
    path = shared_data / "pcap/smb-reference/smb1.pcap"
    chains = []
    for key, stream in tcp_payloads(path).items():
        if key[3] == 445:
            chains += [[parse_header(m).command for m in split_compound(f)] for f in session_frames(stream)]
    assert [Command.CREATE, Command.QUERY_INFO, Command.CLOSE] in chains
    creates = [m.body for _k, m in smb2_messages(path) if isinstance(m.body, files.CreateRequest)]
    assert [c.name for c in creates].count("Test\\2009-12 Payroll.xlsx") == 3
    assert [c.contexts[0][0] for c in creates if c.contexts] == [b"MxAc"] * 5  # query maximal access


# ----------------------------------------------------- a whole impacket session through the codecs
class _Trailer:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def get_trailer(self) -> bytes:
        return self.data


class Honeypot:
    """A minimal responder made of the codecs only (the sensor's job later); it records what a
    honeypot would log."""

    def __init__(self, dialects: tuple[int, ...]) -> None:
        self.dialects = dialects
        self.log: list[tuple[str, object]] = []
        self.pending: list[bytes] = []
        self.identity = ntlmssp.ServerIdentity("HONEY", "WORKGROUP", "honey", "", "", ntlmssp.Version(6, 1, 7601))

    # the NetBIOS session interface impacket's SMB3 uses
    def send_packet(self, data: bytes) -> None:
        self.pending.append(build_compound([self.answer(m) for m in parse_frame(data)]))

    def recv_packet(self, _timeout: object = None) -> _Trailer:
        return _Trailer(self.pending.pop(0))

    def get_socket(self) -> None:
        return None

    def answer(self, m: Any) -> bytes:
        h, b = m.header, m.body
        ok = response_header(h, credits=max(1, h.credits))
        if isinstance(b, negotiate.NegotiateRequest):
            dialect = select_dialect(b.dialects, self.dialects)
            contexts = response_contexts(b, salt=b"\x11" * 32) if dialect == 0x0311 else ()
            self.log.append(("negotiate", dialect))
            return build_message(ok, build_negotiate_response(
                dialect=dialect or 0, server_guid=SERVER_GUID, system_time=NOW, contexts=contexts or (),
                security_buffer=spnego.build_neg_token_init_hint(), max_read_size=65536))
        if isinstance(b, session.SessionSetupRequest):
            blob = spnego.parse_security_blob(b.security_buffer)
            assert blob.ntlm is not None
            msg = ntlmssp.parse_message(blob.ntlm)
            if isinstance(msg, ntlmssp.Negotiate):
                token = spnego.accept_incomplete(ntlmssp.build_challenge(msg.flags, b"\x22" * 8, self.identity, NOW))
                hdr = response_header(h, status=NtStatus.MORE_PROCESSING_REQUIRED, session_id=0x100000000041)
                return build_message(hdr, build_session_setup_response(token))
            assert isinstance(msg, ntlmssp.Authenticate)
            self.log.append(("logon", (msg.domain, msg.user, msg.workstation, msg.ntlm_version, msg.anonymous)))
            return build_message(ok, build_session_setup_response(spnego.accept_completed()))
        if isinstance(b, session.TreeConnectRequest):
            self.log.append(("tree", b.path))
            return build_message(response_header(h, tree_id=1), build_tree_connect_response())
        if isinstance(b, files.CreateRequest):
            self.log.append(("open", b.pipe_name))
            return build_message(ok, build_create_response(b"\x07" * 16))
        if isinstance(b, files.WriteRequest):
            self.log.append(("write", b.data))
            return build_message(ok, build_write_response(len(b.data)))
        if isinstance(b, files.ReadRequest):
            return build_message(ok, build_read_response(b"read-reply"))
        if isinstance(b, files.IoctlRequest):
            self.log.append(("transceive", b.input))
            return build_message(ok, build_ioctl_response(b.ctl_code, b.file_id, b"rpc-reply"))
        if isinstance(b, files.CloseRequest):
            return build_message(ok, build_close_response())
        if isinstance(b, session.EmptyBody):
            self.log.append(("empty", Command(b.command).name))
            return build_message(ok, build_empty())
        return build_message(response_header(h, status=NtStatus.NOT_SUPPORTED), build_error())


@pytest.mark.parametrize("dialects", [(0x0202, 0x0210), (0x0202, 0x0210, 0x0300, 0x0302, 0x0311)])
def test_impacket_client_session(dialects: tuple[int, ...]) -> None:
    """impacket's own SMB3 client, handed over after an SMB1 multi-protocol negotiate answered
    with 0x02FF (as SMBConnection does), logs on, opens \\srvsvc and does pipe I/O."""
    pot = Honeypot(dialects)
    wildcard = build_message(Header(Command.NEGOTIATE, flags=1, credits=1), build_negotiate_response(
        dialect=0x02FF, server_guid=SERVER_GUID, system_time=NOW, security_buffer=spnego.build_neg_token_init_hint()))
    client = SMB3("HONEY", "192.0.2.1", session=pot, negSessionResponse=s3.SMB2Packet(wildcard))
    assert client.getDialect() == max(dialects)
    client.login("alice", "secret", "CORP")
    assert client.getServerName() == "HONEY" and client.getServerOS() == "Windows 7 / Server 2008 R2 Build 7601"
    tid = client.connectTree("IPC$")
    fid = client.create(tid, "\\srvsvc", 0x0012019F, 3, 0, 1, 0x80)
    client.write(tid, fid, b"\x05\x00\x0b\x03", bytesToWrite=4)
    assert client.read(tid, fid, 0, 1024) == b"read-reply"
    out = client.ioctl(tid, fid, FSCTL_PIPE_TRANSCEIVE, IOCTL_IS_FSCTL, b"\x05\x00\x00\x03", maxOutputResponse=4280)
    assert out == b"rpc-reply"
    client.close(tid, fid)
    assert client.echo()
    client.disconnectTree(tid)
    client.logoff()
    assert pot.log == [
        ("negotiate", max(dialects)),
        ("logon", ("CORP", "alice", "", "v2", False)),
        ("tree", "\\\\192.0.2.1\\IPC$"),  # impacket names the server by the address it dialled
        ("open", "srvsvc"),
        ("write", b"\x05\x00\x0b\x03"),
        ("transceive", b"\x05\x00\x00\x03"),
        ("empty", "ECHO"), ("empty", "TREE_DISCONNECT"), ("empty", "LOGOFF"),
    ]


def test_unknown_command_answered_not_supported() -> None:
    pot = Honeypot((0x0210,))
    frame = build_message(Header(Command.QUERY_INFO, message_id=4), b"\x29\x00" + bytes(39))
    (m,) = parse_frame(frame)
    assert isinstance(m.body, Unparsed) and m.body.structure_size == 41
    reply = parse_message(pot.answer(m))
    assert reply.header.status == NtStatus.NOT_SUPPORTED and isinstance(reply.body, session.ErrorResponse)


# ---------------------------------------------------------------------------------- robustness
def test_named_limits() -> None:
    hdr = Header(Command.NEGOTIATE).pack()
    many = negotiate.NEGOTIATE_REQUEST.pack(36, 65, 1, 0, 0, bytes(16), 0, 0, 0) + b"\x02\x02" * 65
    with pytest.raises(MalformedMessage, match="DialectCount"):
        parse_message(hdr + many)
    ctxs = negotiate.NEGOTIATE_REQUEST.pack(36, 1, 1, 0, 0, bytes(16), 104, 33, 0) + b"\x11\x03" + bytes(8) * 40
    with pytest.raises(MalformedMessage, match="NegotiateContextCount"):
        parse_message(hdr + ctxs)
    # a CREATE context chain whose Next keeps pointing at a well-formed context: bounded by count
    ctx = files.CREATE_CONTEXT.pack(24, 16, 4, 0, 0, 0) + b"MxAc" + bytes(4)  # Next=24: the next one
    chain = ctx * 40
    body = files.CREATE_REQUEST.pack(57, 0, 0, 2, 0, 0, 0, 0, 7, 1, 0, 120, 0, 120, len(chain))
    with pytest.raises(MalformedMessage, match="more than 32"):
        parse_message(Header(Command.CREATE).pack() + body + chain)


def _valid_messages() -> list[bytes]:
    fid = bytes(range(16))
    out = [HEADER_ASYNC_PENDING, HEADER_SYNC[:12] + b"\x00\x00" + HEADER_SYNC[14:] + NEGOTIATE_311_BODY]
    for command, cls, fill in (
        (s3.SMB2_TREE_CONNECT, s3.SMB2TreeConnect, {"Buffer": "\\\\h\\IPC$".encode("utf-16-le"), "PathLength": 16}),
        (s3.SMB2_CREATE, s3.SMB2Create, {"Buffer": "lsarpc".encode("utf-16-le"), "NameLength": 12}),
        (s3.SMB2_WRITE, s3.SMB2Write, {"FileID": fid, "Buffer": b"data", "Length": 4}),
        (s3.SMB2_IOCTL, s3.SMB2Ioctl, {"FileID": fid, "Buffer": b"in", "InputCount": 2}),
        (s3.SMB2_SESSION_SETUP, s3.SMB2SessionSetup, {"Buffer": b"NTLMSSP\x00", "SecurityBufferLength": 8}),
        (s3.SMB2_READ, s3.SMB2Read, {"FileID": fid, "Length": 10}),
        (s3.SMB2_CLOSE, s3.SMB2Close, {"FileID": fid}),
    ):
        body = cls()
        for k, v in fill.items():
            body[k] = v
        out.append(_impacket(command, body))
    ctx = (negotiate.NegotiateContext(1, b"\x01\x00\x02\x00\x01\x00zz"),)
    resp = build_negotiate_response(dialect=0x0311, server_guid=SERVER_GUID, system_time=NOW,
                                    security_buffer=b"hint", contexts=ctx)
    out.append(build_message(response_header(Header(0)), resp))
    out.append(build_message(response_header(Header(Command.READ)), build_read_response(b"payload")))
    return out


def test_truncation_byte_by_byte() -> None:
    for msg in _valid_messages():
        whole = parse_frame(msg)
        for cut in range(len(msg)):
            try:
                parse_frame(msg[:cut])
            except (NeedMoreData, MalformedMessage):
                continue
            # only the one pad byte a variable Buffer carries when empty (ERROR, READ request) may go
            assert cut == len(msg) - 1, (msg[:16].hex(), cut)
        assert parse_frame(msg + b"\xee" * 13)[0].body == whole[0].body  # trailing bytes are ignored


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_fuzz_random_bodies(tail: bytes) -> None:
    for command in range(0x14):
        for flags in (0, 1):
            frame = Header(command, flags=flags, status=0).pack() + tail
            with contextlib.suppress(ProtocolError):
                parse_frame(frame)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_messages(data: st.DataObject) -> None:
    msg = bytearray(data.draw(st.sampled_from(_valid_messages())))
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(msg) - 1))
        msg[pos] = data.draw(st.integers(0, 255))
    with contextlib.suppress(ProtocolError):
        parse_frame(bytes(msg))


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_fuzz_raw_frames(frame: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        parse_frame(b"\xfeSMB" + frame)
