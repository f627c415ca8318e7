"""The FastAPI application: the dashboard's pages, the JSON API and the ISC-compatible API.

:func:`create_app` opens the store once (see :mod:`stormwatch.web.settings` for why the server
is the store's only writer while it runs), loads the knowledge base, and includes the routers:
the pages (:mod:`stormwatch.web.pages`) always, the JSON API (``stormwatch.web.api``) and the
ISC/DShield subset (``stormwatch.web.isc_api``) when those modules exist. Errors: a route raises
``fastapi.HTTPException`` (404 unknown thing, 422 bad input); :class:`InputError` from the
library becomes 422; a browser gets an HTML error page, an API client JSON ``{"detail": ...}``.
Every response carries a Content-Security-Policy that allows only the app's own scripts and
styles, so even a value that escaped escaping could not run.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from stormwatch.analytics import rollup
from stormwatch.analytics.engine import DuckDBEngine, Engine
from stormwatch.errors import InputError, StoreError
from stormwatch.store import Store
from stormwatch.threat.kb import KnowledgeBase, load_kb
from stormwatch.web.pages_render import render_error
from stormwatch.web.settings import WebSettings

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'self'")
# The advisory document (threat.advisory.to_html) has its own inline <style>; it is served alone,
# sandboxed, with no script allowed at all.
ADVISORY_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'"
OPTIONAL_ROUTERS = ("stormwatch.web.api", "stormwatch.web.isc_api")


@dataclass
class WebState:
    """What the routes share (``app.state.web``)."""

    settings: WebSettings
    store: Store
    engine: Engine
    kb: KnowledgeBase
    rollup_thread: threading.Thread | None = None
    cache: dict[str, tuple[float, Any]] = field(default_factory=dict)  # see pages_data.cached
    closed: threading.Event = field(default_factory=threading.Event)  # set when the server stops
    last_watch: Any = None  # the watch's last round (web/watch.py), None before the first


def _refresh_rollup(store: Store) -> None:
    try:
        days = rollup.refresh(store)
    except StoreError as exc:  # readers compute stale days live: a failed refresh only costs speed
        log.warning("port rollup refresh failed: %s", exc)
        return
    log.info("port rollup: %d day(s) refreshed", days)


def open_state(settings: WebSettings) -> WebState:
    store = Store(settings.db, read_only=settings.read_only)
    from stormwatch.web.api_kb import operator_kb_path  # entries operators added through the API

    operator = operator_kb_path(settings)
    kb_paths = (*settings.kb_paths, operator) if operator is not None and operator.exists() else settings.kb_paths
    state = WebState(settings, store, DuckDBEngine(store), load_kb(kb_paths))
    if settings.refresh_rollup and not settings.read_only:
        # in the background: a store with months of unrefreshed days takes a while, and the port
        # pages are right meanwhile (they compute days the rollup lacks live)
        state.rollup_thread = threading.Thread(target=_refresh_rollup, args=(store,), name="rollup", daemon=True)
        state.rollup_thread.start()
    return state


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api") and "text/html" in request.headers.get("accept", "")


def _error(request: Request, status: int, detail: object, headers: dict[str, str] | None = None) -> Response:
    if _wants_html(request):
        return HTMLResponse(render_error(status, str(detail)), status_code=status, headers=headers)
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors():
        where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("path", "query", "body"))
        parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else str(e.get("msg", "invalid")))
    return "; ".join(parts) or "invalid request"


def create_app(settings: WebSettings | None = None, *, state: WebState | None = None) -> FastAPI:
    """The app over ``settings.db`` (or over an already opened ``state``, for tests)."""
    settings = settings or (state.settings if state else WebSettings())
    web = state or open_state(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        threads = []
        if settings.warm_cache:
            from stormwatch.web.pages_data import start_warmer

            threads.append(start_warmer(web))
        if settings.watch_seconds > 0 and not settings.read_only:
            from stormwatch.web.watch import start_watch

            threads.append(start_watch(web, settings.watch_seconds))
        yield
        web.closed.set()
        for thread in threads:
            thread.join(timeout=120)  # a round in progress finishes before the store closes
        if state is None:  # we opened it, we close it
            web.store.close()

    app = FastAPI(title="stormwatch", version="0.1.0", lifespan=lifespan,
                  description="Self-hosted Internet threat early warning: dashboard and JSON API.")
    app.state.web = web

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _error(request, exc.status_code, exc.detail, dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        if _wants_html(request):
            return _error(request, 422, _validation_detail(exc))
        # jsonable_encoder: a text/plain body leaves raw bytes in the errors, which JSON cannot hold
        return JSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)

    @app.exception_handler(InputError)
    async def input_error(request: Request, exc: InputError) -> Response:
        return _error(request, 422, str(exc))

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    from stormwatch.web.pages import router as pages_router
    app.include_router(pages_router)
    for name in OPTIONAL_ROUTERS:
        # a router module that exists but fails to import is a bug and must fail loudly
        if importlib.util.find_spec(name) is not None:
            app.include_router(importlib.import_module(name).router)
    return app
