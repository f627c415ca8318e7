"""The SMB1 header ([MS-CIFS] 2.2.3.1), the parameter/data block that follows it (2.2.3.2 and
2.2.3.3), and SMB_STRING handling with its alignment rule (2.2.1.1: a Unicode string starts on
an even offset counted from the start of the SMB header, with one pad byte if needed)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from stormwatch.protocols.errors import MalformedMessage
from stormwatch.protocols.smb1.constants import ANDX_COMMANDS, PROTOCOL, SMB2_PROTOCOL, Flags, Flags2
from stormwatch.protocols.wire import Layout

#: [MS-CIFS] 2.2.3.1 SMB_Header (32 bytes, little-endian). ``status`` is an NTSTATUS when Flags2
#: has NT_STATUS, else the DOS form ErrorClass(1) Reserved(1) ErrorCode(2) read as one integer.
HEADER = Layout("SMB1 header", "<", (
    ("protocol", "4s"),
    ("command", "B"),
    ("status", "I"),
    ("flags", "B"),
    ("flags2", "H"),
    ("pid_high", "H"),
    ("security_features", "8s"),
    ("reserved", "H"),
    ("tid", "H"),
    ("pid_low", "H"),
    ("uid", "H"),
    ("mid", "H"),
))
HEADER_SIZE = HEADER.size  # 32

# The flag bits as plain ints: an IntFlag operation builds a new enum member each time, which made
# flag tests a tenth of the cost of a whole request; the values are those of Flags and Flags2.
_REPLY = int(Flags.REPLY)
_UNICODE = int(Flags2.UNICODE)
#: Flags of every answer: REPLY | CASE_INSENSITIVE | CANONICALIZED_PATHS (0x98).
REPLY_FLAGS = int(Flags.REPLY | Flags.CASE_INSENSITIVE | Flags.CANONICALIZED_PATHS)
_REPLY_FLAGS2 = int(Flags2.NT_STATUS | Flags2.LONG_NAMES)
_ECHOED_FLAGS2 = int(Flags2.UNICODE | Flags2.EXTENDED_SECURITY | Flags2.IS_LONG_NAME)
_NO_SECURITY_FEATURES = bytes(8)

#: [MS-CIFS] 2.2.3.4 the AndX block at the start of an AndX command's parameter words.
ANDX_FIELDS = (("andx_command", "B"), ("andx_reserved", "B"), ("andx_offset", "H"))
ANDX = Layout("AndX block", "<", ANDX_FIELDS)


@dataclass(frozen=True, slots=True)
class Header:
    """An SMB1 header. Build a server's answer with :meth:`reply`."""

    command: int
    status: int = 0
    flags: int = 0
    flags2: int = 0
    tid: int = 0
    pid_low: int = 0
    uid: int = 0
    mid: int = 0
    pid_high: int = 0
    security_features: bytes = bytes(8)
    reserved: int = 0

    @property
    def is_reply(self) -> bool:
        return bool(self.flags & _REPLY)

    @property
    def unicode(self) -> bool:
        return bool(self.flags2 & _UNICODE)

    @property
    def pid(self) -> int:
        return self.pid_high << 16 | self.pid_low

    def pack(self) -> bytes:
        if len(self.security_features) != 8:
            raise ValueError("security_features must be 8 bytes")
        return HEADER.pack(PROTOCOL, self.command, self.status, self.flags, self.flags2, self.pid_high,
                           self.security_features, self.reserved, self.tid, self.pid_low, self.uid, self.mid)

    def reply(self, *, status: int = 0, command: int | None = None, tid: int | None = None,
              uid: int | None = None, flags2: int | None = None) -> Header:
        """The header of the answer to this request: TID, PID, UID and MID echoed (the client
        matches answers by PID and MID), Flags 0x98 REPLY | CASE_INSENSITIVE | CANONICALIZED_PATHS
        as Windows 7 sends them in the MS17-010 captures, and by default Flags2 NT_STATUS |
        LONG_NAMES plus the client's UNICODE, EXTENDED_SECURITY and IS_LONG_NAME bits."""
        return Header(
            command=self.command if command is None else command, status=status, flags=REPLY_FLAGS,
            flags2=self.reply_flags2() if flags2 is None else int(flags2),
            tid=self.tid if tid is None else tid, pid_low=self.pid_low, pid_high=self.pid_high,
            uid=self.uid if uid is None else uid, mid=self.mid)

    def reply_flags2(self) -> int:
        """The Flags2 of :meth:`reply` by default."""
        return _REPLY_FLAGS2 | self.flags2 & _ECHOED_FLAGS2

    def pack_reply(self, *, status: int = 0, command: int | None = None, tid: int | None = None,
                   uid: int | None = None, flags2: int | None = None) -> bytes:
        """``self.reply(...).pack()`` without building the intermediate Header (a response's hot path)."""
        return HEADER.pack(PROTOCOL, self.command if command is None else command, status, REPLY_FLAGS,
                           self.reply_flags2() if flags2 is None else flags2, self.pid_high,
                           _NO_SECURITY_FEATURES, 0, self.tid if tid is None else tid, self.pid_low,
                           self.uid if uid is None else uid, self.mid)


