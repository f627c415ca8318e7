"""CEF events in RFC 5424 syslog messages (pure functions: no sockets, no clock).

CEF (ArcSight Common Event Format, "Implementing ArcSight CEF", revision 25, the section
"Character encoding"): ``CEF:Version|Device Vendor|Device Product|Device Version|Signature
ID|Name|Severity|Extension``.

- In the **header** fields a pipe and a backslash are escaped with a backslash (``\\|``,
  ``\\\\``); the header has no way to carry a line break, so CR and LF become spaces.
- In the **extension** values a backslash, an equals sign and line breaks are escaped (``\\\\``,
  ``\\=``, ``\\n``, ``\\r``); a pipe needs no escape there. Keys are ``[A-Za-z0-9_]`` only.
- Other control characters (an attacker's ESC or NUL) have no escape in CEF: they become U+FFFD,
  so no terminal or parser downstream sees them.

Attacker-controlled text (campaign traits, download URLs) reaches these functions, so every header
field and extension value goes through them, whatever its source.

Syslog framing: RFC 5424 section 6 (``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG``;
header fields are printable US-ASCII without spaces, at most 255/48/128/32 octets; the MSG is
UTF-8 without a BOM, which section 6.4 allows as MSG-ANY). Over TCP each message is framed by
octet counting (RFC 6587 section 3.4.1: ``LEN SP MSG``); over UDP one message is one datagram
(RFC 5426), kept under :data:`UDP_MAX` octets by shortening the ``msg`` extension.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

CEF_SEVERITY = {1: 3, 2: 5, 3: 8, 4: 10}  # threat level -> CEF severity (0-10)
SYSLOG_SEVERITY = {1: 5, 2: 4, 3: 3, 4: 2}  # threat level -> syslog severity (notice .. critical)
UDP_MAX = 2048  # RFC 5426 3.2: receivers SHOULD accept 2048 octets
MSG_MAX = 1024  # characters of the msg extension kept in a UDP datagram before shortening further
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x80-\x9f]")
_KEY = re.compile(r"[A-Za-z0-9_]+")


def _no_controls(text: str) -> str:
    return _CONTROL.sub("\ufffd", text.replace("\t", " "))


def escape_header(text: str) -> str:
    """A CEF header field: ``\\`` and ``|`` escaped, line breaks as spaces."""
    text = _no_controls(text).replace("\r\n", " ").replace("\r", " ").replace("\n", " ")
    return text.replace("\\", "\\\\").replace("|", "\\|")


def escape_value(text: str) -> str:
    """A CEF extension value: ``\\``, ``=`` and line breaks escaped."""
    text = _no_controls(text).replace("\\", "\\\\").replace("=", "\\=")
    return text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r")


def cef_line(signature: str, name: str, level: int, extensions: Sequence[tuple[str, str]], *,
             vendor: str = "stormwatch", product: str = "stormwatch", version: str = "0") -> str:
    """One CEF record. ``extensions``: (key, value) pairs in order; values are escaped here."""
    for key, _ in extensions:
        if not _KEY.fullmatch(key):
            raise ValueError(f"CEF extension key {key!r} is not [A-Za-z0-9_]+")
    header = "|".join(escape_header(f) for f in (vendor, product, version, signature, name))
    ext = " ".join(f"{k}={escape_value(v)}" for k, v in extensions)
    return f"CEF:0|{header}|{CEF_SEVERITY.get(level, 5)}|{ext}"


def _field(text: str, limit: int) -> str:
    """An RFC 5424 header field: printable US-ASCII (33-126), at most ``limit`` octets, or ``-``."""
    clean = "".join(ch if 33 <= ord(ch) <= 126 else "_" for ch in text)[:limit]
    return clean or "-"


def rfc5424(msg: str, *, ts: datetime, hostname: str, app_name: str = "stormwatch", procid: str = "-",
            msgid: str = "-", facility: int = 16, severity: int = 5) -> bytes:
    """``msg`` as an RFC 5424 message (``ts`` naive UTC, written with a ``Z``)."""
    pri = facility * 8 + severity
    stamp = ts.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    head = (f"<{pri}>1 {stamp} {_field(hostname, 255)} {_field(app_name, 48)} {_field(procid, 128)} "
            f"{_field(msgid, 32)} -")
    return (head + " " + msg).encode("utf-8")


def octet_counted(frame: bytes) -> bytes:
    """RFC 6587 3.4.1 octet-counting framing for syslog over TCP."""
    return str(len(frame)).encode("ascii") + b" " + frame


# -- parsing (for receivers and tests) ------------------------------------------------------------

_HEADER_SPLIT = re.compile(r"(?<!\\)((?:\\\\)*)\|")
_EXT_KEY = re.compile(r"(?:^| )([A-Za-z0-9_]+)=")


def _unescape(text: str, table: dict[str, str]) -> str:
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in table:
            out.append(table[text[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """A CEF record back into its 7 header fields (after ``CEF:``) and its extensions,
    unescaped. A reference parser for receivers and the tests, not a general one."""
    if not line.startswith("CEF:"):
        raise ValueError("not a CEF record")
    fields: list[str] = []
    rest = line[4:]
    for _ in range(7):
        m = _HEADER_SPLIT.search(rest)
        if m is None:
            raise ValueError("CEF header has fewer than 8 fields")
        cut = m.start() + len(m.group(1))
        fields.append(_unescape(rest[:cut], {"\\": "\\", "|": "|"}))
        rest = rest[cut + 1:]
    keys = list(_EXT_KEY.finditer(rest))
    ext: dict[str, str] = {}
    for i, m in enumerate(keys):
        end = keys[i + 1].start() if i + 1 < len(keys) else len(rest)
        ext[m.group(1)] = _unescape(rest[m.end():end], {"\\": "\\", "=": "=", "n": "\n", "r": "\r"})
    return fields, ext
