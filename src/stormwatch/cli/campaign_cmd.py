"""``stormwatch campaigns`` and ``stormwatch campaign NAME``: attacks clustered into campaigns and
named by family rules; a thin shell over :mod:`stormwatch.analytics.campaigns`."""

from __future__ import annotations

import json
from typing import Any

import click

from stormwatch.analytics.campaigns import Campaign, campaign, campaigns
from stormwatch.analytics.family_rules import RuleSet, load_rules
from stormwatch.cli.options import db_option, engine_options, open_engine, parse_time
from stormwatch.cli.output import render
from stormwatch.errors import StormwatchError

LIST_COLUMNS = ["name", "attacks", "sources", "sensors", "first_seen", "last_seen", "exploits", "week", "growth",
                "offers"]


def _common(f: Any) -> Any:
    f = click.option("--payloads", "payload_dir", type=click.Path(file_okay=False), default=None,
                     help="The sensor's payload directory (payloads by SHA-256), for the YARA rules.")(f)
    f = click.option("--rules", "rule_files", multiple=True, type=click.Path(dir_okay=False, exists=True),
                     help="Extra family rules: .toml fingerprint rules or .yar YARA rules (repeatable); tried "
                          "before the built-in ones.")(f)
    f = click.option("--until", default=None, help="End of the window, exclusive (date or ISO time, UTC).")(f)
    f = click.option("--since", default=None, help="Start of the window (date or ISO time, UTC).")(f)
    f = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
                     help="Output format.")(f)
    return engine_options(db_option(f))


def _rules(files: tuple[str, ...]) -> RuleSet:
    try:
        return load_rules(files)
    except StormwatchError as exc:
        raise click.ClickException(str(exc)) from exc


def _pct(v: float | None) -> str:
    return "" if v is None else f"{v * 100:+.0f}%"


def campaign_row(c: Campaign) -> dict[str, Any]:
    return {"name": c.name, "attacks": c.attacks, "sources": c.sources, "sensors": len(c.sensors),
            "first_seen": c.first_seen, "last_seen": c.last_seen, "exploits": list(c.exploits),
            "week": f"{c.week_attacks}/{c.previous_week_attacks}", "growth": _pct(c.growth),
            "offers": list(c.offers[:2])}


@click.command("campaigns")
@_common
def campaigns_cmd(fmt: str, since: str | None, until: str | None, rule_files: tuple[str, ...],
                  payload_dir: str | None, db_path: str | None, engine: str, lake: str | None) -> None:
    """Attack campaigns: exploit sessions clustered by fingerprint, named by family rules, most
    attacks first, with week-over-week growth (attacks in the last 7 days / the 7 before)."""
    rules = _rules(rule_files)
    with open_engine(db_path, engine, lake) as eng:
        found = campaigns(eng, since=parse_time(since), until=parse_time(until), rules=rules,
                          payloads=payload_dir)
    if fmt == "json":
        click.echo(json.dumps([c.as_dict() for c in found], indent=1))
        return
    if not found:
        click.echo("no exploit attempts in the window (the honeypot sensor records them)")
        return
    click.echo(f"{len(found)} campaigns; week = attacks in the last 7 days / the 7 days before")
    click.echo(render([campaign_row(c) for c in found], "table", LIST_COLUMNS))


@click.command("campaign")
@click.argument("name")
@_common
def campaign_cmd(name: str, fmt: str, since: str | None, until: str | None, rule_files: tuple[str, ...],
                 payload_dir: str | None, db_path: str | None, engine: str, lake: str | None) -> None:
    """One campaign by NAME, id (cmp-xxxxxx) or family: its fingerprint, activity, sources, payloads."""
    rules = _rules(rule_files)
    with open_engine(db_path, engine, lake) as eng:
        d = campaign(eng, name, since=parse_time(since), until=parse_time(until), rules=rules,
                     payloads=payload_dir)
    if d is None:
        raise click.ClickException(f"no campaign {name!r} in the window (see `stormwatch campaigns`)")
    if fmt == "json":
        click.echo(json.dumps(d.as_dict(), indent=1))
        return
    c = d.campaign
    lines = [f"campaign {c.name} ({c.id})" + (f", family {c.family}" if c.family else ""),
             *( [f"  aka: {', '.join(c.aka)}"] if c.aka else []),
             *( [f"  named by: {c.reason}"] if c.reason else []),
             f"  attacks {c.attacks} from {c.sources} sources on {len(c.sensors)} sensors ({', '.join(c.sensors)})",
             f"  first seen {c.first_seen.isoformat(sep=' ', timespec='seconds')}, "
             f"last seen {c.last_seen.isoformat(sep=' ', timespec='seconds')}",
             f"  week over week: attacks {c.week_attacks} vs {c.previous_week_attacks} {_pct(c.growth)}, "
             f"sources {c.week_sources} vs {c.previous_week_sources} {_pct(c.sources_growth)}",
             f"  exploits: {', '.join(c.exploits)}",
             "  variants: " + "; ".join(c.variants[:5]),
             f"  offers: {', '.join(c.offers) or '-'}"]
    click.echo("\n".join(lines))
    click.echo("\nfingerprint (values shared by most attacks):")
    click.echo(render([{"feature": k, "value": v} for k, v in c.consensus.items()], "table"))
    click.echo("\nattacks per day:")
    click.echo(render([{"day": day.isoformat(), "attacks": n} for day, n in c.daily], "table"))
    click.echo("\ntop sources:")
    click.echo(render([{"src_ip": s, "attacks": n} for s, n in d.sources[:10]], "table"))
    if d.payloads:
        click.echo("\npayloads:")
        click.echo(render([{"sha256": s, "attacks": n} for s, n in d.payloads[:10]], "table"))
