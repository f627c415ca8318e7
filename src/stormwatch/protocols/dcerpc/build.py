"""DCE/RPC connection-oriented PDUs: building, and presentation-context negotiation.

Everything built here is little-endian ASCII IEEE (``packed_drep`` 10 00 00 00, what Windows
sends). Layouts are those of :mod:`.pdu`; the spec sections are cited there.

What Windows 2000/XP answer, and so what :func:`negotiate` answers ([C706] 12.6.3.1 p_result_t,
[MS-RPCE] 3.3.1.5.3 and 3.3.1.5.6):

* an abstract syntax the server does not offer (unknown UUID, other major version, higher minor):
  provider rejection, reason 1 ``abstract_syntax_not_supported``;
* an offered interface whose transfer syntaxes do not include NDR 2.0 (or NDR64 when the persona
  supports it): provider rejection, reason 2 ``proposed_transfer_syntaxes_not_supported``;
* a bind-time feature negotiation context: ``negotiate_ack`` with the features both sides
  support when the persona knows the mechanism (Vista and later), else a reason-2 rejection, as
  XP gives;
* otherwise acceptance with the chosen transfer syntax.

Rejected results carry the nil transfer syntax (a zero UUID, version 0.0), as Windows' do.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Sequence

from stormwatch.protocols.dcerpc.interfaces import NDR, NDR64, SyntaxId, bind_time_features, uuid_to_wire
from stormwatch.protocols.dcerpc.pdu import (
    BIND_ACK_BODY,
    BIND_BODY,
    BIND_NAK_BODY,
    CONTEXT_ELEM,
    FAULT_STATUS,
    HEADER_SIZE,
    PFC_DID_NOT_EXECUTE,
    PFC_FIRST_FRAG,
    PFC_LAST_FRAG,
    PFC_OBJECT_UUID,
    REQUEST_BODY,
    RESPONSE_BODY,
    RESULT,
    RESULT_LIST,
    SEC_TRAILER,
    VERSION,
    AuthVerifier,
    ContextElem,
    ContextResult,
    PType,
)

DREP_LE_ASCII_IEEE = b"\x10\x00\x00\x00"
#: The fragment size Windows 2000/XP offer in bind_ack over named pipes ([MS-RPCE] 3.3.3.5.4);
#: over TCP they offer 5840.
DEFAULT_MAX_FRAG = 4280
SINGLE = PFC_FIRST_FRAG | PFC_LAST_FRAG

RESULT_ACCEPTANCE = 0
RESULT_USER_REJECTION = 1
RESULT_PROVIDER_REJECTION = 2
RESULT_NEGOTIATE_ACK = 3
REASON_NOT_SPECIFIED = 0
REASON_ABSTRACT_SYNTAX_NOT_SUPPORTED = 1
REASON_TRANSFER_SYNTAXES_NOT_SUPPORTED = 2
REASON_LOCAL_LIMIT_EXCEEDED = 3

#: [C706] 12.6.3.1 p_reject_reason_t (bind_nak) and [MS-RPCE] 2.2.2.5 additions.
NAK_REASON_NOT_SPECIFIED = 0
NAK_TEMPORARY_CONGESTION = 1
NAK_LOCAL_LIMIT_EXCEEDED = 2
NAK_PROTOCOL_VERSION_NOT_SUPPORTED = 4
NAK_AUTHENTICATION_TYPE_NOT_RECOGNIZED = 8
NAK_INVALID_CHECKSUM = 9

#: [C706] appendix E / [MS-RPCE] 2.2.2.9 fault statuses a server sends.
NCA_S_OP_RNG_ERROR = 0x1C010002  # the opnum is out of range for the interface
NCA_S_UNK_IF = 0x1C010003  # the presentation context does not name a bound interface
NCA_S_PROTO_ERROR = 0x1C01000B  # the PDU broke the protocol
NCA_S_FAULT_CONTEXT_MISMATCH = 0x1C00001A
NCA_S_FAULT_NDR = 0x000006F7  # RPC_X_BAD_STUB_DATA: the stub did not decode
NCA_S_FAULT_ACCESS_DENIED = 0x00000005

NIL_SYNTAX = SyntaxId(uuid.UUID(int=0), 0, 0)


def _header(ptype: int, flags: int, body_len: int, auth_len: int, call_id: int) -> bytes:
    return struct.pack("<BBBB4sHHI", 5, 0, ptype, flags, DREP_LE_ASCII_IEEE,
                       HEADER_SIZE + body_len, auth_len, call_id)


def _syntax(s: SyntaxId) -> bytes:
    return uuid_to_wire(s.uuid) + VERSION[0].pack(s.major, s.minor)


def _with_auth(body: bytes, auth: AuthVerifier | None) -> tuple[bytes, int]:
    """The body padded to 4 (from the PDU start: the header is 16) plus sec_trailer and value."""
    if auth is None:
        return body, 0
    pad = -len(body) % 4
    trailer = SEC_TRAILER[0].pack(auth.auth_type, auth.auth_level, pad, 0, auth.auth_context_id)
    return body + b"\x00" * pad + trailer + auth.value, len(auth.value)


def _pdu(ptype: int, flags: int, call_id: int, body: bytes, auth: AuthVerifier | None = None) -> bytes:
    full, auth_len = _with_auth(body, auth)
    return _header(ptype, flags, len(full), auth_len, call_id) + full


def build_bind(call_id: int, contexts: Sequence[ContextElem], *, max_xmit_frag: int = DEFAULT_MAX_FRAG,
               max_recv_frag: int = DEFAULT_MAX_FRAG, assoc_group_id: int = 0, alter: bool = False,
               flags: int = SINGLE, auth: AuthVerifier | None = None) -> bytes:
    """A bind (or alter_context) proposing ``contexts``."""
    body = BIND_BODY[0].pack(max_xmit_frag, max_recv_frag, assoc_group_id, len(contexts), 0, 0)
    for c in contexts:
        body += CONTEXT_ELEM[0].pack(c.context_id, len(c.transfer_syntaxes), 0) + _syntax(c.abstract_syntax)
        body += b"".join(_syntax(t) for t in c.transfer_syntaxes)
    return _pdu(PType.ALTER_CONTEXT if alter else PType.BIND, flags, call_id, body, auth)


def build_bind_ack(call_id: int, results: Sequence[ContextResult], *, secondary_address: str,
                   assoc_group_id: int, max_xmit_frag: int = DEFAULT_MAX_FRAG,
                   max_recv_frag: int = DEFAULT_MAX_FRAG, alter: bool = False, flags: int = SINGLE,
                   auth: AuthVerifier | None = None) -> bytes:
    r"""A bind_ack (or alter_context_resp). ``secondary_address`` is ``\PIPE\<name>`` over SMB or
    the TCP port as text; Windows sends an empty one in alter_context_resp."""
    addr = secondary_address.encode("latin-1") + b"\x00" if secondary_address else b""
    body = BIND_ACK_BODY[0].pack(max_xmit_frag, max_recv_frag, assoc_group_id, len(addr)) + addr
    body += b"\x00" * (-(HEADER_SIZE + len(body)) % 4)
    body += RESULT_LIST[0].pack(len(results), 0, 0)
    for r in results:
        body += RESULT[0].pack(r.result, r.reason) + _syntax(r.transfer_syntax)
    return _pdu(PType.ALTER_CONTEXT_RESP if alter else PType.BIND_ACK, flags, call_id, body, auth)


def build_bind_nak(call_id: int, reason: int = NAK_REASON_NOT_SPECIFIED,
                   versions: Sequence[tuple[int, int]] = ((5, 0),)) -> bytes:
    """A bind_nak with the protocol versions the server supports."""
    body = BIND_NAK_BODY[0].pack(reason) + bytes([len(versions)])
    body += b"".join(bytes([major, minor]) for major, minor in versions)
    return _pdu(PType.BIND_NAK, SINGLE, call_id, body)


def _chunks(stub: bytes, max_frag: int, overhead: int) -> list[bytes]:
    """The stub cut to fit ``max_frag``; every piece but the last a multiple of 8 bytes so that
    NDR alignment survives the cut ([C706] 12.6.3.7)."""
    room = max(8, (max_frag - overhead) & ~7)
    return [stub[i:i + room] for i in range(0, len(stub), room)] or [b""]


def build_request(call_id: int, context_id: int, opnum: int, stub: bytes, *,
                  object_uuid: uuid.UUID | None = None, max_frag: int | None = None,
                  auth: AuthVerifier | None = None) -> bytes:
    """A request, cut into fragments of at most ``max_frag`` bytes when given (for tests and
    replay; the sensor only answers)."""
    overhead = 24 + (16 if object_uuid else 0) + (8 + len(auth.value) + 7 if auth else 0)
    pieces = _chunks(stub, max_frag, overhead) if max_frag else [stub]
    out = bytearray()
    sent = 0
    for i, piece in enumerate(pieces):
        flags = (PFC_FIRST_FRAG if i == 0 else 0) | (PFC_LAST_FRAG if i == len(pieces) - 1 else 0)
        flags |= PFC_OBJECT_UUID if object_uuid else 0
        body = REQUEST_BODY[0].pack(len(stub) - sent, context_id, opnum)
        body += uuid_to_wire(object_uuid) if object_uuid else b""
        out += _pdu(PType.REQUEST, flags, call_id, body + piece, auth)
        sent += len(piece)
    return bytes(out)


def build_response(call_id: int, context_id: int, stub: bytes, *, max_frag: int = DEFAULT_MAX_FRAG) -> bytes:
    """A response, fragmented to the client's ``max_recv_frag``; the fragments are concatenated
    (a named pipe read or a TCP send takes them in order)."""
    out = bytearray()
    pieces = _chunks(stub, max_frag, 24)
    sent = 0
    for i, piece in enumerate(pieces):
        flags = (PFC_FIRST_FRAG if i == 0 else 0) | (PFC_LAST_FRAG if i == len(pieces) - 1 else 0)
        out += _pdu(PType.RESPONSE, flags, call_id, RESPONSE_BODY[0].pack(len(stub) - sent, context_id, 0, 0) + piece)
        sent += len(piece)
    return bytes(out)


def build_fault(call_id: int, context_id: int, status: int, *, did_not_execute: bool = True) -> bytes:
    """A fault with ``status`` (e.g. :data:`NCA_S_OP_RNG_ERROR`); Windows sets alloc_hint 32 and,
    for a call it refused before running it, PFC_DID_NOT_EXECUTE."""
    flags = SINGLE | (PFC_DID_NOT_EXECUTE if did_not_execute else 0)
    body = RESPONSE_BODY[0].pack(32, context_id, 0, 0) + FAULT_STATUS[0].pack(status, 0)
    return _pdu(PType.FAULT, flags, call_id, body)


def negotiate(contexts: Sequence[ContextElem], is_supported: Callable[[SyntaxId], bool], *,
              ndr64: bool = False, features: int | None = None) -> tuple[ContextResult, ...]:
    """The p_result_t for each proposed context, in order (see the module docstring).

    ``is_supported`` says whether the persona serves an abstract syntax (see
    :func:`~stormwatch.protocols.dcerpc.interfaces.lookup` and the pipe tables); ``features`` is
    the bind-time feature bitmask the persona supports, or None for XP and older."""
    out = []
    for c in contexts:
        offered = [bind_time_features(t) for t in c.transfer_syntaxes]
        bitmask = next((f for f in offered if f is not None), None)
        if bitmask is not None:
            if features is None:
                out.append(ContextResult(RESULT_PROVIDER_REJECTION, REASON_TRANSFER_SYNTAXES_NOT_SUPPORTED,
                                         NIL_SYNTAX))
            else:
                out.append(ContextResult(RESULT_NEGOTIATE_ACK, bitmask & features, NIL_SYNTAX))
            continue
        if not is_supported(c.abstract_syntax):
            out.append(ContextResult(RESULT_PROVIDER_REJECTION, REASON_ABSTRACT_SYNTAX_NOT_SUPPORTED, NIL_SYNTAX))
        elif NDR in c.transfer_syntaxes:
            out.append(ContextResult(RESULT_ACCEPTANCE, 0, NDR))
        elif ndr64 and NDR64 in c.transfer_syntaxes:
            out.append(ContextResult(RESULT_ACCEPTANCE, 0, NDR64))
        else:
            out.append(ContextResult(RESULT_PROVIDER_REJECTION, REASON_TRANSFER_SYNTAXES_NOT_SUPPORTED,
                                     NIL_SYNTAX))
    return tuple(out)
