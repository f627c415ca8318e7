"""NetBIOS over TCP/IP: session-service framing (TCP 139), direct-TCP framing (TCP 445), names,
and the name-service answers a Windows host gives on UDP 137.

Two framings, never mixed (STYLE.md principle 1):

    port 139  RFC 1002 4.3.1  type(1) flags(1) length(2); flags bit 0 (the "E" bit) is bit 16 of a
              17-bit length; types 0x00 SESSION MESSAGE, 0x81 SESSION REQUEST, 0x82 POSITIVE
              RESPONSE, 0x83 NEGATIVE RESPONSE, 0x84 RETARGET RESPONSE, 0x85 KEEP ALIVE.
    port 445  [MS-SMB2] 2.1 / [MS-CIFS] 2.1.1.2  zero(1) length(3): a 24-bit length, no types.

:class:`NbssFramer` and :class:`DirectTcpFramer` are incremental decoders: ``feed(bytes)`` returns
the complete frames seen so far. A frame longer than ``max_frame`` (128 KiB by default, the most an
SMB1 server accepts) is a MalformedMessage; after any error the framer stays failed, because a
byte stream that lost its framing cannot be resynchronised.

Names use the RFC 1001 14.1 "half-ASCII" first-level encoding (each byte of the 16-byte name
becomes two letters 'A'+nibble) inside RFC 1002 4.1 length-prefixed labels.
"""

from __future__ import annotations

import ipaddress
import struct
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from stormwatch.protocols.errors import MalformedMessage, NeedMoreData
from stormwatch.protocols.wire import Layout

# -- session service ---------------------------------------------------------------------------


class SessionType(IntEnum):
    """RFC 1002 4.3.1 session packet types."""

    MESSAGE = 0x00
    REQUEST = 0x81
    POSITIVE_RESPONSE = 0x82
    NEGATIVE_RESPONSE = 0x83
    RETARGET_RESPONSE = 0x84
    KEEP_ALIVE = 0x85


class SessionError(IntEnum):
    """RFC 1002 4.3.4 NEGATIVE SESSION RESPONSE error codes."""

    NOT_LISTENING_ON_CALLED_NAME = 0x80
    NOT_LISTENING_FOR_CALLING_NAME = 0x81
    CALLED_NAME_NOT_PRESENT = 0x82
    INSUFFICIENT_RESOURCES = 0x83
    UNSPECIFIED = 0x8F


#: RFC 1002 4.3.1 session packet header; ``flags`` bit 0 extends ``length`` to 17 bits.
NBSS_HEADER = Layout("NBSS header", ">", (("type", "B"), ("flags", "B"), ("length", "H")))
#: [MS-SMB2] 2.1 Direct TCP transport header: a zero byte, then a 24-bit big-endian length.
DIRECT_TCP_HEADER = Layout("direct TCP header", ">", (("zero", "B"), ("length_high", "B"), ("length", "H")))

NBSS_MAX_LENGTH = 0x1FFFF  # 17 bits (RFC 1002 4.3.1)
DIRECT_TCP_MAX_LENGTH = 0xFFFFFF  # 24 bits ([MS-SMB2] 2.1)
DEFAULT_MAX_FRAME = 128 * 1024  # an SMB1 server's largest buffer; EternalBlue's grooming frames are ~64 KiB


@dataclass(frozen=True, slots=True)
class Frame:
    """One transport frame: ``type`` is a :class:`SessionType` value (always 0 on port 445)."""

    type: int
    payload: bytes


