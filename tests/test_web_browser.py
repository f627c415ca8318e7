"""The dashboard in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.

Over a small demo store (see :func:`test_web_pages.build_demo_store`) into which the hostile
values of :mod:`test_web_escaping` were also fed (through the live sensor and ingest), the test
opens every page, clicks from the overview through a vulnerability to a session and on to its
source, asserts what is shown, checks that no page raises a script error, loads anything from
outside the app, or opens an alert dialog (the hostile values must stay inert), and saves a
screenshot of every page under ``$STORMWATCH_ARTEFACTS`` (default: the test's tmp directory).

Skipped, with the reason, only when Chromium or Playwright is missing (``.ci/run`` installs
``chromium``; Playwright's own browser downloads are not used).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
pytest.importorskip("impacket", reason="the demo's bots drive impacket (pip install -e '.[dev]')")

import uvicorn
from playwright.sync_api import sync_playwright

from demo_store import build_demo_store
from stormwatch.store import Store
from stormwatch.web.app import create_app
from stormwatch.web.settings import WebSettings
from test_web_escaping import ATTACKER, IMG, SCRIPT, attack_sensor, ingest_hostile_logs

CHROMIUM = os.environ.get("STORMWATCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@dataclass
class Served:
    base: str
    artefacts: Path
    offer_session: str
    shots: list[Path] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="module")
def served(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("browser")
    db = build_demo_store(tmp)
    with Store(db) as store:
        attack_sensor(store, tmp / "hostile-live")
        ids = ingest_hostile_logs(store, tmp)
    artefacts = Path(os.environ.get("STORMWATCH_ARTEFACTS") or tmp) / "screenshots"
    artefacts.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(WebSettings(db=db, read_only=True, api_tokens=())),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    try:
        yield Served(f"http://127.0.0.1:{port}", artefacts, ids["offer"])
    finally:
        server.should_exit = True
        thread.join(30)


@dataclass
class Watch:
    """What went wrong in the page: script errors, console errors, dialogs, requests leaving the app."""

    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser(chromium: str, served: Served) -> Iterator[Any]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def tab(browser: Any, served: Served) -> Iterator[tuple[Any, Watch]]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    w = Watch()
    page.on("pageerror", lambda exc: w.errors.append(str(exc)))
    page.on("console", lambda m: w.errors.append(m.text) if m.type == "error" else None)

    def dialog(d: Any) -> None:
        w.dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", dialog)
    page.on("request", lambda r: None if r.url.startswith((served.base, "data:", "about:"))
            else w.outside.append(r.url))
    yield page, w
    page.close()
    assert not w.dialogs, f"an alert fired: {w.dialogs}"
    assert not w.errors, w.errors
    assert not w.outside, f"requests left the app: {w.outside}"


def shot(page: Any, served: Served, name: str) -> None:
    path = served.artefacts / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000
    served.shots.append(path)


def test_click_from_the_overview_to_a_session(tab: tuple[Any, Watch], served: Served) -> None:
    page, _ = tab
    page.goto(served.base + "/")
    assert page.locator("#level h1").inner_text().startswith("Threat level")
    assert page.locator("#history svg.chart").count() == 1
    assert page.locator("#sensors tbody tr").count() >= 4
    shot(page, served, "01-overview")
    page.locator("#exploits a", has_text="MS06-040").first.click()
    page.wait_for_url("**/vulns/MS06-040")
    assert "Server service" in page.locator("h1").inner_text()
    assert "exploit attempts from" in page.locator("#observed-summary").inner_text()
    advisory = page.frame_locator("iframe.advisory")
    assert "Recommended actions" in advisory.locator("body").inner_text()
    shot(page, served, "02-vuln-ms06-040")
    page.locator("#observed a.session-link").first.click()
    page.wait_for_url("**/sessions/*")
    assert page.locator("h1").inner_text().startswith("Session")
    timeline = page.locator("#timeline").inner_text()
    assert "exploit.attempt" in timeline and "session.connect" in timeline
    assert page.locator("#hashes code").count() >= 1
    shot(page, served, "03-session")
    page.locator("#session-facts a[href^='/sources/']").first.click()
    page.wait_for_url("**/sources/*")
    assert page.locator("h1").inner_text().startswith("Source 127.")
    assert "exploit.attempt" in page.locator("#source-activity").inner_text()
    shot(page, served, "04-source")


def test_every_page_opens_cleanly(tab: tuple[Any, Watch], served: Served) -> None:
    page, watch = tab
    page.goto(served.base + "/campaigns")
    campaign = page.locator("main table a[href^='/campaigns/']").first.get_attribute("href")
    pages = {"05-ports": "/ports", "06-port-139": "/ports/139", "07-port-445": "/ports/445?days=14",
             "08-vulns": "/vulns", "09-campaigns": "/campaigns", "10-campaign": campaign,
             "11-sessions": "/sessions", "12-benign-sessions": "/sessions?exploits=false",
             "13-source-infected-host": "/sources/10.20.30.34", "14-advisory": "/vulns/MS06-040/advisory",
             "15-not-found": "/ports/31337"}
    for name, url in pages.items():
        response = page.goto(served.base + url)
        assert response is not None and response.status == (404 if name == "15-not-found" else 200), url
        shot(page, served, name)
    # the browser reports the deliberate 404 as a failed load; nothing else may fail
    assert [e for e in watch.errors if "404" in e] == watch.errors[-1:]
    watch.errors.clear()
    page.goto(served.base + "/ports/139")
    assert page.locator("svg.chart rect.surge").count() >= 1  # the surge drawn
    assert page.locator("svg.chart polyline.baseline").count() >= 1
    page.goto(served.base + "/campaigns")
    header = page.locator("main table thead th", has_text="attacks")
    header.click()  # the app's own script sorts the table (it runs under the CSP)
    assert "sorted-desc" in (header.get_attribute("class") or "")


def test_hostile_values_stay_inert_in_the_browser(tab: tuple[Any, Watch], served: Served) -> None:
    page, _ = tab
    page.goto(served.base + f"/sources/{ATTACKER}")
    sessions = [a.get_attribute("href") for a in page.locator("a.session-link").all()]
    assert sessions
    shot(page, served, "16-hostile-source")
    seen = ""
    for i, href in enumerate(dict.fromkeys(sessions)):
        page.goto(served.base + href)
        seen += page.locator("main").inner_text()
        assert page.locator("main img, main script").count() == 0
        shot(page, served, f"17-hostile-session-{i}")
    assert SCRIPT in seen and IMG in seen  # shown, as text
    page.goto(served.base + f"/sessions/{served.offer_session}")
    assert "javascript:alert(1)" in page.locator("#offers").inner_text()
    assert page.locator("a[href^='javascript:']").count() == 0
    page.goto(served.base + "/sessions")
    shot(page, served, "18-hostile-sessions-list")
