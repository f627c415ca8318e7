"""The dashboard's pages over a small demo store: what each page shows, the links from the
overview down to a session, bad input (404/422 with a message, never 500), page-size caps, the
read token, and pages answering while an ingest writes to the same store.

:func:`build_demo_store` (also used by the browser test) makes a short version of ``stormwatch
demo``: two weeks of generated firewall logs from three sensors ending in the MS06-040 surge,
the honeypot sensor attacked live on loopback by the demo's bots, the port rollup refreshed and
the threat level replayed over the surge days so that changes are recorded.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

pytest.importorskip("impacket", reason="the demo's bots drive impacket (pip install -e '.[dev]')")

from demo_store import build_demo_store
from stormwatch.demo.generate import SENSORS
from stormwatch.events import EventBatchBuilder
from stormwatch.store import BatchWriter, Store
from stormwatch.web.app import create_app
from stormwatch.web.pages_ports import trailing_baseline
from stormwatch.web.pages_svg import Band, Chart, Series, render_chart
from stormwatch.web.settings import WebSettings

with warnings.catch_warnings():  # starlette deprecates its httpx-based TestClient (httpx2 is not on the index)
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

HTML = {"accept": "text/html"}


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo_store(tmp_path_factory.mktemp("webdemo"))


@pytest.fixture(scope="module")
def client(demo_db: Path) -> Iterator[TestClient]:
    with TestClient(create_app(WebSettings(db=demo_db, read_only=True, api_tokens=()))) as c:
        yield c


def page(client: TestClient, url: str, status: int = 200) -> str:
    r = client.get(url, headers=HTML)
    assert r.status_code == status, (url, r.status_code, r.text[:400])
    assert r.headers["content-type"].startswith("text/html")
    return r.text


def links(html: str, prefix: str) -> list[str]:
    return re.findall(rf'href="({re.escape(prefix)}[^"]+)"', html)


def test_overview_shows_level_surges_exploits_campaigns_sensors(client: TestClient) -> None:
    html = page(client, "/")
    assert re.search(r"Threat level [234]: (elevated|high|extreme)", html)
    assert "set by rules" in html and "[rule " in html  # the recorded change with its reasons
    assert 'id="history"' in html and "<svg" in html
    assert 'href="/ports/139"' in html or 'href="/ports/445"' in html  # a surge on the flaw's ports
    assert 'href="/vulns/MS06-040"' in html
    assert links(html, "/campaigns/")
    for sensor in (*SENSORS, "honeypot"):
        assert f"<td>{sensor}</td>" in html
    assert links(html, "/sessions/")
    assert "reporting" in html


def test_click_through_overview_to_a_session(client: TestClient) -> None:
    vuln = page(client, "/vulns/MS06-040")
    assert "Server service" in vuln and "KB921883" in vuln and "exploit attempts from" in vuln
    assert 'src="/vulns/MS06-040/advisory"' in vuln
    session_url = links(vuln, "/sessions/")[0]
    session = page(client, session_url)
    assert "exploit.attempt" in session and "MS06-040" in session
    assert "session.connect" in session and "smb.session_setup" in session
    assert re.search(r"<code>[0-9a-f]{64}</code>", session)  # payload hash
    src = links(session, "/sources/")[0]
    source = page(client, src)
    assert "Honeypot sessions" in source and session_url in source


def test_port_page_draws_history_baseline_and_surge(client: TestClient) -> None:
    html = page(client, "/ports/139")
    assert html.count("<svg") >= 4
    assert 'class="surge"' in html  # the detected surge drawn as a band
    assert "baseline" in html and "dashed" in html
    assert "2006-08-14" in html and links(html, "/sources/")
    assert "still going" in html


def test_lists_and_details(client: TestClient) -> None:
    ports = page(client, "/ports?by=records&day=2006-08-14")
    assert 'href="/ports/445"' in ports
    vulns = page(client, "/vulns")
    assert "MS06-040" in vulns and "MS08-067" in vulns and "MS04-011" in vulns
    camps = page(client, "/campaigns")
    first = links(camps, "/campaigns/")[0]
    camp = page(client, first)
    assert "Attacks" in camp and links(camp, "/sessions/") and links(camp, "/sources/")
    sessions = page(client, "/sessions?exploits=false")
    assert "NetrShareEnum" in sessions or "NetrServerGetInfo" in sessions  # benign clients only
    assert "exploit</td>" not in sessions
    adv = client.get("/vulns/MS06-040/advisory")
    assert adv.status_code == 200 and "Recommended actions" in adv.text
    assert adv.headers["content-security-policy"].startswith("sandbox")


def test_session_page_shows_decoded_offers(client: TestClient) -> None:
    store: Store = client.app.state.web.store  # type: ignore[attr-defined]  # the app's own connection
    row = store.query("SELECT session, json_extract_string(data, '$.url') AS url FROM events "
                      "WHERE event = 'payload.offer' LIMIT 1").to_pylist()
    assert row, "the demo's bots offer downloads"
    html = page(client, f"/sessions/{row[0]['session']}")
    assert "download offered" in html and row[0]["url"] in html
    assert "shellcode" in html and "decoder" in html


@pytest.mark.parametrize(("url", "status", "message"), [
    ("/ports/70000", 422, "port"), ("/ports/-1", 422, "port"), ("/ports/http", 422, "port"),
    ("/ports/31337", 404, "no records for port 31337"), ("/ports/139?days=0", 422, "days"),
    ("/ports/139?days=100000", 422, "days"), ("/ports/139?until=2006-02-30", 422, "until"),
    ("/ports?day=yesterday", 422, "day"), ("/ports?by=bytes", 422, "by"),
    ("/vulns/MS99-999", 404, "not in the knowledge base"), ("/vulns/no%20such", 422, "vuln"),
    ("/campaigns/Nonesuch", 404, "no campaign named"), ("/sources/999.1.1.1", 422, "not an IPv4 or IPv6"),
    ("/sources/192.0.2.250", 404, "has not been seen"), ("/sessions/ffff", 404, "no session"),
    ("/sources/10.20.30.34?until=2006-07-01&days=3", 404, "it was seen from"),
    ("/sessions?limit=0", 422, "limit"), ("/no/such/page", 404, "Not Found"),
])
def test_bad_input_is_a_clear_4xx(client: TestClient, url: str, status: int, message: str) -> None:
    html = page(client, url, status)
    detail = re.search(r'id="error-detail">(.*?)</p>', html, re.S)
    assert detail and message in detail.group(1), html[-600:]


def test_api_clients_get_json_errors(client: TestClient) -> None:
    r = client.get("/ports/31337", headers={"accept": "application/json"})
    assert r.status_code == 404 and "no records" in r.json()["detail"]


def test_huge_page_sizes_are_capped(client: TestClient) -> None:
    html = page(client, "/sessions?limit=100000000")
    assert "at most 1000" in html
    src = page(client, "/sources/10.20.30.34?limit=99999999")
    assert 'limit=1000&amp;offset=1000' in src  # the next page link uses the capped size
    assert src.count("<tr><td>2006-") <= 1000 + 200


def test_reading_can_require_a_token(demo_db: Path) -> None:
    app = create_app(WebSettings(db=demo_db, read_only=True, read_open=False, api_tokens=("s3cret",)))
    with TestClient(app) as c:
        assert c.get("/", headers=HTML).status_code == 401
        assert c.get("/", headers={**HTML, "authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/ports", headers={**HTML, "authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/ports", headers={**HTML, "x-api-token": "s3cret"}).status_code == 200


def test_pages_answer_while_ingest_writes(demo_db: Path, tmp_path: Path) -> None:
    db = tmp_path / "busy.duckdb"
    db.write_bytes(demo_db.read_bytes())
    app = create_app(WebSettings(db=db, api_tokens=()))  # read-write: the server owns the store
    store: Store = app.state.web.store
    stop = threading.Event()
    written = 0

    def ingest() -> None:
        nonlocal written
        with BatchWriter(store, max_delay=0.01) as writer:
            while not stop.is_set() and written < 50_000:
                b = EventBatchBuilder("busy-fw")
                for i in range(500):
                    b.add("fw.connection", datetime(2006, 8, 14, 23, 0) + timedelta(microseconds=written + i),
                          f"busy {written + i}", src_ip="198.51.100.9", src_port=1000, dst_ip="192.0.2.1",
                          dst_port=4444, proto="tcp", action="drop")
                writer.put(b.take())
                written += 500

    t = threading.Thread(target=ingest)
    with TestClient(app) as c:
        t.start()
        try:
            for url in ("/", "/ports/445", "/sources/198.51.100.9", "/ports/4444", "/sessions"):
                r = c.get(url, headers=HTML)
                assert r.status_code in (200, 404), (url, r.status_code)  # 404: the writer has not got there yet
        finally:
            stop.set()
            t.join(60)
        assert written > 0
        assert c.get("/sources/198.51.100.9?until=2006-08-14&days=1", headers=HTML).status_code == 200


def test_chart_escapes_its_text_and_draws_bands() -> None:
    svg = str(render_chart(Chart("<b>t</b>", [Series("a<script>", [(datetime(2006, 1, 1), 1.0),
                                                                     (datetime(2006, 1, 2), 3.0)])],
                                 bands=[Band(datetime(2006, 1, 1, 12), datetime(2006, 1, 2), '"><x>')])))
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "&#34;&gt;&lt;x&gt;" in svg
    assert 'class="surge"' in svg and "<polyline" in svg
    assert "no data" in str(render_chart(Chart("empty", [Series("x", [])])))


def test_trailing_baseline_is_the_mean_of_the_week_before() -> None:
    days = [datetime(2006, 8, 1).date() + timedelta(days=i) for i in range(9)]
    base = dict(trailing_baseline(days, [7.0] * 7 + [70.0, 14.0]))
    assert base[days[6]] is None and base[days[7]] == 7.0 and base[days[8]] == pytest.approx((6 * 7 + 70) / 7)


def test_serve_command_options(demo_db: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from stormwatch.cli.serve_cmd import serve, settings_from_options

    s = settings_from_options(str(demo_db), "127.0.0.1", 8099, True, True, (), None, None)
    assert (s.db, s.port, s.read_only, s.read_open) == (demo_db, 8099, True, False)
    res = CliRunner().invoke(serve, ["--db", str(tmp_path / "none.duckdb"), "--read-only"])
    assert res.exit_code != 0 and "no store at" in res.output
    assert "127.0.0.1" in CliRunner().invoke(serve, ["--help"]).output


# -- the cache: stale while revalidating, and the background warmer -------------------------------

def test_stale_values_are_answered_at_once_and_refreshed_in_the_background(demo_db: Path) -> None:
    from stormwatch.web.app import open_state
    from stormwatch.web.pages_data import CACHE_SECONDS, cached

    state = open_state(WebSettings(db=demo_db, read_only=True, api_tokens=(), refresh_rollup=False))
    try:
        assert cached(state, "k", lambda: 1) == 1
        assert cached(state, "k", lambda: 2) == 1  # fresh: not recomputed
        started = threading.Event()
        release = threading.Event()

        def slow() -> int:
            started.set()
            release.wait(30)
            return 3

        state.cache["k"] = (state.cache["k"][0] - CACHE_SECONDS - 1, 1)  # make it stale
        assert cached(state, "k", slow) == 1  # answered from the stale value, not waiting for slow()
        assert started.wait(30)
        assert cached(state, "k", lambda: 4) == 1  # a refresh is running: no second one
        release.set()
        for _ in range(300):
            if state.cache["k"][1] == 3:
                break
            threading.Event().wait(0.05)
        assert state.cache["k"][1] == 3
    finally:
        state.store.close()


def test_the_warmer_computes_the_overview_before_any_request(demo_db: Path) -> None:
    settings = WebSettings(db=demo_db, read_only=True, api_tokens=(), warm_cache=True, refresh_rollup=False)
    app = create_app(settings)
    with TestClient(app) as c:
        state = app.state.web
        for _ in range(1200):  # the first round computes signals, level, campaigns, sensor health
            if any(k.startswith("sensors:") for k in state.cache):
                break
            threading.Event().wait(0.05)
        keys = set(state.cache)
        assert {"at", "rules"} <= keys and any(k.startswith("now:") for k in keys), keys
        assert any(k.startswith("campaigns:") for k in keys) and any(k.startswith("sensors:") for k in keys)
        assert "Threat level" in page(c, "/")
    assert state.closed.is_set()  # the lifespan stopped the warmer before closing the store


def test_the_servers_watch_records_the_level_and_delivers_notifications(demo_db: Path, tmp_path: Path) -> None:
    """While the server holds the store nothing else can write to it: its watch thread records the
    level and runs the notifications (here to a real webhook receiver on loopback)."""
    import http.server
    import json
    import shutil

    from stormwatch.notify import subscriptions
    from stormwatch.notify.model import Subscription

    db = tmp_path / "served.duckdb"
    shutil.copy(demo_db, db)
    received: list[dict[str, object]] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with Store(db) as store:
            subscriptions.add(store, Subscription("webhook", f"http://127.0.0.1:{httpd.server_address[1]}/hook",
                                                  min_level=2, secret="a-webhook-secret-of-32-characters"))
            (last,) = store.query("SELECT max(ts) AS ts FROM threat_level_changes").to_pylist()
        settings = WebSettings(db=db, api_tokens=(), refresh_rollup=False, watch_seconds=0.2)
        app = create_app(settings)
        with TestClient(app):
            state = app.state.web
            for _ in range(1200):
                if received and state.last_watch is not None:
                    break
                threading.Event().wait(0.05)
            assert state.last_watch is not None and state.last_watch.error is None, state.last_watch
            assert state.last_watch.level is not None and state.last_watch.level >= 2
            assert received, "the watch delivered nothing to the subscribed webhook"
        # the level evaluated by the watch is on record (a check at the data's hour, at least)
        with Store(db, read_only=True) as store:
            (checked,) = store.query("SELECT max(ts) AS ts FROM threat_level_checks").to_pylist()
        assert checked["ts"] is not None and (last["ts"] is None or checked["ts"] >= last["ts"])
    finally:
        httpd.shutdown()
