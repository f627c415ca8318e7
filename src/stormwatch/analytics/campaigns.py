"""Campaigns: attacks clustered by fingerprint, named by family rules, with their activity.

``campaigns(engine)`` answers "how many bot families are behind the MS06-040 attacks, and is each
growing": the attacks of the window (:mod:`stormwatch.analytics.fingerprint`) are clustered
(:mod:`stormwatch.analytics.clustering`), each campaign is named by the first family rule that
matches it (:mod:`stormwatch.analytics.family_rules`) or else by a generated name, and described
by its activity.

Names. Every campaign has an ``id`` ``cmp-xxxxxx``: the first 6 hex digits of the SHA-256 of its
*consensus* (each non-timing feature's value held by more than half of its attacks, as
``name=value`` lines in feature order). It does not depend on the run, on the order of the input
or on which attacks led the clustering, only on what the campaign's attacks have in common, so it
stays the same as attacks are added (until the campaign's common traits change). A campaign a
family rule matches is called by the family's name; when several campaigns match one family,
each is ``Family/cmp-xxxxxx``.

Activity, per campaign: attacks, distinct sources and sensors, first and last seen, attacks per
UTC day, the exploits (bulletins) and exploit variants it used, the offers (downloads) its
payloads made, and week-over-week growth: attacks and distinct sources in the 7 days before the
window's end (``until``, else just after the newest attack of any campaign) against the 7 days
before those, ``growth = (this - previous) / previous`` (None when the previous week had none).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from stormwatch.analytics.clustering import THRESHOLD, Clusters, cluster
from stormwatch.analytics.engine import Engine
from stormwatch.analytics.family_rules import RuleSet, load_rules
from stormwatch.analytics.fingerprint import FEATURES, Fingerprint, columns, fingerprints

WEEK = timedelta(days=7)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_ID_FEATURES = tuple(f.name for f in FEATURES if f.group != "timing")


@dataclass(frozen=True)
class Campaign:
    name: str
    id: str
    family: str | None
    aka: tuple[str, ...]
    reason: str  # why the family was given (the rule and its file), empty for generated names
    attacks: int
    sources: int
    sensors: tuple[str, ...]
    first_seen: datetime
    last_seen: datetime
    exploits: tuple[str, ...]  # bulletins with kind exploit (probes: "MS08-067 probe")
    variants: tuple[str, ...]  # exploit variants in words, most attacks first
    offers: tuple[str, ...]
    daily: tuple[tuple[date, int], ...]
    week_attacks: int
    previous_week_attacks: int
    week_sources: int
    previous_week_sources: int
    consensus: dict[str, str] = field(default_factory=dict)

    @property
    def growth(self) -> float | None:
        """Week-over-week growth of attacks (0.23 = up 23 %), None without a previous week."""
        return _growth(self.week_attacks, self.previous_week_attacks)

    @property
    def sources_growth(self) -> float | None:
        return _growth(self.week_sources, self.previous_week_sources)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "id": self.id, "family": self.family, "aka": list(self.aka),
                "reason": self.reason, "attacks": self.attacks, "sources": self.sources,
                "sensors": list(self.sensors), "first_seen": self.first_seen.isoformat(),
                "last_seen": self.last_seen.isoformat(), "exploits": list(self.exploits),
                "variants": list(self.variants), "offers": list(self.offers),
                "daily": {d.isoformat(): n for d, n in self.daily}, "week_attacks": self.week_attacks,
                "previous_week_attacks": self.previous_week_attacks, "growth": self.growth,
                "week_sources": self.week_sources, "previous_week_sources": self.previous_week_sources,
                "sources_growth": self.sources_growth, "consensus": self.consensus}


@dataclass(frozen=True)
class CampaignDetail:
    """One campaign with its attacks (time order), sources and payloads (most attacks first)."""

    campaign: Campaign
    attacks: tuple[Fingerprint, ...]
    sources: tuple[tuple[str, int], ...]
    payloads: tuple[tuple[str, int], ...]

    def as_dict(self) -> dict[str, Any]:
        return {**self.campaign.as_dict(),
                "sources_list": [{"src_ip": s, "attacks": n} for s, n in self.sources],
                "payloads": [{"sha256": s, "attacks": n} for s, n in self.payloads],
                "attacks_list": [{"ts": a.ts.isoformat(), "sensor": a.sensor, "session": a.session,
                                  "src_ip": a.src_ip, "variant": a.variant,
                                  "payload_sha256": a.get("payload_sha256")} for a in self.attacks]}


def _growth(now: int, before: int) -> float | None:
    return (now - before) / before if before else None


def campaigns(engine: Engine, *, since: datetime | None = None, until: datetime | None = None,
              rules: RuleSet | Sequence[str | Path] | None = None, payloads: str | Path | None = None,
              threshold: float | None = None) -> list[Campaign]:
    """The campaigns of the attacks with ``since <= ts < until``, most attacks first.

    ``rules``: a :class:`RuleSet`, rule files to add to the built-in ones, or None (built-in only).
    ``payloads``: the sensor's payload directory, for the YARA rules (without it only the
    fingerprint rules name campaigns)."""
    return [d.campaign for d in _details(engine, since, until, rules, payloads, threshold)]


def campaign(engine: Engine, name: str, *, since: datetime | None = None, until: datetime | None = None,
             rules: RuleSet | Sequence[str | Path] | None = None, payloads: str | Path | None = None,
             threshold: float | None = None) -> CampaignDetail | None:
    """One campaign by name, id (``cmp-xxxxxx``) or family (case-insensitive), or None."""
    wanted = name.strip().lower()
    details = _details(engine, since, until, rules, payloads, threshold)
    for attr in ("name", "id", "family"):
        for d in details:
            if str(getattr(d.campaign, attr) or "").lower() == wanted:
                return d
    return None


def campaign_count(engine: Engine, vuln: str, since: datetime | None = None, until: datetime | None = None) -> int:
    """Distinct campaigns that sent an exploit (not only a probe) for ``vuln`` in the window: the
    threat level's "N distinct campaigns exploiting MS06-040"."""
    prints = fingerprints(engine, since, until)
    found = cluster(columns(prints))
    hit = {int(found.labels[i]) for i, fp in enumerate(prints)
           if fp.get("vuln") == vuln and fp.get("kind") == "exploit"}
    return len(hit)


