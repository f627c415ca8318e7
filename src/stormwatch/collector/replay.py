"""Captures through the sensor's detectors: every TCP connection of a capture to port 445, 139 or
135 (and DCE/RPC found on other ports) is replayed through the honeypot's own
:class:`~stormwatch.sensor.session.Session`, so that a capture of an attack yields the events the
sensor records for a live one — ``session.connect``, ``smb.*``, ``dcerpc.*``, ``exploit.attempt``
(with its payload kept by SHA-256), ``session.anomaly``, ``session.closed``.

How a connection is replayed:

* segments come from :func:`~.tcp_streams.capture_segments`, each direction is put back in order
  by a :class:`~.tcp_streams.HalfStream`; the client is the side that sent the SYN, or else the
  side not on the service port (or the one that sent the DCE/RPC bind);
* the client's bytes go to :meth:`Session.receive_data`, the captured server's to
  :meth:`Session.server_data` (``replay=True``: the session learns which of its ids each of the
  server's stands for, see :mod:`stormwatch.sensor.replay_ids`); the session's answers are
  counted and dropped — it answers as our honeypot would, not as the captured server did;
* identity is the capture's: addresses and ports of the connection, the packet time as the
  session's clock and as each event's ``ts``; the session id is a hash of the connection's first
  packet time and 4-tuple, so every event's store key (``session:seq``, as for a spool) is the same
  each time the capture is read, and the rng of each session is seeded from it;
* the persona is ``win7`` when the conversation is SMB2 (the client's first SMB message is SMB2, or
  it offers SMB2 and the captured server answered in SMB2, or the client's next message is SMB2),
  otherwise the sensor's default ``win2000``: the session must speak the dialect the client went on
  in. While that cannot be told yet the client's bytes wait (at most ``max_undecided``);
* a connection is replayed once it is established (SYN-ACK or payload seen); it ends at the
  client's FIN, at an RST, when the session closes it, when the sensor would have closed it (idle
  for ``idle_timeout`` or open for ``max_session_time`` of capture time, the sensor's
  :class:`~stormwatch.sensor.limits.ServerLimits`), or at the end of the capture, and
  ``session.closed`` names who ended it: ``client``, ``server`` (the captured server closed
  first), ``idle``, ``lifetime``, ``capture_end``, or the session's own ``anomaly``/``limit``;
* a direction seen without its SYN is cut to its first frame boundary (SMB or DCE/RPC header);
  a gap in the client's direction is ``session.anomaly`` kind ``capture_gap`` and ends the replay of
  the connection; a gap in the server's, or a capture without the server's side (the client sends
  again and no packet of the server was seen), only stops the learning of ids: the session is
  then lenient with ids it cannot place (:mod:`stormwatch.sensor.replay_ids`).

Memory is bounded: bytes waiting behind holes per direction and in total, the bytes held while the
persona is undecided, and the number of connections replayed at once (the least recently active
is evicted, as the sensor evicts, with anomaly ``max_sessions``).
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from stormwatch.collector.replay_conn import Conn, choose_persona, frame_start
from stormwatch.collector.tcp_streams import ACK, FIN, RST, SYN, Budget, HalfStream, Segment, capture_segments
from stormwatch.errors import InputError
from stormwatch.events.records import StoreFeed
from stormwatch.ingest.base import CHUNK_ROWS, Source
from stormwatch.sensor.analysis import PayloadAnalyser
from stormwatch.sensor.limits import ServerLimits, SessionLimits
from stormwatch.sensor.outputs import Close, Emit, Output, Send
from stormwatch.sensor.payloads import PayloadStore
from stormwatch.sensor.persona import Persona, generate
from stormwatch.sensor.session import Session
from stormwatch.sensor.spool import Identity, Spool

log = logging.getLogger(__name__)

SERVICES = {445: "smb", 139: "netbios-ssn", 135: "dcerpc"}
PERSONA_SEED = "stormwatch capture replay"  # one fixed persona per template: replays are reproducible


@dataclass(frozen=True)
class ReplayLimits:
    """Bounds of one capture's replay."""

    max_connections: int = ServerLimits().max_sessions  # replayed at once
    idle_timeout: float = ServerLimits().idle_timeout  # seconds of capture time without a packet
    max_session_time: float = ServerLimits().max_session_time  # seconds of capture time from the first packet
    max_held: int = 1 << 20  # bytes waiting behind a hole, per direction
    max_held_total: int = 256 << 20  # the same, all connections together
    max_undecided: int = 64 << 10  # client bytes kept while the persona cannot be told
    max_resync: int = 64 << 10  # bytes searched for a frame boundary in a mid-stream capture
    max_finished: int = 1 << 16  # ended connections remembered, so their late packets are ignored


