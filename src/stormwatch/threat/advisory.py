"""Advisories: for a vulnerability under active exploitation, what it is and what to do, joined
with what this installation observed.

An advisory joins the knowledge-base entry (:mod:`stormwatch.threat.kb`: name, CVEs, bulletin,
ports, affected systems, patch, severity, public exploits, malware) with the observations (first
seen, attempts, sources, sensors, attempts per day, surges on the flaw's ports or of its
exploits, the outbreak estimate, the current threat level and its reasons) and the recommended
actions in order: the knowledge base's mitigations, preceded by isolating any of our own hosts
seen scanning out on the flaw's ports. The layout follows the MS06-040 advisories of August
2006 (research notes section 5.1 and goal 5 of section 8).

Output: Markdown, HTML (self-contained; every string that comes from data, an attacker's address
or a sensor's name as much as a knowledge-base text, goes through :func:`html.escape`) and a
dict for JSON. A vulnerability is *under active exploitation* when at least one exploit attempt
(kind ``exploit``) against it was seen in the window (default: the 7 days before ``at``).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from stormwatch.analytics.engine import Engine
from stormwatch.analytics.exploits import ExploitActivity, ExploitDay, exploit_activity, exploit_daily
from stormwatch.analytics.signals import Outbreak, Scanner, Surge
from stormwatch.threat.advisory_templates import HTML, MARKDOWN
from stormwatch.threat.kb import KnowledgeBase, Vuln
from stormwatch.threat.level import describe_outbreak, describe_surge, fmt_ts, level_label
from stormwatch.threat.rules import Signals, kb_ports

DEFAULT_DAYS = 7


@dataclass(frozen=True, slots=True)
class Action:
    action: str
    reason: str


@dataclass(frozen=True, slots=True)
class Advisory:
    vuln: Vuln
    at: datetime
    since: datetime
    activity: ExploitActivity | None
    daily: tuple[ExploitDay, ...]
    surges: tuple[Surge, ...]
    outbreak: Outbreak | None
    infected_local: tuple[Scanner, ...]
    actions: tuple[Action, ...]
    level: int
    level_reasons: tuple[str, ...]
    level_source: str
    notes: tuple[str, ...] = field(default=())
    campaigns: tuple[Any, ...] = field(default=())  # analytics.campaigns.Campaign exploiting it

    def as_dict(self) -> dict[str, Any]:
        return {
            "vuln": self.vuln.as_dict(), "at": self.at, "since": self.since,
            "activity": self.activity.as_dict() if self.activity else None,
            "daily": [{"day": d.day, "attempts": d.attempts, "probes": d.probes, "sources": d.sources,
                       "sensors": d.sensors} for d in self.daily],
            "surges": [s.as_dict() for s in self.surges],
            "outbreak": self.outbreak.as_dict() if self.outbreak else None,
            "infected_local": [s.as_dict() for s in self.infected_local],
            "actions": [{"action": a.action, "reason": a.reason} for a in self.actions],
            "level": self.level, "level_reasons": list(self.level_reasons), "level_source": self.level_source,
            "notes": list(self.notes),
            "campaigns": [{"name": c.name, "id": c.id, "family": c.family, "attacks": c.attacks, "sources": c.sources,
                           "first_seen": c.first_seen, "last_seen": c.last_seen, "growth": c.growth,
                           "offers": list(c.offers)} for c in self.campaigns],
        }


def under_exploitation(engine: Engine, at: datetime, days: int = DEFAULT_DAYS) -> list[ExploitActivity]:
    """Bulletins with at least one exploit attempt in the ``days`` before ``at``; most first."""
    return [e for e in exploit_activity(engine, since=at - timedelta(days=days), until=at) if e.attempts > 0]


def build_advisory(engine: Engine, vuln: Vuln, at: datetime, *, kb: KnowledgeBase, signals: Signals,
                   level: int, level_reasons: tuple[str, ...] | list[str], level_source: str,
                   days: int = DEFAULT_DAYS) -> Advisory:
    """The advisory for ``vuln`` as of ``at``: ``signals`` are those of the threat level
    (:func:`stormwatch.threat.level.gather_signals`), ``level`` the level in force with its reasons."""
    since = at - timedelta(days=days)
    ids = {vuln.id, *vuln.cves}
    activity = next((e for e in exploit_activity(engine, since=since, until=at)
                     if e.vuln.upper() in ids or (e.cve or "").upper() in ids), None)
    daily = tuple(exploit_daily(engine, vuln.id, since=since, until=at))
    ports = kb_ports(kb, [vuln.id])
    # surges on the flaw's ports or of its exploits, still going or begun in the window
    surges = tuple(g for g in signals.surges
                   if ((g.kind == "port" and g.subject.isdigit() and int(g.subject) in ports)
                       or (g.kind == "exploit" and g.subject.upper() in ids)) and (g.active or g.since >= since))
    outbreak = next((o for o in signals.outbreaks if o.subject.upper() in ids), None)
    infected = tuple(x for x in signals.scanners if x.direction == "outbound" and set(x.ports) & ports)
    campaigns = tuple(c for c in signals.campaigns or () if ids & {x.upper() for x in c.exploits})
    actions = [Action(m.action, m.reason) for m in vuln.mitigations]
    if infected:
        more = f" and {len(infected) - 10} more" if len(infected) > 10 else ""
        hosts = ", ".join(x.src for x in infected[:10]) + more
        actions.insert(0, Action(f"Isolate and rebuild the local hosts scanning out on {_ports(ports)}: {hosts}",
                                 "they are most likely infected and are spreading the attack from inside"))
    notes = list(signals.notes)
    notes += [f"{kind} detection was not available for this advisory" for kind in signals.missing]
    if activity is None or activity.attempts == 0:
        notes.append(f"no exploit attempt against {vuln.id} was seen in the {days} days before {fmt_ts(at)}")
    return Advisory(vuln, at, since, activity, daily, surges, outbreak, infected, tuple(actions), level,
                    tuple(level_reasons), level_source, tuple(notes), campaigns)


def _ports(ports: set[int]) -> str:
    return "ports " + ", ".join(str(p) for p in sorted(ports))


# -- common wording -----------------------------------------------------------------------------

def _facts(a: Advisory) -> list[tuple[str, str]]:
    v = a.vuln
    sev = v.severity.rating + (f" (CVSS {v.severity.cvss:g})" if v.severity.cvss is not None else "")
    return [("Bulletin", v.id), ("CVE", ", ".join(v.cves)), ("Published", v.published.isoformat()),
            ("Severity", sev), ("Patch", v.patch), ("Ports", ", ".join(v.ports)),
            ("Services", "; ".join(v.services)), ("Affected", ", ".join(v.affected)),
            ("Public exploits", "; ".join(v.exploits) or "none known"),
            ("Malware known to use it", "; ".join(v.malware) or "none known")]


def _observed(a: Advisory) -> list[str]:
    out = []
    if a.activity is not None:
        e = a.activity
        out.append(f"First seen {fmt_ts(e.first_seen_ever)}; last seen {fmt_ts(e.last_seen)}.")
        out.append(f"{e.attempts} exploit attempts from {e.sources} sources in {e.sessions} sessions, "
                   f"seen by {e.sensors} sensor{'s' if e.sensors != 1 else ''}"
                   + (f"; {e.probes} probes from {e.probe_sources} sources" if e.probes else "") + ".")
    else:
        out.append("Not seen by this installation in the window.")
    if a.campaigns:
        out.append(f"{len(a.campaigns)} distinct campaign{'s' if len(a.campaigns) != 1 else ''} exploiting it: "
                   + "; ".join(_campaign(c) for c in a.campaigns[:8])
                   + (f"; and {len(a.campaigns) - 8} more" if len(a.campaigns) > 8 else "") + ".")
    out += [f"Surge: {describe_surge(g)}." for g in a.surges]
    if not a.surges:
        out.append("No surge on its ports or of its exploits.")
    if a.outbreak is not None:
        o = a.outbreak
        line = f"Outbreak estimate: {describe_outbreak(o)}"
        if o.population is not None:
            lo = f"{o.population_low:.0f}" if o.population_low is not None else "?"
            hi = f"{o.population_high:.0f}" if o.population_high is not None else "?"
            line += f"; vulnerable population about {o.population:.0f} ({lo} to {hi})"
        out.append(line + (f" ({o.note})" if o.note else "") + ".")
    out += [f"Local host {x.src} scanning out on ports {', '.join(map(str, x.ports))} "
            f"({x.targets} targets, decided {fmt_ts(x.decided_at)})." for x in a.infected_local]
    return out


def _campaign(c: Any) -> str:
    growth = f", {c.growth:+.0%} week over week" if c.growth is not None else ""
    offers = f", offers {', '.join(c.offers[:2])}" if c.offers else ""
    return f"{c.name} ({c.attacks} attacks from {c.sources} sources{growth}{offers})"


# -- Markdown -----------------------------------------------------------------------------------

# Only what Markdown (or HTML inside it) acts on mid-line: every line we write starts with our own
# "- ", "| " or "1. ", so line-start markers (#, -, +) in data cannot take effect; "(" is inert
# without an unescaped "]" before it.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&])")


def md(text: object) -> str:
    """``text`` as literal Markdown: punctuation that Markdown (or HTML inside it) would act on
    is backslash-escaped, line breaks become spaces."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def to_markdown(a: Advisory) -> str:
    daily = ""
    if a.daily:
        rows = "\n".join(f"| {d.day} | {d.attempts} | {d.probes} | {d.sources} | {d.sensors} |" for d in a.daily)
        daily = "Per day (UTC):\n\n| day | attempts | probes | sources | sensors |\n|---|--:|--:|--:|--:|\n" + rows
    actions = "\n".join(f"{i}. **{md(x.action)}**  \n   because {md(x.reason)}" for i, x in enumerate(a.actions, 1))
    reasons = "\n".join(f"- {md(r)}" for r in a.level_reasons) or "- no rule holds"
    notes = "\n".join(f"> note: {md(n)}" for n in a.notes)
    return MARKDOWN.substitute(
        id=md(a.vuln.id), name=md(a.vuln.name), level=md(level_label(a.level)), at=md(fmt_ts(a.at)),
        since=md(fmt_ts(a.since)), facts="\n".join(f"| {md(k)} | {md(v)} |" for k, v in _facts(a)),
        observed="\n".join(f"- {md(line)}" for line in _observed(a)), daily=daily, actions=actions,
        level_reasons=f"({md(a.level_source)})\n\n{reasons}",
        references="\n".join(f"- <{r}>" if _safe_url(r) else f"- {md(r)}" for r in a.vuln.references),
        notes=("\n" + notes) if notes else "")


