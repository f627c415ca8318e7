"""Analytics written once as SQL (DuckDB's dialect over ``events``) and run on DuckDB or Spark.

The store's DuckDB database is the default engine; a Spark session over the Parquet lake is the
other, for when one machine is not enough. The same SQL is transpiled with sqlglot for Spark; see
:mod:`stormwatch.analytics.engine` for that decision and :mod:`stormwatch.analytics.ports` for the
port report (SANS ISC / DShield definitions).
"""

from stormwatch.analytics.engine import DuckDBEngine, Engine, SparkEngine, local_spark_session
from stormwatch.analytics.ports import (
    PortDay,
    RankedPort,
    SourceSummary,
    latest_day,
    port_days,
    port_history,
    top_ports,
    top_sources,
)
from stormwatch.analytics.rollup import refresh as refresh_rollup
from stormwatch.analytics.trends import PortTrend, port_trends

__all__ = [
    "DuckDBEngine",
    "Engine",
    "PortDay",
    "PortTrend",
    "RankedPort",
    "SourceSummary",
    "SparkEngine",
    "latest_day",
    "local_spark_session",
    "port_days",
    "port_history",
    "port_trends",
    "refresh_rollup",
    "top_ports",
    "top_sources",
]
