"""Port pages (the ISC-style port report with the surge detector's view) and vulnerability pages
(knowledge base, what was observed, the advisory)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from stormwatch.analytics.exploits import ExploitActivity, exploit_activity, exploit_daily
from stormwatch.analytics.ports import latest_day, port_history, top_ports
from stormwatch.analytics.signals import Surge
from stormwatch.store.read import payload_summary
from stormwatch.threat import state as level_state
from stormwatch.threat.advisory import build_advisory, to_html
from stormwatch.threat.kb import Vuln
from stormwatch.web import pages_data as data
from stormwatch.web.deps import get_state
from stormwatch.web.pages_render import render
from stormwatch.web.pages_svg import Band, Chart, Series, render_chart

router = APIRouter()

BASELINE_DAYS = 7  # the daily chart's baseline: the mean of the 7 days before each day
HOURLY_DAYS = 7
MAX_DAYS = 3650
VULN_DAYS = 30
VulnId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$",
                             description="a bulletin (MS06-040) or a CVE")]


def trailing_baseline(days: list[date], values: list[float]) -> list[tuple[date, float | None]]:
    """For each day, the mean of the :data:`BASELINE_DAYS` calendar days before it (missing days
    count as 0: a port not seen on a day had no records); None until there is a full window."""
    by_day = dict(zip(days, values, strict=True))
    out: list[tuple[date, float | None]] = []
    for d in days:
        window = [by_day.get(d - timedelta(days=i), 0.0) for i in range(1, BASELINE_DAYS + 1)]
        out.append((d, sum(window) / BASELINE_DAYS if days[0] <= d - timedelta(days=BASELINE_DAYS) else None))
    return out


def surge_bands(surges: list[Surge], end: datetime) -> list[Band]:
    return [Band(g.since, end if g.active else g.detected_at,
                 f"surge of {g.metric} since {g.since:%Y-%m-%d %H:%M}, detected {g.detected_at:%Y-%m-%d %H:%M}: "
                 f"{g.observed:g}/h against a baseline of {g.baseline:g}/h ({g.scope}, {g.sensors} of "
                 f"{g.sensors_total} sensors){' (still going)' if g.active else ''}") for g in surges]


@router.get("/ports", response_class=HTMLResponse)
def ports(request: Request, day: date | None = None,
          by: Literal["records", "sources", "targets"] = "sources",
          limit: Annotated[int, Query(ge=1)] = 20) -> HTMLResponse:
    st = get_state(request)
    limit = min(limit, st.settings.max_page_size)
    day = day or data.cached(st, "latest_day", lambda: latest_day(st.engine))
    rows = top_ports(st.engine, day, by=by, limit=limit) if day else []
    return HTMLResponse(render("ports.html", title="ports", day=day, by=by, rows=rows, limit=limit))


@router.get("/ports/{port}", response_class=HTMLResponse)
def port_page(request: Request, port: Annotated[int, Path(ge=0, le=65535)],
              days: Annotated[int, Query(ge=1, le=MAX_DAYS)] = 60, until: date | None = None) -> HTMLResponse:
    st = get_state(request)
    last = until or data.cached(st, "latest_day", lambda: latest_day(st.engine))
    if last is None:
        raise HTTPException(404, "no firewall records stored yet")
    first = last - timedelta(days=days - 1)
    history = port_history(st.engine, port, first, last)
    if not history:
        raise HTTPException(404, f"no records for port {port} between {first} and {last}")
    current = data.now(st)
    surges = [g for g in current.signals.surges if g.kind == "port" and g.subject == str(port)] if current else []
    end = data.day_start(last) + timedelta(days=1)
    charts = []
    daily_days = [r["day"] for r in history]
    for metric in ("records", "sources", "targets"):
        vals = [float(r[metric]) for r in history]  # type: ignore[literal-required,unused-ignore]
        charts.append(render_chart(Chart(
            f"port {port}: {metric} per day", [
                Series(metric, list(zip(daily_days, vals, strict=True)), css="s1"),
                Series(f"baseline (mean of the {BASELINE_DAYS} days before)",
                       trailing_baseline(daily_days, vals), css="baseline", dashed=True)],
            bands=[b for b in surge_bands(surges, end) if b.end >= data.day_start(first)], y_label=metric)))
    h_since = end - timedelta(days=HOURLY_DAYS)
    hourly = data.port_hourly(st.store, port, h_since, end)
    hourly_series = [Series("sources per hour", [(r["hour"], float(r["sources"])) for r in hourly], css="s2")]
    shown = [g for g in surges if g.active or g.detected_at >= h_since]
    for g in shown:  # the detector's baseline over the surge: what it expected per hour
        hourly_series.append(Series(f"expected from {g.since:%m-%d %H:%M} (baseline {g.baseline:g}/h)",
                                    [(max(g.since, h_since), g.baseline), (end if g.active else g.detected_at,
                                                                           g.baseline)],
                                    css="baseline", dashed=True))
    hourly_chart = render_chart(Chart(f"port {port}: distinct sources per hour, last {HOURLY_DAYS} days",
                                      hourly_series, bands=surge_bands(shown, end), y_label="sources"))
    # top sources of the last day only: grouping a week of a busy port by address costs seconds at 100M events
    sources = data.port_sources(st.store, port, end - timedelta(days=1), end, 25)
    return HTMLResponse(render("port.html", title=f"port {port}", port=port, first=first, last=last, days=days,
                               history=list(reversed(history))[:60], charts=charts, hourly_chart=hourly_chart,
                               surges=surges, sources=sources, hourly_days=HOURLY_DAYS))


def _vuln(request: Request, vuln: str) -> Vuln:
    v = get_state(request).kb.find(vuln)
    if v is None:
        raise HTTPException(404, f"{vuln!r} is not in the knowledge base (a bulletin such as MS06-040, or a CVE)")
    return v


@router.get("/vulns", response_class=HTMLResponse)
def vulns(request: Request) -> HTMLResponse:
    st = get_state(request)
    current = data.now(st)
    seen: dict[str, ExploitActivity] = {}
    if current is not None:
        seen = {e.vuln.upper(): e for e in exploit_activity(st.engine, since=current.at - timedelta(days=VULN_DAYS),
                                                            until=current.at)}
    rows = [{"v": v, "seen": seen.get(v.id.upper())} for v in st.kb.values()]
    rows.sort(key=lambda r: (r["seen"] is None, -(r["seen"].attempts if r["seen"] else 0), r["v"].id))  # type: ignore[union-attr]
    return HTMLResponse(render("vulns.html", title="vulnerabilities", rows=rows, days=VULN_DAYS))


@router.get("/vulns/{vuln}", response_class=HTMLResponse)
def vuln_page(request: Request, vuln: VulnId) -> HTMLResponse:
    st = get_state(request)
    v = _vuln(request, vuln)
    current = data.now(st)
    ids = {v.id.upper(), *(c.upper() for c in v.cves)}
    activity, chart, sessions, payloads = None, None, [], []
    if current is not None:
        since = current.at - timedelta(days=VULN_DAYS)
        activity = next((e for e in exploit_activity(st.engine, since=since, until=current.at)
                         if e.vuln.upper() in ids or (e.cve or "").upper() in ids), None)
        daily = exploit_daily(st.engine, v.id, since=since, until=current.at)
        chart = render_chart(Chart(f"{v.id}: exploit attempts per day, last {VULN_DAYS} days", [
            Series("attempts", [(d.day, float(d.attempts)) for d in daily], css="s1"),
            Series("sources", [(d.day, float(d.sources)) for d in daily], css="s2"),
            Series("probes", [(d.day, float(d.probes)) for d in daily], css="s3")]))
        sessions = data.vuln_sessions(st.store, ids, since, current.at, 50)
        payloads = [p for p in payload_summary(st.store, since=since, until=current.at, limit=200)
                    if ids & {x.upper() for x in (p["vuln"] or "").split(",")}][:20]
    return HTMLResponse(render("vuln.html", title=v.id, v=v, activity=activity, chart=chart, sessions=sessions,
                               payloads=payloads, days=VULN_DAYS, has_data=current is not None))


@router.get("/vulns/{vuln}/advisory")
def vuln_advisory(request: Request, vuln: VulnId) -> Response:
    """The advisory document of :func:`stormwatch.threat.advisory.to_html`, served alone under a
    sandboxing Content-Security-Policy (no script at all, its own inline style only); the
    vulnerability page shows it in a sandboxed ``<iframe>``."""
    from stormwatch.web.app import ADVISORY_CSP

    st = get_state(request)
    v = _vuln(request, vuln)
    current = data.now(st)
    if current is None:
        raise HTTPException(404, "no events stored yet: nothing to advise on")
    status = current.status
    last = level_state.last_change(st.store, current.at)
    if status.change is not None:
        reasons = status.change.reasons
    elif last is not None:
        reasons = last.reasons
    else:
        reasons = tuple(f"[rule {r.rule}] {r.text}" for r in status.assessment.reasons)
    source = f"in force since {status.since:%Y-%m-%d %H:%M} UTC, set by {status.actor}" if status.since \
        else "assessed from the rules now"
    adv = build_advisory(st.engine, v, current.at, kb=st.kb, signals=current.signals, level=status.level,
                         level_reasons=reasons, level_source=source)
    return HTMLResponse(to_html(adv), headers={"Content-Security-Policy": ADVISORY_CSP})
