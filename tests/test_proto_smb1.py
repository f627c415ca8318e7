"""SMB1 codec: header and block vectors, every request decoder against impacket's client structures,
every response builder against impacket's parser, AndX limits against Zeek's traces, the real
captures (reference traces and MS17-010 / MS04-011 exploits) against Zeek's expected output,
truncation, trailing garbage and fuzzing."""

from __future__ import annotations

import contextlib
import itertools
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from impacket import smb
from impacket.smb import SMB, NewSMBPacket, SMBCommand

from capture_helpers import tcp_payloads
from stormwatch.protocols.errors import MalformedMessage, ProtocolError
from stormwatch.protocols.netbios import DirectTcpFramer, NbssFramer
from stormwatch.protocols.smb1 import (
    CloseRequest,
    CloseResponse,
    Command,
    EchoRequest,
    EchoResponse,
    ErrorResponse,
    Flags2,
    Header,
    LogoffAndX,
    NegotiateRequest,
    NegotiateResponse,
    NegotiateResponseCore,
    NegotiateResponseLanman,
    NtCreateAndXRequest,
    NtCreateAndXResponse,
    NtStatus,
    NtTransactRequest,
    ReadAndXRequest,
    ReadAndXResponse,
    SessionSetupAndXExtendedRequest,
    SessionSetupAndXRequest,
    SessionSetupAndXResponse,
    Smb1Message,
    Transaction2Request,
    TransactionRequest,
    TransactionResponse,
    TransactionSecondaryRequest,
    TreeConnectAndXRequest,
    TreeConnectAndXResponse,
    TreeDisconnect,
    UnknownCommand,
    WriteAndXRequest,
    WriteAndXResponse,
    build_error,
    build_reply,
    close_response,
    decode_smb1,
    echo_response,
    logoff_response,
    negotiate_extended_response,
    negotiate_no_dialect,
    negotiate_response,
    nt_create_response,
    parse_header,
    read_response,
    session_setup_extended_response,
    session_setup_response,
    to_filetime,
    transaction_interim_response,
    transaction_response,
    tree_connect_response,
    tree_disconnect_response,
    write_response,
)

# -- vectors -----------------------------------------------------------------------------------

#: The NEGOTIATE request of Zeek's cifs_negotiate_lanman.pcap (its smb.smb1-negotiate-lanman/out
#: prints command=114, flags=24, flags2=51283, pid=4660, mid=1 and these four dialects).
NEGOTIATE_LANMAN = bytes.fromhex(
    "ff534d42"          # Protocol
    "72"                # Command: NEGOTIATE
    "00000000"          # Status
    "18"                # Flags: CASE_INSENSITIVE | CANONICALIZED_PATHS
    "53c8"              # Flags2: 0xc853 UNICODE | NT_STATUS | EXTENDED_SECURITY | IS_LONG_NAME | ...
    "0000"              # PIDHigh
    "0000000000000000"  # SecurityFeatures
    "0000"              # Reserved
    "0000"              # TID
    "3412"              # PIDLow: 0x1234
    "0000"              # UID
    "0100"              # MID: 1
    "00"                # WordCount: 0
    "3900"              # ByteCount: 57
    "02" "5043204e4554574f524b2050524f4752414d20312e3000"  # "PC NETWORK PROGRAM 1.0"
    "02" "4c414e4d414e312e3000"                            # "LANMAN1.0"
    "02" "4c4d312e325830303200"                            # "LM1.2X002"
    "02" "4c414e4d414e322e3100"                            # "LANMAN2.1"
)

#: A legacy NT LM 0.12 SESSION_SETUP_ANDX in Unicode: the strings start at offset 61 + 2
#: (passwords) = 63, odd, so one pad byte precedes them ([MS-CIFS] 2.2.4.53.1 Pad).
SESSION_SETUP_LEGACY_UNICODE = bytes.fromhex(
    "ff534d42" "73" "00000000" "18" "01c8" "0000" "0000000000000000" "0000" "0000" "feff" "0000" "0200"
    "0d"                # WordCount: 13
    "ff" "00" "0000"    # AndXCommand none, AndXReserved, AndXOffset
    "0411"              # MaxBufferSize: 4356
    "0a00"              # MaxMpxCount: 10
    "0000"              # VcNumber
    "00000000"          # SessionKey
    "0100"              # OEMPasswordLen: 1
    "0100"              # UnicodePasswordLen: 1
    "00000000"          # Reserved
    "d4000000"          # Capabilities: UNICODE | NT_SMBS | STATUS32 | LEVEL_II_OPLOCKS
    "1f00"              # ByteCount: 31
    "41"                # OEMPassword "A"
    "42"                # UnicodePassword "B"
    "00"                # Pad to an even offset
    "670075006500730074000000"  # AccountName "guest"
    "0000"              # PrimaryDomain ""
    "570069006e000000"  # NativeOS "Win"
    "4c004d000000"      # NativeLanMan "LM"
)


def test_header_vector() -> None:
    header = parse_header(NEGOTIATE_LANMAN)
    assert header == Header(command=0x72, flags=0x18, flags2=0xC853, pid_low=0x1234, mid=1)
    assert header.unicode and not header.is_reply and header.pid == 0x1234
    assert header.pack() == NEGOTIATE_LANMAN[:32]
    message = decode_smb1(NEGOTIATE_LANMAN)
    assert message.body == NegotiateRequest(("PC NETWORK PROGRAM 1.0", "LANMAN1.0", "LM1.2X002", "LANMAN2.1"))


def test_legacy_unicode_session_setup_padding() -> None:
    body = decode_smb1(SESSION_SETUP_LEGACY_UNICODE).body
    assert body == SessionSetupAndXRequest(4356, 10, 0, 0, 0xD4, b"A", b"B", "guest", "", "Win", "LM")


def test_header_rejects() -> None:
    with pytest.raises(MalformedMessage, match="SMB2"):
        decode_smb1(b"\xfeSMB" + bytes(60))
    with pytest.raises(MalformedMessage, match="protocol"):
        decode_smb1(b"\xffSMX" + bytes(60))
    with pytest.raises(MalformedMessage, match="header needs 32"):
        parse_header(NEGOTIATE_LANMAN[:31])


def test_unknown_command_is_generic() -> None:
    raw = bytearray(NEGOTIATE_LANMAN)
    raw[4] = 0x9C  # not a defined command
    body = decode_smb1(bytes(raw)).body
    assert body == UnknownCommand(0x9C, b"", NEGOTIATE_LANMAN[35:])


# -- impacket-built requests decode -----------------------------------------------------------