def campaign_id(consensus: dict[str, str]) -> str:
    """``cmp-`` and 6 hex digits of the SHA-256 of the consensus' non-timing features."""
    text = "\n".join(f"{n}={consensus[n]}" for n in _ID_FEATURES if n in consensus)
    return "cmp-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:6]


def _ruleset(rules: RuleSet | Sequence[str | Path] | None) -> RuleSet:
    if isinstance(rules, RuleSet):
        return rules
    return load_rules(rules or ())


def _details(engine: Engine, since: datetime | None, until: datetime | None,
             rules: RuleSet | Sequence[str | Path] | None, payloads: str | Path | None,
             threshold: float | None) -> list[CampaignDetail]:
    prints = fingerprints(engine, since, until)
    found = cluster(columns(prints), threshold=THRESHOLD if threshold is None else threshold)
    members: list[list[Fingerprint]] = [[] for _ in range(found.count)]
    for fp, label in zip(prints, found.labels.tolist(), strict=True):
        members[label].append(fp)
    ruleset = _ruleset(rules)
    families = _families(found, members, ruleset, Path(payloads) if payloads else None)
    end = until or (max(fp.ts for fp in prints) + timedelta(microseconds=1) if prints else datetime(1970, 1, 1))
    ids = _unique([campaign_id(c) for c in found.consensus])
    per_family = Counter(f[0] for f in families if f is not None)
    out = []
    for k, group in enumerate(members):
        fam = families[k]
        family: str | None
        aka: tuple[str, ...]
        if fam is None:
            name, family, aka, reason = ids[k], None, (), ""
        else:
            family, aka, reason = fam
            name = family if per_family[family] == 1 else f"{family}/{ids[k]}"
        out.append(detail(_describe(name, ids[k], family, aka, reason, group, found.consensus[k], end), group))
    return out


