"""The JSON API under /api/v1 (stormwatch.web.api): figures worked out by hand from a small store,
tokens, bad input (404/422, never 500), paging, operator knowledge-base entries, subscriptions,
exports, and answers while an ingest writes."""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stormwatch.analytics import DuckDBEngine
from stormwatch.events import EventBatchBuilder
from stormwatch.store import Store
from stormwatch.threat.kb import load_file, load_kb
from stormwatch.web.app import WebState, create_app
from stormwatch.web.settings import WebSettings

with warnings.catch_warnings():
    # starlette's TestClient warns that it wants httpx2; the project pins httpx 0.28.1 (contract)
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DAY = datetime(2006, 8, 14)
ATTACKER = "203.0.113.7"


def fill(store: Store) -> None:
    """Day D (2006-08-14): 10 sources each hit 192.0.2.i:139 once; ATTACKER hits 192.0.2.1:139 five
    times (count 5) and 192.0.2.2:445 twice; one UDP 137. D-1: three sources hit 192.0.2.1:139.
    Honeypot: two sessions with an MS06-040 exploit attempt each."""
    fw = EventBatchBuilder("fw-a")
    for i in range(1, 11):
        fw.add("fw.connection", DAY + timedelta(hours=i), f"d{i}", src_ip=f"198.51.100.{i}", src_port=1000 + i,
               dst_ip=f"192.0.2.{i}", dst_port=139, proto="tcp", tcp_flags="S", action="drop")
    fw.add("fw.connection", DAY + timedelta(hours=12), "a1", src_ip=ATTACKER, src_port=4000, dst_ip="192.0.2.1",
           dst_port=139, proto="tcp", tcp_flags="S", action="drop", count=5)
    fw.add("fw.connection", DAY + timedelta(hours=13), "a2", src_ip=ATTACKER, src_port=4001, dst_ip="192.0.2.2",
           dst_port=445, proto="tcp", tcp_flags="S", action="drop", count=2)
    fw.add("fw.connection", DAY + timedelta(hours=14), "u1", src_ip="198.51.100.50", src_port=137,
           dst_ip="192.0.2.3", dst_port=137, proto="udp", action="drop")
    for i in range(1, 4):
        fw.add("fw.connection", DAY - timedelta(hours=i), f"y{i}", src_ip=f"198.51.100.{i}", src_port=2000 + i,
               dst_ip="192.0.2.1", dst_port=139, proto="tcp", tcp_flags="S", action="drop")
    store.write_events(fw.take())
    hp = EventBatchBuilder("hp")
    for n in (1, 2):
        ts = DAY + timedelta(hours=15, minutes=n)
        sess = f"s{n}"
        common: dict[str, Any] = dict(src_ip=f"198.51.100.{n}", session=sess, dst_ip="192.0.2.9", dst_port=445,
                                      proto="tcp")
        hp.add("session.connect", ts, f"c{n}", service="smb", **common)
        hp.add("exploit.attempt", ts + timedelta(seconds=5), f"x{n}", vuln="MS06-040", kind="exploit",
               cve="CVE-2006-3439", detector="srvsvc.path_overflow", confidence=0.95, **common)
    store.write_events(hp.take())


def make_state(tmp_path: Path, **settings: Any) -> WebState:
    db = tmp_path / "api.duckdb"
    store = Store(db)
    fill(store)
    ws = WebSettings(db=db, **{"api_tokens": (TOKEN,), "refresh_rollup": False, **settings})
    return WebState(ws, store, DuckDBEngine(store), load_kb())


@pytest.fixture
def state(tmp_path: Path) -> Iterator[WebState]:
    st = make_state(tmp_path)
    yield st
    st.store.close()


@pytest.fixture
def client(state: WebState) -> Iterator[TestClient]:
    with TestClient(create_app(state=state)) as c:
        yield c


# -- reads, by hand -------------------------------------------------------------------------------

