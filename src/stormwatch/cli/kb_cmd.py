"""``stormwatch kb``: list, show and check the vulnerability knowledge base (docs/kb.md)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from stormwatch.cli.output import render
from stormwatch.threat.kb import KBError, KnowledgeBase, Vuln, load_file, load_kb

F = TypeVar("F", bound=Callable[..., Any])

LIST_COLUMNS = ["id", "cves", "name", "published", "ports", "severity", "malware", "source"]


def _kb_option(f: F) -> F:
    # Click splits $STORMWATCH_KB on os.pathsep for a multiple Path option; --kb replaces it.
    return click.option("--kb", "kb_files", multiple=True, envvar="STORMWATCH_KB",
                        type=click.Path(dir_okay=False),
                        help="Operator knowledge-base file merged over the built-in entries (repeatable) "
                             "[default: $STORMWATCH_KB, paths separated like $PATH].")(f)


def _fmt_option(f: F) -> F:
    return click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                        show_default=True, help="Output format.")(f)


def _load(kb_files: tuple[str, ...]) -> KnowledgeBase:
    try:
        return load_kb(kb_files)
    except KBError as exc:
        raise click.ClickException(str(exc)) from exc


def _severity(v: Vuln) -> str:
    return v.severity.rating + (f" (CVSS {v.severity.cvss:g})" if v.severity.cvss is not None else "")


@click.group()
def kb() -> None:
    """The vulnerability knowledge base: bulletins, ports, malware, detectors and mitigations."""


@kb.command("list")
@_fmt_option
@_kb_option
def list_cmd(fmt: str, kb_files: tuple[str, ...]) -> None:
    """List every entry, built-in and the operator's."""
    entries = list(_load(kb_files).values())
    if fmt == "json":
        click.echo(json.dumps([v.as_dict() for v in entries], indent=1))
        return
    rows = [{"id": v.id, "cves": " ".join(v.cves), "name": v.name, "published": v.published,
             "ports": " ".join(v.ports), "severity": _severity(v), "malware": ", ".join(v.malware),
             "source": "built-in" if v.source.startswith("stormwatch:") else v.source} for v in entries]
    click.echo(render(rows, "table", LIST_COLUMNS))


@kb.command("show")
@click.argument("ident", metavar="ID")
@_fmt_option
@_kb_option
def show_cmd(ident: str, fmt: str, kb_files: tuple[str, ...]) -> None:
    """Show one entry by bulletin (MS06-040) or CVE (CVE-2006-3439)."""
    v = _load(kb_files).find(ident)
    if v is None:
        raise click.ClickException(f"no knowledge-base entry for {ident!r} (see `stormwatch kb list`)")
    if fmt == "json":
        click.echo(json.dumps(v.as_dict(), indent=1))
        return
    click.echo(f"{v.id}  {v.name}")
    for label, value in [("cves", ", ".join(v.cves)), ("published", v.published.isoformat()),
                         ("severity", _severity(v)), ("patch", v.patch), ("ports", ", ".join(v.ports)),
                         ("services", "; ".join(v.services)), ("affected", ", ".join(v.affected)),
                         ("exploits", "; ".join(v.exploits) or "-"), ("malware", "; ".join(v.malware) or "-"),
                         ("detectors", ", ".join(v.detectors) or "-"), ("source", v.source)]:
        click.echo(f"  {label + ':':<11}{value}")
    click.echo("  mitigations:")
    for i, m in enumerate(v.mitigations, 1):
        click.echo(f"    {i}. {m.action}\n       because {m.reason}")
    click.echo("  references:")
    for r in v.references:
        click.echo(f"    {r}")


@kb.command("check")
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False))
def check_cmd(path: str) -> None:
    """Validate an operator's knowledge-base file; exit 1 with the file, entry and field at fault."""
    try:
        vulns = load_file(path)
    except KBError as exc:
        raise click.ClickException(str(exc)) from exc
    builtin = load_kb()
    for v in vulns:
        what = "replaces the built-in entry" if v.id in builtin else "new entry"
        click.echo(f"{path}: {v.id}: ok ({what})")
    click.echo(f"{path}: {len(vulns)} entries ok")