UNICODE_FLAGS2 = SMB.FLAGS2_UNICODE | SMB.FLAGS2_NT_STATUS | SMB.FLAGS2_EXTENDED_SECURITY | SMB.FLAGS2_LONG_NAMES


def _packet(*commands: SMBCommand, flags2: int = UNICODE_FLAGS2, tid: int = 2048, uid: int = 2049) -> bytes:
    packet = NewSMBPacket()
    packet["Flags2"], packet["Tid"], packet["Uid"], packet["Mid"], packet["Pid"] = flags2, tid, uid, 7, 0xFEFF
    for command in commands:
        packet.addCommand(command)
    return bytes(packet.getData())


def _fill(structure: smb.Structure, **fields: object) -> smb.Structure:
    for name, value in fields.items():
        structure[name] = value
    return structure


def _command(code: int, parameters: bytes | smb.Structure = b"", data: bytes | smb.Structure = b"") -> SMBCommand:
    command = SMBCommand(code)
    command["Parameters"], command["Data"] = parameters, data
    return command


def _negotiate() -> bytes:
    return _packet(_command(SMB.SMB_COM_NEGOTIATE, data=b"\x02NT LM 0.12\x00\x02SMB 2.002\x00"))


def _session_setup_extended() -> SMBCommand:
    return _command(SMB.SMB_COM_SESSION_SETUP_ANDX, _fill(
        smb.SMBSessionSetupAndX_Extended_Parameters(), MaxBufferSize=61440, MaxMpxCount=2, VcNumber=1,
        SessionKey=0, SecurityBlobLength=7, Capabilities=0x800000D4), _fill(
        smb.SMBSessionSetupAndX_Extended_Data(flags=UNICODE_FLAGS2), SecurityBlob=b"NTLMSSP",
        NativeOS="Unix".encode("utf-16le"), NativeLanMan="Samba".encode("utf-16le")))


def _session_setup_legacy_ascii() -> bytes:
    """As impacket's SMB.login_standard sends it (it drops Unicode for this form)."""
    return _packet(_command(SMB.SMB_COM_SESSION_SETUP_ANDX, _fill(
        smb.SMBSessionSetupAndX_Parameters(), MaxBuffer=61440, MaxMpxCount=2, VCNumber=5, SessionKey=0,
        AnsiPwdLength=24, UnicodePwdLength=24, Capabilities=0xC040), _fill(
        smb.SMBSessionSetupAndX_Data(), AnsiPwd=b"L" * 24, UnicodePwd=b"N" * 24, Account="administrator",
        PrimaryDomain="WORKGROUP", NativeOS="posix", NativeLanMan="pysmb")),
        flags2=SMB.FLAGS2_NT_STATUS | SMB.FLAGS2_LONG_NAMES)


def _tree_connect() -> SMBCommand:
    return _command(SMB.SMB_COM_TREE_CONNECT_ANDX, _fill(
        smb.SMBTreeConnectAndX_Parameters(), PasswordLength=1, Flags=0x0008), _fill(
        smb.SMBTreeConnectAndX_Data(flags=UNICODE_FLAGS2), Password=b"\x00",
        Path="\\\\192.0.2.7\\IPC$".encode("utf-16le"), Service=b"?????"))


def _nt_create(unicode: bool) -> bytes:
    name: str | bytes = "\\srvsvc".encode("utf-16le") if unicode else "\\srvsvc"
    flags2 = UNICODE_FLAGS2 if unicode else SMB.FLAGS2_NT_STATUS
    data = _fill(smb.SMBNtCreateAndX_Data(flags=flags2), FileName=name, **({"Pad": 0} if unicode else {}))
    return _packet(_command(SMB.SMB_COM_NT_CREATE_ANDX, _fill(
        smb.SMBNtCreateAndX_Parameters(), FileNameLength=len(name), CreateFlags=0x16, AccessMask=0x2019F,
        CreateOptions=0x40), data), flags2=flags2)


def _write(high_offset: bool) -> bytes:
    """WRITE_ANDX as impacket's SMB.write_andx lays it out: the data right after ByteCount (no pad),
    DataOffset 63 with the 64-bit form (WordCount 14), 59 with the short one (WordCount 12)."""
    payload = b"\x05\x00\x0b\x03" + bytes(68)  # a DCE/RPC bind, 72 bytes
    params = (_fill(smb.SMBWriteAndX_Parameters(), HighOffset=1, DataOffset=63) if high_offset
              else _fill(smb.SMBWriteAndX_Parameters_Short(), Remaining=72, DataOffset=59))
    return _packet(_command(SMB.SMB_COM_WRITE_ANDX, _fill(params, Fid=0x4000, Offset=16, DataLength=72), payload))


def _read(high_offset: bool) -> bytes:
    params = smb.SMBReadAndX_Parameters() if high_offset else smb.SMBReadAndX_Parameters2()
    _fill(params, Fid=0x4000, Offset=0, MaxCount=4280, **({"HighOffset": 2} if high_offset else {}))
    return _packet(_command(SMB.SMB_COM_READ_ANDX, params))


def _transact_nmpipe(subcommand: int = 0x26, fid: int = 0x4000, data: bytes = b"\x05\x00\x00\x03") -> bytes:
    """The request impacket's SMB.TransactNamedPipe sends (its send_trans, ASCII name)."""
    name, setup = b"\\PIPE\\\x00", struct.pack("<HH", subcommand, fid)
    offset = 32 + 3 + 28 + len(setup) + len(name)
    return _packet(_command(SMB.SMB_COM_TRANSACTION, _fill(
        smb.SMBTransaction_Parameters(), Setup=setup, TotalParameterCount=0, TotalDataCount=len(data),
        ParameterCount=0, ParameterOffset=offset, DataCount=len(data), DataOffset=offset), _fill(
        smb.SMBTransaction_Data(), Name=name, Trans_Parameters=b"", Trans_Data=data)),
        flags2=SMB.FLAGS2_NT_STATUS | SMB.FLAGS2_LONG_NAMES)


def _trans_sections(structure: smb.Structure, pad1: bytes, params: bytes, pad2: bytes, data: bytes,
                    prefix: str = "Trans_") -> smb.Structure:
    return _fill(structure, Pad1Length=len(pad1), Pad1=pad1, Pad2Length=len(pad2), Pad2=pad2, **{
        f"{prefix}ParametersLength": len(params), f"{prefix}Parameters": params,
        f"{prefix}DataLength": len(data), f"{prefix}Data": data})


