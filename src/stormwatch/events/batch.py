"""Building Arrow batches of events, and the record of a rejected input line.

Readers that work record by record append to an :class:`EventBatchBuilder`; readers that work
column-wise build the same Arrow schema (:func:`stormwatch.events.arrow_schema`) directly.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from stormwatch.events.catalogue import STORE_COLUMNS, arrow_schema, event_type

MAX_RAW = 1024  # bytes of a rejected record kept for the operator


@dataclass(frozen=True)
class Reject:
    """An input record that could not be turned into an event, kept with where it was."""

    source: str  # file path as given
    line: int  # line number (1-based) or packet number for captures
    reason: str
    raw: str  # the record's text, cut to MAX_RAW characters
    format: str

    @classmethod
    def make(cls, source: str, line: int, reason: str, raw: str | bytes, fmt: str) -> Reject:
        text = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw
        return cls(source, line, reason, text[:MAX_RAW], fmt)


_COLUMN_NAMES = tuple(f.name for f in STORE_COLUMNS)


def to_micros(ts: datetime) -> int:
    """Microseconds since the epoch; naive datetimes are taken as UTC."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class EventBatchBuilder:
    """Accumulates events row by row and hands them out as Arrow tables.

    ``key`` is the reader's identity of the record (usually its raw text): the store hashes it
    with the event type and sensor into ``event_id``, so re-reading the same record adds nothing.
    Genuinely repeated identical records within one input get an occurrence suffix here, so they
    are kept and still de-duplicated on a re-read.
    """

    def __init__(self, sensor: str) -> None:
        self.sensor = sensor
        self._cols: dict[str, list[Any]] = {n: [] for n in (*_COLUMN_NAMES, "schema_version", "data", "key")}
        self._seen: Counter[int] = Counter()  # hash of key -> times seen (bounded memory)

    def __len__(self) -> int:
        return len(self._cols["key"])

    def add(self, event: str, ts: datetime | int, key: str, **fields: Any) -> None:
        """Append one event. ``ts`` is a datetime (naive = UTC) or epoch microseconds.

        Column fields go to their columns, everything else to ``data``; a field unknown to the
        event type is a programming error (KeyError)."""
        et = event_type(event)
        h = hash(key)
        n = self._seen[h]
        self._seen[h] = n + 1
        cols = self._cols
        cols["event"].append(event)
        cols["ts"].append(ts if isinstance(ts, int) else to_micros(ts))
        cols["sensor"].append(self.sensor)
        cols["schema_version"].append(et.version)
        cols["key"].append(key if n == 0 else f"{key}\x00{n}")
        data: dict[str, Any] = {}
        for name in _COLUMN_NAMES[3:]:
            if name == "count":
                cols[name].append(fields.pop(name, 1))
            else:
                cols[name].append(fields.pop(name, None))
        for name, value in fields.items():
            if value is None:
                continue
            if et.field(name) is None:
                raise KeyError(f"{event} has no field {name!r}")
            data[name] = value
        cols["data"].append(json.dumps(data, separators=(",", ":"), sort_keys=True) if data else None)

    def take(self) -> pa.Table:
        """The accumulated events as a table of :func:`arrow_schema`; the builder is emptied."""
        schema = arrow_schema()
        arrays = [_array(self._cols[f.name], f.type) for f in schema]
        for v in self._cols.values():
            v.clear()
        return pa.Table.from_arrays(arrays, schema=schema)


def _array(values: list[Any], typ: pa.DataType) -> pa.Array:
    """``values`` as Arrow; strings holding lone surrogates (undecodable input bytes, JSON
    ``\\ud800`` escapes), which Arrow cannot store, are kept with those code points escaped
    rather than sinking the whole batch."""
    try:
        return pa.array(values, type=typ)
    except (UnicodeEncodeError, pa.ArrowInvalid):
        if typ != pa.string():
            raise
        return pa.array([_storable(v) for v in values], type=typ)


def _storable(v: Any) -> Any:
    if isinstance(v, str):
        return v.encode("utf-8", "backslashreplace").decode("utf-8")
    return v
