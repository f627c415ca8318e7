"""SMB1 session-level commands, requests and responses decoded: NEGOTIATE ([MS-CIFS] 2.2.4.52,
[MS-SMB] 2.2.4.5), SESSION_SETUP_ANDX ([MS-CIFS] 2.2.4.53, [MS-SMB] 2.2.4.6), TREE_CONNECT_ANDX
([MS-CIFS] 2.2.4.55, [MS-SMB] 2.2.4.7), LOGOFF_ANDX (2.2.4.54), TREE_DISCONNECT (2.2.4.51),
ECHO (2.2.4.39)."""

from __future__ import annotations

import calendar
from dataclasses import dataclass

from stormwatch.protocols.errors import MalformedMessage
from stormwatch.protocols.smb1.constants import Capabilities
from stormwatch.protocols.smb1.header import (
    ANDX,
    ANDX_FIELDS,
    CommandBlock,
    Header,
    Smb1Body,
    read_string,
    require_complete,
    unpack_words,
)
from stormwatch.protocols.wire import Layout

# -- NEGOTIATE ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NegotiateRequest(Smb1Body):
    """[MS-CIFS] 2.2.4.52.1: the dialects the client offers, in its order (index = position)."""

    dialects: tuple[str, ...]


def decode_negotiate_request(block: CommandBlock, header: Header, msg: bytes) -> NegotiateRequest:
    what = "NEGOTIATE request"
    if block.words:
        raise MalformedMessage(what, "WordCount", block.offset, f"{block.word_count} words, expected 0")
    require_complete(block, what)
    dialects: list[str] = []
    data, pos = block.data, 0
    while pos < len(data):
        if data[pos] != 0x02:  # BufferFormat: dialect string
            raise MalformedMessage(what, "BufferFormat", block.data_offset + pos, f"0x{data[pos]:02x}, expected 0x02")
        end = data.find(b"\x00", pos + 1)
        if end < 0:
            raise MalformedMessage(what, "DialectString", block.data_offset + pos + 1, "no terminator")
        dialects.append(data[pos + 1:end].decode("latin-1"))
        pos = end + 1
    return NegotiateRequest(tuple(dialects))


#: [MS-CIFS] 2.2.4.52.2 NT LM 0.12 response words (WordCount 17).
NEGOTIATE_NT_WORDS = Layout("NEGOTIATE NT LM 0.12 response", "<", (
    ("dialect_index", "H"), ("security_mode", "B"), ("max_mpx_count", "H"), ("max_number_vcs", "H"),
    ("max_buffer_size", "I"), ("max_raw_size", "I"), ("session_key", "I"), ("capabilities", "I"),
    ("system_time", "Q"), ("server_time_zone", "h"), ("challenge_length", "B")))
#: [SMB-LM21] / [MS-CIFS] 2.2.4.52.2 LAN Manager response words (WordCount 13).
NEGOTIATE_LANMAN_WORDS = Layout("NEGOTIATE LANMAN response", "<", (
    ("dialect_index", "H"), ("security_mode", "H"), ("max_buffer_size", "H"), ("max_mpx_count", "H"),
    ("max_number_vcs", "H"), ("raw_mode", "H"), ("session_key", "I"), ("server_time", "H"),
    ("server_date", "H"), ("server_time_zone", "h"), ("encryption_key_length", "H"), ("reserved", "H")))


@dataclass(frozen=True, slots=True)
class NegotiateResponse(Smb1Body):
    """NT LM 0.12 answer. Non-extended: ``challenge``, ``domain_name``, ``server_name``; extended
    ([MS-SMB] 2.2.4.5.2.1, CAP_EXTENDED_SECURITY): ``server_guid`` and ``security_blob``.
    ``system_time`` is a FILETIME (100 ns since 1601), ``server_time_zone`` minutes from UTC."""

    dialect_index: int
    security_mode: int
    max_mpx_count: int
    max_number_vcs: int
    max_buffer_size: int
    max_raw_size: int
    session_key: int
    capabilities: int
    system_time: int
    server_time_zone: int
    challenge: bytes = b""
    domain_name: str = ""
    server_name: str = ""
    server_guid: bytes = b""
    security_blob: bytes = b""

    @property
    def extended_security(self) -> bool:
        return bool(self.capabilities & Capabilities.EXTENDED_SECURITY)


