"""An FTP control connection read back from a capture (RFC 959, with RFC 2428's EPRT/EPSV).

Pure functions over the two reassembled directions of the control connection:

* commands (RFC 959 4.1, 5.3): ``VERB [SP argument] CRLF``, the verb case-insensitive; a bare LF
  is accepted too (bots' servers and clients are not strict);
* replies (RFC 959 4.2): ``xyz SP text CRLF``; a multi-line reply opens with ``xyz-`` and ends at
  the first line that starts with the same ``xyz`` followed by a space — lines in between are text,
  even when they begin with digits;
* data connection addresses: ``PORT h1,h2,h3,h4,p1,p2`` (RFC 959 4.1.2; port = p1 * 256 + p2), the
  ``227`` reply to ``PASV`` (its six numbers found anywhere in the text, as RFC 1123 4.1.2.6 tells
  clients to do), ``EPRT |af|addr|port|`` and the ``229`` reply ``(|||port|)`` to ``EPSV``
  (RFC 2428 2-3);
* each command is paired with its reply in order (the first reply before any command is the
  greeting); a transfer command (RETR, STOR, LIST, NLST, ...) takes a preliminary ``1yz`` reply
  and then its final one. The size a server announces in its ``150`` reply, "``(N bytes)``", is
  kept to check the reassembled file against.

Nothing here trusts the peer: line counts and lengths are bounded, numbers out of range make the
address ``None``, and attacker text stays text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_LINES = 10_000  # per direction
MAX_LINE = 4096  # characters kept of a line

TRANSFER_VERBS = frozenset({"RETR", "STOR", "STOU", "APPE", "LIST", "NLST", "MLSD"})
_REPLY = re.compile(r"(\d{3})([ -])(.*)", re.S)
_SIX = re.compile(r"(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})")
_EPSV = re.compile(r"\((.)\1\1(\d{1,5})\1\)")
_SIZE = re.compile(r"\((\d{1,12}) bytes\)", re.I)

TsAt = Callable[[int], int | None]


@dataclass(frozen=True)
class Line:
    """One line of a direction: its text (CR/LF removed) and capture time."""

    text: str
    ts: int | None


@dataclass(frozen=True)
class FtpCommand:
    verb: str  # upper-cased
    arg: str
    ts: int | None


@dataclass(frozen=True)
class FtpReply:
    code: int
    text: str  # the lines' text after the code, joined with newlines
    ts: int | None

    @property
    def positive(self) -> bool:
        return 100 <= self.code < 400


@dataclass(frozen=True)
class Transfer:
    """A transfer command, its replies, and the data connection announced before it."""

    verb: str
    path: str
    ts: int | None
    mode: str | None  # "active" (PORT/EPRT) or "passive" (PASV/EPSV); None if none was announced
    data_host: str | None  # who listens for the data connection
    data_port: int | None
    announced_ts: int | None  # when that address was given
    preliminary: FtpReply | None
    final: FtpReply | None
    announced_size: int | None  # from "(N bytes)" in the 150 reply

    @property
    def succeeded(self) -> bool:
        return self.final is not None and 200 <= self.final.code < 300


@dataclass
class FtpSession:
    """What a control connection shows."""

    greeting: FtpReply | None = None
    user: str | None = None
    password: str | None = None
    logged_in: bool = False
    system: str | None = None
    type: str | None = None
    exchanges: list[tuple[FtpCommand, FtpReply | None]] = field(default_factory=list)
    transfers: list[Transfer] = field(default_factory=list)
    unanswered: list[FtpReply] = field(default_factory=list)  # replies left over after pairing


def split_lines(data: bytes, ts_at: TsAt | None = None, *, max_lines: int = MAX_LINES) -> list[Line]:
    """``data`` cut at LF (a CR before it dropped), each line with the time of its first byte. A last
    line without its LF is kept: a capture may end mid-line."""
    out: list[Line] = []
    pos = 0
    n = len(data)
    while pos < n and len(out) < max_lines:
        end = data.find(b"\n", pos)
        stop = n if end < 0 else end
        raw = data[pos:stop]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        out.append(Line(raw[:MAX_LINE].decode("latin-1"), ts_at(pos) if ts_at else None))
        pos = stop + 1
    return out


def parse_command(line: Line) -> FtpCommand | None:
    """RFC 959 5.3: the verb up to the first space, the rest its argument; None for an empty line."""
    text = line.text.strip()
    if not text:
        return None
    verb, _, arg = text.partition(" ")
    return FtpCommand(verb.upper()[:16], arg.strip(), line.ts)


def parse_replies(lines: list[Line]) -> list[FtpReply]:
    """RFC 959 4.2 replies, multi-line ones joined; a line that is no reply (outside a multi-line
    one) is skipped."""
    out: list[FtpReply] = []
    i = 0
    while i < len(lines):
        m = _REPLY.fullmatch(lines[i].text)
        if m is None:
            i += 1
            continue
        code, sep, text = m.group(1), m.group(2), [m.group(3)]
        ts = lines[i].ts
        i += 1
        if sep == "-":
            while i < len(lines):
                t = lines[i].text
                i += 1
                if t.startswith(code + " ") or t == code:
                    text.append(t[4:])
                    break
                text.append(t)
        out.append(FtpReply(int(code), "\n".join(text), ts))
    return out


def parse_port(arg: str) -> tuple[str, int] | None:
    """``h1,h2,h3,h4,p1,p2`` (PORT argument or 227 reply text) -> (address, port)."""
    m = _SIX.search(arg)
    if m is None:
        return None
    n = [int(x) for x in m.groups()]
    if any(x > 255 for x in n):
        return None
    port = n[4] * 256 + n[5]
    return ".".join(str(x) for x in n[:4]), port


def parse_eprt(arg: str) -> tuple[str, int] | None:
    """RFC 2428 2: ``<d><af><d><address><d><port><d>`` with any delimiter character."""
    if len(arg) < 7:
        return None
    d = arg[0]
    parts = arg.split(d)
    if len(parts) != 5 or parts[1] not in ("1", "2") or not parts[3].isdigit():
        return None
    port = int(parts[3])
    return (parts[2], port) if 0 < port < 65536 else None


def parse_epsv(text: str) -> int | None:
    """RFC 2428 3: the port in ``(|||port|)`` of a 229 reply."""
    m = _EPSV.search(text)
    if m is None:
        return None
    port = int(m.group(2))
    return port if 0 < port < 65536 else None


def announced_size(reply: FtpReply | None) -> int | None:
    if reply is None:
        return None
    m = _SIZE.search(reply.text)
    return int(m.group(1)) if m else None


def parse_session(up: bytes, down: bytes, up_ts: TsAt | None = None, down_ts: TsAt | None = None, *,
                  server: str | None = None) -> FtpSession:
    """The control connection's commands (``up``, client to server) and replies (``down``) paired.
    ``server``: the control connection's server address, the data address an EPSV reply implies."""
    commands = [c for c in (parse_command(x) for x in split_lines(up, up_ts)) if c is not None]
    replies = parse_replies(split_lines(down, down_ts))
    s = FtpSession()
    r = 0
    if replies and (not commands or _before(replies[0], commands[0])):
        s.greeting = replies[0]
        r = 1
    data: tuple[str | None, str | None, int | None, int | None] = (None, None, None, None)  # mode, host, port, ts
    for cmd in commands:
        reply = replies[r] if r < len(replies) else None
        r += reply is not None
        final = reply
        if cmd.verb in TRANSFER_VERBS:
            prelim = reply if reply is not None and reply.code < 200 else None
            if prelim is not None:
                final = replies[r] if r < len(replies) else None
                r += final is not None
            mode, host, port, when = data
            s.transfers.append(Transfer(cmd.verb, cmd.arg, cmd.ts, mode, host, port, when, prelim, final,
                                        announced_size(prelim) or announced_size(final)))
        s.exchanges.append((cmd, final))
        ok = final is not None and final.positive
        if cmd.verb == "USER":
            s.user = cmd.arg
            s.logged_in = final is not None and final.code == 230
        elif cmd.verb == "PASS":
            s.password = cmd.arg
            s.logged_in = s.logged_in or (final is not None and final.code == 230)
        elif cmd.verb == "SYST" and ok and final is not None:
            s.system = final.text
        elif cmd.verb == "TYPE":
            s.type = cmd.arg
        elif cmd.verb == "PORT" and ok:
            hp = parse_port(cmd.arg)
            data = ("active", *hp, cmd.ts) if hp else data
        elif cmd.verb == "EPRT" and ok:
            hp = parse_eprt(cmd.arg)
            data = ("active", *hp, cmd.ts) if hp else data
        elif cmd.verb == "PASV" and final is not None and final.code == 227:
            hp = parse_port(final.text)
            data = ("passive", *hp, final.ts) if hp else data
        elif cmd.verb == "EPSV" and final is not None and final.code == 229:
            port = parse_epsv(final.text)
            data = ("passive", server, port, final.ts) if port else data
    s.unanswered = replies[r:]
    return s


def _before(reply: FtpReply, cmd: FtpCommand) -> bool:
    if reply.ts is None or cmd.ts is None:
        return reply.code in (120, 220, 421)
    return reply.ts <= cmd.ts
