"""DCE/RPC byte streams → PDUs → calls, with named limits.

The same stream decoder serves both transports, because both carry a plain sequence of PDUs:

* SMB named pipes: the bytes of WRITE_ANDX / TransactNmPipe (and READ_ANDX / transaction
  responses in the other direction) of one pipe, in order; a PDU may be cut across writes
  and one write may hold several PDUs;
* TCP 135 (and the dynamic DCOM ports): the TCP payload, in order.

:class:`PduFramer` cuts the stream at ``frag_length`` ([C706] 12.6.3.1). :class:`CallAssembler`
joins request and response fragments per ``call_id`` from PFC_FIRST_FRAG to PFC_LAST_FRAG
([C706] 12.6.3.7, [MS-RPCE] 3.3.1.5.1), keeping the first fragment's header, context id and
opnum (Windows reads them from the first fragment; later fragments' copies are not checked).
:class:`DceRpcStream` is both: ``feed(bytes)`` returns complete PDUs, requests and responses
reassembled.

Limits (:class:`ReassemblyLimits`), each named in the MalformedMessage that enforces it:

    max_frag_length        a PDU longer than this is refused before it is buffered, so the buffer
                           never holds more than one PDU shorter than it (default 65535: any PDU)
    max_fragments          fragments in one call (default 1024: Metasploit's DCERPC fragment-size
                           evasion cuts a 1-3 KiB exploit stub into pieces of a few bytes, and we
                           want to decode that, not refuse it)
    max_stub_bytes         a reassembled stub (default 1 MiB)
    max_outstanding_calls  calls with fragments pending at once (default 16)

A fragment that continues no call, a first fragment for a call_id already in progress, or a
fragment of another PDU type than its call's first are protocol errors. After any error the
decoder stays failed: a stream that lost its framing cannot be resynchronised. PDUs completed
before the error in the same ``feed`` are still returned (an exploit followed by garbage in one
write is evidence worth keeping); the error is then in :attr:`DceRpcStream.error` at once and is
raised by the next ``feed``. A ``feed`` that completes nothing raises it directly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from stormwatch.protocols.dcerpc.pdu import HEADER_SIZE, Pdu, Request, Response, parse_header, parse_pdu
from stormwatch.protocols.errors import MalformedMessage, ProtocolError

WHAT = "DCE/RPC stream"


@dataclass(frozen=True, slots=True)
class ReassemblyLimits:
    """See the module docstring."""

    max_frag_length: int = 65535
    max_fragments: int = 1024
    max_stub_bytes: int = 1 << 20
    max_outstanding_calls: int = 16


DEFAULT_LIMITS = ReassemblyLimits()


class PduFramer:
    """Incremental framing: ``feed(bytes)`` → the complete PDUs (raw bytes) seen so far."""

    def __init__(self, limits: ReassemblyLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._buf = bytearray()
        self._consumed = 0  # stream offset of _buf[0]
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete PDU (less than ``max_frag_length``)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        if self._error is not None:
            raise self._error
        self._buf += data
        out: list[bytes] = []
        at = 0
        try:
            while len(self._buf) - at >= 1:
                if self._buf[at] != 5:  # fail on garbage at once rather than after 16 bytes
                    raise MalformedMessage(WHAT, "rpc_vers", self._consumed + at, f"byte {self._buf[at]:#x} "
                                           "where a PDU should start")
                if len(self._buf) - at < HEADER_SIZE:
                    break
                h = parse_header(bytes(self._buf[at:at + HEADER_SIZE]))
                if h.frag_length > self.limits.max_frag_length:
                    raise MalformedMessage(WHAT, "max_frag_length", self._consumed + at,
                                           f"frag_length {h.frag_length} exceeds max_frag_length="
                                           f"{self.limits.max_frag_length}")
                if len(self._buf) - at < h.frag_length:
                    break
                out.append(bytes(self._buf[at:at + h.frag_length]))
                at += h.frag_length
        except ProtocolError as exc:
            self._error = exc
            if not out:
                raise
        finally:
            del self._buf[:at]
            self._consumed += at
        return out

    @property
    def error(self) -> ProtocolError | None:
        return self._error


@dataclass(slots=True)
class _Pending:
    first: Request | Response
    pieces: list[bytes]
    size: int


class CallAssembler:
    """Joins request/response fragments per call_id; other PDUs pass through unchanged."""

    def __init__(self, limits: ReassemblyLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._pending: dict[int, _Pending] = {}

    @property
    def outstanding(self) -> int:
        """Calls with fragments received and the last one not yet."""
        return len(self._pending)

    def _fail(self, field: str, detail: str) -> MalformedMessage:
        return MalformedMessage(WHAT, field, 0, detail)

    def add(self, pdu: Pdu) -> Pdu | None:
        """The complete PDU, or None when ``pdu`` was a fragment of a call still incomplete."""
        if not isinstance(pdu, Request | Response):
            return pdu
        h = pdu.header
        call = self._pending.get(h.call_id)
        if h.first_frag:
            if call is not None:
                raise self._fail("call_id", f"call {h.call_id} starts again before its last fragment")
            if len(pdu.stub) > self.limits.max_stub_bytes:
                raise self._fail("max_stub_bytes", f"stub of {len(pdu.stub)} bytes exceeds max_stub_bytes="
                                 f"{self.limits.max_stub_bytes}")
            if h.last_frag:
                return pdu
            if len(self._pending) >= self.limits.max_outstanding_calls:
                raise self._fail("max_outstanding_calls", f"more than max_outstanding_calls="
                                 f"{self.limits.max_outstanding_calls} fragmented calls in progress")
            self._pending[h.call_id] = _Pending(pdu, [pdu.stub], len(pdu.stub))
            return None
        if call is None:
            raise self._fail("pfc_flags", f"fragment of call {h.call_id} without its first fragment")
        if type(pdu) is not type(call.first):
            raise self._fail("PTYPE", f"call {h.call_id} mixes PDU types across fragments")
        if len(call.pieces) + 1 > self.limits.max_fragments:
            raise self._fail("max_fragments", f"call {h.call_id} has more than max_fragments="
                             f"{self.limits.max_fragments} fragments")
        call.size += len(pdu.stub)
        if call.size > self.limits.max_stub_bytes:
            raise self._fail("max_stub_bytes", f"call {h.call_id} stub exceeds max_stub_bytes="
                             f"{self.limits.max_stub_bytes}")
        call.pieces.append(pdu.stub)
        if not h.last_frag:
            return None
        del self._pending[h.call_id]
        return dataclasses.replace(call.first, stub=b"".join(call.pieces), fragments=len(call.pieces))


class DceRpcStream:
    """One direction of a named pipe or TCP connection: ``feed(bytes)`` → complete PDUs."""

    def __init__(self, limits: ReassemblyLimits = DEFAULT_LIMITS) -> None:
        self.framer = PduFramer(limits)
        self.calls = CallAssembler(limits)
        self._error: ProtocolError | None = None

    @property
    def idle(self) -> bool:
        """No partial PDU buffered and no fragmented call pending (a clean place to stop)."""
        return self.framer.buffered == 0 and self.calls.outstanding == 0

    def feed(self, data: bytes) -> list[Pdu]:
        if self._error is not None:
            raise self._error
        out: list[Pdu] = []
        try:
            for raw in self.framer.feed(data):
                done = self.calls.add(parse_pdu(raw))
                if done is not None:
                    out.append(done)
            if self.framer.error is not None:
                raise self.framer.error
        except ProtocolError as exc:
            self._error = exc
            if not out:
                raise
        return out

    @property
    def error(self) -> ProtocolError | None:
        """The error that ended the stream, if any (raised again by every later ``feed``)."""
        return self._error
