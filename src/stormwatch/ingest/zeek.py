"""Zeek ``conn.log``: one ``fw.connection`` per connection record, from TSV or JSON lines.

Formats (Zeek documentation, "Logging Framework" / ``LogAscii`` writer, and the ``Conn::Info``
record in ``base/protocols/conn/main.zeek``):

- TSV: header lines ``#separator \\x09``, ``#set_separator``, ``#empty_field`` (``(empty)``),
  ``#unset_field`` (``-``), ``#path``, ``#open``, ``#fields``, ``#types``; data lines split on the
  separator; a ``#close`` trailer. Non-printable characters and a separator inside a value are
  written as ``\\xNN``. Rotated or concatenated logs repeat the whole header mid-file: every
  ``#fields`` line replaces the column list, so each block is read with its own header.
- JSON (``LogAscii::use_json=T``): one object per line with flat dotted keys (``id.orig_h``); a
  nested ``"id": {...}`` object (as some shippers rewrite it) is accepted too. ``ts`` is epoch
  seconds, or ISO 8601 text with ``LogAscii::json_timestamps=JSON::TS_ISO8601``.
- Labelled data sets (Stratosphere CTU, IoT-23) add ``label`` and ``detailed-label`` (or
  ``detailedlabel``) columns; IoT-23 writes the last three names as one tab-field
  ``tunnel_parents   label   detailed-label`` whose values are separated by three spaces: such a
  column is split on runs of spaces.

Fields: ``uid`` → ``session``; ``id.orig_h/p`` → source; ``id.resp_h/p`` → destination. For ICMP
Zeek stores the ICMP type in ``id.orig_p`` and the code in ``id.resp_p``: they become
``icmp_type``/``icmp_code`` and the ports stay empty; Zeek calls ICMPv6 ``icmp`` too, so ``icmp``
between IPv6 addresses is ``icmp6``. ``packets`` = ``orig_pkts + resp_pkts``; ``bytes`` =
``orig_ip_bytes + resp_ip_bytes`` (IP-level, like the other flow sources), else
``orig_bytes + resp_bytes`` (payload) when the IP counts are absent. ``tcp_flags`` is ``S`` when the
history starts with ``S`` (the originator's SYN: a connection attempt), else empty. ``action`` is
``log``: Zeek observes, it does not filter.

Outcome from ``conn_state`` (:data:`CONN_STATE_OUTCOME`, the state meanings quoted from Zeek's
``conn_state`` documentation); see the table's comments for why each maps where it does.

Key: ``uid`` and ``ts`` in integer microseconds. The uid is unique per connection, and using the
number rather than the text of ``ts`` makes the TSV and the JSON rendering of one connection the
same record, so reading both (or a rotated copy) stores it once. A record without a uid is keyed
by its line.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stormwatch.events import EventBatchBuilder
from stormwatch.ingest.base import LineReader, RecordError, Source
from stormwatch.ingest.normalize import canonical_ip, epoch_micros, iso_micros, port, proto_name

FORMAT = "zeek-conn"

# Zeek conn_state → outcome. OTH and RSTRH are decided in _outcome() with the packet counts and
# the history, because the state alone does not say whether the target replied.
CONN_STATE_OUTCOME: dict[str, str | None] = {
    "S0": "unanswered",  # "Connection attempt seen, no reply."
    "SH": "unanswered",  # "Originator sent a SYN followed by a FIN, we never saw a SYN ACK from
    #                       the responder." The FIN is the originator's own: nothing came back.
    "RSTOS0": "unanswered",  # "Originator sent a SYN followed by a RST, we never saw a SYN-ACK from
    #                           the responder." The RST is the originator's, not the target's.
    "REJ": "reset",  # "Connection attempt rejected." (RST in answer to the SYN)
    "S1": "answered",  # "Connection established, not terminated."
    "SF": "answered",  # "Normal establishment and termination." (UDP: both sides sent)
    "S2": "answered",  # "Connection established and close attempt by originator seen."
    "S3": "answered",  # "Connection established and close attempt by responder seen."
    "RSTO": "answered",  # "Connection established, originator aborted (sent a RST)."
    "RSTR": "answered",  # "Responder sent a RST." after the originator got past SYN_SENT (else
    #                       Zeek says REJ): the connection was accepted, then aborted.
    "SHR": "answered",  # "Responder sent a SYN ACK followed by a FIN, we never saw a SYN from the
    #                      originator." (UDP: only the responder sent) The target did reply.
    "RSTRH": None,  # "Responder sent a SYN ACK followed by a RST, we never saw a SYN from the
    #                  (purported) originator.": answered if the history shows that SYN-ACK
    #                  ('h'), else a bare RST from the target: reset.
    "OTH": None,  # "No SYN seen, just midstream traffic" (and every ICMP/other-protocol
    #                connection): answered if the responder sent packets; an ICMP request
    #                without reply is unanswered; otherwise unknown.
}

# ICMP/ICMPv6 types that ask for a reply (echo, timestamp, information, address mask; RFC 792,
# RFC 950, RFC 4443): a request of these with no responder packets is unanswered.
_ICMP_REQUESTS = {"icmp": {8, 13, 15, 17}, "icmp6": {128}}

MAX_EPOCH = 253_402_300_800  # 10000-01-01T00:00:00Z: no timestamp column holds a later time
_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")
_LABEL_KEYS = ("label",)
_DETAIL_KEYS = ("detailed-label", "detailedlabel", "detailed_label")


@dataclass
class _TsvState:
    """The header in force: separators, unset/empty markers and the column names."""

    sep: str = "\t"
    set_sep: str = ","
    empty: str = "(empty)"
    unset: str = "-"
    columns: list[tuple[str, ...]] = field(default_factory=list)  # names per column (usually one)
    simple: bool = True  # every column holds one field (no IoT-23 combined column)


def _complete_lines(head: bytes) -> list[str]:
    """The lines of a sniffed head, without a last line the head may have cut short."""
    lines = head.decode("utf-8", "replace").splitlines()
    if len(lines) > 1 and not head.endswith((b"\n", b"\r")):
        lines.pop()
    return lines


def _unescape(value: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value) if "\\x" in value else value




class ZeekConnReader(LineReader):
    """Zeek conn.log (TSV with ``#fields`` header, or JSON lines) → ``fw.connection``."""

    name = FORMAT
    description = "Zeek conn.log, TSV or JSON lines (labelled CTU/IoT-23 variants too)"

    def sniff(self, head: bytes) -> bool:
        lines = _complete_lines(head)
        if lines and lines[0].startswith("#separator"):
            header = [ln for ln in lines[:20] if ln.startswith("#")]
            fields = next((ln for ln in header if ln.startswith("#fields")), None)
            if fields is not None:
                return "id.orig_h" in fields and ("conn_state" in fields or "orig_pkts" in fields)
            return any(ln.split(None, 1)[1:] == ["conn"] for ln in header if ln.startswith("#path"))
        records = [ln for ln in lines if ln.strip()][:5]
        for line in records:
            try:
                obj = json.loads(line)
            except ValueError:
                return False
            if not isinstance(obj, dict):
                return False
            if ("id.orig_h" in obj or isinstance(obj.get("id"), dict)) and (
                    "conn_state" in obj or "orig_pkts" in obj):
                return True
        return False

    def start(self, src: Source) -> _TsvState:
        return _TsvState()

    def parse_line(self, line: str, state: _TsvState, out: EventBatchBuilder) -> bool:
        if line.startswith("#"):
            _header(line, state)
            return False
        if line.lstrip().startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise RecordError(f"broken JSON: {exc}") from None
            if not isinstance(obj, dict):
                raise RecordError("JSON line is not an object")
            _emit(_flatten(obj), line, out)
            return True
        if not state.columns:
            raise RecordError("data line before any #fields header")
        _emit(_tsv_record(line, state), line, out)
        return True


def _header(line: str, state: _TsvState) -> None:
    """Apply one ``#`` header line. ``#separator`` is the only one written with a space."""
    if line.startswith("#separator"):
        sep = _unescape(line[len("#separator"):].strip())
        state.sep = sep or "\t"
        return
    name, _, value = line.partition(state.sep)
    if name == "#fields":
        state.columns = [tuple(c.split()) for c in value.split(state.sep)]
        state.simple = all(len(names) == 1 for names in state.columns)
    elif name == "#set_separator":
        state.set_sep = _unescape(value)
    elif name == "#empty_field":
        state.empty = _unescape(value)
    elif name == "#unset_field":
        state.unset = _unescape(value)
    # #path, #open, #types, #close carry nothing a record needs.


def _tsv_record(line: str, state: _TsvState) -> dict[str, Any]:
    values = line.split(state.sep)
    if len(values) != len(state.columns):
        raise RecordError(f"{len(values)} columns, the #fields header has {len(state.columns)}")
    unset, empty = state.unset, state.empty
    if state.simple:  # the common case, kept to one comprehension: this is the hot loop
        return {names[0]: None if v == unset else "" if v == empty else v if "\\x" not in v else _unescape(v)
                for names, v in zip(state.columns, values, strict=True)}
    rec: dict[str, Any] = {}
    for names, raw in zip(state.columns, values, strict=True):
        parts = [raw] if len(names) == 1 else raw.split(None, len(names) - 1)
        if len(parts) != len(names):
            raise RecordError(f"column {' '.join(names)!r} holds {len(parts)} values, not {len(names)}")
        for n, v in zip(names, parts, strict=True):
            rec[n] = None if v == unset else "" if v == empty else _unescape(v)
    return rec


def _flatten(obj: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys as Zeek writes them; a nested ``id`` object is flattened."""
    ident = obj.get("id")
    if isinstance(ident, dict):
        obj = dict(obj)
        del obj["id"]
        for k, v in ident.items():
            obj.setdefault(f"id.{k}", v)
    return obj


def _micros(value: Any) -> int:
    if isinstance(value, bool) or value is None:
        raise RecordError(f"no usable ts: {value!r}")
    if isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            return iso_micros(value)
    elif isinstance(value, int | float):
        seconds = float(value)
    else:
        raise RecordError(f"no usable ts: {str(value)[:40]!r}")
    if not (math.isfinite(seconds) and 0 <= seconds < MAX_EPOCH):
        raise RecordError(f"ts out of range: {str(value)[:40]!r}")
    return epoch_micros(value)


def _count(rec: Mapping[str, Any], key: str) -> int | None:
    v = rec.get(key)
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        raise RecordError(f"{key} is not a count: {v!r}")
    try:
        return int(v)
    except (TypeError, ValueError):
        raise RecordError(f"{key} is not a count: {str(v)[:32]!r}") from None


def _float(rec: Mapping[str, Any], key: str) -> float | None:
    v = rec.get(key)
    if v is None or v == "":
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise RecordError(f"{key} is not a number: {str(v)[:32]!r}") from None
    if not math.isfinite(f):
        raise RecordError(f"{key} is not finite: {str(v)[:32]!r}")
    return f


def _text(rec: Mapping[str, Any], key: str) -> str | None:
    v = rec.get(key)
    if v is None or v == "":
        return None
    return str(v)


def _sum(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a + b


def _address(rec: Mapping[str, Any], key: str) -> str:
    v = rec.get(key)
    if not v:
        raise RecordError(f"no {key}")
    return canonical_ip(str(v))


def _outcome(state: str | None, history: str | None, proto: str, icmp_type: int | None,
             resp_pkts: int | None) -> str | None:
    if state is None:
        return None
    if state in CONN_STATE_OUTCOME and CONN_STATE_OUTCOME[state] is not None:
        return CONN_STATE_OUTCOME[state]
    if state == "RSTRH":
        return "answered" if history and "h" in history else "reset"
    if state == "OTH":
        if resp_pkts:
            return "answered"
        if resp_pkts == 0 and icmp_type in _ICMP_REQUESTS.get(proto, ()):
            return "unanswered"
    return None


def _label(rec: Mapping[str, Any]) -> str | None:
    label = next((t for k in _LABEL_KEYS if (t := _text(rec, k))), None)
    detail = next((t for k in _DETAIL_KEYS if (t := _text(rec, k))), None)
    if label and detail:
        return f"{label} ({detail})"
    return label or detail


def _emit(rec: Mapping[str, Any], line: str, out: EventBatchBuilder) -> None:
    ts = _micros(rec.get("ts"))
    src_ip = _address(rec, "id.orig_h")
    dst_ip = _address(rec, "id.resp_h")
    raw_proto = rec.get("proto")
    proto = proto_name(str(raw_proto)) if raw_proto not in (None, "") else "unknown_transport"
    if proto == "icmp" and ":" in src_ip:
        proto = "icmp6"  # Zeek names ICMPv6 connections "icmp" too
    sport, dport = port(rec.get("id.orig_p")), port(rec.get("id.resp_p"))
    icmp_type = icmp_code = None
    if proto in ("icmp", "icmp6"):
        icmp_type, icmp_code, sport, dport = sport, dport, None, None
    uid = _text(rec, "uid")
    uid = uid if uid else None  # a column and part of the key: must be storable text
    state = _text(rec, "conn_state")
    history = _text(rec, "history")
    resp_pkts = _count(rec, "resp_pkts")
    nbytes = _sum(_count(rec, "orig_ip_bytes"), _count(rec, "resp_ip_bytes"))
    if nbytes is None:
        nbytes = _sum(_count(rec, "orig_bytes"), _count(rec, "resp_bytes"))
    out.add(
        "fw.connection", ts, f"{uid} {ts}" if uid else line,
        session=uid, src_ip=src_ip, src_port=sport, dst_ip=dst_ip, dst_port=dport, proto=proto,
        tcp_flags="S" if proto == "tcp" and history and history.startswith("S") else None,
        action="log", outcome=_outcome(state, history, proto, icmp_type, resp_pkts),
        format=FORMAT, icmp_type=icmp_type, icmp_code=icmp_code,
        duration=_float(rec, "duration"), packets=_sum(_count(rec, "orig_pkts"), resp_pkts),
        bytes=nbytes, conn_state=state, label=_label(rec),
    )
