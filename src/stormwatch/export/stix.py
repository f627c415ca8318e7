"""STIX 2.1 bundle of what the sensors saw (OASIS STIX Version 2.1, 2021-06-10).

Objects (section numbers of the STIX 2.1 specification):

- ``identity`` (4.5): this installation (``identity_class`` ``organization``, creator of every
  object) and each sensor (``system``), the ``where_sighted_refs`` of the sightings;
- ``indicator`` (4.7) per attacking address (:mod:`stormwatch.export.attackers`), pattern
  ``[ipv4-addr:value = '...']`` / ``[ipv6-addr:value = '...']``, and per payload hash,
  ``[file:hashes.'SHA-256' = '...' OR file:hashes.MD5 = '...']``; ``valid_from`` the first
  sighting, ``valid_until`` the last one plus ``expire_days`` (the blocklists' expiry);
- ``sighting`` (5.2) per indicator with ``count`` (capped at the specification's 999,999,999),
  ``first_seen``, ``last_seen`` and the sensors that saw it;
- ``vulnerability`` (4.18) per exploited bulletin, with ``cve`` external references (and the
  bulletin and knowledge-base references);
- ``attack-pattern`` (4.1) "exploitation of <bulletin>": ``targets`` the vulnerability; the
  indicators of its attackers and exploit payloads ``indicates`` it (the specification's
  relationship table has no indicator-to-vulnerability relationship, hence the attack pattern);
- ``course-of-action`` (4.3) per knowledge-base mitigation, ``mitigates`` the vulnerability;
- ``malware`` (4.11, ``is_family``) per named campaign family
  (:func:`stormwatch.analytics.campaigns.campaigns`), ``targets`` the vulnerabilities it exploited.

Ids are UUIDv5 of stable keys (:func:`stormwatch.export.common.stable_uuid`), so a re-export of
the same data gives the same bundle, byte for byte. ``created`` is the first sighting of the
object in the window and ``modified`` its last one, so new sightings make a new version of the
same object. Attacker text (file names, campaign names) only ever appears as JSON string values.
"""

from __future__ import annotations

import importlib
from datetime import datetime, timedelta
from typing import Any, Final

from stormwatch.analytics.campaigns import campaigns
from stormwatch.analytics.engine import Engine
from stormwatch.export.attackers import EXPIRE_DAYS, Attacker, PayloadHash, Selection, select
from stormwatch.export.common import bulletin, cve, stable_uuid, utc
from stormwatch.threat.kb import KnowledgeBase, load_kb

MAX_COUNT: Final = 999_999_999  # STIX 2.1 5.2: sighting count
PRODUCER: Final = "stormwatch"
# The installation identity never changes; its timestamps are a constant so that re-exports match.
IDENTITY_CREATED: Final = datetime(2006, 1, 1)
KILL_CHAIN: Final = "lockheed-martin-cyber-kill-chain"
_PHASE: Final = {"exploit": "exploitation", "probe": "reconnaissance", "scanner": "reconnaissance",
                 "smb-sweep": "reconnaissance", "download": "delivery"}

Obj = dict[str, Any]


def stix_time(ts: datetime) -> str:
    """STIX timestamp (3.2): RFC 3339, UTC ``Z``, millisecond precision (created/modified need it)."""
    t = utc(ts)
    return f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond // 1000:03d}Z"


