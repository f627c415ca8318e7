"""Spooled sensor events → Arrow batches of :func:`stormwatch.events.arrow_schema`.

One conversion serves both paths into the store, so that they agree to the byte:

* live: the running sensor hands every record it spools to a :class:`StoreFeed`, whose batches the
  CLI passes to the single :class:`~stormwatch.store.BatchWriter`;
* offline: ``stormwatch ingest spool.jsonl`` (:mod:`stormwatch.ingest.spool`) reads the spool back.

The de-duplication key is ``<session>:<seq>``: session ids are random 128-bit values drawn per
connection and ``seq`` numbers a session's events from 0, so the key names one event for good.
Re-reading a spool — or a copy of it that has since grown — after the live feed stored it adds
nothing twice. The sensor name comes from the record (the sensor bound it), not from the reader.

:func:`check_record` validates a record completely *before* anything is appended to a builder:
a spool is a file on disk and may have been edited or damaged, and a half-appended row would
misalign the builder's columns.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from stormwatch.events.batch import EventBatchBuilder
from stormwatch.events.catalogue import event_type
from stormwatch.events.fields import FieldType

# The identity keys every spooled record has; everything else is the event type's own fields.
_IDENTITY = ("event", "ts", "sensor", "session", "seq", "src_ip", "src_port", "dst_ip", "dst_port", "proto")
_MAX_TEXT = 256  # identity strings (sensor name, session id, proto) are short; anything longer is damage


class BadRecord(ValueError):
    """A spool record that cannot be an event; the message says why."""


def record_key(record: Mapping[str, Any]) -> str:
    """The store's de-duplication key of a spooled event."""
    return f"{record['session']}:{record['seq']}"


def check_record(record: Mapping[str, Any]) -> tuple[str, int, dict[str, Any]]:
    """``(sensor, ts in epoch microseconds, fields for EventBatchBuilder.add)`` of a spool record;
    :class:`BadRecord` names the first thing wrong with it."""
    name = record.get("event")
    if not isinstance(name, str):
        raise BadRecord("no event type")
    types = _field_types(name)
    if types is None:
        raise BadRecord(f"unknown event type {name[:64]!r}")
    sensor = _text(record, "sensor")
    session = _text(record, "session")
    seq = record.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise BadRecord(f"seq is not a non-negative integer: {str(seq)[:32]!r}")
    if sensor is None or session is None:
        raise BadRecord("sensor or session missing")
    ts = _micros(record.get("ts"))
    fields: dict[str, Any] = {
        "session": session,
        "src_ip": _ip(record, "src_ip"), "src_port": _port(record, "src_port"),
        "dst_ip": _ip(record, "dst_ip"), "dst_port": _port(record, "dst_port"),
        "proto": _text(record, "proto"),
    }
    for k, v in record.items():
        if k in _IDENTITY or v is None:
            continue
        t = types.get(k)
        if t is None:
            raise BadRecord(f"{name} has no field {k[:64]!r}")
        if not _fits(t, v):
            raise BadRecord(f"{name}.{k} is not of type {t}: {str(v)[:32]!r}")
        fields[k] = v
    return sensor, ts, fields


class StoreFeed:
    """Collects spooled records into Arrow batches (one builder per sensor name)."""

    def __init__(self) -> None:
        self._builders: dict[str, EventBatchBuilder] = {}
        self.pending = 0

    def add(self, record: Mapping[str, Any]) -> None:
        """Add one record; :class:`BadRecord` if it cannot be an event (nothing is added then)."""
        sensor, ts, fields = check_record(record)
        b = self._builders.get(sensor)
        if b is None:
            b = self._builders[sensor] = EventBatchBuilder(sensor)
        b.add(str(record["event"]), ts, record_key(record), **fields)
        self.pending += 1

    def take(self) -> pa.Table | None:
        """Everything added since the last call as one table, or None if nothing was."""
        if not self.pending:
            return None
        tables = [b.take() for b in self._builders.values() if len(b)]
        self.pending = 0
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)

    def sink(self) -> Callable[[Mapping[str, Any]], None]:
        """``add`` as the spool's ``on_record`` callback."""
        return self.add


def _text(record: Mapping[str, Any], key: str) -> str | None:
    v = record.get(key)
    if v is None:
        return None
    if not isinstance(v, str) or not v or len(v) > _MAX_TEXT:
        raise BadRecord(f"{key} is not a short string: {str(v)[:32]!r}")
    return v


@functools.lru_cache(maxsize=256)
def _field_types(event: str) -> dict[str, FieldType] | None:
    """The event type's own fields and their types (cached: this runs for every live event)."""
    try:
        return {f.name: f.type for f in event_type(event).fields}
    except KeyError:
        return None


def _ip(record: Mapping[str, Any], key: str) -> str | None:
    v = _text(record, key)
    if v is None:
        return None
    ip = _canonical_ip(v)
    if ip is None:
        raise BadRecord(f"{key} is not an IP address: {v[:64]!r}")
    return ip


@functools.lru_cache(maxsize=1 << 14)  # attackers and the sensor's own address repeat
def _canonical_ip(v: str) -> str | None:
    try:
        return ipaddress.ip_address(v).compressed
    except ValueError:
        return None


def _port(record: Mapping[str, Any], key: str) -> int | None:
    v = record.get(key)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 65535:
        raise BadRecord(f"{key} is not a port: {str(v)[:32]!r}")
    return v


_MIN_YEAR, _MAX_YEAR = 1970, 2200


def _micros(v: Any) -> int:
    if not isinstance(v, str) or len(v) > 40:
        raise BadRecord(f"ts is not a timestamp: {str(v)[:40]!r}")
    # fast path for what the spool writes, YYYY-MM-DDTHH:MM:SS.ffffffZ: the whole seconds repeat
    if len(v) == 27 and v[19] == "." and v[26] == "Z" and v[20:26].isdigit():
        seconds = _whole_seconds(v[:19])
        if seconds is not None:
            return seconds * 1_000_000 + int(v[20:26])
    try:
        ts = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise BadRecord(f"ts is not a timestamp: {v!r}") from None
    if ts.tzinfo is None or ts.utcoffset() is None or not _MIN_YEAR <= ts.year < _MAX_YEAR:
        raise BadRecord(f"ts is not a UTC time between {_MIN_YEAR} and {_MAX_YEAR}: {v!r}")
    return int(ts.timestamp()) * 1_000_000 + ts.microsecond


@functools.lru_cache(maxsize=4096)
def _whole_seconds(text: str) -> int | None:
    """``YYYY-MM-DDTHH:MM:SS`` as UTC → epoch seconds, or None (then the slow path says why)."""
    try:
        ts = datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        return None
    if "T" not in text or not _MIN_YEAR <= ts.year < _MAX_YEAR:
        return None
    return int(ts.timestamp())


def _fits(t: FieldType, v: Any) -> bool:
    if t in (FieldType.STRING, FieldType.IP):
        return isinstance(v, str)
    if t in (FieldType.INT, FieldType.PORT):
        return isinstance(v, int) and not isinstance(v, bool)
    if t is FieldType.FLOAT:
        return isinstance(v, int | float) and not isinstance(v, bool)
    if t is FieldType.BOOL:
        return isinstance(v, bool)
    if t is FieldType.JSON:
        return isinstance(v, list | dict)
    return False  # TIMESTAMP: no event type has a timestamp data field
