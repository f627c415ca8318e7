"""The sensor's spool: an append-only file of events, one JSON object per line.

This is where the identity fields are bound. A :class:`~stormwatch.sensor.session.Session` emits an
event type and its own fields only; :meth:`Spool.emit` adds ``event``, ``ts`` (UTC, from the
injected clock), ``sensor``, ``session``, ``seq`` (the event's number within its session, from 0),
``src_ip``, ``src_port``, ``dst_ip``, ``dst_port`` and ``proto`` from the transport's
:class:`Identity`. A field of the same name coming from the session is dropped (and logged as a
bug): nothing derived from attacker input can overwrite identity.

Line layout (keys in this order, then the type's own fields; ``None`` values are left out)::

    {"event":"smb.negotiate","ts":"2006-08-13T10:21:07.123456Z","sensor":"hp1","session":"9f…",
     "seq":1,"src_ip":"192.0.2.7","src_port":1045,"dst_ip":"198.51.100.2","dst_port":445,
     "proto":"tcp","dialects":["NT LM 0.12"],"dialect":"NT LM 0.12",...}

``session`` + ``seq`` identify an event for good (session ids are 128 random bits), which is what
makes re-reading a spool into the store idempotent (:mod:`stormwatch.events.records`).
Strings are written with ``ensure_ascii``: attacker bytes that decoded to odd code points end up
as ``\\uXXXX`` escapes, never as raw control characters in the file.

Writes: by default one ``write(2)`` per event. A server calls :meth:`Spool.batch` with its event
loop's ``call_soon``: the lines of one loop iteration then go out in one ``write(2)`` at the start of
the next iteration, before the loop looks for (or waits for) more input, so an event is in the file
before the session's next bytes are read, and a crash loses at most one iteration's lines. (An
exploit session makes nine events; at a thousand sessions a second one write carries ~70 lines.)
Flushed means handed to the kernel, not fsync'ed: the spool survives the sensor dying, not the machine.

A failing disk does not stop the sensor: a write error is logged (once per burst) and counted in
:attr:`Spool.dropped`, and the event still reaches the in-process consumers (the store feed).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from stormwatch.events import CATALOGUE, COMMON_FIELDS, event_type

log = logging.getLogger(__name__)

IDENTITY_KEYS = frozenset(f.name for f in COMMON_FIELDS) | {"seq"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Lines held in a batch before they are written without waiting for the scheduled flush.
BATCH_MAX_LINES = 4096

Record = dict[str, Any]
Scheduler = Callable[[Callable[[], None]], object]

# One encoder for every line: json.dumps with non-default options builds a new one per call.
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode


@dataclass(slots=True)
class Identity:
    """Who a session's events belong to, as the transport saw it (never as the client said).
    The address fields are fixed once the first event is spooled (their JSON is kept)."""

    session: str
    src_ip: str | None
    src_port: int | None
    dst_ip: str | None
    dst_port: int | None
    proto: str  # "tcp" or "udp"
    seq: int = 0  # number of the next event of this session
    _json: tuple[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    def json_parts(self) -> tuple[str, str]:
        """``"session":…`` and ``,"src_ip":…,"proto":…`` (None fields left out), encoded once."""
        parts = self._json
        if parts is None:
            tail = {"src_ip": self.src_ip, "src_port": self.src_port, "dst_ip": self.dst_ip,
                    "dst_port": self.dst_port, "proto": self.proto}
            body = _encode({k: v for k, v in tail.items() if v is not None})
            parts = self._json = (_encode({"session": self.session})[1:-1], "," + body[1:-1])
        return parts


def iso_utc(seconds: float) -> str:
    """Epoch seconds → ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (microseconds, always six digits)."""
    whole, us = divmod(round(seconds * 1_000_000), 1_000_000)
    return f"{_iso_seconds(whole)}.{us:06d}Z"


@functools.lru_cache(maxsize=64)  # events come in bursts within the same second
def _iso_seconds(whole: int) -> str:
    return (_EPOCH + timedelta(seconds=whole)).strftime("%Y-%m-%dT%H:%M:%S")


@functools.lru_cache(maxsize=256)  # the catalogue's names: a few dozen
def _event_json(event: str) -> str:
    return '{"event":' + _encode(event) + ',"ts":"'


class Spool:
    """Appends events to ``path`` (``None``: keep no file, only hand records to ``on_record``)."""

    def __init__(self, path: Path | str | None, sensor: str, *, clock: Callable[[], float] = time.time,
                 on_record: Callable[[Record], None] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.sensor = sensor
        self.clock = clock
        self.on_record = on_record
        self.written = 0
        self.dropped = 0
        self._sensor_json = '","sensor":' + _encode(sensor) + ","
        self._file: IO[bytes] | None = None
        self._pending: list[str] = []
        self._schedule: Scheduler | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # O_APPEND: every line lands at the end even if logrotate's copytruncate shortened the
            # file; 0o640 because events name attackers, not secrets, but are not for everyone.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            self._file = os.fdopen(fd, "ab", buffering=0)

    def emit(self, ident: Identity, event: str, fields: Mapping[str, Any]) -> None:
        """Bind ``ident`` to one event, append it to the spool and hand it to ``on_record``."""
        if event not in CATALOGUE:
            event_type(event)  # a bug in the emitter: KeyError naming the known types, nothing written
        own = {k: v for k, v in fields.items() if v is not None}
        if not IDENTITY_KEYS.isdisjoint(own):
            for k in IDENTITY_KEYS.intersection(own):
                log.error("event %s of session %s tried to set identity field %r: dropped", event,
                          ident.session, k)
                del own[k]
        ts = iso_utc(self.clock())
        seq = ident.seq
        session, tail = ident.json_parts()
        body = _encode(own)
        # the line is the identity (encoded once per session) followed by the event's own fields
        self._pending.append(f'{_event_json(event)}{ts}{self._sensor_json}{session},"seq":{seq}{tail}'
                             f'{"," + body[1:] if len(body) > 2 else "}"}\n')
        ident.seq = seq + 1
        if self._schedule is None or len(self._pending) >= BATCH_MAX_LINES:
            self.flush()
        elif len(self._pending) == 1:
            self._schedule(self.flush)
        if self.on_record is not None:
            record: Record = {
                "event": event, "ts": ts, "sensor": self.sensor, "session": ident.session, "seq": seq,
                "src_ip": ident.src_ip, "src_port": ident.src_port, "dst_ip": ident.dst_ip,
                "dst_port": ident.dst_port, "proto": ident.proto,
            }
            if None in (ident.src_ip, ident.src_port, ident.dst_ip, ident.dst_port):
                record = {k: v for k, v in record.items() if v is not None}
            record.update(own)
            self.on_record(record)

    def batch(self, schedule: Scheduler | None) -> None:
        """Write the lines of an event-loop iteration at once: ``schedule(self.flush)`` is called
        when a batch starts (pass ``loop.call_soon``); ``None`` writes each event at once again.
        Either way, what is held is written first."""
        self.flush()
        self._schedule = schedule

    def flush(self) -> None:
        """Hand the lines held to the kernel in one write."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        if self._file is None:
            return
        try:
            data = memoryview("".join(pending).encode("ascii"))
            while data:  # a regular file takes it whole; a short write goes on where it stopped
                data = data[self._file.write(data):]
            self.written += len(pending)
        except OSError as exc:
            if self.dropped // 1000 != (self.dropped + len(pending)) // 1000 or not self.dropped:
                log.error("spool %s: cannot write (%s); %d events dropped so far", self.path, exc,
                          self.dropped + len(pending))
            self.dropped += len(pending)

    def close(self) -> None:
        self.flush()
        self._schedule = None
        if self._file is not None:
            self._file.close()
            self._file = None
