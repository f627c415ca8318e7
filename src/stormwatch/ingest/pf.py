"""OpenBSD/FreeBSD pf logs as printed by tcpdump from a pflog file or the pflog0 interface.

``pflogd(8)`` writes logged packets to ``/var/log/pflog`` in pcap format with a ``pfloghdr``
(``pflog(4)``); ``tcpdump -n -e`` prints that header before the packet (tcpdump
``print-pflog.c``: ``rule N/`` or ``rule N.ruleset.M/``, the reason, action, direction and
interface)::

    Mar 30 15:47:05.522341 rule 4/(match) block in on lo0: 127.0.0.1.48784 > 127.0.0.1.23: S 13:13(0)
        win 16384 <mss 33184> (DF)
    2026-11-26 10:00:01.123456 rule 0/0(match): block in on em0: 1.2.3.4.51234 > 5.6.7.8.445:
        Flags [S], seq 1, win 65535, length 0

(one line each in the log)

OpenBSD's tcpdump writes ``rule 4/(match) block``; libpcap's tcpdump (FreeBSD) writes
``rule 0/0(match): block``; with ``-v`` OpenBSD adds ``[uid 0, pid 123]``. Addresses end in
``.port`` (IPv6 too). The body is tcpdump's old style (``S 1:1(0) win 512``, ``. ack 1``,
``udp 32``, ``icmp: echo request``) or its newer style (``Flags [S.]``, ``UDP, length 32``,
``ICMP echo request, id 1, seq 1, length 64``). The line may sit behind a syslog header
(``Mar 30 15:33:26 fw pf: ...``).

Time: the last timestamp before ``rule``: OpenBSD ``-ttt`` (``Nov 26 10:00:01.123456``, year
from the source as for syslog, see :class:`~stormwatch.ingest.asa.SyslogClock`), ``-tttt``
(``2026-11-26 10:00:01.123456``), ``-tt`` (epoch seconds) or a syslog header. A bare
``10:00:01.123456`` (tcpdump without ``-t`` options, or libpcap tcpdump's ``-ttt``, which prints
the *delta* to the previous packet in the same shape) has no date and is rejected with a reason
naming ``-tttt``. Times carry no zone and are stored as if UTC.

Mapping: ``block``/``synproxy-drop`` → ``drop``, ``pass`` → ``accept``, ``match`` (OpenBSD log
rules that set no verdict) and the translation actions (``nat``, ``rdr``, ``binat``, ``scrub``)
→ ``log``. The rule number (``4``, or ``1.anchor.2``) → ``rule``; the interface → ``in_iface``
for ``in``, ``out_iface`` for ``out``. TCP flags come from the old style's flag letters plus
``ack N`` (its ``.`` means "no S/F/R/P flag", not ACK) or from the new style's ``Flags [...]``
(where ``.`` is ACK). ICMP type and code come from tcpdump's wording (:data:`ICMP_WORDS`).

Protocol: tcpdump names it only in some bodies. TCP is recognised by its flag field, UDP by
``udp N``/``UDP,``, ICMP by ``icmp:``/``ICMP``; a body with ports that is none of these is an
application decoder's output for UDP (DNS, NTP, BOOTP, …: tcpdump prints those instead of
``udp N``) and is read as UDP. A portless body that names no protocol is rejected. Output of
``tcpdump -v`` that puts the IP header and the packet on two lines is not supported (the header
line is rejected for lacking addresses; the indented second line is skipped).

Key: the line's text (repeats numbered by the batch builder).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from stormwatch.events import EventBatchBuilder
from stormwatch.ingest.asa import SyslogClock
from stormwatch.ingest.base import LineReader, RecordError, Source
from stormwatch.ingest.normalize import canonical_ip, flags_from_letters, port, proto_name

FORMAT = "pf"

_HEADER = re.compile(
    r"\brule (?P<rule>\S+)/(?P<reason>[\w-]*(?:\([\w-]*\))?):?\s+(?:\[[^\]]*\]\s+)?"
    r"(?P<action>pass|block|match|nat|binat|rdr|scrub|synproxy-drop|unkn\(\d+\))\s+"
    r"(?:(?P<dir>in|out|in/out)\s+)?on\s+(?P<iface>[^:\s]+):\s*(?:\[[^\]]*\]\s+)?"
)
_SNIFF = re.compile(rb"\brule \S+/[\w-]*(?:\([\w-]*\))?:? +(?:\[[^\]]*\] +)?"
                    rb"(?:pass|block|match|nat|binat|rdr|scrub|synproxy-drop) +(?:in |out |in/out )?on \S+: ")
_TIME_OF_DAY = re.compile(r"(?:^|\s)\d{1,2}:\d\d:\d\d(?:\.\d+)?\s*$")
_IPHDR = re.compile(r"^\((?:tos|ttl|hlim|flowlabel|class)\b[^()]*(?:\([^()]*\)[^()]*)*\)\s*")
_PACKET = re.compile(r"(?:IP6? )?(?P<src>\S+) > (?P<dst>\S+)(?:\s+(?P<body>.*))?$")

_ACTIONS = {"pass": "accept", "block": "drop", "synproxy-drop": "drop", "match": "log", "nat": "log",
            "binat": "log", "rdr": "log", "scrub": "log"}

_NEW_FLAGS = re.compile(r"(?:Flags )?\[(?P<f>[A-Za-z.]+)\]")
_OLD_FLAGS = re.compile(r"(?P<f>[SFRPUWE]+|\.) (?:\d+:\d+\(\d+\)|ack \d|win \d|urg \d)")
_OLD_ACK = re.compile(r"\back \d+")
_OLD_URG = re.compile(r"\burg \d+")
_TTL = re.compile(r"\[(?:ttl|hlim) (\d+)\]|\b(?:ttl|hlim) (\d+)[,)]")
_IP_LENGTH = re.compile(r"\blen(?:gth)? (\d+)\)")
_PROTO_WORD = re.compile(r"(?:HBH )?(?P<p>icmp6|ICMP6|icmp|ICMP|igmp|IGMP|udp|UDP|tcp|TCP|esp|ESP|ah|AH|gre|GRE"
                         r"|GREv\d|sctp|SCTP|pim|PIMv\d|ip-proto-\d+)\b:?,?\s*(?P<rest>.*)$")

# tcpdump's ICMP wording (print-icmp.c, print-icmp6.c) → (type, code): the first entry whose words all
# appear wins. The unreachable kinds come last: a redirect ("redirect 192.0.2.1 to net 198.51.100.0")
# holds "net " too.
ICMP_WORDS: dict[str, tuple[tuple[tuple[str, ...], int, int | None], ...]] = {
    "icmp": ((("echo request",), 8, 0), (("echo reply",), 0, 0), (("redirect",), 5, None),
             (("source quench",), 4, 0), (("router advertisement",), 9, 0), (("router solicitation",), 10, 0),
             (("reassembly time exceeded",), 11, 1), (("time exceeded",), 11, 0),
             (("parameter problem",), 12, None), (("time stamp request",), 13, 0),
             (("time stamp reply",), 14, 0), (("timestamp request",), 13, 0), (("timestamp reply",), 14, 0),
             (("need to frag",), 3, 4), (("net ", "unreachable"), 3, 0), (("host ", "unreachable"), 3, 1),
             (("protocol ", "unreachable"), 3, 2), (("port ", "unreachable"), 3, 3),
             (("unreachable",), 3, None)),
    "icmp6": ((("echo request",), 128, 0), (("echo reply",), 129, 0), (("unreachable",), 1, None),
              (("packet too big",), 2, 0), (("time exceeded",), 3, None), (("parameter problem",), 4, None),
              (("multicast listener query",), 130, 0), (("multicast listener report v2",), 143, 0),
              (("multicast listener report",), 131, 0), (("multicast listener done",), 132, 0),
              (("router solicitation",), 133, 0), (("router advertisement",), 134, 0),
              (("neighbor sol",), 135, 0), (("neighbor adv",), 136, 0), (("redirect",), 137, 0)),
}
_PROTO_ALIASES = {"grev0": "gre", "grev1": "gre", "pimv2": "pim", "pimv1": "pim"}
_ICMP_TYPE_NUMBER = re.compile(r"type-#(\d+)")


@dataclass
class _Addr:
    ip: str
    port: int | None


def split_address(token: str) -> _Addr:
    """tcpdump's ``address.port`` (IPv4 or IPv6) or a bare address."""
    colon = ":" in token
    if not colon and token.count(".") == 3:
        return _Addr(canonical_ip(token), None)
    head, dot, tail = token.rpartition(".")
    if colon:
        try:
            return _Addr(canonical_ip(token), None)
        except RecordError:
            if not (dot and tail.isdecimal()):
                raise
    elif not dot or token.count(".") != 4:
        raise RecordError(f"not an address: {token[:64]!r}")
    if not tail.isdecimal():
        raise RecordError(f"port is not a number (read with tcpdump -n): {token[:64]!r}")
    return _Addr(canonical_ip(head), port(tail))


