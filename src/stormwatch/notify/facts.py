"""The facts worth notifying, as the store and the analytics see them now, each with a stable key.

Four kinds (``docs/notifications.md`` lists the keys):

- ``level``: a change of the threat level recorded by :mod:`stormwatch.threat.state`
  (key ``level:<time>:<previous>><level>``); filed under the higher of the two levels, so a
  subscriber to level 3 hears both that it rose to 3 and that it fell back to 2. The ports and
  bulletins its reasons name are its ports and vulns.
- ``surge``: a surge of :func:`stormwatch.analytics.surges.detect_surges`
  (key ``surge:<kind>:<subject>:<onset hour>``), still active or decided within the look-back.
- ``exploit``: a bulletin newly exploited: an exploit attempt in the look-back and its first
  attempt ever within it too (:func:`stormwatch.analytics.exploits.exploit_activity`;
  key ``exploit:<bulletin>``: once per bulletin).
- ``campaign``: a campaign of :func:`stormwatch.analytics.campaigns.campaigns` whose first attack
  falls within the look-back (key ``campaign:<id>``, the id is the hash of what its attacks
  have in common).

"Now" for the analytics is the data's own time, the end of the hour of the newest event
(:func:`stormwatch.threat.level.default_at`), not the wall clock: a store filled from old logs
(the demo's August 2006) notifies what its data shows. The look-back (7 days by default) keeps a
first run on a long history from announcing every surge of the past.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from stormwatch.analytics.campaigns import Campaign, campaigns
from stormwatch.analytics.engine import Engine
from stormwatch.analytics.exploits import ExploitActivity, exploit_activity
from stormwatch.analytics.signals import Surge
from stormwatch.analytics.surges import detect_surges
from stormwatch.notify.model import Fact
from stormwatch.store import Store
from stormwatch.threat import state
from stormwatch.threat.kb import BULLETIN_RE, CVE_RE, KnowledgeBase, load_kb
from stormwatch.threat.level import LEVELS, default_at, describe_exploit, describe_surge, fmt_ts, level_label

LOOKBACK = timedelta(days=7)
_PORT_IN_TEXT = re.compile(r"\bport (\d{1,5})\b")
_KB_PORT = re.compile(r"(\d{1,5})/(?:tcp|udp)")


@dataclass
class Gathered:
    """The facts found, the data time they were computed at, and notes (an analytic that failed)."""

    at: datetime | None
    facts: list[Fact] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def jsonable(value: Any) -> Any:
    """``value`` with datetimes and dates as ISO text, tuples as lists (for JSON bodies)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def gather(store: Store, engine: Engine, *, at: datetime | None = None, lookback: timedelta = LOOKBACK,
           kb: KnowledgeBase | None = None, payloads: str | Path | None = None) -> Gathered:
    """Every fact of the look-back before ``at`` (default: the data's own time, see above)."""
    at = at or default_at(engine)
    if at is None:
        return Gathered(None, notes=["no events stored yet"])
    kb = kb or load_kb()
    since = at - lookback
    latest = state.last_change(store)
    current = latest.level if latest else 1
    out = Gathered(at)
    out.facts += level_facts(state.changes(store, since=since))
    out.facts += surge_facts(detect_surges(engine, until=at), since, current)
    news = [e for e in exploit_activity(engine, since=since, until=at) if e.attempts > 0 and e.first_seen_ever >= since]
    out.facts += exploit_facts(news, kb, current, _exploit_sensors(store, [e.vuln for e in news]))
    found = campaigns(engine, since=since, until=at, payloads=payloads)
    out.facts += campaign_facts([c for c in found if c.first_seen >= since], kb, current)
    return out


def level_facts(changes: Iterable[state.Change]) -> list[Fact]:
    out = []
    for c in changes:
        verb = "raised" if c.level > c.previous else "lowered"
        text = "\n".join(c.reasons)
        out.append(Fact(
            key=f"level:{c.ts.isoformat(timespec='seconds')}:{c.previous}>{c.level}", kind="level",
            level=max(c.level, c.previous),
            title=f"threat level {verb} to {level_label(c.level)} from {c.previous} ({LEVELS[c.previous][0]})",
            text=f"{fmt_ts(c.ts)} by {c.actor}:\n{text}", occurred_at=c.ts,
            ports=tuple(sorted({int(p) for p in _PORT_IN_TEXT.findall(text) if int(p) <= 65535})),
            vulns=tuple(sorted(set(BULLETIN_RE.findall(text)) | set(CVE_RE.findall(text)))),
            details=jsonable(c.as_dict())))
    return out


