"""The engines that run the analytics: DuckDB on the store (default) and Apache Spark on the lake.

Decision: every analytic is written once, as SQL in DuckDB's dialect, over a relation named
``events`` (the store's table, see :mod:`stormwatch.store.migrations`). :class:`DuckDBEngine` runs
that SQL as it is on the store; :class:`SparkEngine` transpiles it with sqlglot
(``sqlglot.transpile(sql, read="duckdb", write="spark")``) and runs it over the Parquet lake written
by :func:`stormwatch.store.export_lake`, registered as the temporary view ``events``. Why: the SQL
stays readable and an analyst can paste it into ``duckdb`` by hand; the only extra dependency is
sqlglot (Ibis pins pyspark<4.1 and breaks with sqlglot>=30.18, measured here); DuckDB runs at full
speed with nothing in between.

Parameters: DuckDB and Spark SQL spell placeholders differently, so the engine substitutes
literals itself. A query names its parameters as ``{name}``; :func:`render` accepts only values it
renders itself (``int``, ``datetime.date``, ``datetime.datetime``) and refuses anything else, so no
caller's string is ever pasted into SQL.
"""

from __future__ import annotations

import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import sqlglot
import sqlglot.errors

from stormwatch.errors import EngineError
from stormwatch.store import Store

Param = int | date | datetime
Row = dict[str, Any]

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def render(sql: str, params: Mapping[str, Param] | None = None) -> str:
    """``sql`` with each ``{name}`` replaced by the SQL literal of ``params[name]``.

    Ints render as decimal digits, dates as ``DATE 'YYYY-MM-DD'``, datetimes (naive, UTC) as
    ``TIMESTAMP 'YYYY-MM-DD HH:MM:SS.ffffff'``. Any other type (``str`` included, ``bool`` too) and
    any missing or unused name is a programming error (TypeError / KeyError)."""
    params = dict(params or {})
    used: set[str] = set()

    def literal(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in params:
            raise KeyError(f"query parameter {name!r} not given")
        used.add(name)
        return _literal(params[name])

    out = _PLACEHOLDER.sub(literal, sql)
    unused = set(params) - used
    if unused:
        raise KeyError(f"query parameters not used: {', '.join(sorted(unused))}")
    return out


def _literal(value: object) -> str:
    # bool is an int subclass: refuse it rather than render True as 1
    if isinstance(value, bool):
        raise TypeError("bool is not a query parameter type")
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, datetime):  # before date: datetime is a date subclass
        if value.tzinfo is not None and value.utcoffset():
            raise TypeError("timestamps are UTC: pass a naive or UTC datetime")
        return f"TIMESTAMP '{value.replace(tzinfo=None).isoformat(sep=' ', timespec='microseconds')}'"
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    raise TypeError(f"{type(value).__name__} is not a query parameter type (int, date, datetime)")


class Engine(ABC):
    """Runs a query of :mod:`stormwatch.analytics.queries` and returns its rows as dicts.

    Values come back as Python ints, strings, ``datetime.date`` and naive UTC ``datetime``; callers
    normalise further (see :mod:`stormwatch.analytics.ports`)."""

    name: str

    def run(self, sql: str, params: Mapping[str, Param] | None = None) -> list[Row]:
        return self._execute(render(sql, params))

    @abstractmethod
    def _execute(self, sql: str) -> list[Row]: ...


class DuckDBEngine(Engine):
    """The default engine: the SQL runs unchanged on the store's DuckDB database."""

    name = "duckdb"

    def __init__(self, store: Store) -> None:
        self.store = store

    def _execute(self, sql: str) -> list[Row]:
        try:
            rows: list[Row] = self.store.query(sql).to_pylist()
        except duckdb.Error as exc:
            raise EngineError(f"duckdb query failed: {exc}") from exc
        return rows


