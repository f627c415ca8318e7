"""Ingest files into the store: detect each file's format, read it, write events and rejects
through the single batched writer, and record a summary per file."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from stormwatch.errors import InputError
from stormwatch.ingest import detect, reader_for, source_for
from stormwatch.store import BatchWriter, Store, WriteResult

DEFAULT_SENSOR = "local"


@dataclass
class IngestSummary:
    """What ingesting one input did."""

    source: str
    format: str | None
    read: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    skipped: int = 0
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("first_ts", "last_ts"):
            if d[k] is not None:
                d[k] = d[k].isoformat()
        return d


def ingest_paths(store: Store, paths: Iterable[str], *, fmt: str | None = None,
                 sensor: str | None = None,
                 on_summary: Callable[[IngestSummary], None] | None = None) -> list[IngestSummary]:
    """Ingest every path; an input that fails gets its error in its summary (after whatever was
    readable before the damage was stored) and the others still run."""
    summaries = []
    with BatchWriter(store) as writer:
        for path in paths:
            summary = _ingest_one(store, writer, path, fmt, sensor or DEFAULT_SENSOR)
            summaries.append(summary)
            if on_summary:
                on_summary(summary)
    return summaries


def _ingest_one(store: Store, writer: BatchWriter, path: str, fmt: str | None,
                sensor: str) -> IngestSummary:
    started = datetime.now(UTC).replace(tzinfo=None)
    summary = IngestSummary(path, fmt)
    before = _copy(writer.flush())
    src = None
    try:
        src = source_for(path, sensor)
        reader = reader_for(fmt) if fmt else detect(src)
        summary.format = reader.name
        for chunk in reader.read(src):
            summary.read += chunk.read
            summary.skipped += chunk.skipped
            summary.rejected += len(chunk.rejects)
            _widen(summary, chunk.events)
            writer.put(chunk.events)
            store.write_rejects(chunk.rejects)
    except InputError as exc:
        summary.error = str(exc)
    if src is not None and summary.format == "pcap":  # and its SMB/DCE-RPC through the sensor's detectors
        from stormwatch.collector.attack_events import attack_event_table
        from stormwatch.collector.multistage import follow_attacks
        from stormwatch.collector.replay import payload_dir_beside, replay_capture

        payload_dir = payload_dir_beside(store.path)
        replayed: list[pa.Table] = []
        for events in replay_capture(src, payload_dir):
            _widen(summary, events)
            writer.put(events)
            replayed.append(events.filter(pc.equal(events.column("event"), "exploit.attempt")))
        # then follow each exploit into its later stages (shell, FTP, rebuilt download)
        stages = attack_event_table(follow_attacks(path, replayed, payload_dir), sensor)
        if stages is not None:
            _widen(summary, stages)
            writer.put(stages)
    after = writer.flush()
    summary.accepted = after.inserted - before.inserted
    summary.duplicates = after.duplicates - before.duplicates
    delta = WriteResult(after.offered - before.offered, summary.accepted, summary.first_ts, summary.last_ts)
    store.record_run(path, summary.format, sensor, started, summary.read, delta, summary.rejected,
                     summary.error)
    return summary


def _widen(summary: IngestSummary, events: pa.Table) -> None:
    if events.num_rows == 0:
        return
    lo, hi = (v.as_py() for v in pc.min_max(events.column("ts")).values())
    summary.first_ts = lo if summary.first_ts is None else min(summary.first_ts, lo)
    summary.last_ts = hi if summary.last_ts is None else max(summary.last_ts, hi)


def _copy(r: WriteResult) -> WriteResult:
    return WriteResult(r.offered, r.inserted, r.first_ts, r.last_ts)
