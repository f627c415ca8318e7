"""Follow an attacker past the exploit: from ``exploit.attempt`` to the shell, the commands, the
download and the file, across the capture's connections.

:func:`follow_attacks` takes a capture and what its replay found (the ``exploit.attempt`` events,
as Arrow tables or records) and reads the capture once more, keeping the TCP connections of the
victims that start within ``follow_window`` after an exploit (:mod:`.capture_flows`). Then, per
exploit, in time order, each connection used by at most one attack:

1. **shellcode** — the exploit's payload (from the payload store by its SHA-256, else the exploit
   connection's client bytes) goes to :func:`stormwatch.detect.shellcode.analyze` when that
   analyser is installed: bind ports, connect-back addresses, offers;
2. **shell** — with the analysis: the first connection from the attacker to a bind port it names,
   or from the victim to a connect-back address it names, starting after the exploit. Without it,
   the rule is: *the first connection from the attacker to a victim port other than 135, 139 and
   445 that starts within* ``shell_window`` *(60 s) after the exploit* is a bind shell; failing that,
   *the first connection from the victim to the attacker in that window that is not FTP* (the
   server does not greet with ``220``) is a connect-back shell. The attacker's lines are
   interpreted by :mod:`.shell_stream` (echo-built ``ftp -s:`` scripts, tftp, URLs, programs run);
3. **FTP control** — for each FTP offer (shell script or shellcode), the first connection from the
   victim to the offer's port — to its host, or to any host when the host is unusable (``0.0.0.0``,
   a name: the victim resolves it, we cannot), the attacker preferred — after the offer; and any
   other connection of the victim in the window whose server greets with ``220`` and which sends
   ``USER``. Parsed by :mod:`.ftp_stream`;
4. **FTP data** — for each RETR, the connection the preceding ``PORT``/``EPRT`` (to the victim's
   announced port, from the server's host) or ``PASV``/``EPSV`` reply (from the victim to the
   announced address) describes, starting after the announcement; the direction towards the victim
   is the file, rebuilt, checked and stored by :mod:`.file_rebuild`.

Everything is bounded (:class:`FollowLimits`); holes in the capture give notes and ``complete =
False``, never an exception. Attacker-supplied strings (commands, file names, hosts in scripts) are
data: they never become a path and are never executed.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias

import pyarrow as pa

from stormwatch.collector.attack_model import (
    Connection,
    ExploitRef,
    FtpFollow,
    MultiStageAttack,
    Offer,
    Stage,
    flow_session_id,
)
from stormwatch.collector.capture_flows import Flow, FlowLimits, FlowTable, host_segments
from stormwatch.collector.file_rebuild import open_store, rebuild
from stormwatch.collector.ftp_stream import parse_session, split_lines
from stormwatch.collector.shell_stream import ShellLine, parse_shell
from stormwatch.collector.shellcode_link import analyse_payload
from stormwatch.collector.tcp_streams import Segment
from stormwatch.ingest.base import source_for
from stormwatch.sensor.payloads import PayloadStore

SERVICE_PORTS = frozenset({135, 139, 445})
_HTTP = re.compile(rb"[A-Z]{3,10} \S+ HTTP/\d")
ReplayInput: TypeAlias = pa.Table | Iterable[pa.Table] | Iterable[Mapping[str, Any]]


@dataclass(frozen=True)
class FollowLimits:
    """Bounds and windows of following attacks through one capture."""

    shell_window: float = 60.0  # seconds after the exploit in which the shell connection must start
    follow_window: float = 1800.0  # seconds after the exploit during which the victim's connections count
    slack: float = 1.0  # seconds before the exploit event a later stage may start (the event's time is
    # the request's; the shellcode can run while the last segment of it is still being acknowledged)
    max_file: int = 16 << 20  # bytes of one rebuilt file (the flows keep at most flows.max_stream_bytes)
    max_attacks: int = 10_000
    flows: FlowLimits = field(default_factory=FlowLimits)


def follow_attacks(pcap_path: str | Path, replay_result_or_events: ReplayInput, payload_dir: Path | str | None,
                   *, limits: FollowLimits | None = None,
                   analyse: Callable[[bytes], Any] | None = None) -> list[MultiStageAttack]:
    """The multi-stage attacks of a capture (see the module docstring). ``replay_result_or_events``:
    the replay's event tables (:func:`~stormwatch.collector.replay.replay_capture`) or event records;
    ``payload_dir``: where exploit payloads are (by SHA-256) and where rebuilt files are stored;
    ``analyse``: a shellcode analyser to use instead of :mod:`stormwatch.detect.shellcode`'s."""
    lim = limits or FollowLimits()
    exploits = exploit_refs(replay_result_or_events)[:lim.max_attacks]
    if not exploits:
        return []
    victims = {e.victim for e in exploits}
    table = FlowTable(_admitter(exploits, lim), lim.flows)
    for seg in host_segments(source_for(str(pcap_path), "multistage"), victims):
        table.segment(seg)
    store = open_store(payload_dir, lim.max_file)
    claimed: set[int] = set()
    attacks = []
    for exp in exploits:
        attack = _follow(exp, table.flows, claimed, lim, store, analyse)
        attack.notes.extend(table.notes[:10])
        attacks.append(attack)
    return attacks


