"""Both engines over the same data, for the tests that pin DuckDB and Spark to the same answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stormwatch.analytics import DuckDBEngine, SparkEngine
from stormwatch.store import Store, export_lake


def both_engines(store: Store, lake: Path, spark: Any) -> tuple[DuckDBEngine, SparkEngine]:
    """``store`` on DuckDB, and its Parquet lake (exported to ``lake`` here) on ``spark``."""
    assert export_lake(store, lake) > 0, "the parity test's store is empty"
    return DuckDBEngine(store), SparkEngine(lake, spark)
