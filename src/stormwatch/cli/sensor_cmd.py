"""``stormwatch sensor``: run the SMB / NetBIOS / DCE-RPC honeypot until SIGINT or SIGTERM.

A thin shell: it reads the configuration (:mod:`stormwatch.sensor.config`), applies the
command-line overrides, loads or creates the persona, and runs a
:class:`~stormwatch.sensor.server.SensorServer` whose events go to the spool; a follower process
(:class:`StoreFollower`) reads the spool as it grows and writes the events, batched once a second,
through the single :class:`~stormwatch.store.BatchWriter` into the store. Operator messages
(start, stop, bugs, counters once a minute) go to stderr through :mod:`logging`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing as mp
import os
import queue
import resource
import signal
from pathlib import Path
from typing import Any

import click

from stormwatch.cli.options import db_option
from stormwatch.errors import StormwatchError
from stormwatch.events.records import BadRecord, StoreFeed
from stormwatch.sensor.analysis import PayloadAnalyser
from stormwatch.sensor.config import SensorConfig, load
from stormwatch.sensor.download import Downloader, DownloadLimits
from stormwatch.sensor.payloads import PayloadStore
from stormwatch.sensor.persona import TEMPLATES, Persona, load_or_create
from stormwatch.sensor.server import SensorServer
from stormwatch.sensor.spool import Spool
from stormwatch.store import BatchWriter, Store, default_db_path

log = logging.getLogger("stormwatch.sensor")

FEED_INTERVAL = 1.0  # seconds between looks at the spool for new events to store
FOLLOW_READ = 8 << 20  # bytes of spool read at a time
STATS_INTERVAL = 60.0  # seconds between counter lines in the operator log


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="TOML configuration file (see docs/sensor.md).")
@db_option
@click.option("--host", default=None, help="Address to listen on [default: 0.0.0.0 or the config's].")
@click.option("--smb-port", type=click.IntRange(0, 65535), default=None, help="SMB over TCP port [445].")
@click.option("--netbios-port", type=click.IntRange(0, 65535), default=None, help="NetBIOS session port [139].")
@click.option("--rpc-port", type=click.IntRange(0, 65535), default=None, help="DCE/RPC endpoint mapper port [135].")
@click.option("--nbns-port", type=click.IntRange(0, 65535), default=None, help="NetBIOS name service UDP port [137].")
@click.option("--spool", type=click.Path(dir_okay=False), default=None,
              help="Spool file (JSON lines) [default: STATE_DIR/spool.jsonl].")
@click.option("--persona", type=click.Choice(list(TEMPLATES)), default=None,
              help="OS the sensor pretends to be [default: win2000 or the config's].")
@click.option("--sensor", "sensor_name", default=None, help="Sensor name stamped on every event.")
def sensor(config_path: str | None, db_path: str | None, host: str | None, smb_port: int | None,
           netbios_port: int | None, rpc_port: int | None, nbns_port: int | None, spool: str | None,
           persona: str | None, sensor_name: str | None) -> None:
    """Run the honeypot sensor (SMB 445, NetBIOS 139, DCE/RPC 135, NBNS 137/udp) until SIGINT or
    SIGTERM. Port 0 picks a free port. Events go to the spool file and into the store."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load(config_path).with_overrides(
            host=host, smb_port=smb_port, netbios_port=netbios_port, rpc_port=rpc_port, nbns_port=nbns_port,
            spool=Path(spool) if spool else None, persona_template=persona, sensor=sensor_name)
        ident = load_or_create(cfg.persona_path, cfg.persona_template, cfg.persona_overrides or None)
    except StormwatchError as exc:
        raise click.ClickException(str(exc)) from exc
    _raise_nofile(cfg.limits.max_sessions)
    spool_path = cfg.spool_path
    start = spool_path.stat().st_size if spool_path.exists() else 0
    follower = StoreFollower(str(spool_path), start, db_path or str(default_db_path()))
    try:
        asyncio.run(run(cfg, ident))
    except OSError as exc:
        follower.finish()
        raise click.ClickException(f"cannot listen: {exc}. Ports below 1024 need root, "
                                   f"cap_net_bind_service or a redirect (docs/sensor.md)") from exc
    stored = follower.finish()
    click.echo(f"sensor stopped; {stored} events stored", err=True)


