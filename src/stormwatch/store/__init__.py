"""The store: one DuckDB file, a single batched writer, migrations and the Parquet lake."""

from stormwatch.store.db import Store, WriteResult, default_db_path
from stormwatch.store.lake import export_lake
from stormwatch.store.read import (
    count_rejects,
    db_summary,
    exploit_summary,
    list_events,
    list_rejects,
    list_sessions,
    payload_summary,
    session_summary,
)
from stormwatch.store.writer import BatchWriter

__all__ = [
    "BatchWriter",
    "Store",
    "WriteResult",
    "count_rejects",
    "db_summary",
    "default_db_path",
    "exploit_summary",
    "export_lake",
    "list_events",
    "list_rejects",
    "list_sessions",
    "payload_summary",
    "session_summary",
]
