"""Helpers the API routers share: the time an answer is "as of", bad input as 404/422, page
sizes, addresses, and optional modules of other parts (notify, export) imported on first use.

Bad input never reaches the library as something it would fail on with a bare exception: a
value is checked here and refused with 422 and a sentence; a thing that does not exist is 404.
"""

from __future__ import annotations

import importlib
import ipaddress
from collections.abc import Callable, Coroutine
from datetime import UTC, date, datetime
from types import ModuleType
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from stormwatch.analytics.engine import Engine
from stormwatch.threat.level import default_at
from stormwatch.web.api_models import ErrorOut
from stormwatch.web.deps import get_settings

# The OpenAPI description of the error answers every route may give.
READ_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "a token is required to read (read_open is off)"},
    422: {"model": ErrorOut, "description": "bad input, with a sentence saying what"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "no such thing"}}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **READ_ERRORS,
    400: {"model": ErrorOut, "description": "the body is not decodable (not UTF-8 JSON)"},
    401: {"model": ErrorOut, "description": "a valid API token is required"},
    403: {"model": ErrorOut, "description": "changes are disabled: no API tokens configured"},
    409: {"model": ErrorOut, "description": "the server opened the store read-only"},
}
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorOut, "description": "the module behind this endpoint is not installed"}}


class ApiRoute(APIRoute):
    """The API's routes: a request FastAPI cannot validate is a 422 with the validation errors made
    JSON-safe here (a body sent as text/plain carries its raw bytes as the error's ``input``, which
    a plain ``json.dumps`` of the errors turns into a 500)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return JSONResponse({"detail": jsonable_encoder(exc.errors(), custom_encoder={
                    bytes: lambda b: b.decode("utf-8", "replace")})}, status_code=422)

        return checked


def bad(detail: str) -> HTTPException:
    return HTTPException(422, detail)


def not_found(detail: str) -> HTTPException:
    return HTTPException(404, detail)


# Times the API takes: the analytics step back days and weeks from a time and forward a few hours,
# which must stay within what datetime holds; nothing stormwatch stores is older than 1970.
EARLIEST = datetime(1970, 1, 1)
LATEST = datetime(9000, 1, 1)


def utc(ts: datetime | None) -> datetime | None:
    """A time given with a zone as naive UTC (the store's convention); naive times are UTC.
    Outside 1970-01-01 .. 9000-01-01: 422."""
    if ts is None:
        return None
    if ts.tzinfo is not None:
        try:
            ts = ts.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            raise bad(f"time {ts.isoformat()} is out of range") from None
    if not EARLIEST <= ts < LATEST:
        raise bad(f"time {ts.isoformat()} is out of range ({EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d})")
    return ts


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def as_of(engine: Engine, at: datetime | None) -> datetime:
    """``at`` as given, else the level's clock: the end of the hour of the latest stored event
    (so answers agree with ``stormwatch level``), else the wall clock for an empty store."""
    if at is not None:
        return utc(at) or at
    return default_at(engine) or now()


def window(since: datetime | None, until: datetime | None) -> tuple[datetime | None, datetime | None]:
    since, until = utc(since), utc(until)
    if since is not None and until is not None and until <= since:
        raise bad(f"empty window: until ({until:%Y-%m-%d %H:%M:%S}) is not after since ({since:%Y-%m-%d %H:%M:%S})")
    return since, until


def day_range(since: date | None, until: date | None) -> None:
    if since is not None and until is not None and until < since:
        raise bad(f"empty range: {since} is after {until}")


def page_size(request: Request, limit: int) -> int:
    """``limit`` capped at the server's largest page (``WebSettings.max_page_size``)."""
    return max(1, min(limit, get_settings(request).max_page_size))


def address(text: str) -> str:
    """The canonical text of an IPv4/IPv6 address (as the store keeps it), or 422."""
    try:
        return ipaddress.ip_address(text.strip().split("%", 1)[0]).compressed
    except ValueError:
        raise bad(f"not an IP address: {text[:64]!r}") from None


def parse_day(text: str, what: str = "date") -> date:
    """``YYYY-MM-DD`` (or 422)."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise bad(f"{what} {text[:32]!r} is not a date (YYYY-MM-DD)") from None


def optional_module(name: str, what: str) -> ModuleType:
    """Another part's module (``stormwatch.notify.subscriptions``, ``stormwatch.export.stix`` ...),
    imported on first use; 503 with a sentence while it is not installed. A module that exists but
    fails to import for another reason is a bug and is not hidden."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not name.startswith(exc.name):
            raise
        raise HTTPException(503, f"{what} is not available in this installation ({name} is missing)") from None