def _admitter(exploits: list[ExploitRef], lim: FollowLimits) -> Callable[[Segment], bool]:
    """Which new connections to follow: the exploit connections themselves, and the victims'
    connections on other ports that start within the follow window of one of their exploits."""
    exploit_keys = {(e.attacker, e.attacker_port, e.victim, e.victim_port) for e in exploits}
    windows: dict[str, list[tuple[int, int]]] = {}
    for e in exploits:
        windows.setdefault(e.victim, []).append((e.ts - int(lim.slack * 1e6), e.ts + int(lim.follow_window * 1e6)))

    def admit(seg: Segment) -> bool:
        if (seg.src, seg.sport, seg.dst, seg.dport) in exploit_keys or \
                (seg.dst, seg.dport, seg.src, seg.sport) in exploit_keys:
            return True
        if seg.sport in SERVICE_PORTS or seg.dport in SERVICE_PORTS:
            return False
        spans = windows.get(seg.src, []) + windows.get(seg.dst, [])
        return any(a <= seg.ts <= b for a, b in spans)

    return admit


# -- the replay's exploits --------------------------------------------------------------------------

def exploit_refs(events: ReplayInput) -> list[ExploitRef]:
    """The ``exploit.attempt`` events of a replay (Arrow tables of :func:`arrow_schema`, or records
    with the same fields, ``data`` as a dict or JSON text), in time order."""
    rows: Iterable[Mapping[str, Any]]
    if isinstance(events, pa.Table):
        rows = events.to_pylist()
    else:
        rows = (r for item in events for r in (item.to_pylist() if isinstance(item, pa.Table) else [item]))
    out: list[ExploitRef] = []
    for r in rows:
        if r.get("event") != "exploit.attempt" or r.get("src_ip") is None or r.get("dst_ip") is None:
            continue
        data = r.get("data")
        d: Mapping[str, Any] = (json.loads(data) if isinstance(data, str) else data) if data else r
        if d.get("kind", "exploit") != "exploit":
            continue  # a vulnerability probe opens no shell
        out.append(ExploitRef(str(r.get("session") or ""), _micros(r["ts"]), str(r["src_ip"]),
                              int(r.get("src_port") or 0), str(r["dst_ip"]), int(r.get("dst_port") or 0),
                              str(d.get("vuln") or ""), str(d.get("cve") or ""), str(d.get("detector") or ""),
                              d.get("payload_sha256"), d.get("payload_size")))
    out.sort(key=lambda e: e.ts)
    return out


def _micros(ts: Any) -> int:
    if isinstance(ts, int):
        return ts
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        return int(ts.timestamp()) * 1_000_000 + int(ts.microsecond)
    raise TypeError(f"not a time: {ts!r}")


# -- one attack ------------------------------------------------------------------------------------

def _conn(flow: Flow) -> Connection:
    return Connection(flow_session_id(flow.first_ts, *flow.key), flow.client, flow.cport, flow.server, flow.sport,
                      flow.first_ts, flow.last_ts, flow.first_frame)


def _first(flows: list[Flow], claimed: set[int], test: Callable[[Flow], bool]) -> Flow | None:
    for f in sorted(flows, key=lambda f: f.first_ts):
        if id(f) not in claimed and test(f):
            return f
    return None


def _is_ftp(flow: Flow) -> bool:
    """An FTP control connection: the server greets with 220 (RFC 959 4.2) or the client logs in."""
    return flow.down.head(4).startswith(b"220") or flow.up.head(8).upper().startswith(b"USER ")


def _text(data: bytes) -> bool:
    return bool(data) and sum(32 <= c < 127 or c in (9, 10, 13) for c in data) * 10 >= len(data) * 9


def _shell_like(flow: Flow) -> bool:
    """The content test of the heuristic: a connection whose SYN was captured (a shell opened after
    the exploit shows its SYN) and whose first bytes in one direction are text — typed commands, or
    cmd.exe's banner — but not an HTTP request or a DCE/RPC PDU (other services of the victim).
    A binary stage (e.g. Meterpreter's) is left to the shellcode analyser's bind port."""
    if not flow.syn:
        return False
    up, down = flow.up.head(256), flow.down.head(256)
    if _HTTP.match(up) or up[:1] == b"\x05" or down[:1] == b"\x05":
        return False
    return _text(up) or _text(down)


