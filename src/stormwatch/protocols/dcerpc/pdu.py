"""DCE/RPC connection-oriented PDUs: parsing ([C706] 12.6, [MS-RPCE] 2.2.2).

Every PDU starts with the 16-byte common header ([C706] 12.6.3.1):

    rpc_vers(1)=5 rpc_vers_minor(1)=0|1 PTYPE(1) pfc_flags(1) packed_drep(4) frag_length(2)
    auth_length(2) call_id(4)

``packed_drep`` ([C706] 14.1) says how the sender wrote its integers: byte 0's high nibble is
0 (big-endian) or 1 (little-endian), its low nibble 0 (ASCII) or 1 (EBCDIC); byte 1 is the
floating-point format. Every multi-byte field after the first eight bytes, the header's own
frag_length and call_id included, is in that order, so both orders are parsed here; the NDR stubs
are read in the same order by :class:`~stormwatch.protocols.dcerpc.ndr.NdrReader`.

When ``auth_length`` is non-zero the PDU ends with an 8-byte ``sec_trailer`` and the
``auth_length``-byte auth value ([MS-RPCE] 2.2.2.11); the trailer is found from the end of the
fragment, and ``auth_pad_length`` bytes of padding before it are not stub data. Verifiers are
parsed and kept, never checked.

:func:`parse_pdu` parses the PDU at the front of a buffer and ignores bytes after
``frag_length`` (the stream decoder in :mod:`.reassembly` frames them); building is in
:mod:`.build`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import IntEnum

from stormwatch.protocols.dcerpc.interfaces import SyntaxId, uuid_from_wire
from stormwatch.protocols.errors import MalformedMessage, NeedMoreData
from stormwatch.protocols.wire import Layout


class PType(IntEnum):
    """[C706] 12.6.4 / [MS-RPCE] 2.2.2.1: connection-oriented PDU types (the missing numbers are
    connectionless-only and are malformed on a connection)."""

    REQUEST = 0
    RESPONSE = 2
    FAULT = 3
    BIND = 11
    BIND_ACK = 12
    BIND_NAK = 13
    ALTER_CONTEXT = 14
    ALTER_CONTEXT_RESP = 15
    AUTH3 = 16
    SHUTDOWN = 17
    CO_CANCEL = 18
    ORPHANED = 19
    RTS = 20  # [MS-RPCH] 2.2.3.1: RPC over HTTP only


_PTYPES = frozenset(int(p) for p in PType)

PFC_FIRST_FRAG = 0x01
PFC_LAST_FRAG = 0x02
PFC_PENDING_CANCEL = 0x04  # in bind/bind_ack: PFC_SUPPORT_HEADER_SIGN ([MS-RPCE] 2.2.2.3)
PFC_RESERVED_1 = 0x08
PFC_CONC_MPX = 0x10
PFC_DID_NOT_EXECUTE = 0x20
PFC_MAYBE = 0x40
PFC_OBJECT_UUID = 0x80

HEADER_SIZE = 16
SEC_TRAILER_SIZE = 8


def _pair(name: str, fields: tuple[tuple[str, str], ...]) -> tuple[Layout, Layout]:
    """One field table, both integer byte orders: (little-endian layout, big-endian layout)."""
    return Layout(name, "<", fields), Layout(name, ">", fields)


#: [C706] 12.6.3.1 the common header after its first eight single-byte fields.
COMMON_TAIL = _pair("common header", (("frag_length", "H"), ("auth_length", "H"), ("call_id", "I")))
#: [MS-RPCE] 2.2.2.11 sec_trailer.
SEC_TRAILER = _pair("sec_trailer", (("auth_type", "B"), ("auth_level", "B"), ("auth_pad_length", "B"),
                                    ("auth_reserved", "B"), ("auth_context_id", "I")))
#: [C706] 12.6.4.11 / 12.6.4.9 request (24 bytes with the common header).
REQUEST_BODY = _pair("request header", (("alloc_hint", "I"), ("p_cont_id", "H"), ("opnum", "H")))
#: [C706] 12.6.4.10 response and [C706] 12.6.4.7 / [MS-RPCE] 2.2.2.9 fault share this start.
RESPONSE_BODY = _pair("response header", (("alloc_hint", "I"), ("p_cont_id", "H"), ("cancel_count", "B"),
                                          ("reserved", "B")))
FAULT_STATUS = _pair("fault status", (("status", "I"), ("reserved", "I")))
#: [C706] 12.6.4.3 bind / 12.6.4.1 alter_context: the fixed part before p_context_elem_t.
BIND_BODY = _pair("bind header", (("max_xmit_frag", "H"), ("max_recv_frag", "H"), ("assoc_group_id", "I"),
                                  ("n_context_elem", "B"), ("reserved", "B"), ("reserved2", "H")))
#: [C706] 12.6.3.1 p_cont_elem_t before its syntaxes.
CONTEXT_ELEM = _pair("p_cont_elem_t", (("p_cont_id", "H"), ("n_transfer_syn", "B"), ("reserved", "B")))
#: [C706] 12.6.4.4 bind_ack / 12.6.4.2 alter_context_resp: up to the secondary address.
BIND_ACK_BODY = _pair("bind_ack header", (("max_xmit_frag", "H"), ("max_recv_frag", "H"),
                                          ("assoc_group_id", "I"), ("sec_addr_length", "H")))
RESULT_LIST = _pair("p_result_list_t", (("n_results", "B"), ("reserved", "B"), ("reserved2", "H")))
RESULT = _pair("p_result_t", (("result", "H"), ("reason", "H")))
VERSION = _pair("if_version", (("major", "H"), ("minor", "H")))
BIND_NAK_BODY = _pair("bind_nak", (("provider_reject_reason", "H"),))

WHAT = "DCE/RPC PDU"


@dataclass(frozen=True, slots=True)
class Header:
    """[C706] 12.6.3.1 the common header."""

    rpc_vers: int
    rpc_vers_minor: int
    ptype: int
    pfc_flags: int
    drep: bytes
    frag_length: int
    auth_length: int
    call_id: int

    @property
    def little_endian(self) -> bool:
        return self.drep[0] >> 4 == 1

    @property
    def ebcdic(self) -> bool:
        return self.drep[0] & 0x0F == 1

    @property
    def first_frag(self) -> bool:
        return bool(self.pfc_flags & PFC_FIRST_FRAG)

    @property
    def last_frag(self) -> bool:
        return bool(self.pfc_flags & PFC_LAST_FRAG)


@dataclass(frozen=True, slots=True)
class AuthVerifier:
    """[MS-RPCE] 2.2.2.11 sec_trailer and auth value (RPC_C_AUTHN_* type, RPC_C_AUTHN_LEVEL_*)."""

    auth_type: int
    auth_level: int
    auth_pad_length: int
    auth_context_id: int
    value: bytes


@dataclass(frozen=True, slots=True)
class ContextElem:
    """[C706] 12.6.3.1 p_cont_elem_t: a presentation context the client proposes."""

    context_id: int
    abstract_syntax: SyntaxId
    transfer_syntaxes: tuple[SyntaxId, ...]


@dataclass(frozen=True, slots=True)
class ContextResult:
    """[C706] 12.6.3.1 p_result_t: 0 acceptance, 1 user rejection, 2 provider rejection,
    3 negotiate_ack ([MS-RPCE] 2.2.2.5); ``reason`` is a provider reason (or feature bitmask)."""

    result: int
    reason: int
    transfer_syntax: SyntaxId


@dataclass(frozen=True, slots=True)
class Bind:
    """[C706] 12.6.4.3 bind (and, as :class:`AlterContext`, 12.6.4.1 alter_context)."""

    header: Header
    max_xmit_frag: int
    max_recv_frag: int
    assoc_group_id: int
    contexts: tuple[ContextElem, ...]
    auth: AuthVerifier | None


@dataclass(frozen=True, slots=True)
class AlterContext(Bind):
    """[C706] 12.6.4.1 alter_context: a bind on an existing association."""


@dataclass(frozen=True, slots=True)
class BindAck:
    """[C706] 12.6.4.4 bind_ack (and, as :class:`AlterContextResp`, 12.6.4.2)."""

    header: Header
    max_xmit_frag: int
    max_recv_frag: int
    assoc_group_id: int
    secondary_address: str
    results: tuple[ContextResult, ...]
    auth: AuthVerifier | None


@dataclass(frozen=True, slots=True)
class AlterContextResp(BindAck):
    """[C706] 12.6.4.2 alter_context_resp."""


@dataclass(frozen=True, slots=True)
class BindNak:
    """[C706] 12.6.4.5 bind_nak: ``reason`` is a p_reject_reason_t; ``versions`` (major, minor)."""

    header: Header
    reason: int
    versions: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Request:
    """[C706] 12.6.4.9 request. After reassembly ``stub`` is the whole call's stub and
    ``fragments`` how many PDUs carried it; ``header`` is the first fragment's."""

    header: Header
    alloc_hint: int
    context_id: int
    opnum: int
    object_uuid: uuid.UUID | None
    stub: bytes
    auth: AuthVerifier | None
    fragments: int = 1


