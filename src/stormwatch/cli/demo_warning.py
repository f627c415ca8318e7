"""The end of ``stormwatch demo``: the early warning on the demo's data. Surges, the infected campus
host scanning out, the outbreak estimate, the campaigns, then the threat level replayed hour by hour
through the story (it rises as the MS06-040 outbreak unfolds) and the MS06-040 advisory."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import click

from stormwatch.analytics import DuckDBEngine
from stormwatch.analytics.campaigns import campaigns
from stormwatch.analytics.outbreak import estimate_outbreaks
from stormwatch.analytics.scanners import detect_scanners
from stormwatch.analytics.surges import detect_surges
from stormwatch.cli.campaign_cmd import LIST_COLUMNS as CAMPAIGN_COLUMNS
from stormwatch.cli.campaign_cmd import campaign_row
from stormwatch.cli.outbreak_cmd import OUTBREAK_COLUMNS
from stormwatch.cli.output import render
from stormwatch.cli.scanners_cmd import COLUMNS as SCANNER_COLUMNS
from stormwatch.cli.surges_cmd import TABLE_COLUMNS as SURGE_COLUMNS
from stormwatch.store import Store
from stormwatch.threat.advisory import build_advisory, to_html, to_markdown
from stormwatch.threat.kb import load_kb
from stormwatch.threat.level import default_at, fmt_ts, gather_signals, level_label, replay_level
from stormwatch.threat.rules import load_rules
from stormwatch.threat.state import last_change

REPLAY_FROM = datetime(2006, 8, 11)  # three days after MS06-040 was published, before the first bot
REPLAY_STEP = timedelta(hours=3)
ADVISORY = "MS06-040"


def early_warning(store: Store, workdir: str | Path) -> None:
    eng = DuckDBEngine(store)
    at = default_at(eng)
    if at is None:
        return
    click.echo(f"\n== surges at {fmt_ts(at)} (stormwatch surges)")
    rows = [s.as_dict() | {"agree": f"{s.sensors}/{s.sensors_total}"} for s in detect_surges(eng, until=at)]
    click.echo(render(rows[:8], "table", SURGE_COLUMNS))
    click.echo("\n== scanners in the last day (stormwatch scanners): the campus host the bots infected")
    found = detect_scanners(eng, since=at - timedelta(days=1), until=at)
    click.echo(render([s.as_dict() for s in found[:5]], "table", SCANNER_COLUMNS))
    click.echo("\n== outbreak estimates (stormwatch outbreak)")
    click.echo(render([o.as_dict() for o in estimate_outbreaks(eng, until=at)], "table", OUTBREAK_COLUMNS))
    click.echo("\n== campaigns: the honeypot's exploit sessions clustered by fingerprint (stormwatch campaigns)")
    payloads = Path(workdir) / "payloads"
    found_campaigns = campaigns(eng, until=at, payloads=payloads if payloads.is_dir() else None)
    click.echo(render([campaign_row(c) for c in found_campaigns], "table", CAMPAIGN_COLUMNS))

    rules, kb = load_rules(), load_kb()
    click.echo(f"\n== the threat level, replayed every {REPLAY_STEP.seconds // 3600} h from {fmt_ts(REPLAY_FROM)} "
               f"(stormwatch level --replay)")
    changes = replay_level(store, eng, REPLAY_FROM, at, REPLAY_STEP, rules=rules, kb=kb, reset=True)
    for c in changes:
        click.echo(f"{fmt_ts(c.ts)}  {c.previous} -> {level_label(c.level)}  by {c.actor}")
        for line in c.reasons:
            click.echo(f"    {line}")
    if not changes:
        click.echo("no change: the level stayed 1 (normal, green)")

    entry = kb.find(ADVISORY)
    assert entry is not None
    signals = gather_signals(eng, at, window=rules.window)
    change = last_change(store, at)
    level, reasons = (change.level, list(change.reasons)) if change else (1, [])
    source = f"recorded: set by {change.actor} at {fmt_ts(change.ts)}" if change else "no change recorded"
    adv = build_advisory(eng, entry, at, kb=kb, signals=signals, level=level, level_reasons=reasons,
                         level_source=source)
    out = Path(workdir)
    (out / f"advisory-{ADVISORY}.md").write_text(to_markdown(adv), encoding="utf-8")
    (out / f"advisory-{ADVISORY}.html").write_text(to_html(adv), encoding="utf-8")
    click.echo(f"\n== advisory {ADVISORY} (stormwatch advisory {ADVISORY}; also written to "
               f"{out / f'advisory-{ADVISORY}.md'} and .html)\n")
    click.echo(to_markdown(adv))
