"""SPNEGO security blobs ([RFC 4178], [MS-SPNG]) as SMB carries them, and raw NTLMSSP.

    blob = parse_security_blob(session_setup.security_buffer)
    blob.ntlm                  # the NTLMSSP message inside, or None (Kerberos, empty, ...)
    build_neg_token_init_hint()                      # SMB negotiate response SecurityBuffer
    accept_incomplete(challenge) / accept_completed()  # session setup response legs

An SMB security buffer holds one of:

* a GSS-API InitialContextToken ([RFC 2743] 3.1: ``[APPLICATION 0] { thisMech OID, token }``)
  whose mech is SPNEGO 1.3.6.1.5.5.2 and whose token is a NegTokenInit ([RFC 4178] 4.2.1), or
  another mech's token (raw Kerberos, for example);
* a bare NegTokenResp ``[1]`` ([RFC 4178] 4.2.2: every token after the first);
* a bare NegTokenInit ``[0]`` (seen from some stacks);
* raw NTLMSSP, ``NTLMSSP\\0...``, without any wrapping (old clients, Zeek's raw_ntlm_in_smb trace).

Why a DER reader of our own rather than pyasn1: SPNEGO needs six universal types, [APPLICATION 0] and a handful
of context tags; a grammar-driven reader of ~100 lines has a depth fixed by the grammar (at most 6
nested elements), bounded list sizes, and raises only our error tree, where a generic decoder
must be fenced in (recursion, huge lengths, its own exception types) and would become a runtime
dependency of the sensor (impacket, which brings pyasn1, is only a test dependency).
Only definite lengths of up to 4 octets and low tag numbers are accepted (DER, [X.690] 10.1).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

from stormwatch.protocols import ntlmssp
from stormwatch.protocols.errors import MalformedMessage, NeedMoreData, ProtocolError

SPNEGO_OID = "1.3.6.1.5.5.2"
NTLMSSP_OID = "1.3.6.1.4.1.311.2.2.10"
KRB5_OID = "1.2.840.113554.1.2.2"
MS_KRB5_OID = "1.2.840.48018.1.2.2"  # the "broken" Kerberos OID Windows 2000 introduced
KRB5_U2U_OID = "1.2.840.113554.1.2.2.3"
NEGOEX_OID = "1.3.6.1.4.1.311.2.2.30"
MECH_NAMES = {SPNEGO_OID: "spnego", NTLMSSP_OID: "ntlmssp", KRB5_OID: "kerberos", MS_KRB5_OID: "ms-kerberos",
              KRB5_U2U_OID: "kerberos-u2u", NEGOEX_OID: "negoex"}
# [MS-SPNG] 2.2.1 NegTokenInit2: the hint name Windows servers send (since Windows Server 2008).
HINT_NAME = "not_defined_in_RFC4178@please_ignore"

# [RFC 4178] 4.2.2 negState.
ACCEPT_COMPLETED = 0
ACCEPT_INCOMPLETE = 1
REJECT = 2
REQUEST_MIC = 3

MAX_MECH_TYPES = 32  # Windows offers 4; the list bounds a loop over attacker input
MAX_OID_OCTETS = 64

_SEQUENCE = 0x30
_OID = 0x06
_OCTET_STRING = 0x04
_ENUMERATED = 0x0A
_BIT_STRING = 0x03
_GENERAL_STRING = 0x1B
_APPLICATION_0 = 0x60
_NEG_TOKEN_INIT = 0xA0
_NEG_TOKEN_RESP = 0xA1


def _ctx(n: int) -> int:
    """The identifier octet of a constructed context-specific tag [n] (EXPLICIT tagging)."""
    return 0xA0 | n


# ---------------------------------------------------------------------------------- DER reading
class _Tlv(NamedTuple):  # a tuple: a dozen are made per logon, and a frozen dataclass costs 3x more
    tag: int      # the identifier octet, whole (class, constructed bit and low tag number)
    start: int    # offset of the content
    end: int      # offset after the content


def _overrun(outermost: bool, what: str, needed: int, field: str, at: int, detail: str) -> ProtocolError:
    if outermost:
        return NeedMoreData(what, needed)
    return MalformedMessage(what, field, at, detail)


def _read_tlv(buf: bytes, offset: int, limit: int, what: str, outermost: bool = False) -> _Tlv:
    """One DER element at ``offset`` that must end by ``limit``. The outermost element running
    past the buffer is a cut message (NeedMoreData); an inner one running past its container is
    a malformed one."""
    if offset + 2 > limit:
        raise _overrun(outermost, what, offset + 2, "tag", offset, "element header overruns its container")
    tag, first = buf[offset], buf[offset + 1]
    if tag & 0x1F == 0x1F:
        raise MalformedMessage(what, "tag", offset, "high tag numbers are not used by SPNEGO")
    pos = offset + 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise MalformedMessage(what, "length", offset + 1, "indefinite length is not DER")
    else:
        count = first & 0x7F
        if count > 4:
            raise MalformedMessage(what, "length", offset + 1, f"{count}-octet length")
        if pos + count > limit:
            raise _overrun(outermost, what, pos + count, "length", offset + 1,
                           "length octets overrun the container")
        length = int.from_bytes(buf[pos:pos + count], "big")
        pos += count
    end = pos + length
    if end > limit:
        raise _overrun(outermost, what, end, "length", offset + 1, f"element of {length} bytes overruns its container")
    return _Tlv(tag, pos, end)


def _expect(buf: bytes, offset: int, limit: int, tag: int, what: str, field: str) -> _Tlv:
    tlv = _read_tlv(buf, offset, limit, what)
    if tlv.tag != tag:
        raise MalformedMessage(what, field, offset, f"tag 0x{tlv.tag:02x} where 0x{tag:02x} was expected")
    return tlv


def _children(buf: bytes, seq: _Tlv, what: str) -> dict[int, _Tlv]:
    """The elements of a SEQUENCE of context-tagged optional fields, by tag (order not enforced,
    duplicates refused, unknown tags kept for the caller to ignore: extensibility per [X.680])."""
    out: dict[int, _Tlv] = {}
    pos = seq.start
    while pos < seq.end:
        tlv = _read_tlv(buf, pos, seq.end, what)
        if tlv.tag in out:
            raise MalformedMessage(what, "sequence", pos, f"tag 0x{tlv.tag:02x} repeated")
        if len(out) >= 16:
            raise MalformedMessage(what, "sequence", pos, "too many elements")
        out[tlv.tag] = tlv
        pos = tlv.end
    return out


def _oid(buf: bytes, tlv: _Tlv, what: str) -> str:
    """[X.690] 8.19 OBJECT IDENTIFIER, minimal base-128 arcs."""
    raw = bytes(buf[tlv.start:tlv.end])
    if not raw or len(raw) > MAX_OID_OCTETS:
        raise MalformedMessage(what, "OID", tlv.start, f"{len(raw)} octets")
    decoded = _oid_text(raw)
    if isinstance(decoded, str):
        return decoded
    at, detail = decoded
    raise MalformedMessage(what, "OID", tlv.start + at, detail)


@functools.lru_cache(maxsize=256)  # the same few mechanism OIDs in every logon
def _oid_text(raw: bytes) -> str | tuple[int, str]:
    """The dotted form of an OID's content octets, or (offset in ``raw``, why it is malformed)."""
    arcs: list[int] = []
    value = 0
    fresh = True
    for i, octet in enumerate(raw):
        if fresh and octet == 0x80:
            return i, "non-minimal arc"
        value = value << 7 | octet & 0x7F
        fresh = not octet & 0x80
        if fresh:
            arcs.append(value)
            value = 0
    if not fresh:
        return len(raw) - 1, "last arc unfinished"
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in (first, arcs[0] - 40 * first, *arcs[1:]))