def is_smb1(payload: bytes) -> bool:
    """Whether a frame payload starts with the SMB1 protocol identifier."""
    return payload[:4] == PROTOCOL


def parse_header(msg: bytes) -> Header:
    """The header of one SMB1 message (a complete frame payload)."""
    if len(msg) < HEADER_SIZE:
        raise MalformedMessage("SMB1 header", "length", len(msg), f"{len(msg)} bytes, the header needs {HEADER_SIZE}")
    (protocol, command, status, flags, flags2, pid_high, security, reserved, tid, pid_low, uid,
     mid) = HEADER.unpack(msg)
    if protocol != PROTOCOL:
        detail = "an SMB2 message" if protocol == SMB2_PROTOCOL else f"protocol {protocol!r} is not \\xffSMB"
        raise MalformedMessage("SMB1 header", "protocol", 0, detail)
    return Header(command, status, flags, flags2, tid, pid_low, uid, mid, pid_high, security, reserved)


@dataclass(frozen=True, slots=True)
class CommandBlock:
    """One command's raw parameter words and data bytes ([MS-CIFS] 2.2.3.2-2.2.3.3).

    ``offset`` is where WordCount sits, counted from the header start (the unit of every offset
    field in SMB1). ``byte_count`` is the declared ByteCount; ``data`` holds the bytes actually
    present, which is fewer when ByteCount overruns the message (see :attr:`data_truncated`)."""

    command: int
    offset: int
    words: bytes
    byte_count: int
    data: bytes

    @property
    def word_count(self) -> int:
        return len(self.words) // 2

    @property
    def data_offset(self) -> int:
        """Offset of the first data byte from the header start."""
        return self.offset + 1 + len(self.words) + 2

    @property
    def data_truncated(self) -> bool:
        return len(self.data) < self.byte_count

    @property
    def andx(self) -> tuple[int, int] | None:
        """(AndXCommand, AndXOffset) for an AndX command that carries the block, else None."""
        if self.command not in ANDX_COMMANDS or len(self.words) < ANDX.size:
            return None
        command, _, offset = ANDX.unpack(self.words)
        return command, offset


def parse_block(msg: bytes, offset: int, command: int) -> CommandBlock:
    """The WordCount/Words/ByteCount/Bytes block at ``offset`` of a complete message."""
    what = "SMB1 command block"
    if offset >= len(msg):
        raise MalformedMessage(what, "WordCount", offset, "beyond the end of the message")
    words_len = msg[offset] * 2
    bc_at = offset + 1 + words_len
    if bc_at + 2 > len(msg):
        raise MalformedMessage(what, "WordCount", offset,
                               f"{msg[offset]} words and ByteCount need {bc_at + 2 - offset} bytes, "
                               f"{len(msg) - offset} present")
    (byte_count,) = struct.unpack_from("<H", msg, bc_at)
    start = bc_at + 2
    return CommandBlock(command, offset, bytes(msg[offset + 1:bc_at]), byte_count,
                        bytes(msg[start:start + byte_count]))


def require_complete(block: CommandBlock, what: str) -> None:
    """Known commands need their whole byte block; a ByteCount beyond the message is a lie."""
    if block.data_truncated:
        raise MalformedMessage(what, "ByteCount", block.offset + 1 + len(block.words),
                               f"{block.byte_count} bytes declared, {len(block.data)} present")


