"""NTLMSSP messages ([MS-NLMP] 2.2): parse NEGOTIATE and AUTHENTICATE, build CHALLENGE.

The honeypot accepts every logon, so nothing here verifies a response: no password is known, no
NTOWF is computed, the MIC is recorded but never checked, and no session key is derived. What a
honeypot keeps is who tried (user, domain, workstation), how (NTLMv1 / NTLMv2 / anonymous, the
negotiated flags) and what the client says it runs (the VERSION structure, [MS-NLMP] 2.2.2.10).

    neg = parse_negotiate(blob)                                  # client's first leg
    chal = build_challenge(neg.flags, server_challenge, identity, timestamp=filetime)
    auth = parse_authenticate(blob3)                             # client's third leg
    auth.user, auth.domain, auth.workstation, auth.anonymous, auth.ntlm_version

A payload field ([MS-NLMP] 2.2: Len, MaxLen, BufferOffset) may point anywhere in the message, in
any order, with padding between: offsets are taken as given and only checked against the buffer
end. Bytes after the last field are ignored (SMB1 carries NativeOS strings right after the blob).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntFlag

from stormwatch.protocols.errors import MalformedMessage
from stormwatch.protocols.wire import Layout, take

SIGNATURE = b"NTLMSSP\x00"
NEGOTIATE_MESSAGE = 1
CHALLENGE_MESSAGE = 2
AUTHENTICATE_MESSAGE = 3


class Flag(IntFlag):
    """[MS-NLMP] 2.2.2.5 NEGOTIATE flags, named as the spec names them without the NTLMSSP_ prefix
    (bit letters A..W in the spec's figure; the unnamed bits are reserved)."""

    NEGOTIATE_UNICODE = 0x00000001
    NEGOTIATE_OEM = 0x00000002
    REQUEST_TARGET = 0x00000004
    NEGOTIATE_SIGN = 0x00000010
    NEGOTIATE_SEAL = 0x00000020
    NEGOTIATE_DATAGRAM = 0x00000040
    NEGOTIATE_LM_KEY = 0x00000080
    NEGOTIATE_NTLM = 0x00000200
    NEGOTIATE_ANONYMOUS = 0x00000800
    NEGOTIATE_OEM_DOMAIN_SUPPLIED = 0x00001000
    NEGOTIATE_OEM_WORKSTATION_SUPPLIED = 0x00002000
    NEGOTIATE_ALWAYS_SIGN = 0x00008000
    TARGET_TYPE_DOMAIN = 0x00010000
    TARGET_TYPE_SERVER = 0x00020000
    NEGOTIATE_EXTENDED_SESSIONSECURITY = 0x00080000
    NEGOTIATE_IDENTIFY = 0x00100000
    REQUEST_NON_NT_SESSION_KEY = 0x00400000
    NEGOTIATE_TARGET_INFO = 0x00800000
    NEGOTIATE_VERSION = 0x02000000
    NEGOTIATE_128 = 0x20000000
    NEGOTIATE_KEY_EXCH = 0x40000000
    NEGOTIATE_56 = 0x80000000


def flag_names(flags: int) -> tuple[str, ...]:
    """The [MS-NLMP] 2.2.2.5 names of the bits set in ``flags``; reserved bits as hex."""
    names = []
    for bit in range(32):
        if flags >> bit & 1:
            name = Flag(1 << bit).name  # None for a reserved bit (IntFlag keeps unknown bits)
            prefix = "NTLM_" if name == "NEGOTIATE_OEM" else "NTLMSSP_"
            names.append(prefix + name if name else f"0x{1 << bit:08x}")
    return tuple(names)


# [MS-NLMP] 2.2.2.1 AV_PAIR identifiers.
AV_EOL = 0
AV_NB_COMPUTER_NAME = 1
AV_NB_DOMAIN_NAME = 2
AV_DNS_COMPUTER_NAME = 3
AV_DNS_DOMAIN_NAME = 4
AV_DNS_TREE_NAME = 5
AV_FLAGS = 6
AV_TIMESTAMP = 7
AV_SINGLE_HOST = 8
AV_TARGET_NAME = 9
AV_CHANNEL_BINDINGS = 10
AV_FLAG_MIC_PRESENT = 0x00000002  # MsvAvFlags bit: the AUTHENTICATE message carries a MIC
MAX_AV_PAIRS = 64  # Windows sends at most ~10; more is an anomaly, and bounds the loop

_PREFIX = Layout("NTLMSSP message", "<", (("signature", "8s"), ("type", "I")))
# [MS-NLMP] 2.2.1.1 NEGOTIATE_MESSAGE fixed part (after the 12-byte prefix).
_NEGOTIATE = Layout("NTLMSSP NEGOTIATE_MESSAGE", "<", (
    ("flags", "I"),
    ("domain_len", "H"), ("domain_max", "H"), ("domain_off", "I"),
    ("ws_len", "H"), ("ws_max", "H"), ("ws_off", "I"),
))
# [MS-NLMP] 2.2.1.2 CHALLENGE_MESSAGE fixed part (after the prefix), without the optional Version.
_CHALLENGE = Layout("NTLMSSP CHALLENGE_MESSAGE", "<", (
    ("target_len", "H"), ("target_max", "H"), ("target_off", "I"),
    ("flags", "I"),
    ("server_challenge", "8s"),
    ("reserved", "8s"),
    ("info_len", "H"), ("info_max", "H"), ("info_off", "I"),
))
# [MS-NLMP] 2.2.1.3 AUTHENTICATE_MESSAGE fixed part (after the prefix): six payload fields, flags.
_AUTHENTICATE = Layout("NTLMSSP AUTHENTICATE_MESSAGE", "<", (
    ("lm_len", "H"), ("lm_max", "H"), ("lm_off", "I"),
    ("nt_len", "H"), ("nt_max", "H"), ("nt_off", "I"),
    ("domain_len", "H"), ("domain_max", "H"), ("domain_off", "I"),
    ("user_len", "H"), ("user_max", "H"), ("user_off", "I"),
    ("ws_len", "H"), ("ws_max", "H"), ("ws_off", "I"),
    ("key_len", "H"), ("key_max", "H"), ("key_off", "I"),
    ("flags", "I"),
))
# [MS-NLMP] 2.2.2.10 VERSION.
_VERSION = Layout("NTLMSSP VERSION", "<", (
    ("major", "B"), ("minor", "B"), ("build", "H"), ("reserved", "3s"), ("revision", "B")))
_AV_HEADER = Layout("NTLMSSP AV_PAIR", "<", (("id", "H"), ("length", "H")))

# Flag bits as plain ints for the per-logon paths: an IntFlag operation builds an enum member each
# time (negotiate_flags made fifteen of them).
_UNICODE = int(Flag.NEGOTIATE_UNICODE)
_OEM = int(Flag.NEGOTIATE_OEM)
_VERSION_FLAG = int(Flag.NEGOTIATE_VERSION)
_LM_KEY = int(Flag.NEGOTIATE_LM_KEY)
_ESS = int(Flag.NEGOTIATE_EXTENDED_SESSIONSECURITY)
_ALWAYS = int(Flag.NEGOTIATE_NTLM | Flag.NEGOTIATE_TARGET_INFO)
_ECHOED = int(Flag.REQUEST_TARGET | Flag.NEGOTIATE_SIGN | Flag.NEGOTIATE_SEAL | Flag.NEGOTIATE_ALWAYS_SIGN
              | Flag.NEGOTIATE_128 | Flag.NEGOTIATE_56 | Flag.NEGOTIATE_KEY_EXCH
              | Flag.NEGOTIATE_EXTENDED_SESSIONSECURITY | Flag.NEGOTIATE_IDENTIFY | Flag.NEGOTIATE_DATAGRAM)
_TARGET_TYPE_DOMAIN = int(Flag.TARGET_TYPE_DOMAIN)
_TARGET_TYPE_SERVER = int(Flag.TARGET_TYPE_SERVER)
#: AUTHENTICATE_MESSAGE payload fields in wire order: (name, index of its length, of its offset)
#: in the unpacked fixed part.
_AUTH_FIELDS = tuple((name, 3 * i, 3 * i + 2) for i, name in enumerate(("lm", "nt", "domain", "user", "ws", "key")))

NTLMSSP_REVISION_W2K3 = 0x0F


@dataclass(frozen=True, slots=True)
class Version:
    """[MS-NLMP] 2.2.2.10 VERSION: the OS a client or server claims (e.g. 6.1 build 7601 = Windows 7 SP1)."""

    major: int
    minor: int
    build: int
    revision: int = NTLMSSP_REVISION_W2K3

    @property
    def text(self) -> str:
        return f"{self.major}.{self.minor}.{self.build}"

    def pack(self) -> bytes:
        return _VERSION.pack(self.major, self.minor, self.build, b"\x00\x00\x00", self.revision)


@dataclass(frozen=True, slots=True)
class TargetInfo:
    """[MS-NLMP] 2.2.2.1 AV pairs, decoded. ``pairs`` keeps every pair raw, in order (EOL excluded)."""

    pairs: tuple[tuple[int, bytes], ...]
    nb_computer: str | None = None
    nb_domain: str | None = None
    dns_computer: str | None = None
    dns_domain: str | None = None
    dns_tree: str | None = None
    target_name: str | None = None  # MsvAvTargetName: the SPN the client aims at (e.g. cifs/host)
    timestamp: int | None = None    # MsvAvTimestamp, FILETIME
    av_flags: int | None = None     # MsvAvFlags


@dataclass(frozen=True, slots=True)
class Negotiate:
    """[MS-NLMP] 2.2.1.1 NEGOTIATE_MESSAGE. Domain and workstation are OEM strings, often absent."""

    flags: int
    domain: str | None
    workstation: str | None
    version: Version | None

    @property
    def flag_names(self) -> tuple[str, ...]:
        return flag_names(self.flags)


@dataclass(frozen=True, slots=True)
class Challenge:
    """[MS-NLMP] 2.2.1.2 CHALLENGE_MESSAGE (parsed back for tests and for replayed captures)."""

    flags: int
    server_challenge: bytes
    target_name: str | None
    target_info: TargetInfo | None
    version: Version | None

    @property
    def flag_names(self) -> tuple[str, ...]:
        return flag_names(self.flags)


@dataclass(frozen=True, slots=True)
class Authenticate:
    """[MS-NLMP] 2.2.1.3 AUTHENTICATE_MESSAGE: what the client proved nothing about, but told us.

    ``client_info`` holds the AV pairs of an NTLMv2 response's client blob ([MS-NLMP] 2.2.2.7),
    ``client_timestamp`` its TimeStamp; both are None for v1 or a blob that does not parse.
    """

    flags: int
    user: str
    domain: str
    workstation: str
    lm_response: bytes
    nt_response: bytes
    session_key: bytes  # EncryptedRandomSessionKey (KEY_EXCH), recorded as sent
    version: Version | None
    mic: bytes | None
    client_info: TargetInfo | None
    client_timestamp: int | None

    @property
    def flag_names(self) -> tuple[str, ...]:
        return flag_names(self.flags)

    @property
    def anonymous(self) -> bool:
        """[MS-NLMP] 3.2.5.1.2: a server treats an empty user name and empty responses as the
        ANONYMOUS user; clients send the LM response as the single zero byte Z(1) then (3.1.5.1.2)."""
        return self.user == "" and not self.nt_response and self.lm_response in (b"", b"\x00")

    @property
    def ntlm_version(self) -> str:
        """"v2" (NTLMv2: NtChallengeResponse longer than 24 bytes, [MS-NLMP] 2.2.2.8), "v1" (24
        bytes, 2.2.2.6), "v1-ess" (v1 with extended session security: the LM field carries the
        8-byte client challenge padded with zeros, 3.3.1), "none" (no NT response) or "other"."""
        n = len(self.nt_response)
        if n == 0:
            return "none"
        if n == 24:
            ess = self.flags & Flag.NEGOTIATE_EXTENDED_SESSIONSECURITY and len(self.lm_response) == 24 \
                and self.lm_response[8:] == bytes(16)
            return "v1-ess" if ess else "v1"
        return "v2" if n > 24 else "other"


@dataclass(frozen=True, slots=True)
class ServerIdentity:
    """The names a CHALLENGE announces ([MS-NLMP] 2.2.1.2 TargetName, 2.2.2.1 AV pairs), from the
    persona. ``domain_joined`` picks NTLMSSP_TARGET_TYPE_DOMAIN (TargetName = NetBIOS domain) over
    TARGET_TYPE_SERVER (TargetName = computer name, as a workgroup machine answers)."""

    nb_computer: str
    nb_domain: str
    dns_computer: str = ""
    dns_domain: str = ""
    dns_tree: str = ""
    version: Version | None = None
    domain_joined: bool = False


def _payload(buf: bytes, length: int, offset: int, what: str) -> bytes:
    # A zero-length field's offset is meaningless (clients leave stale values in it).
    return take(buf, offset, length, what) if length else b""


def _utf16(raw: bytes, what: str, field: str, offset: int) -> str:
    if len(raw) % 2:
        raise MalformedMessage(what, field, offset, f"odd UTF-16 length {len(raw)}")
    # Unpaired surrogates stay visible as escapes (attacker data is data), as in wire.utf16z.
    return raw.decode("utf-16-le", "surrogatepass").encode("utf-8", "backslashreplace").decode("utf-8")


def _text(raw: bytes, unicode: bool, what: str, field: str, offset: int) -> str:
    # OEM strings depend on the client's code page, which the wire does not say: latin-1 is lossless.
    return _utf16(raw, what, field, offset) if unicode else raw.decode("latin-1")


def _prefix(buf: bytes, expected: int, what: str) -> None:
    signature, kind = _PREFIX.unpack(buf, 0)
    if signature != SIGNATURE:
        raise MalformedMessage(what, "Signature", 0, f"{signature!r} is not NTLMSSP\\0")
    if kind != expected:
        raise MalformedMessage(what, "MessageType", 8, f"{kind} where {expected} was expected")


def _first_offset(*fields: tuple[int, int]) -> int:
    """Where the payload starts: the lowest offset of a non-empty field. With no payload at all,
    the optional VERSION/MIC are expected (a cut message then raises NeedMoreData); a client that
    set NEGOTIATE_VERSION but put its payload where the VERSION goes is tolerated."""
    return min((off for length, off in fields if length), default=1 << 32)


def _version_at(buf: bytes, offset: int) -> Version:
    major, minor, build, _reserved, revision = _VERSION.unpack(buf, offset)
    return Version(major, minor, build, revision)


def message_type(buf: bytes) -> int:
    """The MessageType (1, 2 or 3) of an NTLMSSP message, after checking the signature."""
    signature, kind = _PREFIX.unpack(buf, 0)
    if signature != SIGNATURE:
        raise MalformedMessage("NTLMSSP message", "Signature", 0, f"{signature!r} is not NTLMSSP\\0")
    if kind not in (NEGOTIATE_MESSAGE, CHALLENGE_MESSAGE, AUTHENTICATE_MESSAGE):
        raise MalformedMessage("NTLMSSP message", "MessageType", 8, f"unknown type {kind}")
    return int(kind)


def parse_negotiate(buf: bytes) -> Negotiate:
    """[MS-NLMP] 2.2.1.1. The VERSION field is read when NEGOTIATE_VERSION is set and the payload
    leaves room for it (some clients set the flag and omit the bytes)."""
    what = "NTLMSSP NEGOTIATE_MESSAGE"
    buf = bytes(buf)
    _prefix(buf, NEGOTIATE_MESSAGE, what)
    flags, d_len, _dm, d_off, w_len, _wm, w_off = _NEGOTIATE.unpack(buf, 12)
    domain_raw = _payload(buf, d_len, d_off, what)
    ws_raw = _payload(buf, w_len, w_off, what)
    first = _first_offset((d_len, d_off), (w_len, w_off))
    version = _version_at(buf, 32) if flags & _VERSION_FLAG and first >= 40 else None
    # [MS-NLMP] 2.2.1.1: these two are OEM strings whatever the Unicode flag says.
    return Negotiate(flags, domain_raw.decode("latin-1") if d_len else None,
                     ws_raw.decode("latin-1") if w_len else None, version)


def parse_av_pairs(raw: bytes, what: str = "NTLMSSP AV_PAIR list") -> TargetInfo:
    """[MS-NLMP] 2.2.2.1: AV pairs up to MsvAvEOL (a list that ends without EOL is accepted, as
    Windows clients never send one but other stacks have been seen to). Names are UTF-16LE."""
    pairs: list[tuple[int, bytes]] = []
    names: dict[int, str] = {}
    timestamp = av_flags = None
    off = 0
    while off < len(raw):
        if len(pairs) >= MAX_AV_PAIRS:
            raise MalformedMessage(what, "AvId", off, f"more than {MAX_AV_PAIRS} pairs")
        if len(raw) - off < 4:
            raise MalformedMessage(what, "AvLen", off, "pair header cut short")
        av_id, length = _AV_HEADER.unpack(raw, off)
        value = take(raw, off + 4, length, what)
        if av_id == AV_EOL:
            break
        pairs.append((av_id, value))
        if AV_NB_COMPUTER_NAME <= av_id <= AV_DNS_TREE_NAME or av_id == AV_TARGET_NAME:
            names[av_id] = _utf16(value, what, f"AvId {av_id}", off + 4)
        elif av_id == AV_TIMESTAMP and length == 8:
            timestamp = int.from_bytes(value, "little")
        elif av_id == AV_FLAGS and length == 4:
            av_flags = int.from_bytes(value, "little")
        off += 4 + length
    return TargetInfo(tuple(pairs), names.get(AV_NB_COMPUTER_NAME), names.get(AV_NB_DOMAIN_NAME),
                      names.get(AV_DNS_COMPUTER_NAME), names.get(AV_DNS_DOMAIN_NAME),
                      names.get(AV_DNS_TREE_NAME), names.get(AV_TARGET_NAME), timestamp, av_flags)


def parse_challenge(buf: bytes) -> Challenge:
    """[MS-NLMP] 2.2.1.2, as a server sent it (for captures and round-trip tests)."""
    what = "NTLMSSP CHALLENGE_MESSAGE"
    buf = bytes(buf)
    _prefix(buf, CHALLENGE_MESSAGE, what)
    t_len, _tm, t_off, flags, challenge, _res, i_len, _im, i_off = _CHALLENGE.unpack(buf, 12)
    target = _payload(buf, t_len, t_off, what)
    info = _payload(buf, i_len, i_off, what)
    first = _first_offset((t_len, t_off), (i_len, i_off))
    version = _version_at(buf, 48) if flags & Flag.NEGOTIATE_VERSION and first >= 56 else None
    return Challenge(
        flags, challenge,
        _text(target, bool(flags & Flag.NEGOTIATE_UNICODE), what, "TargetName", t_off) if t_len else None,
        parse_av_pairs(info) if i_len else None, version)


def parse_authenticate(buf: bytes) -> Authenticate:
    """[MS-NLMP] 2.2.1.3. Strings are UTF-16LE when the message's flags carry NEGOTIATE_UNICODE,
    OEM otherwise. VERSION (bytes 64-71) and MIC (72-87) are optional and sit before the payload:
    they are read when the lowest payload offset leaves room for them (how Wireshark and Samba
    tell), the VERSION only when its flag is set."""
    what = "NTLMSSP AUTHENTICATE_MESSAGE"
    buf = bytes(buf)
    _prefix(buf, AUTHENTICATE_MESSAGE, what)
    f = _AUTHENTICATE.unpack(buf, 12)
    flags = f[-1]
    unicode = bool(flags & _UNICODE)
    fields = {name: _payload(buf, f[n], f[o], what) for name, n, o in _AUTH_FIELDS}
    offsets = {name: f[o] for name, _, o in _AUTH_FIELDS}
    first = _first_offset(*((f[n], f[o]) for _, n, o in _AUTH_FIELDS))
    version = _version_at(buf, 64) if flags & _VERSION_FLAG and first >= 72 else None
    mic = buf[72:88] if first >= 88 and len(buf) >= 88 else None
    nt = fields["nt"]
    client_info = client_ts = None
    if len(nt) >= 44 and nt[16] == 1:
        # NTLMv2_CLIENT_CHALLENGE ([MS-NLMP] 2.2.2.7) after the 16-byte NTProofStr: RespType 1,
        # HiRespType, 6 reserved bytes, TimeStamp, ChallengeFromClient, 4 reserved, AV pairs.
        client_ts = int.from_bytes(nt[24:32], "little")
        try:
            client_info = parse_av_pairs(nt[44:], "NTLMv2 client AV_PAIR list")
        except MalformedMessage:
            client_info = None  # the names above are still worth recording; the blob is not ours to judge
    return Authenticate(
        flags=flags,
        user=_text(fields["user"], unicode, what, "UserName", offsets["user"]),
        domain=_text(fields["domain"], unicode, what, "DomainName", offsets["domain"]),
        workstation=_text(fields["ws"], unicode, what, "Workstation", offsets["ws"]),
        lm_response=fields["lm"], nt_response=nt, session_key=fields["key"],
        version=version, mic=mic, client_info=client_info, client_timestamp=client_ts)


def parse_message(buf: bytes) -> Negotiate | Challenge | Authenticate:
    """Any of the three messages, by MessageType."""
    kind = message_type(buf)
    if kind == NEGOTIATE_MESSAGE:
        return parse_negotiate(buf)
    if kind == CHALLENGE_MESSAGE:
        return parse_challenge(buf)
    return parse_authenticate(buf)


def negotiate_flags(client_flags: int, identity: ServerIdentity) -> int:
    """The flags a Windows server answers with ([MS-NLMP] 3.2.5.1.1, 2.2.2.5): NTLM and TARGET_INFO
    always; REQUEST_TARGET echoed; Unicode if the client offered it, else OEM; the client's
    signing, sealing, key-size, key-exchange and session-security choices echoed; LM_KEY dropped
    when extended session security is chosen (the two are exclusive); the target type from the
    persona; VERSION if the persona has one."""
    client_flags = int(client_flags)
    flags = _ALWAYS | client_flags & _ECHOED
    oem_only = client_flags & _OEM and not client_flags & _UNICODE
    flags |= _OEM if oem_only else _UNICODE
    if client_flags & _LM_KEY and not flags & _ESS:
        flags |= _LM_KEY
    flags |= _TARGET_TYPE_DOMAIN if identity.domain_joined else _TARGET_TYPE_SERVER
    if identity.version is not None:
        flags |= _VERSION_FLAG
    return flags


def build_av_pairs(identity: ServerIdentity, timestamp: int | None) -> bytes:
    """TargetInfo in the order Windows writes it ([MS-NLMP] 2.2.2.1): NetBIOS domain and computer
    (both MUST be present), DNS domain, computer and tree when known, MsvAvTimestamp, EOL."""
    items: list[tuple[int, bytes]] = [
        (AV_NB_DOMAIN_NAME, identity.nb_domain.encode("utf-16-le")),
        (AV_NB_COMPUTER_NAME, identity.nb_computer.encode("utf-16-le")),
    ]
    for av_id, name in ((AV_DNS_DOMAIN_NAME, identity.dns_domain), (AV_DNS_COMPUTER_NAME, identity.dns_computer),
                        (AV_DNS_TREE_NAME, identity.dns_tree)):
        if name:
            items.append((av_id, name.encode("utf-16-le")))
    if timestamp is not None:
        items.append((AV_TIMESTAMP, timestamp.to_bytes(8, "little")))
    items.append((AV_EOL, b""))
    return b"".join(_AV_HEADER.pack(av_id, len(value)) + value for av_id, value in items)


def build_challenge(client_flags: int, server_challenge: bytes, identity: ServerIdentity,
                    timestamp: int | None = None) -> bytes:
    """[MS-NLMP] 2.2.1.2 CHALLENGE_MESSAGE answering a NEGOTIATE with ``client_flags``.

    ``server_challenge`` (8 random bytes) and ``timestamp`` (FILETIME for MsvAvTimestamp, which
    Windows Vista and later always send) come from the caller: codecs own no clock or randomness.
    """
    if len(server_challenge) != 8:
        raise ValueError("server_challenge must be 8 bytes")
    flags = negotiate_flags(client_flags, identity)
    unicode = bool(flags & _UNICODE)
    name = identity.nb_domain if identity.domain_joined else identity.nb_computer
    target = name.encode("utf-16-le") if unicode else name.encode("latin-1", "replace")
    info = build_av_pairs(identity, timestamp)
    version = identity.version.pack() if identity.version is not None else b""
    target_off = 48 + len(version)
    info_off = target_off + len(target)
    return (SIGNATURE + CHALLENGE_MESSAGE.to_bytes(4, "little")
            + _CHALLENGE.pack(len(target), len(target), target_off, flags, server_challenge, bytes(8),
                              len(info), len(info), info_off)
            + version + target + info)


def build_negotiate(flags: int, domain: str = "", workstation: str = "", version: Version | None = None) -> bytes:
    """A NEGOTIATE_MESSAGE (for tests and for a client persona); OEM-encoded names."""
    d = domain.encode("latin-1")
    w = workstation.encode("latin-1")
    v = version.pack() if version is not None else b""
    flags = flags | Flag.NEGOTIATE_VERSION if version is not None else flags & ~Flag.NEGOTIATE_VERSION
    flags |= (Flag.NEGOTIATE_OEM_DOMAIN_SUPPLIED if d else 0) | (Flag.NEGOTIATE_OEM_WORKSTATION_SUPPLIED if w else 0)
    d_off = 32 + len(v)
    w_off = d_off + len(d)
    return (SIGNATURE + NEGOTIATE_MESSAGE.to_bytes(4, "little")
            + _NEGOTIATE.pack(flags, len(d), len(d), d_off, len(w), len(w), w_off) + v + d + w)

