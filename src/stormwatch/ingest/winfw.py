"""Windows Firewall (Windows Defender Firewall) ``pfirewall.log``.

The log is a W3C extended log file (Microsoft, "Configure Windows Firewall logging"; W3C working
draft WD-logfile-960323): ``#`` directive lines, then one space-separated line per packet::

    #Version: 1.5
    #Software: Microsoft Windows Firewall
    #Time Format: Local
    #Fields: date time action protocol src-ip dst-ip src-port dst-port size tcpflags tcpsyn tcpack tcpwin
             icmptype icmpcode info path          (one line in the file)

    2021-06-22 12:19:41 DROP UDP 192.168.178.25 224.0.0.251 5353 5353 73 - - - - - - - RECEIVE

``-`` marks an empty value. Columns are taken from the last ``#Fields`` directive seen (newer
Windows adds ``pid``; rotated logs may repeat the header); lines before any ``#Fields`` use the
default order above.

Mapping: ``action`` ALLOW/OPEN/OPEN-INBOUND → ``accept``, DROP → ``drop``. ``INFO-EVENTS-LOST``
(the firewall's note that it could not log *n* packets, *n* in ``info``) and the Windows XP
``CLOSE`` (the end of a connection whose OPEN was already logged) are not connection records: they
are counted as skipped lines. ``protocol`` is a name (TCP, UDP, ICMP) or an IANA number (``2``
for IGMP); Windows writes ``ICMP`` for ICMPv6 too, so ICMP between IPv6 addresses is ``icmp6``.
``size`` (the packet's length) → ``length`` when it is not 0 (Windows writes 0 for connection
records of allowed traffic); ``tcpflags`` → ``tcp_flags``; ``icmptype``/``icmpcode`` →
``icmp_type``/``icmp_code``. ``path`` (SEND/RECEIVE) says whether the packet left or reached the
host; SEND lines are recorded like the others, with nothing extra. ``tcpsyn``, ``tcpack``,
``tcpwin`` and ``info`` are not kept.

Time: ``#Time Format: Local`` means the host's local time without an offset, and a
:class:`~stormwatch.ingest.base.Source` carries no time zone, so times are stored as if they were
UTC. A log from a host outside UTC is shifted by that host's offset.

Key: the line's text. The log repeats identical lines (same second, same packet description) for
distinct packets; the batch builder numbers the repeats, so each is kept and a re-read adds none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stormwatch.events import EventBatchBuilder
from stormwatch.events.batch import to_micros
from stormwatch.ingest.base import LineReader, RecordError, Source
from stormwatch.ingest.normalize import canonical_ip, checked_micros, flags_from_letters, port, proto_name

FORMAT = "pfirewall"
DEFAULT_FIELDS = ("date", "time", "action", "protocol", "src-ip", "dst-ip", "src-port", "dst-port", "size",
                  "tcpflags", "tcpsyn", "tcpack", "tcpwin", "icmptype", "icmpcode", "info", "path")
_REQUIRED = ("date", "time", "action", "protocol", "src-ip", "dst-ip")
ACTIONS = {"ALLOW": "accept", "OPEN": "accept", "OPEN-INBOUND": "accept", "DROP": "drop"}
NOT_CONNECTIONS = frozenset({"INFO-EVENTS-LOST", "CLOSE"})
_SOFTWARE = b"#Software: Microsoft Windows Firewall"


@dataclass
class _Header:
    """The column positions in force (from the last ``#Fields`` directive)."""

    fields: list[str] = field(default_factory=lambda: list(DEFAULT_FIELDS))
    pos: dict[str, int] = field(default_factory=lambda: {n: i for i, n in enumerate(DEFAULT_FIELDS)})

    def set_fields(self, names: list[str]) -> None:
        self.fields = names
        self.pos = {n: i for i, n in enumerate(names)}


def _value(values: list[str], pos: dict[str, int], name: str) -> str | None:
    i = pos.get(name)
    if i is None:
        return None
    v = values[i]
    return None if v == "-" else v


def _small_int(value: str | None, what: str) -> int | None:
    if value is None:
        return None
    if not value.isdecimal() or int(value) > 255:
        raise RecordError(f"not an ICMP {what}: {value[:16]!r}")
    return int(value)


class WindowsFirewallReader(LineReader):
    """Windows Firewall pfirewall.log (W3C extended format) → ``fw.connection``."""

    name = FORMAT
    description = "Windows (Defender) Firewall pfirewall.log, W3C #Fields header"

    def sniff(self, head: bytes) -> bool:
        if _SOFTWARE in head[:4096]:
            return True
        # A log cut from its header still starts with the directive names Windows writes.
        return head.lstrip().startswith(b"#Fields: date time action protocol src-ip dst-ip")

    def start(self, src: Source) -> _Header:
        return _Header()

    def parse_line(self, line: str, state: _Header, out: EventBatchBuilder) -> bool:
        if line.startswith("#"):
            if line.startswith("#Fields:"):
                names = line[len("#Fields:"):].split()
                missing = [n for n in _REQUIRED if n not in names]
                if missing:
                    raise RecordError(f"#Fields lacks {', '.join(missing)}")
                state.set_fields(names)
            return False
        values = line.split()
        if len(values) != len(state.fields):
            raise RecordError(f"{len(values)} values, the #Fields header has {len(state.fields)}")
        pos = state.pos
        verdict = values[pos["action"]]
        if verdict in NOT_CONNECTIONS:
            return False
        try:
            act = ACTIONS[verdict]
        except KeyError:
            raise RecordError(f"unknown action {verdict[:24]!r}") from None
        try:
            ts = datetime.fromisoformat(f"{values[pos['date']]} {values[pos['time']]}")
        except ValueError:
            raise RecordError(f"not a date and time: {values[pos['date']][:12]!r} "
                              f"{values[pos['time']][:12]!r}") from None
        src = canonical_ip(values[pos["src-ip"]])
        dst = canonical_ip(values[pos["dst-ip"]])
        proto = proto_name(values[pos["protocol"]])
        if proto == "icmp" and ":" in src:
            proto = "icmp6"
        fields: dict[str, Any] = {"src_ip": src, "dst_ip": dst, "proto": proto, "action": act,
                                  "format": FORMAT}
        if proto in ("icmp", "icmp6"):
            fields["icmp_type"] = _small_int(_value(values, pos, "icmptype"), "type")
            fields["icmp_code"] = _small_int(_value(values, pos, "icmpcode"), "code")
        else:
            fields["src_port"] = port(_value(values, pos, "src-port"))
            fields["dst_port"] = port(_value(values, pos, "dst-port"))
        size = _value(values, pos, "size")
        if size is not None:
            if not size.isdecimal():
                raise RecordError(f"size is not a number: {size[:16]!r}")
            if int(size):
                fields["length"] = int(size)
        flags = _value(values, pos, "tcpflags")
        if flags is not None and proto == "tcp":
            fields["tcp_flags"] = flags_from_letters(flags)
        out.add("fw.connection", checked_micros(to_micros(ts), line[:19]), line, **fields)
        return True
