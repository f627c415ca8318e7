"""Operator-enabled download of the files exploit payloads offer (``payload.offer`` -> ``payload.file``).

Off by default (``[payloads] download = false``): a honeypot that fetches what attackers point it
at talks to the attackers' servers, and may be pointed at anyone else's. When an operator turns it
on, each fetch is bounded and sandboxed:

* **one destination**: the offer's host, resolved once, and its port; the address connected to is
  the one checked (no second DNS look-up, no proxy from the environment). HTTP redirects are
  followed only to the same scheme, host and port. FTP data connections go to the same host
  (passive: the port of its ``227`` reply, whose address is ignored as ftplib does; active: a
  connection *from* that host to an ephemeral port of ours, refused from anyone else). TFTP answers
  are taken only from that host (RFC 1350 section 4: from the port of its first answer; another
  port gets ``ERROR 5``, another host nothing);
* **refused destinations**: loopback, private (RFC 1918, RFC 4193), link-local, multicast,
  shared (RFC 6598), documentation, reserved and unspecified addresses (anything Python's
  :mod:`ipaddress` does not call global), unless an allow list (``download_allow``, CIDR) names them;
* **limits**: ``max_bytes`` (more is cut, ``complete = false``), a total ``timeout`` for the whole
  fetch (an interval timer in the child, and a kill by the parent shortly after), a
  ``connect_timeout`` per connection and per read;
* **a child process** per fetch: ``python -I -m stormwatch.sensor.download --child``, started without
  a shell, in a new session, with an empty environment and a private working directory; the child
  sets its own ``RLIMIT_AS`` (memory), ``RLIMIT_CPU``, ``RLIMIT_FSIZE`` (max_bytes and a margin),
  ``RLIMIT_NOFILE`` and ``RLIMIT_CORE = 0`` before it connects anywhere, and writes the bytes to a
  file in that directory. The parent reads at most ``max_bytes`` of it back. (The limits are set by
  the child itself, not with ``preexec_fn``, which is unsafe in a process with threads as the
  sensor is.) What is fetched is data: hashed and stored by SHA-256 by the caller
  (:class:`~stormwatch.sensor.payloads.PayloadStore`), never run.

Protocols: ``http``/``https`` (urllib, certificates not checked: malware servers have none worth
checking), ``ftp`` (ftplib, binary, passive or active), ``tftp`` (a small RFC 1350 client: ``RRQ``
in octet mode, ``DATA``/``ACK`` by block number, a block shorter than 512 bytes ends it, the last
packet sent again after ``tftp_wait`` seconds up to ``tftp_retries`` times, block numbers wrap).

:class:`Downloader` runs fetches for the sensor in a worker thread (one at a time, a bounded
queue, each URL fetched once per process) and calls back on the event loop, as
:class:`~stormwatch.sensor.analysis.PayloadAnalyser` does; :func:`fetch` is the blocking call the
CLI (``stormwatch payload fetch``) uses.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import re
import subprocess
import sys
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from stormwatch.sensor.payloads import Kept

log = logging.getLogger(__name__)

PORTS: dict[str, int] = {"http": 80, "https": 443, "ftp": 21, "tftp": 69}
DEFAULT_MAX_BYTES = 8 << 20
DEFAULT_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 10.0
KILL_GRACE = 5.0  # seconds the parent waits past the child's own timeout before it kills it
FSIZE_MARGIN = 1 << 20  # bytes the child may write past max_bytes before the kernel stops it
MAX_QUEUED = 32  # fetches waiting for the worker; more offers are not fetched (noted)
CACHE_ENTRIES = 1024  # URLs remembered: each is fetched once per process

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class DownloadLimits:
    """Bounds of one fetch (``[payloads] download_*`` in the sensor's configuration)."""

    max_bytes: int = DEFAULT_MAX_BYTES  # bytes kept; a longer file is cut (complete = false)
    timeout: float = DEFAULT_TIMEOUT  # seconds for the whole fetch, connections included
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT  # seconds per connection attempt and per read
    memory: int = 512 << 20  # RLIMIT_AS of the child process, bytes
    open_files: int = 32  # RLIMIT_NOFILE of the child process
    tftp_wait: float = 1.0  # seconds before a TFTP packet is sent again
    tftp_retries: int = 5  # times it is sent again without an answer


@dataclass(frozen=True)
class Target:
    """One thing to fetch: protocol, host (as written: a name or an address), port, remote path."""

    protocol: str
    host: str
    port: int
    path: str  # http: the request path (query included); ftp, tftp: the file name sent to the server
    user: str = ""  # ftp; empty: anonymous
    password: str = ""
    active: bool = False  # ftp: PORT (the server connects to us) instead of PASV

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        path = self.path if self.protocol in ("http", "https") else "/" + self.path
        return f"{self.protocol}://{host}:{self.port}{path}"

    @property
    def name(self) -> str:
        """Base name of the remote file (data, never a path of ours)."""
        return re.split(r"[/\\]", self.path.split("?", 1)[0])[-1]


@dataclass(frozen=True)
class Fetched:
    """What one fetch got: the bytes (possibly cut or partial) and why it ended."""

    target: Target
    data: bytes = b""
    complete: bool = False  # ended as the protocol says a whole file ends, nothing cut
    address: str = ""  # the address connected to
    expected_size: int | None = None
    expected_from: str = ""  # content_length, ftp_reply
    notes: tuple[str, ...] = ()
    refused: bool = False  # not attempted: the destination or the target was refused


def parse_target(text: str) -> Target:
    """A :class:`Target` from a URL (``tftp://h/f``, ``ftp://user:pw@h:2121/f``, ``http://h/p?q``) or
    from ``host:port:protocol/file`` (an offer's endpoint and file). ValueError when neither."""
    text = text.strip()
    m = re.fullmatch(r"(?P<host>[^/]+):(?P<port>\d{1,5}):(?P<proto>[A-Za-z]+)/(?P<path>.+)", text)
    if m and "://" not in text:
        return _checked(Target(m["proto"].lower(), m["host"].strip("[]"), int(m["port"]), m["path"]))
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a URL or host:port:protocol/file: {text[:200]!r} ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in PORTS or not parts.hostname:
        raise ValueError(f"not a URL or host:port:protocol/file: {text[:200]!r} "
                         f"(protocols: {', '.join(PORTS)})")
    if scheme in ("http", "https"):
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    else:  # RFC 1738 3.2.2 / RFC 3617: the path after the host's slash is the file name
        path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
    return _checked(Target(scheme, parts.hostname, port or PORTS[scheme], path, unquote(parts.username or ""),
                           unquote(parts.password or "")))


def target_from_offer(offer: Mapping[str, Any]) -> Target:
    """The :class:`Target` of a ``payload.offer`` event's fields (ValueError when unusable)."""
    url = offer.get("url")
    if isinstance(url, str) and "://" in url:
        target = parse_target(url)
    else:
        protocol, host = str(offer.get("protocol", "")).lower(), str(offer.get("host", ""))
        port = offer.get("port") or PORTS.get(protocol, 0)
        target = _checked(Target(protocol, host, int(port), str(offer.get("path", "")).lstrip("/")))
    user, password = offer.get("user"), offer.get("password")
    if isinstance(user, str) and user and not target.user:
        target = _checked(replace(target, user=user, password=password if isinstance(password, str) else ""))
    return target


def _checked(t: Target) -> Target:
    if t.protocol not in PORTS:
        raise ValueError(f"protocol {t.protocol!r} is not one of {', '.join(PORTS)}")
    if not t.host or not 0 < t.port < 65536:
        raise ValueError(f"no host or no valid port in {t.url[:200]!r}")
    if not t.path or (t.path == "/" and t.protocol not in ("http", "https")):
        raise ValueError(f"no file named in {t.url[:200]!r}")
    # CR, LF and NUL would let attacker text add commands to an FTP session or end a TFTP name
    if any(c in t.path + t.user + t.password + t.host for c in "\r\n\0"):
        raise ValueError("control characters in the target")
    return t


def networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """Parse an allow list (``["127.0.0.0/8", "::1/128"]``); ValueError names a bad entry."""
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def refusal(address: str, allow: Sequence[Network] = ()) -> str | None:
    """Why a fetch from ``address`` (an IP literal) is refused, or None when it may go ahead."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address[:100]!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in allow):
        return None
    for kind in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved"):
        if getattr(ip, f"is_{kind}"):
            return f"{ip} is {kind.replace('_', '-')} (not in download_allow)"
    if not ip.is_global:
        return f"{ip} is not a global address (not in download_allow)"
    return None


def file_type(data: bytes) -> str:
    """``pe`` (MZ header whose e_lfanew points at ``PE\\0\\0``), ``mz`` (another MZ executable) or ``""``."""
    if data[:2] != b"MZ":
        return ""
    if len(data) >= 0x40:
        off = int.from_bytes(data[0x3C:0x40], "little")
        if data[off:off + 4] == b"PE\0\0":
            return "pe"
    return "mz"


def file_fields(f: Fetched, kept: Kept | None, attack: str = "") -> dict[str, Any]:
    """The ``payload.file`` fields (stage ``download``) of a fetch and of what the store did with it."""
    data = f.data
    notes = list(f.notes)
    if kept is not None and not kept.stored:
        notes.append(f"not stored: {kept.why}")
    missing = max(0, f.expected_size - len(data)) if f.expected_size is not None else None
    return {
        "attack": attack or None, "stage": "download", "name": f.target.name, "url": f.target.url,
        "protocol": f.target.protocol, "source_host": f.address or f.target.host, "source_port": f.target.port,
        "sha256": hashlib.sha256(data).hexdigest() if data else None,
        "md5": hashlib.md5(data, usedforsecurity=False).hexdigest() if data else None,
        "size": len(data), "expected_size": f.expected_size, "expected_from": f.expected_from or None,
        "complete": f.complete, "missing_bytes": missing, "file_type": file_type(data),
        "stored": bool(kept is not None and kept.stored), "notes": notes,
    }


# -- the blocking fetch: a child process ----------------------------------------------------------------

def fetch(target: Target, *, limits: DownloadLimits | None = None, allow: Sequence[Network] = (),
          started: Callable[[subprocess.Popen[bytes]], None] | None = None) -> Fetched:
    """Fetch ``target`` in a child process within ``limits``. Never raises for anything the remote
    side does; a refused destination gives ``refused = True`` without starting anything.
    ``started(proc)`` is told the child process (so that a caller can kill it)."""
    limits = limits or DownloadLimits()
    literal = _literal(target.host)
    if literal is not None and (why := refusal(literal, allow)) is not None:
        return Fetched(target, refused=True, notes=(f"refused: {why}",))
    request = {"target": asdict(target), "limits": asdict(limits), "allow": [str(n) for n in allow]}
    with tempfile.TemporaryDirectory(prefix="stormwatch-fetch-") as tmp:
        cmd = [sys.executable, "-I", "-m", "stormwatch.sensor.download_child"]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=tmp, env={}, close_fds=True, start_new_session=True, shell=False)
        if started is not None:
            started(proc)
        try:
            out, err = proc.communicate(json.dumps(request).encode(), timeout=limits.timeout + KILL_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            note = f"fetcher killed after {limits.timeout + KILL_GRACE:g} s"
            return _result(target, Path(tmp), limits, {"notes": [note]})
        try:
            report = json.loads(out.decode("utf-8", "replace").strip().splitlines()[-1])
        except (ValueError, IndexError):
            report = {"notes": [f"fetcher process failed (exit {proc.returncode}): "
                                f"{err.decode('utf-8', 'replace').strip()[-300:]}"]}
        return _result(target, Path(tmp), limits, report)


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def _result(target: Target, tmp: Path, limits: DownloadLimits, report: Mapping[str, Any]) -> Fetched:
    data = b""
    body = tmp / "body"
    if body.is_file():
        with body.open("rb") as f:
            data = f.read(limits.max_bytes)
    expected = report.get("expected_size")
    return Fetched(target, data, bool(report.get("complete")), str(report.get("address", "")),
                   expected if isinstance(expected, int) else None, str(report.get("expected_from", "")),
                   tuple(str(n) for n in report.get("notes", ())), bool(report.get("refused")))


# -- the sensor's worker --------------------------------------------------------------------------------

class Downloader:
    """Fetches offers for the sensor in one worker thread; ``done`` is called on the event loop.
    :meth:`submit` and :meth:`cancel_pending` are called on the loop."""

    def __init__(self, limits: DownloadLimits | None = None, *, allow: Iterable[str | Network] = (),
                 max_queued: int = MAX_QUEUED, cache_entries: int = CACHE_ENTRIES) -> None:
        self.limits = limits or DownloadLimits()
        self.allow = tuple(a if not isinstance(a, str) else ipaddress.ip_network(a, strict=False) for a in allow)
        self.max_queued = max_queued
        self.cache_entries = cache_entries
        self._pool: ThreadPoolExecutor | None = None
        self._cache: OrderedDict[str, Fetched] = OrderedDict()
        self._waiting: dict[str, list[Callable[[Fetched | None], None]]] = {}
        self._futures: dict[str, Future[Fetched]] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # _proc is set in the worker and killed from the loop
        self._stopping = False  # cancel_pending() was called: what ends now was cut short by us
        self.fetched = 0

    def submit(self, offer: Mapping[str, Any], done: Callable[[Fetched | None], None]) -> None:
        """Fetch the offer (``payload.offer`` fields); ``done(Fetched)`` follows on the loop, at once
        for a refused target, a URL fetched before (noted) or a full queue; ``done(None)`` when the
        fetch was cancelled (the sensor stopping)."""
        try:
            target = target_from_offer(offer)
        except ValueError as exc:
            bad = Target(str(offer.get("protocol", "")), str(offer.get("host", "")), 0, str(offer.get("path", "")))
            done(Fetched(bad, refused=True, notes=(f"refused: {exc}",)))
            return
        key = target.url
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
            done(replace(found, notes=(*found.notes, "fetched before in this run: not fetched again")))
            return
        if key in self._waiting:
            self._waiting[key].append(done)
            return
        if len(self._futures) >= self.max_queued:
            done(Fetched(target, notes=(f"not fetched: {self.max_queued} downloads already waiting",)))
            return
        loop = asyncio.get_running_loop()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stormwatch-download")
        future = self._pool.submit(self._fetch, target)
        self._waiting[key] = [done]
        self._futures[key] = future

        def finished(f: Future[Fetched]) -> None:
            try:
                loop.call_soon_threadsafe(self._finished, key, f)
            except RuntimeError:  # the loop is closed
                log.debug("download of %s finished after its event loop closed", key)

        future.add_done_callback(finished)

    def _fetch(self, target: Target) -> Fetched:
        def started(proc: subprocess.Popen[bytes]) -> None:
            with self._lock:
                self._proc = proc

        try:
            return fetch(target, limits=self.limits, allow=self.allow, started=started)
        finally:
            with self._lock:
                self._proc = None

    def _finished(self, key: str, f: Future[Fetched]) -> None:
        self._futures.pop(key, None)
        waiting = self._waiting.pop(key, [])
        result: Fetched | None = None
        if f.cancelled() or self._stopping:
            pass  # cancelled, or its child killed by cancel_pending: not a result about the remote side
        elif (exc := f.exception()) is not None:
            log.error("download of %s failed: %r", key, exc)  # a bug: the session closes without the file
        else:
            result = f.result()
            self.fetched += 1
            if not result.refused:
                self._cache[key] = result
                while len(self._cache) > self.cache_entries:
                    self._cache.popitem(last=False)
        for done in waiting:
            try:
                done(result)
            except Exception:
                log.exception("download callback failed")

    def cancel_pending(self) -> None:
        """Cancel the fetches not started and kill the running one (the sensor is stopping)."""
        self._stopping = True
        futures = list(self._futures.values())
        for f in futures:
            f.cancel()
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()

    def close(self) -> None:
        self.cancel_pending()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
