"""SMB2 NEGOTIATE ([MS-SMB2] 2.2.3, 2.2.4) and the answer to an SMB1 multi-protocol negotiate.

    req = parse_negotiate_request(msg)                 # msg: the SMB2 message, header included
    dialect = select_dialect(req.dialects, persona_dialects)
    contexts = response_contexts(req, salt=...) if dialect == Dialect.SMB_3_1_1 else ()
    body = build_negotiate_response(dialect=dialect, server_guid=..., system_time=..., ...)

Multi-protocol negotiate ([MS-SMB2] 3.3.5.3.1 and 3.3.5.3.2): a client that does not know what a
server speaks sends an SMB1 NEGOTIATE listing "SMB 2.002" and/or "SMB 2.???" beside the SMB1
dialects. A server that implements SMB 2.1 or 3.x and finds "SMB 2.???" answers with an *SMB2*
NEGOTIATE response of DialectRevision 0x02FF (the wildcard), and the client then sends a real
SMB2 NEGOTIATE; a server that implements only 2.0.2 and finds "SMB 2.002" answers with dialect
0x0202 directly. Otherwise the negotiate stays SMB1. :func:`multiprotocol_dialect` makes that
choice from the SMB1 dialect strings (parsed by the SMB1 codec); the answer is

    build_message(Header(Command.NEGOTIATE, flags=HeaderFlags.SERVER_TO_REDIR, credits=1),
                  build_negotiate_response(dialect=0x02FF, ...))   # MessageId 0, no contexts

as Windows Server 2008 R2 sends it in the suricata-verify smb-filename trace.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stormwatch.protocols.errors import MalformedMessage
from stormwatch.protocols.smb2.constants import (
    HASH_SHA512,
    HEADER_SIZE,
    MAX_CONTEXT_ITEMS,
    MAX_DIALECTS,
    MAX_NEGOTIATE_CONTEXTS,
    Cipher,
    ContextType,
    Dialect,
    SigningAlgorithm,
)
from stormwatch.protocols.smb2.util import check_size, pad8, utf16
from stormwatch.protocols.wire import Layout, take

#: [MS-SMB2] 2.2.3 NEGOTIATE request, fixed part. The last 8 bytes are ClientStartTime before 3.1.1,
#: NegotiateContextOffset (4) + NegotiateContextCount (2) + Reserved2 (2) when 0x0311 is offered.
NEGOTIATE_REQUEST = Layout("SMB2 NEGOTIATE request", "<", (
    ("structure_size", "H"),  # 36
    ("dialect_count", "H"),
    ("security_mode", "H"),
    ("reserved", "H"),
    ("capabilities", "I"),
    ("client_guid", "16s"),
    ("context_offset", "I"),
    ("context_count", "H"),
    ("reserved2", "H"),
))
#: [MS-SMB2] 2.2.4 NEGOTIATE response, fixed part (the Buffer starts at header + 64 = 128).
NEGOTIATE_RESPONSE = Layout("SMB2 NEGOTIATE response", "<", (
    ("structure_size", "H"),  # 65
    ("security_mode", "H"),
    ("dialect", "H"),
    ("context_count", "H"),   # Reserved before 3.1.1
    ("server_guid", "16s"),
    ("capabilities", "I"),
    ("max_transact_size", "I"),
    ("max_read_size", "I"),
    ("max_write_size", "I"),
    ("system_time", "Q"),
    ("server_start_time", "Q"),
    ("security_offset", "H"),
    ("security_length", "H"),
    ("context_offset", "I"),  # Reserved2 before 3.1.1
))
#: [MS-SMB2] 2.2.3.1 NEGOTIATE_CONTEXT header; Data follows; the next context is 8-byte aligned.
NEGOTIATE_CONTEXT = Layout("SMB2 NEGOTIATE_CONTEXT", "<", (
    ("context_type", "H"), ("data_length", "H"), ("reserved", "I")))
_U16 = Layout("SMB2 negotiate context field", "<", (("value", "H"),))
_BODY = HEADER_SIZE


@dataclass(frozen=True, slots=True)
class NegotiateContext:
    """One [MS-SMB2] 2.2.3.1 negotiate context, raw."""

    context_type: int
    data: bytes

    def pack(self) -> bytes:
        return NEGOTIATE_CONTEXT.pack(self.context_type, len(self.data), 0) + self.data


@dataclass(frozen=True, slots=True)
class NegotiateRequest:
    """[MS-SMB2] 2.2.3, with the 3.1.1 contexts decoded ([MS-SMB2] 2.2.3.1.1 - 2.2.3.1.7).
    The decoded fields are None when the client sent no such context."""

    dialects: tuple[int, ...]
    security_mode: int
    capabilities: int
    client_guid: bytes
    client_start_time: int | None  # only before 3.1.1
    contexts: tuple[NegotiateContext, ...] = ()
    hash_algorithms: tuple[int, ...] | None = None
    salt: bytes | None = None
    ciphers: tuple[int, ...] | None = None
    signing_algorithms: tuple[int, ...] | None = None
    compression_algorithms: tuple[int, ...] | None = None
    netname: str | None = None  # the server name the client dialled ([MS-SMB2] 2.2.3.1.4)


@dataclass(frozen=True, slots=True)
class NegotiateResponse:
    """[MS-SMB2] 2.2.4 (parsed for tests and replayed captures)."""

    security_mode: int
    dialect: int
    server_guid: bytes
    capabilities: int
    max_transact_size: int
    max_read_size: int
    max_write_size: int
    system_time: int
    server_start_time: int
    security_buffer: bytes
    contexts: tuple[NegotiateContext, ...] = ()


def _u16_list(data: bytes, offset: int, count: int, what: str, field: str) -> tuple[int, ...]:
    if count > MAX_CONTEXT_ITEMS:
        raise MalformedMessage(what, field, offset, f"{count} items, more than {MAX_CONTEXT_ITEMS}")
    raw = take(data, offset, 2 * count, what)
    return tuple(int.from_bytes(raw[i:i + 2], "little") for i in range(0, len(raw), 2))


def _contexts(msg: bytes, offset: int, count: int, what: str) -> tuple[NegotiateContext, ...]:
    if count > MAX_NEGOTIATE_CONTEXTS:
        raise MalformedMessage(what, "NegotiateContextCount", offset, f"{count}, more than {MAX_NEGOTIATE_CONTEXTS}")
    out: list[NegotiateContext] = []
    pos = offset
    for i in range(count):
        if i:
            pos = pad8(pos)
        if pos + NEGOTIATE_CONTEXT.size > len(msg):
            raise MalformedMessage(what, "NegotiateContextList", pos, f"context {i} of {count} is missing")
        ctype, length, _reserved = NEGOTIATE_CONTEXT.unpack(msg, pos)
        out.append(NegotiateContext(ctype, take(msg, pos + 8, length, what)))
        pos += 8 + length
    return tuple(out)


@dataclass(slots=True)
class _Decoded:
    hash_algorithms: tuple[int, ...] | None = None
    salt: bytes | None = None
    ciphers: tuple[int, ...] | None = None
    signing_algorithms: tuple[int, ...] | None = None
    compression_algorithms: tuple[int, ...] | None = None
    netname: str | None = None


def _decode_contexts(contexts: tuple[NegotiateContext, ...], what: str) -> _Decoded:
    """The first context of each known type, decoded; unknown types are kept raw only."""
    out = _Decoded()
    for ctx in contexts:
        d, kind = ctx.data, ctx.context_type
        if kind == ContextType.PREAUTH_INTEGRITY_CAPABILITIES and out.hash_algorithms is None:
            count, salt_len = _U16.unpack(d, 0)[0], _U16.unpack(d, 2)[0]
            out.hash_algorithms = _u16_list(d, 4, count, what, "HashAlgorithms")
            out.salt = take(d, 4 + 2 * count, salt_len, what)
        elif kind == ContextType.ENCRYPTION_CAPABILITIES and out.ciphers is None:
            out.ciphers = _u16_list(d, 2, _U16.unpack(d, 0)[0], what, "Ciphers")
        elif kind == ContextType.SIGNING_CAPABILITIES and out.signing_algorithms is None:
            out.signing_algorithms = _u16_list(d, 2, _U16.unpack(d, 0)[0], what, "SigningAlgorithms")
        elif kind == ContextType.COMPRESSION_CAPABILITIES and out.compression_algorithms is None:
            # CompressionAlgorithmCount (2), Padding (2), Flags (4), then the algorithms
            out.compression_algorithms = _u16_list(d, 8, _U16.unpack(d, 0)[0], what, "CompressionAlgorithms")
        elif kind == ContextType.NETNAME_NEGOTIATE_CONTEXT_ID and out.netname is None:
            out.netname = utf16(d, what, "NetName", 0)
    return out


def parse_negotiate_request(msg: bytes) -> NegotiateRequest:
    """[MS-SMB2] 2.2.3. Contexts are read only when 0x0311 is offered (otherwise those 8 bytes are
    ClientStartTime); unknown context types are kept raw and skipped."""
    what = "SMB2 NEGOTIATE request"
    msg = bytes(msg)
    f = NEGOTIATE_REQUEST.unpack_dict(msg, _BODY)
    check_size(f["structure_size"], 36, what, _BODY)
    count = f["dialect_count"]
    if count > MAX_DIALECTS:
        raise MalformedMessage(what, "DialectCount", _BODY + 2, f"{count}, more than {MAX_DIALECTS}")
    raw = take(msg, _BODY + 36, 2 * count, what)
    dialects = tuple(int.from_bytes(raw[i:i + 2], "little") for i in range(0, len(raw), 2))
    if Dialect.SMB_3_1_1 not in dialects:
        start_time = f["context_offset"] | f["context_count"] << 32 | f["reserved2"] << 48
        return NegotiateRequest(dialects, f["security_mode"], f["capabilities"], f["client_guid"], start_time)
    contexts = _contexts(msg, f["context_offset"], f["context_count"], what) if f["context_count"] else ()
    d = _decode_contexts(contexts, what)
    return NegotiateRequest(dialects, f["security_mode"], f["capabilities"], f["client_guid"], None, contexts,
                            d.hash_algorithms, d.salt, d.ciphers, d.signing_algorithms, d.compression_algorithms,
                            d.netname)


def select_dialect(offered: Sequence[int], supported: Sequence[int]) -> int | None:
    """The greatest dialect both sides know ([MS-SMB2] 3.3.5.4), or None (the server then answers
    STATUS_NOT_SUPPORTED). The wildcard 0x02FF is never selected."""
    common = [d for d in offered if d in supported and d != Dialect.WILDCARD]
    return max(common) if common else None


def multiprotocol_dialect(smb1_dialects: Sequence[str], supported: Sequence[int]) -> int | None:
    """The SMB2 dialect to answer an SMB1 NEGOTIATE with, or None to stay with SMB1
    ([MS-SMB2] 3.3.5.3.1 / 3.3.5.3.2; see the module docstring)."""
    if "SMB 2.???" in smb1_dialects and any(d > Dialect.SMB_2_0_2 and d != Dialect.WILDCARD for d in supported):
        return int(Dialect.WILDCARD)
    if "SMB 2.002" in smb1_dialects and Dialect.SMB_2_0_2 in supported:
        return int(Dialect.SMB_2_0_2)
    return None


def response_contexts(request: NegotiateRequest, *, salt: bytes, ciphers: Sequence[int] = (),
                      signing: Sequence[int] = (SigningAlgorithm.AES_CMAC, SigningAlgorithm.HMAC_SHA256),
                      ) -> tuple[NegotiateContext, ...] | None:
    """The 3.1.1 contexts a server returns ([MS-SMB2] 3.3.5.4): PREAUTH_INTEGRITY with SHA-512 and
    the caller's ``salt`` (32 random bytes, as Windows sends); ENCRYPTION and SIGNING only if the
    client sent them, carrying the first of the server's preferences the client also listed.

    ``ciphers`` defaults to none, so the ENCRYPTION answer is cipher 0 ("no common cipher", which
    the spec allows): a client told otherwise encrypts everything after the logon (impacket does),
    and the sensor, which accepts logons without knowing the password, never has the session key
    to decrypt. None is returned when the client offered no SHA-512 preauth hash: the server must
    then fail with STATUS_SMB_NO_PREAUTH_INTEGRITY_HASH_OVERLAP (or STATUS_INVALID_PARAMETER when
    the context is missing)."""
    if request.hash_algorithms is None or HASH_SHA512 not in request.hash_algorithms:
        return None
    out = [NegotiateContext(ContextType.PREAUTH_INTEGRITY_CAPABILITIES,
                            _U16.pack(1) + _U16.pack(len(salt)) + _U16.pack(HASH_SHA512) + salt)]
    if request.ciphers is not None:
        chosen = next((c for c in ciphers if c in request.ciphers), Cipher.NONE)
        out.append(NegotiateContext(ContextType.ENCRYPTION_CAPABILITIES, _U16.pack(1) + _U16.pack(chosen)))
    if request.signing_algorithms is not None:
        algo = next((a for a in signing if a in request.signing_algorithms), None)
        if algo is not None:
            out.append(NegotiateContext(ContextType.SIGNING_CAPABILITIES, _U16.pack(1) + _U16.pack(algo)))
    return tuple(out)


def build_negotiate_response(*, dialect: int, server_guid: bytes, system_time: int, security_buffer: bytes,
                             security_mode: int = 1, capabilities: int = 0, max_transact_size: int = 65536,
                             max_read_size: int = 65536, max_write_size: int = 65536, server_start_time: int = 0,
                             contexts: Sequence[NegotiateContext] = ()) -> bytes:
    """[MS-SMB2] 2.2.4 body. Every varying value is the caller's: ``server_guid`` (16 bytes, one per
    persona, never a constant across sensors), ``system_time`` (FILETIME now), ``security_buffer``
    (:func:`spnego.build_neg_token_init_hint`). Contexts follow the buffer at 8-byte alignment and
    belong to 3.1.1 only. ``capabilities`` must suit the dialect (LARGE_MTU and LEASING are 2.1+,
    ENCRYPTION 3.0/3.0.2 only): the persona decides."""
    if len(server_guid) != 16:
        raise ValueError("server_guid must be 16 bytes")
    sec_offset = _BODY + NEGOTIATE_RESPONSE.size
    tail = bytearray(security_buffer)
    ctx_offset = 0
    if contexts:
        ctx_offset = pad8(sec_offset + len(tail))
        tail += bytes(ctx_offset - sec_offset - len(tail))
        for i, ctx in enumerate(contexts):
            if i:
                tail += bytes(-(sec_offset + len(tail)) % 8)
            tail += ctx.pack()
    if not tail:
        tail = bytearray(1)  # StructureSize 65 counts one byte of Buffer
    fixed = NEGOTIATE_RESPONSE.pack(65, security_mode, dialect, len(contexts), server_guid, capabilities,
                                    max_transact_size, max_read_size, max_write_size, system_time,
                                    server_start_time, sec_offset, len(security_buffer), ctx_offset)
    return fixed + bytes(tail)


def parse_negotiate_response(msg: bytes) -> NegotiateResponse:
    """[MS-SMB2] 2.2.4 (the other direction, for captures and tests)."""
    what = "SMB2 NEGOTIATE response"
    msg = bytes(msg)
    f = NEGOTIATE_RESPONSE.unpack_dict(msg, _BODY)
    check_size(f["structure_size"], 65, what, _BODY)
    buffer = take(msg, f["security_offset"], f["security_length"], what) if f["security_length"] else b""
    contexts: tuple[NegotiateContext, ...] = ()
    if f["dialect"] == Dialect.SMB_3_1_1 and f["context_count"]:
        contexts = _contexts(msg, f["context_offset"], f["context_count"], what)
    return NegotiateResponse(f["security_mode"], f["dialect"], f["server_guid"], f["capabilities"],
                             f["max_transact_size"], f["max_read_size"], f["max_write_size"], f["system_time"],
                             f["server_start_time"], buffer, contexts)
