"""The child process of a payload download (:func:`stormwatch.sensor.download.fetch`).

Runs as ``python -I -m stormwatch.sensor.download_child`` with an empty environment in a fresh
temporary directory: the request (JSON) on stdin, the bytes to ``./body``, a one-line JSON report
on stdout. It sets its resource limits (address space, CPU, file size, open files, no core)
before a byte from the network is read; single-threaded, so SIGALRM interrupts whatever it waits
on. Only the offer's host and port are contacted, after the same refusal check as the parent's.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from stormwatch.sensor.download import (
    FSIZE_MARGIN,
    PORTS,
    DownloadLimits,
    Network,
    Target,
    _literal,
    networks,
    refusal,
)


class _Deadline(Exception):
    """The interval timer fired: the total time limit is spent."""


class _Stop(Exception):
    """The fetch ends early (a refusal, a protocol error); the message is the note."""


class _Sink:
    """The file the bytes go to, cut at ``max_bytes`` (one byte more than that marks the cut)."""

    def __init__(self, f: Any, max_bytes: int) -> None:
        self.f, self.max, self.size, self.cut = f, max_bytes, 0, False

    def write(self, data: bytes) -> bool:
        """False once the limit is passed (the caller stops reading)."""
        room = self.max - self.size
        if len(data) > room:
            data, self.cut = data[:room], True
        self.f.write(data)
        self.size += len(data)
        return not self.cut


def _child() -> int:
    import resource
    import signal
    import socket

    req = json.loads(sys.stdin.buffer.read(1 << 16))
    lim = DownloadLimits(**req["limits"])
    # the sandbox first, before a byte from the network is read
    cpu = int(lim.timeout) + 2
    for which, value in ((resource.RLIMIT_AS, lim.memory), (resource.RLIMIT_CPU, cpu),
                         (resource.RLIMIT_FSIZE, lim.max_bytes + FSIZE_MARGIN),
                         (resource.RLIMIT_NOFILE, lim.open_files), (resource.RLIMIT_CORE, 0)):
        hard = resource.getrlimit(which)[1]
        resource.setrlimit(which, (value if hard == resource.RLIM_INFINITY else min(value, hard), hard))

    def alarm(signum: int, frame: Any) -> None:
        raise _Deadline

    signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, lim.timeout)
    socket.setdefaulttimeout(lim.connect_timeout)
    target = Target(**req["target"])
    allow = networks(req["allow"])
    report: dict[str, Any] = {"notes": []}
    with open("body", "wb") as f:
        sink = _Sink(f, lim.max_bytes)
        try:
            address = _resolve(target.host, target.port, allow)
            report["address"] = address
            _FETCHERS[target.protocol](target, address, sink, lim, report)
        except _Deadline:
            report["notes"].append(f"timeout: the fetch took more than {lim.timeout:g} s")
            report["complete"] = False
        except _Stop as exc:
            report["notes"].append(str(exc))
            report["complete"] = False
            report["refused"] = str(exc).startswith("refused")
        except Exception as exc:  # noqa: BLE001 - whatever the remote side breaks: a note, the bytes so far kept
            report["notes"].append(f"error: {type(exc).__name__}: {str(exc)[:300]}")
            report["complete"] = False
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    if sink.cut:
        report["complete"] = False
        report["notes"].append(f"cut at max_bytes ({lim.max_bytes})")
    expected = report.get("expected_size")
    if report.get("complete") and isinstance(expected, int) and expected != sink.size:
        report["complete"] = False
        report["notes"].append(f"{sink.size} bytes received, {expected} announced")
    sys.stdout.write(json.dumps(report) + "\n")
    return 0


def _resolve(host: str, port: int, allow: Sequence[Network]) -> str:
    """The one address connected to: the literal, or the first one the name resolves to; refused
    destinations stop here."""
    import socket

    literal = _literal(host)
    if literal is None:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        if not infos:
            raise _Stop(f"{host} does not resolve")
        literal = str(infos[0][4][0])
    why = refusal(literal, allow)
    if why is not None:
        raise _Stop(f"refused: {host} -> {why}" if literal != host else f"refused: {why}")
    return literal


def _http(t: Target, address: str, sink: _Sink, lim: DownloadLimits, report: dict[str, Any]) -> None:
    import http.client
    import socket
    import ssl
    import urllib.error
    import urllib.request

    def pinned(conn: http.client.HTTPConnection) -> http.client.HTTPConnection:
        # every connection, whatever host the URL names, goes to the address that was checked
        conn._create_connection = lambda addr, timeout, source: socket.create_connection(  # type: ignore[attr-defined]
            (address, t.port), lim.connect_timeout)
        return conn

    class Plain(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(lambda host, **kw: pinned(http.client.HTTPConnection(host, **kw)), req)

    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE

    class Tls(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(lambda host, **kw: pinned(http.client.HTTPSConnection(host, **kw)), req,
                                context=ctx)

    class SameHost(urllib.request.HTTPRedirectHandler):
        max_redirections = 5

        def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                             newurl: str) -> urllib.request.Request | None:
            new = urlsplit(newurl)
            if (new.scheme, new.hostname, new.port or PORTS.get(new.scheme)) != (t.protocol, t.host.lower(), t.port):
                report["notes"].append(f"redirect to another place refused: {newurl[:200]}")
                return None
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    # an OpenerDirector of our handlers only: no proxy from the environment, no file:, ftp: or data:
    opener = urllib.request.OpenerDirector()
    for h in (Plain(), Tls(), SameHost(), urllib.request.HTTPDefaultErrorHandler(),
              urllib.request.HTTPErrorProcessor()):
        opener.add_handler(h)
    req = urllib.request.Request(t.url, headers={"User-Agent": "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)"})
    try:
        resp = opener.open(req, timeout=lim.connect_timeout)
    except urllib.error.HTTPError as exc:
        raise _Stop(f"http status {exc.code} {exc.reason}") from None
    with resp:
        length = resp.headers.get("Content-Length")
        if length is not None and length.strip().isdigit():
            report["expected_size"], report["expected_from"] = int(length), "content_length"
        while chunk := resp.read1(1 << 16):  # what has arrived: a stall keeps the bytes before it
            if not sink.write(chunk):
                return
    report["complete"] = True


def _ftp(t: Target, address: str, sink: _Sink, lim: DownloadLimits, report: dict[str, Any]) -> None:
    import ftplib

    ftp = ftplib.FTP(timeout=lim.connect_timeout)  # trust_server_pasv_ipv4_address stays False
    ftp.connect(address, t.port)
    try:
        ftp.login(t.user or "anonymous", t.password or ("anonymous@" if not t.user else ""))
        ftp.set_pasv(not t.active)
        ftp.voidcmd("TYPE I")
        conn, size = ftp.ntransfercmd(f"RETR {t.path}")
        with conn:
            peer = _literal(conn.getpeername()[0])
            if peer != _literal(address):  # active mode: only the server may connect to our port
                raise _Stop(f"data connection from {peer}, not from {address}: refused")
            if size is not None:
                report["expected_size"], report["expected_from"] = size, "ftp_reply"
            while chunk := conn.recv(1 << 16):
                if not sink.write(chunk):
                    return
        ftp.voidresp()  # 226: the server says the whole file was sent
        report["complete"] = True
    finally:
        ftp.close()


def _tftp(t: Target, address: str, sink: _Sink, lim: DownloadLimits, report: dict[str, Any]) -> None:
    """RFC 1350: RRQ (opcode 1) name NUL "octet" NUL; DATA (3) block data; ACK (4) block; ERROR (5)."""
    import socket
    import struct

    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(lim.tftp_wait)
        last = b"\0\x01" + t.path.encode("latin-1", "replace") + b"\0octet\0"
        dest: tuple[str, int] = (address, t.port)
        s.sendto(last, dest)
        tid: int | None = None
        expect, tries = 1, 0
        while True:
            try:
                pkt, src = s.recvfrom(4 + 512 + 16)
            except TimeoutError:
                tries += 1
                if tries > lim.tftp_retries:
                    raise _Stop(f"tftp: no answer after {tries} tries") from None
                s.sendto(last, dest)
                continue
            if _literal(src[0]) != _literal(address):
                continue  # another host: ignored, never answered
            if tid is None:
                tid, dest = src[1], (address, src[1])  # the server's transfer ID: its port from now on
            elif src[1] != tid:
                s.sendto(b"\0\x05\0\x05Unknown transfer ID\0", src)
                continue
            if len(pkt) < 4:
                raise _Stop("tftp: short packet")
            op, block = struct.unpack("!HH", pkt[:4])
            if op == 5:
                msg = pkt[4:].split(b"\0", 1)[0].decode("latin-1")[:200]
                raise _Stop(f"tftp error {block}: {msg}")
            if op != 3:
                raise _Stop(f"tftp: unexpected opcode {op}")
            if block == expect & 0xFFFF:
                data = pkt[4:]
                if not sink.write(data):
                    s.sendto(b"\0\x05\0\x03max_bytes reached\0", dest)  # 3: allocation exceeded
                    return
                last, tries, expect = struct.pack("!HH", 4, block), 0, expect + 1
                s.sendto(last, dest)
                if len(data) < 512:
                    report["complete"] = True
                    return
            elif block == (expect - 1) & 0xFFFF and expect > 1:
                s.sendto(last, dest)  # our ACK was lost: the server sent the block again


_FETCHERS: dict[str, Callable[[Target, str, _Sink, DownloadLimits, dict[str, Any]], None]] = {
    "http": _http, "https": _http, "ftp": _ftp, "tftp": _tftp,
}

if __name__ == "__main__":
    sys.exit(_child())