FIND_FIRST2 = struct.pack("<HHHHI", 0x16, 512, 6, 0x104, 0) + "\\*".encode("utf-16le") + b"\x00\x00"


def _trans2() -> bytes:
    """TRANS2 FIND_FIRST2 with 18 parameter bytes after one pad byte, as impacket's find_first2."""
    return _packet(_command(SMB.SMB_COM_TRANSACTION2, _fill(
        smb.SMBTransaction2_Parameters(), Setup=b"\x01\x00", TotalParameterCount=18, TotalDataCount=0,
        ParameterCount=18, ParameterOffset=66, DataCount=0, DataOffset=0),
        _trans_sections(smb.SMBTransaction2_Data(), b"\x00", FIND_FIRST2, b"", b"")))


def _nt_transact() -> bytes:
    """An NT_TRANSACT shaped like EternalBlue's first one: TotalDataCount far beyond this piece."""
    return _packet(_command(SMB.SMB_COM_NT_TRANSACT, _fill(
        smb.SMBNTTransaction_Parameters(), MaxSetupCount=1, Setup=b"\x00\x00", Function=0,
        TotalParameterCount=30, TotalDataCount=66512, ParameterCount=30, ParameterOffset=75, DataCount=8,
        DataOffset=106), _trans_sections(smb.SMBNTTransaction_Data(), b"", b"P" * 30, b"\x00", b"D" * 8,
                                         prefix="NT_Trans_")))


def _trans2_secondary() -> bytes:
    return _packet(_command(SMB.SMB_COM_TRANSACTION2_SECONDARY, _fill(
        smb.SMBTransaction2Secondary_Parameters(), TotalParameterCount=0, TotalDataCount=4096, ParameterCount=0,
        ParameterOffset=0, ParameterDisplacement=0, DataCount=16, DataOffset=53, DataDisplacement=976, FID=0),
        _trans_sections(smb.SMBTransaction2Secondary_Data(), b"", b"", b"", b"\x90" * 16)))


def _close() -> bytes:
    return _packet(_command(SMB.SMB_COM_CLOSE, _fill(smb.SMBClose_Parameters(), FID=0x4000)))


def _echo() -> bytes:
    return _packet(_command(SMB.SMB_COM_ECHO, _fill(smb.SMBEcho_Parameters(), EchoCount=1), b"ping"))


def _logoff() -> bytes:
    return _packet(_command(SMB.SMB_COM_LOGOFF_ANDX, smb.SMBLogOffAndX()))


IMPACKET_REQUESTS = {
    "negotiate": (_negotiate, NegotiateRequest(("NT LM 0.12", "SMB 2.002"))),
    "session_setup_extended": (lambda: _packet(_session_setup_extended()), SessionSetupAndXExtendedRequest(
        61440, 2, 1, 0, 0x800000D4, b"NTLMSSP", "Unix", "Samba")),
    "session_setup_legacy_ascii": (_session_setup_legacy_ascii, SessionSetupAndXRequest(
        61440, 2, 5, 0, 0xC040, b"L" * 24, b"N" * 24, "administrator", "WORKGROUP", "posix", "pysmb")),
    "tree_connect": (lambda: _packet(_tree_connect()),
                     TreeConnectAndXRequest(8, b"\x00", "\\\\192.0.2.7\\IPC$", "?????")),
    "nt_create_unicode": (lambda: _nt_create(True),
                          NtCreateAndXRequest(0x16, 0, 0x2019F, 0, 0, 3, 1, 0x40, 2, 3, 14, "\\srvsvc")),
    "nt_create_ascii": (lambda: _nt_create(False),
                        NtCreateAndXRequest(0x16, 0, 0x2019F, 0, 0, 3, 1, 0x40, 2, 3, 7, "\\srvsvc")),
    "write_64": (lambda: _write(True), WriteAndXRequest(
        0x4000, 1 << 32 | 16, 0xFF, 8, 0, 72, 63, 1, 72, b"\x05\x00\x0b\x03" + bytes(68))),
    "write_32": (lambda: _write(False), WriteAndXRequest(
        0x4000, 16, 0xFF, 8, 72, 72, 59, None, 72, b"\x05\x00\x0b\x03" + bytes(68))),
    "read_64": (lambda: _read(True), ReadAndXRequest(0x4000, 2 << 32, 4280, 4280, 0, 4280, 2)),
    "read_32": (lambda: _read(False), ReadAndXRequest(0x4000, 0, 4280, 4280, 0xFFFFFFFF, 4280, None)),
    "transact_nmpipe": (_transact_nmpipe, TransactionRequest(
        0, 4, 1024, 65504, 0, 0, 0, 0, 74, 4, 74, (0x26, 0x4000), "\\PIPE\\", b"", b"\x05\x00\x00\x03")),
    "trans2": (_trans2, Transaction2Request(
        18, 0, 1024, 65504, 0, 0, 0, 18, 66, 0, 0, (1,), FIND_FIRST2, b"")),
    "nt_transact": (_nt_transact, NtTransactRequest(
        1, 30, 66512, 1024, 65504, 30, 75, 8, 106, 0, (0,), b"P" * 30, b"D" * 8)),
    "trans2_secondary": (_trans2_secondary, TransactionSecondaryRequest(
        0x33, 0, 4096, 0, 0, 0, 16, 53, 976, 0, b"", b"\x90" * 16)),
    "close": (_close, CloseRequest(0x4000, 0)),
    "echo": (_echo, EchoRequest(1, b"ping")),
    "logoff": (_logoff, LogoffAndX()),
    "tree_disconnect": (lambda: _packet(_command(SMB.SMB_COM_TREE_DISCONNECT)), TreeDisconnect()),
}


@pytest.mark.parametrize("name", sorted(IMPACKET_REQUESTS))
def test_impacket_request_decodes(name: str) -> None:
    build, expected = IMPACKET_REQUESTS[name]
    raw = build()
    message = decode_smb1(raw)
    assert message.body == expected
    assert message.header.mid == 7 and message.header.pid_low == 0xFEFF
    # Bytes after the last command's ByteCount are ignored ([MS-CIFS] 2.2.3.3), as Windows does.
    assert decode_smb1(raw + b"trailing garbage").commands == message.commands
    # Every strict prefix of a complete message is malformed, never a crash or a wrong decode.
    for cut in range(len(raw)):
        with pytest.raises(ProtocolError):
            decode_smb1(raw[:cut])