def _inner(buf: bytes, wrapper: _Tlv, tag: int, what: str, field: str) -> _Tlv:
    """The single element inside an EXPLICIT context tag."""
    tlv = _expect(buf, wrapper.start, wrapper.end, tag, what, field)
    if tlv.end != wrapper.end:
        raise MalformedMessage(what, field, tlv.end, "trailing bytes inside the tag")
    return tlv


def _octets(buf: bytes, wrapper: _Tlv, what: str, field: str) -> bytes:
    tlv = _inner(buf, wrapper, _OCTET_STRING, what, field)
    return buf[tlv.start:tlv.end]


# ---------------------------------------------------------------------------------- DER writing
def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    size = (n.bit_length() + 7) // 8
    return bytes((tag, 0x80 | size)) + n.to_bytes(size, "big") + content


@functools.lru_cache(maxsize=64)  # our own few OIDs, encoded in every negotiate and logon answer
def encode_oid(dotted: str) -> bytes:
    """The DER encoding (tag, length, arcs) of a dotted OID."""
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray()
    for value in (40 * arcs[0] + arcs[1], *arcs[2:]):
        chunk = [value & 0x7F]
        value >>= 7
        while value:
            chunk.append(0x80 | value & 0x7F)
            value >>= 7
        body.extend(reversed(chunk))
    return _tlv(_OID, bytes(body))


