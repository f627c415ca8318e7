"""``stormwatch report``: the SANS ISC / DShield-style port report."""

from __future__ import annotations

from typing import Any

import click

from stormwatch.analytics import latest_day, port_history, top_ports, top_sources
from stormwatch.cli.options import db_option, engine_options, format_option, open_engine, parse_day
from stormwatch.cli.output import render

PORT_COLUMNS = ["rank", "port", "records", "targets", "sources", "tcp", "udp", "survival"]
HISTORY_COLUMNS = ["day", "records", "targets", "sources", "tcp", "udp", "survival"]
SOURCE_COLUMNS = ["rank", "src_ip", "records", "targets", "ports", "top_ports", "first_seen", "last_seen"]


def sources_rows(rows: list[Any], fmt: str) -> list[dict[str, Any]]:
    """Top-source rows for printing: outside JSON, the port list becomes `port(records) ...`."""
    out = [dict(r) for r in rows]
    if fmt != "json":
        for r in out:
            r["top_ports"] = " ".join(f"{p['port']}({p['records']})" for p in r["top_ports"])
    return out


@click.group()
def report() -> None:
    """Port report with the SANS ISC definitions: records, targets, sources, TCP/UDP %, survival."""


@report.command("ports")
@click.option("--day", default=None, help="Day (YYYY-MM-DD, today, yesterday, -Nd) [default: latest with data].")
@click.option("--by", type=click.Choice(["records", "sources", "targets"]), default="records", show_default=True)
@click.option("--limit", type=click.IntRange(1, 10_000), default=10, show_default=True)
@format_option
@engine_options
@db_option
def ports_cmd(day: str | None, by: str, limit: int, fmt: str, engine: str, lake: str | None,
              db_path: str | None) -> None:
    """Top ports of one day by records, sources or targets."""
    with open_engine(db_path, engine, lake) as eng:
        d = parse_day(day) or latest_day(eng)
        if d is None:
            click.echo("no fw.connection events stored yet (see `stormwatch ingest`)")
            return
        rows = top_ports(eng, d, by=by, limit=limit)
    if fmt == "table":
        click.echo(f"top {limit} ports by {by} on {d} (survival in seconds; tcp/udp in % of records)")
    click.echo(render([dict(r) for r in rows], fmt, PORT_COLUMNS if fmt == "table" else None))


@report.command("port")
@click.argument("port", type=click.IntRange(0, 65535))
@click.option("--since", default=None, help="First day (YYYY-MM-DD) [default: all].")
@click.option("--until", default=None, help="Last day, inclusive (YYYY-MM-DD) [default: all].")
@format_option
@engine_options
@db_option
def port_cmd(port: int, since: str | None, until: str | None, fmt: str, engine: str, lake: str | None,
             db_path: str | None) -> None:
    """One port's daily history."""
    with open_engine(db_path, engine, lake) as eng:
        rows = port_history(eng, port, parse_day(since), parse_day(until))
    if fmt == "table":
        click.echo(f"port {port}: daily history")
    click.echo(render([dict(r) for r in rows], fmt, HISTORY_COLUMNS if fmt == "table" else None))


@report.command("sources")
@click.option("--day", default=None, help="One day [default: latest with data, unless --since].")
@click.option("--since", default=None, help="From this day on (instead of one day).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=10, show_default=True)
@format_option
@engine_options
@db_option
def sources_cmd(day: str | None, since: str | None, limit: int, fmt: str, engine: str, lake: str | None,
                db_path: str | None) -> None:
    """Top source addresses by records, with their ports and first/last seen."""
    with open_engine(db_path, engine, lake) as eng:
        since_d = parse_day(since)
        d = parse_day(day) or (None if since_d else latest_day(eng))
        rows = top_sources(eng, day=d, since=since_d, limit=limit)
    if fmt == "table":
        click.echo(f"top {limit} sources {'on ' + str(d) if d else 'since ' + str(since_d)}")
    click.echo(render(sources_rows(list(rows), fmt), fmt, SOURCE_COLUMNS if fmt == "table" else None))


from stormwatch.cli.trends_cmd import trends_cmd  # noqa: E402

report.add_command(trends_cmd)