@dataclass(frozen=True, slots=True)
class NegotiateResponseLanman(Smb1Body):
    """LAN Manager 1.0-2.1 answer (WordCount 13). ``server_time`` reads the DOS date and time as
    UTC epoch seconds, ignoring ``server_time_zone`` as Zeek does; ``primary_domain`` is an OEM
    string (Zeek decodes it as UTF-16 when Flags2 says Unicode, which garbles it)."""

    dialect_index: int
    security_mode: int
    max_buffer_size: int
    max_mpx_count: int
    max_number_vcs: int
    raw_mode: int
    session_key: int
    server_time: float
    server_time_zone: int
    encryption_key: bytes
    primary_domain: str


@dataclass(frozen=True, slots=True)
class NegotiateResponseCore(Smb1Body):
    """WordCount 1: the core dialect, or 0xFFFF when no offered dialect is acceptable."""

    dialect_index: int


def dos_datetime(date: int, time: int) -> float:
    """[MS-CIFS] 2.2.1.4.1-2 SMB_DATE / SMB_TIME → epoch seconds (as if UTC); 0.0 when invalid."""
    year, month, day = 1980 + (date >> 9), date >> 5 & 0x0F, date & 0x1F
    hour, minute, second = time >> 11, time >> 5 & 0x3F, (time & 0x1F) * 2
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 60):
        return 0.0
    return float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))


def decode_negotiate_response(block: CommandBlock, header: Header, msg: bytes) -> Smb1Body:
    what = "NEGOTIATE response"
    require_complete(block, what)
    data = block.data
    if block.word_count == 1:
        return NegotiateResponseCore(int.from_bytes(block.words, "little"))
    if block.word_count == 13:
        (index, mode, maxbuf, mpx, vcs, raw, key, time, date, tz, key_len, _) = unpack_words(
            block, NEGOTIATE_LANMAN_WORDS, what)
        if key_len > len(data):
            raise MalformedMessage(what, "EncryptionKeyLength", block.offset + 23,
                                   f"{key_len} bytes, {len(data)} present")
        domain, _ = read_string(data, key_len, block.data_offset, False)
        return NegotiateResponseLanman(index, mode, maxbuf, mpx, vcs, raw, key, dos_datetime(date, time), tz,
                                       data[:key_len], domain)
    (index, mode, mpx, vcs, maxbuf, maxraw, key, caps, systime, tz, chal_len) = unpack_words(
        block, NEGOTIATE_NT_WORDS, what)
    fixed = (index, mode, mpx, vcs, maxbuf, maxraw, key, caps, systime, tz)
    if caps & Capabilities.EXTENDED_SECURITY:
        if len(data) < 16:
            raise MalformedMessage(what, "ServerGUID", block.data_offset, f"{len(data)} bytes, the GUID needs 16")
        return NegotiateResponse(*fixed, server_guid=data[:16], security_blob=data[16:])
    if chal_len > len(data):
        raise MalformedMessage(what, "ChallengeLength", block.offset + 34, f"{chal_len} bytes, {len(data)} present")
    # These two strings are not 16-bit aligned (Samba's answers in Zeek's smb1_transaction_*.pcap
    # put them right after the challenge, at an odd offset); they are Unicode when the server's
    # capabilities say CAP_UNICODE.
    unicode = bool(caps & Capabilities.UNICODE)
    domain, pos = read_string(data, chal_len, block.data_offset, unicode, align=False)
    server, _ = read_string(data, pos, block.data_offset, unicode, align=False)
    return NegotiateResponse(*fixed, challenge=data[:chal_len], domain_name=domain, server_name=server)


# -- SESSION_SETUP_ANDX ------------------------------------------------------------------------

