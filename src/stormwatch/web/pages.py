"""The dashboard's pages router: the overview here; ports and vulnerabilities in
:mod:`stormwatch.web.pages_ports`, campaigns, sources and sessions in
:mod:`stormwatch.web.pages_actors`.

Pages are server-rendered (Jinja2, autoescape on; see :mod:`stormwatch.web.pages_render`) with
charts as inline SVG (:mod:`stormwatch.web.pages_svg`). Every page reads only.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from stormwatch.analytics.ports import top_ports
from stormwatch.store.read import list_sessions
from stormwatch.threat import state as level_state
from stormwatch.threat.advisory import under_exploitation
from stormwatch.threat.level import LEVELS
from stormwatch.web import pages_data as data
from stormwatch.web.deps import get_state, read_guard
from stormwatch.web.pages_actors import router as actors_router
from stormwatch.web.pages_ports import router as ports_router
from stormwatch.web.pages_render import render
from stormwatch.web.pages_svg import Chart, Series, render_chart, sparkline

router = APIRouter(include_in_schema=False, dependencies=[Depends(read_guard)])
router.include_router(ports_router)
router.include_router(actors_router)

HISTORY_SHOWN = 20


def page(template: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(render(template, **context))


def level_chart(changes: list[level_state.Change], at: datetime) -> Any:
    if not changes:
        return None
    pts = [(changes[0].ts - timedelta(hours=1), float(changes[0].previous))]
    pts += [(c.ts, float(c.level)) for c in changes] + [(max(at, changes[-1].ts), float(changes[-1].level))]
    return render_chart(Chart("threat level over time", [Series("level", pts, css="level", step=True)],
                              y_min=1, y_max=4, height=140))


@router.get("/", response_class=HTMLResponse)
def overview(request: Request) -> HTMLResponse:
    st = get_state(request)
    current = data.now(st)
    if current is None:
        return page("empty.html", title="overview")
    at, sig, status = current.at, current.signals, current.status
    changes = level_state.changes(st.store, until=at, limit=HISTORY_SHOWN)
    sensors = data.sensor_health(st, at)
    for s in sensors:
        s["spark"] = sparkline(s["hourly"], label=f"events per hour of {s['sensor']}, last 24 hours")
    exploits = [{"e": e, "vuln": st.kb.find(e.vuln)} for e in under_exploitation(st.engine, at)]
    ports = top_ports(st.engine, None, by="sources", limit=10)
    sessions = list_sessions(st.store, exploits=True, limit=10, since=at - timedelta(days=7))
    return page("overview.html", title="overview", at=at, status=status, level_name=LEVELS[status.level][0],
                level_colour=LEVELS[status.level][1], changes=list(reversed(changes)),
                level_chart=level_chart(changes, at), surges=[g for g in sig.surges if g.active],
                past_surges=[g for g in sig.surges if not g.active], exploits=exploits,
                campaigns=list(sig.campaigns or ()), sensors=sensors, ports=ports, sessions=sessions,
                scanners=list(sig.scanners)[:20], notes=[*status.assessment.notes, *status.notes])
