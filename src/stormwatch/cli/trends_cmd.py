"""``stormwatch report trends``: the SANS ISC port trend (last 3 days against the last 30) and
Protocol Ratio Change; definitions in :mod:`stormwatch.analytics.trends`."""

from __future__ import annotations

import click

from stormwatch.analytics import DuckDBEngine, latest_day
from stormwatch.analytics.trends import MIN_RECORDS, baseline_note, data_days, port_trends
from stormwatch.cli.options import db_option, format_option, open_store, parse_day
from stormwatch.cli.output import render

TREND_COLUMNS = ["rank", "port", "records_3d", "records_30d", "records_ratio", "sources_3d", "sources_30d",
                 "sources_ratio", "targets_3d", "targets_30d", "targets_ratio", "tcp_3d", "tcp_30d", "prc",
                 "days", "sensors"]


@click.command("trends")
@click.option("--day", default=None, help="Last day of both windows (YYYY-MM-DD, today, yesterday, -Nd) "
                                          "[default: latest with data].")
@click.option("--by", type=click.Choice(["records", "sources", "targets"]), default="sources", show_default=True,
              help="Rank by the 3-day / 30-day ratio of this metric.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--min-records", type=click.IntRange(1), default=MIN_RECORDS, show_default=True,
              help="Leave out ports with fewer records in the last 3 days.")
@format_option
@db_option
def trends_cmd(day: str | None, by: str, limit: int, min_records: int, fmt: str, db_path: str | None) -> None:
    """Ports rising most: daily averages over the last 3 days against the last 30, and the Protocol
    Ratio Change (3-day minus 30-day average TCP ratio, in percentage points)."""
    with open_store(db_path, read_only=True) as store:
        eng = DuckDBEngine(store)
        d = parse_day(day) or latest_day(eng)
        if d is None:
            click.echo("no fw.connection events stored yet (see `stormwatch ingest`)")
            return
        rows = port_trends(eng, d, limit=limit, by=by, min_records=min_records)
        note = rows[0]["note"] if rows else baseline_note(data_days(eng, d))
    if fmt == "table":
        click.echo(f"port trends by {by} on {d}: daily averages over the last 3 days (3d) and 30 days (30d), "
                   f"ratio = 3d / 30d; tcp in % of records, prc in points; ports with >= {min_records} records")
        if note:
            click.echo(f"note: {note}")
    elif note:
        click.echo(f"note: {note}", err=True)  # keep stdout parseable; json rows carry the note too
    columns = [*TREND_COLUMNS, "note"] if fmt == "json" else TREND_COLUMNS
    click.echo(render([dict(r) for r in rows], fmt, columns))
