"""SMB2 SESSION_SETUP, LOGOFF, TREE_CONNECT, TREE_DISCONNECT, ECHO and the ERROR response
([MS-SMB2] 2.2.2, 2.2.5 - 2.2.10, 2.2.28, 2.2.29).

An NTLM logon over SMB2 takes two SESSION_SETUP round trips ([MS-SMB2] 3.3.5.5): the client's
NEGOTIATE token is answered with the server's CHALLENGE under STATUS_MORE_PROCESSING_REQUIRED and
a new SessionId; the AUTHENTICATE token is answered with STATUS_SUCCESS and the final SPNEGO
token. Body builders return the body only; :func:`header.build_message` puts the header on.
"""

from __future__ import annotations

from dataclasses import dataclass

from stormwatch.protocols.smb2.constants import HEADER_SIZE, ShareType
from stormwatch.protocols.smb2.util import check_size, field, utf16
from stormwatch.protocols.wire import Layout

_BODY = HEADER_SIZE

#: [MS-SMB2] 2.2.5 SESSION_SETUP request, fixed part.
SESSION_SETUP_REQUEST = Layout("SMB2 SESSION_SETUP request", "<", (
    ("structure_size", "H"),  # 25
    ("flags", "B"),           # SMB2_SESSION_FLAG_BINDING (0x01): a 3.x channel bind
    ("security_mode", "B"),
    ("capabilities", "I"),
    ("channel", "I"),
    ("security_offset", "H"),
    ("security_length", "H"),
    ("previous_session_id", "Q"),
))
#: [MS-SMB2] 2.2.6 SESSION_SETUP response, fixed part; the buffer follows at 72.
SESSION_SETUP_RESPONSE = Layout("SMB2 SESSION_SETUP response", "<", (
    ("structure_size", "H"),  # 9
    ("session_flags", "H"),
    ("security_offset", "H"),
    ("security_length", "H"),
))
#: [MS-SMB2] 2.2.9 TREE_CONNECT request, fixed part.
TREE_CONNECT_REQUEST = Layout("SMB2 TREE_CONNECT request", "<", (
    ("structure_size", "H"),  # 9
    ("flags", "H"),           # 3.1.1 only: CLUSTER_RECONNECT 1, REDIRECT_TO_OWNER 2, EXTENSION_PRESENT 4
    ("path_offset", "H"),
    ("path_length", "H"),
))
#: [MS-SMB2] 2.2.10 TREE_CONNECT response.
TREE_CONNECT_RESPONSE = Layout("SMB2 TREE_CONNECT response", "<", (
    ("structure_size", "H"),  # 16
    ("share_type", "B"),
    ("reserved", "B"),
    ("share_flags", "I"),
    ("capabilities", "I"),
    ("maximal_access", "I"),
))
#: [MS-SMB2] 2.2.7/2.2.8 LOGOFF, 2.2.11/2.2.12 TREE_DISCONNECT, 2.2.28/2.2.29 ECHO: request and
#: response alike are StructureSize 4 and two reserved bytes.
EMPTY_BODY = Layout("SMB2 empty body", "<", (("structure_size", "H"), ("reserved", "H")))
#: [MS-SMB2] 2.2.2 ERROR response, fixed part.
ERROR_RESPONSE = Layout("SMB2 ERROR response", "<", (
    ("structure_size", "H"),  # 9
    ("error_context_count", "B"),
    ("reserved", "B"),
    ("byte_count", "I"),
))

#: What Windows Server 2008 R2 answers for IPC$ (suricata-verify smb-filename trace): ShareFlags
#: SMB2_SHAREFLAG_NO_CACHING, MaximalAccess 0x011F01FF (full access plus ACCESS_SYSTEM_SECURITY).
IPC_SHARE_FLAGS = 0x00000030
IPC_MAXIMAL_ACCESS = 0x011F01FF


@dataclass(frozen=True, slots=True)
class SessionSetupRequest:
    """[MS-SMB2] 2.2.5. ``security_buffer`` is the SPNEGO (or raw NTLMSSP) token."""

    flags: int
    security_mode: int
    capabilities: int
    channel: int
    previous_session_id: int
    security_buffer: bytes


@dataclass(frozen=True, slots=True)
class SessionSetupResponse:
    """[MS-SMB2] 2.2.6."""

    session_flags: int
    security_buffer: bytes


@dataclass(frozen=True, slots=True)
class TreeConnectRequest:
    """[MS-SMB2] 2.2.9: ``path`` is ``\\\\server\\share`` as the client typed it."""

    flags: int
    path: str

    @property
    def share(self) -> str:
        """The share name, upper-cased as Windows compares it (``IPC$``, ``C$``, ...)."""
        return self.path.rstrip("\\").rsplit("\\", 1)[-1].upper()


@dataclass(frozen=True, slots=True)
class TreeConnectResponse:
    """[MS-SMB2] 2.2.10."""

    share_type: int
    share_flags: int
    capabilities: int
    maximal_access: int


