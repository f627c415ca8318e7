"""``/api/v1``: surges, ports, sources, exploits and campaigns (reads; token only when the
server's ``read_open`` is off).

Each route is a thin shell over the analytics function of the same name (the CLI's commands call
the same ones), so the API, the dashboard and ``stormwatch ...`` agree. One address's activity
(``/sources/{address}``) is the only query written here: the analytics engine takes no string
parameters (it never pastes a caller's text into SQL), so it runs on the store with DuckDB's own
bound parameters.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from stormwatch.analytics import campaigns as campaigns_mod
from stormwatch.analytics import ports as ports_mod
from stormwatch.analytics.exploits import ExploitActivity, exploit_activity
from stormwatch.analytics.surges import surge_report
from stormwatch.threat.kb import KnowledgeBase
from stormwatch.web.api_common import NOT_FOUND, READ_ERRORS, ApiRoute, as_of, bad, day_range, not_found, page_size, utc
from stormwatch.web.api_common import address as parse_address
from stormwatch.web.api_common import window as checked_window
from stormwatch.web.api_kb import current_kb
from stormwatch.web.api_models import (
    CampaignDetailOut,
    CampaignOut,
    CampaignsOut,
    ExploitOut,
    ExploitsOut,
    PortDayOut,
    PortHistoryOut,
    RankedPortOut,
    SourceDetailOut,
    SourceSummaryOut,
    SurgeOut,
    SurgesOut,
    TopPortsOut,
    TopSourcesOut,
)
from stormwatch.web.deps import get_engine, get_store, read_guard

router = APIRouter(route_class=ApiRoute, dependencies=[Depends(read_guard)], responses=READ_ERRORS)

SurgeKind = Literal["port", "exploit", "srcnet"]
Since = Annotated[datetime | None, Query(description="from this time (UTC), inclusive")]
Until = Annotated[datetime | None, Query(description="up to this time (UTC), exclusive")]
PortNumber = Annotated[int, Path(ge=0, le=65535, description="a port number, 0-65535")]


@router.get("/surges", response_model=SurgesOut, tags=["signals"])
def surges(request: Request,
           until: Annotated[datetime | None, Query(description="as of [default: the latest event]")] = None,
           days: Annotated[int, Query(ge=1, le=365, description="days of baseline before `until`")] = 30,
           kind: Annotated[list[SurgeKind] | None, Query(description="port, exploit, srcnet (repeatable)")] = None,
           active: Annotated[bool | None, Query(description="only surges still going (true) or ended (false)")]
           = None) -> SurgesOut:
    """Rises of hourly series (ports, exploits, source networks) above their seasonal baseline."""
    rep = surge_report(get_engine(request), until=utc(until), days=days,
                       kinds=tuple(kind) if kind else ("port", "exploit", "srcnet"))
    found = [s for s in rep.surges if active is None or s.active == active]
    return SurgesOut(surges=[SurgeOut(**s.as_dict()) for s in found], notes=rep.notes, start=rep.start,
                     until=rep.until, sensors=rep.sensors)


@router.get("/ports", response_model=TopPortsOut, tags=["ports"])
def top_ports(request: Request,
              day: Annotated[date | None, Query(description="UTC day [default: the latest day with records]")]
              = None,
              by: Annotated[Literal["records", "sources", "targets"], Query()] = "records",
              limit: Annotated[int, Query(ge=1, description="rows (capped at the server's page size)")] = 10
              ) -> TopPortsOut:
    """The busiest ports of a day, as ISC's port report (records, sources, targets, TCP/UDP share,
    survival time)."""
    engine = get_engine(request)
    day = day or ports_mod.latest_day(engine)
    rows = ports_mod.top_ports(engine, day, by, min(page_size(request, limit), ports_mod.MAX_LIMIT)) if day else []
    return TopPortsOut(day=day, by=by, ports=[RankedPortOut.model_validate(r) for r in rows])


@router.get("/ports/{port}", response_model=PortHistoryOut, tags=["ports"])
def port_history(request: Request, port: PortNumber,
                 since: Annotated[date | None, Query(description="first UTC day")] = None,
                 until: Annotated[date | None, Query(description="last UTC day (inclusive)")] = None
                 ) -> PortHistoryOut:
    """One port's figures per day (days without records are absent, as in ISC's porthistory)."""
    day_range(since, until)
    rows = ports_mod.port_history(get_engine(request), port, since, until)
    return PortHistoryOut(port=port, since=since, until=until, days=[PortDayOut.model_validate(r) for r in rows])


@router.get("/sources", response_model=TopSourcesOut, tags=["sources"])
def top_sources(request: Request,
                day: Annotated[date | None, Query(description="one UTC day (not with since/until)")] = None,
                since: Annotated[date | None, Query(description="first UTC day")] = None,
                until: Annotated[date | None, Query(description="last UTC day (inclusive)")] = None,
                limit: Annotated[int, Query(ge=1)] = 10) -> TopSourcesOut:
    """The source addresses with the most records [default: on the latest day]."""
    if day is not None and (since is not None or until is not None):
        raise bad("give either day or a since/until range, not both")
    day_range(since, until)
    if until is not None and since is None:
        since = ports_mod.EARLIEST
    rows = ports_mod.top_sources(get_engine(request), day=day, since=since, until=until,
                                 limit=min(page_size(request, limit), ports_mod.MAX_LIMIT))
    return TopSourcesOut(sources=[SourceSummaryOut.model_validate(r) for r in rows])


_SOURCE_TOTALS = """
SELECT count(*) AS events, coalesce(sum(count) FILTER (WHERE event = 'fw.connection'), 0) AS records,
       count(DISTINCT dst_ip) AS targets, min(ts) AS first_seen, max(ts) AS last_seen