class _Framer(ABC):
    """Shared incremental state; subclasses decode one header at the front of the buffer."""

    what = "frame"

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._consumed = 0  # stream offset of _buf[0], for error offsets
        self._failed: MalformedMessage | None = None

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet make a complete frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        """Append ``data`` and return every frame it completes (possibly none). A bad header after
        good frames is reported by the next call, so the good frames are not lost."""
        if self._failed is not None:
            raise self._failed
        if not self._buf:
            if not data:
                return []
            if isinstance(data, bytes):
                return self._feed_fresh(data)
        self._buf += data
        frames: list[Frame] = []
        pos = 0  # consumed bytes are dropped once per call, not once per frame
        while len(self._buf) - pos >= 4:
            try:
                ftype, length = self._header(bytes(self._buf[pos:pos + 4]))
                if length > self.max_frame:
                    raise MalformedMessage(self.what, "length", 1,
                                           f"{length} bytes exceeds the limit of {self.max_frame}")
            except MalformedMessage as exc:
                self._failed = MalformedMessage(exc.what, exc.field, self._consumed + pos + exc.offset, exc.detail)
                if not frames:
                    raise self._failed from None
                break  # hand over the good frames first; the next feed() raises
            if len(self._buf) - pos < 4 + length:
                break
            frames.append(Frame(ftype, bytes(self._buf[pos + 4:pos + 4 + length])))
            pos += 4 + length
        del self._buf[:pos]
        self._consumed += pos
        return frames

    def _feed_fresh(self, data: bytes) -> list[Frame]:
        """:meth:`feed` with nothing buffered, the usual case (a request arrives whole): the
        frames are sliced from ``data`` itself; only an incomplete tail is copied to the buffer."""
        frames: list[Frame] = []
        pos, end = 0, len(data)
        while end - pos >= 4:
            try:
                ftype, length = self._header(data[pos:pos + 4])
                if length > self.max_frame:
                    raise MalformedMessage(self.what, "length", 1,
                                           f"{length} bytes exceeds the limit of {self.max_frame}")
            except MalformedMessage as exc:
                self._failed = MalformedMessage(exc.what, exc.field, self._consumed + pos + exc.offset, exc.detail)
                if not frames:
                    self._buf += data  # held as feed() holds it
                    raise self._failed from None
                break
            if end - pos < 4 + length:
                break
            frames.append(Frame(ftype, data[pos + 4:pos + 4 + length]))
            pos += 4 + length
        if pos < end:
            self._buf += data[pos:] if pos else data
        self._consumed += pos
        return frames

    @abstractmethod
    def _header(self, head: bytes) -> tuple[int, int]:
        """(type, payload length) of the 4-byte header ``head``, or MalformedMessage."""


class NbssFramer(_Framer):
    """Port 139 framing (RFC 1002 4.3.1): typed packets with a 17-bit length."""

    what = "NBSS packet"

    def _header(self, head: bytes) -> tuple[int, int]:
        ftype, flags, length = NBSS_HEADER.unpack(head)
        if ftype not in SessionType._value2member_map_:
            raise MalformedMessage(self.what, "type", 0, f"unknown session packet type 0x{ftype:02x}")
        if flags & 0xFE:  # RFC 1002: bits other than E are reserved and zero
            raise MalformedMessage(self.what, "flags", 1, f"reserved flag bits set (0x{flags:02x})")
        return ftype, length | (flags & 1) << 16


class DirectTcpFramer(_Framer):
    """Port 445 framing ([MS-SMB2] 2.1): zero byte + 24-bit length; every frame is an SMB message."""

    what = "direct TCP frame"

    def _header(self, head: bytes) -> tuple[int, int]:
        zero, high, low = DIRECT_TCP_HEADER.unpack(head)
        if zero != 0:
            raise MalformedMessage(self.what, "zero", 0, f"first byte must be 0, got 0x{zero:02x}")
        return SessionType.MESSAGE, high << 16 | low


def encode_nbss(ftype: int, payload: bytes = b"") -> bytes:
    """One port-139 packet; ValueError if the payload does not fit 17 bits (a caller bug)."""
    if len(payload) > NBSS_MAX_LENGTH:
        raise ValueError(f"NBSS payload of {len(payload)} bytes exceeds {NBSS_MAX_LENGTH}")
    return NBSS_HEADER.pack(ftype, len(payload) >> 16, len(payload) & 0xFFFF) + payload


def encode_direct_tcp(payload: bytes) -> bytes:
    """One port-445 frame; ValueError if the payload does not fit 24 bits."""
    n = len(payload)
    if n > DIRECT_TCP_MAX_LENGTH:
        raise ValueError(f"direct TCP payload of {n} bytes exceeds {DIRECT_TCP_MAX_LENGTH}")
    return n.to_bytes(4, "big") + payload  # the zero byte and the 24-bit length: a 32-bit big-endian length


def encode_positive_response() -> bytes:
    """RFC 1002 4.3.3 POSITIVE SESSION RESPONSE."""
    return encode_nbss(SessionType.POSITIVE_RESPONSE)


def encode_negative_response(error: int = SessionError.CALLED_NAME_NOT_PRESENT) -> bytes:
    """RFC 1002 4.3.4 NEGATIVE SESSION RESPONSE with its one-byte error code."""
    return encode_nbss(SessionType.NEGATIVE_RESPONSE, bytes([error]))


