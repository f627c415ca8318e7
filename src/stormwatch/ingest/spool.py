"""The sensor's own spool (``stormwatch sensor`` writes it): JSON lines, one event per line.

Format (docs/sensor.md, "Events"; written by :mod:`stormwatch.sensor.spool`): every line is a JSON
object with the identity keys ``event``, ``ts`` (ISO 8601 UTC with ``Z``), ``sensor``,
``session``, ``seq``, ``src_ip``, ``src_port``, ``dst_ip``, ``dst_port``, ``proto``, followed by
the event type's own fields (catalogue: :mod:`stormwatch.events.sensor_types`).

Key: ``<session>:<seq>`` (:func:`stormwatch.events.records.record_key`), the same key the live
sensor gives the events it hands the store itself, so ingesting a spool the sensor already fed
into the store — or a longer copy of a spool read before — adds nothing twice. The sensor name
is the record's own (the sensor bound it); ``--sensor`` only fills in records without one.

A line that is not a valid event is a reject with its line number. A last line without its
newline that does not parse is a record cut mid-write (the sensor was killed, or the file was
copied while being written): everything before it is kept and :class:`TruncatedInput` is raised;
reading the file again later picks the line up once it is complete.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pyarrow as pa

from stormwatch.errors import InputError, TruncatedInput
from stormwatch.events import Reject, arrow_schema
from stormwatch.events.records import BadRecord, StoreFeed
from stormwatch.ingest.base import CHUNK_ROWS, Chunk, Reader, Source

FORMAT = "stormwatch-spool"
_SNIFF_KEYS = ("event", "session", "seq", "sensor")


class SensorSpoolReader(Reader):
    name = FORMAT
    description = "stormwatch sensor spool (JSON lines: session.*, smb.*, dcerpc.*, exploit.attempt …)"

    def sniff(self, head: bytes) -> bool:
        lines = head.split(b"\n")
        if len(lines) > 1:
            lines.pop()  # possibly cut short by the head's size
        seen = 0
        for line in lines[:5]:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                return False
            if not isinstance(obj, dict) or not all(k in obj for k in _SNIFF_KEYS) or \
                    not isinstance(obj.get("event"), str) or "." not in obj["event"]:
                return False
            seen += 1
        return seen > 0

    def read(self, src: Source) -> Iterator[Chunk]:
        feed = StoreFeed()
        chunk = Chunk(_empty())
        offset = lineno = 0
        with src.open() as f:
            try:
                for lineno, raw in enumerate(f, 1):
                    complete = raw.endswith(b"\n")
                    line = raw.rstrip(b"\r\n")
                    start, offset = offset, offset + len(raw)
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except ValueError as exc:
                        if not complete:
                            _finish(chunk, feed)
                            yield chunk
                            raise TruncatedInput(src.path, start, f"line {lineno} cut short") from exc
                        chunk.read += 1
                        chunk.rejects.append(_reject(src, lineno, f"not JSON: {exc}", line))
                        continue
                    chunk.read += 1
                    if isinstance(record, dict) and record.get("sensor") is None:
                        record["sensor"] = src.sensor
                    try:
                        if not isinstance(record, dict):
                            raise BadRecord("not a JSON object")
                        feed.add(record)
                    except BadRecord as exc:
                        chunk.rejects.append(_reject(src, lineno, str(exc), line))
                    if feed.pending >= CHUNK_ROWS:
                        _finish(chunk, feed)
                        yield chunk
                        chunk = Chunk(_empty())
            except (OSError, EOFError) as exc:  # a damaged gzip stream: keep what was read
                _finish(chunk, feed)
                yield chunk
                raise InputError(f"{src.path}: unreadable after line {lineno}: {exc}") from exc
        _finish(chunk, feed)
        yield chunk


def _finish(chunk: Chunk, feed: StoreFeed) -> None:
    table = feed.take()
    if table is not None:
        chunk.events = table


def _empty() -> pa.Table:
    return arrow_schema().empty_table()


def _reject(src: Source, lineno: int, reason: str, line: bytes) -> Reject:
    return Reject.make(src.path, lineno, reason, line, FORMAT)
