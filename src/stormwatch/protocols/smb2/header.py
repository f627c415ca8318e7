"""The SMB2 packet header ([MS-SMB2] 2.2.1) and compounding ([MS-SMB2] 3.2.4.1.4, 3.3.5.2.7).

One transport frame (the NBSS / direct-TCP payload) holds one SMB2 message or a compound chain:
each header's NextCommand is the offset of the next header, 0 on the last. Every offset inside a
message body (SecurityBufferOffset, NameOffset, ...) counts from the start of *that* message's
header, so body parsers take the message bytes with the header included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stormwatch.protocols.errors import MalformedMessage, NeedMoreData
from stormwatch.protocols.smb2.constants import (
    COMPRESSION_PROTOCOL_ID,
    HEADER_SIZE,
    MAX_COMPOUND,
    PROTOCOL_ID,
    TRANSFORM_PROTOCOL_ID,
    HeaderFlags,
)
from stormwatch.protocols.wire import Layout

#: [MS-SMB2] 2.2.1.2 SYNC header. In the ASYNC form ([MS-SMB2] 2.2.1.1) the 8 bytes of
#: process_id + tree_id are the AsyncId; in requests of 3.x dialects ``status`` is
#: ChannelSequence (low 16 bits) + Reserved.
HEADER = Layout("SMB2 header", "<", (
    ("protocol_id", "4s"),
    ("structure_size", "H"),
    ("credit_charge", "H"),
    ("status", "I"),
    ("command", "H"),
    ("credits", "H"),       # CreditRequest in a request, CreditResponse in a response
    ("flags", "I"),
    ("next_command", "I"),
    ("message_id", "Q"),
    ("process_id", "I"),    # Reserved in the spec; the SMB1-era ProcessId, still filled by clients
    ("tree_id", "I"),
    ("session_id", "Q"),
    ("signature", "16s"),
))
assert HEADER.size == HEADER_SIZE


@dataclass(frozen=True, slots=True)
class Header:
    """An SMB2 header. ``async_id`` is set (and ``tree_id``/``process_id`` are 0) for the ASYNC form."""

    command: int
    message_id: int = 0
    status: int = 0
    flags: int = 0
    credits: int = 0
    credit_charge: int = 0
    next_command: int = 0
    process_id: int = 0
    tree_id: int = 0
    session_id: int = 0
    signature: bytes = bytes(16)
    async_id: int | None = None

    @property
    def is_response(self) -> bool:
        return bool(self.flags & HeaderFlags.SERVER_TO_REDIR)

    @property
    def is_async(self) -> bool:
        return bool(self.flags & HeaderFlags.ASYNC_COMMAND)

    @property
    def is_related(self) -> bool:
        return bool(self.flags & HeaderFlags.RELATED_OPERATIONS)

    @property
    def is_signed(self) -> bool:
        return bool(self.flags & HeaderFlags.SIGNED)

    @property
    def channel_sequence(self) -> int:
        """[MS-SMB2] 2.2.1.2: in a 3.x request the Status field carries ChannelSequence."""
        return self.status & 0xFFFF

    def pack(self) -> bytes:
        flags = self.flags
        low, high = self.process_id, self.tree_id
        if self.async_id is not None:
            flags |= HeaderFlags.ASYNC_COMMAND
            low, high = self.async_id & 0xFFFFFFFF, self.async_id >> 32
        return HEADER.pack(PROTOCOL_ID, HEADER_SIZE, self.credit_charge, self.status, self.command,
                           self.credits, flags, self.next_command, self.message_id, low, high,
                           self.session_id, self.signature)


def parse_header(buf: bytes, offset: int = 0) -> Header:
    """The header at ``offset``. Encrypted (0xFD 'SMB') and compressed (0xFC 'SMB') messages are
    refused: the sensor never negotiates encryption or compression, so a client that sends them
    is not following the protocol."""
    what = "SMB2 header"
    if len(buf) - offset >= 4:
        magic = bytes(buf[offset:offset + 4])
        if magic == TRANSFORM_PROTOCOL_ID:
            raise MalformedMessage(what, "ProtocolId", offset, "encrypted (transform) message")
        if magic == COMPRESSION_PROTOCOL_ID:
            raise MalformedMessage(what, "ProtocolId", offset, "compressed message")
        if magic != PROTOCOL_ID:
            raise MalformedMessage(what, "ProtocolId", offset, f"{magic!r} is not \\xfeSMB")
    (_pid, size, charge, status, command, credits, flags, next_command, message_id, low, high, session_id,
     signature) = HEADER.unpack(buf, offset)
    if size != HEADER_SIZE:
        raise MalformedMessage(what, "StructureSize", offset + 4, f"{size}, not 64")
    if flags & HeaderFlags.ASYNC_COMMAND:
        return Header(command, message_id, status, flags, credits, charge, next_command, 0, 0, session_id,
                      signature, async_id=high << 32 | low)
    return Header(command, message_id, status, flags, credits, charge, next_command, low, high, session_id,
                  signature)


def split_compound(buf: bytes, max_messages: int = MAX_COMPOUND) -> tuple[bytes, ...]:
    """The messages of one transport frame, each with its header. NextCommand must leave room for
    a header and stay inside the frame; its 8-byte alignment (a MUST for senders) is not
    enforced, as Windows does not reject misaligned chains either. More than ``max_messages``
    messages is a MalformedMessage."""
    buf = bytes(buf)
    out: list[bytes] = []
    offset = 0
    while True:
        if len(out) >= max_messages:
            raise MalformedMessage("SMB2 compound", "NextCommand", offset, f"more than {max_messages} messages")
        header = parse_header(buf, offset)
        nxt = header.next_command
        if nxt == 0:
            out.append(buf[offset:])
            return tuple(out)
        if nxt < HEADER_SIZE:
            raise MalformedMessage("SMB2 compound", "NextCommand", offset + 20, f"{nxt} is inside the header")
        if offset + nxt + HEADER_SIZE > len(buf):
            # In a complete transport frame this is a lie; to a caller feeding prefixes, a cut.
            raise NeedMoreData("SMB2 compound", offset + nxt + HEADER_SIZE)
        out.append(buf[offset:offset + nxt])
        offset += nxt


def response_header(request: Header, *, status: int = 0, credits: int = 1, session_id: int | None = None,
                    tree_id: int | None = None, async_id: int | None = None) -> Header:
    """The header of the answer to ``request`` ([MS-SMB2] 3.3.4.1): same command, MessageId,
    CreditCharge and ProcessId, SERVER_TO_REDIR set, RELATED_OPERATIONS kept for compounds; the
    session and tree ids default to the request's (a SESSION_SETUP or TREE_CONNECT answer passes
    the new ones). Responses are never signed here: the sensor holds no session key."""
    flags = HeaderFlags.SERVER_TO_REDIR | (request.flags & HeaderFlags.RELATED_OPERATIONS)
    return Header(request.command, request.message_id, status, int(flags), credits, request.credit_charge, 0,
                  0 if async_id is not None else request.process_id,
                  0 if async_id is not None else (request.tree_id if tree_id is None else tree_id),
                  request.session_id if session_id is None else session_id, bytes(16), async_id)


def build_message(header: Header, body: bytes) -> bytes:
    """One SMB2 message: the header followed by a body from the builders."""
    return header.pack() + body


def build_compound(messages: Sequence[bytes]) -> bytes:
    """Chain messages from :func:`build_message` ([MS-SMB2] 3.3.4.1.3): each but the last padded to
    8 bytes, its NextCommand set to its padded length."""
    out = bytearray()
    for i, msg in enumerate(messages):
        if i == len(messages) - 1:
            out += msg
            break
        padded = msg + bytes(-len(msg) % 8)
        out += padded[:20] + len(padded).to_bytes(4, "little") + padded[24:]
    return bytes(out)

