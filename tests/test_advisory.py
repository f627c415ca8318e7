"""Advisories (stormwatch.threat.advisory): the knowledge base joined with observations, actions in
order, escaping of every data string in HTML and Markdown, the CLI, and MS06-040 on the demo store."""

from __future__ import annotations

import html
import json
import re
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from stormwatch.analytics import DuckDBEngine
from stormwatch.cli.advisory_cmd import advisory_cmd
from stormwatch.store import Store
from stormwatch.threat.advisory import build_advisory, md, to_html, to_markdown, under_exploitation
from stormwatch.threat.kb import load_kb
from test_exploit_activity import write
from threat_helpers import outbreak, scanner, signals, surge

DEMO = Path("/work/demo/demo.duckdb")
KB = load_kb()
AT = datetime(2006, 8, 15)
EVIL = '<img src=x onerror="alert(1)">&<script>alert(2)</script>'


def attacks(store: Store) -> None:
    t = datetime(2006, 8, 13, 9, 0)
    write(store, [("hp-1", t + timedelta(minutes=i), f"198.51.100.{i}", f"s{i}", "MS06-040", "exploit")
                  for i in range(1, 8)] + [("hp-2", t + timedelta(days=1), "198.51.100.1", "s99", "MS06-040", "probe")])


def advisory(store: Store, **sig: object):  # type: ignore[no-untyped-def]
    v = KB["MS06-040"]
    return build_advisory(DuckDBEngine(store), v, AT, kb=KB, signals=signals(at=AT, **sig), level=2,  # type: ignore[arg-type]
                          level_reasons=["raised to 2: MS06-040 exploited by 7 sources"], level_source="recorded")


def test_joins_kb_and_observations(store: Store) -> None:
    attacks(store)
    a = advisory(store, surges=[surge("139"), surge("80"), surge("MS06-040", kind="exploit", scope="local")],
                 outbreaks=[outbreak(population=5000.0, population_low=3000.0, population_high=9000.0),
                            outbreak("MS08-067")])
    assert a.activity is not None and (a.activity.attempts, a.activity.sources, a.activity.probes) == (7, 7, 1)
    assert [g.subject for g in a.surges] == ["139", "MS06-040"]  # port 80 is not one of the flaw's ports
    assert a.outbreak is not None and a.outbreak.subject == "MS06-040"
    assert [(d.day.isoformat(), d.attempts, d.probes) for d in a.daily] == [("2006-08-13", 7, 0), ("2006-08-14", 0, 1)]
    text = to_markdown(a)
    for expected in ["# Advisory: MS06-040 Server service buffer overrun (NetpwPathCanonicalize)",
                     "| CVE | CVE-2006-3439 |", "| Patch | KB921883 |", "| Ports | 139/tcp, 445/tcp |",
                     "W32.Wargbot", "First seen 2006-08-13 09:01 UTC",
                     "7 exploit attempts from 7 sources in 7 sessions, seen by 1 sensor; 1 probes from 1 sources",
                     "port 139 sources 4.1x its baseline", "vulnerable population about 5000 (3000 to 9000)",
                     "| 2006-08-13 | 7 | 0 | 7 | 1 |", "**Threat level: 2 (elevated, yellow)**",
                     "<https://learn.microsoft.com/en-us/security-updates/securitybulletins/2006/ms06-040>"]:
        assert expected in text, expected
    # the knowledge base's mitigations, in order
    actions = re.findall(r"^\d+\. \*\*(.+?)\*\*", text, re.M)
    assert [md(m.action) for m in KB["MS06-040"].mitigations] == actions
    assert actions[0] == "Block TCP 139 and 445 at the perimeter"


def test_local_infected_hosts_come_first(store: Store) -> None:
    a = advisory(store, scanners=[scanner("10.1.2.3"), scanner("10.9.9.9", ports=(22,)),
                                  scanner("192.0.2.7", direction="inbound")])
    assert a.actions[0].action == "Isolate and rebuild the local hosts scanning out on ports 139, 445: 10.1.2.3"
    assert a.actions[1].action == "Block TCP 139 and 445 at the perimeter"
    assert any("no exploit attempt against MS06-040" in n for n in a.notes)  # nothing in the store