#: [MS-CIFS] 2.2.4.53.1 NT LM 0.12 request words (WordCount 13): passwords in the clear or as
#: LM/NTLM responses, account and domain as strings.
SESSION_SETUP_NT_WORDS = Layout("SESSION_SETUP_ANDX NT LM 0.12 request", "<", (*ANDX_FIELDS,
    ("max_buffer_size", "H"), ("max_mpx_count", "H"), ("vc_number", "H"), ("session_key", "I"),
    ("oem_password_len", "H"), ("unicode_password_len", "H"), ("reserved", "I"), ("capabilities", "I")))
#: [MS-SMB] 2.2.4.6.1 extended-security request words (WordCount 12): a GSS/SPNEGO or NTLMSSP blob.
SESSION_SETUP_EXT_WORDS = Layout("SESSION_SETUP_ANDX extended request", "<", (*ANDX_FIELDS,
    ("max_buffer_size", "H"), ("max_mpx_count", "H"), ("vc_number", "H"), ("session_key", "I"),
    ("security_blob_len", "H"), ("reserved", "I"), ("capabilities", "I")))
#: [MS-CIFS] 2.2.4.53.1 / [XOPEN-SMB] LAN Manager request words (WordCount 10): one password.
SESSION_SETUP_LM_WORDS = Layout("SESSION_SETUP_ANDX LANMAN request", "<", (*ANDX_FIELDS,
    ("max_buffer_size", "H"), ("max_mpx_count", "H"), ("vc_number", "H"), ("session_key", "I"),
    ("password_len", "H"), ("reserved", "I")))
#: [MS-CIFS] 2.2.4.53.2 response words (WordCount 3); [MS-SMB] 2.2.4.6.2 adds the blob length.
SESSION_SETUP_RESPONSE_WORDS = Layout("SESSION_SETUP_ANDX response", "<", (*ANDX_FIELDS, ("action", "H")))
SESSION_SETUP_EXT_RESPONSE_WORDS = Layout("SESSION_SETUP_ANDX extended response", "<", (*ANDX_FIELDS,
    ("action", "H"), ("security_blob_len", "H")))


@dataclass(frozen=True, slots=True)
class SessionSetupAndXRequest(Smb1Body):
    """Legacy (non-extended) logon: WordCount 13 (NT LM 0.12, ``capabilities`` set) or 10 (LAN
    Manager: one password in ``oem_password``, ``capabilities`` None). A null session has empty
    passwords and account."""

    max_buffer_size: int
    max_mpx_count: int
    vc_number: int
    session_key: int
    capabilities: int | None
    oem_password: bytes
    unicode_password: bytes
    account: str
    primary_domain: str
    native_os: str
    native_lanman: str


@dataclass(frozen=True, slots=True)
class SessionSetupAndXExtendedRequest(Smb1Body):
    """Extended-security logon ([MS-SMB] 2.2.4.6.1): the SPNEGO/NTLMSSP token in ``security_blob``."""

    max_buffer_size: int
    max_mpx_count: int
    vc_number: int
    session_key: int
    capabilities: int
    security_blob: bytes
    native_os: str
    native_lanman: str


def _strings(block: CommandBlock, pos: int, unicode: bool, count: int) -> list[str]:
    out = []
    for _ in range(count):
        text, pos = read_string(block.data, pos, block.data_offset, unicode)
        out.append(text)
    return out


def _lengths_fit(block: CommandBlock, total: int, field: str, what: str) -> None:
    if total > len(block.data):
        raise MalformedMessage(what, field, block.offset, f"{total} bytes declared, {len(block.data)} present")


