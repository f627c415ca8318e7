"""The server's watch: while ``stormwatch serve`` holds the store, nothing else can write to it, so
the server itself keeps the threat level recorded and the notifications going.

Every ``watch_seconds`` (``serve --watch``) a daemon thread evaluates the level at the end of the
hour of the newest event (:func:`stormwatch.threat.level.update_level`: a change is recorded with
its reasons, actor ``rules``, after the hold time for a lowering), then detects what is new and
delivers the outbox (:mod:`stormwatch.notify.dispatch`), exactly as ``stormwatch level`` and
``stormwatch notify run`` would from the command line. A failed round is logged and retried at the
next one; the server stops the thread before it closes the store.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from stormwatch.notify import dispatch
from stormwatch.notify.config import load_config
from stormwatch.threat.level import default_at, update_level
from stormwatch.threat.rules import load_rules

if TYPE_CHECKING:
    from stormwatch.web.app import WebState

log = logging.getLogger(__name__)


@dataclass
class WatchRound:
    """What one round did (kept on the state for the tests and the log)."""

    at: datetime | None = None
    level: int | None = None
    changed: bool = False
    delivered: int = 0
    error: str | None = None


def watch_once(state: WebState) -> WatchRound:
    """One round: record the level, queue what is new, deliver."""
    out = WatchRound()
    rules = load_rules(state.settings.rules_path)
    at = default_at(state.engine)
    out.at = at
    if at is not None:
        status = update_level(state.store, state.engine, at, rules=rules, kb=state.kb)
        out.level, out.changed = status.level, status.change is not None
    now = datetime.now(UTC).replace(tzinfo=None)
    payloads = str(state.settings.payloads) if state.settings.payloads else None
    dispatch.notify_changes(state.store, state.engine, now=now, payloads=payloads)
    sent = dispatch.deliver_pending(state.store, now=datetime.now(UTC).replace(tzinfo=None), config=load_config())
    out.delivered = sent.delivered
    return out


def start_watch(state: WebState, seconds: float) -> threading.Thread:
    def loop() -> None:
        while not state.closed.is_set():
            try:
                r = watch_once(state)
                state.last_watch = r
                if r.changed:
                    log.info("threat level changed to %s at %s", r.level, r.at)
            except Exception as exc:  # logged; the next round tries again
                log.exception("watch round failed")
                state.last_watch = WatchRound(error=str(exc))
            state.closed.wait(seconds)

    thread = threading.Thread(target=loop, name="stormwatch-watch", daemon=True)
    thread.start()
    return thread
