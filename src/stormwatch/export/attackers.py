"""What the exports export: the attacking addresses and payload hashes of a time window.

Every format (STIX, MISP, blocklists, firewall rules) reads the same selection, so an address in
the blocklist is also an indicator in the STIX bundle and an ``ip-src`` in the MISP event.

An address is selected when, in the window, it

- ``exploit``: sent an exploit to a honeypot (``exploit.attempt`` of kind ``exploit``);
- ``probe``: sent a vulnerability probe (kind ``probe``, e.g. Metasploit's ``check``);
- ``scanner``: was decided an *inbound* scanner (:func:`stormwatch.analytics.scanners.detect_scanners`,
  TRW where outcomes exist, the distinct-targets threshold where they do not);
- ``smb-sweep``: reached at least ``smb_targets`` (default 20) distinct addresses on the ports of
  the Windows file-sharing worms (TCP/UDP 135, 139, 445) in firewall records: the "top firewall
  sources" of the brief, with a threshold that background radiation (a few contacts per source)
  does not reach but a worm's sweep does within minutes;
- ``download``: served a payload's next stage (the host of a ``payload.offer`` or the server of a
  ``payload.file``, when it is an address literal; host names are left out).

Left out: addresses :func:`stormwatch.export.common.parse_address` refuses, and addresses inside
the operator's own networks (``local_nets``, default
:data:`stormwatch.analytics.scanners.DEFAULT_LOCAL_NETS`): an infected local host is a case for
cleaning, not for the perimeter's blocklist (``stormwatch scanners --direction outbound`` lists
them). ``min_events`` drops addresses with fewer events than that.

Figures per address: ``count`` is its events in the window that the selection rests on (firewall
records with their repeat counts, exploit attempts and probes, offers naming it), with first and
last seen, per sensor and in total. An entry ``expires`` ``expire_days`` after its last sighting;
:func:`active` keeps those not yet expired at the newest stored event (not the wall clock, so an
export of old data, the demo's 2006, is what it was then).

Payload hashes: the SHA-256 of each kept exploit argument (``exploit.attempt`` ``payload_sha256``,
with the MD5 that payload analysis recorded for it, ``payload.shellcode`` ``payload_md5``) and of
each file an attack downloaded (``payload.file`` ``sha256``/``md5`` and its file name, which is
attacker data).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from stormwatch.analytics.engine import Engine, Row
from stormwatch.analytics.exploits import ExploitActivity, exploit_activity
from stormwatch.analytics.scanners import detect_scanners, is_local, parse_local_nets
from stormwatch.export.common import IPAddress, bulletin, md5_hex, parse_address, sha256_hex

EARLIEST: Final = datetime(1970, 1, 1)
LATEST: Final = datetime(9999, 12, 31)
SMB_PORTS: Final = (135, 139, 445)
SMB_TARGETS: Final = 20
EXPIRE_DAYS: Final = 7
REASONS: Final = ("exploit", "probe", "scanner", "smb-sweep", "download")

SOURCES_SQL: Final = """
SELECT src_ip, sensor,
       CAST(sum(CASE WHEN event = 'fw.connection' THEN count ELSE 0 END) AS BIGINT) AS records,
       CAST(sum(CASE WHEN event = 'exploit.attempt' THEN 1 ELSE 0 END) AS BIGINT) AS attempts,
       min(ts) AS first_seen, max(ts) AS last_seen
FROM events
WHERE ts >= {since} AND ts < {until} AND src_ip IS NOT NULL
  AND event IN ('fw.connection', 'exploit.attempt')
  AND ({everyone} = 1 OR src_ip IN (
      SELECT src_ip FROM events
      WHERE event = 'exploit.attempt' AND ts >= {since} AND ts < {until}
      UNION
      SELECT src_ip FROM events
      WHERE event = 'fw.connection' AND dst_port IN (135, 139, 445) AND ts >= {since} AND ts < {until}
      GROUP BY src_ip HAVING count(DISTINCT dst_ip) >= {smb_targets}))