def encode_keep_alive() -> bytes:
    """RFC 1002 4.3.7 SESSION KEEP ALIVE."""
    return encode_nbss(SessionType.KEEP_ALIVE)


def decode_negative_response(payload: bytes) -> int:
    """The error code of a NEGATIVE SESSION RESPONSE payload."""
    if len(payload) != 1:
        raise MalformedMessage("negative session response", "error_code", 0, f"{len(payload)} bytes, expected 1")
    return payload[0]


# -- names -------------------------------------------------------------------------------------

MAX_ENCODED_NAME = 255  # RFC 1002 4.1: a compressed-name field (labels + scope) is at most 255 bytes


@dataclass(frozen=True, slots=True)
class NetbiosName:
    """A NetBIOS name: up to 15 name bytes (latin-1 text), the 16th byte ``suffix`` (the name type:
    0x00 workstation, 0x20 server, 0x1D master browser ...) and an optional dotted ``scope``.

    ``*`` is the wildcard of a node-status query: RFC 1002 4.2.17 pads it with NULs, not spaces."""

    name: str
    suffix: int = 0x00
    scope: str = ""

    def raw16(self) -> bytes:
        """The 16 bytes before first-level encoding."""
        text = self.name.encode("latin-1")[:15]
        pad = b"\x00" if self.name == "*" else b" "
        return text.ljust(15, pad) + bytes([self.suffix & 0xFF])

    def encode(self) -> bytes:
        """RFC 1001 14.1 first-level encoding in RFC 1002 4.1 labels, terminated by a zero label."""
        half = bytes(b for c in self.raw16() for b in (0x41 + (c >> 4), 0x41 + (c & 0x0F)))
        out = bytearray([32]) + half
        for label in filter(None, self.scope.split(".")):
            raw = label.encode("latin-1")
            if len(raw) > 63:
                raise ValueError(f"scope label {label!r} is longer than 63 bytes")
            out += bytes([len(raw)]) + raw
        return bytes(out) + b"\x00"


def decode_netbios_name(buf: bytes, offset: int, what: str) -> tuple[NetbiosName, int]:
    """An encoded name at ``offset`` → (name, offset after its terminating zero label).

    Compression pointers (RFC 1002 4.1, label bytes 0xC0..) do not occur in the questions and
    session requests a server reads, so they are rejected rather than followed."""
    if offset >= len(buf):
        raise NeedMoreData(what, offset + 1)
    if buf[offset] != 32:
        raise MalformedMessage(what, "name_length", offset, f"first label is {buf[offset]} bytes, expected 32")
    if len(buf) < offset + 33:
        raise NeedMoreData(what, offset + 34)
    half = buf[offset + 1:offset + 33]
    if any(not 0x41 <= c <= 0x50 for c in half):
        raise MalformedMessage(what, "name", offset + 1, "first-level encoding uses letters A-P only")
    raw = bytes((half[i] - 0x41) << 4 | (half[i + 1] - 0x41) for i in range(0, 32, 2))
    pos = offset + 33
    labels: list[str] = []
    while True:
        if pos >= len(buf):
            raise NeedMoreData(what, pos + 1)
        n = buf[pos]
        if n == 0:
            pos += 1
            break
        if n >= 0xC0:
            raise MalformedMessage(what, "scope", pos, "compression pointer in a name")
        if n > 63:
            raise MalformedMessage(what, "scope", pos, f"label length {n} exceeds 63")
        if pos + 1 + n > len(buf):
            raise NeedMoreData(what, pos + 1 + n)
        labels.append(buf[pos + 1:pos + 1 + n].decode("latin-1"))
        pos += 1 + n
        if pos - offset > MAX_ENCODED_NAME:
            raise MalformedMessage(what, "scope", offset, f"encoded name longer than {MAX_ENCODED_NAME} bytes")
    text = raw[:15].rstrip(b" \x00").decode("latin-1")
    return NetbiosName(text, raw[15], ".".join(labels)), pos


@dataclass(frozen=True, slots=True)
class SessionRequest:
    """RFC 1002 4.3.2 SESSION REQUEST: the name the client calls, and its own name."""

    called: NetbiosName
    calling: NetbiosName