def _follow(exp: ExploitRef, flows: list[Flow], claimed: set[int], lim: FollowLimits, store: PayloadStore | None,
            analyse: Callable[[bytes], Any] | None) -> MultiStageAttack:
    atk = MultiStageAttack(exp.session, exp)
    t0, slack = exp.ts, int(lim.slack * 1e6)
    until, shell_until = t0 + int(lim.follow_window * 1e6), t0 + int(lim.shell_window * 1e6)
    exploit_flow = _first(flows, set(), lambda f: (f.client, f.cport, f.server, f.sport) ==
                          (exp.attacker, exp.attacker_port, exp.victim, exp.victim_port))
    label = f"{exp.attacker}:{exp.attacker_port} -> {exp.victim}:{exp.victim_port}"
    atk.stages.append(Stage("exploit", t0, label, f"{exp.vuln or 'exploit'} {exp.cve} ({exp.detector})".strip(),
                            exp.session))
    mine = [f for f in flows if t0 - slack <= f.first_ts <= until and f is not exploit_flow]
    report = analyse_payload(exp, exploit_flow, store, analyse, atk)
    binds: tuple[int, ...] = report.binds if report else ()
    connects: tuple[tuple[str, int], ...] = report.connects if report else ()
    for o in report.offers if report else ():
        atk.offers.append(o)
        atk.stages.append(Stage("offer", t0, "", f"shellcode offers {o.url}"))

    # the shell
    shell: Flow | None = None
    if binds:
        shell = _first(mine, claimed, lambda f: f.client == exp.attacker and f.server == exp.victim
                       and f.sport in binds)
        atk.shell_kind, atk.shell_rule = "bind", f"the shellcode binds port(s) {', '.join(map(str, binds))}"
    elif connects:
        shell = _first(mine, claimed, lambda f: f.client == exp.victim and any(
            f.sport == p and (f.server == h or _unusable(h)) for h, p in connects))
        atk.shell_kind, atk.shell_rule = "connect-back", "the shellcode connects back to " + ", ".join(
            f"{h}:{p}" for h, p in connects)
    if shell is None and not binds and not connects:
        shell = _first(mine, claimed, lambda f: f.client == exp.attacker and f.server == exp.victim
                       and f.sport not in SERVICE_PORTS and f.first_ts <= shell_until and _shell_like(f))
        atk.shell_kind = "bind"
        atk.shell_rule = (f"heuristic: the first connection from the attacker to a victim port other than "
                          f"135/139/445 within {lim.shell_window:g} s after the exploit that carries text")
        if shell is None:
            shell = _first(mine, claimed, lambda f: f.client == exp.victim and f.server == exp.attacker
                           and f.first_ts <= shell_until and not _is_ftp(f) and _shell_like(f))
            atk.shell_kind = "connect-back"
            atk.shell_rule = (f"heuristic: the first non-FTP connection from the victim to the attacker within "
                              f"{lim.shell_window:g} s after the exploit that carries text")
    if shell is None:
        atk.shell_kind, atk.shell_rule = None, ""
        atk.notes.append("no shell connection found after the exploit")
    else:
        claimed.add(id(shell))
        _shell(atk, shell)

    # FTP control connections: those the offers point at, then any other FTP of the victim
    for offer in [o for o in atk.offers if o.protocol == "ftp"]:
        start = offer.ts if offer.ts is not None else t0

        def wanted(f: Flow, offer: Offer = offer, start: int = start) -> bool:
            return f.client == exp.victim and f.sport == (offer.port or 21) and f.first_ts >= start - slack \
                and (f.server == offer.host or _unusable(offer.host))
        ctl = _first([f for f in mine if f.server == exp.attacker], claimed, wanted) or _first(mine, claimed, wanted)
        if ctl is None:
            atk.notes.append(f"no FTP connection to port {offer.port} found for {offer.url}")
            continue
        how = f"offer {offer.url}"
        if ctl.server != offer.host:
            how += f" (its host {offer.host!r} is not an address to match; the victim's connection to port " \
                   f"{offer.port} went to {ctl.server})"
        _ftp(atk, ctl, how, mine, claimed, lim, store)
    for ctl in sorted(mine, key=lambda f: f.first_ts):
        if id(ctl) not in claimed and ctl.client == exp.victim and _is_ftp(ctl):
            _ftp(atk, ctl, "content: an FTP greeting and login from the victim's connection", mine, claimed, lim, store)
    return atk


