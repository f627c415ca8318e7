"""The collector: takes events from readers (and, later, sensor spools) into the store."""

from stormwatch.collector.ingest import IngestSummary, ingest_paths

__all__ = ["IngestSummary", "ingest_paths"]
