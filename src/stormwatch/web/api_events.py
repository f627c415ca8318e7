"""``/api/v1/sessions`` and ``/api/v1/events``: stored events with filters and paging.

Paging: newest first, ordered by ``(ts, event_id)`` descending (the event id breaks ties between
events of the same microsecond, so the order is total). Two ways through a long list:

- ``cursor``: each page returns ``next_cursor``, the position after its last row (keyset paging:
  the next page starts exactly there however many events arrive meanwhile, and costs the same on
  page 1,000 as on page 1);
- ``offset`` + ``limit``: simple, but rows written meanwhile shift the pages.

``limit`` is capped at the server's page size (``WebSettings.max_page_size``, 1,000 by default);
the answer says which size it used.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from stormwatch.events.catalogue import CATALOGUE
from stormwatch.store import list_sessions
from stormwatch.web.api_common import NOT_FOUND, READ_ERRORS, ApiRoute, address, bad, not_found, page_size
from stormwatch.web.api_common import window as checked_window
from stormwatch.web.api_models import EventOut, EventPage, SessionEventsOut, SessionOut, SessionsOut
from stormwatch.web.deps import get_store, read_guard

router = APIRouter(route_class=ApiRoute, dependencies=[Depends(read_guard)], responses=READ_ERRORS, tags=["events"])

_COLUMNS = ("ts, event, sensor, session, src_ip, src_port, dst_ip, dst_port, proto, tcp_flags, action, outcome, "
            "count, data")
MAX_SESSION_EVENTS = 10_000


def _event(row: dict[str, Any]) -> EventOut:
    raw = row.get("data")
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:  # the store writes JSON; anything else is kept, not hidden
        data = {"raw": raw}
    return EventOut.model_validate({**row, "data": data if isinstance(data, dict) else {"value": data}})


def encode_cursor(ts: datetime, event_id: int) -> str:
    return base64.urlsafe_b64encode(f"{ts.isoformat()}|{event_id}".encode()).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[datetime, int]:
    """The position a ``next_cursor`` names, or 422."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        ts_text, id_text = raw.split("|")
        ts, event_id = datetime.fromisoformat(ts_text), int(id_text)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise bad("cursor is not one this server gave out (pass next_cursor as it was)") from None
    if ts.tzinfo is not None or not 0 <= event_id < 2 ** 128:
        raise bad("cursor is not one this server gave out (pass next_cursor as it was)")
    return ts, event_id


@router.get("/events", response_model=EventPage)
def events(request: Request,
           type_: Annotated[str | None, Query(alias="type", max_length=64,
                                              description="event type, e.g. fw.connection, exploit.attempt")] = None,
           since: Annotated[datetime | None, Query(description="from this time (UTC), inclusive")] = None,
           until: Annotated[datetime | None, Query(description="before this time (UTC)")] = None,
           src: Annotated[str | None, Query(max_length=100, description="source address")] = None,
           port: Annotated[int | None, Query(ge=0, le=65535, description="destination port")] = None,
           sensor: Annotated[str | None, Query(max_length=200)] = None,
           limit: Annotated[int, Query(ge=1, description="page size (capped at the server's maximum)")] = 100,
           offset: Annotated[int | None, Query(ge=0, le=10_000_000, description="rows to skip (not with cursor)")]
           = None,
           cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")]
           = None) -> EventPage:
    """Stored events, newest first, filtered, one page at a time."""
    if type_ is not None and type_ not in CATALOGUE:
        raise bad(f"unknown event type {type_[:64]!r}; known: {', '.join(sorted(CATALOGUE))}")
    if cursor is not None and offset is not None:
        raise bad("give either cursor or offset, not both")
    since, until = checked_window(since, until)
    n = page_size(request, limit)
    where: list[str] = []
    params: dict[str, Any] = {}
    for col, op, value in (("event", "=", type_), ("ts", ">=", since), ("ts", "<", until),
                           ("src_ip", "=", address(src) if src is not None else None), ("dst_port", "=", port),
                           ("sensor", "=", sensor)):
        if value is not None:
            where.append(f"{col} {op} $p{len(params)}")
            params[f"p{len(params)}"] = value
    if cursor is not None:
        ts, event_id = decode_cursor(cursor)
        # the id goes in as text: a 128-bit integer is beyond what a bound parameter carries
        where.append("(ts < $cts OR (ts = $cts AND event_id < CAST($cid AS UHUGEINT)))")
        params.update(cts=ts, cid=str(event_id))
    # the id as text: Arrow hands a UHUGEINT back as a signed 128-bit number
    sql = (f"SELECT CAST(event_id AS VARCHAR) AS event_id, {_COLUMNS} FROM events "
           f"{'WHERE ' + ' AND '.join(where) if where else ''} "
           f"ORDER BY ts DESC, event_id DESC LIMIT {n + 1} OFFSET {offset or 0}")
    rows = get_store(request).query(sql, params).to_pylist()
    more = len(rows) > n
    rows = rows[:n]
    next_cursor = encode_cursor(rows[-1]["ts"], int(rows[-1]["event_id"])) if more and rows else None
    return EventPage(events=[_event(r) for r in rows], limit=n, offset=offset, next_cursor=next_cursor)


@router.get("/sessions", response_model=SessionsOut)
def sessions(request: Request,
             sensor: Annotated[str | None, Query(max_length=200)] = None,
             since: Annotated[datetime | None, Query()] = None,
             until: Annotated[datetime | None, Query()] = None,
             exploits: Annotated[bool | None, Query(description="only sessions with (true) or without (false) "
                                                    "an exploit attempt")] = None,
             limit: Annotated[int, Query(ge=1)] = 20) -> SessionsOut:
    """Sensor sessions, newest first: source, service, NativeOS, pipes, operations, vulnerabilities."""
    since, until = checked_window(since, until)
    rows = list_sessions(get_store(request), sensor=sensor, since=since, until=until, exploits=exploits,
                         limit=page_size(request, limit))
    return SessionsOut(sessions=[SessionOut.model_validate(r) for r in rows])


@router.get("/sessions/{session}", response_model=SessionEventsOut, responses=NOT_FOUND)
def session(request: Request, session: Annotated[str, Path(max_length=200)]) -> SessionEventsOut:
    """The event timeline of one sensor session, oldest first."""
    rows = get_store(request).query(
        f"SELECT {_COLUMNS} FROM events WHERE session = $s ORDER BY ts, event_id LIMIT {MAX_SESSION_EVENTS}",
        {"s": session}).to_pylist()
    if not rows:
        raise not_found(f"no session {session[:100]!r}")
    return SessionEventsOut(session=session, sensor=rows[0]["sensor"],
                            src_ip=next((r["src_ip"] for r in rows if r["src_ip"]), None),
                            started=rows[0]["ts"], ended=rows[-1]["ts"], events=[_event(r) for r in rows])