def test_every_data_string_is_escaped_in_html(store: Store) -> None:
    vuln = replace(KB["MS06-040"], name=EVIL, malware=(EVIL,), references=(
        "https://example.org/a", 'javascript:alert(3)', 'https://x.org/"onmouseover=alert(4)'))
    a = build_advisory(DuckDBEngine(store), vuln, AT, kb=KB,
                       signals=signals(at=AT, scanners=[scanner(EVIL)], surges=[surge(EVIL, kind="exploit")],
                                       outbreaks=[outbreak(note=EVIL)], notes=(EVIL,)),
                       level=3, level_reasons=[EVIL], level_source=EVIL)
    a = replace(a, surges=(surge("139", metric=EVIL),))
    page = to_html(a)
    assert "<img" not in page and "<script" not in page and 'onerror="' not in page
    assert html.escape(EVIL) in page
    # no external resource: no script, stylesheet link, image, frame or url() anywhere
    tags = re.findall(r"<[a-z][^>]*>", page.lower())
    assert {t.split()[0].strip("<>") for t in tags} <= {
        "html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "span", "br", "table", "tr", "th", "td",
        "ul", "ol", "li", "strong", "a"}
    assert not any(re.search(r"\b(src|srcset|style|on\w+)\s*=", t) for t in tags)
    style = page[page.index("<style>"):page.index("</style>")]
    assert "url(" not in style and "@import" not in style
    assert "default-src 'none'" in page
    # only http(s) references become links, and their quotes are escaped
    assert '<a href="https://example.org/a"' in page
    assert 'href="javascript' not in page and "<li>javascript:alert(3)</li>" in page
    assert '"onmouseover' not in page
    text = to_markdown(a)
    # every "<" is escaped except the autolinks of the http(s) references; "&" too (no entities)
    assert re.findall(r"(?<!\\)<(?!https?://)", text) == [] and re.findall(r"(?<!\\)&", text) == []
    assert "\\<img src=x onerror=" in text


def test_under_exploitation_lists_attempts_not_probes(store: Store) -> None:
    attacks(store)
    write(store, [("hp-1", datetime(2006, 8, 14), "198.51.100.50", "p1", "MS08-067", "probe")])
    assert [e.vuln for e in under_exploitation(DuckDBEngine(store), AT)] == ["MS06-040"]
    assert under_exploitation(DuckDBEngine(store), AT + timedelta(days=30)) == []


def test_cli_errors(tmp_path: Path) -> None:
    r = CliRunner()
    db = tmp_path / "e.duckdb"
    Store(db).close()
    res = r.invoke(advisory_cmd, ["MS06-040", "--db", str(db)])
    assert res.exit_code == 1 and "no events stored yet" in res.output
    with Store(db) as st:
        attacks(st)
    res = r.invoke(advisory_cmd, ["MS99-999", "--db", str(db)])
    assert res.exit_code == 1 and "no knowledge-base entry for 'MS99-999'" in res.output
    assert r.invoke(advisory_cmd, ["--db", str(db), "--format", "html"]).exit_code == 2
    res = r.invoke(advisory_cmd, ["--db", str(db), "--format", "json"])
    assert [row["vuln"] for row in json.loads(res.output)] == ["MS06-040"]


@pytest.fixture
def demo() -> Path:
    if not DEMO.exists():
        pytest.skip("demo store not built (/work/demo/demo.duckdb)")
    return DEMO


def test_demo_ms06_040_advisory(demo: Path, tmp_path: Path) -> None:
    r = CliRunner()
    res = r.invoke(advisory_cmd, ["--db", str(demo)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert "before 2006-08-15 00:00 UTC" in lines[0] and lines[3].startswith("MS06-040")
    res = r.invoke(advisory_cmd, ["MS06-040", "--db", str(demo)])
    assert res.exit_code == 0, res.output
    text = res.output
    assert "First seen 2006-08-12 14:36 UTC" in text
    assert "from 112 sources" in text and "seen by 1 sensor" in text
    assert "1. **Block TCP 139 and 445 at the perimeter**" in text
    assert "## Why the threat level is" in text
    out = tmp_path / "ms06-040.html"
    res = r.invoke(advisory_cmd, ["cve-2006-3439", "--db", str(demo), "--format", "html", "--out", str(out)])
    assert res.exit_code == 0 and f"wrote {out}" in res.output
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "KB921883" in page and "from 112 sources" in page
    res = r.invoke(advisory_cmd, ["MS06-040", "--db", str(demo), "--format", "json", "--at", "2006-08-13"])
    data = json.loads(res.output)
    assert data["vuln"]["id"] == "MS06-040" and data["activity"]["first_seen_ever"].startswith("2006-08-12T14:36")
    assert data["activity"]["sources"] < 112  # only what was seen before --at
