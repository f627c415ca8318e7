"""Argus bidirectional flows as CSV (``.binetflow``, the CTU-13 / Stratosphere format).

Format: the comma-separated text of Argus ``ra -c , -s stime dur proto saddr sport dir daddr dport
state stos dtos pkts bytes sbytes ...`` with ra's title line first, for example
``StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes,SrcBytes,
Label`` (CTU adds ``Label``). The column set varies between data sets, so columns are found by
the title line's names, case-insensitively; a repeated title line (concatenated files) replaces
the column list. Tab-separated output (``ra -c '\\t'``) is read the same way.

Fields:

- ``StartTime`` like ``2011/08/10 09:46:53.047277`` (ra's default ``%Y/%m/%d %T.%f``; ``-`` as the
  date separator and epoch seconds are accepted). ra prints the local time of the machine that ran
  it and the text carries no zone: it is taken as UTC. CTU captures were printed in Prague time,
  so their events sit one or two hours late; give the sensor a UTC clock to avoid it.
- ``Sport``/``Dport``: decimal, or hex (``0x0303``) for ICMP. For ICMP, Argus 3 clients print the
  ICMP type in Sport and the code in Dport (``ArgusPrintSrcPort``/``ArgusPrintDstPort`` in
  argus-clients ``common/argus_util.c``); older clients, which made the CTU files, printed the
  16-bit word holding type and code in Sport (low byte type, high byte code on the little-endian
  hosts they ran on: ``0x0008`` = echo request, ``0x0303`` = port unreachable) and the echo
  identifier in Dport. Both are read: a Sport above 0xff is the old word; otherwise the code is
  Dport when it fits in a byte and 0 when it does not (an identifier), and 0 for echo/timestamp
  types, which have no other code. ICMP events get ``icmp_type``/``icmp_code`` and no ports.
- ``Proto``: ``tcp``, ``udp``, ``icmp``, ``ipv6-icmp`` (→ ``icmp6``), other IP protocols by name
  or number. Records of non-IP protocols (``arp``, ``rarp``, ``llc``, ``lldp``, ``ipx/spx``,
  Argus ``man`` status records) are read and skipped: they are not IP connections.
- ``Dir`` (``->``, ``<->``, ``<?>`` …) is not used: the addresses are kept as Argus ordered them.
- ``TotPkts``/``TotBytes`` → ``packets``/``bytes``; ``Dur`` → ``duration``; ``sTtl`` → ``ttl``;
  ``Label`` → ``label``; ``State`` → ``conn_state``.

Outcome (:func:`outcome`). TCP states are ``<source flags>_<destination flags>`` (``S_RA``,
``FSPA_FSPA``): the letters each side sent during the record (S SYN, A ACK, P PSH, F FIN, R RST,
U URG, E ECE, C CWR). When the source sent a SYN (an attempt seen from its start): nothing from the
destination → ``unanswered``; a SYN from the destination (SYN-ACK) → ``answered``; a RST without
it → ``reset``; other packets from it → ``answered``. Without a source SYN the record is a slice
of a longer connection (Argus reports long flows in intervals): destination packets →
``answered``, none → unknown. Other states are Argus words: ``CON`` (both sides sent), ``ACC``,
``FIN``, ``CLO`` → ``answered``; ``INT`` (initial: only the source sent), ``REQ`` (request without
reply), ``TIM`` → ``unanswered``; ``RST`` → ``reset``; ICMP states (``ECO``, ``URP`` …) and
anything else → from the packet counts when the file has ``SrcPkts``/``DstPkts`` (no
destination packets → ``unanswered``), else unknown. ``tcp_flags`` = the source-side letters.

Key: the raw line (flow records have no identifier); the batch builder numbers identical lines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stormwatch.events import EventBatchBuilder
from stormwatch.events.batch import to_micros
from stormwatch.ingest.base import LineReader, RecordError, Source
from stormwatch.ingest.normalize import canonical_ip, epoch_micros, flags_from_letters, port, proto_name

FORMAT = "binetflow"

_REQUIRED = ("starttime", "proto", "srcaddr", "dstaddr")
_NON_IP = {"arp", "rarp", "llc", "lldp", "ipx/spx", "man", "stp", "ether", "eth"}
_WORD_OUTCOME = {"CON": "answered", "ACC": "answered", "FIN": "answered", "CLO": "answered",
                 "INT": "unanswered", "REQ": "unanswered", "TIM": "unanswered", "RST": "reset"}
_ARGUS_FLAGS = set("SAPFRUEC")
_CODELESS_ICMP = {"icmp": {0, 8, 13, 14}, "icmp6": {128, 129}}  # echo, echo reply, timestamp
MAX_EPOCH = 253_402_300_800  # 10000-01-01T00:00:00Z
_TIME_FORMATS = ("%Y/%m/%d %H:%M:%S.%f", "%Y/%m/%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S")


@dataclass
class _State:
    """The title line in force: the delimiter and where each named column is."""

    sep: str = ","
    index: dict[str, int] = field(default_factory=dict)
    ncols: int = 0


def _title(line: str) -> tuple[str, list[str]] | None:
    """The delimiter and lower-cased names if ``line`` is an ra title line, else None."""
    text = line.lstrip("\ufeff")
    for sep in (",", "\t"):
        names = [n.strip().lower() for n in text.split(sep)]
        if all(r in names for r in _REQUIRED):
            return sep, names
    return None


def _time(text: str) -> int:
    text = text.strip()
    for fmt in _TIME_FORMATS:
        try:
            return to_micros(datetime.strptime(text, fmt).replace(tzinfo=UTC))
        except ValueError:
            continue
    try:
        seconds = float(text)
    except ValueError:
        raise RecordError(f"not a StartTime: {text[:40]!r}") from None
    if not (math.isfinite(seconds) and 0 <= seconds < MAX_EPOCH):
        raise RecordError(f"StartTime out of range: {text[:40]!r}")
    return epoch_micros(text)


def _number(text: str) -> int:
    """A decimal or ``0x`` hex field."""
    t = text.strip()
    try:
        return int(t, 16) if t[:2].lower() == "0x" else int(t)
    except ValueError:
        raise RecordError(f"not a number: {t[:32]!r}") from None


def _opt_int(text: str | None, name: str) -> int | None:
    if text is None or not text.strip():
        return None
    try:
        return int(text.strip())
    except ValueError:
        raise RecordError(f"{name} is not an integer: {text.strip()[:32]!r}") from None


def _icmp(proto: str, sport: str, dport: str) -> tuple[int | None, int | None]:
    """ICMP type and code from Argus' Sport/Dport (see the module docstring for both layouts)."""
    if not sport.strip():
        return None, None
    word = _number(sport)
    if not 0 <= word <= 0xFFFF:
        raise RecordError(f"ICMP Sport out of range: {sport[:16]!r}")
    if word > 0xFF:
        return word & 0xFF, (word >> 8) & 0xFF
    if word in _CODELESS_ICMP.get(proto, ()):
        return word, 0
    code = _number(dport) if dport.strip() else 0
    return word, code if code <= 0xFF else 0


