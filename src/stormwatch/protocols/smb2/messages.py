"""Whole SMB2 messages: header + typed body, for every message of a transport frame.

    for message in parse_frame(frame):            # frame: one NBSS / direct-TCP payload
        message.header.command, message.body      # body: a request or response dataclass

Requests and responses are told apart by the header's SERVER_TO_REDIR flag. Commands without a
body codec here (QUERY_INFO, QUERY_DIRECTORY, LOCK, ...) come back as :class:`Unparsed` with the
body bytes, so the sensor can answer STATUS_NOT_SUPPORTED and still log the command. A failure
response is an :class:`~session.ErrorResponse` ([MS-SMB2] 2.2.2) except SESSION_SETUP's
STATUS_MORE_PROCESSING_REQUIRED leg and the BUFFER_OVERFLOW of a READ or IOCTL, which carry the
normal body ([MS-SMB2] 3.3.4.4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stormwatch.protocols.ntstatus import NtStatus
from stormwatch.protocols.smb2 import files, negotiate, session
from stormwatch.protocols.smb2.constants import HEADER_SIZE, MAX_COMPOUND, Command
from stormwatch.protocols.smb2.header import Header, parse_header, split_compound
from stormwatch.protocols.wire import Layout

_STRUCTURE_SIZE = Layout("SMB2 body", "<", (("structure_size", "H"),))


@dataclass(frozen=True, slots=True)
class Unparsed:
    """A body this package does not decode; ``data`` is the body bytes after the header."""

    command: int
    structure_size: int
    data: bytes


Body = (
    negotiate.NegotiateRequest | negotiate.NegotiateResponse
    | session.SessionSetupRequest | session.SessionSetupResponse
    | session.TreeConnectRequest | session.TreeConnectResponse
    | session.EmptyBody | session.ErrorResponse
    | files.CreateRequest | files.CreateResponse | files.CloseRequest | files.CloseResponse
    | files.ReadRequest | files.ReadResponse | files.WriteRequest | files.WriteResponse
    | files.IoctlRequest | files.IoctlResponse
    | Unparsed
)


@dataclass(frozen=True, slots=True)
class Message:
    """One SMB2 message. ``raw`` is its bytes, header included (3.1.1 preauth hashing and
    signing work on them)."""

    header: Header
    body: Body
    raw: bytes


_EMPTY = (Command.LOGOFF, Command.TREE_DISCONNECT, Command.ECHO)

_REQUESTS: dict[int, Callable[[bytes], Body]] = {
    Command.NEGOTIATE: negotiate.parse_negotiate_request,
    Command.SESSION_SETUP: session.parse_session_setup_request,
    Command.TREE_CONNECT: session.parse_tree_connect_request,
    Command.CREATE: files.parse_create_request,
    Command.CLOSE: files.parse_close_request,
    Command.READ: files.parse_read_request,
    Command.WRITE: files.parse_write_request,
    Command.IOCTL: files.parse_ioctl_request,
}
_RESPONSES: dict[int, Callable[[bytes], Body]] = {
    Command.NEGOTIATE: negotiate.parse_negotiate_response,
    Command.SESSION_SETUP: session.parse_session_setup_response,
    Command.TREE_CONNECT: session.parse_tree_connect_response,
    Command.CREATE: files.parse_create_response,
    Command.CLOSE: files.parse_close_response,
    Command.READ: files.parse_read_response,
    Command.WRITE: files.parse_write_response,
    Command.IOCTL: files.parse_ioctl_response,
}


def _unparsed(msg: bytes, command: int) -> Unparsed:
    (size,) = _STRUCTURE_SIZE.unpack(msg, HEADER_SIZE)
    return Unparsed(command, size, msg[HEADER_SIZE:])


def _is_error(header: Header, msg: bytes) -> bool:
    if header.status == NtStatus.SUCCESS:
        return False
    if header.command == Command.SESSION_SETUP and header.status == NtStatus.MORE_PROCESSING_REQUIRED:
        return False
    if header.status == NtStatus.BUFFER_OVERFLOW and header.command in (Command.READ, Command.IOCTL):
        return False
    # Any other status: an ERROR body ([MS-SMB2] 2.2.2) if the size says so (STATUS_PENDING interim
    # answers included), else the command's own body, as some warnings come with data.
    (size,) = _STRUCTURE_SIZE.unpack(msg, HEADER_SIZE)
    return bool(size == 9)


def parse_message(msg: bytes) -> Message:
    """One message (from :func:`header.split_compound`), header included."""
    msg = bytes(msg)
    header = parse_header(msg)
    command = header.command
    body: Body
    if header.is_response and _is_error(header, msg):
        body = session.parse_error(msg)
    elif command in _EMPTY:
        body = session.parse_empty(msg, command)
    elif header.is_response:
        parser = _RESPONSES.get(command)
        body = parser(msg) if parser is not None else _unparsed(msg, command)
    else:
        parser = _REQUESTS.get(command)
        body = parser(msg) if parser is not None else _unparsed(msg, command)
    return Message(header, body, msg)


def parse_frame(frame: bytes, max_messages: int = MAX_COMPOUND) -> tuple[Message, ...]:
    """Every message of one transport frame (a single message or a compound chain)."""
    return tuple(parse_message(m) for m in split_compound(frame, max_messages))