def test_impacket_andx_chain() -> None:
    raw = _packet(_session_setup_extended(), _tree_connect())
    message = decode_smb1(raw)
    assert [type(c) for c in message.commands] == [SessionSetupAndXExtendedRequest, TreeConnectAndXRequest]
    assert message.commands[1] == IMPACKET_REQUESTS["tree_connect"][1]
    assert [b.command for b in message.blocks] == [0x73, 0x75]
    assert message.blocks[0].andx == (0x75, message.blocks[1].offset)


# -- AndX limits (Zeek's traces) -----------------------------------------------------------------


def _frames(path: Path, *, server: bool | None = None) -> Iterator[bytes]:
    """SMB frame payloads of every TCP 139/445 stream of a capture (client side only with
    ``server=False``, server side only with ``server=True``)."""
    for (_, sport, _, dport), data in tcp_payloads(path).items():
        if 445 not in (sport, dport) and 139 not in (sport, dport):
            continue
        if server is not None and (sport in (139, 445)) != server:
            continue
        framer = NbssFramer() if 139 in (sport, dport) else DirectTcpFramer()
        yield from (f.payload for f in framer.feed(data) if f.type == 0)


REFERENCE = "pcap/smb-reference"


def test_andx_depth_exceeded(shared_data: Path) -> None:
    """Zeek's smb1-long-andx-chain: twelve chained LOGOFF_ANDX; its weird.log says
    smb_andx_depth_exceeded, and so do we (default limit 8 links)."""
    assert "smb_andx_depth_exceeded" in (shared_data / "expected/zeek/smb.smb1-long-andx-chain/weird.log").read_text()
    (raw,) = _frames(shared_data / REFERENCE / "smb1-logoff-andx-advance.pcap")
    with pytest.raises(MalformedMessage) as exc:
        decode_smb1(raw)
    assert exc.value.detail.startswith("smb_andx_depth_exceeded") and "more than 8" in exc.value.detail
    assert decode_smb1(raw, max_andx_depth=11).commands == (LogoffAndX(),) * 12
    with pytest.raises(MalformedMessage, match="more than 10"):
        decode_smb1(raw, max_andx_depth=10)


def test_andx_offset_not_advancing(shared_data: Path) -> None:
    weird = (shared_data / "expected/zeek/smb.smb1-non-advancing-andx-offset/weird.log").read_text()
    assert "smb_andx_offset_not_advancing" in weird
    (raw,) = _frames(shared_data / REFERENCE / "smb1-logoff-andx-no-advance.pcap")
    with pytest.raises(MalformedMessage) as exc:
        decode_smb1(raw, max_andx_depth=100)
    assert exc.value.detail.startswith("smb_andx_offset_not_advancing")
    assert (exc.value.field, exc.value.offset) == ("AndXOffset", 35)
    # a backwards offset is refused the same way
    chain = bytearray(_packet(_session_setup_extended(), _tree_connect()))
    chain[32 + 3:32 + 5] = struct.pack("<H", 20)
    with pytest.raises(MalformedMessage, match="smb_andx_offset_not_advancing"):
        decode_smb1(bytes(chain))


def test_write_data_beyond_byte_count() -> None:
    """A large write ([MS-SMB] 2.2.4.3.1, CAP_LARGE_WRITEX): 70000 bytes, DataLengthHigh 1, and a
    16-bit ByteCount that cannot say so. The data is taken by DataOffset/DataLength."""
    payload = bytes(range(256)) * 273 + bytes(112)  # 70000 bytes
    words = struct.pack("<BBHHIIHHHHHI", 0xFF, 0, 0, 0x4000, 0, 0, 0, 0, 1, 70000 & 0xFFFF, 64, 0)
    raw = Header(Command.WRITE_ANDX, flags2=0xC001).pack() + bytes([14]) + words
    raw += struct.pack("<H", 70000 & 0xFFFF) + b"\x00" + payload
    body = decode_smb1(raw).body
    assert isinstance(body, WriteAndXRequest)
    assert (body.data_length, body.data_offset, body.byte_count) == (70000, 64, 70000 & 0xFFFF)
    assert body.data == payload
    with pytest.raises(MalformedMessage) as exc:  # declared data running past the message
        decode_smb1(raw[:-1])
    assert exc.value.field == "DataLength"


# -- response builders, parsed by impacket and by our own decoder ---------------------------------

REQUEST = parse_header(_negotiate())  # Flags2 UNICODE | EXTENDED_SECURITY | NT_STATUS, MID 7, PID 0xFEFF


def _impacket(raw: bytes) -> tuple[NewSMBPacket, SMBCommand]:
    packet = NewSMBPacket(data=raw)
    return packet, SMBCommand(packet["Data"][0])


def test_negotiate_extended_response() -> None:
    guid, blob, now = bytes(range(16)), b"\x60\x28\x06\x06+\x06\x01\x05\x05\x02", to_filetime(1155081600)
    raw = build_reply(REQUEST, negotiate_extended_response(dialect_index=0, system_time=now, server_guid=guid,
                                                           security_blob=blob))
    packet, command = _impacket(raw)
    assert packet["Flags1"] & SMB.FLAGS1_REPLY and packet["Mid"] == 7 and packet["Pid"] == 0xFEFF
    assert packet["Flags2"] & SMB.FLAGS2_EXTENDED_SECURITY
    params = smb.SMBExtended_Security_Parameters(command["Parameters"])
    assert params["Capabilities"] & SMB.CAP_EXTENDED_SECURITY and params["DialectIndex"] == 0
    assert params["MaxBufferSize"] == 16644 and params["HighDateTime"] << 32 | params["LowDateTime"] == now
    data = smb.SMBExtended_Security_Data(command["Data"])
    assert data["ServerGUID"] == guid and data["SecurityBlob"] == blob
    body = decode_smb1(raw).body
    assert isinstance(body, NegotiateResponse) and body.extended_security
    assert (body.server_guid, body.security_blob, body.system_time) == (guid, blob, now)


def test_negotiate_challenge_response() -> None:
    raw = build_reply(REQUEST, negotiate_response(
        dialect_index=2, system_time=to_filetime(0), challenge=b"\x11\x22\x33\x44\x55\x66\x77\x88",
        domain_name="WORKGROUP", server_name="HOMEUSER-3AF6FE"))
    packet, command = _impacket(raw)
    assert not packet["Flags2"] & SMB.FLAGS2_EXTENDED_SECURITY
    params = smb.SMBNTLMDialect_Parameters(command["Parameters"])
    assert params["ChallengeLength"] == 8 and not params["Capabilities"] & SMB.CAP_EXTENDED_SECURITY
    data = smb.SMBNTLMDialect_Data()
    data["ChallengeLength"] = 8
    data.fromString(command["Data"])
    assert data["Challenge"] == b"\x11\x22\x33\x44\x55\x66\x77\x88"
    # DomainName/ServerName: Unicode (CAP_UNICODE), unaligned, right after the challenge
    assert command["Data"][8:] == "WORKGROUP\0HOMEUSER-3AF6FE\0".encode("utf-16le")
    body = decode_smb1(raw).body
    assert isinstance(body, NegotiateResponse) and not body.extended_security
    assert (body.dialect_index, body.domain_name, body.server_name) == (2, "WORKGROUP", "HOMEUSER-3AF6FE")
    assert to_filetime(0) == 116444736000000000