# ---------------------------------------------------------------------------------- messages
@dataclass(frozen=True, slots=True)
class NegTokenInit:
    """[RFC 4178] 4.2.1 NegTokenInit, with the [MS-SPNG] 2.2.1 NegTokenInit2 negHints."""

    mech_types: tuple[str, ...]
    req_flags: int | None = None
    mech_token: bytes | None = None
    mech_list_mic: bytes | None = None
    hint_name: str | None = None


@dataclass(frozen=True, slots=True)
class NegTokenResp:
    """[RFC 4178] 4.2.2 NegTokenResp."""

    neg_state: int | None = None
    supported_mech: str | None = None
    response_token: bytes | None = None
    mech_list_mic: bytes | None = None


@dataclass(frozen=True, slots=True)
class SecurityBlob:
    """What an SMB security buffer held. ``wrapping`` is "spnego" (GSS-API + SPNEGO, or a bare
    NegTokenInit/Resp), "raw-ntlmssp", "gss" (GSS-API token of another mech: ``mech``), or
    "empty". ``ntlm`` is the NTLMSSP message to give :mod:`ntlmssp`, if there is one."""

    wrapping: str
    mech: str | None = None
    init: NegTokenInit | None = None
    resp: NegTokenResp | None = None
    ntlm: bytes | None = None


def _parse_init_body(buf: bytes, wrapper: _Tlv, what: str) -> NegTokenInit:
    seq = _inner(buf, wrapper, _SEQUENCE, what, "NegTokenInit")
    kids = _children(buf, seq, what)
    mechs: list[str] = []
    if _ctx(0) in kids:
        lst = _inner(buf, kids[_ctx(0)], _SEQUENCE, what, "mechTypes")
        pos = lst.start
        while pos < lst.end:
            if len(mechs) >= MAX_MECH_TYPES:
                raise MalformedMessage(what, "mechTypes", pos, f"more than {MAX_MECH_TYPES} mechanisms")
            tlv = _expect(buf, pos, lst.end, _OID, what, "mechTypes")
            mechs.append(_oid(buf, tlv, what))
            pos = tlv.end
    flags = None
    if _ctx(1) in kids:
        bits = _inner(buf, kids[_ctx(1)], _BIT_STRING, what, "reqFlags")
        raw = buf[bits.start:bits.end]
        flags = int.from_bytes(raw[1:], "big") if len(raw) > 1 else 0
    token = _octets(buf, kids[_ctx(2)], what, "mechToken") if _ctx(2) in kids else None
    mic = hint = None
    if _ctx(3) in kids:
        # [3] is mechListMIC in RFC 4178 but negHints in NegTokenInit2: tell them by content.
        inner = _read_tlv(buf, kids[_ctx(3)].start, kids[_ctx(3)].end, what)
        if inner.tag == _OCTET_STRING:
            mic = buf[inner.start:inner.end]
        elif inner.tag == _SEQUENCE:
            hints = _children(buf, inner, what)
            if _ctx(0) in hints:
                name = _inner(buf, hints[_ctx(0)], _GENERAL_STRING, what, "hintName")
                hint = buf[name.start:name.end].decode("latin-1")
        else:
            raise MalformedMessage(what, "negHints", inner.start, f"tag 0x{inner.tag:02x}")
    if _ctx(4) in kids:
        mic = _octets(buf, kids[_ctx(4)], what, "mechListMIC")
    return NegTokenInit(tuple(mechs), flags, token, mic, hint)