def test_top_ports_and_history_by_hand(client: TestClient) -> None:
    top = client.get("/api/v1/ports").json()
    assert top["day"] == "2006-08-14"
    assert [(p["port"], p["records"], p["targets"], p["sources"]) for p in top["ports"]] == \
        [(139, 15, 10, 11), (445, 2, 1, 1), (137, 1, 1, 1)]
    assert top["ports"][0]["tcp"] == 100.0 and top["ports"][2]["udp"] == 100.0
    by_sources = client.get("/api/v1/ports", params={"by": "sources", "limit": 2}).json()["ports"]
    assert [p["port"] for p in by_sources] == [139, 137]  # 137 and 445 tie on sources: the lower port first
    hist = client.get("/api/v1/ports/139").json()["days"]
    assert [(d["day"], d["records"], d["targets"]) for d in hist] == [("2006-08-13", 3, 1), ("2006-08-14", 15, 10)]
    assert client.get("/api/v1/ports/139", params={"since": "2006-08-14"}).json()["days"][0]["day"] == "2006-08-14"
    assert client.get("/api/v1/ports/8080").json()["days"] == []


def test_one_source_by_hand(client: TestClient) -> None:
    s = client.get(f"/api/v1/sources/{ATTACKER}").json()
    assert (s["events"], s["records"], s["targets"]) == (2, 7, 2)
    assert [(p["port"], p["records"]) for p in s["ports"]] == [(139, 5), (445, 2)]
    assert s["sensors"] == [{"sensor": "fw-a", "events": 2, "first_seen": "2006-08-14T12:00:00Z",
                             "last_seen": "2006-08-14T13:00:00Z"}]
    hp = client.get("/api/v1/sources/198.51.100.1").json()
    assert hp["sessions"] == ["s1"] and hp["exploits"][0]["vuln"] == "MS06-040"
    top = client.get("/api/v1/sources", params={"day": "2006-08-14"}).json()["sources"]
    assert top[0]["src_ip"] == ATTACKER and top[0]["records"] == 7


def test_level_exploits_advisories_sessions(client: TestClient) -> None:
    lvl = client.get("/api/v1/level").json()
    assert (lvl["level"], lvl["colour"], lvl["since"], lvl["history"]) == (1, "green", None, [])
    assert lvl["at"] == "2006-08-14T16:00:00Z"  # the end of the hour of the latest event (15:01:05)
    ev = client.get("/api/v1/level", params={"evaluate": "true"}).json()["assessment"]
    assert ev["at"] == "2006-08-14T16:00:00Z" and ev["level"] >= 1
    ex = client.get("/api/v1/exploits").json()["exploits"]
    assert [(e["vuln"], e["attempts"], e["sources"], e["severity"]) for e in ex] == [("MS06-040", 2, 2, "critical")]
    assert [a["vuln"] for a in client.get("/api/v1/advisories").json()["advisories"]] == ["MS06-040"]
    adv = client.get("/api/v1/advisories/cve-2006-3439").json()
    assert adv["vuln"]["id"] == "MS06-040" and adv["activity"]["attempts"] == 2
    md = client.get("/api/v1/advisories/MS06-040", params={"format": "markdown"})
    assert md.headers["content-type"].startswith("text/markdown") and md.text.startswith("# Advisory: MS06-040")
    page = client.get("/api/v1/advisories/MS06-040", params={"format": "html"})
    assert page.text.startswith("<!DOCTYPE html>") and "sandbox" in page.headers["content-security-policy"]
    timeline = client.get("/api/v1/sessions/s1").json()
    assert [e["event"] for e in timeline["events"]] == ["session.connect", "exploit.attempt"]
    assert timeline["events"][1]["data"]["vuln"] == "MS06-040"
    assert {s["session"] for s in client.get("/api/v1/sessions").json()["sessions"]} == {"s1", "s2"}


@pytest.mark.parametrize(("url", "status", "words"), [
    ("/api/v1/ports/65536", 422, "less than or equal"),
    ("/api/v1/ports/-1", 422, "greater than or equal"),
    ("/api/v1/ports/abc", 422, "integer"),
    ("/api/v1/ports/139?since=2006-08-14&until=2006-08-01", 422, "after"),
    ("/api/v1/ports?day=2006-13-01", 422, "date"),
    ("/api/v1/sources/999.1.1.1", 422, "not an IP address"),
    ("/api/v1/sources/192.0.2.200", 404, "no events from 192.0.2.200"),
    ("/api/v1/sources?day=2006-08-14&since=2006-08-01", 422, "either day"),
    ("/api/v1/campaigns/nobody", 404, "no campaign named"),
    ("/api/v1/advisories/MS99-999", 404, "no knowledge-base entry"),
    ("/api/v1/kb/MS99-999", 404, "no knowledge-base entry"),
    ("/api/v1/sessions/nope", 404, "no session"),
    ("/api/v1/events?type=no.such", 422, "unknown event type"),
    ("/api/v1/events?cursor=!!", 422, "cursor"),
    ("/api/v1/events?cursor=abc&offset=3", 422, "either cursor or offset"),
    ("/api/v1/events?src=nope", 422, "not an IP address"),
    ("/api/v1/events?since=2006-08-14T10:00:00&until=2006-08-14T09:00:00", 422, "empty window"),
    ("/api/v1/exploits?since=2006-08-14&until=2006-08-13", 422, "empty window"),
    ("/api/v1/surges?days=0", 422, "greater than or equal"),
    ("/api/v1/level?at=yesterday", 422, "datetime"),
    ("/api/v1/surges?until=0001-01-01T00:00:00Z", 422, "out of range"),
    ("/api/v1/level?at=9999-12-31T23:00:00", 422, "out of range"),
])
def test_bad_input_is_404_or_422_with_a_sentence(client: TestClient, url: str, status: int, words: str) -> None:
    r = client.get(url)
    assert r.status_code == status, r.text
    assert words in r.text


