"""``stormwatch demo``: the main job end to end on the embedded default (DuckDB): generated
firewall logs ingested, then the honeypot sensor attacked live over loopback (bots driven through
impacket, :mod:`stormwatch.demo.live`), then the port report, what the honeypot saw, and the early
warning: surges, scanners, outbreak, campaigns, the threat level rising and the MS06-040 advisory."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from stormwatch.analytics import DuckDBEngine, latest_day, port_history, refresh_rollup, top_ports, top_sources
from stormwatch.cli.demo_warning import early_warning
from stormwatch.cli.options import db_option, open_store
from stormwatch.cli.output import render
from stormwatch.cli.report_cmd import sources_rows
from stormwatch.collector import IngestSummary, ingest_paths
from stormwatch.demo import DemoPlan, generate
from stormwatch.demo.generate import SENSORS
from stormwatch.store import Store, exploit_summary, list_events, list_sessions, payload_summary, session_summary

if TYPE_CHECKING:
    from stormwatch.demo.live import LiveResult


@click.command()
@click.option("--workdir", type=click.Path(file_okay=False), default="var/demo", show_default=True,
              help="Where the generated logs are written.")
@click.option("--fresh/--keep", default=True, show_default=True,
              help="Start from an empty database (default) or add to an existing one.")
@click.option("--live/--no-live", default=True, show_default=True,
              help="Attack the honeypot sensor live on loopback (needs impacket: pip install '.[demo]').")
@click.option("--serve/--no-serve", default=False, show_default=True,
              help="End by serving the dashboard on the demo's store (until Ctrl-C); make demo does.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Dashboard port for --serve (on 127.0.0.1).")
@db_option
def demo(workdir: str, fresh: bool, live: bool, serve: bool, port: int, db_path: str | None) -> None:
    """Generate weeks of firewall logs from three sensors (July-August 2006, ending in the MS06-040
    bot surge on 139/445), ingest them, attack the honeypot sensor live on loopback with bots
    (MS06-040, MS08-067, MS04-011 and benign clients from 127.0.0.0/8), and print the port report
    with the surge, what the honeypot saw, the surges, scanners, outbreak and campaigns found, the
    threat level as it rose, and the MS06-040 advisory."""
    if live:
        _check_live()
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
        result = _live(store, workdir, plan) if live else None
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
        if result is not None:
            _honeypot_report(store, result)
        early_warning(store, workdir)
    click.echo(f"\nThe store is {db}; try: stormwatch report ports --db {db} --by sources")
    if result is not None:
        click.echo(f"     or: stormwatch events --db {db} --type exploit.attempt --sensor {HONEYPOT}")
    click.echo(f"     or: stormwatch level --db {db}; stormwatch advisory MS06-040 --db {db}")
    if serve:
        _serve(db, workdir, port)


def _serve(db: Path, workdir: str, port: int) -> None:
    """The dashboard over the demo's store, in this process, until Ctrl-C."""
    from stormwatch.cli.serve_cmd import run_server
    from stormwatch.web.settings import WebSettings

    settings = WebSettings(db=db, port=port, payloads=Path(workdir) / "payloads", warm_cache=True)
    run_server(settings, f"\n== the dashboard: http://127.0.0.1:{port}/ (level, surges, the MS06-040 advisory, "
                         f"campaigns, sessions); JSON API at http://127.0.0.1:{port}/api/v1/level, OpenAPI at "
                         "/docs. Ctrl-C stops it.", log_level="warning")


def _echo(s: IngestSummary) -> None:
    click.echo(f"  {s.source}: format={s.format} read={s.read} accepted={s.accepted} rejected={s.rejected} "
               f"duplicates={s.duplicates} skipped={s.skipped}" + (f" ERROR {s.error}" if s.error else ""))


HONEYPOT = "honeypot"  # the demo sensor's name (stormwatch.demo.live.SENSOR)


