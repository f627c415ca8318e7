"""The demo's live phase: the honeypot sensor in-process on loopback, attacked by the bots of
:mod:`stormwatch.demo.attack`, its events going into the demo's store.

The sensor is the real one (:class:`~stormwatch.sensor.server.SensorServer` with real sessions)
on ephemeral ports of 127.0.0.1 — ``smb`` (direct TCP, the 445 framing) and ``netbios-ssn`` (NBSS,
the 139 framing); it accepts any source, so the bots' 127.a.b.c addresses reach it and become the
events' ``src_ip``. Its asyncio loop runs in a thread of its own. Every event is spooled to
``<workdir>/sensor-spool.jsonl`` (so ``stormwatch ingest`` of the spool adds nothing afterwards:
same ``session:seq`` keys), exploit payloads are kept under ``<workdir>/payloads`` by SHA-256, and
the records go through a :class:`~stormwatch.events.records.StoreFeed` to the store's
:class:`~stormwatch.store.BatchWriter`, as ``stormwatch sensor`` stores them.

Time: the sensor's clock is injected (:class:`StoryClock`). The driver sets it to each wave's time
on the August 2006 timeline of the log generator, so the live exploit events land on the surge
days beside the firewall logs; within a wave it runs at real speed (session durations, taken from
the monotonic clock, stay real).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stormwatch.demo.attack import AttackReport, LivePlan, drive, schedule
from stormwatch.demo.generate import DemoPlan
from stormwatch.events.records import StoreFeed
from stormwatch.sensor.analysis import PayloadAnalyser
from stormwatch.sensor.payloads import PayloadStore
from stormwatch.sensor.persona import generate as generate_persona
from stormwatch.sensor.server import SensorServer
from stormwatch.sensor.spool import Spool
from stormwatch.store import BatchWriter, Store, WriteResult

SENSOR = "honeypot"
HOST = "127.0.0.1"
FEED_INTERVAL = 0.25  # seconds between hand-overs of spooled events to the writer
SETTLE_TIMEOUT = 20.0  # seconds to wait for a wave's sessions to close


class StoryClock:
    """Epoch seconds on the demo's timeline: :meth:`jump` sets it, then it runs at real speed.
    Never goes back (a jump to an earlier time holds the current one)."""

    def __init__(self, start: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._base = (start, monotonic())  # one tuple, replaced whole: readers in other threads see a pair

    def __call__(self) -> float:
        at, real = self._base
        return at + (self._monotonic() - real)

    def jump(self, at: float) -> None:
        self._base = (max(at, self()), self._monotonic())


@dataclass
class LiveResult:
    """What the live phase did."""

    started: datetime  # real (wall-clock) time the attack began
    seconds: float  # real time it took
    report: AttackReport
    ports: dict[str, int]
    spool: Path
    payloads: Path
    stored: WriteResult  # first_ts / last_ts: the story times of the stored events
    counters: dict[str, int] = field(default_factory=dict)


class Honeypot:
    """The sensor, serving from a thread; the :class:`~stormwatch.demo.attack.Range` the bots hit."""

    def __init__(self, workdir: Path, writer: BatchWriter, start: float, *, seed: int = 2006) -> None:
        self.host = HOST
        self.writer = writer
        self.clock = StoryClock(start)
        self.feed = StoreFeed()
        self.closed = 0  # session.closed events seen (written only by the sensor's thread)
        self.spool_path = workdir / "sensor-spool.jsonl"
        self.spool_path.unlink(missing_ok=True)  # the spool of this run only, like the generated logs
        self.payload_dir = workdir / "payloads"
        self.spool = Spool(self.spool_path, SENSOR, clock=self.clock, on_record=self._record)
        persona = generate_persona("win2000", random.Random(seed))
        self.name = persona.host_name
        # session ids stay truly random: a rerun with --keep must not reuse the ids of stored sessions
        self.server = SensorServer(spool=self.spool, persona=persona, host=HOST, clock=self.clock,
                                   ports={"smb": 0, "netbios-ssn": 0, "dcerpc": None, "nbns": None},
                                   payloads=PayloadStore(self.payload_dir), analyser=PayloadAnalyser())
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="stormwatch-honeypot", daemon=True)
        self.thread.start()
        self._feeder: asyncio.Task[None] | None = None
        try:
            asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        except BaseException:
            self._stop_loop()
            raise
        self.ports: dict[str, int] = dict(self.server.bound)

    async def _start(self) -> None:
        await self.server.start()
        self._feeder = asyncio.get_running_loop().create_task(self._feed_forever())

    async def _feed_forever(self) -> None:
        while True:
            await asyncio.sleep(FEED_INTERVAL)
            self._hand_over()

    def _hand_over(self) -> None:
        table = self.feed.take()  # in the sensor's thread, the only one that adds to the feed
        if table is not None:
            self.writer.put(table)

    def _record(self, record: dict[str, Any]) -> None:
        self.feed.add(record)
        if record["event"] == "session.closed":
            self.closed += 1

    def jump(self, at: float) -> None:
        self.clock.jump(at)

    def settle(self, sessions: int) -> None:
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while self.closed < sessions and time.monotonic() < deadline:
            time.sleep(0.002)

    def close(self) -> None:
        """Stop the sensor (open sessions end with reason ``shutdown``) and hand over the rest."""
        async def stop() -> None:
            if self._feeder is not None:
                self._feeder.cancel()
            await self.server.stop()
            self._hand_over()

        try:
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(30)
        finally:
            self._stop_loop()
            if self.server.analyser is not None:
                self.server.analyser.close()
            self.spool.close()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


def run_live(store: Store, workdir: str | Path, plan: DemoPlan | None = None, live: LivePlan | None = None,
             *, on_wave: Callable[[int, int], None] | None = None) -> LiveResult:
    """Start the honeypot, run the bots of :func:`~stormwatch.demo.attack.schedule`, store the
    events; returns what happened."""
    plan = plan or DemoPlan()
    live = live or LivePlan()
    visits = schedule(plan, live)
    out = Path(workdir)
    out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    t = time.monotonic()
    writer = BatchWriter(store, max_delay=FEED_INTERVAL)
    with writer:  # closing it writes what is queued (also after a failure)
        pot = Honeypot(out, writer, visits[0].at if visits else time.time(), seed=plan.seed)
        try:
            report = drive(visits, pot, concurrency=live.concurrency, on_wave=on_wave)
        finally:
            pot.close()
    stored = writer.result
    return LiveResult(started, time.monotonic() - t, report, pot.ports, pot.spool_path, pot.payload_dir, stored,
                      dict(pot.server.counters))