def _unique(ids: list[str]) -> list[str]:
    seen: Counter[str] = Counter()
    out = []
    for i in ids:
        seen[i] += 1
        out.append(i if seen[i] == 1 else f"{i}-{seen[i]}")
    return out


def _families(found: Clusters, members: list[list[Fingerprint]], rules: RuleSet,
              payload_dir: Path | None) -> list[tuple[str, tuple[str, ...], str] | None]:
    out: list[tuple[str, tuple[str, ...], str] | None] = []
    cache: dict[str, list[str]] = {}
    for k, group in enumerate(members):
        rule = rules.family_of(found.consensus[k])
        if rule is not None:
            out.append((rule.name, rule.aka, f"fingerprint rule {rule.name!r} ({rule.source})"
                        + (f": {rule.reason}" if rule.reason else "")))
            continue
        votes: Counter[str] = Counter()
        scanned = 0
        if payload_dir is not None and rules.yara is not None:
            for fp in group:
                sha = fp.get("payload_sha256")
                if sha is None or not _SHA256.fullmatch(sha):
                    continue
                if sha not in cache:
                    cache[sha] = _yara_file(rules, payload_dir / sha[:2] / sha)
                if cache[sha] or (payload_dir / sha[:2] / sha).is_file():
                    scanned += 1
                    votes.update(set(cache[sha]))
        top = votes.most_common(1)
        if top and top[0][1] * 2 > scanned:
            out.append((top[0][0], (), f"YARA rule for {top[0][0]}: {top[0][1]} of {scanned} payloads match"))
        else:
            out.append(None)
    return out


def _yara_file(rules: RuleSet, path: Path) -> list[str]:
    try:
        data = path.read_bytes()
    except OSError:
        return []
    return rules.yara_families(data)


def _describe(name: str, cid: str, family: str | None, aka: tuple[str, ...], reason: str,
              group: Sequence[Fingerprint], consensus: dict[str, str], end: datetime) -> Campaign:
    days = Counter(fp.ts.date() for fp in group)
    week = [fp for fp in group if end - WEEK <= fp.ts < end]
    previous = [fp for fp in group if end - 2 * WEEK <= fp.ts < end - WEEK]
    exploits = Counter((fp.get("vuln") or "?") + ("" if fp.get("kind") == "exploit" else f" {fp.get('kind')}")
                       for fp in group)
    return Campaign(
        name=name, id=cid, family=family, aka=aka, reason=reason, attacks=len(group),
        sources=len({fp.src_ip for fp in group}), sensors=tuple(sorted({fp.sensor for fp in group})),
        first_seen=min(fp.ts for fp in group), last_seen=max(fp.ts for fp in group),
        exploits=_ranked(exploits), variants=_ranked(Counter(fp.variant for fp in group)),
        offers=_ranked(Counter(o for o in (fp.offer for fp in group) if o)),
        daily=tuple(sorted(days.items())), week_attacks=len(week), previous_week_attacks=len(previous),
        week_sources=len({fp.src_ip for fp in week}), previous_week_sources=len({fp.src_ip for fp in previous}),
        consensus=consensus)


def _ranked(counts: Counter[str]) -> tuple[str, ...]:
    return tuple(k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def detail(campaign_: Campaign, group: Iterable[Fingerprint]) -> CampaignDetail:
    attacks = tuple(sorted(group, key=lambda fp: (fp.ts, fp.sensor, fp.session)))
    sources = Counter(fp.src_ip for fp in attacks)
    shas = Counter(s for s in (fp.get("payload_sha256") for fp in attacks) if s)
    return CampaignDetail(campaign_, attacks, tuple(sorted(sources.items(), key=lambda kv: (-kv[1], kv[0]))),
                          tuple(sorted(shas.items(), key=lambda kv: (-kv[1], kv[0]))))