async def run(cfg: SensorConfig, persona: Persona) -> None:
    """Serve until SIGINT/SIGTERM; every event goes to the spool (the store follower takes it
    from there)."""
    spool = Spool(cfg.spool_path, cfg.sensor)
    server = SensorServer(
        spool=spool, persona=persona, host=cfg.host, ports=cfg.ports, limits=cfg.limits,
        session_limits=cfg.session_limits, transport_limits=cfg.transport_limits,
        payloads=PayloadStore(cfg.payload_path, max_payload=cfg.max_payload_bytes,
                              max_total=cfg.max_total_payload_bytes),
        analyser=PayloadAnalyser() if cfg.analyse_payloads else None,
        downloader=Downloader(DownloadLimits(max_bytes=cfg.download_max_bytes, timeout=cfg.download_timeout),
                              allow=cfg.download_allow) if cfg.download else None)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stats: asyncio.Task[None] | None = None
    try:
        await server.start()
        log.info("sensor %s as %s (%s, host name %s); spool %s", cfg.sensor, persona.template,
                 persona.os.native_os, persona.host_name, cfg.spool_path)
        stats = loop.create_task(_stats(server))
        await stop.wait()
        log.info("stopping: %d sessions open", server.open_sessions)
    finally:
        await server.stop()
        if server.analyser is not None:
            server.analyser.close()
        if server.downloader is not None:
            server.downloader.close()
        if stats is not None:
            stats.cancel()
        spool.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _stats(server: SensorServer) -> None:
    while True:
        await asyncio.sleep(STATS_INTERVAL)
        log.info("open %d; %s", server.open_sessions, " ".join(f"{k}={v}" for k, v in server.counters.items()))


class StoreFollower:
    """The store side of the sensor, in a process of its own (the collector of DESIGN.md's data
    path: spool → store). It reads the spool from ``start`` as it grows, turns complete lines into
    events with the same conversion as `stormwatch ingest` (key ``session:seq``, so nothing is
    stored twice) and hands them to the single BatchWriter once a second.

    Why a process: converting and inserting costs about a fifth of the CPU of a session; in the
    sensor's event loop it would slow every connection, in a thread it would still hold the GIL."""

    def __init__(self, spool: str, start: int, db: str) -> None:
        ctx = mp.get_context("spawn")  # the parent's loop and locks stay out of the child
        self._stop = ctx.Event()
        self._out: mp.Queue[tuple[str, int | str]] = ctx.Queue()
        self._proc = ctx.Process(target=_follow, args=(spool, start, db, self._stop, self._out),
                                 name="stormwatch-store", daemon=True)
        self._proc.start()
        kind, value = self._out.get(timeout=120)
        if kind == "error":
            self._proc.join(10)
            raise click.ClickException(str(value))

    def finish(self) -> int:
        """Store what is left in the spool, stop, and return how many events were stored."""
        self._stop.set()
        try:
            kind, value = self._out.get(timeout=600)
        except queue.Empty:
            self._proc.kill()
            raise click.ClickException("the store follower did not finish; run `stormwatch ingest` on the "
                                       "spool to store what is missing") from None
        self._proc.join(30)
        if kind == "error":
            raise click.ClickException(str(value))
        return int(value)


def _follow(spool: str, start: int, db: str, stop: Any, out: Any) -> None:
    """The follower process: spool lines → StoreFeed → BatchWriter, until ``stop`` and EOF."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    try:
        store = Store(db)
    except StormwatchError as exc:
        out.put(("error", str(exc)))
        return
    out.put(("ready", 0))
    feed = StoreFeed()
    offset, rest, bad = start, b"", 0
    try:
        with store, BatchWriter(store, max_delay=FEED_INTERVAL) as writer:
            while True:
                final = stop.is_set()  # read once more after the sensor stopped, then end
                try:
                    size = os.stat(spool).st_size
                    if size < offset:  # truncated (logrotate copytruncate): read it from the start
                        offset, rest = 0, b""
                    with open(spool, "rb") as f:
                        f.seek(offset)
                        data = f.read(FOLLOW_READ)
                except FileNotFoundError:
                    data = b""
                offset += len(data)
                buf = rest + data
                cut = buf.rfind(b"\n") + 1
                rest = buf[cut:]
                for line in buf[:cut].splitlines():
                    try:
                        feed.add(json.loads(line))
                    except (ValueError, BadRecord) as exc:
                        bad += 1
                        if bad <= 10:
                            log.error("spool line not stored: %s", exc)
                table = feed.take()
                if table is not None:
                    writer.put(table)
                if final and len(data) < FOLLOW_READ:
                    break
                if len(data) < FOLLOW_READ:
                    stop.wait(FEED_INTERVAL)
            result = writer.close()
    except StormwatchError as exc:
        out.put(("error", f"storing events failed: {exc}; they are in the spool {spool}"))
        return
    out.put(("done", result.inserted))


def _raise_nofile(max_sessions: int) -> None:
    """Every connection is a file descriptor: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, max_sessions + 256)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < max_sessions + 64:
        log.warning("open file limit %d is below max_sessions %d: raise it (ulimit -n, LimitNOFILE=)", want,
                    max_sessions)


if __name__ == "__main__":
    sensor()
