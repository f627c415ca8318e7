"""Exports (stormwatch.export): the attacker selection, blocklists, the STIX 2.1 bundle (validated
with the stix2 library) and the MISP event (checked against the core format's required fields),
on a small store built here whose every figure is known, and on the demo store when present."""

from __future__ import annotations

import csv
import io
import ipaddress
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import stix2
import stix2.exceptions

from stormwatch.analytics import DuckDBEngine
from stormwatch.events import EventBatchBuilder
from stormwatch.export import blocklist, misp_event, select, stix_bundle
from stormwatch.export.misp import misp_threat_level
from stormwatch.export.stix import pattern_string, validate_bundle
from stormwatch.store import Store
from stormwatch.threat import state

T0 = datetime(2006, 8, 12, 14, 0)
SHA_X = "ab" * 32  # exploit payload
MD5_X = "cd" * 16
SHA_F = "ef" * 32  # downloaded file
MD5_F = "01" * 16
HOSTILE_NAME = "ssms|<script>alert(1)</script>'\".exe"


def exploit(b: EventBatchBuilder, i: int, ts: datetime, src: str, vuln: str, kind: str = "exploit",
            sha: str | None = None) -> None:
    b.add("session.connect", ts - timedelta(seconds=1), f"c{i}", src_ip=src, session=f"s{i}", dst_ip="192.0.2.1",
          dst_port=445, proto="tcp")
    b.add("exploit.attempt", ts, f"x{i}", src_ip=src, session=f"s{i}", dst_ip="192.0.2.1", dst_port=445, proto="tcp",
          vuln=vuln, kind=kind, cve="CVE-2006-3439" if vuln == "MS06-040" else None, detector="srvsvc.path_overflow",
          confidence=0.95, payload_sha256=sha)


def build(store: Store, *, fw_sensor: str = "fw-1") -> None:
    hp = EventBatchBuilder("hp-1")
    exploit(hp, 1, T0, "198.51.100.1", "MS06-040", sha=SHA_X)
    exploit(hp, 2, T0 + timedelta(hours=1), "198.51.100.1", "MS06-040", sha=SHA_X)
    exploit(hp, 3, T0 + timedelta(hours=2), "2001:db8::5", "MS06-040")
    exploit(hp, 4, T0 + timedelta(hours=3), "198.51.100.2", "MS08-067", kind="probe")
    exploit(hp, 5, T0 + timedelta(hours=4), "10.0.0.5", "MS06-040")  # own network: never listed
    exploit(hp, 6, T0 + timedelta(hours=5), "not-an-address; rm -rf /", "MS06-040")  # hostile: dropped
    exploit(hp, 7, T0 + timedelta(hours=6), "0.0.0.0", "MS06-040")  # unspecified: dropped
    exploit(hp, 8, T0 - timedelta(days=30), "198.51.100.9", "MS06-040")  # expired long ago
    hp.add("payload.shellcode", T0 + timedelta(seconds=1), "sc1", src_ip="198.51.100.1", session="s1",
           payload_sha256=SHA_X, payload_md5=MD5_X)
    for i, host in enumerate(["192.0.2.77", "evil.example", "1.2.3.4'; drop table", "192.0.2.77"]):
        hp.add("payload.offer", T0 + timedelta(minutes=10 + i), f"o{i}", src_ip="198.51.100.1", session="s1",
               payload_sha256=SHA_X, protocol="ftp", host=host, port=21, url=f"ftp://{host}/x.exe")
    hp.add("payload.file", T0 + timedelta(minutes=30), "f1", src_ip="127.0.0.1", session="d1", attack="s1",
           name=HOSTILE_NAME, sha256=SHA_F, md5=MD5_F, source_host="192.0.2.88", size=100)
    store.write_events(hp.take())
    fw = EventBatchBuilder(fw_sensor)
    for j in range(25):  # a sweep of 139: 25 distinct targets
        fw.add("fw.connection", T0 + timedelta(minutes=j), f"a{j}", src_ip="203.0.113.7", src_port=1025 + j,
               dst_ip=f"192.0.2.{100 + j}", dst_port=139, proto="tcp", action="drop")
    for j in range(5):  # background: 5 targets, under the threshold
        fw.add("fw.connection", T0 + timedelta(minutes=j), f"b{j}", src_ip="203.0.113.8", src_port=2000 + j,
               dst_ip=f"192.0.2.{10 + j}", dst_port=445, proto="tcp", action="drop")
    fw.add("fw.connection", T0 + timedelta(hours=7), "c0", src_ip="198.51.100.1", src_port=3000,
           dst_ip="192.0.2.200", dst_port=445, proto="tcp", action="drop", count=3)
    store.write_events(fw.take())


@pytest.fixture
def engine(store: Store) -> DuckDBEngine:
    build(store)
    return DuckDBEngine(store)