def to_spark_sql(sql: str) -> str:
    """The Spark SQL text of a DuckDB-dialect query (sqlglot)."""
    try:
        (out,) = sqlglot.transpile(sql, read="duckdb", write="spark")
    except sqlglot.errors.SqlglotError as exc:
        raise EngineError(f"cannot transpile query to Spark SQL: {exc}") from exc
    return out


# Spark's own log4j profile prints INFO/WARN lines to the terminal; this one keeps errors only.
_LOG4J2 = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n
# pyspark's gateway counts as a Spark shell: unless its logger has the root's level, Spark prints
# "Setting default log level to WARN" at every start
logger.repl.name = org.apache.spark.api.python.PythonGatewayServer
logger.repl.level = error
"""


def local_spark_session(work_dir: str | Path | None = None, *, cores: int = 2) -> Any:
    """A local-mode Spark session set up for stormwatch: UTC session time zone, loopback only,
    no web UI, no progress bar, errors-only logging, warehouse and Derby home in ``work_dir`` (a
    fresh temporary directory when not given). Starting one takes several seconds: share it."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise EngineError("the Spark engine needs pyspark (pip install 'stormwatch[spark]')") from exc
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="stormwatch-spark-"))
    work.mkdir(parents=True, exist_ok=True)
    log4j = work / "log4j2.properties"
    log4j.write_text(_LOG4J2)
    # The driver binds to loopback only (the preamble: no traffic leaves the machine).
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    java_opts = f"-Dderby.system.home={work / 'derby'} -Dlog4j2.configurationFile=file:{log4j}"
    try:
        spark = (
            SparkSession.builder.master(f"local[{cores}]")
            .appName("stormwatch")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.sql.warehouse.dir", str(work / "warehouse"))
            .config("spark.driver.extraJavaOptions", java_opts)
            # a few hundred partitions of a small report only cost scheduling time in local mode
            .config("spark.sql.shuffle.partitions", str(max(4, cores * 2)))
            .getOrCreate()
        )
    except Exception as exc:
        raise EngineError(f"cannot start a local Spark session: {exc}") from exc
    spark.sparkContext.setLogLevel("ERROR")
    return spark


_SESSION_CONF = {"spark.sql.session.timeZone": "UTC", "spark.sql.parquet.inferTimestampNTZ.enabled": "true"}


class SparkEngine(Engine):
    """Runs the same SQL, transpiled to Spark SQL, over the Parquet lake in ``lake_dir``.

    The lake (``day=YYYY-MM-DD/`` partitions) is registered as the temporary view ``events``; its
    ``ts`` column is read as ``TIMESTAMP_NTZ`` (DuckDB writes Parquet timestamps that are not
    adjusted to UTC), so days and timestamps come back in UTC whatever the local time zone. Call
    :meth:`refresh` after exporting the lake again."""

    name = "spark"

    def __init__(self, lake_dir: str | Path, spark_session: Any = None) -> None:
        self.lake_dir = Path(lake_dir)
        self.spark = spark_session if spark_session is not None else local_spark_session()
        # Also on a session made elsewhere (a cluster's): days are UTC days, and ts must be read as
        # TIMESTAMP_NTZ, or collect() would shift it into the Python process's local time zone.
        for key, value in _SESSION_CONF.items():
            self.spark.conf.set(key, value)
        self.refresh()

    def refresh(self) -> None:
        """(Re)register the lake as the view ``events``."""
        if not self.lake_dir.is_dir() or not any(self.lake_dir.glob("day=*")):
            raise EngineError(f"no Parquet lake at {self.lake_dir} (write one with export_lake)")
        try:
            self.spark.read.parquet(str(self.lake_dir)).createOrReplaceTempView("events")
        except Exception as exc:
            raise EngineError(f"cannot read the lake at {self.lake_dir}: {exc}") from exc

    def _execute(self, sql: str) -> list[Row]:
        spark_sql = to_spark_sql(sql)
        try:
            rows = self.spark.sql(spark_sql).collect()
        except Exception as exc:
            raise EngineError(f"spark query failed: {exc}\n{spark_sql}") from exc
        return [r.asDict() for r in rows]