@dataclass(frozen=True, slots=True)
class EmptyBody:
    """The body of LOGOFF, TREE_DISCONNECT and ECHO, requests and responses."""

    command: int


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """[MS-SMB2] 2.2.2; ``data`` is ErrorData (a single zero byte when ByteCount is 0)."""

    error_context_count: int
    data: bytes


def parse_session_setup_request(msg: bytes) -> SessionSetupRequest:
    what = "SMB2 SESSION_SETUP request"
    msg = bytes(msg)
    f = SESSION_SETUP_REQUEST.unpack_dict(msg, _BODY)
    check_size(f["structure_size"], 25, what, _BODY)
    return SessionSetupRequest(f["flags"], f["security_mode"], f["capabilities"], f["channel"],
                               f["previous_session_id"],
                               field(msg, f["security_offset"], f["security_length"], what))


def build_session_setup_response(security_buffer: bytes, session_flags: int = 0) -> bytes:
    """[MS-SMB2] 2.2.6 body; the caller sets STATUS_MORE_PROCESSING_REQUIRED in the header for the
    challenge leg, and SessionFlags IS_GUEST / IS_NULL (anonymous) on the last leg as the persona
    decides ([MS-SMB2] 3.3.5.5.3)."""
    offset = _BODY + SESSION_SETUP_RESPONSE.size
    body = SESSION_SETUP_RESPONSE.pack(9, session_flags, offset if security_buffer else 0, len(security_buffer))
    return body + (security_buffer or b"\x00")  # StructureSize 9 counts one byte of Buffer


def parse_session_setup_response(msg: bytes) -> SessionSetupResponse:
    what = "SMB2 SESSION_SETUP response"
    msg = bytes(msg)
    f = SESSION_SETUP_RESPONSE.unpack_dict(msg, _BODY)
    check_size(f["structure_size"], 9, what, _BODY)
    return SessionSetupResponse(f["session_flags"], field(msg, f["security_offset"], f["security_length"], what))


def parse_tree_connect_request(msg: bytes) -> TreeConnectRequest:
    """[MS-SMB2] 2.2.9. With the 3.1.1 EXTENSION_PRESENT flag, PathOffset/PathLength still locate
    the path (inside the 2.2.9.1 extension); the tree connect contexts are not decoded."""
    what = "SMB2 TREE_CONNECT request"
    msg = bytes(msg)
    size, flags, offset, length = TREE_CONNECT_REQUEST.unpack(msg, _BODY)
    check_size(size, 9, what, _BODY)
    return TreeConnectRequest(flags, utf16(field(msg, offset, length, what), what, "Path", offset))


def build_tree_connect_response(share_type: int = ShareType.PIPE, *, share_flags: int = IPC_SHARE_FLAGS,
                                capabilities: int = 0, maximal_access: int = IPC_MAXIMAL_ACCESS) -> bytes:
    """[MS-SMB2] 2.2.10 body (the new TreeId goes in the header). The defaults are Windows' IPC$
    answer; a disk share usually gets ShareFlags 0 (manual caching)."""
    return TREE_CONNECT_RESPONSE.pack(16, share_type, 0, share_flags, capabilities, maximal_access)


def parse_tree_connect_response(msg: bytes) -> TreeConnectResponse:
    what = "SMB2 TREE_CONNECT response"
    size, share_type, _reserved, share_flags, caps, access = TREE_CONNECT_RESPONSE.unpack(bytes(msg), _BODY)
    check_size(size, 16, what, _BODY)
    return TreeConnectResponse(share_type, share_flags, caps, access)


def parse_empty(msg: bytes, command: int) -> EmptyBody:
    """LOGOFF, TREE_DISCONNECT or ECHO ([MS-SMB2] 2.2.7, 2.2.11, 2.2.28): nothing but the size."""
    size, _reserved = EMPTY_BODY.unpack(bytes(msg), _BODY)
    check_size(size, 4, "SMB2 empty body", _BODY)
    return EmptyBody(command)


def build_empty() -> bytes:
    """The LOGOFF / TREE_DISCONNECT / ECHO response body ([MS-SMB2] 2.2.8, 2.2.12, 2.2.29)."""
    return EMPTY_BODY.pack(4, 0)


def build_error(data: bytes = b"") -> bytes:
    """[MS-SMB2] 2.2.2 ERROR body to go with a failure status: ByteCount 0 and the one zero byte
    of ErrorData the spec requires then, unless ``data`` is given (e.g. a symbolic-link error)."""
    return ERROR_RESPONSE.pack(9, 0, 0, len(data)) + (data or b"\x00")


def parse_error(msg: bytes) -> ErrorResponse:
    what = "SMB2 ERROR response"
    msg = bytes(msg)
    size, count, _reserved, byte_count = ERROR_RESPONSE.unpack(msg, _BODY)
    check_size(size, 9, what, _BODY)
    start = _BODY + ERROR_RESPONSE.size
    # ByteCount 0 still comes with one byte of ErrorData, which some servers omit: take what is there.
    data = field(msg, start, byte_count, what) if byte_count else msg[start:start + 1]
    return ErrorResponse(count, data)