def test_negotiate_no_dialect() -> None:
    raw = build_reply(REQUEST, negotiate_no_dialect())
    assert smb.SMBCommand(NewSMBPacket(data=raw)["Data"][0])["Parameters"] == b"\xff\xff"
    assert decode_smb1(raw).body == NegotiateResponseCore(0xFFFF)


def test_session_setup_extended_response() -> None:
    blob = b"NTLMSSP\x00\x02" + bytes(31)  # 40 bytes, even: one pad byte before NativeOS
    raw = build_reply(REQUEST, session_setup_extended_response(
        security_blob=blob, native_os="Windows 5.1", native_lanman="Windows 2000 LAN Manager"),
        status=NtStatus.MORE_PROCESSING_REQUIRED, uid=2049)
    packet, command = _impacket(raw)
    assert packet["Uid"] == 2049 and packet.isMoreProcessingRequired()
    params = smb.SMBSessionSetupAndX_Extended_Response_Parameters(command["Parameters"])
    assert params["SecurityBlobLength"] == 40 and params["AndXCommand"] == 0xFF
    data = smb.SMBSessionSetupAndX_Extended_Response_Data(flags=packet["Flags2"])
    data["SecurityBlobLength"] = 40
    data.fromString(command["Data"])
    assert data["SecurityBlob"] == blob
    assert data["NativeOS"].decode("utf-16le") == "Windows 5.1"
    assert data["NativeLanMan"].decode("utf-16le") == "Windows 2000 LAN Manager"
    message = decode_smb1(raw)
    assert message.header.status == NtStatus.MORE_PROCESSING_REQUIRED
    assert message.body == SessionSetupAndXResponse(0, "Windows 5.1", "Windows 2000 LAN Manager", "", blob)


def test_session_setup_legacy_response() -> None:
    parts = session_setup_response(native_os="Windows 5.1", native_lanman="Windows 2000 LAN Manager",
                                   primary_domain="WORKGROUP", action=1)
    raw = build_reply(REQUEST, parts, uid=100)
    params = smb.SMBSessionSetupAndXResponse_Parameters(_impacket(raw)[1]["Parameters"])
    assert params["Action"] == 1
    # strings begin at offset 41 (odd): one pad byte, then UTF-16 ([MS-CIFS] 2.2.4.53.2 Pad)
    assert raw[41:43] == b"\x00W"
    assert decode_smb1(raw).body == SessionSetupAndXResponse(1, "Windows 5.1", "Windows 2000 LAN Manager",
                                                             "WORKGROUP")
    ascii_request = Header(Command.SESSION_SETUP_ANDX, flags2=Flags2.NT_STATUS)
    ascii_reply = build_reply(ascii_request, parts)
    data = smb.SMBSessionSetupAndXResponse_Data(flags=0, data=_impacket(ascii_reply)[1]["Data"])
    assert (data["NativeOS"], data["NativeLanMan"], data["PrimaryDomain"]) == (
        "Windows 5.1", "Windows 2000 LAN Manager", "WORKGROUP")


def test_tree_connect_responses() -> None:
    raw = build_reply(REQUEST, tree_connect_response(service="IPC"), tid=2048)
    packet, command = _impacket(raw)
    assert packet["Tid"] == 2048
    assert smb.SMBTreeConnectAndXResponse_Parameters(command["Parameters"])["OptionalSupport"] == 1
    assert command["Data"].startswith(b"IPC\x00")
    assert decode_smb1(raw).body == TreeConnectAndXResponse(1, "IPC", "")
    raw = build_reply(REQUEST, tree_connect_response(service="A:", native_file_system="NTFS",
                                                     maximal_share_access=0x1F01FF, guest_maximal_share_access=0))
    params = smb.SMBTreeConnectAndXExtendedResponse_Parameters(_impacket(raw)[1]["Parameters"])
    assert params["MaximalShareAccessRights"] == 0x1F01FF
    assert decode_smb1(raw).body == TreeConnectAndXResponse(1, "A:", "NTFS", 0x1F01FF, 0)


def test_nt_create_response() -> None:
    raw = build_reply(REQUEST, nt_create_response(fid=0x4000))
    params = smb.SMBNtCreateAndXResponse_Parameters(_impacket(raw)[1]["Parameters"])
    assert (params["Fid"], params["FileType"], params["IPCState"], params["FileAttributes"]) == (
        0x4000, 2, 0x05FF, 0x80)
    body = decode_smb1(raw).body
    assert isinstance(body, NtCreateAndXResponse)
    assert (body.fid, body.resource_type, body.nm_pipe_status, body.directory) == (0x4000, 2, 0x05FF, 0)


def test_write_read_transaction_responses() -> None:
    params = smb.SMBWriteAndXResponse_Parameters(_impacket(build_reply(REQUEST, write_response(count=72)))[1][
        "Parameters"])
    assert (params["Count"], params["Available"]) == (72, 0xFFFF)
    assert decode_smb1(build_reply(REQUEST, write_response(count=0x12345))).body == WriteAndXResponse(0x12345, 0xFFFF)

    stub = b"\x05\x00\x02\x03" + bytes(60)
    raw = build_reply(REQUEST, read_response(data=stub))
    packet, command = _impacket(raw)
    params = smb.SMBReadAndXResponse_Parameters(command["Parameters"])
    assert params["DataOffset"] == 60  # as Windows sends it: 59 rounded up by one pad byte
    assert packet.getData()[params["DataOffset"]:params["DataOffset"] + params["DataCount"]] == stub
    assert decode_smb1(raw).body == ReadAndXResponse(0, 60, stub)

    raw = build_reply(REQUEST, transaction_response(data=stub))
    packet, command = _impacket(raw)
    params = smb.SMBTransactionResponse_Parameters(command["Parameters"])
    assert params["TotalDataCount"] == len(stub) and params["DataOffset"] % 4 == 0
    assert command["Data"][-params["TotalDataCount"]:] == stub  # impacket's TransactNamedPipe reads it so
    body = decode_smb1(raw).body
    assert isinstance(body, TransactionResponse) and body.data == stub and body.parameters == b""

    raw = build_reply(REQUEST, transaction_response(parameters=b"\x01\x02\x03", data=b"xyz", setup=(7,),
                                                    command=Command.NT_TRANSACT))
    body = decode_smb1(raw).body
    assert isinstance(body, TransactionResponse)
    assert (body.parameters, body.data, body.setup, body.parameter_offset % 4) == (b"\x01\x02\x03", b"xyz", (7,), 0)
    params = smb.SMBNTTransactionResponse_Parameters(_impacket(raw)[1]["Parameters"])
    assert (params["TotalParameterCount"], params["DataCount"]) == (3, 3)
    interim = decode_smb1(build_reply(REQUEST, transaction_interim_response())).body
    assert isinstance(interim, TransactionResponse) and interim.interim