def _destination(token: str) -> tuple[_Addr, str]:
    """The destination token, which ends in ``:`` or has the body glued to it
    (``ff02::1:2.547:dhcp6``). Only one colon is cut: ``::`` is an address."""
    token = token.removesuffix(":")
    try:
        return split_address(token), ""
    except RecordError:
        head, sep, glued = token.rpartition(":")
        if not sep:
            raise
        return split_address(head), glued


def _icmp(family: str, text: str) -> tuple[int | None, int | None]:
    n = _ICMP_TYPE_NUMBER.search(text)
    if n is not None:
        return int(n.group(1)) if int(n.group(1)) < 256 else None, None
    low = text.lower()
    for words, t, c in ICMP_WORDS[family]:
        if all(w in low for w in words):
            return t, c
    return None, None


def _tcp_flags(body: str) -> str | None:
    """Flags from the body of a TCP packet line; None if the body is not TCP's."""
    m = _NEW_FLAGS.match(body)
    if m is not None:
        f = m.group("f")
        return "" if f == "none" else flags_from_letters(f)
    m = _OLD_FLAGS.match(body)
    if m is not None:
        letters = m.group("f").replace(".", "")
        if _OLD_ACK.search(body):
            letters += "A"
        if _OLD_URG.search(body):
            letters += "U"
        return flags_from_letters(letters)
    if body.startswith("[|tcp]"):
        return ""
    return None


