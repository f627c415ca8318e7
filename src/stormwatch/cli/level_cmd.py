"""``stormwatch level``: the threat level, its reasons, its history, an analyst's override and a
replay over historic data (docs/threat-level.md; :mod:`stormwatch.threat.level`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from stormwatch.analytics import DuckDBEngine
from stormwatch.cli.options import db_option, open_store, parse_time
from stormwatch.cli.output import render
from stormwatch.errors import StormwatchError
from stormwatch.store import Store
from stormwatch.threat import state
from stormwatch.threat.kb import KnowledgeBase, load_kb
from stormwatch.threat.level import (
    LevelStatus,
    default_at,
    fmt_ts,
    level_label,
    parse_level,
    replay_level,
    set_level,
    update_level,
)
from stormwatch.threat.rules import RuleSet, load_rules


def _json(v: Any) -> str:
    return json.dumps(v, indent=1, default=lambda x: x.isoformat() if isinstance(x, datetime) else str(x))


def load_config(rules_file: str | None, kb_files: tuple[str, ...]) -> tuple[RuleSet, KnowledgeBase]:
    try:
        return load_rules(rules_file), load_kb(kb_files)
    except StormwatchError as exc:
        raise click.ClickException(str(exc)) from exc


def resolve_at(store: Store, at_text: str | None) -> datetime | None:
    """``--at`` as given, else the end of the hour of the latest stored event (None: empty store)."""
    at = parse_time(at_text)
    return at if at is not None else default_at(DuckDBEngine(store))


def print_status(s: LevelStatus) -> None:
    since = f", since {fmt_ts(s.since)} (set by {s.actor})" if s.since else " (no change recorded yet)"
    click.echo(f"threat level {level_label(s.level)} at {fmt_ts(s.at)}{since}")
    if s.override is not None:
        until = f"until {fmt_ts(s.override.expires_at)}" if s.override.expires_at else "until cleared"
        click.echo(f"analyst override by {s.override.who} {until}: {s.override.reason}")
        click.echo(f"the rules alone would hold level {s.rule_level}")
    elif s.lowers_at is not None:
        click.echo(f"the rules now give {s.assessment.level}: the level lowers to {s.rule_level - 1} at "
                   f"{fmt_ts(s.lowers_at)} unless a rule for {s.rule_level} holds again before")
    if s.change is not None:
        click.echo("changed now:")
        for line in s.change.reasons:
            click.echo(f"  {line}")
    click.echo("rules that hold now:" if s.assessment.reasons else "no rule holds now")
    for r in s.assessment.reasons:
        click.echo(f"  [{r.level}] {r.rule}: {r.text}")
        click.echo(f"      why: {r.why}")
    for n in (*s.assessment.notes, *s.notes):
        click.echo(f"note: {n}")


@click.command("level")
@click.option("--at", "at_text", default=None,
              help="Evaluate at this date or ISO time (UTC) [default: the end of the hour of the latest event].")
@click.option("--replay", is_flag=True, help="Step through historic time from --since, recording the changes.")
@click.option("--since", default=None, help="Replay from this date or time (with --replay).")
@click.option("--until", default=None, help="Replay up to this date or time [default: as --at].")
@click.option("--step", "step_hours", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Replay step in hours.")
@click.option("--reset", is_flag=True, help="With --replay: forget the rules' recorded history from --since on.")
@click.option("--set", "set_to", default=None, metavar="N|COLOUR",
              help="Set the level as an analyst: 1-4, normal/elevated/high/extreme or green/yellow/orange/red.")
@click.option("--reason", default=None, help="Why (with --set).")
@click.option("--by", "who", default=None, help="The analyst's name (with --set or --clear).")
@click.option("--for", "for_hours", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Hours the analyst's level lasts [default: until cleared].")
@click.option("--clear", is_flag=True, help="End the analyst's override; the rules take over.")
@click.option("--history", is_flag=True, help="List the recorded changes and overrides.")
@click.option("--no-record", is_flag=True, help="Evaluate and show, record nothing (opens the store read-only).")
@click.option("--rules", "rules_file", envvar="STORMWATCH_RULES", type=click.Path(dir_okay=False), default=None,
              help="Rules file replacing the built-in rules [default: $STORMWATCH_RULES].")
@click.option("--kb", "kb_files", multiple=True, envvar="STORMWATCH_KB", type=click.Path(dir_okay=False),
              help="Operator knowledge-base file (repeatable) [default: $STORMWATCH_KB].")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@db_option
def level_cmd(at_text: str | None, replay: bool, since: str | None, until: str | None, step_hours: float,
              reset: bool, set_to: str | None, reason: str | None, who: str | None, for_hours: float | None,
              clear: bool, history: bool, no_record: bool, rules_file: str | None, kb_files: tuple[str, ...],
              fmt: str, db_path: str | None) -> None:
    """The threat level (1 normal/green, 2 elevated/yellow, 3 high/orange, 4 extreme/red) with its
    reasons in words and numbers. Without options: evaluate now (the end of the hour of the latest
    event) and record any change. The level rises as soon as a rule holds, and lowers one level at a
    time once no rule has held it for the hold time (24 h by default)."""
    if sum(map(bool, (replay, set_to, clear, history))) > 1:
        raise click.UsageError("use one of --replay, --set, --clear, --history")
    if set_to is not None and (not reason or not who):
        raise click.UsageError("--set needs --reason TEXT and --by NAME")
    if clear and not who:
        raise click.UsageError("--clear needs --by NAME")
    if replay and not since:
        raise click.UsageError("--replay needs --since")
    rules, kb = load_config(rules_file, kb_files)
    read_only = history or (no_record and not (replay or set_to or clear))
    try:
        with open_store(db_path, read_only=read_only) as store:
            if history:
                _history(store, fmt)
                return
            at = resolve_at(store, at_text)
            if set_to is not None or clear:
                at = at or datetime.now(UTC).replace(tzinfo=None)
                if set_to is not None:
                    _set(store, parse_level(set_to), reason or "", who or "", at, for_hours, fmt)
                    return
                ended = state.clear_override(store, who or "", at)
                if ended is None:
                    click.echo("no analyst override in force; nothing to clear", err=True)
            if at is None:
                click.echo("no events stored yet (see `stormwatch ingest`): the level is 1 (normal, green)")
                return
            engine = DuckDBEngine(store)
            if replay:
                start = parse_time(since)
                end = parse_time(until) or at
                assert start is not None
                changes = replay_level(store, engine, start, end, timedelta(hours=step_hours), rules=rules, kb=kb,
                                       reset=reset)
                _print_changes(changes, fmt, f"replayed {fmt_ts(start)} .. {fmt_ts(end)} every {step_hours:g} h")
                return
            status = update_level(store, engine, at, rules=rules, kb=kb, record=not no_record)
    except StormwatchError as exc:
        raise click.ClickException(str(exc)) from exc
    if fmt == "json":
        click.echo(_json(status.as_dict()))
    else:
        print_status(status)


def _set(store: Store, level: int, reason: str, who: str, at: datetime, hours: float | None, fmt: str) -> None:
    change = set_level(store, level, reason, who, at, hours)
    until = f"until {fmt_ts(at + timedelta(hours=hours))}" if hours else "until cleared"
    if fmt == "json":
        click.echo(_json({"level": level, "who": who, "reason": reason, "set_at": at,
                          "expires_at": at + timedelta(hours=hours) if hours else None,
                          "change": change.as_dict() if change else None}))
        return
    click.echo(f"threat level set to {level_label(level)} by {who} at {fmt_ts(at)}, {until}: {reason}")
    if change is None:
        click.echo("(the level in force was already this; the override keeps it there)")


def _print_changes(changes: list[state.Change], fmt: str, title: str) -> None:
    rows = [c.as_dict() for c in changes]
    if fmt == "json":
        click.echo(_json(rows))
        return
    click.echo(f"{title}: {len(rows)} change{'s' if len(rows) != 1 else ''}")
    for c in changes:
        click.echo(f"{fmt_ts(c.ts)}  {c.previous} -> {level_label(c.level)}  by {c.actor}")
        for r in c.reasons:
            click.echo(f"    {r}")


def _history(store: Store, fmt: str) -> None:
    changes = state.changes(store)
    ovr = state.overrides(store)
    if fmt == "json":
        click.echo(_json({"changes": [c.as_dict() for c in changes], "overrides": [o.as_dict() for o in ovr]}))
        return
    _print_changes(changes, fmt, "level changes")
    if ovr:
        click.echo("analyst overrides:")
        click.echo(render([o.as_dict() for o in ovr], "table",
                          ["set_at", "level", "who", "reason", "expires_at", "cleared_at", "cleared_by"]))