def surge_facts(surges: Iterable[Surge], since: datetime, level: int) -> list[Fact]:
    out = []
    for g in surges:
        if not (g.active or g.detected_at >= since):
            continue
        port = int(g.subject) if g.kind == "port" and g.subject.isdigit() else None
        out.append(Fact(
            key=f"surge:{g.kind}:{g.subject}:{g.since:%Y-%m-%dT%H}", kind="surge", level=level,
            title=f"surge: {describe_surge(g).split(' since ')[0]}",
            text=f"{describe_surge(g)}; detected {fmt_ts(g.detected_at)}"
                 + (f"; note: {g.note}" if g.note else ""),
            occurred_at=g.detected_at, ports=(port,) if port is not None else (),
            vulns=(g.subject,) if g.kind == "exploit" else (), details=jsonable(g.as_dict())))
    return out


def _kb_ports(kb: KnowledgeBase, vulns: Iterable[str]) -> tuple[int, ...]:
    ports: set[int] = set()
    for v in vulns:
        entry = kb.find(v)
        if entry is not None:
            ports |= {int(m) for p in entry.ports for m in _KB_PORT.findall(p)}
    return tuple(sorted(ports))


def _exploit_sensors(store: Store, vulns: list[str]) -> dict[str, tuple[str, ...]]:
    if not vulns:
        return {}
    rows = store.query(
        "SELECT DISTINCT json_extract_string(data, '$.vuln') AS vuln, sensor FROM events "
        "WHERE event = 'exploit.attempt' AND json_extract_string(data, '$.vuln') IN "
        f"({', '.join('?' for _ in vulns)})", vulns).to_pylist()
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(str(r["vuln"]), set()).add(str(r["sensor"]))
    return {v: tuple(sorted(s)) for v, s in out.items()}


def exploit_facts(news: Iterable[ExploitActivity], kb: KnowledgeBase, level: int,
                  sensors: dict[str, tuple[str, ...]]) -> list[Fact]:
    out = []
    for e in news:
        entry = kb.find(e.vuln)
        name = f" ({entry.name})" if entry else ""
        details = jsonable(e.as_dict())
        if entry is not None:
            details["kb"] = jsonable(entry.as_dict())
        out.append(Fact(
            key=f"exploit:{e.vuln}", kind="exploit", level=level,
            title=f"newly exploited: {e.vuln}{name}", text=describe_exploit(e, kb, first_seen=True),
            occurred_at=e.first_seen_ever, ports=_kb_ports(kb, [e.vuln]),
            vulns=tuple(sorted({e.vuln} | ({e.cve} if e.cve else set()))), sensors=sensors.get(e.vuln, ()),
            details=details))
    return out


def campaign_facts(found: Iterable[Campaign], kb: KnowledgeBase, level: int) -> list[Fact]:
    out = []
    for c in found:
        vulns = tuple(sorted({x.split(" ")[0] for x in c.exploits if x and x != "?"}))
        growth = f", growth {100 * c.growth:+.0f}% week over week" if c.growth is not None else ""
        out.append(Fact(
            key=f"campaign:{c.id}", kind="campaign", level=level,
            title=f"new campaign: {c.name}" + (f" exploiting {', '.join(vulns)}" if vulns else ""),
            text=(f"campaign {c.name} ({c.id}): {c.attacks} attacks from {c.sources} sources on "
                  f"{len(c.sensors)} sensor(s) since {fmt_ts(c.first_seen)}, last {fmt_ts(c.last_seen)}{growth}"
                  + (f"; family by {c.reason}" if c.reason else "")),
            occurred_at=c.first_seen, ports=_kb_ports(kb, vulns), vulns=vulns,
            campaigns=tuple(sorted({c.name, c.id, *([c.family] if c.family else []), *c.aka})),
            sensors=c.sensors, details=jsonable(c.as_dict())))
    return out
