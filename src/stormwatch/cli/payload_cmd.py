"""``stormwatch payload analyze FILE``: analyse one raw payload file (an exploit argument, a
stream, or bare shellcode) for analysts who bring their own samples. The file is read as bytes and
handed to :func:`stormwatch.detect.shellcode.analyze`; nothing in it is run on this machine."""

from __future__ import annotations

import json
from pathlib import Path

import click

from stormwatch.cli.output import render
from stormwatch.detect.shellcode import Limits, ShellcodeReport, analyze

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