# -- HTML ---------------------------------------------------------------------------------------

def h(text: object) -> str:
    return html.escape(str(text), quote=True)


def _safe_url(url: str) -> bool:
    return re.fullmatch(r"https?://[^\s<>\"'`]+", url) is not None


def to_html(a: Advisory) -> str:
    daily = ""
    if a.daily:
        rows = "\n".join(f"<tr><td>{h(d.day)}</td><td class=\"n\">{d.attempts}</td><td class=\"n\">{d.probes}</td>"
                         f"<td class=\"n\">{d.sources}</td><td class=\"n\">{d.sensors}</td></tr>" for d in a.daily)
        daily = ("<p>Per day (UTC):</p>\n<table>\n<tr><th>day</th><th>attempts</th><th>probes</th><th>sources</th>"
                 f"<th>sensors</th></tr>\n{rows}\n</table>")
    actions = "\n".join(f"<li><strong>{h(x.action)}</strong><br><span class=\"why\">because {h(x.reason)}</span></li>"
                        for x in a.actions)
    reasons = "\n".join(f"<li>{h(r)}</li>" for r in a.level_reasons) or "<li>no rule holds</li>"
    refs = "\n".join(f"<li><a href=\"{h(r)}\" rel=\"noreferrer\">{h(r)}</a></li>" if _safe_url(r)
                     else f"<li>{h(r)}</li>" for r in a.vuln.references)
    notes = "\n".join(f"<p class=\"why\">note: {h(n)}</p>" for n in a.notes)
    return HTML.substitute(
        id=h(a.vuln.id), name=h(a.vuln.name), level=h(level_label(a.level)), level_number=int(a.level),
        at=h(fmt_ts(a.at)), since=h(fmt_ts(a.since)),
        facts="\n".join(f"<tr><th>{h(k)}</th><td>{h(v)}</td></tr>" for k, v in _facts(a)),
        observed="<ul>\n" + "\n".join(f"<li>{h(line)}</li>" for line in _observed(a)) + "\n</ul>",
        daily=daily, actions=f"<ol>\n{actions}\n</ol>",
        level_reasons=f"<p class=\"why\">{h(a.level_source)}</p>\n<ul>\n{reasons}\n</ul>",
        references=f"<ul>\n{refs}\n</ul>", notes=notes)
