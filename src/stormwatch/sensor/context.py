"""What every protocol handler of one session shares: the persona, limits, randomness and clock,
the outputs being collected, the counters the limits apply to, and the two ways a handler gives
up on a connection.

Handlers append to :attr:`Context.out` through :meth:`Context.emit`, :meth:`Context.reply` (which
applies the transport framing the session chose) and :meth:`Context.report` (findings become
``exploit.attempt`` events, their payloads kept within the session's byte budget). A handler that
must end the connection raises :class:`Abort`; the session turns it into ``session.anomaly`` and
``Close``. A codec's :class:`~stormwatch.protocols.errors.ProtocolError` is handled the same way
by the session, with the anomaly kind of the protocol being decoded (:func:`anomaly_kind`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from stormwatch.detect.finding import Finding
from stormwatch.protocols.errors import MalformedMessage, NeedMoreData, ProtocolError
from stormwatch.protocols.smb1 import WEIRD_ANDX_DEPTH, to_filetime
from stormwatch.sensor.limits import SessionLimits
from stormwatch.sensor.outputs import Emit, Output, Send
from stormwatch.sensor.persona import Persona

if TYPE_CHECKING:
    from stormwatch.sensor.replay_ids import ReplayIds


class Abort(Exception):
    """End the session: ``kind`` names the anomaly (a limit's name for ``reason`` "limit")."""

    def __init__(self, kind: str, detail: str, *, field: str = "", offset: int = 0, reason: str = "anomaly") -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.field = field
        self.offset = offset
        self.reason = reason


#: Codec fields that name one of the DCE/RPC reassembly limits → the SessionLimits name.
_DCERPC_LIMIT_FIELDS = {"max_fragments": "max_dcerpc_fragments", "max_stub_bytes": "max_stub_bytes",
                        "max_frag_length": "max_frame", "max_outstanding_calls": "max_dcerpc_fragments"}


def anomaly_for(exc: ProtocolError, protocol: str) -> Abort:
    """The anomaly a codec error becomes: a limit named by the codec keeps the limit's name (and
    closes with reason "limit"); anything else is ``malformed_<protocol>``."""
    if isinstance(exc, MalformedMessage):
        if exc.field in _DCERPC_LIMIT_FIELDS:
            return Abort(_DCERPC_LIMIT_FIELDS[exc.field], exc.detail, field=exc.field, offset=exc.offset,
                         reason="limit")
        if exc.detail.startswith(WEIRD_ANDX_DEPTH):
            return Abort("max_andx_depth", exc.detail, field=exc.field, offset=exc.offset, reason="limit")
        if exc.field == "length" and "exceeds the limit" in exc.detail:
            return Abort("max_frame", exc.detail, field=exc.field, offset=exc.offset, reason="limit")
        return Abort(f"malformed_{protocol}", str(exc), field=exc.field, offset=exc.offset)
    if isinstance(exc, NeedMoreData):  # a complete frame that a codec found cut short
        return Abort(f"malformed_{protocol}", str(exc), field=exc.what, offset=exc.needed or 0)
    return Abort(f"malformed_{protocol}", str(exc))


class Context:
    """Shared per-session state and output collection (see the module docstring)."""

    def __init__(self, persona: Persona, limits: SessionLimits, rng: random.Random, clock: Callable[[], float],
                 frame: Callable[[bytes], bytes]) -> None:
        self.persona = persona
        self.limits = limits
        self.rng = rng
        self.clock = clock
        self.frame = frame
        self.out: list[Output] = []
        self.requests = 0
        self.open_files = 0
        self.bytes_kept = 0
        self._next_fid = 0x4000 + rng.randrange(0x1000)  # Windows hands out FIDs like 0x4000+
        #: Set when the session replays a capture: the captured server's ids (:mod:`.replay_ids`).
        self.replay: ReplayIds | None = None

    # -- outputs -------------------------------------------------------------------------------

    def emit(self, event: str, fields: dict[str, Any], payload: bytes | None = None) -> None:
        self.out.append(Emit(event, fields, payload))

    def reply(self, message: bytes) -> None:
        """Send one protocol message, framed for the transport."""
        self.out.append(Send(self.frame(message)))
        if self.replay is not None:
            self.replay.ours(message)

    def send_raw(self, data: bytes) -> None:
        """Send bytes that carry their own framing (DCE/RPC on TCP 135)."""
        self.out.append(Send(data))

    def report(self, findings: Iterable[Finding]) -> None:
        """One ``exploit.attempt`` per finding; payloads kept while the byte budget lasts."""
        for finding in findings:
            payload = finding.payload
            if payload is not None:
                if self.bytes_kept + len(payload) > self.limits.max_bytes_kept:
                    payload = None
                else:
                    self.bytes_kept += len(payload)
            self.emit("exploit.attempt", finding.event_fields(), payload)

    # -- counters and identities ---------------------------------------------------------------

    def count_request(self) -> None:
        self.requests += 1
        if self.requests > self.limits.max_requests:
            raise Abort("max_requests", f"more than max_requests={self.limits.max_requests} requests",
                        reason="limit")

    def open_file(self) -> int:
        """A new file id (SMB1 FID; SMB2 uses it as the volatile part's counter)."""
        if self.open_files >= self.limits.max_open_files:
            raise Abort("max_open_files", f"more than max_open_files={self.limits.max_open_files} open at once",
                        reason="limit")
        self.open_files += 1
        self._next_fid = self._next_fid + 1 if self._next_fid < 0xFFFE else 1
        return self._next_fid

    def close_file(self) -> None:
        self.open_files = max(0, self.open_files - 1)

    def filetime(self) -> int:
        return to_filetime(self.clock())

    def boot_filetime(self) -> int:
        return to_filetime(max(0.0, self.clock() - self.persona.boot_offset))