class CaptureReplay:
    """Replays the connections of one capture; :attr:`feed` collects the events."""

    def __init__(self, sensor: str, payload_dir: Path | None = None, *, limits: ReplayLimits | None = None,
                 session_limits: SessionLimits | None = None) -> None:
        self.limits = limits or ReplayLimits()
        self.session_limits = session_limits or SessionLimits()
        self.feed = StoreFeed()
        self.now = 0.0
        self.spool = Spool(None, sensor, clock=lambda: self.now, on_record=self.feed.add)
        self.payload_dir = payload_dir
        self._payloads: PayloadStore | None = None
        self._analyser = PayloadAnalyser()
        self.budget = Budget(self.limits.max_held_total)
        self.conns: OrderedDict[tuple[str, int, str, int], Conn] = OrderedDict()  # least recently active first
        self.finished: OrderedDict[tuple[str, int, str, int], None] = OrderedDict()
        self.personas: dict[str, Persona] = {}

    # -- packets ---------------------------------------------------------------------------------

    def segment(self, seg: Segment) -> None:
        """Take the next segment of the capture."""
        self._sweep(seg.ts)
        self.now = seg.ts / 1e6
        key = (seg.src, seg.sport, seg.dst, seg.dport)
        back = (seg.dst, seg.dport, seg.src, seg.sport)
        syn_only = seg.flags & (SYN | ACK) == SYN
        conn = self.conns.get(key) or self.conns.get(back)
        lifetime = int(self.limits.max_session_time * 1e6)
        if conn is not None and seg.ts - conn.first_ts > lifetime:
            self._end(conn, "lifetime", until=conn.first_ts + lifetime)
            conn = None
        if conn is not None and syn_only and conn.client_key == key and conn.up.isn != seg.seq and (
                conn.up.delivered or conn.down.delivered or conn.closer):
            self._end(conn, conn.closer or "client")  # the port pair is used again by a new connection
            conn = None
        if conn is None:
            conn = self._open(seg, key, back, syn_only)
            if conn is None:
                return
        self.conns.move_to_end(conn.client_key)
        conn.last_ts = seg.ts
        from_client = conn.client_key == key
        conn.server_seen |= not from_client
        this, other = (conn.up, conn.down) if from_client else (conn.down, conn.up)
        if seg.flags & SYN:
            this.start_syn(seg.seq)
            if not from_client:
                conn.established = True
        if seg.flags & ACK:
            other.ack(seg.ack)
            self._check_gaps(conn)
        if seg.payload and not conn.done:
            conn.established = True
            data = this.add((seg.seq + 1) % (1 << 32) if seg.flags & SYN else seg.seq, seg.payload)
            self._check_gaps(conn)
            if data:
                self._deliver(conn, from_client, data)
        if conn.done:
            return
        if seg.flags & (FIN | RST) and conn.closer is None:
            conn.closer = "client" if from_client else "server"
        if seg.flags & RST or (seg.flags & FIN and from_client):
            self._end(conn, conn.closer or "client")

    def _open(self, seg: Segment, key: tuple[str, int, str, int], back: tuple[str, int, str, int],
              syn_only: bool) -> Conn | None:
        """A new connection for ``seg``, or None when the segment starts nothing worth replaying."""
        if not syn_only and (key in self.finished or back in self.finished):
            return None  # a late packet of a connection already ended
        if seg.flags & SYN:
            client_key = key if syn_only else back
        elif not seg.payload or seg.flags & RST:
            return None
        elif seg.dport in SERVICES and not (seg.sport in SERVICES and seg.sport < seg.dport):
            client_key = key
        elif seg.sport in SERVICES:
            client_key = back
        else:
            client_key = key  # another port: capture_segments passed it on for its DCE/RPC bind
        server_port = client_key[3]
        service = SERVICES.get(server_port)
        if service is None:
            if seg.flags & SYN or client_key != key:
                return None  # DCE/RPC on another port is recognised by the client's bind only
            service = "dcerpc"
        self.finished.pop(key, None)
        self.finished.pop(back, None)
        conn = Conn(client_key, service, seg.ts, HalfStream(self.budget, self.limits.max_held),
                    HalfStream(self.budget, self.limits.max_held))
        self.conns[client_key] = conn
        if len(self.conns) > self.limits.max_connections:
            victim = next(iter(self.conns.values()))
            self._start(victim, final=True)
            self._anomaly(victim, "max_sessions", f"evicted, the least recently active of "
                          f"{self.limits.max_connections} connections replayed at once")
            self._end(victim, "limit")
        return conn

    # -- bytes -----------------------------------------------------------------------------------

    def _deliver(self, conn: Conn, from_client: bool, data: bytes) -> None:
        if from_client:
            if conn.bytes_in and not conn.server_seen and not conn.server_lost:
                self._server_gap(conn)  # more from the client and nothing from the server: a one-sided capture
            conn.bytes_in += len(data)
            if conn.resync_up is None:  # the first bytes: a direction seen without its SYN starts anywhere
                conn.resync_up = not conn.up.syn
        elif conn.resync_down is None:
            conn.resync_down = not conn.down.syn
        if conn.resync_up if from_client else conn.resync_down:
            data = self._resync(conn, from_client, data)
            if not data:
                return
        if from_client:
            if conn.session is None:
                conn.held_up.append((conn.last_ts, data))
                conn.held_up_bytes += len(data)
                self._start(conn, final=conn.held_up_bytes > self.limits.max_undecided)
            else:
                self._feed(conn, data)
        elif conn.session is None:
            if len(conn.held_down) + len(data) > self.limits.max_undecided:
                conn.server_lost = True
            else:
                conn.held_down += data
                self._start(conn, final=False)
        elif not conn.server_lost:
            self._call(conn, "server_data", lambda s: s.server_data(data))

    def _resync(self, conn: Conn, from_client: bool, data: bytes) -> bytes:
        """Bytes of a direction seen without its SYN, from its first frame boundary on."""
        buf = (conn.resync_buf_up if from_client else conn.resync_buf_down) + data
        at = frame_start(conn.service, buf)
        if at is None and len(buf) <= self.limits.max_resync:
            if from_client:
                conn.resync_buf_up = buf
            else:
                conn.resync_buf_down = buf
            return b""
        if from_client:
            conn.resync_up, conn.resync_buf_up = False, b""
        else:
            conn.resync_down, conn.resync_buf_down = False, b""
        if at is None:
            why = f"no {conn.service} frame boundary in the first {len(buf)} bytes of a direction captured mid-stream"
            if from_client:
                self._client_gap(conn, why)
            else:
                self._server_gap(conn)
            return b""
        return buf[at:]

    def _check_gaps(self, conn: Conn) -> None:
        if conn.down.gap is not None and not conn.server_lost:
            self._server_gap(conn)
        if conn.up.gap is not None and not conn.done:
            self._client_gap(conn, conn.up.gap)

    def _server_gap(self, conn: Conn) -> None:
        conn.server_lost = True
        conn.held_down = bytearray()
        self._call(conn, "server_gap", lambda s: s.server_gap())

    def _client_gap(self, conn: Conn, why: str) -> None:
        self._start(conn, final=True)
        self._anomaly(conn, "capture_gap", f"client to server: {why}; the rest of the connection is not replayed")
        self._end(conn, "anomaly")

    # -- the session -----------------------------------------------------------------------------

    def _start(self, conn: Conn, *, final: bool) -> bool:
        """Start the session once its persona can be chosen (``final``: choose now, whatever is
        known), then hand it what waited. False when the connection has ended."""
        if conn.session is not None or conn.done:
            return not conn.done
        up = b"".join(d for _, d in conn.held_up)
        template = choose_persona(conn.service, up, bytes(conn.held_down), final=final)
        if template is None:
            return True
        persona = self.personas.get(template)
        if persona is None:
            persona = self.personas[template] = generate(template, random.Random(f"{PERSONA_SEED} {template}"))
        client, cport, server, sport = conn.client_key
        sid = hashlib.sha256(f"{conn.first_ts}|{client}|{cport}|{server}|{sport}".encode()).hexdigest()[:32]
        conn.ident = Identity(sid, client, cport, server, sport, "tcp")
        conn.session = Session(conn.service, persona, self.session_limits, random.Random(sid), self._clock,
                               replay=True)
        now = self.now
        self.now = conn.first_ts / 1e6
        self._emit(conn, "session.connect", {"service": conn.service, "persona": persona.template})
        held, conn.held_up, conn.held_up_bytes = conn.held_up, [], 0
        for ts, data in held:
            self.now = ts / 1e6
            self._feed(conn, data)
        self.now = now
        down, conn.held_down = bytes(conn.held_down), bytearray()
        session = conn.live()  # None if the session closed the connection on what waited
        if session is None:
            return False
        if conn.server_lost:
            self._call(conn, "server_gap", lambda s: s.server_gap())
        elif down:
            self._call(conn, "server_data", lambda s: s.server_data(down))
        return not conn.done

    def _clock(self) -> float:
        return self.now

    def _feed(self, conn: Conn, data: bytes) -> None:
        self._call(conn, "receive_data", lambda s: s.receive_data(data))

    def _call(self, conn: Conn, where: str, call: Callable[[Session], list[Output] | None]) -> None:
        """Run ``call`` on the connection's session, if it has one, and carry out its outputs. An
        exception is a bug of the session: logged, and that connection alone is not replayed further
        (as the sensor's server does)."""
        session = conn.live()
        if session is None:
            return
        try:
            outs = call(session)
        except Exception:  # a bug in the session: logged with its traceback
            log.exception("internal error in %s replaying %s:%s -> %s:%s", where, *conn.client_key)
            self._anomaly(conn, "internal_error", f"sensor bug in {where}; see the operator log")
            conn.broken = True
            self._end(conn, "anomaly")
            return
        if outs:
            self._apply(conn, outs)

    def _apply(self, conn: Conn, outs: list[Output]) -> None:
        for out in outs:
            if isinstance(out, Send):
                conn.bytes_out += len(out.data)
            elif isinstance(out, Emit):
                self._emit_output(conn, out)
            elif isinstance(out, Close):
                self._end(conn, out.reason or "anomaly")
                return

    def _emit_output(self, conn: Conn, out: Emit) -> None:
        fields = out.fields
        if out.payload is not None and out.event == "exploit.attempt":
            kept = self._payload_store(out.payload)
            fields = {**fields, "payload_sha256": kept[0], "payload_size": kept[1]}
            self._emit(conn, out.event, fields)
            for event, more in self._analyser.events(out.payload, kept[0]):  # offline: analysed in line
                self._emit(conn, event, more)
            return
        self._emit(conn, out.event, fields)

    def _payload_store(self, payload: bytes) -> tuple[str, int]:
        if self.payload_dir is None:
            return hashlib.sha256(payload).hexdigest(), len(payload)
        if self._payloads is None:
            self._payloads = PayloadStore(self.payload_dir)
        kept = self._payloads.keep(payload)
        return kept.sha256, kept.size

    def _emit(self, conn: Conn, event: str, fields: dict[str, Any]) -> None:
        assert conn.ident is not None
        self.spool.emit(conn.ident, event, fields)

    def _anomaly(self, conn: Conn, kind: str, detail: str) -> None:
        if conn.ident is not None and not conn.done:
            self._emit(conn, "session.anomaly", {"kind": kind, "detail": detail})

    def _sweep(self, now: int) -> None:
        """End the connections idle for longer than ``idle_timeout`` at capture time ``now``, at the
        moment the sensor would have closed them (least recently active first, as it sweeps)."""
        idle = int(self.limits.idle_timeout * 1e6)
        while self.conns:
            conn = next(iter(self.conns.values()))
            if now - conn.last_ts <= idle:
                return
            self._end(conn, "idle", until=conn.last_ts + idle)

    def _end(self, conn: Conn, reason: str, *, until: int | None = None) -> None:
        """The connection is over — at capture time ``until`` (epoch microseconds), by default now
        or its last packet if later: the session's last events, then ``session.closed``."""
        if conn.done:
            return
        if conn.session is None and (conn.held_up or conn.established) and not self._start(conn, final=True):
            return  # the session closed the connection on what waited
        session = conn.session
        if session is not None:
            saved = self.now
            end = until if until is not None else max(round(self.now * 1e6), conn.last_ts)
            self.now = end / 1e6
            hole = conn.up.hole()
            if hole is not None and reason not in ("anomaly", "limit"):
                self._anomaly(conn, "capture_gap", f"client to server: {hole}")
                reason = "anomaly"
            conn.done = True  # nothing but connection_lost reaches the session from here on
            outs: list[Output] = []
            if not conn.broken:
                try:
                    outs = session.connection_lost()
                except Exception:  # a bug in the session: logged with its traceback
                    log.exception("internal error in connection_lost replaying %s:%s -> %s:%s", *conn.client_key)
                    self._emit(conn, "session.anomaly", {"kind": "internal_error",
                                                         "detail": "sensor bug in connection_lost"})
            for out in outs:
                if isinstance(out, Send):
                    conn.bytes_out += len(out.data)
                elif isinstance(out, Emit):
                    self._emit_output(conn, out)
            self._emit(conn, "session.closed", {
                "reason": reason, "duration": round(max(0, end - conn.first_ts) / 1e6, 6),
                "bytes_in": conn.bytes_in, "bytes_out": conn.bytes_out})
            conn.session = None
            self.now = saved
        conn.done = True
        conn.up.drop()
        conn.down.drop()
        self.conns.pop(conn.client_key, None)
        self.finished[conn.client_key] = None
        if len(self.finished) > self.limits.max_finished:
            self.finished.popitem(last=False)

    def finish(self) -> None:
        """The capture ended: end every connection still open."""
        for conn in list(self.conns.values()):
            self.now = conn.last_ts / 1e6
            self._end(conn, conn.closer or "capture_end")


def payload_dir_beside(db_path: str) -> Path | None:
    """Where ``stormwatch ingest`` keeps a capture's exploit payloads: ``payloads/`` beside the
    DuckDB file, as the sensor keeps them under its state directory (None for ``:memory:``)."""
    return None if db_path == ":memory:" else Path(db_path).parent / "payloads"


def replay_capture(src: Source, payload_dir: Path | None = None, *, limits: ReplayLimits | None = None
                   ) -> Iterator[pa.Table]:
    """The sensor events of a capture's SMB / NetBIOS / DCE-RPC connections, as event batches for
    the store. ``payload_dir``: where exploit payloads are kept (None: hashed only). A capture
    damaged part-way is replayed up to the damage (the ``pcap`` reader reports it)."""
    replay = CaptureReplay(src.sensor, payload_dir, limits=limits)
    try:
        for seg in capture_segments(src):
            replay.segment(seg)
            if replay.feed.pending >= CHUNK_ROWS:
                table = replay.feed.take()
                if table is not None:
                    yield table
    except InputError:
        pass  # not a capture after all: the reader has said so
    replay.finish()
    table = replay.feed.take()
    if table is not None:
        yield table