def decode_session_request(payload: bytes) -> SessionRequest:
    """The payload of a 0x81 packet (two encoded names, nothing after them)."""
    try:
        called, pos = decode_netbios_name(payload, 0, "session request")
        calling, pos = decode_netbios_name(payload, pos, "session request")
    except NeedMoreData as exc:  # the frame is complete, so a short name is a lie
        raise MalformedMessage("session request", "names", len(payload), str(exc)) from None
    if pos != len(payload):
        raise MalformedMessage("session request", "trailer", pos, f"{len(payload) - pos} bytes after the names")
    return SessionRequest(called, calling)


def encode_session_request(called: NetbiosName, calling: NetbiosName) -> bytes:
    """A complete 0x81 packet."""
    return encode_nbss(SessionType.REQUEST, called.encode() + calling.encode())


# -- name service (UDP 137) --------------------------------------------------------------------

#: RFC 1002 4.2.1.1 name service header.
NS_HEADER = Layout("name service header", ">", (
    ("trn_id", "H"), ("flags", "H"), ("qdcount", "H"), ("ancount", "H"), ("nscount", "H"), ("arcount", "H")))
#: RFC 1002 4.2.1.2 question entry after QUESTION_NAME.
QUESTION_TAIL = Layout("name service question", ">", (("qtype", "H"), ("qclass", "H")))

QTYPE_NB = 0x0020  # RFC 1002 4.2.1.2 general name service resource
QTYPE_NBSTAT = 0x0021  # node status resource
QCLASS_IN = 0x0001
OPCODE_QUERY = 0
FLAG_RESPONSE = 0x8000
FLAG_AA, FLAG_TC, FLAG_RD, FLAG_RA, FLAG_B = 0x0400, 0x0200, 0x0100, 0x0080, 0x0010

# RFC 1002 4.2.18 NAME_FLAGS of a node-status entry (and NB_FLAGS, 4.2.13, for G and ONT).
NAME_FLAG_GROUP = 0x8000
NAME_FLAG_ONT_B, NAME_FLAG_ONT_P, NAME_FLAG_ONT_M, NAME_FLAG_ONT_H = 0x0000, 0x2000, 0x4000, 0x6000
NAME_FLAG_DEREGISTERING, NAME_FLAG_CONFLICT = 0x1000, 0x0800
NAME_FLAG_ACTIVE, NAME_FLAG_PERMANENT = 0x0400, 0x0200
DEFAULT_MAX_QUESTIONS = 8


@dataclass(frozen=True, slots=True)
class NameQuestion:
    """RFC 1002 4.2.1.2 question; ``wire_name`` is the name exactly as sent (answers echo it)."""

    name: NetbiosName
    qtype: int
    qclass: int
    wire_name: bytes

    @property
    def is_node_status(self) -> bool:
        return self.qtype == QTYPE_NBSTAT


@dataclass(frozen=True, slots=True)
class NamePacket:
    """A name service packet: header fields, its questions, and the undecoded resource records."""

    trn_id: int
    flags: int
    qdcount: int
    ancount: int
    nscount: int
    arcount: int
    questions: tuple[NameQuestion, ...]
    records: bytes

    @property
    def is_response(self) -> bool:
        return bool(self.flags & FLAG_RESPONSE)

    @property
    def opcode(self) -> int:
        return self.flags >> 11 & 0x0F

    @property
    def rcode(self) -> int:
        return self.flags & 0x0F

    @property
    def is_query(self) -> bool:
        """A NAME QUERY REQUEST (4.2.12) or NODE STATUS REQUEST (4.2.17)."""
        return not self.is_response and self.opcode == OPCODE_QUERY and bool(self.questions)


def decode_name_packet(buf: bytes, max_questions: int = DEFAULT_MAX_QUESTIONS) -> NamePacket:
    """One UDP 137 datagram (RFC 1002 4.2.1). A datagram is complete, so running short is malformed."""
    what = "name service packet"
    try:
        trn_id, flags, qd, an, ns, ar = NS_HEADER.unpack(buf)
        if qd > max_questions:
            raise MalformedMessage(what, "qdcount", 4, f"{qd} questions exceeds the limit of {max_questions}")
        pos = NS_HEADER.size
        questions = []
        for _ in range(qd):
            name, end = decode_netbios_name(buf, pos, what)
            qtype, qclass = QUESTION_TAIL.unpack(buf, end)
            questions.append(NameQuestion(name, qtype, qclass, bytes(buf[pos:end])))
            pos = end + QUESTION_TAIL.size
    except NeedMoreData as exc:
        raise MalformedMessage(what, exc.what, len(buf), str(exc)) from None
    return NamePacket(trn_id, flags, qd, an, ns, ar, tuple(questions), bytes(buf[pos:]))