# -- the selection ------------------------------------------------------------------------------

def test_selection_reasons_and_figures(engine: DuckDBEngine) -> None:
    sel = select(engine)
    by = {a.address: a for a in sel.attackers}
    assert set(by) == {"198.51.100.1", "198.51.100.2", "198.51.100.9", "2001:db8::5", "203.0.113.7",
                       "192.0.2.77", "192.0.2.88"}
    assert by["198.51.100.1"].reasons == ("exploit",) and by["198.51.100.1"].vulns == ("MS06-040",)
    # two exploit attempts on the honeypot, one firewall record that stands for 3 connections
    assert by["198.51.100.1"].count == 5
    assert by["198.51.100.1"].sensors == ("fw-1", "hp-1")
    assert by["198.51.100.1"].first_seen == T0 and by["198.51.100.1"].last_seen == T0 + timedelta(hours=7)
    assert by["198.51.100.2"].reasons == ("probe",) and by["198.51.100.2"].probed == ("MS08-067",)
    # 25 unanswered contacts: the scanner threshold fires as well as the SMB-sweep threshold
    assert by["203.0.113.7"].reasons == ("scanner", "smb-sweep") and by["203.0.113.7"].count == 25
    assert by["192.0.2.77"].reasons == ("download",) and by["192.0.2.77"].count == 2
    assert by["192.0.2.88"].reasons == ("download",)
    assert sel.dropped == 3  # 10.0.0.5 (own network), the hostile text, 0.0.0.0
    assert sel.as_of == T0 + timedelta(hours=7)
    hashes = {h.sha256: h for h in sel.hashes}
    assert hashes[SHA_X].kind == "exploit" and hashes[SHA_X].md5 == MD5_X and hashes[SHA_X].count == 2
    assert hashes[SHA_F].kind == "file" and hashes[SHA_F].vuln == "MS06-040" and hashes[SHA_F].name == HOSTILE_NAME


def test_selection_thresholds_and_window(engine: DuckDBEngine) -> None:
    assert "203.0.113.8" in {a.address for a in select(engine, smb_targets=5).attackers}
    assert "203.0.113.7" not in {a.address for a in select(engine, smb_targets=26, scanners=False).attackers}
    assert {a.address for a in select(engine, min_events=3).attackers} == {"198.51.100.1", "203.0.113.7"}
    later = select(engine, since=T0 + timedelta(minutes=30))
    assert "198.51.100.9" not in {a.address for a in later.attackers}
    # the second exploit attempt and the firewall record (3 connections); the first attempt is before
    assert {a.address: a.count for a in later.attackers}["198.51.100.1"] == 4
    # an address is selected by what it did in the window: here only one firewall record
    assert "198.51.100.1" not in {a.address for a in select(engine, since=T0 + timedelta(hours=2)).attackers}
    with pytest.raises(ValueError, match="at least 1"):
        select(engine, min_events=0)


def test_empty_store(store: Store) -> None:
    e = DuckDBEngine(store)
    assert blocklist(e, fmt="csv").splitlines() == [
        "address,version,first_seen,last_seen,expires,count,sensors,reasons"]
    assert validate_bundle(stix_bundle(e)) == 1  # the installation's identity
    assert misp_event(e)["Event"]["Attribute"] == []


# -- blocklists ---------------------------------------------------------------------------------

def test_blocklist_plain(engine: DuckDBEngine) -> None:
    text = blocklist(engine)
    entries = [ln for ln in text.splitlines() if not ln.startswith("#")]
    addresses = [ln.split("#")[0].strip() for ln in entries]
    for a in addresses:
        ipaddress.ip_address(a)  # raises on anything but an address
    # 198.51.100.9 was last seen 30 days before the newest event: expired
    assert sorted(addresses) == sorted(["198.51.100.1", "198.51.100.2", "2001:db8::5", "203.0.113.7",
                                        "192.0.2.77", "192.0.2.88"])
    line = next(ln for ln in entries if ln.startswith("198.51.100.1 "))
    assert "exploit MS06-040" in line and "count=5" in line
    assert "first=2006-08-12T14:00:00Z" in line and "expires=2006-08-19T21:00:00Z" in line
    assert "evil.example" not in text and "drop table" not in text and "10.0.0.5" not in text


def test_blocklist_csv(engine: DuckDBEngine) -> None:
    rows = list(csv.DictReader(io.StringIO(blocklist(engine, fmt="csv", expire_days=60))))
    by = {r["address"]: r for r in rows}
    assert "198.51.100.9" in by  # 60 days: not expired yet
    r = by["198.51.100.1"]
    assert (r["version"], r["count"], r["sensors"], r["reasons"]) == ("4", "5", "fw-1;hp-1", "exploit MS06-040")
    assert r["last_seen"] == "2006-08-12T21:00:00Z" and r["expires"] == "2006-10-11T21:00:00Z"
    assert by["2001:db8::5"]["version"] == "6"
    with pytest.raises(ValueError, match="unknown blocklist format"):
        blocklist(engine, fmt="xml")