GROUP BY src_ip, sensor
"""
"""Per candidate source and sensor: firewall records, exploit events, first and last seen.
``everyone`` = 1 drops the candidate filter (for scanners, which SQL cannot name)."""

SMB_SQL: Final = """
SELECT src_ip, count(DISTINCT dst_ip) AS targets
FROM events
WHERE event = 'fw.connection' AND dst_port IN (135, 139, 445) AND ts >= {since} AND ts < {until}
  AND src_ip IS NOT NULL
GROUP BY src_ip HAVING count(DISTINCT dst_ip) >= {smb_targets}
"""

EXPLOITS_SQL: Final = """
SELECT src_ip, json_extract_string(data, '$.vuln') AS vuln, json_extract_string(data, '$.kind') AS kind,
       count(*) AS n
FROM events
WHERE event = 'exploit.attempt' AND ts >= {since} AND ts < {until} AND src_ip IS NOT NULL
GROUP BY src_ip, json_extract_string(data, '$.vuln'), json_extract_string(data, '$.kind')
"""

SERVERS_SQL: Final = """
SELECT host, sensor, count(*) AS n, min(ts) AS first_seen, max(ts) AS last_seen FROM (
    SELECT json_extract_string(data, '$.host') AS host, sensor, ts FROM events
    WHERE event = 'payload.offer' AND ts >= {since} AND ts < {until}
    UNION ALL
    SELECT json_extract_string(data, '$.source_host') AS host, sensor, ts FROM events
    WHERE event = 'payload.file' AND ts >= {since} AND ts < {until}
) WHERE host IS NOT NULL
GROUP BY host, sensor
"""

HASHES_SQL: Final = """
WITH x AS (
    SELECT session, json_extract_string(data, '$.vuln') AS vuln FROM events
    WHERE event = 'exploit.attempt' AND ts < {until}
),
p AS (
    SELECT 'exploit' AS kind, json_extract_string(e.data, '$.payload_sha256') AS sha256,
           CAST(NULL AS VARCHAR) AS md5, CAST(NULL AS VARCHAR) AS name,
           json_extract_string(e.data, '$.vuln') AS vuln, e.sensor, e.ts
    FROM events e
    WHERE e.event = 'exploit.attempt' AND e.ts >= {since} AND e.ts < {until}
      AND json_extract_string(e.data, '$.payload_sha256') IS NOT NULL
    UNION ALL
    SELECT 'file' AS kind, json_extract_string(f.data, '$.sha256'), json_extract_string(f.data, '$.md5'),
           json_extract_string(f.data, '$.name'),
           (SELECT max(x.vuln) FROM x WHERE x.session = json_extract_string(f.data, '$.attack')), f.sensor, f.ts
    FROM events f
    WHERE f.event = 'payload.file' AND f.ts >= {since} AND f.ts < {until}
      AND json_extract_string(f.data, '$.sha256') IS NOT NULL
)
SELECT kind, sha256, max(md5) AS md5, max(name) AS name, max(vuln) AS vuln, sensor, count(*) AS n,
       min(ts) AS first_seen, max(ts) AS last_seen
FROM p GROUP BY kind, sha256, sensor
"""

MD5_SQL: Final = """
SELECT DISTINCT json_extract_string(data, '$.payload_sha256') AS sha256,
       json_extract_string(data, '$.payload_md5') AS md5
FROM events
WHERE event = 'payload.shellcode' AND ts < {until} AND json_extract_string(data, '$.payload_md5') IS NOT NULL
"""

LAST_TS_SQL: Final = "SELECT max(ts) AS ts FROM events WHERE ts >= {since} AND ts < {until}"


@dataclass(frozen=True, slots=True)
class Seen:
    """One sensor's sightings of an address or hash."""

    sensor: str
    count: int
    first_seen: datetime
    last_seen: datetime


class Sighted:
    """Totals over the sensors' sightings (``seen``) of an address or a hash."""

    __slots__ = ()
    seen: tuple[Seen, ...]

    @property
    def count(self) -> int:
        return sum(s.count for s in self.seen)

    @property
    def first_seen(self) -> datetime:
        return min(s.first_seen for s in self.seen)

    @property
    def last_seen(self) -> datetime:
        return max(s.last_seen for s in self.seen)