@dataclass(frozen=True, slots=True)
class Response:
    """[C706] 12.6.4.10 response (reassembled like :class:`Request`)."""

    header: Header
    alloc_hint: int
    context_id: int
    cancel_count: int
    stub: bytes
    auth: AuthVerifier | None
    fragments: int = 1


@dataclass(frozen=True, slots=True)
class Fault:
    """[C706] 12.6.4.7 / [MS-RPCE] 2.2.2.9 fault: ``status`` is an nca_s_* or Win32 code;
    ``stub`` holds any extended error information."""

    header: Header
    alloc_hint: int
    context_id: int
    cancel_count: int
    flags: int
    status: int
    stub: bytes
    auth: AuthVerifier | None


@dataclass(frozen=True, slots=True)
class Auth3:
    """[MS-RPCE] 2.2.2.10 rpc_auth_3: the third leg of a three-leg (NTLM) authentication."""

    header: Header
    auth: AuthVerifier | None


@dataclass(frozen=True, slots=True)
class ControlPdu:
    """shutdown, co_cancel, orphaned ([C706] 12.6.4.8, 12.6.4.6, 12.6.4.12) and RTS: kept whole."""

    header: Header
    body: bytes
    auth: AuthVerifier | None


Pdu = Bind | BindAck | BindNak | Request | Response | Fault | Auth3 | ControlPdu