def _unusable(host: str) -> bool:
    """A script host we cannot match to an address: unspecified (0.0.0.0), or a DNS name."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return True


def _shell(atk: MultiStageAttack, flow: Flow) -> None:
    conn = atk.shell = _conn(flow)
    from_attacker, from_victim = (flow.up, flow.down) if flow.client == atk.attacker else (flow.down, flow.up)
    a, v = from_attacker.assemble(), from_victim.assemble()
    to_v = [ShellLine(x.text, x.ts, True) for x in split_lines(a.data, a.ts_at) if x.text.strip()]
    from_v = [ShellLine(x.text, x.ts, False) for x in split_lines(v.data, v.ts_at) if x.text.strip()]
    act = atk.shell_activity = parse_shell(to_v, from_v)
    what = f"{atk.shell_kind} shell: {atk.shell_rule}"
    if atk.shell_kind == "bind":
        what = f"bind shell on port {conn.server_port} ({atk.shell_rule})"
    atk.stages.append(Stage("shell", conn.first_ts, conn.label(), what, conn.session))
    for line in act.lines:
        atk.stages.append(Stage("command" if line.to_victim else "output", line.ts, conn.label(),
                                ("> " if line.to_victim else "< ") + line.text, conn.session))
    for o in act.offers:
        atk.offers.append(Offer(o.protocol, o.host, o.port, o.filename, o.url, "shell", o.ts, o.user, o.password))
        cred = f" as {o.user!r}" if o.user is not None else ""
        atk.stages.append(Stage("offer", o.ts, conn.label(), f"{o.via}: {o.url}{cred}", conn.session))
    for prog, ts in act.runs:
        atk.stages.append(Stage("run", ts, conn.label(), f"runs {prog}", conn.session))
    for holes, side in ((a.holes, "attacker"), (v.holes, "victim")):
        if holes:
            atk.notes.append(f"shell: {sum(y - x for x, y in holes)} bytes from the {side} missing from the capture")
    atk.notes.extend(f"shell: {n}" for n in act.notes)


def _ftp(atk: MultiStageAttack, ctl: Flow, how: str, mine: list[Flow], claimed: set[int], lim: FollowLimits,
         store: PayloadStore | None) -> None:
    claimed.add(id(ctl))
    conn = _conn(ctl)
    up, down = ctl.up.assemble(), ctl.down.assemble()
    s = parse_session(up.data, down.data, up.ts_at, down.ts_at, server=ctl.server)
    atk.ftp.append(FtpFollow(conn, s, how))
    verbs = " ".join(c.verb for c, _ in s.exchanges[:20])
    atk.stages.append(Stage("ftp-control", conn.first_ts, conn.label(),
                            f"FTP to {ctl.server}:{ctl.sport} as {s.user!r}: {verbs} ({how})", conn.session))
    if up.holes or down.holes:
        atk.notes.append(f"ftp control {conn.label()}: bytes missing from the capture; commands may be lost")
    for t in s.transfers:
        if t.verb != "RETR":
            continue
        if t.data_port is None or t.announced_ts is None:
            atk.notes.append(f"RETR {t.path!r}: no data connection was announced (PORT/PASV)")
            continue
        # active: the server's host connects to the announced address; passive: the client does
        opener = ctl.server if t.mode == "active" else ctl.client

        def test(f: Flow, host: str | None = t.data_host, port: int = t.data_port, when: int = t.announced_ts,
                 opener: str = opener) -> bool:
            return f.client == opener and f.server == host and f.sport == port and f.first_ts >= when
        data = _first(mine, claimed, test)
        if data is None:
            atk.notes.append(f"RETR {t.path!r}: the data connection to {t.data_host}:{t.data_port} "
                             "is not in the capture")
            continue
        claimed.add(id(data))
        dconn = _conn(data)
        part = data.up.assemble() if data.client == ctl.server else data.down.assemble()
        if len(part.data) > lim.max_file:
            part = replace(part, data=part.data[:lim.max_file], truncated=True)
        url = f"ftp://{ctl.server}:{ctl.sport}/{t.path}" if ctl.sport != 21 else f"ftp://{ctl.server}/{t.path}"
        rf = rebuild(part, name=t.path, protocol="ftp", url=url, source_host=ctl.server, source_port=ctl.sport,
                     connection=dconn, announced=t.announced_size,
                     transfer_ok=None if t.final is None else t.succeeded, store=store)
        atk.files.append(rf)
        state = "complete" if rf.complete else "PARTIAL"
        atk.stages.append(Stage("ftp-data", dconn.first_ts, dconn.label(),
                                f"{t.mode} data connection for RETR {t.path}: {rf.size} bytes, {state}", dconn.session))
        atk.stages.append(Stage("file", dconn.last_ts, dconn.label(),
                                f"{t.path}: {rf.size} bytes{' ' + rf.file_type.upper() if rf.file_type else ''}, "
                                f"md5 {rf.md5}, sha256 {rf.sha256}{', stored' if rf.stored else ''}", dconn.session))
        atk.notes.extend(f"{t.path}: {n}" for n in rf.notes)