@dataclass(frozen=True, slots=True)
class Attacker(Sighted):
    """One selected address; ``reasons`` ⊆ :data:`REASONS`; ``vulns`` the bulletins it exploited
    (``exploit``) or probed (``probe``)."""

    ip: IPAddress
    reasons: tuple[str, ...]
    vulns: tuple[str, ...]
    probed: tuple[str, ...]
    seen: tuple[Seen, ...]
    expire_days: int = EXPIRE_DAYS

    @property
    def address(self) -> str:
        return str(self.ip)


    @property
    def expires(self) -> datetime:
        return self.last_seen + timedelta(days=self.expire_days)

    @property
    def sensors(self) -> tuple[str, ...]:
        return tuple(s.sensor for s in self.seen)

    def describe(self) -> str:
        """The reasons in words (no attacker text: bulletins are validated)."""
        words = []
        for r in self.reasons:
            if r == "exploit" and self.vulns:
                words.append("exploit " + " ".join(self.vulns))
            elif r == "probe" and self.probed:
                words.append("probe " + " ".join(self.probed))
            else:
                words.append(r)
        return ", ".join(words)


@dataclass(frozen=True, slots=True)
class PayloadHash(Sighted):
    """A payload by hash: ``kind`` ``exploit`` (a kept exploit argument) or ``file`` (a download)."""

    kind: str
    sha256: str
    md5: str | None
    name: str | None  # the file name an attacker asked for: data, escape it wherever it goes
    vuln: str | None
    seen: tuple[Seen, ...]



@dataclass(frozen=True, slots=True)
class Selection:
    """Everything an export needs from one window."""

    since: datetime | None
    until: datetime | None
    as_of: datetime | None  # the newest stored event in the window
    attackers: tuple[Attacker, ...]
    hashes: tuple[PayloadHash, ...]
    exploits: tuple[ExploitActivity, ...]
    sensors: tuple[str, ...]
    dropped: int = 0  # addresses refused by parse_address or local_nets
    notes: tuple[str, ...] = field(default=())


def _window(since: datetime | None, until: datetime | None) -> dict[str, Any]:
    return {"since": since or EARLIEST, "until": until or LATEST}


def _seen(rows: Iterable[tuple[str, int, datetime, datetime]]) -> tuple[Seen, ...]:
    return tuple(sorted((Seen(s, n, f, last) for s, n, f, last in rows if n > 0), key=lambda s: s.sensor))


