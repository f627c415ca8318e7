"""``stormwatch demo``: the main job end to end on the embedded default (DuckDB)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import click

from stormwatch.analytics import DuckDBEngine, latest_day, port_history, refresh_rollup, top_ports, top_sources
from stormwatch.cli.options import db_option, open_store
from stormwatch.cli.output import render
from stormwatch.cli.report_cmd import sources_rows
from stormwatch.collector import IngestSummary, ingest_paths
from stormwatch.demo import DemoPlan, generate
from stormwatch.demo.generate import SENSORS


@click.command()
@click.option("--workdir", type=click.Path(file_okay=False), default="var/demo", show_default=True,
              help="Where the generated logs are written.")
@click.option("--fresh/--keep", default=True, show_default=True,
              help="Start from an empty database (default) or add to an existing one.")
@db_option
def demo(workdir: str, fresh: bool, db_path: str | None) -> None:
    """Generate weeks of firewall logs from three sensors (July-August 2006, ending in the MS06-040
    bot surge on 139/445), ingest them, and print the port report with the surge."""
    db = Path(db_path or "var/demo.duckdb")
    if fresh:
        for p in (db, db.with_name(db.name + ".wal")):
            p.unlink(missing_ok=True)
    plan = DemoPlan()
    click.echo(f"== generating {plan.days} days of logs for sensors {', '.join(SENSORS)} in {workdir}")
    paths = generate(workdir, plan)
    click.echo(f"== ingesting into {db}")
    with open_store(str(db)) as store:
        for path, sensor in zip(paths, SENSORS, strict=True):
            ingest_paths(store, [str(path)], sensor=sensor, on_summary=_echo)
        refresh_rollup(store)
        eng = DuckDBEngine(store)
        day = latest_day(eng)
        assert day is not None
        before = day - timedelta(days=7)
        click.echo(f"\n== top ports on {before} (a week before the surge), by sources")
        click.echo(render([dict(r) for r in top_ports(eng, before, by="sources", limit=8)], "table",
                          ["rank", "port", "records", "targets", "sources", "tcp", "udp", "survival"]))
        click.echo(f"\n== top ports on {day} (MS06-040 bots scanning 139/445), by sources")
        click.echo(render([dict(r) for r in top_ports(eng, day, by="sources", limit=8)], "table",
                          ["rank", "port", "records", "targets", "sources", "tcp", "udp", "survival"]))
        click.echo("\n== port 139, last 10 days")
        click.echo(render([dict(r) for r in port_history(eng, 139, day - timedelta(days=9), day)], "table",
                          ["day", "records", "targets", "sources", "tcp", "udp", "survival"]))
        click.echo(f"\n== top sources on {day}")
        rows = sources_rows(list(top_sources(eng, day=day, limit=5)), "table")
        click.echo(render(rows, "table", ["rank", "src_ip", "records", "targets", "top_ports", "first_seen",
                                          "last_seen"]))
    click.echo(f"\nThe store is {db}; try: stormwatch report ports --db {db} --by sources")


def _echo(s: IngestSummary) -> None:
    click.echo(f"  {s.source}: format={s.format} read={s.read} accepted={s.accepted} rejected={s.rejected} "
               f"duplicates={s.duplicates} skipped={s.skipped}" + (f" ERROR {s.error}" if s.error else ""))