def encode_name_query(trn_id: int, name: NetbiosName, *, node_status: bool = False, broadcast: bool = False,
                      recursion_desired: bool = True) -> bytes:
    """A NAME QUERY REQUEST (4.2.12) or, with ``node_status``, a NODE STATUS REQUEST (4.2.17)."""
    flags = (FLAG_RD if recursion_desired and not node_status else 0) | (FLAG_B if broadcast else 0)
    qtype = QTYPE_NBSTAT if node_status else QTYPE_NB
    return NS_HEADER.pack(trn_id, flags, 1, 0, 0, 0) + name.encode() + QUESTION_TAIL.pack(qtype, QCLASS_IN)


def _answer(trn_id: int, flags: int, rr_name: bytes, rr_type: int, ttl: int, rdata: bytes) -> bytes:
    """A response packet with one answer record (RFC 1002 4.2.1.3)."""
    return (NS_HEADER.pack(trn_id, flags, 0, 1, 0, 0) + rr_name
            + struct.pack(">HHIH", rr_type, QCLASS_IN, ttl, len(rdata)) + rdata)


def encode_name_query_response(request: NamePacket, addresses: Sequence[str], *, ttl: int = 300_000,
                               group: bool = False, node_type: int = NAME_FLAG_ONT_B) -> bytes:
    """RFC 1002 4.2.13 POSITIVE NAME QUERY RESPONSE to the request's first question.

    ``addresses`` are IPv4 dotted quads (the persona's); ``ttl`` in seconds (Windows answers
    300000). RD is copied from the request; AA is set because the node answers for itself."""
    question = request.questions[0]
    rdata = b"".join(struct.pack(">H", (NAME_FLAG_GROUP if group else 0) | node_type)
                     + ipaddress.IPv4Address(a).packed for a in addresses)
    flags = FLAG_RESPONSE | FLAG_AA | (request.flags & FLAG_RD)
    return _answer(request.trn_id, flags, question.wire_name, QTYPE_NB, ttl, rdata)


def encode_negative_name_query_response(request: NamePacket, rcode: int = 3) -> bytes:
    """RFC 1002 4.2.14 NEGATIVE NAME QUERY RESPONSE (rcode 3 NAM_ERR: no such name)."""
    question = request.questions[0]
    flags = FLAG_RESPONSE | FLAG_AA | (request.flags & FLAG_RD) | (rcode & 0x0F)
    return _answer(request.trn_id, flags, question.wire_name, QTYPE_NB, 0, b"")


@dataclass(frozen=True, slots=True)
class NodeName:
    """One entry of a node-status names table (RFC 1002 4.2.18 NODE_NAME)."""

    name: str
    suffix: int
    flags: int = NAME_FLAG_ACTIVE


def standard_node_names(host: str, workgroup: str) -> tuple[NodeName, ...]:
    """The table a Windows workstation with file sharing shows to ``nbtstat -A`` / nmap nbstat:
    host<00> (workstation), workgroup<00> (group), host<20> (server service)."""
    return (NodeName(host.upper(), 0x00), NodeName(workgroup.upper(), 0x00, NAME_FLAG_ACTIVE | NAME_FLAG_GROUP),
            NodeName(host.upper(), 0x20))


#: RFC 1002 4.2.18 STATISTICS after UNIT_ID: jumpers, test result, 15 counters and sizes (40 bytes).
_STATISTICS_REST = 40


def encode_node_status_response(request: NamePacket, names: Sequence[NodeName], unit_id: bytes) -> bytes:
    """RFC 1002 4.2.18 NODE STATUS RESPONSE: the names table and ``unit_id`` (the 6-byte MAC that
    ``nmblookup -A`` and nmap print); the remaining statistics are zero, as Windows sends them."""
    if len(unit_id) != 6:
        raise ValueError("unit_id must be 6 bytes (a MAC address)")
    if len(names) > 255:
        raise ValueError("a node status response holds at most 255 names")
    table = b"".join(n.name.encode("latin-1")[:15].ljust(15, b" ") + struct.pack(">BH", n.suffix, n.flags)
                     for n in names)
    rdata = bytes([len(names)]) + table + unit_id + bytes(_STATISTICS_REST)
    return _answer(request.trn_id, FLAG_RESPONSE | FLAG_AA, request.questions[0].wire_name, QTYPE_NBSTAT, 0, rdata)