def test_small_responses() -> None:
    assert decode_smb1(build_reply(REQUEST, close_response())).body == CloseResponse()
    assert decode_smb1(build_reply(REQUEST, logoff_response())).body == LogoffAndX()
    assert decode_smb1(build_reply(REQUEST, tree_disconnect_response())).body == TreeDisconnect()
    raw = build_reply(REQUEST, echo_response(sequence_number=1, data=b"ping"))
    assert smb.SMBEchoResponse_Parameters(_impacket(raw)[1]["Parameters"])["SequenceNumber"] == 1
    assert decode_smb1(raw).body == EchoResponse(1, b"ping")


def test_error_response_ms17_010_probe() -> None:
    """The PeekNmPipe probe (TRANSACTION, Setup 0x23, FID 0 on IPC$) answered as an unpatched host."""
    probe = decode_smb1(_transact_nmpipe(subcommand=0x23, fid=0, data=b""))
    assert isinstance(probe.body, TransactionRequest) and probe.body.setup == (0x23, 0)
    raw = build_error(probe.header, NtStatus.INSUFF_SERVER_RESOURCES)
    packet = NewSMBPacket(data=raw)
    status = packet["ErrorClass"] | packet["_reserved"] << 8 | packet["ErrorCode"] << 16
    assert status == 0xC0000205 and packet["Command"] == SMB.SMB_COM_TRANSACTION
    assert decode_smb1(raw).body == ErrorResponse(Command.TRANSACTION, 0xC0000205)
    assert len(raw) == 35  # header, WordCount 0, ByteCount 0


def test_reply_chain() -> None:
    """SESSION_SETUP_ANDX + TREE_CONNECT_ANDX answered in one message, as Windows answers a chain."""
    raw = build_reply(REQUEST, session_setup_response(native_os="Windows 5.1", native_lanman="Windows 2000 LAN Manager",
                                                      primary_domain="WORKGROUP"),
                      tree_connect_response(service="IPC"), uid=2049, tid=2048)
    message = decode_smb1(raw)
    assert [type(c) for c in message.commands] == [SessionSetupAndXResponse, TreeConnectAndXResponse]
    assert message.commands[1] == TreeConnectAndXResponse(1, "IPC", "")
    with pytest.raises(ValueError, match="cannot be followed"):
        build_reply(REQUEST, close_response(), logoff_response())


# -- real traces against Zeek's expected output ---------------------------------------------------

ZEEK = "expected/zeek"
_ZEEK_HDR = re.compile(r"\[command=(\d+), status=(\d+), flags=(\d+), flags2=(\d+), tid=(\d+), pid=(\d+), "
                       r"uid=(\d+), mid=(\d+)\]")


def _zeek_header(header: Header) -> tuple[int, ...]:
    return (header.command, header.status, header.flags, header.flags2, header.tid, header.pid_low, header.uid,
            header.mid)


def _zeek_escape(raw: bytes) -> str:
    """Zeek's rendering of a byte string in its logs and prints."""
    return "".join(chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}" for b in raw)


def _decoded(path: Path, command: int, server: bool) -> list[Smb1Message]:
    return [m for m in map(decode_smb1, _frames(path, server=server)) if m.header.command == command]


def test_negotiate_lanman_matches_zeek(shared_data: Path) -> None:
    out = (shared_data / ZEEK / "smb.smb1-negotiate-lanman/out").read_text()
    headers = [tuple(map(int, m.groups())) for m in _ZEEK_HDR.finditer(out)]
    trace = shared_data / REFERENCE / "cifs_negotiate_lanman.pcap"
    (request,) = _decoded(trace, 0x72, server=False)
    (response,) = _decoded(trace, 0x72, server=True)
    assert headers == [_zeek_header(request.header), _zeek_header(response.header)]
    assert isinstance(request.body, NegotiateRequest)
    assert f"[{', '.join(request.body.dialects)}]" in out
    body = response.body
    assert isinstance(body, NegotiateResponseLanman)
    fields = dict(re.findall(r"(\w+)=([^,\]\[]+)", out.split("lanman=[", 1)[1]))
    assert int(fields["dialect_index"]) == body.dialect_index == 3
    assert body.security_mode == 3  # Zeek: user_level=T, challenge_response=T
    for name in ("max_buffer_size", "max_mpx_count", "max_number_vcs", "session_key"):
        assert int(fields[name]) == getattr(body, name), name
    assert float(fields["server_time"]) == body.server_time
    assert fields["encryption_key"] == _zeek_escape(body.encryption_key)
    # Zeek reads the OEM PrimaryDomain as UTF-16 because Flags2 says Unicode: the same bytes.
    assert body.primary_domain == "WORKGROUP"
    assert fields["primary_domain"] == _zeek_escape(b"WORKGROUP\0".decode("utf-16-le").encode())


def _zeek_record(line: str, key: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=([^,\]]*)", line.split(f"{key}: [", 1)[1].split("]", 1)[0]))


_ARGS = {"total_param_count": "total_parameter_count", "total_data_count": "total_data_count",
         "param_count": "parameter_count", "param_offset": "parameter_offset",
         "param_displacement": "parameter_displacement", "data_count": "data_count", "data_offset": "data_offset",
         "data_displacement": "data_displacement", "max_param_count": "max_parameter_count",
         "max_data_count": "max_data_count", "max_setup_count": "max_setup_count", "flags": "flags",
         "trans_timeout": "timeout", "FID": "fid"}