# -- paging -----------------------------------------------------------------------------------------

def test_cursor_paging_walks_every_event_once(client: TestClient) -> None:
    everything = client.get("/api/v1/events", params={"limit": 1000}).json()
    assert everything["next_cursor"] is None and len(everything["events"]) == 20
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = client.get("/api/v1/events", params={"limit": 4, **({"cursor": cursor} if cursor else {})}).json()
        seen += page["events"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == everything["events"]
    ts = [e["ts"] for e in seen]
    assert ts == sorted(ts, reverse=True)
    by_offset = client.get("/api/v1/events", params={"limit": 4, "offset": 4}).json()["events"]
    assert by_offset == everything["events"][4:8]


def test_event_filters(client: TestClient) -> None:
    only = client.get("/api/v1/events", params={"type": "exploit.attempt"}).json()["events"]
    assert {e["event"] for e in only} == {"exploit.attempt"} and len(only) == 2
    mine = client.get("/api/v1/events", params={"src": ATTACKER, "port": 445}).json()["events"]
    assert [(e["dst_ip"], e["count"]) for e in mine] == [("192.0.2.2", 2)]
    day = client.get("/api/v1/events", params={"since": "2006-08-13T00:00:00Z", "until": "2006-08-14T00:00:00Z"})
    assert len(day.json()["events"]) == 3
    assert client.get("/api/v1/events", params={"sensor": "hp"}).json()["events"][0]["sensor"] == "hp"


def test_huge_page_sizes_are_capped(tmp_path: Path) -> None:
    st = make_state(tmp_path, max_page_size=5)
    with TestClient(create_app(state=st)) as c:
        page = c.get("/api/v1/events", params={"limit": 10 ** 30}).json()
        assert page["limit"] == 5 and len(page["events"]) == 5 and page["next_cursor"]
        assert len(c.get("/api/v1/ports", params={"limit": 10 ** 12}).json()["ports"]) == 3
    st.store.close()


# -- tokens and changes ---------------------------------------------------------------------------

def test_override_needs_a_token_and_moves_the_level(client: TestClient) -> None:
    body = {"level": "orange", "reason": "MS06-040 worm spreading", "by": "alice", "for_hours": 48}
    assert client.post("/api/v1/level/override", json=body).status_code == 401
    assert client.post("/api/v1/level/override", json=body,
                       headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = client.post("/api/v1/level/override", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["level"] == 3 and out["expires_at"] == "2006-08-16T16:00:00Z"
    assert out["change"]["actor"] == "analyst:alice" and out["change"]["previous"] == 1
    lvl = client.get("/api/v1/level").json()
    assert (lvl["level"], lvl["colour"], lvl["actor"]) == (3, "orange", "analyst:alice")
    assert "MS06-040 worm spreading" in lvl["reasons"][0] and lvl["override"]["who"] == "alice"
    assert client.get("/api/infocon?json").json() == {"status": "orange"}
    assert client.post("/api/v1/level/override", json={**body, "level": "purple"}, headers=AUTH).status_code == 422
    assert client.post("/api/v1/level/override", json={**body, "reason": "  "}, headers=AUTH).status_code == 422
    cleared = client.delete("/api/v1/level/override", params={"by": "bob"}, headers=AUTH)
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["cleared"]["who"] == "alice"
    assert client.get("/api/v1/level").json()["override"] is None
    assert client.delete("/api/v1/level/override", params={"by": "bob"}, headers=AUTH).status_code == 404


def test_changes_refused_without_tokens_or_on_a_read_only_server(tmp_path: Path) -> None:
    body = {"level": 2, "reason": "r", "by": "b"}
    st = make_state(tmp_path / "a", api_tokens=())
    with TestClient(create_app(state=st)) as c:
        r = c.post("/api/v1/level/override", json=body, headers=AUTH)
        assert r.status_code == 403 and "no API tokens" in r.json()["detail"]
    st.store.close()
    st = make_state(tmp_path / "b", read_only=True)
    with TestClient(create_app(state=st)) as c:
        assert c.post("/api/v1/level/override", json=body, headers=AUTH).status_code == 409
    st.store.close()


def test_closed_reads_need_the_token(tmp_path: Path) -> None:
    st = make_state(tmp_path, read_open=False)
    with TestClient(create_app(state=st)) as c:
        for url in ("/api/v1/level", "/api/v1/ports", "/api/infocon?json", "/api/v1/kb"):
            assert c.get(url).status_code == 401, url
            assert c.get(url, headers=AUTH).status_code == 200, url
    st.store.close()


# -- operator knowledge base ------------------------------------------------------------------------

ENTRY: dict[str, Any] = {
    "id": "MS99-001", "cves": ["CVE-1999-0001"], "name": 'Test flaw "quoted" \\ back\tslash\nnew <b>line</b>',
    "published": "1999-01-12", "ports": ["445/tcp"], "services": ["Server service"], "affected": ["Windows NT 4.0"],
    "patch": "KB999001", "severity": {"rating": "important", "cvss": 7.5},
    "mitigations": [{"action": "Block 445", "reason": "it is how the worm \u00e9 spreads"}],
    "references": ["https://example.org/ms99-001"], "malware": ["W32.Test"],
}


def test_operator_entries_persist_in_a_checked_kb_file(state: WebState, client: TestClient) -> None:
    assert client.post("/api/v1/kb", json=ENTRY).status_code == 401
    r = client.post("/api/v1/kb", json=ENTRY, headers=AUTH)
    assert r.status_code == 201, r.text
    path = state.settings.db.parent / "operator-kb.toml"
    got = client.get("/api/v1/kb/MS99-001").json()
    assert got["name"] == ENTRY["name"] and got["source"] == str(path)
    (on_disk,) = load_file(path)  # the file is a valid --kb file, and the text round-trips
    assert on_disk.name == ENTRY["name"] and on_disk.mitigations[0].reason == ENTRY["mitigations"][0]["reason"]
    assert client.post("/api/v1/kb", json=ENTRY, headers=AUTH).status_code == 409
    assert client.post("/api/v1/kb", json={**ENTRY, "id": "MS06-040"}, headers=AUTH).status_code == 409
    renamed = client.put("/api/v1/kb/MS99-001", json={**ENTRY, "name": "renamed"}, headers=AUTH)
    assert renamed.status_code == 200 and load_file(path)[0].name == "renamed"
    assert client.get("/api/v1/advisories/MS99-001").json()["vuln"]["name"] == "renamed"
    # a new server over the same store finds the entry (it lives beside the store)
    again = WebState(state.settings, state.store, state.engine, load_kb())
    with TestClient(create_app(state=again)) as c2:
        assert c2.get("/api/v1/kb/MS99-001").json()["name"] == "renamed"
    assert client.delete("/api/v1/kb/MS99-001", headers=AUTH).json() == {"deleted": True}
    assert client.get("/api/v1/kb/MS99-001").status_code == 404
    assert client.delete("/api/v1/kb/MS06-040", headers=AUTH).status_code == 404  # built in: replace, not remove


@pytest.mark.parametrize(("change", "words"), [
    ({"cves": ["CVE-99"]}, "field 'cves[0]'"),
    ({"ports": ["99999/tcp"]}, "not a port number"),
    ({"detectors": ["made.up"]}, "not a stormwatch detector"),
    ({"severity": {"rating": "bad"}}, "rating"),
    ({"colour": "red"}, "colour"),
    ({"published": "1999-02-30"}, "published"),
    ({"name": "\ud800"}, "not valid Unicode"),
])
def test_bad_kb_entries_are_422_naming_the_field(client: TestClient, change: dict[str, Any], words: str) -> None:
    # as raw JSON: a lone surrogate is valid JSON text that httpx's own encoder refuses
    r = client.post("/api/v1/kb", content=json.dumps({**ENTRY, **change}),
                    headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 422 and words in r.text, r.text
    assert client.put("/api/v1/kb/MS99-002", json=ENTRY, headers=AUTH).status_code == 422  # path and id differ


# -- subscriptions and exports --------------------------------------------------------------------------

def test_subscriptions(client: TestClient) -> None:
    sub = {"channel": "webhook", "target": "http://127.0.0.1:9/hook", "min_level": "yellow", "ports": [139],
           "secret": "a-very-secret-key-123"}
    assert client.post("/api/v1/subscriptions", json=sub).status_code == 401
    assert client.get("/api/v1/subscriptions").status_code == 401
    r = client.post("/api/v1/subscriptions", json=sub, headers=AUTH)
    assert r.status_code == 201, r.text
    sub_id = r.json()["id"]
    listed = client.get("/api/v1/subscriptions", headers=AUTH)
    assert "a-very-secret-key-123" not in listed.text
    (got,) = listed.json()["subscriptions"]
    assert (got["id"], got["min_level"], got["ports"], got["secret"]) == (sub_id, 2, [139], "(set)")
    bad = client.post("/api/v1/subscriptions", json={**sub, "target": "ftp://x"}, headers=AUTH)
    assert bad.status_code == 422 and "not an http" in bad.text
    assert client.post("/api/v1/subscriptions", json={**sub, "colour": 1}, headers=AUTH).status_code == 422
    assert client.delete(f"/api/v1/subscriptions/{sub_id}", headers=AUTH).json() == {"deleted": True}
    assert client.delete(f"/api/v1/subscriptions/{sub_id}", headers=AUTH).status_code == 404


@pytest.mark.parametrize(("url", "media", "shows"), [
    ("/api/v1/export/stix", "application/json", "198.51.100.1"),
    ("/api/v1/export/misp", "application/json", "198.51.100.1"),
    ("/api/v1/export/blocklist?format=csv", "text/csv", "198.51.100.1,"),
    ("/api/v1/export/firewall?target=pf", "text/plain", "port { 135 139 445 }"),
])
def test_exports(client: TestClient, url: str, media: str, shows: str) -> None:
    r = client.get(url)
    assert r.status_code == 200 and r.headers["content-type"].startswith(media), r.text[:300]
    assert shows in r.text


def test_a_missing_module_is_503_with_its_name() -> None:
    from fastapi import HTTPException

    from stormwatch.web.api_common import optional_module
    with pytest.raises(HTTPException) as err:
        optional_module("stormwatch.export.not_there", "the test export")
    assert err.value.status_code == 503 and "stormwatch.export.not_there is missing" in str(err.value.detail)


# -- while an ingest writes -------------------------------------------------------------------------------

def test_answers_while_an_ingest_writes(state: WebState, client: TestClient) -> None:
    """The server owns the store read-write; an ingest in the same process writes batches on its
    own thread (as POST /api/ingest does). Reads interleave with the writes and see whole batches."""
    src, batches, per = "198.18.0.1", 20, 50
    first_written, reader_went = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def ingest() -> None:
        try:
            for b in range(batches):
                bb = EventBatchBuilder("fw-ingest")
                for i in range(per):
                    bb.add("fw.connection", DAY + timedelta(seconds=b * per + i), f"i{b}-{i}", src_ip=src,
                           dst_ip="192.0.2.50", dst_port=445, proto="tcp", action="drop")
                state.store.write_events(bb.take())
                if b == 0:
                    first_written.set()
                    reader_went.wait(timeout=60)
        except Exception as exc:  # noqa: BLE001 - handed to the test thread, which fails on it
            errors.append(exc)

    writer = threading.Thread(target=ingest)
    writer.start()
    assert first_written.wait(timeout=60)
    counts = []
    r = client.get(f"/api/v1/sources/{src}")
    reader_went.set()
    while True:
        assert r.status_code == 200, r.text
        counts.append(r.json()["events"])
        assert client.get("/api/v1/ports").status_code == 200
        assert client.get("/api/infocon?json").status_code == 200
        if not writer.is_alive():
            break
        r = client.get(f"/api/v1/sources/{src}")
    writer.join()
    assert not errors
    assert all(c % per == 0 for c in counts)  # never half a batch
    assert counts == sorted(counts) and counts[0] >= per
    assert client.get(f"/api/v1/sources/{src}").json()["events"] == batches * per
