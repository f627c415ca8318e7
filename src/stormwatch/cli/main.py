"""The ``stormwatch`` command line. Every command is a thin shell over a library function."""

from __future__ import annotations

import json
import sys

import click

from stormwatch import __version__
from stormwatch.analytics import refresh_rollup
from stormwatch.cli.advisory_cmd import advisory_cmd
from stormwatch.cli.attack_cmd import attacks
from stormwatch.cli.campaign_cmd import campaign_cmd, campaigns_cmd
from stormwatch.cli.demo_cmd import demo
from stormwatch.cli.export_cmd import EXPORT_COMMANDS
from stormwatch.cli.kb_cmd import kb
from stormwatch.cli.level_cmd import level_cmd
from stormwatch.cli.notify_cmd import notify
from stormwatch.cli.options import db_option, format_option, open_store, parse_day, parse_time
from stormwatch.cli.outbreak_cmd import outbreak_cmd
from stormwatch.cli.output import render
from stormwatch.cli.payload_cmd import payload
from stormwatch.cli.report_cmd import report
from stormwatch.cli.scanners_cmd import scanners_cmd
from stormwatch.cli.sensor_cmd import sensor
from stormwatch.cli.serve_cmd import serve
from stormwatch.cli.surges_cmd import surges_cmd
from stormwatch.collector import IngestSummary, ingest_paths
from stormwatch.errors import StormwatchError
from stormwatch.ingest import FORMATS as INPUT_FORMATS
from stormwatch.store import db_summary, export_lake, list_events, list_rejects


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="stormwatch")
def cli() -> None:
    """stormwatch: a self-hosted Internet threat early-warning system."""


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--format", "input_format", type=click.Choice(list(INPUT_FORMATS)), default=None,
              help="Input format [default: detected per file].")
@click.option("--sensor", default=None, help="Sensor name stamped on the events [default: local].")
@click.option("--output", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="How to print the per-file summary.")
@db_option
def ingest(paths: tuple[str, ...], input_format: str | None, sensor: str | None, output: str,
           db_path: str | None) -> None:
    """Read firewall logs, flow/IDS logs and packet captures into the store.

    Prints, per input, records read, accepted, rejected (kept: see `stormwatch rejects`),
    duplicates (already stored), skipped (not records, e.g. other programs' syslog lines) and the
    time range. Exits 1 if any input could not be read completely."""
    with open_store(db_path) as store:
        try:
            summaries = ingest_paths(store, paths, fmt=input_format, sensor=sensor,
                                     on_summary=None if output == "json" else _print_summary)
            refresh_rollup(store)
        except StormwatchError as exc:
            raise click.ClickException(str(exc)) from exc
    if output == "json":
        click.echo(json.dumps([s.as_dict() for s in summaries], indent=1))
    failed = [s for s in summaries if s.error]
    for s in failed:
        click.echo(f"error: {s.error}", err=True)
    if failed:
        sys.exit(1)


def _print_summary(s: IngestSummary) -> None:
    span = f"{s.first_ts:%Y-%m-%d %H:%M:%S} .. {s.last_ts:%Y-%m-%d %H:%M:%S}" if s.first_ts and s.last_ts else "-"
    click.echo(f"{s.source}: format={s.format or '?'} read={s.read} accepted={s.accepted} "
               f"rejected={s.rejected} duplicates={s.duplicates} skipped={s.skipped} time={span}")


@cli.command()
@click.option("--type", "event_type", default=None, help="Event type, e.g. fw.connection.")
@click.option("--since", default=None, help="From this date or ISO time (UTC).")
@click.option("--until", default=None, help="Before this date or ISO time (UTC).")
@click.option("--src", default=None, help="Source address.")
@click.option("--port", "dst_port", type=click.IntRange(0, 65535), default=None, help="Destination port.")
@click.option("--sensor", default=None, help="Sensor name.")
@click.option("--limit", type=click.IntRange(0, 100_000), default=50, show_default=True)
@format_option
@db_option
def events(event_type: str | None, since: str | None, until: str | None, src: str | None,
           dst_port: int | None, sensor: str | None, limit: int, fmt: str, db_path: str | None) -> None:
    """List stored events of any type, newest first."""
    with open_store(db_path, read_only=True) as store:
        rows = list_events(store, event=event_type, since=parse_time(since), until=parse_time(until),
                           src=src, dst_port=dst_port, sensor=sensor, limit=limit)
    if fmt != "json":
        for r in rows:
            r["data"] = json.dumps(r["data"], sort_keys=True) if r["data"] else ""
    click.echo(render(rows, fmt, ["ts", "event", "sensor", "src_ip", "src_port", "dst_ip", "dst_port",
                                  "proto", "tcp_flags", "action", "outcome", "count", "session", "data"]))


@cli.command()
@click.option("--source", default=None, help="Only rejects from this input path.")
@click.option("--limit", type=click.IntRange(0, 100_000), default=100, show_default=True)
@format_option
@db_option
def rejects(source: str | None, limit: int, fmt: str, db_path: str | None) -> None:
    """List the input records that could not be used, with file, line and reason."""
    with open_store(db_path, read_only=True) as store:
        rows = list_rejects(store, source=source, limit=limit)
    click.echo(render(rows, fmt, ["source", "line", "format", "reason", "raw"]))


@cli.command()
@format_option
@db_option
def db(fmt: str, db_path: str | None) -> None:
    """Show the store: path, migrations, events per type, rejects."""
    with open_store(db_path, read_only=True) as store:
        info = db_summary(store)
    if fmt == "json":
        click.echo(json.dumps(info, default=str, indent=1))
        return
    click.echo(f"store: {info['path']}")
    click.echo(f"migrations: {', '.join(info['migrations'])}")
    click.echo(f"rejects: {info['rejects']}   ingest runs: {info['ingest_runs']}")
    click.echo(render(info["events"], "table", ["event", "n", "first", "last"]))


@cli.command()
def formats() -> None:
    """List the input formats `stormwatch ingest` reads."""
    rows = [{"format": r.name, "description": r.description} for r in INPUT_FORMATS.values()]
    click.echo(render(rows, "table"))


@cli.group()
def export() -> None:
    """Export stored data."""


@export.command("lake")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--since", default=None, help="Only events from this date (YYYY-MM-DD).")
@db_option
def export_lake_cmd(out_dir: str, since: str | None, db_path: str | None) -> None:
    """Write the events as a Parquet lake partitioned by day (OUT_DIR/day=YYYY-MM-DD/)."""
    with open_store(db_path, read_only=True) as store:
        try:
            n = export_lake(store, out_dir, since=parse_day(since))
        except StormwatchError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {n} events to {out_dir}")


for _command in EXPORT_COMMANDS:
    export.add_command(_command)
cli.add_command(report)
cli.add_command(demo)
cli.add_command(sensor)
cli.add_command(kb)
cli.add_command(level_cmd)
cli.add_command(advisory_cmd)
cli.add_command(surges_cmd)
cli.add_command(scanners_cmd)
cli.add_command(outbreak_cmd)
cli.add_command(campaigns_cmd)
cli.add_command(campaign_cmd)
cli.add_command(payload)
cli.add_command(attacks)
cli.add_command(notify)
cli.add_command(serve)


def main() -> None:
    cli(prog_name="stormwatch")
