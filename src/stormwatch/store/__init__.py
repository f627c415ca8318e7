"""The store: one DuckDB file, a single batched writer, migrations and the Parquet lake."""

from stormwatch.store.db import Store, WriteResult, default_db_path
from stormwatch.store.lake import export_lake
from stormwatch.store.writer import BatchWriter

__all__ = ["BatchWriter", "Store", "WriteResult", "default_db_path", "export_lake"]