def _fail(field: str, offset: int, detail: str) -> MalformedMessage:
    return MalformedMessage(WHAT, field, offset, detail)


def parse_header(buf: bytes | memoryview) -> Header:
    """The common header at the start of ``buf``; NeedMoreData below 16 bytes, MalformedMessage
    for a version, type or representation no connection-oriented peer sends."""
    if len(buf) < HEADER_SIZE:
        raise NeedMoreData("DCE/RPC common header", HEADER_SIZE)
    vers, minor, ptype, flags = buf[0], buf[1], buf[2], buf[3]
    drep = bytes(buf[4:8])
    if vers != 5:
        raise _fail("rpc_vers", 0, f"version {vers}, expected 5")
    if minor > 1:
        raise _fail("rpc_vers_minor", 1, f"minor version {minor}, expected 0 or 1")
    if ptype not in _PTYPES:
        raise _fail("PTYPE", 2, f"type {ptype} is not a connection-oriented PDU")
    if drep[0] >> 4 > 1 or drep[0] & 0x0F > 1:
        raise _fail("packed_drep", 4, f"data representation {drep.hex()} not defined")
    little = drep[0] >> 4 == 1
    frag_length, auth_length, call_id = COMMON_TAIL[0 if little else 1].unpack(buf, 8)
    if frag_length < HEADER_SIZE:
        raise _fail("frag_length", 8, f"{frag_length} is shorter than the header")
    if auth_length and auth_length + SEC_TRAILER_SIZE > frag_length - HEADER_SIZE:
        raise _fail("auth_length", 10, f"{auth_length} + sec_trailer does not fit in {frag_length}")
    return Header(vers, minor, ptype, flags, drep, frag_length, auth_length, call_id)


