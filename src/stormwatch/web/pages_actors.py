"""Who attacked: campaign pages, source-address pages (what it did, when, to which sensors) and
session pages (one honeypot session's event timeline, payload hashes, decoded offers)."""

from __future__ import annotations

import ipaddress
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse

from stormwatch.store.read import list_sessions
from stormwatch.web import pages_data as data
from stormwatch.web.deps import get_state
from stormwatch.web.pages_render import render
from stormwatch.web.pages_svg import Chart, Series, render_chart

router = APIRouter()

SOURCE_DAYS = 7  # default window of a source page: bounded work on a big store (?days= widens it)
MAX_DAYS = 3650
SESSION_EVENTS = 2000  # a session page shows at most this many events (the sensor caps sessions far lower)
# Hashes a session page lists, by the event field that holds them.
HASH_FIELDS = ("payload_sha256", "decoded_sha256", "payload_md5", "sha256", "file_sha256")


def _limit(request: Request, limit: int) -> int:
    return min(limit, get_state(request).settings.max_page_size)


@router.get("/campaigns", response_class=HTMLResponse)
def campaigns_page(request: Request) -> HTMLResponse:
    st = get_state(request)
    current = data.now(st)
    rows = data.campaign_list(st, current.at) if current else []
    since, until = data.campaign_window(current.at) if current else (None, None)
    return HTMLResponse(render("campaigns.html", title="campaigns", rows=rows, since=since, until=until))


@router.get("/campaigns/{name}", response_class=HTMLResponse)
def campaign_page(request: Request, name: Annotated[str, Path(min_length=1, max_length=128)]) -> HTMLResponse:
    st = get_state(request)
    current = data.now(st)
    detail = data.campaign_detail(st, current.at, name) if current else None
    if detail is None:
        raise HTTPException(404, f"no campaign named {name!r} in the 30 days before the newest event "
                                 "(a name, a family or an id such as cmp-a10363; see /campaigns)")
    c = detail.campaign
    chart = render_chart(Chart(f"{c.name}: attacks per day", [Series("attacks", [(d, float(n)) for d, n in c.daily])]))
    attacks = sorted(detail.attacks, key=lambda a: a.ts, reverse=True)[:200]
    return HTMLResponse(render("campaign.html", title=c.name, c=c, detail=detail, chart=chart, attacks=attacks,
                               total_attacks=len(detail.attacks)))


def canonical_address(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address.strip()))
    except ValueError as exc:
        raise HTTPException(422, f"{address!r} is not an IPv4 or IPv6 address") from exc


@router.get("/sources/{address}", response_class=HTMLResponse)
def source_page(request: Request, address: Annotated[str, Path(max_length=64)],
                days: Annotated[int, Query(ge=1, le=MAX_DAYS)] = SOURCE_DAYS, until: date | None = None,
                limit: Annotated[int, Query(ge=1)] = 100, offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
                ) -> HTMLResponse:
    st = get_state(request)
    ip = canonical_address(address)
    limit = _limit(request, limit)
    current = data.now(st)
    if current is None:
        raise HTTPException(404, "no events stored yet")
    end = data.day_start(until) + timedelta(days=1) if until else current.at
    since = end - timedelta(days=days)
    summary = data.source_summary(st.store, ip, since, end)
    if summary is None:
        seen = data.source_range(st.store, ip)
        if seen is None:
            raise HTTPException(404, f"{ip} has not been seen by any sensor")
        raise HTTPException(404, f"{ip} was not seen between {since:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC; "
                                 f"it was seen from {seen[0]:%Y-%m-%d %H:%M} to {seen[1]:%Y-%m-%d %H:%M} "
                                 f"(use ?until=DATE&days=N)")
    events = data.source_events(st.store, ip, since, end, limit, offset)
    chart = render_chart(Chart(f"{ip}: records per day", [
        Series("records", [(r["day"], float(r["records"])) for r in summary["daily"]])]))
    return HTMLResponse(render("source.html", title=ip, ip=ip, s=summary, events=events, chart=chart, since=since,
                               end=end, days=days, limit=limit, offset=offset, until=until))


@router.get("/sessions", response_class=HTMLResponse)
def sessions_page(request: Request, exploits: bool | None = None, sensor: Annotated[str | None, Query(max_length=128)]
                  = None, limit: Annotated[int, Query(ge=1)] = 50) -> HTMLResponse:
    st = get_state(request)
    limit = _limit(request, limit)
    current = data.now(st)
    since = current.at - timedelta(days=30) if current else None
    rows = list_sessions(st.store, sensor=sensor, exploits=exploits, limit=limit, since=since)
    return HTMLResponse(render("sessions.html", title="sessions", sessions=rows, exploits=exploits, limit=limit,
                               sensor=sensor))


def _hashes(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out, seen = [], set()
    for e in events:
        for f in HASH_FIELDS:
            value = e["data"].get(f)
            if isinstance(value, str) and (f, value) not in seen:
                seen.add((f, value))
                out.append({"event": e["event"], "field": f, "value": value, "size": e["data"].get(
                    "payload_size" if f == "payload_sha256" else "decoded_size" if f == "decoded_sha256" else "size")})
    return out


@router.get("/sessions/{session}", response_class=HTMLResponse)
def session_page(request: Request, session: Annotated[str, Path(min_length=1, max_length=128)]) -> HTMLResponse:
    st = get_state(request)
    events = data.session_events(st.store, session, SESSION_EVENTS)
    if not events:
        raise HTTPException(404, f"no session {session!r} in the store")
    first = events[0]
    offers = [e for e in events if e["event"] == "payload.offer"]
    shellcode = [e for e in events if e["event"] == "payload.shellcode"]
    attempts = [e for e in events if e["event"] == "exploit.attempt"]
    setup: dict[str, Any] = next((e["data"] for e in events if e["event"] == "smb.session_setup"), {})
    closed: dict[str, Any] = next((e["data"] for e in events if e["event"] == "session.closed"), {})
    return HTMLResponse(render("session.html", title=f"session {session[:12]}", session=session, events=events,
                               first=first, offers=offers, shellcode=shellcode, attempts=attempts, setup=setup,
                               closed=closed, hashes=_hashes(events), truncated=len(events) >= SESSION_EVENTS,
                               kb=st.kb))
