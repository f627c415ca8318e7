"""``stormwatch outbreak``: per exploit, the growth of its infected sources (Zou-style trend
decision, growth rate, doubling time, vulnerable population); with ``--series`` the binned series
behind it. Method and parameters: :mod:`stormwatch.analytics.growth`, docs/outbreak.md."""

from __future__ import annotations

import click

from stormwatch.analytics.outbreak import estimate_outbreaks, outbreak_series
from stormwatch.cli.options import db_option, engine_options, format_option, open_engine, parse_time
from stormwatch.cli.output import render

OUTBREAK_COLUMNS = ["subject", "decision", "decided_at", "sources", "sensors", "rate", "rate_stderr",
                    "doubling_hours", "population", "population_low", "population_high", "first_seen", "as_of"]
SERIES_COLUMNS = ["start", "end", "new_sources", "cumulative", "attempts", "alpha", "alpha_stderr", "rate",
                  "doubling_hours", "steady"]


@click.command("outbreak")
@click.argument("subject", required=False)
@click.option("--until", default=None, help="Use the data before this time (YYYY-MM-DD or ISO date-time, UTC) "
                                            "[default: all].")
@click.option("--series", is_flag=True, help="Print the binned series of SUBJECT (new and cumulative sources, "
                                             "growth estimate per bin).")
@format_option
@engine_options
@db_option
def outbreak_cmd(subject: str | None, until: str | None, series: bool, fmt: str, db_path: str | None,
                 engine: str, lake: str | None) -> None:
    """Growth of each exploit's infected sources: rate per hour, doubling time, vulnerable population
    and the early-warning decision (outbreak / growing / no-growth / insufficient-data). SUBJECT is a
    bulletin (MS06-040) or a destination port (445); without it, every exploit seen."""
    if series and subject is None:
        raise click.UsageError("--series needs a SUBJECT (e.g. MS06-040)")
    ts = parse_time(until)
    with open_engine(db_path, engine, lake) as eng:
        if series:
            assert subject is not None
            s = outbreak_series(eng, subject, until=ts)
            if s is None:
                click.echo(f"no data for {subject}", err=fmt != "table")
                if fmt == "json":
                    click.echo("[]")
                return
            ob = s.outbreak
            if fmt == "table":
                click.echo(f"{subject}: {ob.decision}, {ob.sources} sources, bins of {s.width_hours} h; alpha = growth "
                           "per bin (Kalman), rate = per hour")
                if ob.note:
                    click.echo(f"note: {ob.note}")
            click.echo(render([b.as_dict() for b in s.bins], fmt, SERIES_COLUMNS))
            return
        rows = estimate_outbreaks(eng, until=ts, subject=subject)
    if fmt == "table":
        click.echo("outbreak estimation: rate per hour, doubling in hours; population = vulnerable hosts these "
                   "sensors can see (95 % interval)")
        for o in rows:
            if o.note:
                click.echo(f"note ({o.subject}): {o.note}")
    columns = [*OUTBREAK_COLUMNS, "note"] if fmt == "json" else OUTBREAK_COLUMNS
    click.echo(render([o.as_dict() for o in rows], fmt, columns))
