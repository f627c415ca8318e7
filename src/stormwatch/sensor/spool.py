"""The sensor's spool: an append-only file of events, one JSON object per line, flushed per event.

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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from stormwatch.events import CATALOGUE, COMMON_FIELDS, event_type

log = logging.getLogger(__name__)

IDENTITY_KEYS = frozenset(f.name for f in COMMON_FIELDS) | {"seq"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Record = dict[str, Any]


@dataclass(slots=True)
class Identity:
    """Who a session's events belong to, as the transport saw it (never as the client said)."""

    session: str
    src_ip: str | None
    src_port: int | None
    dst_ip: str | None
    dst_port: int | None
    proto: str  # "tcp" or "udp"
    seq: int = 0  # number of the next event of this session


def iso_utc(seconds: float) -> str:
    """Epoch seconds → ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (microseconds, always six digits)."""
    whole, us = divmod(round(seconds * 1_000_000), 1_000_000)
    return f"{_iso_seconds(whole)}.{us:06d}Z"


@functools.lru_cache(maxsize=64)  # events come in bursts within the same second
def _iso_seconds(whole: int) -> str:
    return (_EPOCH + timedelta(seconds=whole)).strftime("%Y-%m-%dT%H:%M:%S")


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
        self._file: IO[bytes] | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # O_APPEND: every line lands at the end even if logrotate's copytruncate shortened the
            # file; 0o640 because events name attackers, not secrets, but are not for everyone.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            self._file = os.fdopen(fd, "ab", buffering=0)

    def emit(self, ident: Identity, event: str, fields: Mapping[str, Any]) -> Record:
        """Bind ``ident`` to one event, append it to the spool and hand it on; returns the record."""
        if event not in CATALOGUE:
            event_type(event)  # a bug in the emitter: KeyError naming the known types, nothing written
        record: Record = {
            "event": event, "ts": iso_utc(self.clock()), "sensor": self.sensor, "session": ident.session,
            "seq": ident.seq, "src_ip": ident.src_ip, "src_port": ident.src_port, "dst_ip": ident.dst_ip,
            "dst_port": ident.dst_port, "proto": ident.proto,
        }
        if ident.src_ip is None or ident.src_port is None or ident.dst_ip is None or ident.dst_port is None:
            record = {k: v for k, v in record.items() if v is not None}
        for k, v in fields.items():
            if v is None:
                continue
            if k in IDENTITY_KEYS:
                log.error("event %s of session %s tried to set identity field %r: dropped", event,
                          ident.session, k)
                continue
            record[k] = v
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=True).encode("ascii") + b"\n"
        ident.seq += 1
        self._write(line)
        if self.on_record is not None:
            self.on_record(record)
        return record

    def _write(self, line: bytes) -> None:
        if self._file is None:
            return
        try:
            # unbuffered: one write(2) per event, so a crash loses at most the event being written
            self._file.write(line)
            self.written += 1
        except OSError as exc:
            if self.dropped % 1000 == 0:
                log.error("spool %s: cannot write (%s); %d events dropped so far", self.path, exc, self.dropped + 1)
            self.dropped += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