@pytest.mark.parametrize(("test", "trace", "command", "server"), [
    ("smb.smb1-transaction-request", "smb1_transaction_request.pcap", 0x25, False),
    ("smb.smb1-transaction-response", "smb1_transaction_response.pcap", 0x25, True),
    ("smb.smb1-transaction-secondary-request", "smb1_transaction_secondary_request.pcap", 0x26, False),
    ("smb.smb1-transaction2-request", "smb1_transaction2_request.pcap", 0x32, False),
    ("smb.smb1-transaction2-secondary-request", "smb1_transaction2_secondary_request.pcap", 0x33, False),
])
def test_transactions_match_zeek(shared_data: Path, test: str, trace: str, command: int, server: bool) -> None:
    line = (shared_data / ZEEK / test / ".stdout").read_text().splitlines()[1]
    (message,) = _decoded(shared_data / REFERENCE / trace, command, server)
    body: Any = message.body
    zeek_header = _ZEEK_HDR.search(line)
    assert zeek_header is not None and tuple(map(int, zeek_header.groups())) == _zeek_header(message.header)
    if "args: [" in line:
        for zeek_name, value in _zeek_record(line, "args").items():
            if zeek_name == "setup_count":
                assert int(value) == len(body.setup)
            else:
                assert int(value) == getattr(body, _ARGS[zeek_name]), zeek_name
    if "sub_cmd: " in line:  # Zeek prints the subcommand in hex
        assert int(line.split("sub_cmd: ")[1].split(",")[0], 16) == body.setup[0]
    if "name: " in line:
        assert line.split("name: ")[1].split(",")[0] == _zeek_escape(body.name.encode())
    if "params: " in line:
        assert line.split("params: ")[1].split(",")[0] == _zeek_escape(body.parameters)
        assert line.split("data: ")[1] == _zeek_escape(body.data)


def test_zeek_smb1_trace_is_smb2(shared_data: Path) -> None:
    """Zeek's "smb1.pcap" (baseline smb.smb1/smb_files.log) carries SMB2 only: the SMB1 codec
    refuses every frame by name, leaving it to the SMB2 codec."""
    frames = list(_frames(shared_data / REFERENCE / "smb1.pcap"))
    assert len(frames) == 18 and all(f[:4] == b"\xfeSMB" for f in frames)
    for frame in frames:
        with pytest.raises(MalformedMessage, match="an SMB2 message"):
            decode_smb1(frame)


def test_dssetup_pipe(shared_data: Path) -> None:
    """Zeek's smb.smb1-transaction-dcerpc trace: \\lsarpc opened, then DCE/RPC by TransactNmPipe on its FID."""
    trace = shared_data / REFERENCE / "dssetup_DsRoleGetPrimaryDomainInformation_standalone_workstation.cap"
    (create,) = _decoded(trace, 0xA2, server=False)
    (created,) = _decoded(trace, 0xA2, server=True)
    assert isinstance(create.body, NtCreateAndXRequest) and create.body.file_name == "\\lsarpc"
    assert isinstance(created.body, NtCreateAndXResponse)
    transactions: list[Any] = [m.body for m in _decoded(trace, 0x25, server=False)]
    assert [t.setup for t in transactions] == [(0x26, created.body.fid)] * 2
    assert all(t.name == "\\PIPE\\" and t.data[:2] == b"\x05\x00" for t in transactions)


TRACES = [
    f"{REFERENCE}/{name}" for name in (
        "cifs_negotiate_lanman.pcap", "mapi.pcap", "raw_ntlm_in_smb.pcap", "smb1_transaction_request.pcap",
        "smb1_transaction_response.pcap", "smb1_transaction_secondary_request.pcap",
        "smb1_transaction2_request.pcap", "smb1_transaction2_secondary_request.pcap",
        "dssetup_DsRoleGetPrimaryDomainInformation_standalone_workstation.cap",
        "suricata-verify-smb-named-pipe-ascii/input.pcap", "suricata-verify-output-eve-smb-01/input.pcap",
        "suricata-verify-smb1-02/smb1_osx.pcap", "suricata-verify-smb-filename/input.pcap")
] + [f"pcap/exploits/{name}" for name in (
    "eternalchampion.pcap", "honeynet-fc2010-attack-trace-ms04-011.pcap", "metasploit-ms017-010-win7x64.pcap",
    "wannacry-eternalsafety.pcap")]


@pytest.mark.parametrize("trace", TRACES)
def test_trace_decodes_without_error(shared_data: Path, trace: str) -> None:
    """Every SMB1 message of every capture decodes: none of these is malformed (the exploits'
    oversized totals and displacements are legal wire values; their damage is semantic)."""
    count = 0
    for frame in _frames(shared_data / trace):
        if frame[:4] == b"\xfeSMB":
            continue
        message = decode_smb1(frame)
        assert len(message.commands) == len(message.blocks) >= 1
        count += 1
    assert count > 0



# -- what the exploit captures show ---------------------------------------------------------------


def _client_messages(path: Path) -> Iterator[tuple[int, Smb1Message]]:
    """(client port, message) for every SMB1 request of a capture, stream by stream."""
    for (_, sport, _, dport), data in tcp_payloads(path).items():
        if dport == 445:
            for frame in DirectTcpFramer().feed(data):
                if frame.payload[:4] == b"\xffSMB":
                    yield sport, decode_smb1(frame.payload)


def test_eternalblue_metasploit(shared_data: Path) -> None:
    """MS17-010 EternalBlue (Metasploit, Win7 x64): an NT_TRANSACT whose TotalDataCount exceeds
    64 KiB (the srv.sys size-conversion bug) continued by TRANSACTION2_SECONDARY pieces."""
    trace = shared_data / "pcap/exploits/metasploit-ms017-010-win7x64.pcap"
    bodies = [m.body for port, m in _client_messages(trace) if port == 37063]
    nt = [b for b in bodies if isinstance(b, NtTransactRequest)]
    assert len(nt) == 1 and nt[0].total_data_count == 66512 and nt[0].data_count == 976
    secondaries = [b for b in bodies if isinstance(b, TransactionSecondaryRequest)]
    assert len(secondaries) == 16 and {s.command for s in secondaries} == {Command.TRANSACTION2_SECONDARY}
    assert [s.data_displacement for s in secondaries] == [976 + 4096 * i for i in range(16)]
    assert all(s.fid == 0 and s.data_count == len(s.data) == 4096 for s in secondaries)