def _body_fields(body: str, sport: int | None, dport: int | None, family6: bool,
                 proto_hint: str | None) -> dict[str, Any]:
    """Protocol, ports, flags and ICMP type/code from the text after the addresses."""
    flags = _tcp_flags(body)
    if flags is not None and proto_hint in (None, "tcp"):
        return {"proto": "tcp", "src_port": sport, "dst_port": dport, "tcp_flags": flags or None}
    m = _PROTO_WORD.match(body.lstrip("[|"))
    word = m.group("p").lower() if m is not None else None
    if word is not None and word.startswith("ip-proto-"):
        word = word[len("ip-proto-"):]
    proto = proto_hint or (proto_name(_PROTO_ALIASES.get(word, word)) if word else None)
    if proto is None:
        if sport is None or dport is None:
            raise RecordError(f"cannot tell the protocol from {body[:40]!r}")
        proto = "udp"  # an application decoder's output (DNS, NTP, BOOTP …) in place of "udp N"
    if proto == "icmp" and family6:
        proto = "icmp6"
    if proto in ("icmp", "icmp6"):
        t, c = _icmp(proto, m.group("rest") if m is not None else body)
        return {"proto": proto, "icmp_type": t, "icmp_code": c}
    return {"proto": proto, "src_port": sport, "dst_port": dport}


class PfReader(LineReader):
    """pf log packets printed by ``tcpdump -n -e`` (OpenBSD or FreeBSD) → ``fw.connection``."""

    name = FORMAT
    description = "OpenBSD/FreeBSD pf log as printed by tcpdump -n -e -ttt/-tttt (rule N/(match) block in on ...)"

    def sniff(self, head: bytes) -> bool:
        return _SNIFF.search(head) is not None

    def start(self, src: Source) -> SyslogClock:
        return SyslogClock.for_source(src)

    def parse_line(self, line: str, state: SyslogClock, out: EventBatchBuilder) -> bool:
        h = _HEADER.search(line)
        if h is None:
            return False
        prefix = line[:h.start()]
        ts = state.micros(prefix)
        if ts is None:
            if _TIME_OF_DAY.search(prefix):
                raise RecordError("time of day without a date (or a -ttt delta): print the log with "
                                  "tcpdump -tttt (OpenBSD: -ttt)")
            raise RecordError("no timestamp before the rule")
        rest = line[h.end():]
        proto_hint = None
        ip = _IPHDR.match(rest)  # "(tos 0x0, ttl 64, ..., proto TCP (6), length 60)" of -v
        iphdr = ""
        if ip is not None:
            iphdr = ip.group(0)
            rest = rest[ip.end():]
            named = re.search(r"\bproto \w+ \((\d+)\)", iphdr)
            proto_hint = proto_name(named.group(1)) if named else None
        pkt = _PACKET.match(rest)
        if pkt is None:
            raise RecordError("no 'source > destination' after the pf header")
        src = split_address(pkt.group("src"))
        dst, glued = _destination(pkt.group("dst"))
        body = (glued + " " + (pkt.group("body") or "")).strip()
        fields = _body_fields(body, src.port, dst.port, ":" in src.ip, proto_hint)
        act = h.group("action")
        fields.update(src_ip=src.ip, dst_ip=dst.ip, action=_ACTIONS.get(act, "log"), rule=h.group("rule"),
                      format=FORMAT)
        if h.group("dir") == "out":
            fields["out_iface"] = h.group("iface")
        else:
            fields["in_iface"] = h.group("iface")
        ttl = _TTL.search(iphdr + " " + body)
        if ttl is not None:
            fields["ttl"] = int(ttl.group(1) or ttl.group(2))
        length = _IP_LENGTH.search(iphdr + " " + body)
        if length is not None:
            fields["length"] = int(length.group(1))
        out.add("fw.connection", ts, line, **fields)
        return True