def section(msg: bytes, offset: int, count: int, what: str, field: str, at: int) -> bytes:
    """``count`` bytes at ``offset`` from the header start of the whole message (``at``: where the
    count field sits, for the error). An empty section's offset is not checked: clients leave it 0."""
    if count == 0:
        return b""
    if offset + count > len(msg):
        raise MalformedMessage(what, field, at,
                               f"{count} bytes at offset {offset} overrun the {len(msg)}-byte message")
    return bytes(msg[offset:offset + count])


def build_block(words: bytes, data: bytes) -> bytes:
    """WordCount + words + ByteCount + data."""
    if len(words) % 2 or len(words) > 510 or len(data) > 0xFFFF:
        raise ValueError("words must be an even number of bytes (at most 510) and data at most 65535 bytes")
    return bytes([len(words) // 2]) + words + struct.pack("<H", len(data)) + data


# -- SMB_STRING ([MS-CIFS] 2.2.1.1) ----------------------------------------------------------


def utf16_text(raw: bytes) -> str:
    """UTF-16LE attacker text → str; unpaired surrogates and an odd last byte stay visible as escapes."""
    even = raw[:len(raw) & ~1]
    text = even.decode("utf-16-le", "surrogatepass").encode("utf-8", "backslashreplace").decode("utf-8")
    return text + (f"\\x{raw[-1]:02x}" if len(raw) & 1 else "")


def read_string(data: bytes, pos: int, base: int, unicode: bool, align: bool = True) -> tuple[str, int]:
    """An SMB_STRING at ``data[pos]``, where ``base`` is the offset of ``data[0]`` from the header
    start (needed for the Unicode alignment pad) → (text, position after the terminator).

    Lenient on purpose: a string missing at the end of the block is
    empty, and an unterminated last string runs to the end of the block (Windows 7 itself sends
    its last PrimaryDomain with a one-byte terminator, see the Metasploit MS17-010 capture), so
    attacker text reaches the detectors instead of failing the message. ``align=False`` is for
    the one unaligned case, the negotiate response's DomainName and ServerName."""
    if unicode and align and (base + pos) & 1:
        pos += 1
    if pos >= len(data):
        return "", len(data)
    if not unicode:
        end = data.find(b"\x00", pos)
        if end < 0:
            return data[pos:].decode("latin-1"), len(data)
        return data[pos:end].decode("latin-1"), end + 1
    end = pos
    while end + 1 < len(data) and (data[end] or data[end + 1]):
        end += 2
    if end + 1 >= len(data):
        raw = data[pos:]
        if len(raw) & 1 and raw[-1] == 0:  # Windows 7 cuts the last terminator to one byte
            raw = raw[:-1]
        return utf16_text(raw), len(data)
    return utf16_text(data[pos:end]), end + 2


def encode_string(text: str, unicode: bool, offset: int) -> bytes:
    """``text`` as a NUL-terminated SMB_STRING written at ``offset`` (from the header start),
    preceded by a zero pad byte when Unicode needs even alignment."""
    if not unicode:
        return text.encode("latin-1", "replace") + b"\x00"
    return b"\x00" * (offset & 1) + text.encode("utf-16-le", "surrogatepass") + b"\x00\x00"


# -- decoded command bodies ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Smb1Body:
    """Base of every decoded command (request or response) in an SMB1 message."""


@dataclass(frozen=True, slots=True)
class UnknownCommand(Smb1Body):
    """A command this codec does not decode: kept raw, never an error."""

    command: int
    words: bytes
    data: bytes


@dataclass(frozen=True, slots=True)
class ErrorResponse(Smb1Body):
    """A server answer with a non-success status and no parameter words ([MS-CIFS] 2.2.3.1: an
    error response SHOULD have WordCount 0 and ByteCount 0)."""

    command: int
    status: int
    data: bytes = b""


def unpack_words(block: CommandBlock, layout: Layout, what: str) -> tuple[Any, ...]:
    """The block's parameter words per ``layout``; WordCount must match it exactly."""
    if len(block.words) != layout.size:
        raise MalformedMessage(what, "WordCount", block.offset,
                               f"{block.word_count} words, expected {layout.size // 2}")
    return layout.unpack(block.words)
