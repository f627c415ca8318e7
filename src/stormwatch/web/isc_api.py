"""A SANS ISC / DShield-compatible API subset under ``/api``, so that scripts written for
https://isc.sans.edu/api/ work unchanged against a stormwatch install (docs/api.md has the table).

Endpoints, with ISC's paths, field names and formats (:mod:`stormwatch.web.api_isc_format`):
``/api/infocon``, ``/api/port/{port}``, ``/api/portdate/{port}[/{date}]``,
``/api/porthistory/{port}[/{start}[/{end}]]``, ``/api/topports[/{by}[/{n}[/{date}]]]``,
``/api/topips[/{by}[/{n}[/{date}]]]``, ``/api/ip/{address}``. The figures are stormwatch's own
(this installation's sensors), computed as ISC defines them (records, targets, sources, TCP/UDP
share in percent; :mod:`stormwatch.analytics.ports`). "Today" is the latest day with records.

Errors: ISC answers a bad port or address with an ``{"error": "bad port number"}`` /
``{"error": "bad IP address"}`` body (status 200, as its clients show); we send the same body, in
the format asked for, with status 422, so a script that looks for the error text still finds it
and one that checks the status stops too. An address with no records is not an error: its
fields are null and counts 0, as ISC answers for an address it has no reports of. Reads are
guarded like the rest of the API (``deps.read_guard``).
"""

from __future__ import annotations

import ipaddress
import socket
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from stormwatch.analytics import ports as ports_mod
from stormwatch.analytics.engine import Engine
from stormwatch.store import Store
from stormwatch.threat import state
from stormwatch.threat.level import LEVELS
from stormwatch.web.api_common import ApiRoute, as_of
from stormwatch.web.api_isc_format import MEDIA, Format, IscDoc, choose, render
from stormwatch.web.api_models import ErrorOut
from stormwatch.web.deps import get_engine, get_store, read_guard
from stormwatch.web.isc_models import IscError, IscInfocon, IscIpOut, IscNumbered, IscPort, IscPortDate, IscTopIp

router = APIRouter(route_class=ApiRoute, prefix="/api", tags=["ISC/DShield compatible"],
                   dependencies=[Depends(read_guard)])

DEFAULT_TOP = 10
MAX_TOP = 1000
HISTORY_DAYS = 30  # porthistory's default range, as ISC's


def isc_format(request: Request,
               json_: Annotated[str | None, Query(alias="json", description="present (`?json`): JSON")] = None,
               xml: Annotated[str | None, Query(description="present (`?xml`): XML (the default)")] = None,
               text: Annotated[str | None, Query(description="present (`?text`): tab-separated text")] = None,
               php: Annotated[str | None, Query(description="present (`?php`): PHP serialize()")] = None,
               format_: Annotated[str | None, Query(alias="format", description="json, xml, text or php")]
               = None) -> Format:
    """The format asked for, by ISC's bare key (``?json``) or ``?format=json``; XML by default."""
    return choose(list(request.query_params.keys()), format_)


Fmt = Annotated[Format, Depends(isc_format)]


def _responses(model: type[Any]) -> dict[int | str, dict[str, Any]]:
    other = {m: {"schema": {"type": "string"}} for f, m in MEDIA.items() if f != "json"}
    return {200: {"model": model, "content": other, "description": "JSON with ?json; XML by default"},
            401: {"model": ErrorOut, "description": "a token is required to read"},
            422: {"model": IscError, "content": other, "description": "ISC's error body: bad port, address or date"}}


def _error(root: str, message: str, fmt: Format) -> Response:
    return render(IscDoc(root, {"error": message}), fmt, status=422)