def _syntax(buf: bytes, offset: int, little: bool) -> SyntaxId:
    major, minor = VERSION[0 if little else 1].unpack(buf, offset + 16)
    return SyntaxId(uuid_from_wire(buf, offset, little), major, minor)


def _auth(pdu: bytes, h: Header) -> tuple[AuthVerifier | None, int]:
    """The verifier and the offset where it (or the end of the body) begins."""
    if not h.auth_length:
        return None, h.frag_length
    at = h.frag_length - h.auth_length - SEC_TRAILER_SIZE
    t, lvl, pad, _rsv, ctx = SEC_TRAILER[0 if h.little_endian else 1].unpack(pdu, at)
    return AuthVerifier(t, lvl, pad, ctx, pdu[at + SEC_TRAILER_SIZE:h.frag_length]), at


def _stub(pdu: bytes, start: int, end: int, auth: AuthVerifier | None) -> bytes:
    if start > end:
        raise _fail("frag_length", 8, f"body needs {start} bytes, {end} available before the verifier")
    if auth is not None:
        if auth.auth_pad_length > end - start:
            raise _fail("auth_pad_length", end + 2, f"{auth.auth_pad_length} pad bytes, stub is {end - start}")
        end -= auth.auth_pad_length
    return pdu[start:end]


def _contexts(pdu: bytes, off: int, n: int, end: int, little: bool) -> tuple[ContextElem, ...]:
    out = []
    for _ in range(n):
        if off + 4 + 20 > end:
            raise _fail("p_cont_elem_t", off, "context element runs past the PDU")
        ctx_id, n_syn, _ = CONTEXT_ELEM[0 if little else 1].unpack(pdu, off)
        abstract = _syntax(pdu, off + 4, little)
        off += 24
        if off + 20 * n_syn > end:
            raise _fail("transfer_syntaxes", off, f"{n_syn} transfer syntaxes run past the PDU")
        transfers = tuple(_syntax(pdu, off + 20 * i, little) for i in range(n_syn))
        off += 20 * n_syn
        out.append(ContextElem(ctx_id, abstract, transfers))
    return tuple(out)


def _parse_bind(pdu: bytes, h: Header, auth: AuthVerifier | None, end: int) -> Bind:
    le = h.little_endian
    xmit, recv, group, n, _, _ = BIND_BODY[0 if le else 1].unpack(pdu, HEADER_SIZE)
    if end < HEADER_SIZE + 12:
        raise _fail("p_context_elem_t", HEADER_SIZE, "bind body runs past the PDU")
    contexts = _contexts(pdu, HEADER_SIZE + 12, n, end, le)
    cls = AlterContext if h.ptype == PType.ALTER_CONTEXT else Bind
    return cls(h, xmit, recv, group, contexts, auth)


def _parse_bind_ack(pdu: bytes, h: Header, auth: AuthVerifier | None, end: int) -> BindAck:
    le = h.little_endian
    xmit, recv, group, addr_len = BIND_ACK_BODY[0 if le else 1].unpack(pdu, HEADER_SIZE)
    off = HEADER_SIZE + 10
    if off + addr_len > end:
        raise _fail("sec_addr", off, f"secondary address of {addr_len} bytes runs past the PDU")
    # port_any_t ([C706] 12.6.3.1): an 8-bit string including its NUL.
    address = pdu[off:off + addr_len].split(b"\x00", 1)[0].decode("latin-1")
    off += addr_len
    off += -off % 4  # the result list is 4-byte aligned from the start of the PDU
    n, _, _ = RESULT_LIST[0 if le else 1].unpack(pdu, off)
    off += 4
    if off + 24 * n > end:
        raise _fail("p_result_list_t", off, f"{n} results run past the PDU")
    results = []
    for i in range(n):
        result, reason = RESULT[0 if le else 1].unpack(pdu, off + 24 * i)
        results.append(ContextResult(result, reason, _syntax(pdu, off + 24 * i + 4, le)))
    cls = AlterContextResp if h.ptype == PType.ALTER_CONTEXT_RESP else BindAck
    return cls(h, xmit, recv, group, address, tuple(results), auth)