def _parse_resp_body(buf: bytes, wrapper: _Tlv, what: str) -> NegTokenResp:
    seq = _inner(buf, wrapper, _SEQUENCE, what, "NegTokenResp")
    kids = _children(buf, seq, what)
    state = mech = None
    if _ctx(0) in kids:
        enum = _inner(buf, kids[_ctx(0)], _ENUMERATED, what, "negState")
        if not 1 <= enum.end - enum.start <= 4:
            raise MalformedMessage(what, "negState", enum.start, "bad ENUMERATED length")
        state = int.from_bytes(buf[enum.start:enum.end], "big", signed=True)
    if _ctx(1) in kids:
        mech = _oid(buf, _inner(buf, kids[_ctx(1)], _OID, what, "supportedMech"), what)
    token = _octets(buf, kids[_ctx(2)], what, "responseToken") if _ctx(2) in kids else None
    mic = _octets(buf, kids[_ctx(3)], what, "mechListMIC") if _ctx(3) in kids else None
    return NegTokenResp(state, mech, token, mic)


def _ntlm(token: bytes | None) -> bytes | None:
    return token if token is not None and token.startswith(ntlmssp.SIGNATURE) else None


def parse_security_blob(data: bytes) -> SecurityBlob:
    """Any SMB security buffer (see the module docstring). Bytes after the outer element are
    ignored, as Windows does; everything inside it must parse."""
    what = "SPNEGO token"
    buf = bytes(data)
    if not buf:
        return SecurityBlob("empty")
    if buf.startswith(ntlmssp.SIGNATURE[:len(buf)]):
        if len(buf) < len(ntlmssp.SIGNATURE):
            raise NeedMoreData("NTLMSSP message", len(ntlmssp.SIGNATURE))
        return SecurityBlob("raw-ntlmssp", mech=NTLMSSP_OID, ntlm=buf)
    outer = _read_tlv(buf, 0, len(buf), what, outermost=True)
    if outer.tag == _APPLICATION_0:
        oid_tlv = _expect(buf, outer.start, outer.end, _OID, what, "thisMech")
        mech = _oid(buf, oid_tlv, what)
        if mech != SPNEGO_OID:
            return SecurityBlob("gss", mech=mech, ntlm=_ntlm(buf[oid_tlv.end:outer.end]))
        token = _read_tlv(buf, oid_tlv.end, outer.end, what)
        if token.end != outer.end:
            raise MalformedMessage(what, "innerContextToken", token.end, "trailing bytes")
        outer = token
    if outer.tag == _NEG_TOKEN_INIT:
        init = _parse_init_body(buf, outer, what)
        return SecurityBlob("spnego", mech=init.mech_types[0] if init.mech_types else None, init=init,
                            ntlm=_ntlm(init.mech_token))
    if outer.tag == _NEG_TOKEN_RESP:
        resp = _parse_resp_body(buf, outer, what)
        return SecurityBlob("spnego", mech=resp.supported_mech, resp=resp, ntlm=_ntlm(resp.response_token))
    raise MalformedMessage(what, "NegotiationToken", 0, f"tag 0x{outer.tag:02x} is not a GSS or SPNEGO token")