def _port(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and int(text) <= 65535 else None


def _day(text: str) -> date | None:
    """``YYYY-MM-DD`` from 1970 to 8999 (room for the default 30-day range), else None."""
    try:
        d = date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        return None
    return d if d is not None and 1970 <= d.year < 9000 else None


def _pct(v: float | None) -> int:
    return round(v) if v is not None else 0


def _latest(engine: Engine) -> date:
    return ports_mod.latest_day(engine) or datetime.now(UTC).date()


def _service(port: int, proto: str) -> dict[str, str | None]:
    # the system's services(5) table when it has the port; ISC's long names are not available here
    try:
        name: str | None = socket.getservbyport(port, proto)
    except (OSError, OverflowError):
        name = None
    return {"service": name, "name": name}


def _port_data(engine: Engine, port: int, day: date, datein: str) -> dict[str, Any]:
    rows = ports_mod.port_history(engine, port, day, day)
    r = rows[0] if rows else None
    return {"date": day.isoformat(), "records": r["records"] if r else 0, "targets": r["targets"] if r else 0,
            "sources": r["sources"] if r else 0, "tcp": _pct(r["tcp"]) if r else 0, "udp": _pct(r["udp"]) if r else 0,
            "datein": datein, "portin": port}


@router.get("/infocon", response_model=IscInfocon, responses=_responses(IscInfocon))
def infocon(request: Request, fmt: Fmt) -> Response:
    """The threat level in force as an Infocon colour: ``{"status": "green"}``."""
    change = state.last_change(get_store(request), as_of(get_engine(request), None))
    colour = LEVELS[change.level if change else 1][1]
    return render(IscDoc("infocon", {"status": colour}), fmt)


@router.get("/port/{port}", response_model=IscPort, responses=_responses(IscPort))
def port(request: Request, port: str, fmt: Fmt) -> Response:
    """Summary of a port on the latest day: records, targets, sources, TCP/UDP share."""
    n = _port(port)
    if n is None:
        return _error("port", "bad port number", fmt)
    engine = get_engine(request)
    day = _latest(engine)
    return render(IscDoc("port", {"number": n, "data": _port_data(engine, n, day, day.isoformat()),
                                  "services": {"udp": _service(n, "udp"), "tcp": _service(n, "tcp")}}), fmt)


@router.get("/portdate/{port}", response_model=IscPortDate, responses=_responses(IscPortDate))
@router.get("/portdate/{port}/{day}", response_model=IscPortDate, responses=_responses(IscPortDate))
def portdate(request: Request, port: str, fmt: Fmt, day: str | None = None) -> Response:
    """A port on one day (default: the latest)."""
    n = _port(port)
    if n is None:
        return _error("portdate", "bad port number", fmt)
    engine = get_engine(request)
    d = _day(day) if day is not None else _latest(engine)
    if d is None:
        return _error("portdate", "bad date", fmt)
    return render(IscDoc("portdate", {"number": n, "data": _port_data(engine, n, d, d.isoformat())}), fmt)


@router.get("/porthistory/{port}", response_model=IscNumbered, responses=_responses(IscNumbered))
@router.get("/porthistory/{port}/{start}", response_model=IscNumbered, responses=_responses(IscNumbered))
@router.get("/porthistory/{port}/{start}/{end}", response_model=IscNumbered, responses=_responses(IscNumbered))
def porthistory(request: Request, port: str, fmt: Fmt, start: str | None = None, end: str | None = None
                ) -> Response:
    """One port per day from ``start`` to ``end`` (default: the 30 days up to the latest day);
    days without records are absent."""
    n = _port(port)
    if n is None:
        return _error("porthistory", "bad port number", fmt)
    engine = get_engine(request)
    last = _day(end) if end is not None else _latest(engine)
    first = _day(start) if start is not None else (last - timedelta(days=HISTORY_DAYS) if last else None)
    if first is None or last is None:
        return _error("porthistory", "bad date", fmt)
    if last < first:
        return _error("porthistory", "bad date range: start is after end", fmt)
    rows = [{"date": r["day"].isoformat(), "records": r["records"], "targets": r["targets"], "sources": r["sources"],
             "tcp": _pct(r["tcp"]), "udp": _pct(r["udp"])} for r in ports_mod.port_history(engine, n, first, last)]
    return render(IscDoc("porthistory", {"startdate": first.isoformat(), "enddate": last.isoformat(), "port": n},
                         rows, "portinfo", "numbered"), fmt)


def _top_args(n: str | None, day: str | None, engine: Engine) -> tuple[int, date] | str:
    limit = DEFAULT_TOP if n is None else (int(n) if n.isascii() and n.isdigit() and len(n) < 10 else -1)
    if limit < 1:
        return "bad limit"
    d = _latest(engine) if day is None else _day(day)
    if d is None:
        return "bad date"
    return min(limit, MAX_TOP), d


@router.get("/topports", response_model=IscNumbered, responses=_responses(IscNumbered))
@router.get("/topports/{by}", response_model=IscNumbered, responses=_responses(IscNumbered))
@router.get("/topports/{by}/{n}", response_model=IscNumbered, responses=_responses(IscNumbered))
@router.get("/topports/{by}/{n}/{day}", response_model=IscNumbered, responses=_responses(IscNumbered))
def topports(request: Request, fmt: Fmt, by: str = "records", n: str | None = None, day: str | None = None
             ) -> Response:
    """The ``n`` busiest ports of a day by ``records``, ``targets`` or ``sources`` (at most 1,000)."""
    if by not in ("records", "targets", "sources"):
        return _error("topports", "bad sort order: use records, targets or sources", fmt)
    engine = get_engine(request)
    args = _top_args(n, day, engine)
    if isinstance(args, str):
        return _error("topports", args, fmt)
    limit, d = args
    rows = [{"rank": r["rank"], "targetport": r["port"], "records": r["records"], "targets": r["targets"],
             "sources": r["sources"]} for r in ports_mod.top_ports(engine, d, by, limit)]
    return render(IscDoc("topports", {"date": d.isoformat(), "limit": limit}, rows, "port", "numbered"), fmt)


_TOP_IPS = """
SELECT src_ip AS source, sum(count) AS reports, count(DISTINCT dst_ip) AS targets
FROM events WHERE event = 'fw.connection' AND src_ip IS NOT NULL AND ts >= $start AND ts < $end
GROUP BY src_ip ORDER BY {order}, src_ip LIMIT {limit}"""


@router.get("/topips", response_model=list[IscTopIp], responses=_responses(list[IscTopIp]))
@router.get("/topips/{by}", response_model=list[IscTopIp], responses=_responses(list[IscTopIp]))
@router.get("/topips/{by}/{n}", response_model=list[IscTopIp], responses=_responses(list[IscTopIp]))
@router.get("/topips/{by}/{n}/{day}", response_model=list[IscTopIp], responses=_responses(list[IscTopIp]))
def topips(request: Request, fmt: Fmt, by: str = "records", n: str | None = None, day: str | None = None
           ) -> Response:
    """The ``n`` source addresses of a day with the most ``records`` (reports) or ``attacks``
    (distinct targets)."""
    order = {"records": "reports DESC, targets DESC", "attacks": "targets DESC, reports DESC"}.get(by)
    if order is None:
        return _error("topips", "bad sort order: use records or attacks", fmt)
    store, engine = get_store(request), get_engine(request)
    args = _top_args(n, day, engine)
    if isinstance(args, str):
        return _error("topips", args, fmt)
    limit, d = args
    start = datetime.combine(d, datetime.min.time())
    found = store.query(_TOP_IPS.format(order=order, limit=limit),
                        {"start": start, "end": start + timedelta(days=1)}).to_pylist()
    rows = [{"rank": i, "source": r["source"], "reports": int(r["reports"]), "targets": int(r["targets"])}
            for i, r in enumerate(found, start=1)]
    return render(IscDoc("topips", {}, rows, "ipaddress", "list"), fmt)


_IP = """
SELECT coalesce(sum(count), 0) AS reports, count(DISTINCT dst_ip) AS targets, min(ts) AS first, max(ts) AS last
FROM events WHERE src_ip = $a AND event IN ('fw.connection', 'session.connect')"""


def ip_summary(store: Store, a: str) -> dict[str, Any]:
    r = store.query(_IP, {"a": a}).to_pylist()[0]
    seen = r["last"] is not None
    return {"number": a, "count": int(r["reports"]) if seen else None, "attacks": int(r["targets"]) if seen else None,
            "maxdate": r["last"].date().isoformat() if seen else None,
            "mindate": r["first"].date().isoformat() if seen else None,
            "updated": r["last"].strftime("%Y-%m-%d %H:%M:%S") if seen else None,
            "comment": None, "maxrisk": None, "asabusecontact": None, "as": None, "asname": None,
            "ascountry": None, "assize": None, "network": None}


@router.get("/ip/{address}", response_model=IscIpOut, responses=_responses(IscIpOut))
def ip(request: Request, address: str, fmt: Fmt) -> Response:
    """What the sensors saw from one address: reports (``count``), distinct targets (``attacks``),
    first and last day. AS and network fields are null: stormwatch has no routing data."""
    try:
        a = ipaddress.ip_address(address).compressed
    except ValueError:
        return _error("ip", "bad IP address", fmt)
    return render(IscDoc("ip", ip_summary(get_store(request), a), wrap_json=True), fmt)

