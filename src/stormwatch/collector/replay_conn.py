"""One replayed connection's state, and the two protocol questions the replay asks of its bytes:
where the first frame starts in a direction captured mid-stream (:func:`frame_start`), and which
persona the session must have to speak the client's dialect (:func:`choose_persona`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from stormwatch.collector.tcp_streams import HalfStream
from stormwatch.protocols.errors import ProtocolError
from stormwatch.protocols.netbios import DirectTcpFramer, NbssFramer, SessionType
from stormwatch.sensor.session import Session
from stormwatch.sensor.spool import Identity

DEFAULT_TEMPLATE = "win2000"  # the sensor's default persona (stormwatch.sensor.config)
SMB2_TEMPLATE = "win7"  # the persona that speaks SMB2
SMB1_MAGIC, SMB2_MAGIC = b"\xffSMB", b"\xfeSMB"
SMB1_NEGOTIATE = 0x72
#: [C706] 12.6.4: connection-oriented PDU types (request, response, fault, bind, bind_ack,
#: bind_nak, alter_context, alter_context_resp, auth3, shutdown, co_cancel, orphaned).
DCERPC_TYPES = frozenset({0, 2, 3, 11, 12, 13, 14, 15, 16, 17, 18, 19})
_FRAMER_MAX = 1 << 24


@dataclass(eq=False)
class Conn:
    """A connection being replayed. ``client_key`` is (client ip, port, server ip, port)."""

    client_key: tuple[str, int, str, int]
    service: str
    first_ts: int  # epoch microseconds of its first packet
    up: HalfStream  # client → server
    down: HalfStream  # server → client
    last_ts: int = 0
    session: Session | None = None
    ident: Identity | None = None
    established: bool = False  # SYN-ACK or payload seen
    closer: str | None = None  # "client" or "server": who sent the first FIN or RST
    done: bool = False
    broken: bool = False  # the session raised (a bug): it is not called again
    bytes_in: int = 0
    bytes_out: int = 0
    held_up: list[tuple[int, bytes]] = field(default_factory=list)  # (ts, bytes) before the session starts
    held_up_bytes: int = 0
    held_down: bytearray = field(default_factory=bytearray)
    server_lost: bool = False  # the server's direction can no longer be followed
    server_seen: bool = False  # a packet from the server is in the capture
    resync_up: bool | None = None  # None: not known yet; True: cut to the first frame boundary
    resync_down: bool | None = None
    resync_buf_up: bytes = b""
    resync_buf_down: bytes = b""

    def live(self) -> Session | None:
        """The session, while the connection is being replayed."""
        return None if self.done else self.session


def frame_start(service: str, buf: bytes) -> int | None:
    """Offset of the first plausible frame header in ``buf`` (bytes of a direction captured
    mid-stream), or None if there is none yet: an SMB message behind a direct-TCP ([MS-SMB2]
    2.1) or NBSS SESSION MESSAGE (RFC 1002 4.3.6) header, or a DCE/RPC PDU header ([C706] 12.6.3.1)."""
    if service == "dcerpc":
        at = buf.find(b"\x05\x00")
        while at >= 0 and at + 10 <= len(buf):
            drep = buf[at + 4]
            length = int.from_bytes(buf[at + 8:at + 10], "little" if drep & 0x10 else "big")
            if buf[at + 2] in DCERPC_TYPES and drep in (0x00, 0x10) and length >= 16:
                return at
            at = buf.find(b"\x05\x00", at + 1)
        return None
    best: int | None = None
    for magic in (SMB1_MAGIC, SMB2_MAGIC):
        at = buf.find(magic, 4)
        while at >= 0 and buf[at - 4] != 0:  # type 0: a direct-TCP frame / an NBSS SESSION MESSAGE
            at = buf.find(magic, at + 1)
        if at >= 0 and (best is None or at - 4 < best):
            best = at - 4
    return best


def _messages(service: str, data: bytes) -> list[bytes] | None:
    """The SMB messages in ``data`` (a direction's first bytes), None if it is not framed so."""
    framer = DirectTcpFramer(_FRAMER_MAX) if service == "smb" else NbssFramer(_FRAMER_MAX)
    try:
        frames = framer.feed(data)
    except ProtocolError:
        return None
    return [f.payload for f in frames if f.type == SessionType.MESSAGE]


def choose_persona(service: str, client: bytes, server: bytes, *, final: bool) -> str | None:
    """``win7`` when the conversation is SMB2, otherwise ``win2000`` (see
    :mod:`stormwatch.collector.replay`); None while the client's bytes cannot tell and ``final`` is
    false. A client that offers SMB2 in an SMB1 NEGOTIATE goes on in the dialect the captured
    server answered in: that answer, or failing it the client's next message, decides."""
    if service == "dcerpc":
        return DEFAULT_TEMPLATE
    mine = _messages(service, client)
    if mine is None:
        return DEFAULT_TEMPLATE
    if not mine:
        return DEFAULT_TEMPLATE if final else None
    first = mine[0]
    if first[:4] == SMB2_MAGIC:
        return SMB2_TEMPLATE
    if first[:4] != SMB1_MAGIC or len(first) < 5 or first[4] != SMB1_NEGOTIATE or b"SMB 2." not in first:
        return DEFAULT_TEMPLATE
    theirs = _messages(service, server) or []
    for message in (theirs[:1] + mine[1:2]):
        if message[:4] == SMB2_MAGIC:
            return SMB2_TEMPLATE
        if message[:4] == SMB1_MAGIC:
            return DEFAULT_TEMPLATE
    return DEFAULT_TEMPLATE if final else None
