"""Options shared by every command, and parsing of dates and times given on the command line."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from stormwatch.analytics import DuckDBEngine, Engine, SparkEngine
from stormwatch.cli.output import FORMATS
from stormwatch.errors import StormwatchError
from stormwatch.store import Store, default_db_path

F = TypeVar("F", bound=Callable[..., Any])


def db_option(f: F) -> F:
    return click.option(
        "--db", "db_path", type=click.Path(dir_okay=False), default=None,
        help=f"DuckDB store file [default: $STORMWATCH_DB or {default_db_path()}]",
    )(f)


def format_option(f: F) -> F:
    return click.option("--format", "fmt", type=click.Choice(FORMATS), default="table",
                        show_default=True, help="Output format.")(f)


def open_store(db_path: str | None, *, read_only: bool = False) -> Store:
    path = db_path or str(default_db_path())
    if read_only and path != ":memory:" and not Path(path).exists():
        raise click.ClickException(f"no store at {path} yet: ingest something first (`stormwatch ingest FILE --db "
                                   f"{path}`), or name another with --db")
    try:
        return Store(path, read_only=read_only)
    except StormwatchError as exc:
        raise click.ClickException(str(exc)) from exc


def parse_day(value: str | None) -> date | None:
    """``YYYY-MM-DD``, ``today``, ``yesterday`` or ``-Nd`` (N days before today, UTC)."""
    if value is None:
        return None
    today = datetime.now(UTC).date()
    v = value.strip().lower()
    if v == "today":
        return today
    if v == "yesterday":
        return today - timedelta(days=1)
    if v.startswith("-") and v.endswith("d") and v[1:-1].isdigit():
        return today - timedelta(days=int(v[1:-1]))
    try:
        return date.fromisoformat(v)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD, today, yesterday or -Nd)") from None


def parse_time(value: str | None) -> datetime | None:
    """A date (midnight UTC) or an ISO date-time (naive = UTC) → naive UTC datetime."""
    if value is None:
        return None
    try:
        ts = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        d = parse_day(value)
        assert d is not None
        return datetime(d.year, d.month, d.day)
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts


def engine_options(f: Any) -> Any:
    f = click.option("--engine", type=click.Choice(["duckdb", "spark"]), default="duckdb", show_default=True,
                     help="Run on the store (DuckDB) or on a Parquet lake with Spark local mode.")(f)
    return click.option("--lake", type=click.Path(file_okay=False), default=None,
                        help="Parquet lake directory for --engine spark (see `stormwatch export lake`).")(f)


@contextmanager
def open_engine(db_path: str | None, engine: str, lake: str | None) -> Iterator[Engine]:
    """The engine a command runs on: the store (DuckDB, read-only) or Spark local mode over a lake."""
    if engine == "spark":
        if not lake:
            raise click.UsageError("--engine spark needs --lake DIR (write one with `stormwatch export lake DIR`)")
        try:
            eng = SparkEngine(lake)
        except StormwatchError as exc:
            raise click.ClickException(str(exc)) from exc
        try:
            yield eng
        finally:
            eng.spark.stop()
        return
    with open_store(db_path, read_only=True) as store:
        yield DuckDBEngine(store)