def _check_live() -> None:
    """Fail before any work when the live phase cannot run (impacket is an optional extra)."""
    try:
        import stormwatch.demo.live  # noqa: F401
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "impacket":
            raise
        raise click.ClickException("the live phase drives its bots through impacket: pip install -e '.[demo]' "
                                   "(make demo does), or run stormwatch demo --no-live") from exc


def _live(store: Store, workdir: str, plan: DemoPlan) -> LiveResult:
    from stormwatch.demo.live import SENSOR, run_live

    assert SENSOR == HONEYPOT
    click.echo("\n== live: bots from 127.0.0.0/8 attack the honeypot sensor on 127.0.0.1")
    r = run_live(store, workdir, plan)
    rep = r.report
    click.echo(f"  live attacks at {r.started:%Y-%m-%d %H:%M:%S} UTC: {rep.visits} clients, {rep.sessions} sessions "
               f"in {r.seconds:.1f} s ({rep.failed} failed)")
    click.echo(f"  sensor ports: smb (445 framing) {r.ports['smb']}, "
               f"netbios-ssn (139 framing) {r.ports['netbios-ssn']}")
    for err in rep.errors:
        click.echo(f"  ERROR {err}")
    if r.stored.first_ts and r.stored.last_ts:
        click.echo(f"  the sensor's clock follows the story: events dated {r.stored.first_ts:%Y-%m-%d %H:%M} .. "
                   f"{r.stored.last_ts:%Y-%m-%d %H:%M} UTC, each wave of bots at its own time")
    click.echo(f"  {r.stored.inserted} events stored; spool {r.spool}, payloads {r.payloads}")
    return r


def _honeypot_report(store: Store, r: LiveResult) -> None:
    click.echo(f"\n== the honeypot: exploit attempts by vulnerability (sensor {HONEYPOT})")
    click.echo(render(exploit_summary(store, sensor=HONEYPOT), "table",
                      ["vuln", "cve", "kind", "attempts", "sessions", "sources", "first_seen", "last_seen"]))
    click.echo("\n== the honeypot: sessions per day (exploit, probe only, benign)")
    click.echo(render(session_summary(store, sensor=HONEYPOT), "table",
                      ["day", "sessions", "sources", "exploit_sessions", "probe_sessions", "benign_sessions"]))
    cols = ["started", "src_ip", "service", "native_os", "pipes", "operations", "vulns", "bytes_in"]
    click.echo("\n== the honeypot: latest sessions with exploits")
    click.echo(render(list_sessions(store, sensor=HONEYPOT, exploits=True, limit=5), "table", cols))
    click.echo("\n== the honeypot: latest benign sessions (no exploit.attempt)")
    click.echo(render(list_sessions(store, sensor=HONEYPOT, exploits=False, limit=4), "table", cols))
    click.echo(f"\n== exploit.attempt events (stormwatch events --type exploit.attempt --sensor {HONEYPOT})")
    rows = [_flat(e) for e in list_events(store, event="exploit.attempt", sensor=HONEYPOT, limit=6)]
    click.echo(render(rows, "table", ["ts", "src_ip", "src_port", "dst_port", "session", "vuln", "kind",
                                      "detector", "confidence", "evidence"]))
    click.echo(f"\n== payloads kept by SHA-256 in {r.payloads}")
    click.echo(render(payload_summary(store, sensor=HONEYPOT, limit=8), "table",
                      ["sha256", "size", "vuln", "attempts", "sources", "first_seen", "last_seen"]))


def _flat(event: dict[str, Any]) -> dict[str, Any]:
    """An exploit.attempt row with the fields that decided shown, the session id cut short."""
    data = event["data"]
    ev = data.get("evidence") or {}
    keys = ("path_units", "prefix_units", "path_type", "traversal", "argument", "units")
    return {**event, **data, "session": (event.get("session") or "")[:12],
            "evidence": json.dumps({k: ev[k] for k in keys if k in ev}, separators=(",", ":"))}