FROM events WHERE src_ip = $a"""
_SOURCE_PARTS = {
    "sensors": """SELECT sensor, count(*) AS events, min(ts) AS first_seen, max(ts) AS last_seen
        FROM events WHERE src_ip = $a GROUP BY sensor ORDER BY events DESC, sensor""",
    "ports": """SELECT dst_port AS port, proto, sum(count) AS records, count(DISTINCT dst_ip) AS targets,
        min(ts) AS first_seen, max(ts) AS last_seen
        FROM events WHERE src_ip = $a AND event IN ('fw.connection', 'session.connect')
        GROUP BY ALL ORDER BY records DESC, port NULLS LAST, proto LIMIT 100""",
    "event_types": """SELECT event, count(*) AS events FROM events WHERE src_ip = $a
        GROUP BY event ORDER BY events DESC, event""",
    "exploits": """SELECT json_extract_string(data, '$.vuln') AS vuln, json_extract_string(data, '$.kind') AS kind,
        count(*) AS attempts, min(ts) AS first_seen, max(ts) AS last_seen
        FROM events WHERE src_ip = $a AND event = 'exploit.attempt'
        GROUP BY ALL ORDER BY attempts DESC, vuln, kind""",
    "sessions": """SELECT session, min(ts) AS started FROM events WHERE src_ip = $a AND session IS NOT NULL
        GROUP BY session ORDER BY started DESC, session LIMIT 100""",
    "days": """SELECT CAST(ts AS DATE) AS day, count(*) AS events,
        coalesce(sum(count) FILTER (WHERE event = 'fw.connection'), 0) AS records
        FROM events WHERE src_ip = $a GROUP BY day ORDER BY day""",
}


@router.get("/sources/{address}", response_model=SourceDetailOut, responses=NOT_FOUND, tags=["sources"])
def source(request: Request,
           address: Annotated[str, Path(max_length=100, description="IPv4 or IPv6")]
           ) -> SourceDetailOut:
    """What one address did: when, to which ports and sensors, exploits, sessions, per day."""
    store = get_store(request)
    a = parse_address(address)
    totals = store.query(_SOURCE_TOTALS, {"a": a}).to_pylist()[0]
    if not totals["events"]:
        raise not_found(f"no events from {a}")
    parts: dict[str, Any] = {k: store.query(sql, {"a": a}).to_pylist() for k, sql in _SOURCE_PARTS.items()}
    parts["sessions"] = [r["session"] for r in parts["sessions"]]
    return SourceDetailOut.model_validate({"address": a, **totals, **parts})


def _exploit(e: ExploitActivity, kb: KnowledgeBase) -> dict[str, Any]:
    v = kb.find(e.vuln)
    return {**e.as_dict(), "name": v.name if v else None, "severity": v.severity.rating if v else None}


@router.get("/exploits", response_model=ExploitsOut, tags=["signals"])
def exploits(request: Request, since: Since = None, until: Until = None) -> ExploitsOut:
    """Exploit attempts per vulnerability [default: the 7 days before the latest event's hour]."""
    since, until = checked_window(since, until)
    engine = get_engine(request)
    end = until or as_of(engine, None)
    start = since or end - timedelta(days=7)
    if end <= start:
        raise bad(f"empty window: until ({end}) is not after since ({start})")
    rows = exploit_activity(engine, since=start, until=end)
    kb = current_kb(request)
    return ExploitsOut(since=start, until=end, exploits=[ExploitOut.model_validate(_exploit(e, kb)) for e in rows])


@router.get("/campaigns", response_model=CampaignsOut, tags=["campaigns"])
def campaigns(request: Request, since: Since = None, until: Until = None) -> CampaignsOut:
    """Attack campaigns (clusters of exploit attempts by fingerprint), most attacks first [default:
    all time]."""
    since, until = checked_window(since, until)
    found = campaigns_mod.campaigns(get_engine(request), since=since, until=until)
    return CampaignsOut(campaigns=[CampaignOut.model_validate(c.as_dict()) for c in found])


@router.get("/campaigns/{name}", response_model=CampaignDetailOut, responses=NOT_FOUND, tags=["campaigns"])
def campaign(request: Request,
             name: Annotated[str, Path(max_length=200, description="name, id (cmp-xxxxxx) or family")],
             since: Since = None, until: Until = None) -> CampaignDetailOut:
    """One campaign with its sources, payloads and attacks."""
    since, until = checked_window(since, until)
    d = campaigns_mod.campaign(get_engine(request), name, since=since, until=until)
    if d is None:
        raise not_found(f"no campaign named {name[:100]!r} (see /api/v1/campaigns)")
    return CampaignDetailOut.model_validate(d.as_dict())