def _parse_request(pdu: bytes, h: Header, auth: AuthVerifier | None, end: int) -> Request:
    hint, ctx, opnum = REQUEST_BODY[0 if h.little_endian else 1].unpack(pdu, HEADER_SIZE)
    start = HEADER_SIZE + 8
    obj = None
    if h.pfc_flags & PFC_OBJECT_UUID:
        if start + 16 > end:
            raise _fail("object", start, "PFC_OBJECT_UUID set but no room for the object UUID")
        obj = uuid_from_wire(pdu, start, h.little_endian)
        start += 16
    return Request(h, hint, ctx, opnum, obj, _stub(pdu, start, end, auth), auth)


def _parse_response(pdu: bytes, h: Header, auth: AuthVerifier | None, end: int) -> Response | Fault:
    le = h.little_endian
    hint, ctx, cancels, flags = RESPONSE_BODY[0 if le else 1].unpack(pdu, HEADER_SIZE)
    if h.ptype == PType.RESPONSE:
        return Response(h, hint, ctx, cancels, _stub(pdu, HEADER_SIZE + 8, end, auth), auth)
    if end < HEADER_SIZE + 16:
        raise _fail("status", HEADER_SIZE + 8, "fault without a status")
    status, _ = FAULT_STATUS[0 if le else 1].unpack(pdu, HEADER_SIZE + 8)
    return Fault(h, hint, ctx, cancels, flags, status, _stub(pdu, HEADER_SIZE + 16, end, auth), auth)


def _parse_bind_nak(pdu: bytes, h: Header, end: int) -> BindNak:
    if end < HEADER_SIZE + 2:
        raise _fail("provider_reject_reason", HEADER_SIZE, "bind_nak without a reason")
    (reason,) = BIND_NAK_BODY[0 if h.little_endian else 1].unpack(pdu, HEADER_SIZE)
    versions: list[tuple[int, int]] = []
    off = HEADER_SIZE + 2
    if off < end:  # p_rt_versions_supported_t: a count, then (major, minor) octet pairs
        n = pdu[off]
        pairs = pdu[off + 1:off + 1 + 2 * n]
        if len(pairs) < 2 * n or off + 1 + 2 * n > end:
            raise _fail("versions", off, f"{n} protocol versions run past the PDU")
        versions = [(pairs[2 * i], pairs[2 * i + 1]) for i in range(n)]
    return BindNak(h, reason, tuple(versions))


def parse_pdu(buf: bytes | memoryview) -> Pdu:
    """The PDU at the start of ``buf`` (bytes beyond its ``frag_length`` are ignored).

    NeedMoreData while the fragment is incomplete; MalformedMessage when a field contradicts the
    fragment it is in."""
    h = parse_header(buf)
    if len(buf) < h.frag_length:
        raise NeedMoreData("DCE/RPC PDU", h.frag_length)
    pdu = bytes(buf[:h.frag_length])
    auth, end = _auth(pdu, h)
    try:
        if h.ptype in (PType.BIND, PType.ALTER_CONTEXT):
            return _parse_bind(pdu, h, auth, end)
        if h.ptype in (PType.BIND_ACK, PType.ALTER_CONTEXT_RESP):
            return _parse_bind_ack(pdu, h, auth, end)
        if h.ptype == PType.REQUEST:
            return _parse_request(pdu, h, auth, end)
        if h.ptype in (PType.RESPONSE, PType.FAULT):
            return _parse_response(pdu, h, auth, end)
        if h.ptype == PType.BIND_NAK:
            return _parse_bind_nak(pdu, h, end)
        if h.ptype == PType.AUTH3:
            return Auth3(h, auth)
        return ControlPdu(h, pdu[HEADER_SIZE:end], auth)
    except NeedMoreData as exc:
        # The fragment is complete, so a field running past it is a lie, not a partial read.
        raise _fail(exc.what, exc.needed or 0, f"runs past frag_length {h.frag_length}") from None
