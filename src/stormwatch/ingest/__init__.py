"""Ingestion: readers that turn each external format (firewall logs, flow records, IDS logs,
packet captures) into events. See ``docs/ingest.md`` for the formats."""

from stormwatch.ingest.base import Chunk, LineReader, Reader, RecordError, Source, source_for
from stormwatch.ingest.registry import FORMATS, READERS, detect, reader_for

__all__ = [
    "FORMATS",
    "READERS",
    "Chunk",
    "LineReader",
    "Reader",
    "RecordError",
    "Source",
    "detect",
    "reader_for",
    "source_for",
]
