"""Attacker-controlled text is inert on every page of the dashboard.

Script-bearing values go in the way an attacker would put them in: through the live honeypot
sensor on loopback (a real impacket SMB client sending a hostile NativeOS, NativeLanMan, NTLMSSP
user and workstation, and tree-connect path) and through ingest (a sensor spool with a
``payload.offer`` whose URL is a ``javascript:`` URL, a Zeek conn.log whose uid (our session id) is
an HTML attribute break-out, a Suricata alert with a script as its signature). Then every page
that shows them is fetched and parsed: each value must appear as *text* (so it did reach the
page), and the markup must hold no script but the app's own, no event-handler attribute, no
injected element and no ``javascript:`` link. Error pages that quote the bad input are checked
the same way.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

pytest.importorskip("impacket", reason="the sensor is attacked with impacket (pip install -e '.[dev]')")

from impacket import ntlm, smb
from impacket.spnego import SPNEGO_NegTokenInit, SPNEGO_NegTokenResp, TypesMech

from stormwatch.collector import ingest_paths
from stormwatch.demo.attack import Client
from stormwatch.demo.families import Stack
from stormwatch.demo.live import Honeypot
from stormwatch.store import BatchWriter, Store
from stormwatch.web.app import create_app
from stormwatch.web.settings import WebSettings

with warnings.catch_warnings():  # starlette deprecates its httpx-based TestClient (httpx2 is not on the index)
    warnings.simplefilter("ignore")  # StarletteDeprecationWarning, raised once at import
    from fastapi.testclient import TestClient

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
JS_URL = "javascript:alert(1)//<script>alert(2)</script>"
ATTACKER = "127.66.6.6"
IDS_SOURCE = "198.51.100.66"
ZEEK_SOURCE = "203.0.113.99"
STORY = datetime(2006, 8, 14, 12, 0, tzinfo=UTC)
APP_SCRIPT = "/static/dashboard.js"


class Markup(HTMLParser):
    """Collects a page's elements and its text (entities decoded: what a reader sees)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def check_inert(html: str, where: str) -> str:
    """Fail on anything that could run; return the page's text."""
    m = Markup()
    m.feed(html)
    for tag, attrs in m.tags:
        a = dict(attrs)
        assert tag not in ("img", "object", "embed", "base", "frame", "frameset", "applet"), f"{where}: <{tag}>"
        if tag == "iframe":  # only the advisory, from the app itself
            assert a.get("class") == "advisory" and (a.get("src") or "").startswith("/vulns/"), f"{where}: {attrs}"
        if tag == "script":
            assert a.get("src") == APP_SCRIPT, f"{where}: a script that is not the app's: {attrs}"
        for name, value in attrs:
            assert not name.lower().startswith("on"), f"{where}: event handler attribute {name}={value!r} on <{tag}>"
            if name in ("href", "src", "action") and value is not None:
                v = value.strip().lower()
                assert not v.startswith(("javascript:", "vbscript:", "data:text")), f"{where}: {name}={value!r}"
                if tag != "link":
                    assert v.startswith(("/", "#", "?")), f"{where}: link out of the app: {name}={value!r}"
    return "".join(m.text)


def _ntlm_logon(client: Client, user: str, workstation: str, stack: Stack) -> None:
    """An NTLMSSP logon carrying a hostile user and workstation ([MS-NLMP] 2.2.1.3)."""
    negotiate = ntlm.NTLMAuthNegotiate()
    negotiate["flags"] = stack.ntlm_flags
    init = SPNEGO_NegTokenInit()
    init["MechTypes"] = [TypesMech["NTLMSSP - Microsoft NTLM Security Support Provider"]]
    init["MechToken"] = negotiate.getData()
    challenge = ntlm.NTLMAuthChallenge(SPNEGO_NegTokenResp(client._setup_leg(init.getData(), stack))["ResponseToken"])
    auth = ntlm.NTLMAuthChallengeResponse("", "", challenge["challenge"])
    auth["flags"] = stack.ntlm_flags
    auth["user_name"] = user.encode("utf-16-le")
    auth["domain_name"] = b""
    auth["host_name"] = workstation.encode("utf-16-le")
    auth["lanman"], auth["ntlm"] = b"\0", b""
    resp = SPNEGO_NegTokenResp()
    resp["ResponseToken"] = auth.getData()
    client._setup_leg(resp.getData(), stack)


