"""One TCP connection to the sensor, sans-I/O: bytes in, :mod:`outputs <stormwatch.sensor.outputs>`
out (h11 / mitmproxy style: the transport sends, records and closes; the session never touches a
socket, a clock or randomness other than the ones it is given).

    s = Session("smb", persona, SessionLimits(), random.Random(), time.time)
    for out in s.receive_data(data): ...      # Send / Emit / Close, in order
    s.connection_lost()

Services and their framing (STYLE.md: two named framings, never mixed):

    "smb"          TCP 445, direct TCP ([MS-SMB2] 2.1): every frame is an SMB1 or SMB2 message
    "netbios-ssn"  TCP 139, NBSS (RFC 1002 4.3): a SESSION REQUEST first (answered positively for
                   any well-formed called name, as Windows answers *SMBSERVER and its own names;
                   a malformed one gets a NEGATIVE RESPONSE and the connection ends), keepalives
                   ignored, then SMB in SESSION MESSAGEs. A message before the request is accepted
                   (Samba does; it costs nothing and keeps scanners talking).
    "dcerpc"       TCP 135: DCE/RPC PDUs straight on the stream, served by RPCSS's endpoint
                   (:class:`~stormwatch.sensor.pipes.PipeEndpoint` without a pipe)

SMB dispatch: ``\\xffSMB`` goes to :class:`~.smb1_handler.Smb1Handler`; ``\\xfeSMB`` to
:class:`~.smb2_handler.Smb2Handler` when the persona speaks SMB2 (directly, or after an SMB1
multi-protocol negotiate answered in SMB2). A persona that does not (Windows 2000/XP/2003) drops
an SMB2 NEGOTIATE as those systems' srv.sys does: the smb.negotiate event is emitted (the offered
dialects fingerprint the scanner), then ``session.anomaly`` kind ``smb2_unsupported`` and Close.

Rules of the state machine, all in :meth:`Session.receive_data`:

* a codec's ProtocolError anywhere → ``session.anomaly`` (kind ``malformed_<protocol>``, the
  codec's field and offset) then ``Close("anomaly")``;
* a limit of :class:`~.limits.SessionLimits` → ``session.anomaly`` with the limit's name as kind,
  then ``Close("limit")``;
* after Close, input is ignored; any other exception is a bug (the fuzz tests prove none occurs);
* outputs depend on the bytes, never on how they were split into calls.

Replaying a capture (``replay=True``; :mod:`stormwatch.collector.replay` drives it): the session
answers as the honeypot would, while the client's later requests were shaped by the captured
server. So the replay also hands it the captured server's bytes (:meth:`Session.server_data`), from
which it learns which of its own ids each of the server's UIDs, TIDs, FIDs, SessionIds, TreeIds and
FileIds stands for (:mod:`.replay_ids`); and a conversation whose NEGOTIATE the capture missed is
taken as negotiated in the dialect of its first message instead of being refused. Without
``replay`` nothing of this runs.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from stormwatch.protocols.errors import ProtocolError
from stormwatch.protocols.netbios import (
    DirectTcpFramer,
    NbssFramer,
    SessionType,
    decode_session_request,
    encode_direct_tcp,
    encode_nbss,
    encode_negative_response,
    encode_positive_response,
)
from stormwatch.protocols.smb2 import NegotiateRequest as Smb2Negotiate
from stormwatch.protocols.smb2 import parse_frame
from stormwatch.sensor.context import Abort, Context, anomaly_for
from stormwatch.sensor.limits import SessionLimits
from stormwatch.sensor.nbns import nbns_answer
from stormwatch.sensor.outputs import Close, Output
from stormwatch.sensor.persona import Persona
from stormwatch.sensor.pipes import PipeEndpoint
from stormwatch.sensor.replay_ids import ReplayIds
from stormwatch.sensor.smb1_handler import Smb1Handler
from stormwatch.sensor.smb2_handler import Smb2Handler

SERVICES = ("smb", "netbios-ssn", "dcerpc")
SMB1_MAGIC = b"\xffSMB"
SMB2_MAGIC = b"\xfeSMB"
SMB1_NEGOTIATE, SMB2_NEGOTIATE = 0x72, 0
SMB2_ADOPTED = 0x0210  # replay: the dialect taken for an SMB2 conversation whose NEGOTIATE is unseen
SERVER_FRAME_MAX = 1 << 24  # replay: the captured server's frames (reads of up to 8 MiB in SMB2)

__all__ = ["SERVICES", "Session", "nbns_answer"]


class Session:
    """One connection's protocol state machine (see the module docstring)."""

    def __init__(self, service: str, persona: Persona, limits: SessionLimits, rng: random.Random,
                 clock: Callable[[], float], *, replay: bool = False) -> None:
        if service not in SERVICES:
            raise ValueError(f"unknown service {service!r}; known: {', '.join(SERVICES)}")
        self.service = service
        self.persona = persona
        self.limits = limits
        frame: Callable[[bytes], bytes] = encode_direct_tcp
        if service == "netbios-ssn":
            frame = _nbss_message
        self.ctx = Context(persona, limits, rng, clock, frame)
        self._framer: DirectTcpFramer | NbssFramer | None = None
        if service == "smb":
            self._framer = DirectTcpFramer(limits.max_frame)
        elif service == "netbios-ssn":
            self._framer = NbssFramer(limits.max_frame)
        self._endpoint = PipeEndpoint(self.ctx, None) if service == "dcerpc" else None
        self._smb1 = Smb1Handler(self.ctx, self._switch_to_smb2)
        self._smb2 = Smb2Handler(self.ctx)
        self._mode: str | None = None  # "smb1" / "smb2" once a dialect is chosen
        self._nbss_started = False
        self._closed = False
        self._server: DirectTcpFramer | NbssFramer | None = None  # replay: the captured server's side
        if replay:
            self.ctx.replay = ReplayIds()
            if service == "smb":
                self._server = DirectTcpFramer(SERVER_FRAME_MAX)
            elif service == "netbios-ssn":
                self._server = NbssFramer(SERVER_FRAME_MAX)

    @property
    def closed(self) -> bool:
        return self._closed

    def receive_data(self, data: bytes) -> list[Output]:
        """Outputs for the next bytes from the client (never raises, except on a bug)."""
        if self._closed or not data:
            return []
        ctx = self.ctx
        try:
            if self._endpoint is not None:
                self._endpoint.write(data)
                pending = self._endpoint.drain()
                if pending:
                    ctx.send_raw(pending)
            else:
                self._frames(data)
        except Abort as abort:
            self._abort(abort)
        except ProtocolError as exc:  # every codec call is wrapped where its protocol is known; this
            self._abort(anomaly_for(exc, self.service))  # keeps a missed one from escaping as a crash
        out, ctx.out = ctx.out, []
        return out

    def server_data(self, data: bytes) -> None:
        """Replay only: the captured server's next bytes, read for the ids it granted. Never raises;
        what cannot be framed ends the learning (:meth:`server_gap`)."""
        ids = self.ctx.replay
        if ids is None or self._server is None or not data:
            return
        try:
            frames = self._server.feed(data)
        except ProtocolError:
            self.server_gap()
            return
        for f in frames:
            if f.type == SessionType.MESSAGE:
                ids.theirs(f.payload)

    def server_gap(self) -> None:
        """Replay only: the captured server's side can no longer be followed (a gap in the capture),
        so ids the session cannot place stand for objects it did not see granted (lenient)."""
        if self.ctx.replay is not None:
            self.ctx.replay.lenient = True
        self._server = None

    def connection_lost(self) -> list[Output]:
        """The client went away; nothing is pending that would make an event, so nothing to say."""
        self._closed = True
        return []

    # -- framing -------------------------------------------------------------------------------

    def _frames(self, data: bytes) -> None:
        assert self._framer is not None
        protocol = "nbss" if isinstance(self._framer, NbssFramer) else "smb"
        try:
            frames = self._framer.feed(data)
        except ProtocolError as exc:
            raise anomaly_for(exc, protocol) from None
        for f in frames:
            if self._closed:
                return  # after a NEGATIVE SESSION RESPONSE
            if f.type == SessionType.MESSAGE:
                self._smb(f.payload)
            elif f.type == SessionType.REQUEST:
                self._session_request(f.payload)
            elif f.type != SessionType.KEEP_ALIVE:
                raise Abort("nbss_unexpected_type", f"a client sent NBSS packet type 0x{f.type:02x}",
                            field="type")
        if self._closed:
            return
        try:  # a bad header after good frames is raised by the next feed: surface it now
            self._framer.feed(b"")
        except ProtocolError as exc:
            raise anomaly_for(exc, protocol) from None

    def _session_request(self, payload: bytes) -> None:
        if self._nbss_started:
            return  # a second request on an established session: Windows ignores it
        try:
            decode_session_request(payload)
        except ProtocolError as exc:
            abort = anomaly_for(exc, "nbss")
            self._emit_anomaly(abort)
            self.ctx.send_raw(encode_negative_response())
            self._close(abort.reason)
            return
        self._nbss_started = True
        self.ctx.send_raw(encode_positive_response())

    def _smb(self, payload: bytes) -> None:
        magic = payload[:4]
        if self.ctx.replay is not None:
            self._adopt_dialect(magic, payload)
        if magic == SMB1_MAGIC and self._mode in (None, "smb1"):
            self._smb1.handle(payload)
            if self._mode is None and self._smb1.negotiated:
                self._mode = "smb1"
        elif magic == SMB2_MAGIC and self._mode in (None, "smb2"):
            if not self.persona.os.smb2:
                self._smb2_refused(payload)
            self._mode = "smb2"
            self._smb2.handle(payload)
        elif magic in (SMB1_MAGIC, SMB2_MAGIC):
            raise Abort("smb_protocol_order", f"{'SMB1' if magic == SMB1_MAGIC else 'SMB2'} message on a "
                        f"connection that negotiated {self._mode}", field="protocol")
        else:
            raise Abort("malformed_smb", f"frame starts with {magic!r}, not an SMB protocol identifier",
                        field="protocol")

    def _adopt_dialect(self, magic: bytes, payload: bytes) -> None:
        """Replay: a message other than NEGOTIATE where the session has no dialect yet (the capture
        began later, or the captured server chose otherwise than the session did) is taken as sent
        in a negotiated dialect; a capture that begins after NEGOTIATE makes the session lenient."""
        assert self.ctx.replay is not None
        if magic == SMB1_MAGIC and self._mode is None and len(payload) > 4 and payload[4] != SMB1_NEGOTIATE:
            self._smb1.negotiated = True
            self._mode = "smb1"
            self.ctx.replay.lenient = True
        elif (magic == SMB2_MAGIC and self._mode in (None, "smb2") and self._smb2.dialect is None
              and len(payload) >= 14 and int.from_bytes(payload[12:14], "little") != SMB2_NEGOTIATE):
            if self._mode is None:
                self.ctx.replay.lenient = True
            self._smb2.dialect = SMB2_ADOPTED
            self._mode = "smb2"

    def _switch_to_smb2(self, dialects: list[str], dialect: int) -> None:
        self._mode = "smb2"
        self._smb2.answer_multiprotocol(dialects, dialect)

    def _smb2_refused(self, payload: bytes) -> None:
        try:
            messages = parse_frame(payload)
        except ProtocolError as exc:
            raise anomaly_for(exc, "smb2") from None
        first = messages[0].body if messages else None
        if isinstance(first, Smb2Negotiate):
            self.ctx.emit("smb.negotiate", {"dialects": [f"0x{d:04x}" for d in first.dialects], "dialect": "",
                                            "smb_version": 2, "extended_security": False})
        raise Abort("smb2_unsupported", f"persona {self.persona.template} does not speak SMB2; the connection "
                    "is dropped as that Windows drops it", field="protocol")

    # -- endings -------------------------------------------------------------------------------

    def _emit_anomaly(self, abort: Abort) -> None:
        self.ctx.emit("session.anomaly", {"kind": abort.kind, "detail": abort.detail, "field": abort.field,
                                          "offset": abort.offset})

    def _abort(self, abort: Abort) -> None:
        self._emit_anomaly(abort)
        self._close(abort.reason)

    def _close(self, reason: str) -> None:
        self.ctx.out.append(Close(reason))
        self._closed = True


def _nbss_message(payload: bytes) -> bytes:
    return encode_nbss(SessionType.MESSAGE, payload)

