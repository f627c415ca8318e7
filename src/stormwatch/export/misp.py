"""MISP event of what the sensors saw, in the MISP core format (draft-dulaunoy-misp-core-format-20,
https://github.com/MISP/misp-rfc; section numbers below are that draft's).

The event (2.2) carries ``uuid``, ``info`` (at most 256 characters, no newline), ``published``
(false: an operator reviews before publishing), ``threat_level_id``, ``analysis``, ``date``,
``timestamp``, ``publish_timestamp`` ("0": never published), ``distribution`` (default "0", your
organisation only), ``sharing_group_id`` "0", ``Org``/``Orgc`` and ``Tag``. Instance-local
human-readable ids (``id``, ``org_id``, ``orgc_id``, ``event_id``) are "0": they are assigned by
the MISP instance that imports the event, which keys on the uuids.

``threat_level_id`` from stormwatch's threat level in force at the end of the window (the
recorded level, :mod:`stormwatch.threat.state`): 4 extreme and 3 high -> "1" High; 2 elevated ->
"2" Medium; 1 normal -> "3" Low; no level ever recorded (or an engine without a store) -> "4"
Undefined. The exact level is also a tag, ``stormwatch:threat-level="N"`` (2.2.1.5: "if a higher
granularity is required, a MISP taxonomy applied as a Tag SHOULD be preferred").

``analysis`` is "0" Initial: the event is machine-made and nobody has reviewed it yet.

Attributes (2.3; category/type pairs from 2.3.2.3): attacking addresses as ``ip-src`` (download
servers as ``ip-dst``) in "Network activity" with ``to_ids`` true; payload hashes as ``sha256``
and ``md5`` in "Payload delivery" (``filename|sha256`` when the attacker's file name has no
``|`` or control character in it) with ``to_ids`` true; exploited vulnerabilities as
``vulnerability`` (the CVE) in "External analysis", ``to_ids`` false. Each has ``first_seen`` and
``last_seen`` and a comment with the count and reasons.

Sightings (2.9): MISP has no count field, a Sighting element is one sighting. Per attribute and
sensor we give one element of type "0" at the sensor's last sighting (and one at its first when
different), ``source`` ``stormwatch/<sensor>``; actionable attributes get one of type "2"
(expiration) at last seen plus ``expire_days``, the blocklists' expiry. Counts are in the
attribute's comment.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any, Final

from stormwatch.analytics.engine import DuckDBEngine, Engine
from stormwatch.export.attackers import EXPIRE_DAYS, Attacker, PayloadHash, Selection, select
from stormwatch.export.common import bulletin, cve, epoch, stable_uuid, utc
from stormwatch.store import Store
from stormwatch.threat import state
from stormwatch.threat.kb import KnowledgeBase, load_kb

PRODUCER: Final = "stormwatch"
MAX_INFO: Final = 256
TLP_COLOURS: Final = {"clear": "#FFFFFF", "white": "#FFFFFF", "green": "#33FF00", "amber": "#FFC000",
                      "amber+strict": "#FFC000", "red": "#FF2B2B"}
_UNSAFE_NAME: Final = re.compile(r"[|\x00-\x1f\x7f]")

Obj = dict[str, Any]


def misp_threat_level(level: int | None) -> str:
    """stormwatch level (1-4, None when never evaluated) -> MISP threat_level_id (module docstring)."""
    if level is None:
        return "4"
    return {4: "1", 3: "1", 2: "2", 1: "3"}[level]


def _level_at(engine: Engine, at: datetime | None) -> int | None:
    store = engine.store if isinstance(engine, DuckDBEngine) else None
    if not isinstance(store, Store):
        return None
    change = state.last_change(store, at)
    return change.level if change else None


def _iso(ts: datetime) -> str:
    return utc(ts).isoformat(timespec="microseconds")


def _tag(name: str, colour: str = "#0088CC") -> Obj:
    return {"name": name, "colour": colour, "exportable": True, "id": "0"}


def _quote(value: str) -> str:
    """A machine tag value in double quotes (MISP taxonomies' ``namespace:predicate="value"``)."""
    return json.dumps(value, ensure_ascii=True)


class _Event:
    def __init__(self, producer: str, event_uuid: str, expire_days: int) -> None:
        self.producer, self.event_uuid, self.expire_days = producer, event_uuid, expire_days
        self.attributes: list[Obj] = []

    def add(self, key: str, category: str, typ: str, value: str, to_ids: bool, comment: str,
            seen: Attacker | PayloadHash | None, last: datetime) -> None:
        uid = stable_uuid(self.producer, "misp-attribute", key)
        attr: Obj = {"uuid": uid, "id": "0", "event_id": "0", "category": category, "type": typ, "value": value,
                     "to_ids": to_ids, "distribution": "5", "sharing_group_id": "0", "deleted": False,
                     "timestamp": str(epoch(last)), "comment": comment, "object_relation": None}
        if seen is not None:
            attr["first_seen"], attr["last_seen"] = _iso(seen.first_seen), _iso(seen.last_seen)
            sightings = []
            for s in seen.seen:
                for ts in sorted({s.first_seen, s.last_seen}):
                    sightings.append(self._sighting(uid, ts, "0", s.sensor))
            if to_ids:
                sightings.append(self._sighting(uid, seen.last_seen + timedelta(days=self.expire_days), "2", None))
            attr["Sighting"] = sightings
        self.attributes.append(attr)

    def _sighting(self, attribute_uuid: str, ts: datetime, typ: str, sensor: str | None) -> Obj:
        return {"type": typ, "uuid": attribute_uuid, "date_sighting": str(epoch(ts)), "event_id": "0",
                "attribute_id": "0", "source": f"{self.producer}/{sensor}" if sensor else self.producer}


def misp_event(engine: Engine, *, since: datetime | None = None, kb: KnowledgeBase | None = None,
               until: datetime | None = None, expire_days: int = EXPIRE_DAYS, producer: str = PRODUCER,
               tlp: str = "amber", distribution: int = 0, selection: Selection | None = None) -> dict[str, Any]:
    """The MISP event (``{"Event": {...}}``) of the window's attackers, payloads and exploited
    vulnerabilities (module docstring)."""
    if tlp not in TLP_COLOURS:
        raise ValueError(f"unknown TLP {tlp!r} (one of {', '.join(TLP_COLOURS)})")
    if distribution not in range(5):
        raise ValueError("distribution is 0-4 (MISP core format 2.2.1.14)")
    kb = kb if kb is not None else load_kb()
    sel = selection if selection is not None else select(engine, since=since, until=until, expire_days=expire_days)
    window = f"{since:%Y-%m-%d}" if since else "all"
    event_uuid = stable_uuid(producer, "misp-event", window)
    ev = _Event(producer, event_uuid, expire_days)
    last = sel.as_of or datetime(1970, 1, 1)
    for a in sel.attackers:
        server = a.reasons == ("download",)
        ev.add(f"ip|{a.address}", "Network activity", "ip-dst" if server else "ip-src", a.address, True,
               f"{a.describe()}; {a.count} events seen by {len(a.seen)} sensors", a, a.last_seen)
    for h in sel.hashes:
        what = "exploit payload" if h.kind == "exploit" else "downloaded file"
        comment = f"{what}" + (f", {h.vuln} attack" if h.vuln else "") + f"; seen {h.count} times"
        name = h.name if h.name and not _UNSAFE_NAME.search(h.name) and len(h.name) <= 255 else None
        for algo, digest in (("sha256", h.sha256), ("md5", h.md5)):
            if digest:
                typ, value = (f"filename|{algo}", f"{name}|{digest}") if name else (algo, digest)
                ev.add(f"{algo}|{digest}", "Payload delivery", typ, value, True, comment, h, h.last_seen)
    vulns = []
    for e in sel.exploits:
        vid = bulletin(e.vuln)
        if vid is None:
            continue
        entry = kb.find(vid)
        cves = list(entry.cves) if entry else [c for c in [cve(e.cve)] if c]
        vulns.append(vid)
        for c in cves:
            ev.add(f"vulnerability|{c}", "External analysis", "vulnerability", c, False,
                   f"{vid}: {e.attempts} exploit attempts, {e.probes} probes, {e.sources} sources", None, e.last_seen)
    level = _level_at(engine, sel.until or sel.as_of)
    tags = [_tag(f"tlp:{tlp}", TLP_COLOURS[tlp]),
            _tag(f"stormwatch:threat-level={_quote(str(level) if level else 'undefined')}")]
    tags += [_tag(f"stormwatch:vulnerability={_quote(v)}") for v in vulns]
    info = (f"{producer}: {len(sel.attackers)} attacking addresses, {len(sel.hashes)} payloads"
            + (f", exploited {', '.join(vulns)}" if vulns else "")
            + (f" since {since:%Y-%m-%d}" if since else ""))
    first = min((a.first_seen for a in sel.attackers), default=sel.as_of or last)
    org = {"id": "0", "name": producer, "uuid": stable_uuid(producer, "misp-org")}
    event: Obj = {
        "uuid": event_uuid, "id": "0", "info": info[:MAX_INFO], "published": False,
        "threat_level_id": misp_threat_level(level), "analysis": "0", "date": f"{first:%Y-%m-%d}",
        "timestamp": str(epoch(last)), "publish_timestamp": "0", "first_publication": "0",
        "distribution": str(distribution), "sharing_group_id": "0", "org_id": "0", "orgc_id": "0",
        "attribute_count": str(len(ev.attributes)), "locked": False, "extends_uuid": "",
        "Org": org, "Orgc": dict(org), "Tag": tags, "Attribute": ev.attributes,
    }
    return {"Event": event}