def test_wannacry_probe_and_doublepulsar(shared_data: Path) -> None:
    """WannaCry: the MS17-010 PeekNmPipe probe (answered 0xC0000205 by the unpatched victims) and
    DoublePulsar pings: TRANSACTION2 SESSION_SETUP (0x0E) with MID 65, opcode 0x23 in Timeout."""
    trace = shared_data / "pcap/exploits/wannacry-eternalsafety.pcap"
    requests = [m for _, m in _client_messages(trace)]
    probes = [m for m in requests if isinstance(m.body, TransactionRequest)]
    bodies: list[Any] = [m.body for m in probes]
    assert probes and all(b.setup == (0x23, 0) and b.name == "\\PIPE\\" and b.fid == 0 for b in bodies)
    answers = [decode_smb1(f) for f in _frames(trace, server=True)]
    insuff = [m for m in answers if m.header.status == NtStatus.INSUFF_SERVER_RESOURCES]
    assert insuff and all(m.header.command == Command.TRANSACTION for m in insuff)
    assert {m.header.mid for m in insuff} <= {m.header.mid for m in probes}
    pings = [m for m in requests if isinstance(m.body, Transaction2Request)]
    ping_bodies: list[Any] = [m.body for m in pings]
    assert pings and all(b.subcommand == 0x0E for b in ping_bodies) and {m.header.mid for m in pings} == {65}
    timeout = ping_bodies[0].timeout
    assert sum(timeout.to_bytes(4, "little")) & 0xFF == 0x23  # DoublePulsar "ping"


def test_eternalchampion_rename(shared_data: Path) -> None:
    """EternalChampion: NT_TRANSACT RENAME (function 5, unimplemented by Windows) each followed by
    its NT_TRANSACT_SECONDARY, the race the EternalSafety notices describe."""
    trace = shared_data / "pcap/exploits/eternalchampion.pcap"
    bodies = [m.body for port, m in _client_messages(trace) if port == 62079]
    nt = [b for b in bodies if isinstance(b, NtTransactRequest)]
    assert nt and {b.function for b in nt} == {5}
    pairs = [(a, b) for a, b in itertools.pairwise(bodies) if isinstance(a, NtTransactRequest)]
    assert any(isinstance(b, TransactionSecondaryRequest) and b.command == Command.NT_TRANSACT_SECONDARY
               for _, b in pairs)


def test_ms04_011_lsass(shared_data: Path) -> None:
    """The Honeynet 2010 attack trace: \\lsarpc opened on IPC$, then a 3232-byte TransactNmPipe
    (the DsRolerUpgradeDownlevelServer overflow) on its FID."""
    trace = shared_data / "pcap/exploits/honeynet-fc2010-attack-trace-ms04-011.pcap"
    bodies = [m.body for _, m in _client_messages(trace)]
    (tree,) = [b for b in bodies if isinstance(b, TreeConnectAndXRequest)]
    assert tree.share == "IPC$"
    (create,) = [b for b in bodies if isinstance(b, NtCreateAndXRequest)]
    assert create.file_name == "\\lsarpc"
    big = [b for b in bodies if isinstance(b, TransactionRequest) and b.data_count == 3232]
    assert len(big) == 1 and big[0].subcommand == 0x26 and big[0].is_complete and len(big[0].data) == 3232


# -- fuzz ----------------------------------------------------------------------------------------

SEEDS = [build() for build, _ in IMPACKET_REQUESTS.values()] + [
    NEGOTIATE_LANMAN, SESSION_SETUP_LEGACY_UNICODE, _packet(_session_setup_extended(), _tree_connect()),
    build_reply(REQUEST, negotiate_extended_response(dialect_index=0, system_time=0, server_guid=bytes(16),
                                                     security_blob=b"blob")),
    build_reply(REQUEST, negotiate_response(dialect_index=0, system_time=0, challenge=bytes(8), domain_name="D",
                                            server_name="S")),
    build_reply(REQUEST, session_setup_extended_response(security_blob=b"x", native_os="a", native_lanman="b")),
    build_reply(REQUEST, tree_connect_response(maximal_share_access=1)),
    build_reply(REQUEST, nt_create_response(fid=1)), build_reply(REQUEST, read_response(data=b"abc")),
    build_reply(REQUEST, transaction_response(parameters=b"p", data=b"d", setup=(1, 2))),
    build_reply(REQUEST, transaction_response(data=b"d", command=Command.NT_TRANSACT)),
]


def _decode_or_protocol_error(raw: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_smb1(raw, max_andx_depth=3)


def test_every_seed_prefix_is_malformed() -> None:
    """Requests and our own responses alike: a message cut anywhere is malformed, never decoded."""
    for seed in SEEDS:
        decode_smb1(seed)
        for cut in range(len(seed)):
            with pytest.raises(ProtocolError):
                decode_smb1(seed[:cut])


INTERESTING_16 = (0, 1, 2, 0x1F, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF)


def test_every_field_overwritten() -> None:
    """Deterministic sweep: each 16-bit position of each seed set to each boundary value, and the
    reply bit flipped; only ProtocolError may escape (about 40 000 decodes)."""
    for seed in SEEDS:
        for position in range(32, len(seed) - 1):
            for value in INTERESTING_16:
                raw = bytearray(seed)
                raw[position:position + 2] = struct.pack("<H", value)
                _decode_or_protocol_error(bytes(raw))
                raw[13] ^= 0x80
                _decode_or_protocol_error(bytes(raw))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.data())
def test_fuzz_mutated_messages(seed: bytes, data: st.DataObject) -> None:
    """Real message shapes with several bytes or 16-bit fields overwritten, cut short, and read as
    the other direction: only ProtocolError may escape."""
    raw = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 5))):
        position = data.draw(st.integers(0, len(raw) - 2))
        if data.draw(st.booleans()):
            raw[position:position + 2] = struct.pack("<H", data.draw(st.sampled_from(INTERESTING_16)))
        else:
            raw[position] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw[13] ^= 0x80
    _decode_or_protocol_error(bytes(raw[:data.draw(st.integers(0, len(raw)))]))
    _decode_or_protocol_error(bytes(raw))


@settings(max_examples=800, deadline=None)
@given(st.sampled_from(sorted(set(range(256)))), st.booleans(), st.integers(0, 0xFFFF), st.binary(max_size=200))
def test_fuzz_any_command(command: int, reply: bool, flags2: int, body: bytes) -> None:
    """Every command code, both directions, any Flags2, arbitrary words and bytes."""
    header = Header(command, flags=0x80 if reply else 0, flags2=flags2)
    _decode_or_protocol_error(header.pack() + body)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=100))
def test_fuzz_raw(data: bytes) -> None:
    _decode_or_protocol_error(data)
    _decode_or_protocol_error(b"\xffSMB" + data)
    with contextlib.suppress(ProtocolError):
        parse_header(b"\xffSMB" + data)
