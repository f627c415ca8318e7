"""Server-side SMB1 responses. Every varying value (challenge, GUID, time, OS strings, sizes,
capabilities, FIDs) is an argument: no clock or randomness here.

Each ``*_response`` function returns a :class:`ReplyPart`; :func:`build_reply` lays one or more
parts out as one message (an AndX chain when there are several: the AndX blocks are filled in
here), under the reply header of the request. A part is rendered at its final offset because
Unicode strings and Trans sections are aligned relative to the header start.

    build_reply(req.header, negotiate_response(...))
    build_reply(req.header, session_setup_response(...), tree_connect_response(...), uid=2049, tid=2048)
    build_error(req.header, NtStatus.ACCESS_DENIED)

Field layouts are those of the matching decoders ([MS-CIFS] 2.2.4.x.2, [MS-SMB] 2.2.4.x.2).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from stormwatch.protocols.smb1.constants import (
    ANDX_COMMANDS,
    FILE_ATTRIBUTE_NORMAL,
    FILE_OPEN,
    NMPIPE_STATUS_MESSAGE_MODE,
    NO_ANDX_COMMAND,
    Capabilities,
    Command,
    FileType,
    Flags2,
    SecurityMode,
)
from stormwatch.protocols.smb1.files import NT_CREATE_RESPONSE_WORDS, READ_RESPONSE_WORDS, WRITE_RESPONSE_WORDS
from stormwatch.protocols.smb1.header import ANDX, Header, build_block, encode_string
from stormwatch.protocols.smb1.session import NEGOTIATE_NT_WORDS
from stormwatch.protocols.smb1.trans import NT_TRANS_RESPONSE_WORDS, TRANS_RESPONSE_WORDS

_UNICODE = int(Flags2.UNICODE)
_EMPTY_BLOCK = build_block(b"", b"")  # WordCount 0, ByteCount 0

#: Render a part whose WordCount byte lands at ``offset`` → (words after the AndX block, data).
Render = Callable[[int, bool], tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class ReplyPart:
    """One response command waiting to be placed: ``render(offset, unicode)``."""

    command: int
    render: Render
    flags2_set: int = 0
    flags2_clear: int = 0


def _fixed(command: int, words: bytes, data: bytes = b"") -> ReplyPart:
    return ReplyPart(command, lambda offset, unicode: (words, data))


def build_reply(request: Header, *parts: ReplyPart, status: int = 0, uid: int | None = None,
                tid: int | None = None, flags2: int | None = None) -> bytes:
    """The complete response message (no transport framing) to ``request``."""
    if not parts:
        raise ValueError("a reply needs at least one part")
    f2 = request.reply_flags2() if flags2 is None else int(flags2)
    for part in parts:
        if part.flags2_set or part.flags2_clear:
            f2 = (f2 | part.flags2_set) & ~part.flags2_clear
    unicode = bool(f2 & _UNICODE)
    out = bytearray(request.pack_reply(status=status, command=parts[0].command, uid=uid, tid=tid, flags2=f2))
    for i, part in enumerate(parts):
        words, data = part.render(len(out), unicode)
        if part.command in ANDX_COMMANDS:
            end = len(out) + 1 + ANDX.size + len(words) + 2 + len(data)
            following = parts[i + 1].command if i + 1 < len(parts) else NO_ANDX_COMMAND
            words = ANDX.pack(following, 0, end if following != NO_ANDX_COMMAND else 0) + words
        elif i + 1 < len(parts):
            raise ValueError(f"command 0x{part.command:02x} cannot be followed in an AndX chain")
        out += build_block(words, data)
    return bytes(out)


def _data_at(offset: int, command: int, words_len: int) -> int:
    """Where the data bytes of a block at ``offset`` start (the AndX block counted for AndX commands)."""
    return offset + 1 + (ANDX.size if command in ANDX_COMMANDS else 0) + words_len + 2


def build_error(request: Header, status: int, command: int | None = None) -> bytes:
    """An error answer: WordCount 0, ByteCount 0 ([MS-CIFS] 2.2.3.1) with an NTSTATUS, e.g.
    STATUS_ACCESS_DENIED, STATUS_OBJECT_NAME_NOT_FOUND, STATUS_NOT_IMPLEMENTED, or
    STATUS_INSUFF_SERVER_RESOURCES, the "unpatched" answer to the MS17-010 PeekNmPipe probe
    (TRANSACTION, Setup[0]=0x23, FID 0 on IPC$) that nmap and Metasploit look for."""
    return request.pack_reply(status=status, command=command) + _EMPTY_BLOCK


def to_filetime(epoch_seconds: float) -> int:
    """Epoch seconds → FILETIME ([MS-DTYP] 2.3.3: 100 ns ticks since 1601-01-01 UTC)."""
    return int(epoch_seconds * 10_000_000) + 116_444_736_000_000_000


# -- NEGOTIATE ---------------------------------------------------------------------------------

DEFAULT_CAPABILITIES = (Capabilities.UNICODE | Capabilities.LARGE_FILES | Capabilities.NT_SMBS
                        | Capabilities.RPC_REMOTE_APIS | Capabilities.STATUS32 | Capabilities.LEVEL_II_OPLOCKS
                        | Capabilities.LOCK_AND_READ | Capabilities.NT_FIND | Capabilities.LARGE_READX
                        | Capabilities.LARGE_WRITEX)


def negotiate_response(*, dialect_index: int, system_time: int, challenge: bytes, domain_name: str,
                       server_name: str, capabilities: int = DEFAULT_CAPABILITIES, server_time_zone: int = 0,
                       security_mode: int = SecurityMode.USER_SECURITY | SecurityMode.ENCRYPT_PASSWORDS,
                       max_mpx_count: int = 50, max_number_vcs: int = 1, max_buffer_size: int = 16644,
                       max_raw_size: int = 65536, session_key: int = 0) -> ReplyPart:
    """NT LM 0.12 without extended security ([MS-CIFS] 2.2.4.52.2): the 8-byte NTLM ``challenge``
    (EncryptionKey), then DomainName and ServerName, Unicode when ``capabilities`` has CAP_UNICODE
    and not 16-bit aligned (as the decoder reads them). ``system_time`` is a FILETIME."""
    caps = capabilities & ~Capabilities.EXTENDED_SECURITY
    unicode = bool(caps & Capabilities.UNICODE)
    words = NEGOTIATE_NT_WORDS.pack(dialect_index, security_mode, max_mpx_count, max_number_vcs, max_buffer_size,
                                    max_raw_size, session_key, caps, system_time, server_time_zone, len(challenge))
    data = challenge + encode_string(domain_name, unicode, 0) + encode_string(server_name, unicode, 0)
    return ReplyPart(Command.NEGOTIATE, lambda offset, uni: (words, data), flags2_clear=Flags2.EXTENDED_SECURITY)


def negotiate_extended_response(*, dialect_index: int, system_time: int, server_guid: bytes, security_blob: bytes,
                                capabilities: int = DEFAULT_CAPABILITIES, server_time_zone: int = 0,
                                security_mode: int = SecurityMode.USER_SECURITY | SecurityMode.ENCRYPT_PASSWORDS,
                                max_mpx_count: int = 50, max_number_vcs: int = 1, max_buffer_size: int = 16644,
                                max_raw_size: int = 65536, session_key: int = 0) -> ReplyPart:
    """NT LM 0.12 with extended security ([MS-SMB] 2.2.4.5.2.1): ServerGUID and the SPNEGO
    NegTokenInit ``security_blob`` (may be empty: the client then starts with raw NTLMSSP)."""
    if len(server_guid) != 16:
        raise ValueError("server_guid must be 16 bytes")
    caps = capabilities | Capabilities.EXTENDED_SECURITY
    words = NEGOTIATE_NT_WORDS.pack(dialect_index, security_mode, max_mpx_count, max_number_vcs, max_buffer_size,
                                    max_raw_size, session_key, caps, system_time, server_time_zone, 0)
    return ReplyPart(Command.NEGOTIATE, lambda offset, uni: (words, server_guid + security_blob),
                     flags2_set=Flags2.EXTENDED_SECURITY)


def negotiate_no_dialect() -> ReplyPart:
    """WordCount 1, DialectIndex 0xFFFF: none of the offered dialects is acceptable."""
    return _fixed(Command.NEGOTIATE, struct.pack("<H", 0xFFFF))


# -- SESSION_SETUP_ANDX, TREE_CONNECT_ANDX, LOGOFF, TREE_DISCONNECT, ECHO ----------------------


def _strings(offset: int, unicode: bool, texts: Sequence[str]) -> bytes:
    out = b""
    for text in texts:
        out += encode_string(text, unicode, offset + len(out))
    return out


def session_setup_response(*, native_os: str, native_lanman: str, primary_domain: str, action: int = 0) -> ReplyPart:
    """[MS-CIFS] 2.2.4.53.2 (WordCount 3); ``action`` 1 = logged on as guest."""
    def render(offset: int, unicode: bool) -> tuple[bytes, bytes]:
        data_at = _data_at(offset, Command.SESSION_SETUP_ANDX, 2)
        return struct.pack("<H", action), _strings(data_at, unicode, (native_os, native_lanman, primary_domain))
    return ReplyPart(Command.SESSION_SETUP_ANDX, render)


def session_setup_extended_response(*, security_blob: bytes, native_os: str, native_lanman: str,
                                    primary_domain: str | None = None, action: int = 0) -> ReplyPart:
    """[MS-SMB] 2.2.4.6.2 (WordCount 4): the SPNEGO/NTLMSSP answer (the NTLM CHALLENGE message with
    STATUS_MORE_PROCESSING_REQUIRED, then an accept-completed token with STATUS_SUCCESS)."""
    def render(offset: int, unicode: bool) -> tuple[bytes, bytes]:
        data_at = _data_at(offset, Command.SESSION_SETUP_ANDX, 4)
        texts = (native_os, native_lanman) if primary_domain is None else (native_os, native_lanman, primary_domain)
        return (struct.pack("<HH", action, len(security_blob)),
                security_blob + _strings(data_at + len(security_blob), unicode, texts))
    return ReplyPart(Command.SESSION_SETUP_ANDX, render)


def tree_connect_response(*, service: str = "IPC", native_file_system: str = "", optional_support: int = 0x0001,
                          maximal_share_access: int | None = None,
                          guest_maximal_share_access: int | None = None) -> ReplyPart:
    """[MS-CIFS] 2.2.4.55.2 (WordCount 3), or [MS-SMB] 2.2.4.7.2 (WordCount 7) when the access
    masks are given (clients ask with TREE_CONNECT_ANDX_EXTENDED_RESPONSE, Flags 0x0008).
    ``service`` is "IPC" for IPC$, "A:" for a disk share; ``native_file_system`` "NTFS" on disks."""
    def render(offset: int, unicode: bool) -> tuple[bytes, bytes]:
        words = struct.pack("<H", optional_support)
        if maximal_share_access is not None:
            words += struct.pack("<II", maximal_share_access, guest_maximal_share_access or 0)
        data_at = _data_at(offset, Command.TREE_CONNECT_ANDX, len(words))
        svc = service.encode("latin-1") + b"\x00"
        return words, svc + encode_string(native_file_system, unicode, data_at + len(svc))
    return ReplyPart(Command.TREE_CONNECT_ANDX, render)


def logoff_response() -> ReplyPart:
    return _fixed(Command.LOGOFF_ANDX, b"")


def tree_disconnect_response() -> ReplyPart:
    return _fixed(Command.TREE_DISCONNECT, b"")


def close_response() -> ReplyPart:
    return _fixed(Command.CLOSE, b"")


def echo_response(*, sequence_number: int, data: bytes) -> ReplyPart:
    """[MS-CIFS] 2.2.4.39.2: one of EchoCount answers, numbered from 1."""
    return _fixed(Command.ECHO, struct.pack("<H", sequence_number), data)


# -- NT_CREATE_ANDX, WRITE_ANDX, READ_ANDX -----------------------------------------------------


def nt_create_response(*, fid: int, create_action: int = FILE_OPEN,
                       ext_file_attributes: int = FILE_ATTRIBUTE_NORMAL,
                       resource_type: int = FileType.MESSAGE_MODE_PIPE,
                       nm_pipe_status: int = NMPIPE_STATUS_MESSAGE_MODE, directory: bool = False,
                       create_time: int = 0, last_access_time: int = 0,
                       last_write_time: int = 0, last_change_time: int = 0, allocation_size: int = 0,
                       end_of_file: int = 0, oplock_level: int = 0) -> ReplyPart:
    """[MS-CIFS] 2.2.4.64.2 (WordCount 34). The defaults describe an opened message-mode named
    pipe as Windows reports \\srvsvc; for a disk file pass resource_type DISK, nm_pipe_status 0."""
    words = NT_CREATE_RESPONSE_WORDS.pack(
        0, 0, 0, oplock_level, fid, create_action, create_time, last_access_time, last_write_time,
        last_change_time, ext_file_attributes, allocation_size, end_of_file, resource_type, nm_pipe_status,
        int(directory))[ANDX.size:]
    return _fixed(Command.NT_CREATE_ANDX, words)


def write_response(*, count: int, available: int = 0xFFFF) -> ReplyPart:
    """[MS-SMB] 2.2.4.3.2 (WordCount 6): ``count`` bytes written (CountHigh carries bits 16-31).
    Windows reports Available 0xFFFF on a pipe."""
    words = WRITE_RESPONSE_WORDS.pack(0, 0, 0, count & 0xFFFF, available, count >> 16, 0)[ANDX.size:]
    return _fixed(Command.WRITE_ANDX, words)


def read_response(*, data: bytes, available: int = 0) -> ReplyPart:
    """[MS-SMB] 2.2.4.2.2 (WordCount 12): ``data`` after one pad byte, DataOffset from the header
    start (60 for a lone response, as Windows sends it); ``available`` is what remains in a pipe."""
    def render(offset: int, unicode: bool) -> tuple[bytes, bytes]:
        data_at = _data_at(offset, Command.READ_ANDX, READ_RESPONSE_WORDS.size - ANDX.size)
        pad = data_at & 1
        words = READ_RESPONSE_WORDS.pack(0, 0, 0, available, 0, 0, len(data) & 0xFFFF, data_at + pad,
                                         len(data) >> 16, bytes(8))[ANDX.size:]
        return words, b"\x00" * pad + data
    return ReplyPart(Command.READ_ANDX, render)


# -- TRANSACTION / TRANSACTION2 / NT_TRANSACT --------------------------------------------------


def transaction_response(*, parameters: bytes = b"", data: bytes = b"", setup: Sequence[int] = (),
                         command: int = Command.TRANSACTION, total_parameter_count: int | None = None,
                         total_data_count: int | None = None, parameter_displacement: int = 0,
                         data_displacement: int = 0) -> ReplyPart:
    """[MS-CIFS] 2.2.4.33.2 / 2.2.4.46.2 / 2.2.4.62.2 (``command`` TRANSACTION, TRANSACTION2 or
    NT_TRANSACT): parameters and data each aligned on 4 bytes from the header start, as Windows
    does. For TransactNmPipe the DCE/RPC answer goes in ``data``. Totals default to this piece."""
    tpc = len(parameters) if total_parameter_count is None else total_parameter_count
    tdc = len(data) if total_data_count is None else total_data_count
    nt = command == Command.NT_TRANSACT
    fixed = NT_TRANS_RESPONSE_WORDS if nt else TRANS_RESPONSE_WORDS

    def render(offset: int, unicode: bool) -> tuple[bytes, bytes]:
        data_at = offset + 1 + fixed.size + 2 * len(setup) + 2
        pad1 = -data_at % 4
        param_at = data_at + pad1
        pad2 = -(param_at + len(parameters)) % 4
        d_at = param_at + len(parameters) + pad2
        p_off = param_at if parameters else 0
        d_off = d_at if data else 0
        if nt:
            words = fixed.pack(bytes(3), tpc, tdc, len(parameters), p_off, parameter_displacement, len(data), d_off,
                               data_displacement, len(setup))
        else:
            words = fixed.pack(tpc, tdc, 0, len(parameters), p_off, parameter_displacement, len(data), d_off,
                               data_displacement, len(setup), 0)
        words += struct.pack(f"<{len(setup)}H", *setup)
        return words, bytes(pad1) + parameters + bytes(pad2) + data
    return ReplyPart(command, render)


def transaction_interim_response(command: int = Command.TRANSACTION) -> ReplyPart:
    """The empty answer that invites a client's secondary requests ([MS-CIFS] 3.3.5.57)."""
    return _fixed(command, b"")
