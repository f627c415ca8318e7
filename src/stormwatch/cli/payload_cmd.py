"""``stormwatch payload analyze FILE``: analyse one raw payload file (an exploit argument, a
stream, or bare shellcode) for analysts who bring their own samples. The file is read as bytes and
handed to :func:`stormwatch.detect.shellcode.analyze`; nothing in it is run on this machine.

``stormwatch payload fetch TARGET``: fetch one offered file (a URL or ``host:port:protocol/file``)
with the sensor's sandboxed downloader (:mod:`stormwatch.sensor.download`) and keep it by SHA-256."""

from __future__ import annotations

import json
from pathlib import Path

import click

from stormwatch.cli.output import render
from stormwatch.detect.shellcode import Limits, ShellcodeReport, analyze
from stormwatch.sensor.download import (
    DEFAULT_MAX_BYTES,
    DEFAULT_TIMEOUT,
    DownloadLimits,
    fetch,
    file_fields,
    parse_target,
)
from stormwatch.sensor.download import networks as parse_networks
from stormwatch.sensor.payloads import PayloadStore

MAX_FILE = 64 << 20  # bytes read from the file; analysis looks at Limits.max_input of them


@click.group()
def payload() -> None:
    """Exploit payloads: find, decode and emulate shellcode."""


def _rows(r: ShellcodeReport) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []

    def add(field: str, value: object) -> None:
        rows.append({"field": field, "value": value})

    add("sha256", r.sha256)
    add("md5", r.md5)
    add("size", r.size)
    add("found", r.found)
    add("offset", r.offset)
    add("sled", f"{r.sled[0]}+{r.sled[1]}" if r.sled else None)
    add("getpc", r.getpc)
    add("decoder", r.decoder)
    add("key", r.key)
    add("decoded", f"{r.decoded_offset}+{r.decoded_size}" if r.decoded_offset is not None else None)
    add("stop", f"{r.stop_reason} {r.stop_detail}".strip())
    add("instructions", r.instructions)
    for name, args in r.api_calls:
        add("api", f"{name}({args})")
    for port in r.binds:
        add("bind", f"tcp/{port}")
    for host, port in r.connects:
        add("connect", f"{host}:{port}")
    for url in r.urls:
        add("url", url)
    for cmd in r.commands:
        add("command", cmd)
    for o in r.offers:
        add("offer", f"{o.url} ({o.endpoint}, file {o.filename or '?'})")
    for note in r.notes:
        add("note", note)
    return rows


@payload.command("analyze")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Output format.")
@click.option("--static-only", is_flag=True, help="Do not emulate: sleds, GetPC, decoder loops and strings only.")
def analyze_cmd(file: Path, fmt: str, static_only: bool) -> None:
    """Analyse one raw payload FILE: decoder, key, API calls, bind/connect, URLs, commands, offers."""
    with file.open("rb") as f:
        data = f.read(MAX_FILE)
    report = analyze(data, limits=Limits(emulate=not static_only))
    if fmt == "json":
        click.echo(json.dumps(report.as_dict(), indent=1))
    else:
        click.echo(render(_rows(report), "table", ["field", "value"]))


@payload.command("fetch")
@click.argument("target")
@click.option("--allow", "allow", multiple=True, metavar="CIDR",
              help="Permit a non-global destination in this network (repeatable), e.g. 127.0.0.0/8.")
@click.option("--max-bytes", type=click.IntRange(min=1), default=DEFAULT_MAX_BYTES, show_default=True,
              help="Bytes kept; a longer file is cut.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=DEFAULT_TIMEOUT, show_default=True,
              help="Seconds for the whole fetch.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("payloads"),
              show_default=True, help="Payload store the file is kept in (by SHA-256).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Output format.")
def fetch_cmd(target: str, allow: tuple[str, ...], max_bytes: int, timeout: float, out_dir: Path, fmt: str) -> None:
    """Fetch one offered file: TARGET is a URL (http, https, ftp, tftp) or host:port:protocol/file.

    Private, loopback, link-local and multicast destinations are refused unless --allow names
    them. The fetch runs in a child process with memory, CPU, file-size and open-file limits.
    Exit status 1 when the file was refused, failed or is incomplete."""
    try:
        tgt = parse_target(target)
        nets = parse_networks(allow)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    got = fetch(tgt, limits=DownloadLimits(max_bytes=max_bytes, timeout=timeout), allow=nets)
    kept = PayloadStore(out_dir).keep(got.data) if got.data else None
    fields = file_fields(got, kept)
    if kept is not None and kept.stored:
        fields["path"] = str(PayloadStore(out_dir).path_for(kept.sha256))
    if fmt == "json":
        click.echo(json.dumps(fields, indent=1))
    else:
        rows: list[dict[str, object]] = [{"field": k, "value": v} for k, v in fields.items()
                                         if k not in ("attack", "notes") and v is not None]
        rows += [{"field": "note", "value": n} for n in fields["notes"]]
        click.echo(render(rows, "table", ["field", "value"]))
    if not got.complete:
        raise SystemExit(1)
