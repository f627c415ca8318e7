"""The sensor's transports: asyncio listeners that carry bytes between sockets and sessions.

One event loop serves every port: TCP ``smb`` (445, direct-TCP framing), ``netbios-ssn`` (139,
NBSS framing) and ``dcerpc`` (135), and UDP ``nbns`` (137). Per TCP connection the server

1. draws a session id (128 random bits from the injected rng, as 32 hex digits) and binds the identity fields from the
   socket (never from what the client says), then emits ``session.connect``;
2. feeds every received chunk to a sans-I/O :class:`~stormwatch.sensor.session.Session` and carries
   out its outputs in order: ``Send`` → write, ``Emit`` → spool (an ``exploit.attempt`` payload goes
   to the payload store first and its hash and size join the event), ``Close`` → close after the
   writes before it; the ``Send`` outputs of one chunk go out in one write;
3. always ends with ``session.closed`` (reason, duration, bytes in and out) as the session's last
   event, whoever closed and why.

Limits (:class:`~stormwatch.sensor.limits.ServerLimits`, :class:`~stormwatch.sensor.config.TransportLimits`):

* ``max_sessions``: when full, the *least recently active* session is evicted (anomaly
  ``max_sessions``, closed ``limit``) so that a new attacker is always answered while idle
  connections are the ones that pay — refusing new connections would let anyone blind the sensor
  by holding sockets open;
* ``max_sessions_per_source``: a source over it gets its connection accepted, recorded (anomaly
  ``max_sessions_per_source``) and closed at once;
* ``idle_timeout`` / ``max_session_time``: checked by one sweep per ``sweep_interval`` over
  activity-ordered tables (cost proportional to what expires, not to what is open, so 10,000 idle
  connections cost nothing between sweeps);
* write buffers: above ``write_buffer_high`` bytes queued for a client the server stops reading from
  it; above ``write_buffer_max`` it closes the connection;
* NBNS: a per-source and a total datagram rate, so the name service cannot be used as a reflector.

An exception escaping a Session is a bug: it is logged with its traceback to the operator log
(Python logging, not events), becomes ``session.anomaly`` kind ``internal_error`` and closes that
connection only; every other connection is served on.

Costs, per session (bench/bench_sensor_sessions.py): the transport reads into one buffer of the
server (a ``BufferedProtocol``: asyncio's plain ``Protocol`` allocates a 256 KiB bytes object for
every read and then shrinks it); the spool writes once per event-loop iteration
(:meth:`Spool.batch`), not once per event.

The server itself opens no outbound connection (UDP replies go back to the datagram's source, rate
limited) and never executes what it receives. An ``analyser`` (:mod:`stormwatch.sensor.analysis`)
emulates kept exploit payloads in a worker thread; an operator-enabled ``downloader``
(:mod:`stormwatch.sensor.download`, off by default) fetches the files they offer in a sandboxed
child process. Their events (``payload.shellcode``, ``payload.offer``, ``payload.file``) join the
exploit's session, and that session's ``session.closed`` waits for them so that it stays last; at
:meth:`SensorServer.stop` queued work is cancelled and a running fetch killed.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Protocol, cast

from stormwatch.sensor.analysis import PayloadAnalyser, PayloadEvents
from stormwatch.sensor.config import DEFAULT_PORTS, TransportLimits
from stormwatch.sensor.download import Downloader, Fetched, file_fields
from stormwatch.sensor.limits import ServerLimits, SessionLimits
from stormwatch.sensor.outputs import Close, Emit, Output, Send
from stormwatch.sensor.payloads import PayloadStore
from stormwatch.sensor.persona import Persona
from stormwatch.sensor.spool import Identity, Spool

log = logging.getLogger(__name__)

TCP_SERVICES = ("smb", "netbios-ssn", "dcerpc")
BACKLOG = 1024  # the kernel caps it at net.core.somaxconn; scanners arrive in bursts
SHUTDOWN_WAIT = 5.0  # seconds stop() waits for the last connection_lost callbacks
READ_BUFFER = 256 << 10  # bytes read at most per recv: asyncio's own default read size


class SessionLike(Protocol):
    """What the server needs of a session (the real one is stormwatch.sensor.session.Session)."""

    def receive_data(self, data: bytes) -> list[Output]: ...

    def connection_lost(self) -> list[Output]: ...


SessionFactory = Callable[[str, Persona, SessionLimits, random.Random, Callable[[], float]], SessionLike]
NbnsHandler = Callable[[bytes, Persona, str], tuple[list[Output], bytes | None]]


def _default_session() -> tuple[SessionFactory, NbnsHandler]:
    from stormwatch.sensor.session import Session, nbns_answer

    return Session, nbns_answer


def _addr(info: Any) -> tuple[str | None, int | None]:
    """(ip, port) of a socket address tuple; IPv4-mapped IPv6 shown as IPv4; None for the wildcard."""
    if not isinstance(info, tuple) or len(info) < 2:
        return None, None
    return _canonical(str(info[0])), int(info[1])


@functools.lru_cache(maxsize=1 << 14)  # scanners come back, and our own address never changes
def _canonical(text: str) -> str | None:
    ip = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return None if ip.is_unspecified else ip.compressed


class _Conn(asyncio.BufferedProtocol):
    """One TCP connection; the logic lives in :class:`SensorServer`, this only forwards. Reads land
    in the server's one read buffer and are copied out at once (the loop runs one callback at a
    time, so connections never share it at the same moment)."""

    __slots__ = ("abandoned", "bytes_in", "bytes_out", "closing", "ident", "last", "lost", "pending", "reason",
                 "server", "service", "session", "started", "transport")

    def __init__(self, server: SensorServer, service: str) -> None:
        self.server = server
        self.service = service
        self.transport: asyncio.Transport | None = None
        self.session: SessionLike | None = None
        self.ident: Identity | None = None
        self.started = self.last = 0.0
        self.bytes_in = self.bytes_out = 0
        self.reason: str | None = None
        self.closing = False
        self.pending = 0  # payload analyses (and downloads) still running for this session
        self.lost = False  # the connection is gone; session.closed waits for the pending analyses
        self.abandoned = False  # closed at shutdown without them: their late results are dropped

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a cast, not an isinstance check: other event loops' transports (uvloop's) are not subclasses
        self.server._opened(self, cast(asyncio.Transport, transport))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.server._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.server._received(self, bytes(self.server._read_buffer[:nbytes]))

    def eof_received(self) -> bool:
        return False  # the client half-closed: close our side too (connection_lost follows)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._lost(self)

    def pause_writing(self) -> None:  # write buffer above write_buffer_high: stop reading
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()


class _Nbns(asyncio.DatagramProtocol):
    def __init__(self, server: SensorServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.server._datagram(self, data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("nbns socket error: %s", exc)  # ICMP unreachable for an earlier reply, typically


class SensorServer:
    """The honeypot's listeners and connection bookkeeping. ``ports`` maps a service (``smb``,
    ``netbios-ssn``, ``dcerpc``, ``nbns``) to a port, 0 for an ephemeral one, None for off."""

    def __init__(self, *, spool: Spool, persona: Persona, host: str = "127.0.0.1",
                 ports: Mapping[str, int | None] = DEFAULT_PORTS, limits: ServerLimits | None = None,
                 session_limits: SessionLimits | None = None, transport_limits: TransportLimits | None = None,
                 payloads: PayloadStore | None = None, analyser: PayloadAnalyser | None = None,
                 downloader: Downloader | None = None,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, rng: random.Random | None = None,
                 session_factory: SessionFactory | None = None, nbns_handler: NbnsHandler | None = None) -> None:
        self.spool = spool
        self.persona = persona
        self.host = host
        self.ports = dict(ports)
        self.limits = limits or ServerLimits()
        self.session_limits = session_limits or SessionLimits()
        self.tlimits = transport_limits or TransportLimits()
        self.payloads = payloads
        self.analyser = analyser
        self.downloader = downloader  # None (the default): offers are recorded, never fetched
        self.clock = clock
        self.monotonic = monotonic
        self.rng = rng or random.Random()
        if session_factory is None or nbns_handler is None:
            default_factory, default_nbns = _default_session()
            session_factory = session_factory or default_factory
            nbns_handler = nbns_handler or default_nbns
        self.session_factory = session_factory
        self.nbns_handler = nbns_handler
        self.bound: dict[str, int] = {}  # service -> port actually bound
        self.counters: dict[str, int] = dict.fromkeys(
            ("sessions", "refused", "evicted", "idle", "lifetime", "internal_errors", "nbns", "nbns_dropped"), 0)
        self._servers: list[asyncio.Server] = []
        self._udp: asyncio.DatagramTransport | None = None
        self._live: dict[_Conn, None] = {}  # every connection until connection_lost, in order of start
        self._activity: OrderedDict[_Conn, None] = OrderedDict()  # open ones, least recently active first
        self._closing: dict[_Conn, float] = {}  # closed gracefully, waiting for the buffer to drain
        self._per_source: dict[str | None, int] = {}
        self._nbns_window = -1
        self._nbns_counts: dict[str, int] = {}
        self._nbns_total = 0
        self._sweeper: asyncio.Task[None] | None = None
        self._drained: asyncio.Event | None = None
        self._stopping = False
        self._read_buffer = memoryview(bytearray(READ_BUFFER))

    # -- life cycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind every configured port; :attr:`bound` then holds the ports actually bound."""
        loop = asyncio.get_running_loop()
        try:
            for service in TCP_SERVICES:
                port = self.ports.get(service)
                if port is None:
                    continue
                srv = await loop.create_server(lambda s=service: _Conn(self, s),  # type: ignore[misc]
                                               self.host, port, backlog=BACKLOG, reuse_address=True)
                self._servers.append(srv)
                self.bound[service] = srv.sockets[0].getsockname()[1]
            port = self.ports.get("nbns")
            if port is not None:
                udp, _ = await loop.create_datagram_endpoint(lambda: _Nbns(self), local_addr=(self.host, port))
                self._udp = udp
                self.bound["nbns"] = udp.get_extra_info("sockname")[1]
        except BaseException:
            await self.stop()
            raise
        self._sweeper = loop.create_task(self._sweep_forever(), name="stormwatch-sensor-sweep")
        self.spool.batch(loop.call_soon)  # one spool write per loop iteration (see Spool.batch)
        log.info("sensor listening on %s: %s", self.host,
                 ", ".join(f"{s} {p}" for s, p in self.bound.items()))

    async def serve(self) -> None:
        """Start and serve until cancelled; on cancellation stop cleanly (every open session gets
        ``session.closed`` reason ``shutdown``) and re-raise."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Stop listening, close every session with reason ``shutdown`` and wait for their last
        events. Idempotent."""
        self._stopping = True
        for srv in self._servers:
            srv.close()
        self._servers.clear()
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self._live):
            self._shut(conn, "shutdown", abort=True)
        # analyses not started are cancelled (their sessions close without payload events); the
        # one running ends within its emulation limits
        if self.analyser is not None:
            self.analyser.cancel_pending()
        if self.downloader is not None:  # queued fetches cancelled, the running one's child killed
            self.downloader.cancel_pending()
        if self._live:
            self._drained = asyncio.Event()
            try:
                await asyncio.wait_for(self._drained.wait(), SHUTDOWN_WAIT)
            except TimeoutError:
                log.error("%d sessions did not close within %.0f s", len(self._live), SHUTDOWN_WAIT)
                for conn in list(self._live):
                    if conn.lost:  # waiting for an analysis: closed without it, its events dropped
                        conn.abandoned = True
                        self._finish(conn)
        self.spool.batch(None)  # what is held is written now; the loop may not run again

    @property
    def open_sessions(self) -> int:
        return len(self._live)

    # -- TCP ------------------------------------------------------------------------------------
    def _opened(self, conn: _Conn, transport: asyncio.Transport) -> None:
        now = self.monotonic()
        conn.transport = transport
        conn.started = conn.last = now
        src_ip, src_port = _addr(transport.get_extra_info("peername"))
        dst_ip, dst_port = _addr(transport.get_extra_info("sockname"))
        conn.ident = Identity(self._new_id(), src_ip, src_port, dst_ip, dst_port, "tcp")
        transport.set_write_buffer_limits(high=self.tlimits.write_buffer_high)
        self._live[conn] = None
        self._activity[conn] = None
        self.counters["sessions"] += 1
        self._emit(conn.ident, "session.connect", {"service": conn.service, "persona": self.persona.template})
        n = self._per_source.get(src_ip, 0) + 1
        self._per_source[src_ip] = n
        if self._stopping:
            self._shut(conn, "shutdown", abort=True)
            return
        if n > self.limits.max_sessions_per_source:
            self.counters["refused"] += 1
            self._anomaly(conn, "max_sessions_per_source",
                          f"{n - 1} sessions from this source are open (limit {self.limits.max_sessions_per_source})")
            self._shut(conn, "limit", abort=True)
            return
        if len(self._activity) > self.limits.max_sessions:
            victim = next(iter(self._activity))
            self.counters["evicted"] += 1
            self._anomaly(victim, "max_sessions", f"evicted, the least recently active of "
                          f"{self.limits.max_sessions} sessions, to admit a new one")
            self._shut(victim, "limit", abort=True)
        try:
            conn.session = self.session_factory(conn.service, self.persona, self.session_limits, self.rng,
                                                self.clock)
        except Exception:  # noqa: BLE001 - a bug in the session: logged by _internal_error
            self._internal_error(conn, "creating the session")

    def _received(self, conn: _Conn, data: bytes) -> None:
        if conn.closing or conn.session is None:
            return
        conn.bytes_in += len(data)
        conn.last = self.monotonic()
        self._activity.move_to_end(conn)
        try:
            outs = conn.session.receive_data(data)
        except Exception:  # noqa: BLE001 - a bug in the session: logged by _internal_error
            self._internal_error(conn, "receive_data")
            return
        self._apply(conn, outs)

    def _apply(self, conn: _Conn, outs: list[Output]) -> None:
        transport = conn.transport
        ident = conn.ident
        assert transport is not None and ident is not None
        held: list[bytes] = []  # Sends up to the next Close: one write (one send(2)) for all of them
        wrote = False
        for out in outs:
            if isinstance(out, Send):
                if not conn.closing and out.data:
                    held.append(out.data)
            elif isinstance(out, Emit):
                self._emit_output(ident, out, conn)
            elif isinstance(out, Close):
                if held:
                    self._write(conn, transport, held)
                    held, wrote = [], True
                self._shut(conn, out.reason or "anomaly", abort=False)
        if held:
            self._write(conn, transport, held)
            wrote = True
        # the buffer only grows by writing: nothing written, nothing to check
        if wrote and not conn.closing and transport.get_write_buffer_size() > self.tlimits.write_buffer_max:
            self._anomaly(conn, "write_buffer_max", f"{transport.get_write_buffer_size()} bytes unread by the "
                          f"client (limit {self.tlimits.write_buffer_max})")
            self._shut(conn, "limit", abort=True)

    @staticmethod
    def _write(conn: _Conn, transport: asyncio.Transport, held: list[bytes]) -> None:
        data = held[0] if len(held) == 1 else b"".join(held)
        transport.write(data)
        conn.bytes_out += len(data)

    def _lost(self, conn: _Conn) -> None:
        """The socket is gone: the session's last outputs, then ``session.closed`` — at once, or
        (:meth:`_finish`) when the payload analyses still running for it have reported."""
        ident = conn.ident
        if ident is None or conn.lost:  # connection_made never ran / already seen
            return
        conn.closing = True
        conn.lost = True
        if conn.session is not None:
            try:
                outs = conn.session.connection_lost()
            except Exception:  # noqa: BLE001 - a bug in the session: logged by _internal_error
                self._internal_error(conn, "connection_lost")
            else:
                self._apply(conn, outs)
        conn.last = self.monotonic()  # the session's duration ends here, not when its analyses end
        conn.reason = conn.reason or "client"  # fixed now: a stop() while analyses run must not relabel it
        conn.session = None  # a session can hold megabytes of reassembly buffers: let it go now
        # the connection no longer counts as open (sweeps, eviction, the per-source limit), even
        # while its session.closed waits for payload events
        self._activity.pop(conn, None)
        self._closing.pop(conn, None)
        n = self._per_source.get(ident.src_ip, 1) - 1
        if n > 0:
            self._per_source[ident.src_ip] = n
        else:
            self._per_source.pop(ident.src_ip, None)
        if not conn.pending:
            self._finish(conn)

    def _finish(self, conn: _Conn) -> None:
        """``session.closed``, the session's last event."""
        assert conn.ident is not None
        self._emit(conn.ident, "session.closed", {
            "reason": conn.reason or "client", "duration": round(max(0.0, conn.last - conn.started), 6),
            "bytes_in": conn.bytes_in, "bytes_out": conn.bytes_out,
        })
        self._live.pop(conn, None)
        if self._drained is not None and not self._live:
            self._drained.set()

    def _shut(self, conn: _Conn, reason: str, *, abort: bool) -> None:
        """Close ``conn``: ``abort`` drops unsent data at once (idle, limits, shutdown); otherwise
        the buffered replies are sent first and the sweep aborts it if the client never reads."""
        if conn.reason is None:
            conn.reason = reason
        transport = conn.transport
        assert transport is not None
        if not conn.closing:
            conn.closing = True
            self._activity.pop(conn, None)
            if not abort:
                self._closing[conn] = self.monotonic()
                transport.close()
                return
        if abort:
            self._closing.pop(conn, None)
            transport.abort()

    def _internal_error(self, conn: _Conn, where: str) -> None:
        """Called from an ``except`` block: log the bug, record it, close this connection only."""
        self.counters["internal_errors"] += 1
        sid = conn.ident.session if conn.ident else "?"
        log.exception("internal error in %s session %s (%s); the connection is closed", conn.service, sid, where)
        self._anomaly(conn, "internal_error", f"sensor bug in {where}; see the operator log for session {sid}")
        self._shut(conn, "anomaly", abort=True)

    def _anomaly(self, conn: _Conn, kind: str, detail: str) -> None:
        assert conn.ident is not None
        self._emit(conn.ident, "session.anomaly", {"kind": kind, "detail": detail})

    # -- events -----------------------------------------------------------------------------------
    def _emit_output(self, ident: Identity, out: Emit, conn: _Conn | None = None) -> None:
        fields = out.fields
        if out.payload is not None and out.event == "exploit.attempt":
            if self.payloads is not None:
                kept = self.payloads.keep(out.payload)
                digest, size = kept.sha256, kept.size
            else:
                digest, size = hashlib.sha256(out.payload).hexdigest(), len(out.payload)
            fields = {**fields, "payload_sha256": digest, "payload_size": size}
            self._emit(ident, out.event, fields)
            if self.analyser is not None and conn is not None:
                self._analyse(conn, ident, out.payload, digest)
            return
        self._emit(ident, out.event, fields)

    def _analyse(self, conn: _Conn, ident: Identity, payload: bytes, digest: str) -> None:
        """The payload's ``payload.shellcode`` / ``payload.offer`` events, from the worker thread
        (never on the loop); the session's ``session.closed`` waits for them."""
        analyser = self.analyser
        assert analyser is not None
        settle = self._hold(conn)

        def done(events: PayloadEvents) -> None:
            try:
                if conn.abandoned:
                    log.warning("payload events of session %s dropped: it was closed at shutdown", ident.session)
                    return
                for event, fields in events:
                    self._emit(ident, event, fields)
                    if event == "payload.offer" and self.downloader is not None and not self._stopping:
                        self._download(conn, ident, fields)
            finally:
                settle()

        try:
            analyser.submit(payload, done, digest)
        except Exception:  # a broken analyser costs the analysis, never the session
            log.exception("payload analysis of session %s could not be started", ident.session)
            settle()

    def _download(self, conn: _Conn, ident: Identity, offer: Mapping[str, Any]) -> None:
        """Fetch an offer (operator-enabled, stormwatch.sensor.download) in the downloader's worker
        and child process; its ``payload.file`` (stage ``download``) joins the exploit session,
        before that session's ``session.closed``. The bytes are stored here, on the loop, as the
        exploit payloads are (the payload store is not shared with threads)."""
        downloader = self.downloader
        assert downloader is not None
        settle = self._hold(conn)

        def done(got: Fetched | None) -> None:
            try:
                if got is None or conn.abandoned:  # cancelled: the sensor is stopping
                    return
                kept = self.payloads.keep(got.data) if self.payloads is not None and got.data else None
                self._emit(ident, "payload.file", file_fields(got, kept, ident.session))
            finally:
                settle()

        try:
            downloader.submit(offer, done)
        except Exception:  # a broken downloader costs the download, never the session
            log.exception("download for session %s could not be started", ident.session)
            settle()

    def _hold(self, conn: _Conn) -> Callable[[], None]:
        """Count one pending result for ``conn``; the function returned releases it (once only):
        the last release of a connection already gone emits its ``session.closed``."""
        conn.pending += 1
        released = False

        def settle() -> None:
            nonlocal released
            if released:
                return
            released = True
            conn.pending -= 1
            if conn.lost and not conn.pending and not conn.abandoned:
                self._finish(conn)

        return settle

    def _emit(self, ident: Identity, event: str, fields: Mapping[str, Any]) -> None:
        try:
            self.spool.emit(ident, event, fields)
        except Exception:  # a malformed Emit (a bug) must not take the connection's bookkeeping with it
            log.exception("event %s of session %s could not be recorded", event, ident.session)

    def _new_id(self) -> str:
        """128 random bits as 32 hex digits: unique for good, so ``session:seq`` keys never collide."""
        return f"{self.rng.getrandbits(128):032x}"

    # -- timers -------------------------------------------------------------------------------------
    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.tlimits.sweep_interval)
            self.sweep()

    def sweep(self) -> None:
        """Close sessions idle longer than ``idle_timeout`` or open longer than
        ``max_session_time``, and abort graceful closes the client never let drain."""
        now = self.monotonic()
        cut = now - self.limits.idle_timeout
        idle = []
        for conn in self._activity:
            if conn.last > cut:
                break
            idle.append(conn)
        for conn in idle:
            self.counters["idle"] += 1
            self._shut(conn, "idle", abort=True)
        cut = now - self.limits.max_session_time
        old = []
        for conn in self._live:
            if conn.started > cut:
                break
            if not conn.closing:
                old.append(conn)
        for conn in old:
            self.counters["lifetime"] += 1
            self._shut(conn, "lifetime", abort=True)
        cut = now - min(self.limits.idle_timeout, 10.0)
        stuck = []
        for conn, since in self._closing.items():
            if since > cut:
                break
            stuck.append(conn)
        for conn in stuck:
            self._shut(conn, conn.reason or "limit", abort=True)

    # -- UDP 137 ------------------------------------------------------------------------------------
    def _datagram(self, proto: _Nbns, data: bytes, addr: tuple[Any, int]) -> None:
        now = self.monotonic()
        src_ip, src_port = _addr(addr)
        window = int(now)
        if window != self._nbns_window:
            self._nbns_window, self._nbns_total = window, 0
            self._nbns_counts.clear()
        key = src_ip or "?"
        n = self._nbns_counts.get(key, 0)
        if (self._nbns_total >= self.tlimits.nbns_per_second or n >= self.tlimits.nbns_per_source
                or (n == 0 and len(self._nbns_counts) >= self.tlimits.nbns_per_second)):
            self.counters["nbns_dropped"] += 1
            return
        self._nbns_counts[key] = n + 1
        self._nbns_total += 1
        self.counters["nbns"] += 1
        assert proto.transport is not None
        dst_ip, dst_port = _addr(proto.transport.get_extra_info("sockname"))
        ident = Identity(self._new_id(), src_ip, src_port, dst_ip, dst_port, "udp")
        self._emit(ident, "session.connect", {"service": "nbns", "persona": self.persona.template})
        reply: bytes | None = None
        reason = "client"
        try:
            outs, reply = self.nbns_handler(data, self.persona, key)
        except Exception:
            self.counters["internal_errors"] += 1
            log.exception("internal error in nbns session %s", ident.session)
            detail = f"sensor bug; see the operator log for session {ident.session}"
            self._emit(ident, "session.anomaly", {"kind": "internal_error", "detail": detail})
            outs, reason = [], "anomaly"
        for out in outs:
            if isinstance(out, Emit):
                self._emit_output(ident, out)
        if reply:
            proto.transport.sendto(reply, addr)
        self._emit(ident, "session.closed", {"reason": reason, "duration": 0.0, "bytes_in": len(data),
                                             "bytes_out": len(reply or b"")})