def select(engine: Engine, *, since: datetime | None = None, until: datetime | None = None,
           min_events: int = 1, smb_targets: int = SMB_TARGETS, expire_days: int = EXPIRE_DAYS,
           local_nets: Sequence[str] | None = None, scanners: bool = True) -> Selection:
    """The attacking addresses and payload hashes with ``since <= ts < until`` (module docstring)."""
    if min_events < 1 or smb_targets < 1 or expire_days < 1:
        raise ValueError("min_events, smb_targets and expire_days must be at least 1")
    nets = parse_local_nets(local_nets)
    win = _window(since, until)
    last = engine.run(LAST_TS_SQL, win)
    as_of = last[0]["ts"] if last and isinstance(last[0]["ts"], datetime) else None

    reasons: dict[str, set[str]] = defaultdict(set)
    vulns: dict[str, set[str]] = defaultdict(set)
    probed: dict[str, set[str]] = defaultdict(set)
    for r in engine.run(EXPLOITS_SQL, win):
        src, kind, vuln = str(r["src_ip"]), r["kind"], bulletin(r["vuln"])
        reasons[src].add("probe" if kind == "probe" else "exploit")
        if vuln:
            (probed if kind == "probe" else vulns)[src].add(vuln)
    for r in engine.run(SMB_SQL, {**win, "smb_targets": smb_targets}):
        reasons[str(r["src_ip"])].add("smb-sweep")
    if scanners:
        for s in detect_scanners(engine, since=since, until=until, local_nets=local_nets, direction="inbound"):
            reasons[s.src].add("scanner")

    per_sensor: dict[str, list[tuple[str, int, datetime, datetime]]] = defaultdict(list)

    def take(rows: list[Row], wanted: set[str] | None) -> None:
        for r in rows:
            src = str(r["src_ip"])
            if wanted is None or src in wanted:
                per_sensor[src].append((str(r["sensor"]), int(r["records"]) + int(r["attempts"]),
                                        r["first_seen"], r["last_seen"]))

    params = {**win, "smb_targets": smb_targets}
    take(engine.run(SOURCES_SQL, {**params, "everyone": 0}), None)
    missing = {src for src in reasons if src not in per_sensor}
    if missing:  # scanners (or probers without records) the candidate filter cannot name
        take(engine.run(SOURCES_SQL, {**params, "everyone": 1}), missing)
    for r in engine.run(SERVERS_SQL, win):
        host = str(r["host"])
        if parse_address(host) is None:
            continue  # a host name (or garbage): not for address lists
        reasons[host].add("download")
        per_sensor[host].append((str(r["sensor"]), int(r["n"]), r["first_seen"], r["last_seen"]))

    merged: dict[IPAddress, Attacker] = {}
    dropped = 0
    for text, why in reasons.items():
        ip = parse_address(text)
        if ip is None or is_local(str(ip), nets):
            dropped += 1
            continue
        seen = _merge_seen(per_sensor.get(text, []), merged[ip].seen if ip in merged else ())
        prev = merged.get(ip)
        why_all = why | set(prev.reasons if prev else ())
        merged[ip] = Attacker(
            ip=ip, reasons=tuple(r for r in REASONS if r in why_all),
            vulns=tuple(sorted(vulns[text] | set(prev.vulns if prev else ()))),
            probed=tuple(sorted(probed[text] | set(prev.probed if prev else ()))),
            seen=seen, expire_days=expire_days)
    attackers = sorted((a for a in merged.values() if a.seen and a.count >= min_events),
                       key=lambda a: (a.ip.version, a.ip))
    hashes = _hashes(engine, win)
    sensors = sorted({s.sensor for a in attackers for s in a.seen} | {s.sensor for h in hashes for s in h.seen})
    exploits = tuple(exploit_activity(engine, since=win["since"], until=win["until"]))
    return Selection(since=since, until=until, as_of=as_of, attackers=tuple(attackers), hashes=hashes,
                     exploits=exploits, sensors=tuple(sensors), dropped=dropped)


def _merge_seen(rows: list[tuple[str, int, datetime, datetime]], before: tuple[Seen, ...]
                ) -> tuple[Seen, ...]:
    """Rows of one address (several per sensor: firewall/exploit events, offers) folded per sensor."""
    acc: dict[str, tuple[int, datetime, datetime]] = {s.sensor: (s.count, s.first_seen, s.last_seen) for s in before}
    for sensor, n, first, last in rows:
        if sensor in acc:
            m, f, la = acc[sensor]
            acc[sensor] = (m + n, min(f, first), max(la, last))
        else:
            acc[sensor] = (n, first, last)
    return _seen((s, n, f, la) for s, (n, f, la) in acc.items())


def _hashes(engine: Engine, win: dict[str, Any]) -> tuple[PayloadHash, ...]:
    md5s = {sha: md5 for r in engine.run(MD5_SQL, {"until": win["until"]})
            if (sha := sha256_hex(r["sha256"])) and (md5 := md5_hex(r["md5"]))}
    groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for r in engine.run(HASHES_SQL, win):
        sha = sha256_hex(r["sha256"])
        if sha is not None:
            groups[(str(r["kind"]), sha)].append(r)
    out = []
    for (kind, sha), rows in groups.items():
        md5 = next((m for r in rows if (m := md5_hex(r["md5"]))), None) or md5s.get(sha)
        name = next((str(r["name"]) for r in rows if r["name"]), None)
        vuln = next((v for r in rows if (v := bulletin(r["vuln"]))), None)
        out.append(PayloadHash(kind=kind, sha256=sha, md5=md5, name=name, vuln=vuln,
                               seen=_seen((str(r["sensor"]), int(r["n"]), r["first_seen"], r["last_seen"])
                                          for r in rows)))
    return tuple(sorted(out, key=lambda h: (h.kind, h.sha256)))


def active(selection: Selection) -> tuple[Attacker, ...]:
    """The attackers whose entry has not expired at the newest stored event of the window."""
    if selection.as_of is None:
        return ()
    return tuple(a for a in selection.attackers if a.expires > selection.as_of)
