"""Request dependencies shared by the pages and the API routers (FastAPI ``Depends``).

The app keeps one :class:`~stormwatch.web.app.WebState` on ``app.state.web``; these functions
hand its parts to a route. Tokens: ``Authorization: Bearer TOKEN`` or ``X-API-Token: TOKEN``,
compared in constant time.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from fastapi import HTTPException, Request

from stormwatch.analytics.engine import Engine
from stormwatch.store import Store
from stormwatch.threat.kb import KnowledgeBase

if TYPE_CHECKING:
    from stormwatch.web.app import WebState
    from stormwatch.web.settings import WebSettings


def get_state(request: Request) -> WebState:
    state: WebState = request.app.state.web
    return state


def get_settings(request: Request) -> WebSettings:
    return get_state(request).settings


def get_store(request: Request) -> Store:
    """The server's store (thread-safe for reads: every query takes its own cursor)."""
    return get_state(request).store


def get_engine(request: Request) -> Engine:
    """The DuckDB analytics engine over the server's store."""
    return get_state(request).engine


def get_kb(request: Request) -> KnowledgeBase:
    return get_state(request).kb


def request_token(request: Request) -> str | None:
    """The token the request carries, if any."""
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    token = request.headers.get("x-api-token", "").strip()
    return token or None


def token_ok(request: Request) -> bool:
    token = request_token(request)
    if token is None:
        return False
    # compare against every configured token so the time taken does not tell which one matched
    matched = False
    for good in get_settings(request).api_tokens:
        matched |= hmac.compare_digest(token.encode(), good.encode())
    return matched


def require_token(request: Request) -> None:
    """For routes that change things: 401 without a valid token, 403 when the server has no
    tokens configured (changes are then disabled)."""
    if not get_settings(request).api_tokens:
        raise HTTPException(403, "changes are disabled: the server has no API tokens configured "
                                 "(set STORMWATCH_API_TOKENS)")
    if not token_ok(request):
        raise HTTPException(401, "a valid API token is required (Authorization: Bearer TOKEN)",
                            headers={"WWW-Authenticate": "Bearer"})


def read_guard(request: Request) -> None:
    """For routes that read: open when ``read_open``, otherwise as :func:`require_token`."""
    if get_settings(request).read_open:
        return
    if not token_ok(request):
        raise HTTPException(401, "this server requires an API token to read (Authorization: Bearer TOKEN)",
                            headers={"WWW-Authenticate": "Bearer"})


def require_writable(request: Request) -> None:
    """For routes that write to the store: 409 when the server opened it read-only."""
    if get_settings(request).read_only:
        raise HTTPException(409, "the server opened the store read-only; it cannot change it")