def attack_sensor(store: Store, workdir: Path) -> None:
    with BatchWriter(store, max_delay=0.1) as writer:
        pot = Honeypot(workdir, writer, STORY.timestamp())
        try:
            with Client(ATTACKER, pot, "smb", pot.name) as c:  # a NULL session with a hostile NativeOS
                c.null_session(SCRIPT, IMG)
                with contextlib.suppress(smb.SessionError):  # no such share: refused, but the path is recorded
                    c.smb.tree_connect_andx(f"\\\\{ATTACKER}\\{IMG}", None)
            stack = Stack(dialects=("NT LM 0.12",), ntlmssp=True, native_os=IMG, native_lanman=SCRIPT,
                          ntlm_flags=ntlm.NTLMSSP_NEGOTIATE_UNICODE | ntlm.NTLMSSP_NEGOTIATE_NTLM, domain="",
                          workstation="X")
            with Client(ATTACKER, pot, "netbios-ssn", pot.name, stack) as c:
                _ntlm_logon(c, SCRIPT, IMG, stack)
            pot.settle(2)
        finally:
            pot.close()


def ingest_hostile_logs(store: Store, tmp: Path) -> dict[str, str]:
    """Spool, Zeek and Suricata records with hostile fields; returns the session ids used."""
    offer_session = "0ffe" * 8
    spool = tmp / "spool.jsonl"
    base = {"ts": "2006-08-14T12:30:00.000000Z", "sensor": "honeypot", "session": offer_session,
            "src_ip": ATTACKER, "src_port": 4444, "dst_ip": "127.0.0.1", "dst_port": 445, "proto": "tcp"}
    spool.write_text("".join(json.dumps(r) + "\n" for r in (
        {**base, "event": "session.connect", "seq": 0, "service": "smb", "persona": "win2000"},
        {**base, "event": "payload.offer", "seq": 1, "payload_sha256": "ab" * 32, "protocol": "http",
         "host": IMG, "port": 80, "path": SCRIPT, "url": JS_URL, "endpoint": IMG, "filename": SCRIPT},
    )))
    zeek_uid = IMG.replace(" ", "_")  # Zeek TSV: a field holds no tab; spaces would be kept, but keep it one token
    zeek = tmp / "conn.log"
    zeek.write_text(
        "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n"
        "#open\t2006-08-14-00-00-00\n"
        "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tconn_state\thistory\t"
        "orig_pkts\tresp_pkts\n"
        "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tstring\tcount\tcount\n"
        f"{STORY.timestamp() + 3600:.6f}\t{zeek_uid}\t{ZEEK_SOURCE}\t4321\t192.0.2.10\t445\ttcp\tS0\tS\t1\t0\n")
    eve = tmp / "eve.json"
    eve.write_text(json.dumps({
        "timestamp": "2006-08-14T13:00:00.000000+0000", "flow_id": 1, "event_type": "alert",
        "src_ip": IDS_SOURCE, "src_port": 5555, "dest_ip": "192.0.2.10", "dest_port": 139, "proto": "TCP",
        "alert": {"action": "allowed", "signature_id": 1, "signature": SCRIPT, "category": IMG, "severity": 1},
    }) + "\n")
    for path, sensor in ((spool, "honeypot"), (zeek, "zeek-sensor"), (eve, "suricata-sensor")):
        (summary,) = ingest_paths(store, [str(path)], sensor=sensor)
        assert summary.error is None and summary.accepted >= 1 and summary.rejected == 0, summary
    return {"offer": offer_session, "zeek": zeek_uid}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("hostile")
    db = tmp / "hostile.duckdb"
    with Store(db) as store:
        attack_sensor(store, tmp / "live")
        ids = ingest_hostile_logs(store, tmp)
        rows = store.query("SELECT DISTINCT session FROM events WHERE src_ip = $ip AND sensor = 'honeypot'",
                           {"ip": ATTACKER}).column("session").to_pylist()
    ids["sensor_sessions"] = rows
    app = create_app(WebSettings(db=db, read_only=True, api_tokens=()))
    with TestClient(app) as client:
        yield client, ids


def get_text(client: TestClient, url: str, status: int = 200) -> str:
    r = client.get(url, headers={"accept": "text/html"})
    assert r.status_code == status, (url, r.status_code, r.text[:500])
    return check_inert(r.text, url)


