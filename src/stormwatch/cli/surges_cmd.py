"""``stormwatch surges``: rises of ports, exploits and source networks above their seasonal
baseline, with the sensors that agree; the method is in :mod:`stormwatch.analytics.surges`."""

from __future__ import annotations

import click

from stormwatch.analytics.surge_queries import KINDS
from stormwatch.analytics.surges import surge_report
from stormwatch.cli.options import db_option, engine_options, format_option, open_engine, parse_time
from stormwatch.cli.output import render

TABLE_COLUMNS = ["kind", "subject", "metric", "since", "detected_at", "baseline", "observed", "ratio", "agree",
                 "scope", "strength", "active", "note"]
JSON_COLUMNS = ["kind", "subject", "metric", "since", "detected_at", "baseline", "observed", "ratio", "strength",
                "threshold", "sensors", "sensors_total", "scope", "active", "method", "note"]


@click.command("surges")
@click.option("--until", default=None, help="End of the data to judge (YYYY-MM-DD, ISO date-time, today, -Nd) "
                                            "[default: newest event].")
@click.option("--days", type=click.IntRange(1, 365), default=30, show_default=True,
              help="Hours of history the series cover, in days (the baseline needs 7).")
@click.option("--kind", "kinds", type=click.Choice(KINDS), multiple=True,
              help="Kinds of subject (repeatable) [default: all].")
@click.option("--min-sensors", type=click.IntRange(1), default=2, show_default=True,
              help="Sensors that must agree for a surge to be 'agreed' rather than 'local'.")
@format_option
@engine_options
@db_option
def surges_cmd(until: str | None, days: int, kinds: tuple[str, ...], min_sensors: int, fmt: str,
               db_path: str | None, engine: str, lake: str | None) -> None:
    """Surges: hourly distinct sources per port, exploit and source /16 against a daily and
    weekly seasonal baseline, decided by a CUSUM test; how many sensors agree, and since when."""
    with open_engine(db_path, engine, lake) as eng:
        report = surge_report(eng, until=parse_time(until), days=days,
                              kinds=kinds or KINDS, min_sensors=min_sensors)
    rows = [s.as_dict() | {"agree": f"{s.sensors}/{s.sensors_total}"} for s in report.surges]
    if fmt == "table":
        if report.start is not None and report.until is not None:
            metrics = "/".join(sorted({str(r["metric"]) for r in rows}) or ["sources"])
            click.echo(f"surges from {report.start:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M} UTC, "
                       f"{report.sensors} sensors; baseline and observed in {metrics} per hour; "
                       f"agree = sensors agreeing / reporting; agreed needs >= {min_sensors}")
        for note in report.notes:
            click.echo(f"note: {note}")
    else:
        for note in report.notes:  # keep stdout parseable
            click.echo(f"note: {note}", err=True)
    click.echo(render(rows, fmt, TABLE_COLUMNS if fmt == "table" else JSON_COLUMNS))
