"""``stormwatch attacks PCAP``: the multi-stage attacks of a capture, stage by stage
(docs/multistage.md). A thin shell over :func:`stormwatch.collector.multistage.follow_attacks`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from stormwatch.cli.output import render
from stormwatch.collector.attack_model import MultiStageAttack, iso
from stormwatch.collector.multistage import follow_attacks
from stormwatch.collector.replay import replay_capture
from stormwatch.errors import StormwatchError
from stormwatch.ingest.base import source_for

TIMELINE_COLUMNS = ["stage", "time", "connection", "what"]


@click.command("attacks")
@click.argument("pcap", type=click.Path(exists=True, dir_okay=False))
@click.option("--payload-dir", type=click.Path(file_okay=False), default=None,
              help="Where exploit payloads and retrieved files are kept by SHA-256 [default: hashed only].")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Output format.")
@click.option("--sensor", default="local", show_default=True, help="Sensor name of the replayed events.")
def attacks(pcap: str, payload_dir: str | None, fmt: str, sensor: str) -> None:
    """Replay PCAP through the sensor's detectors and follow each exploit to its shell, commands,
    downloads and the files retrieved, printed as one timeline per attack."""
    pdir = Path(payload_dir) if payload_dir else None
    try:
        tables = list(replay_capture(source_for(pcap, sensor), pdir))
        found = follow_attacks(pcap, tables, pdir)
    except StormwatchError as exc:
        raise click.ClickException(str(exc)) from exc
    if fmt == "json":
        click.echo(json.dumps([a.as_dict() for a in found], indent=1))
        return
    if not found:
        click.echo("no exploit attempts in this capture")
        return
    click.echo("\n\n".join(_table(a) for a in found))


def _table(a: MultiStageAttack) -> str:
    e = a.exploit
    head = [f"attack {a.attack_id}: {e.attacker} -> {e.victim}, {e.vuln or 'exploit'} at {iso(e.ts)}"]
    for f in a.files:
        state = "complete" if f.complete else f"PARTIAL ({f.missing_bytes} bytes missing)"
        where = f", stored {f.stored_path}" if f.stored_path else ""
        head.append(f"file {f.name!r} from {f.url}: {f.size} bytes, {state}, md5 {f.md5}, sha256 {f.sha256}{where}")
    body = render(a.timeline(), "table", TIMELINE_COLUMNS)
    notes = [f"note: {n}" for n in a.notes]
    return "\n".join([*head, "", body, *notes])