def decode_session_setup_request(block: CommandBlock, header: Header, msg: bytes) -> Smb1Body:
    what = "SESSION_SETUP_ANDX request"
    require_complete(block, what)
    uni = header.unicode
    if block.word_count == 12:
        (_, _, _, maxbuf, mpx, vc, key, blob_len, _, caps) = unpack_words(block, SESSION_SETUP_EXT_WORDS, what)
        _lengths_fit(block, blob_len, "SecurityBlobLength", what)
        native_os, native_lanman = _strings(block, blob_len, uni, 2)
        return SessionSetupAndXExtendedRequest(maxbuf, mpx, vc, key, caps, block.data[:blob_len],
                                               native_os, native_lanman)
    if block.word_count == 10:
        (_, _, _, maxbuf, mpx, vc, key, pw_len, _) = unpack_words(block, SESSION_SETUP_LM_WORDS, what)
        _lengths_fit(block, pw_len, "PasswordLength", what)
        account, domain, native_os, native_lanman = _strings(block, pw_len, uni, 4)
        return SessionSetupAndXRequest(maxbuf, mpx, vc, key, None, block.data[:pw_len], b"",
                                       account, domain, native_os, native_lanman)
    (_, _, _, maxbuf, mpx, vc, key, oem_len, uni_len, _, caps) = unpack_words(block, SESSION_SETUP_NT_WORDS, what)
    _lengths_fit(block, oem_len + uni_len, "PasswordLength", what)
    account, domain, native_os, native_lanman = _strings(block, oem_len + uni_len, uni, 4)
    return SessionSetupAndXRequest(maxbuf, mpx, vc, key, caps, block.data[:oem_len],
                                   block.data[oem_len:oem_len + uni_len], account, domain, native_os, native_lanman)


@dataclass(frozen=True, slots=True)
class SessionSetupAndXResponse(Smb1Body):
    """[MS-CIFS] 2.2.4.53.2 (WordCount 3) or, with ``security_blob`` not None, [MS-SMB] 2.2.4.6.2
    (WordCount 4). ``action`` bit 0 = logged on as guest."""

    action: int
    native_os: str
    native_lanman: str
    primary_domain: str
    security_blob: bytes | None = None


def decode_session_setup_response(block: CommandBlock, header: Header, msg: bytes) -> Smb1Body:
    what = "SESSION_SETUP_ANDX response"
    require_complete(block, what)
    if block.word_count == 4:
        (_, _, _, action, blob_len) = unpack_words(block, SESSION_SETUP_EXT_RESPONSE_WORDS, what)
        _lengths_fit(block, blob_len, "SecurityBlobLength", what)
        native_os, native_lanman, domain = _strings(block, blob_len, header.unicode, 3)
        return SessionSetupAndXResponse(action, native_os, native_lanman, domain, block.data[:blob_len])
    (_, _, _, action) = unpack_words(block, SESSION_SETUP_RESPONSE_WORDS, what)
    native_os, native_lanman, domain = _strings(block, 0, header.unicode, 3)
    return SessionSetupAndXResponse(action, native_os, native_lanman, domain)


# -- TREE_CONNECT_ANDX -------------------------------------------------------------------------

#: [MS-CIFS] 2.2.4.55.1 request words (WordCount 4) and 2.2.4.55.2 response words (WordCount 3).
TREE_CONNECT_WORDS = Layout("TREE_CONNECT_ANDX request", "<", (*ANDX_FIELDS, ("flags", "H"), ("password_len", "H")))
TREE_CONNECT_RESPONSE_WORDS = Layout("TREE_CONNECT_ANDX response", "<", (*ANDX_FIELDS, ("optional_support", "H")))
#: [MS-SMB] 2.2.4.7.2 extended response (WordCount 7), sent when the request's Flags has 0x0008.
TREE_CONNECT_EXT_RESPONSE_WORDS = Layout("TREE_CONNECT_ANDX extended response", "<", (*ANDX_FIELDS,
    ("optional_support", "H"), ("maximal_share_access", "I"), ("guest_maximal_share_access", "I")))


@dataclass(frozen=True, slots=True)
class TreeConnectAndXRequest(Smb1Body):
    """[MS-CIFS] 2.2.4.55.1: ``path`` like ``\\\\HOST\\IPC$``; ``service`` is always OEM
    ("?????" any, "IPC", "A:" disk, "LPT1:" printer)."""

    flags: int
    password: bytes
    path: str
    service: str

    @property
    def share(self) -> str:
        """The share name: the last component of ``path`` (``IPC$``), upper-cased."""
        return self.path.replace("/", "\\").rstrip("\\").rsplit("\\", 1)[-1].upper()