def outcome(proto: str, state: str, dst_pkts: int | None) -> str | None:
    """The outcome of one Argus flow record (rules in the module docstring)."""
    if proto == "tcp" and "_" in state:
        src, _, dst = state.partition("_")
        if "S" in src:
            if not dst:
                return "unanswered"
            if "S" in dst:
                return "answered"
            return "reset" if "R" in dst else "answered"
        return "answered" if dst else None
    word = _WORD_OUTCOME.get(state)
    if word is not None:
        return word
    if dst_pkts is None:
        return None
    return "answered" if dst_pkts > 0 else "unanswered"




class BinetflowReader(LineReader):
    """Argus binetflow CSV (CTU-13, Stratosphere) → ``fw.connection``."""

    name = FORMAT
    description = "Argus bidirectional flows as CSV with ra's title line (CTU .binetflow)"

    def sniff(self, head: bytes) -> bool:
        text = head.decode("utf-8", "replace")
        first = next((ln for ln in text.splitlines() if ln.strip()), "")
        return first.lstrip("\ufeff").startswith("StartTime") and _title(first) is not None

    def start(self, src: Source) -> _State:
        return _State()

    def parse_line(self, line: str, state: _State, out: EventBatchBuilder) -> bool:
        # Data lines start with a date or a number; only a letter-led line can be a title.
        title = _title(line) if line[:1].isalpha() or line.startswith("\ufeff") else None
        if title is not None:
            state.sep, names = title
            state.index = {n: i for i, n in enumerate(names)}
            state.ncols = len(names)
            return False
        if not state.index:
            raise RecordError("data line before the title line (StartTime,Dur,Proto,...)")
        values = line.split(state.sep)
        if len(values) != state.ncols:
            raise RecordError(f"{len(values)} columns, the title line has {state.ncols}")
        idx = state.index

        def get(name: str) -> str | None:
            i = idx.get(name)
            return values[i] if i is not None else None

        raw_proto = (get("proto") or "").strip()
        if raw_proto.lower() in _NON_IP:
            return False
        proto = proto_name(raw_proto)
        ts = _time(get("starttime") or "")
        src_ip = canonical_ip((get("srcaddr") or "").strip())
        dst_ip = canonical_ip((get("dstaddr") or "").strip())
        sport_text, dport_text = (get("sport") or "").strip(), (get("dport") or "").strip()
        fields: dict[str, Any] = {}
        if proto in ("icmp", "icmp6"):
            fields["icmp_type"], fields["icmp_code"] = _icmp(proto, sport_text, dport_text)
            sport = dport = None
        else:
            sport = port(_number(sport_text)) if sport_text else None
            dport = port(_number(dport_text)) if dport_text else None
        conn_state = (get("state") or "").strip()
        packets = _opt_int(get("totpkts"), "TotPkts")
        src_pkts = _opt_int(get("srcpkts"), "SrcPkts")
        dst_pkts = _opt_int(get("dstpkts"), "DstPkts")
        if dst_pkts is None and packets is not None and src_pkts is not None:
            dst_pkts = packets - src_pkts
        tcp_flags = None
        if proto == "tcp" and "_" in conn_state:
            src_flags = conn_state.partition("_")[0]
            if set(src_flags) <= _ARGUS_FLAGS:
                tcp_flags = flags_from_letters(src_flags) or None
        dur = (get("dur") or "").strip()
        try:
            duration = float(dur) if dur else None
        except ValueError:
            raise RecordError(f"Dur is not a number: {dur[:32]!r}") from None
        if duration is not None and not math.isfinite(duration):
            raise RecordError(f"Dur is not finite: {dur[:32]!r}")
        label = (get("label") or "").strip() or None
        out.add("fw.connection", ts, line, src_ip=src_ip, src_port=sport, dst_ip=dst_ip, dst_port=dport,
                proto=proto, tcp_flags=tcp_flags, action="log",
                outcome=outcome(proto, conn_state, dst_pkts), format=FORMAT, duration=duration,
                packets=packets, bytes=_opt_int(get("totbytes"), "TotBytes"),
                ttl=_opt_int(get("sttl"), "sTtl"), conn_state=conn_state or None, label=label, **fields)
        return True
