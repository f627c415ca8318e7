"""The web server's settings: which store, where to listen, who may read and change.

Store access (DuckDB allows one read-write process OR several read-only ones, never both): the
server opens the store read-write by default and is then its only writer; everything that changes
the store while the server runs (``POST /api/ingest``, threat-level overrides, subscriptions, the
rollup refresh) runs inside the server process on the same :class:`~stormwatch.store.Store`, whose
reads use a cursor each (DuckDB's MVCC: a page never waits for an ingest batch, it sees the last
committed one). ``read_only=True`` opens a store no other process writes (a copied demo store, an
archive) without taking the write lock: then nothing can change it through the server.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from stormwatch.store.db import default_db_path

TOKENS_ENV = "STORMWATCH_API_TOKENS"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
# The largest page of rows any page or API call returns, whatever the client asks for.
MAX_PAGE_SIZE = 1000


def tokens_from_env() -> tuple[str, ...]:
    """API tokens from ``$STORMWATCH_API_TOKENS`` (comma-separated), empty entries dropped."""
    return tuple(t.strip() for t in os.environ.get(TOKENS_ENV, "").split(",") if t.strip())


@dataclass(frozen=True)
class WebSettings:
    """Everything :func:`stormwatch.web.app.create_app` needs.

    ``api_tokens``: bearer tokens that may change things (and read, when ``read_open`` is false);
    with none configured every change is refused. ``read_open``: reads need no token.
    ``kb_paths`` / ``rules_path``: extra knowledge-base files and a threat-level rule file (default:
    the built-in ones). ``payloads``: the sensor's payload directory (campaign attribution by YARA
    rules). ``refresh_rollup``: bring the port rollup up to date at start-up (only
    when the store is writable)."""

    db: Path = field(default_factory=default_db_path)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    api_tokens: tuple[str, ...] = field(default_factory=tokens_from_env)
    read_open: bool = True
    read_only: bool = False
    kb_paths: tuple[Path, ...] = ()
    rules_path: Path | None = None
    payloads: Path | None = None
    max_page_size: int = MAX_PAGE_SIZE
    refresh_rollup: bool = True
    warm_cache: bool = False  # keep the overview's signals computed in the background (serve turns it on)
    watch_seconds: float = 0.0  # > 0: record the level and run the notifications this often (web/watch.py)