def pattern_string(value: str) -> str:
    """A STIX pattern string literal (9.3: ``'`` and ``\\`` escaped with ``\\``)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class _Builder:
    def __init__(self, producer: str) -> None:
        self.producer = producer
        self.objects: dict[str, Obj] = {}
        self.org = self.sdo("identity", "installation", IDENTITY_CREATED, IDENTITY_CREATED,
                            name=producer, identity_class="organization",
                            description="stormwatch early-warning installation (sensors, honeypots, log ingest)")

    def ident(self, kind: str, *key: str) -> str:
        return f"{kind}--{stable_uuid(self.producer, kind, *key)}"

    def sdo(self, kind: str, key: str, created: datetime, modified: datetime, **props: Any) -> str:
        oid = self.ident(kind, key)
        obj: Obj = {"type": kind, "spec_version": "2.1", "id": oid, "created": stix_time(created),
                    "modified": stix_time(max(created, modified))}
        if kind != "identity" or key != "installation":
            obj["created_by_ref"] = self.org
        obj.update({k: v for k, v in props.items() if v not in (None, [], "")})
        self.objects[oid] = obj
        return oid

    def relate(self, source: str, rel: str, target: str, created: datetime, modified: datetime) -> None:
        self.sdo("relationship", f"{source}|{rel}|{target}", created, modified,
                 relationship_type=rel, source_ref=source, target_ref=target)

    def sighting(self, of: str, seen: Any, sensors: dict[str, str]) -> None:
        first, last = seen.first_seen, seen.last_seen
        self.sdo("sighting", of, first, last, sighting_of_ref=of, first_seen=stix_time(first),
                 last_seen=stix_time(last), count=min(seen.count, MAX_COUNT),
                 where_sighted_refs=sorted(sensors[s.sensor] for s in seen.seen))


def stix_bundle(engine: Engine, *, since: datetime | None = None, kb: KnowledgeBase | None = None,
                until: datetime | None = None, expire_days: int = EXPIRE_DAYS, producer: str = PRODUCER,
                selection: Selection | None = None) -> dict[str, Any]:
    """The STIX 2.1 bundle of the attackers, payloads and exploited vulnerabilities of the window
    (module docstring), as a JSON-able dict. ``selection`` reuses one already made."""
    kb = kb if kb is not None else load_kb()
    sel = selection if selection is not None else select(engine, since=since, until=until, expire_days=expire_days)
    b = _Builder(producer)
    sensors = {s: b.sdo("identity", f"sensor|{s}", IDENTITY_CREATED, IDENTITY_CREATED, name=s,
                        identity_class="system", description=f"{producer} sensor {s}")
               for s in sel.sensors}
    patterns = _vulnerabilities(b, sel, kb)
    for a in sel.attackers:
        _address(b, a, sensors, patterns, expire_days)
    for h in sel.hashes:
        _payload(b, h, sensors, patterns, expire_days)
    _families(b, engine, sel, patterns)
    objects = sorted(b.objects.values(), key=lambda o: (o["type"], o["id"]))
    key = "|".join(f"{o['id']}@{o['modified']}" for o in objects)
    return {"type": "bundle", "id": f"bundle--{stable_uuid(producer, 'bundle', key)}", "objects": objects}


def _vulnerabilities(b: _Builder, sel: Selection, kb: KnowledgeBase) -> dict[str, tuple[str, str]]:
    """Vulnerability, attack pattern and courses of action per exploited bulletin; returns
    bulletin -> (attack-pattern id, vulnerability id)."""
    out: dict[str, tuple[str, str]] = {}
    for e in sel.exploits:
        vid = bulletin(e.vuln)
        if vid is None:
            continue
        entry = kb.find(vid)
        cves = list(entry.cves) if entry else [c for c in [cve(e.cve)] if c]
        refs: list[Obj] = [{"source_name": "cve", "external_id": c} for c in cves]
        refs.append({"source_name": "microsoft", "external_id": vid,
                     **({"url": entry.references[0]} if entry and entry.references else {})})
        created = datetime(entry.published.year, entry.published.month, entry.published.day) if entry \
            else e.first_seen_ever
        vuln = b.sdo("vulnerability", vid, created, created, name=cves[0] if cves else vid,
                     description=f"{vid}: {entry.name}" if entry else vid, external_references=refs)
        pattern = b.sdo("attack-pattern", vid, e.first_seen_ever, e.last_seen,
                        name=f"Exploitation of {vid}" + (f" ({', '.join(cves)})" if cves else ""),
                        description=(f"{e.attempts} exploit attempts and {e.probes} probes from {e.sources} "
                                     f"sources seen by {e.sensors} sensors"),
                        kill_chain_phases=[{"kill_chain_name": KILL_CHAIN, "phase_name": "exploitation"}])
        b.relate(pattern, "targets", vuln, e.first_seen_ever, e.last_seen)
        for m in entry.mitigations if entry else ():
            coa = b.sdo("course-of-action", f"{vid}|{m.action}", created, created, name=m.action,
                        description=m.reason)
            b.relate(coa, "mitigates", vuln, created, created)
        out[vid] = (pattern, vuln)
    return out


def _indicator(b: _Builder, key: str, seen: Attacker | PayloadHash, expire_days: int, **props: Any) -> str:
    until = seen.last_seen + timedelta(days=expire_days)
    return b.sdo("indicator", key, seen.first_seen, seen.last_seen, pattern_type="stix", pattern_version="2.1",
                 valid_from=stix_time(seen.first_seen), valid_until=stix_time(until), **props)


def _address(b: _Builder, a: Attacker, sensors: dict[str, str], patterns: dict[str, tuple[str, str]],
             expire_days: int) -> None:
    kind = "ipv4-addr" if a.ip.version == 4 else "ipv6-addr"
    phases = sorted({_PHASE[r] for r in a.reasons})
    ind = _indicator(b, f"{kind}|{a.address}", a, expire_days, name=f"Attacking address {a.address}",
                     description=f"{a.describe()}; {a.count} events seen by {len(a.seen)} sensors",
                     indicator_types=["malicious-activity"], pattern=f"[{kind}:value = {pattern_string(a.address)}]",
                     kill_chain_phases=[{"kill_chain_name": KILL_CHAIN, "phase_name": p} for p in phases])
    b.sighting(ind, a, sensors)
    for v in (*a.vulns, *a.probed):
        if v in patterns:
            b.relate(ind, "indicates", patterns[v][0], a.first_seen, a.last_seen)


def _payload(b: _Builder, h: PayloadHash, sensors: dict[str, str], patterns: dict[str, tuple[str, str]],
             expire_days: int) -> None:
    pattern = f"file:hashes.'SHA-256' = {pattern_string(h.sha256)}"
    if h.md5:
        pattern += f" OR file:hashes.MD5 = {pattern_string(h.md5)}"
    what = "Exploit payload" if h.kind == "exploit" else "Downloaded file"
    ind = _indicator(b, f"file|{h.sha256}", h, expire_days, name=f"{what} {h.sha256[:16]}",
                     description=(f"{what}" + (f' named "{h.name}"' if h.name else "")
                                  + (f", {h.vuln} attack" if h.vuln else "") + f"; seen {h.count} times"),
                     indicator_types=["malicious-activity"], pattern=f"[{pattern}]",
                     kill_chain_phases=[{"kill_chain_name": KILL_CHAIN,
                                         "phase_name": "exploitation" if h.kind == "exploit" else "installation"}])
    b.sighting(ind, h, sensors)
    if h.vuln in patterns:
        b.relate(ind, "indicates", patterns[h.vuln][0], h.first_seen, h.last_seen)


def _families(b: _Builder, engine: Engine, sel: Selection, patterns: dict[str, tuple[str, str]]) -> None:
    """A malware family per named campaign (cheap: campaigns are clustered from exploit events)."""
    for c in campaigns(engine, since=sel.since, until=sel.until):
        if not c.family:
            continue
        mal = b.sdo("malware", f"family|{c.family}", c.first_seen, c.last_seen, name=c.family, is_family=True,
                    aliases=sorted(set(c.aka)), malware_types=["bot", "worm"],
                    first_seen=stix_time(c.first_seen), last_seen=stix_time(c.last_seen),
                    description=f"campaign {c.id}: {c.attacks} attacks from {c.sources} sources")
        for x in c.exploits:
            vid = bulletin(x.split()[0])
            if vid in patterns and not x.endswith("probe"):
                b.relate(mal, "targets", patterns[vid][1], c.first_seen, c.last_seen)
                b.relate(patterns[vid][0], "uses", mal, c.first_seen, c.last_seen)


def validate_bundle(bundle: dict[str, Any]) -> int:
    """Parse ``bundle`` with the stix2 library (no custom content allowed); the object count, or
    the library's exception (stix2.exceptions.STIXError / ValueError) when it is not valid STIX 2.1."""
    stix2 = importlib.import_module("stix2")
    parsed = stix2.parse(bundle, allow_custom=False, version="2.1")
    return len(parsed.objects) if getattr(parsed, "objects", None) else 0
