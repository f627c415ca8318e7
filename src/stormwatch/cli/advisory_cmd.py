"""``stormwatch advisory``: an advisory for a vulnerability under active exploitation (Markdown,
HTML or JSON), or the list of those under exploitation (docs/advisories.md)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from stormwatch.analytics import DuckDBEngine
from stormwatch.cli.level_cmd import _json, load_config, resolve_at
from stormwatch.cli.options import db_option, open_store
from stormwatch.cli.output import render
from stormwatch.errors import StormwatchError
from stormwatch.threat.advisory import DEFAULT_DAYS, build_advisory, to_html, to_markdown, under_exploitation
from stormwatch.threat.kb import KnowledgeBase
from stormwatch.threat.level import fmt_ts, gather_signals, level_in_force

LIST_COLUMNS = ["vuln", "cve", "name", "severity", "attempts", "sources", "sensors", "first_seen_ever", "last_seen"]


@click.command("advisory")
@click.argument("vuln", required=False, metavar="[VULN]")
@click.option("--at", "at_text", default=None,
              help="As of this date or ISO time (UTC) [default: the end of the hour of the latest event].")
@click.option("--days", type=click.IntRange(1, 365), default=DEFAULT_DAYS, show_default=True,
              help="Days of observations before --at.")
@click.option("--format", "fmt", type=click.Choice(["markdown", "html", "json", "table"]), default=None,
              help="Output format [default: markdown for an advisory, table for the list].")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write to this file instead of stdout.")
@click.option("--rules", "rules_file", envvar="STORMWATCH_RULES", type=click.Path(dir_okay=False), default=None,
              help="Threat-level rules file [default: $STORMWATCH_RULES or the built-in rules].")
@click.option("--kb", "kb_files", multiple=True, envvar="STORMWATCH_KB", type=click.Path(dir_okay=False),
              help="Operator knowledge-base file (repeatable) [default: $STORMWATCH_KB].")
@db_option
def advisory_cmd(vuln: str | None, at_text: str | None, days: int, fmt: str | None, out: str | None,
                 rules_file: str | None, kb_files: tuple[str, ...], db_path: str | None) -> None:
    """An advisory for VULN (a bulletin such as MS06-040, or a CVE): the knowledge base joined with
    what this installation observed, and the recommended actions in order. Without VULN: the
    vulnerabilities under active exploitation (an exploit attempt in the last --days)."""
    rules, kb = load_config(rules_file, kb_files)
    try:
        with open_store(db_path, read_only=True) as store:
            at = resolve_at(store, at_text)
            if at is None:
                raise click.ClickException("no events stored yet (see `stormwatch ingest`)")
            engine = DuckDBEngine(store)
            if vuln is None:
                text = _list(engine, at, days, fmt or "table", kb)
            else:
                entry = kb.find(vuln)
                if entry is None:
                    raise click.ClickException(f"no knowledge-base entry for {vuln!r} (see `stormwatch kb list`)")
                signals = gather_signals(engine, at, window=rules.window)
                level, reasons, source = level_in_force(store, signals, rules, kb)
                adv = build_advisory(engine, entry, at, kb=kb, signals=signals, level=level, level_reasons=reasons,
                                     level_source=source, days=days)
                f = fmt or "markdown"
                if f == "table":
                    raise click.UsageError("an advisory is markdown, html or json")
                text = {"markdown": lambda: to_markdown(adv), "html": lambda: to_html(adv),
                        "json": lambda: _json(adv.as_dict())}[f]()
    except StormwatchError as exc:
        raise click.ClickException(str(exc)) from exc
    if out:
        Path(out).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        click.echo(f"wrote {out}")
    else:
        click.echo(text)


def _list(engine: DuckDBEngine, at: datetime, days: int, fmt: str, kb: KnowledgeBase) -> str:
    rows = []
    for e in under_exploitation(engine, at, days):
        v = kb.find(e.vuln)
        rows.append({**e.as_dict(), "name": v.name if v else "(not in the knowledge base)",
                     "severity": v.severity.rating if v else None})
    if fmt == "json":
        return _json(rows)
    if fmt in ("markdown", "html"):
        raise click.UsageError("name a vulnerability for a markdown or html advisory; the list is table or json")
    head = f"vulnerabilities under active exploitation in the {days} days before {fmt_ts(at)}"
    return head + "\n" + render(rows, "table", LIST_COLUMNS) if rows else head + ": none"
