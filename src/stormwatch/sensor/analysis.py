"""Payload analysis for the sensor and the capture replay: the ``payload.shellcode`` and
``payload.offer`` events of a kept exploit payload (:mod:`stormwatch.detect.shellcode`).

Bots send the same exploit argument again and again, so results are cached by SHA-256 (bounded,
least recently used first out): a payload is emulated once per process. The live sensor must
never wait for an emulation on its event loop: :meth:`PayloadAnalyser.submit` runs a payload not
yet cached in one worker thread and calls back on the loop; the replay, which is offline, calls
:meth:`PayloadAnalyser.events` directly. The emulator's own limits (instructions, memory, time,
API calls) bound every run; an analyser bug becomes an empty result and a log line, never a lost
session.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from stormwatch.detect.shellcode import Limits, analyze
from stormwatch.detect.shellcode.emit import event_fields

log = logging.getLogger(__name__)

PayloadEvents = list[tuple[str, dict[str, Any]]]

CACHE_ENTRIES = 4096


class PayloadAnalyser:
    """Analyses exploit payloads once each (by SHA-256) and hands back their events.

    :meth:`submit` and :meth:`cancel_pending` are called on the event loop (the cache and the
    table of analyses in flight are only touched there); the analysis itself runs in the worker.
    A payload submitted again while its first analysis is still running waits for that run."""

    def __init__(self, limits: Limits | None = None, *, cache_entries: int = CACHE_ENTRIES) -> None:
        self.limits = limits or Limits()
        self.cache_entries = cache_entries
        self._cache: OrderedDict[str, PayloadEvents] = OrderedDict()
        self._pool: ThreadPoolExecutor | None = None
        self._waiting: dict[str, list[Callable[[PayloadEvents], None]]] = {}  # sha256 -> callbacks
        self._futures: dict[str, Future[PayloadEvents]] = {}
        self.analysed = 0
        self.failed = 0
        self.cancelled = 0

    def cached(self, payload: bytes) -> PayloadEvents | None:
        """The events of a payload already analysed, else None."""
        return self._cached(hashlib.sha256(payload).hexdigest())

    def _cached(self, key: str) -> PayloadEvents | None:
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
        return found

    def events(self, payload: bytes, sha256: str | None = None) -> PayloadEvents:
        """Analyse now (cached): for offline callers such as the capture replay. ``sha256``: the
        payload's, when the caller has it already (the payload store computed it)."""
        key = sha256 or hashlib.sha256(payload).hexdigest()
        found = self._cached(key)
        return found if found is not None else self._remember(key, self._run(payload))

    def submit(self, payload: bytes, done: Callable[[PayloadEvents], None], sha256: str | None = None) -> None:
        """Analyse in the worker thread; ``done(events)`` is then called on the running event loop.
        A cached payload calls ``done`` at once; one being analysed waits for that analysis. A
        cancelled analysis (:meth:`cancel_pending`, :meth:`close`) calls ``done([])``. ``sha256``:
        the payload's, when the caller has it already (the sensor's hot path hashes it once)."""
        key = sha256 or hashlib.sha256(payload).hexdigest()
        found = self._cached(key)
        if found is not None:
            done(found)
            return
        waiting = self._waiting.get(key)
        if waiting is not None:  # bots send the same argument in bursts: one emulation for all
            waiting.append(done)
            return
        loop = asyncio.get_running_loop()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stormwatch-payload")
        future = self._pool.submit(self._run, payload)
        self._waiting[key] = [done]
        self._futures[key] = future

        def finished(f: Future[PayloadEvents]) -> None:  # in the worker, or where the future was cancelled
            try:
                loop.call_soon_threadsafe(self._finished, key, f)
            except RuntimeError:  # the loop is closed: nobody is left to tell
                log.debug("payload analysis %s finished after its event loop closed", key)

        future.add_done_callback(finished)

    def _finished(self, key: str, f: Future[PayloadEvents]) -> None:
        """On the loop: cache the result (not a cancelled one) and call everyone waiting for it."""
        self._futures.pop(key, None)
        waiting = self._waiting.pop(key, [])
        result: PayloadEvents = []
        if f.cancelled():
            self.cancelled += 1  # not cached: the payload is analysed when it is seen again
        elif f.exception() is not None:  # only a BaseException gets past _run
            log.error("payload analysis %s ended with %r; no payload events", key, f.exception())
        else:
            result = self._remember(key, f.result())
        for done in waiting:
            try:
                done(result)
            except Exception:  # one caller's bug must not leave the others waiting for good
                log.exception("payload analysis callback failed")

    def cancel_pending(self) -> None:
        """Cancel the analyses not yet started (their callers get ``done([])``); the one running
        finishes within its emulation limits. Called by the server when it stops."""
        for f in list(self._futures.values()):
            f.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _run(self, payload: bytes) -> PayloadEvents:
        try:
            result = event_fields(analyze(payload, limits=self.limits))
        except Exception:  # a bug in the analyser must cost one analysis, not the session
            log.exception("payload analysis failed (%d bytes); no payload events", len(payload))
            self.failed += 1
            return []
        self.analysed += 1
        return result

    def _remember(self, key: str, result: PayloadEvents) -> PayloadEvents:
        self._cache[key] = result
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_entries:
            self._cache.popitem(last=False)
        return result
