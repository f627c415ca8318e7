"""One multi-stage attack as followed through a capture: what it is made of, and its timeline.

A :class:`MultiStageAttack` starts at an ``exploit.attempt`` the replay found and gathers what
came after it between the same hosts — the shell the exploit opened, the commands typed into it,
the downloads those commands (or the shellcode) asked for, the FTP conversation, the file that
came over the data connection. Its ``attack_id`` is the exploit session's id: the events emitted
for the later stages carry it in their ``attack`` field, so a query joins them to the exploit.

:meth:`MultiStageAttack.timeline` is the attack as rows of (stage, time, connection, what), for
the CLI and the web alike; :meth:`MultiStageAttack.as_dict` is its JSON form.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from stormwatch.collector.ftp_stream import FtpSession
from stormwatch.collector.shell_stream import ShellActivity


def flow_session_id(first_ts: int, client: str, cport: int, server: str, sport: int) -> str:
    """A connection's session id, as the capture replay derives it (hash of the first packet time
    and the 4-tuple): stable across re-reads of the capture."""
    return hashlib.sha256(f"{first_ts}|{client}|{cport}|{server}|{sport}".encode()).hexdigest()[:32]


def iso(ts: int | None) -> str | None:
    """Epoch microseconds as ISO 8601 UTC text."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class ExploitRef:
    """The ``exploit.attempt`` an attack starts from."""

    session: str
    ts: int  # epoch microseconds
    attacker: str
    attacker_port: int
    victim: str
    victim_port: int
    vuln: str
    cve: str
    detector: str
    payload_sha256: str | None
    payload_size: int | None


@dataclass(frozen=True)
class Connection:
    """A TCP connection of the capture that is one stage of an attack."""

    session: str
    client: str
    client_port: int
    server: str
    server_port: int
    first_ts: int
    last_ts: int
    first_frame: int

    def label(self) -> str:
        return f"{self.client}:{self.client_port} -> {self.server}:{self.server_port}"


@dataclass(frozen=True)
class Offer:
    """A download the attack asked for: from the shellcode, or from a shell command."""

    protocol: str
    host: str
    port: int | None
    filename: str
    url: str
    source: str  # "shellcode" or "shell"
    ts: int | None
    user: str | None = None
    password: str | None = None


@dataclass
class RetrievedFile:
    """A file put back together from a data connection of the capture."""

    name: str  # as the attacker named it: data, never a path
    protocol: str
    url: str
    source_host: str
    source_port: int | None
    connection: Connection
    size: int
    sha256: str
    md5: str
    complete: bool
    missing_bytes: int = 0
    holes: list[tuple[int, int]] = field(default_factory=list)
    expected_size: int | None = None
    expected_from: str = ""  # how the expected size is known: "tcp_fin", "ftp_reply", "pe_sections"
    file_type: str = ""  # "pe" for an MZ/PE image
    stored: bool = False
    stored_path: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class FtpFollow:
    """A followed FTP control connection."""

    connection: Connection
    session: FtpSession
    matched_by: str  # how it was tied to the attack


@dataclass(frozen=True)
class Stage:
    """One row of an attack's timeline."""

    stage: str  # exploit, shellcode, shell, command, output, offer, ftp-control, ftp-data, file, run
    ts: int | None
    connection: str
    what: str
    session: str | None = None


@dataclass
class MultiStageAttack:
    """An exploit and everything followed after it (see the module docstring)."""

    attack_id: str
    exploit: ExploitRef
    shellcode: dict[str, Any] | None = None  # the shellcode analysis, summarised
    shell: Connection | None = None
    shell_kind: str | None = None  # "bind" or "connect-back"
    shell_rule: str = ""  # why this connection was taken as the shell
    shell_activity: ShellActivity | None = None
    offers: list[Offer] = field(default_factory=list)
    ftp: list[FtpFollow] = field(default_factory=list)
    files: list[RetrievedFile] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def attacker(self) -> str:
        return self.exploit.attacker

    @property
    def victim(self) -> str:
        return self.exploit.victim

    @property
    def bind_port(self) -> int | None:
        return self.shell.server_port if self.shell is not None and self.shell_kind == "bind" else None

    def timeline(self) -> list[dict[str, Any]]:
        """The stages in time order as rows: stage, time (ISO UTC), connection, what."""
        rows = sorted(enumerate(self.stages), key=lambda p: (p[1].ts is None, p[1].ts or 0, p[0]))
        return [{"stage": s.stage, "time": iso(s.ts), "connection": s.connection, "what": s.what}
                for _, s in rows]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form: identity, the stages, the files and the notes."""
        shell = self.shell_activity
        return {
            "attack_id": self.attack_id,
            "attacker": self.attacker,
            "victim": self.victim,
            "exploit": asdict(self.exploit) | {"time": iso(self.exploit.ts)},
            "shellcode": self.shellcode,
            "shell": None if self.shell is None else asdict(self.shell) | {
                "kind": self.shell_kind, "rule": self.shell_rule,
                "commands": [{"time": iso(x.ts), "text": x.text} for x in shell.commands] if shell else [],
                "lines": [{"time": iso(x.ts), "direction": "to_victim" if x.to_victim else "from_victim",
                           "text": x.text} for x in shell.lines] if shell else [],
                "scripts": shell.scripts if shell else {},
            },
            "offers": [asdict(o) for o in self.offers],
            "ftp": [{"connection": asdict(f.connection), "matched_by": f.matched_by, "user": f.session.user,
                     "password": f.session.password,
                     "exchanges": [{"command": c.verb, "arg": c.arg, "time": iso(c.ts),
                                    "reply": None if r is None else r.code,
                                    "reply_text": None if r is None else r.text} for c, r in f.session.exchanges],
                     "transfers": [{"verb": t.verb, "path": t.path, "mode": t.mode, "data_host": t.data_host,
                                    "data_port": t.data_port, "announced_size": t.announced_size,
                                    "final": None if t.final is None else t.final.code} for t in f.session.transfers]}
                    for f in self.ftp],
            "files": [asdict(f) for f in self.files],
            "timeline": self.timeline(),
            "notes": list(self.notes),
        }