def decode_tree_connect_request(block: CommandBlock, header: Header, msg: bytes) -> TreeConnectAndXRequest:
    what = "TREE_CONNECT_ANDX request"
    require_complete(block, what)
    (_, _, _, flags, pw_len) = unpack_words(block, TREE_CONNECT_WORDS, what)
    _lengths_fit(block, pw_len, "PasswordLength", what)
    path, pos = read_string(block.data, pw_len, block.data_offset, header.unicode)
    service, _ = read_string(block.data, pos, block.data_offset, False)
    return TreeConnectAndXRequest(flags, block.data[:pw_len], path, service)


@dataclass(frozen=True, slots=True)
class TreeConnectAndXResponse(Smb1Body):
    """[MS-CIFS] 2.2.4.55.2 / [MS-SMB] 2.2.4.7.2; the access masks are None in the short form."""

    optional_support: int
    service: str
    native_file_system: str
    maximal_share_access: int | None = None
    guest_maximal_share_access: int | None = None


def decode_tree_connect_response(block: CommandBlock, header: Header, msg: bytes) -> TreeConnectAndXResponse:
    what = "TREE_CONNECT_ANDX response"
    require_complete(block, what)
    maximal: int | None = None
    guest: int | None = None
    if block.word_count == 7:
        (_, _, _, support, maximal, guest) = unpack_words(block, TREE_CONNECT_EXT_RESPONSE_WORDS, what)
    else:
        (_, _, _, support) = unpack_words(block, TREE_CONNECT_RESPONSE_WORDS, what)
    service, pos = read_string(block.data, 0, block.data_offset, False)
    native_fs, _ = read_string(block.data, pos, block.data_offset, header.unicode)
    return TreeConnectAndXResponse(support, service, native_fs, maximal, guest)


# -- LOGOFF_ANDX, TREE_DISCONNECT, ECHO --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogoffAndX(Smb1Body):
    """[MS-CIFS] 2.2.4.54: request and response are both the AndX block alone."""


@dataclass(frozen=True, slots=True)
class TreeDisconnect(Smb1Body):
    """[MS-CIFS] 2.2.4.51: request and response carry nothing; the header's TID says which tree."""


def decode_logoff(block: CommandBlock, header: Header, msg: bytes) -> LogoffAndX:
    unpack_words(block, ANDX, "LOGOFF_ANDX")
    return LogoffAndX()


def decode_tree_disconnect(block: CommandBlock, header: Header, msg: bytes) -> TreeDisconnect:
    if block.words:
        raise MalformedMessage("TREE_DISCONNECT", "WordCount", block.offset, f"{block.word_count} words, expected 0")
    return TreeDisconnect()


@dataclass(frozen=True, slots=True)
class EchoRequest(Smb1Body):
    """[MS-CIFS] 2.2.4.39.1: the server answers ``echo_count`` times with ``data``."""

    echo_count: int
    data: bytes


@dataclass(frozen=True, slots=True)
class EchoResponse(Smb1Body):
    sequence_number: int
    data: bytes


#: [MS-CIFS] 2.2.4.39.1 EchoCount / 2.2.4.39.2 SequenceNumber (WordCount 1).
ECHO_WORDS = Layout("ECHO", "<", (("count", "H"),))


def decode_echo_request(block: CommandBlock, header: Header, msg: bytes) -> EchoRequest:
    require_complete(block, "ECHO request")
    (count,) = unpack_words(block, ECHO_WORDS, "ECHO request")
    return EchoRequest(count, block.data)


def decode_echo_response(block: CommandBlock, header: Header, msg: bytes) -> EchoResponse:
    require_complete(block, "ECHO response")
    (seq,) = unpack_words(block, ECHO_WORDS, "ECHO response")
    return EchoResponse(seq, block.data)