def build_neg_token_init(mech_types: tuple[str, ...] = (NTLMSSP_OID,), *, mech_token: bytes | None = None,
                         hint_name: str | None = HINT_NAME, mech_list_mic: bytes | None = None) -> bytes:
    """A GSS-API-wrapped NegTokenInit. With ``hint_name`` it is the [MS-SPNG] 2.2.1 NegTokenInit2
    a Windows server puts in its negotiate response (negHints [3] { hintName [0] }, MIC at [4]);
    without, the plain [RFC 4178] form a client sends (MIC at [3])."""
    body = _tlv(_ctx(0), _tlv(_SEQUENCE, b"".join(encode_oid(m) for m in mech_types)))
    if mech_token is not None:
        body += _tlv(_ctx(2), _tlv(_OCTET_STRING, mech_token))
    if hint_name is not None:
        body += _tlv(_ctx(3), _tlv(_SEQUENCE, _tlv(_ctx(0), _tlv(_GENERAL_STRING, hint_name.encode("latin-1")))))
    if mech_list_mic is not None:
        body += _tlv(_ctx(4 if hint_name is not None else 3), _tlv(_OCTET_STRING, mech_list_mic))
    return _tlv(_APPLICATION_0, encode_oid(SPNEGO_OID) + _tlv(_NEG_TOKEN_INIT, _tlv(_SEQUENCE, body)))


@functools.lru_cache(maxsize=16)  # the same token in every negotiate response of a persona
def build_neg_token_init_hint(mech_types: tuple[str, ...] = (NTLMSSP_OID,), hint: bool = True) -> bytes:
    """The server's initial token for the SMB1 extended-security negotiate response and the SMB2
    NEGOTIATE response SecurityBuffer ([MS-SMB2] 3.3.5.4, [MS-SPNG] 2.2.1)."""
    return build_neg_token_init(mech_types, hint_name=HINT_NAME if hint else None)


def build_neg_token_resp(neg_state: int | None = None, supported_mech: str | None = None,
                         response_token: bytes | None = None, mech_list_mic: bytes | None = None) -> bytes:
    """A bare NegTokenResp ([RFC 4178] 4.2.2), as servers send every token after the first."""
    body = b""
    if neg_state is not None:
        body += _tlv(_ctx(0), _tlv(_ENUMERATED, bytes((neg_state,))))
    if supported_mech is not None:
        body += _tlv(_ctx(1), encode_oid(supported_mech))
    if response_token is not None:
        body += _tlv(_ctx(2), _tlv(_OCTET_STRING, response_token))
    if mech_list_mic is not None:
        body += _tlv(_ctx(3), _tlv(_OCTET_STRING, mech_list_mic))
    return _tlv(_NEG_TOKEN_RESP, _tlv(_SEQUENCE, body))


def accept_incomplete(ntlm_challenge: bytes, mech: str = NTLMSSP_OID) -> bytes:
    """The session-setup answer carrying the NTLM CHALLENGE (sent with
    STATUS_MORE_PROCESSING_REQUIRED)."""
    return build_neg_token_resp(ACCEPT_INCOMPLETE, mech, ntlm_challenge)


@functools.lru_cache(maxsize=1)
def accept_completed() -> bytes:
    """The last session-setup answer: ``a1 07 30 05 a0 03 0a 01 00`` as Windows sends it."""
    return build_neg_token_resp(ACCEPT_COMPLETED)


def wrap_like(client_blob: SecurityBlob, ntlm_message: bytes, neg_state: int = ACCEPT_INCOMPLETE) -> bytes:
    """Answer in the client's own wrapping: raw NTLMSSP to a raw client, a NegTokenResp otherwise
    (Windows answers a raw-NTLMSSP SMB1 client raw, and Zeek's trace shows it)."""
    if client_blob.wrapping == "raw-ntlmssp":
        return ntlm_message
    mech = NTLMSSP_OID if neg_state == ACCEPT_INCOMPLETE else None
    return build_neg_token_resp(neg_state, mech, ntlm_message)