def test_the_sensor_recorded_the_hostile_values(hostile: tuple[TestClient, dict[str, Any]]) -> None:
    _, ids = hostile
    assert len(ids["sensor_sessions"]) >= 3  # two SMB sessions and the spooled one


def test_session_pages_show_sensor_values_as_text(hostile: tuple[TestClient, dict[str, Any]]) -> None:
    client, ids = hostile
    texts = [get_text(client, f"/sessions/{quote(s, safe='')}") for s in ids["sensor_sessions"]]
    joined = "\n".join(texts)
    assert SCRIPT in joined and IMG in joined  # NativeOS, NativeLanMan, user, workstation: shown, as text
    assert f"\\{IMG}" in joined  # the tree-connect path (impacket puts the server's address before it)
    setup_pages = [t for t in texts if "NativeOS" in t]
    assert any(f"NativeOS {SCRIPT}" in t for t in setup_pages) and any(f"user {SCRIPT}" in t for t in setup_pages)
    assert any(f"workstation {IMG}" in t for t in setup_pages)


def test_offer_with_a_javascript_url_is_text_not_a_link(hostile: tuple[TestClient, dict[str, Any]]) -> None:
    client, ids = hostile
    r = client.get(f"/sessions/{ids['offer']}", headers={"accept": "text/html"})
    text = check_inert(r.text, "offer session")
    assert JS_URL in text and "download offered" in text
    assert 'href="javascript' not in r.text.lower()


def test_hostile_zeek_uid_stays_in_its_path_segment(hostile: tuple[TestClient, dict[str, Any]]) -> None:
    client, ids = hostile
    src = client.get(f"/sources/{ZEEK_SOURCE}", headers={"accept": "text/html"})
    check_inert(src.text, "zeek source")
    assert f'href="/sessions/{quote(ids["zeek"], safe="")}"' in src.text
    text = get_text(client, f"/sessions/{quote(ids['zeek'], safe='')}")
    assert ids["zeek"] in text


def test_ids_alert_fields_are_text(hostile: tuple[TestClient, dict[str, Any]]) -> None:
    client, _ = hostile
    text = get_text(client, f"/sources/{IDS_SOURCE}")
    assert SCRIPT in text and IMG in text


def test_every_listing_page_is_inert(hostile: tuple[TestClient, dict[str, Any]]) -> None:
    client, _ = hostile
    shown = ""
    for url in ("/", "/sessions", "/sessions?exploits=false", f"/sources/{ATTACKER}", "/ports", "/ports/445",
                "/vulns", "/vulns/MS06-040", "/campaigns"):
        r = client.get(url, headers={"accept": "text/html"})
        assert r.status_code == 200, (url, r.status_code, r.text[:300])
        shown += check_inert(r.text, url)
    assert SCRIPT in shown  # the session lists show the hostile NativeOS


def test_error_pages_quote_bad_input_as_text(hostile: tuple[TestClient, dict[str, Any]]) -> None:
    client, _ = hostile
    # (a "/" in a value, even as %2F, ends the path segment: such URLs match no page at all, a plain 404)
    for url, status in ((f"/sessions/{quote(IMG, safe='')}", 404), (f"/campaigns/{quote(IMG, safe='')}", 404),
                        (f"/sources/{quote(IMG, safe='')}", 422), (f"/vulns/{quote(IMG, safe='')}", 422),
                        (f"/ports/{quote(IMG, safe='')}", 422), (f"/sessions/{quote(SCRIPT, safe='')}", 404)):
        text = get_text(client, url, status)
        assert text.strip(), url
    for url in (f"/sessions/{quote(IMG, safe='')}", f"/campaigns/{quote(IMG, safe='')}"):
        assert IMG in get_text(client, url, 404)  # the message names what was asked for, as text
    assert IMG in get_text(client, f"/sources/{quote(IMG, safe='')}", 422)


def test_responses_forbid_inline_script(hostile: tuple[TestClient, dict[str, Any]]) -> None:
    client, _ = hostile
    csp = client.get("/").headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    adv = client.get("/vulns/MS06-040/advisory").headers["content-security-policy"]
    assert adv.startswith("sandbox") and "default-src 'none'" in adv