def test_blocklist_csv_defuses_formulas(store: Store) -> None:
    build(store, fw_sensor="=HYPERLINK(\"http://x\")")
    rows = list(csv.reader(io.StringIO(blocklist(DuckDBEngine(store), fmt="csv"))))
    sweep = next(r for r in rows if r[0] == "203.0.113.7")
    assert sweep[6] == "'=HYPERLINK(\"http://x\")"


# -- STIX ---------------------------------------------------------------------------------------

def objects(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [o for o in bundle["objects"] if o["type"] == kind]


def test_stix_bundle_is_valid_and_stable(engine: DuckDBEngine) -> None:
    bundle = stix_bundle(engine)
    parsed = stix2.parse(json.dumps(bundle), allow_custom=False, version="2.1")
    assert len(parsed.objects) == len(bundle["objects"])
    assert json.dumps(stix_bundle(engine)) == json.dumps(bundle)  # same data, same ids, same bytes


def test_stix_content(engine: DuckDBEngine) -> None:
    bundle = stix_bundle(engine)
    by_id = {o["id"]: o for o in bundle["objects"]}
    inds = {o["pattern"]: o for o in objects(bundle, "indicator")}
    ind = inds["[ipv4-addr:value = '198.51.100.1']"]
    assert ind["valid_from"] == "2006-08-12T14:00:00.000Z" and ind["valid_until"] == "2006-08-19T21:00:00.000Z"
    assert "[ipv6-addr:value = '2001:db8::5']" in inds
    assert f"[file:hashes.'SHA-256' = '{SHA_X}' OR file:hashes.MD5 = '{MD5_X}']" in inds
    assert not any("10.0.0.5" in p or "drop" in p for p in inds)
    sighting = next(s for s in objects(bundle, "sighting") if s["sighting_of_ref"] == ind["id"])
    assert sighting["count"] == 5
    assert (sighting["first_seen"], sighting["last_seen"]) == ("2006-08-12T14:00:00.000Z", "2006-08-12T21:00:00.000Z")
    assert sorted(by_id[r]["name"] for r in sighting["where_sighted_refs"]) == ["fw-1", "hp-1"]
    vuln = next(v for v in objects(bundle, "vulnerability") if v["name"] == "CVE-2006-3439")
    assert {"source_name": "cve", "external_id": "CVE-2006-3439"} in vuln["external_references"]
    rels = {(by_id[r["source_ref"]]["type"], r["relationship_type"], by_id[r["target_ref"]]["type"],
             r["target_ref"]) for r in objects(bundle, "relationship")}
    assert ("course-of-action", "mitigates", "vulnerability", vuln["id"]) in rels
    assert ("attack-pattern", "targets", "vulnerability", vuln["id"]) in rels
    pattern_id = next(r["target_ref"] for r in objects(bundle, "relationship")
                      if r["source_ref"] == ind["id"] and r["relationship_type"] == "indicates")
    assert by_id[pattern_id]["name"] == "Exploitation of MS06-040 (CVE-2006-3439)"
    coas = [o["name"] for o in objects(bundle, "course-of-action")]
    assert any("139" in n and "445" in n for n in coas)
    # the attacker's file name is a JSON string value, intact, nowhere else
    f_ind = inds[f"[file:hashes.'SHA-256' = '{SHA_F}' OR file:hashes.MD5 = '{MD5_F}']"]
    assert HOSTILE_NAME in f_ind["description"]


def test_stix_validation_is_real(engine: DuckDBEngine) -> None:
    bundle = stix_bundle(engine)
    ind = objects(bundle, "indicator")[0]
    ind["pattern"] = "[ipv4-addr:value = '198.51.100.1'"  # unbalanced
    with pytest.raises(stix2.exceptions.InvalidValueError):
        validate_bundle(bundle)
    bundle = stix_bundle(engine)
    objects(bundle, "sighting")[0]["count"] = 1_000_000_000  # over the specification's maximum
    with pytest.raises(stix2.exceptions.InvalidValueError):
        validate_bundle(bundle)


def test_stix_pattern_string_escapes() -> None:
    assert pattern_string("a'b\\c") == "'a\\'b\\\\c'"
    stix2.Indicator(pattern=f"[file:name = {pattern_string(HOSTILE_NAME)}]", pattern_type="stix",
                    valid_from="2006-08-12T14:00:00Z")


# -- MISP (draft-dulaunoy-misp-core-format-20) ----------------------------------------------------

EVENT_MUST = ("uuid", "published", "info", "threat_level_id", "analysis", "date", "timestamp", "publish_timestamp",
              "org_id", "orgc_id", "distribution", "Org", "Orgc")
ATTRIBUTE_MUST = ("uuid", "type", "category", "to_ids", "event_id", "distribution", "timestamp", "deleted", "value")
# 2.3.2.3: the category/type pairs this exporter uses, from the draft's table
VALID = {"Network activity": {"ip-src", "ip-dst"},
         "Payload delivery": {"sha256", "md5", "filename|sha256", "filename|md5"},
         "External analysis": {"vulnerability"}}


def test_misp_required_fields(engine: DuckDBEngine) -> None:
    ev = misp_event(engine)["Event"]
    for k in EVENT_MUST:
        assert k in ev, k
    for org in (ev["Org"], ev["Orgc"]):
        assert set(org) >= {"uuid", "name", "id"}
    assert ev["published"] is False and ev["publish_timestamp"] == "0"
    assert len(ev["info"]) <= 256 and "\n" not in ev["info"]
    assert ev["date"] == "2006-07-13"  # the expired attacker's first sighting
    assert ev["timestamp"] == str(int(datetime(2006, 8, 12, 21, 0).timestamp() - datetime(1970, 1, 1).timestamp()))
    assert ev["attribute_count"] == str(len(ev["Attribute"]))
    assert {t["name"] for t in ev["Tag"]} >= {"tlp:amber", 'stormwatch:threat-level="undefined"'}
    for a in ev["Attribute"]:
        for k in ATTRIBUTE_MUST:
            assert k in a, (k, a)
        assert a["type"] in VALID[a["category"]]
        assert isinstance(a["to_ids"], bool) and isinstance(a["value"], str)
        for s in a.get("Sighting", []):
            assert s["type"] in ("0", "2") and s["uuid"] == a["uuid"] and s["date_sighting"].isdigit()
    json.dumps(ev)  # JSON-able as it is


def test_misp_attributes(engine: DuckDBEngine) -> None:
    attrs = misp_event(engine)["Event"]["Attribute"]
    by = {(a["type"], a["value"]): a for a in attrs}
    ip = by[("ip-src", "198.51.100.1")]
    assert ip["to_ids"] is True and "5 events" in ip["comment"]
    assert ip["first_seen"] == "2006-08-12T14:00:00.000000+00:00"
    seen = sorted((s["source"], s["type"], s["date_sighting"]) for s in ip["Sighting"])
    assert [x[:2] for x in seen] == [("stormwatch", "2"), ("stormwatch/fw-1", "0"), ("stormwatch/hp-1", "0"),
                                     ("stormwatch/hp-1", "0")]
    assert ("ip-dst", "192.0.2.77") in by  # a download server
    assert ("sha256", SHA_X) in by and ("md5", MD5_X) in by
    # the file name holds "|": a filename|sha256 value would be ambiguous, so the hash goes alone
    assert ("sha256", SHA_F) in by and not any(a["type"].startswith("filename|") for a in attrs)
    vuln = by[("vulnerability", "CVE-2006-3439")]
    assert vuln["to_ids"] is False
    assert misp_event(engine) == misp_event(engine)


def test_misp_threat_level(engine: DuckDBEngine, store: Store) -> None:
    assert [misp_threat_level(n) for n in (None, 1, 2, 3, 4)] == ["4", "3", "2", "1", "1"]
    assert misp_event(engine)["Event"]["threat_level_id"] == "4"  # nothing recorded
    state.record_change(store, state.Change(T0 + timedelta(hours=2), 2, 1, "rules", ("test",)))
    ev = misp_event(engine)["Event"]
    assert ev["threat_level_id"] == "2"
    assert 'stormwatch:threat-level="2"' in {t["name"] for t in ev["Tag"]}
    with pytest.raises(ValueError, match="TLP"):
        misp_event(engine, tlp="purple")


# -- a demo store: generated logs, live bots against the honeypot, the level replayed --------------

def test_demo_store(tmp_path: Path) -> None:
    pytest.importorskip("impacket", reason="the demo's bots drive impacket (pip install -e '.[dev]')")
    from demo_store import build_demo_store

    with Store(build_demo_store(tmp_path), read_only=True) as st:
        e = DuckDBEngine(st)
        sel = select(e)
        bundle = stix_bundle(e, selection=sel)
        validate_bundle(bundle)
        names = {o.get("name") for o in bundle["objects"]}
        assert "CVE-2006-3439" in names and "Mocbot" in names
        assert len(objects(bundle, "indicator")) == len(sel.attackers) + len(sel.hashes)
        ev = misp_event(e, selection=sel)["Event"]
        assert ev["threat_level_id"] in ("1", "2")  # the demo records raises to 2 and then 3
        assert blocklist(e, selection=sel).count("\n") > 10
