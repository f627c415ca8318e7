"""Suricata EVE JSON: ``flow``/``netflow`` records → ``fw.connection``, ``alert`` → ``ids.alert``.

Format: one JSON object per line (Suricata user guide, "Eve JSON Output" and "Eve JSON Format").
Every record has ``timestamp`` (ISO 8601 with a ``+0000``-style offset, which
``datetime.fromisoformat`` reads from Python 3.11 on), ``flow_id``, ``event_type``, ``src_ip``,
``src_port``, ``dest_ip``, ``dest_port``, ``proto``; ICMP records carry ``icmp_type``/``icmp_code``
instead of ports. Other event types (``dns``, ``http``, ``tls``, ``fileinfo``, ``stats``,
``anomaly``, ``drop`` …) are read and skipped: they are not connection or alert records.

``flow`` (bidirectional, written when the flow ends): time = ``flow.start`` (the ``timestamp`` of a
flow record is when it was logged, minutes or hours later), else ``timestamp``; ``flow_id`` →
``session``; ``flow.state`` (``new``/``established``/``closed``/``bypassed``) → ``conn_state``;
``packets``/``bytes`` = to-server + to-client; duration = ``flow.end - flow.start``;
``tcp_flags`` = ``tcp.tcp_flags_ts`` (what the client sent, hex bitmask) as letters. Outcome:

- TCP with per-direction flags (``tcp.tcp_flags_tc``, what the server sent): a SYN+ACK from the
  server → ``answered``; a RST from the server without a SYN-ACK → ``reset`` (the refusal of a
  closed port); no packets to the client → ``unanswered``; other packets from the server (a
  mid-stream flow) → ``answered``.
- TCP without per-direction flags: no packets to the client → ``unanswered``; a RST in the merged
  ``tcp.rst`` → unknown (the client may have sent it after a SYN-ACK, or the server instead of
  one); otherwise ``answered``.
- other protocols: packets to the client → ``answered``, none → ``unanswered``.

``netflow`` records are unidirectional (one per direction, ``netflow.pkts``/``bytes``/``start``,
``tcp.tcp_flags`` of that direction): outcome unknown. The reply direction is a record of its own
with the addresses swapped; EVE gives no field telling it apart from a request.

``alert`` → ``ids.alert`` at ``timestamp`` (the packet's time) with ``alert.signature``,
``signature_id``, ``category``, ``severity``; ``alert.action`` ``allowed`` → ``alert``,
``blocked`` → ``drop``.

Key: the raw line. An EVE line is one record and is written once, so it is the record's identity;
flow_id + event_type + timestamp is not (many flows share one logging timestamp, and one packet can
raise several alerts).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from stormwatch.events import EventBatchBuilder
from stormwatch.ingest.base import LineReader, RecordError
from stormwatch.ingest.normalize import FLAG_ORDER, canonical_ip, iso_micros, port, proto_name

FORMAT = "suricata-eve"

_SYN, _RST, _ACK = 0x02, 0x04, 0x10
_ALERT_ACTIONS = {"allowed": "alert", "blocked": "drop", "alert": "alert", "drop": "drop",
                  "reject": "reject", "rejected": "reject"}
_ICMP = ("icmp", "icmp6")


def flag_letters(mask: int) -> str:
    """A TCP flag byte → letters in CEUAPRSF order: CWR=80 ECE=40 URG=20 ACK=10 PSH=08 RST=04
    SYN=02 FIN=01, so the letter order is the bit order from the top."""
    return "".join(c for i, c in enumerate(FLAG_ORDER) if mask & (0x80 >> i))


def _hex_flags(value: Any) -> int | None:
    """EVE writes TCP flags as two hex digits (``"1b"``)."""
    if value is None:
        return None
    try:
        mask = int(str(value), 16)
    except ValueError:
        raise RecordError(f"TCP flags not hex: {str(value)[:16]!r}") from None
    if not 0 <= mask <= 0xFF:
        raise RecordError(f"TCP flags out of range: {value!r}")
    return mask


def _int(obj: Mapping[str, Any], key: str) -> int | None:
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise RecordError(f"{key} is not an integer: {str(v)[:32]!r}")
    return v


def _sum(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a + b


def _micros(value: Any, key: str) -> int:
    if not isinstance(value, str):
        raise RecordError(f"no {key}")
    return iso_micros(value)


def _tcp_outcome(tcp: Mapping[str, Any], to_client: int | None) -> str | None:
    tc = _hex_flags(tcp.get("tcp_flags_tc"))
    if tc is not None:
        if tc & _SYN and tc & _ACK:
            return "answered"
        if tc & _RST:
            return "reset"
        if to_client == 0:
            return "unanswered"
        return "answered" if to_client else None
    if to_client == 0:
        return "unanswered"
    if to_client is None or tcp.get("rst"):
        return None
    return "answered"


class SuricataEveReader(LineReader):
    """Suricata eve.json → ``fw.connection`` (flow, netflow) and ``ids.alert`` (alert)."""

    name = FORMAT
    description = "Suricata EVE JSON lines (flow, netflow and alert records)"

    def sniff(self, head: bytes) -> bool:
        lines = head.decode("utf-8", "replace").splitlines()
        if len(lines) > 1 and not head.endswith((b"\n", b"\r")):
            lines.pop()  # cut short by the head's size
        for line in [ln for ln in lines if ln.strip()][:5]:
            try:
                obj = json.loads(line)
            except ValueError:
                return False
            if not isinstance(obj, dict):
                return False
            if isinstance(obj.get("event_type"), str) and isinstance(obj.get("timestamp"), str):
                return True
        return False

    def parse_line(self, line: str, state: Any, out: EventBatchBuilder) -> bool:
        try:
            rec = json.loads(line)
        except ValueError as exc:
            raise RecordError(f"broken JSON: {exc}") from None
        if not isinstance(rec, dict):
            raise RecordError("JSON line is not an object")
        et = rec.get("event_type")
        if not isinstance(et, str):
            raise RecordError("no event_type")
        if et in ("flow", "netflow"):
            _flow(rec, et, line, out)
            return True
        if et == "alert":
            _alert(rec, line, out)
            return True
        return False


def _endpoints(rec: Mapping[str, Any]) -> dict[str, Any]:
    """Addresses, ports, protocol and ICMP type/code common to every record type."""
    for key in ("src_ip", "dest_ip"):
        if not isinstance(rec.get(key), str):
            raise RecordError(f"no {key}")
    raw_proto = rec.get("proto")
    if not isinstance(raw_proto, str | int) or isinstance(raw_proto, bool):
        raise RecordError("no proto")
    proto = proto_name(raw_proto)
    fields: dict[str, Any] = {
        "src_ip": canonical_ip(rec["src_ip"]), "dst_ip": canonical_ip(rec["dest_ip"]), "proto": proto,
        "src_port": port(rec.get("src_port")), "dst_port": port(rec.get("dest_port")),
    }
    if proto in _ICMP:
        fields["src_port"] = fields["dst_port"] = None
        fields["icmp_type"] = _int(rec, "icmp_type")
        fields["icmp_code"] = _int(rec, "icmp_code")
    flow_id = rec.get("flow_id")
    fields["session"] = str(flow_id) if flow_id is not None else None
    return fields


def _flow(rec: Mapping[str, Any], et: str, line: str, out: EventBatchBuilder) -> None:
    fields = _endpoints(rec)
    body = rec.get(et)
    if not isinstance(body, dict):
        raise RecordError(f"{et} record without a {et!r} object")
    tcp = rec.get("tcp")
    tcp = tcp if isinstance(tcp, dict) else {}
    start = body.get("start")
    ts = _micros(start if start is not None else rec.get("timestamp"), "timestamp")
    end = body.get("end")
    duration = (_micros(end, "flow end") - ts) / 1e6 if start is not None and end is not None else None
    if et == "flow":
        to_client = _int(body, "pkts_toclient")
        packets = _sum(_int(body, "pkts_toserver"), to_client)
        nbytes = _sum(_int(body, "bytes_toserver"), _int(body, "bytes_toclient"))
        mask = _hex_flags(tcp.get("tcp_flags_ts"))
        if fields["proto"] == "tcp":
            outcome = _tcp_outcome(tcp, to_client)
        else:
            outcome = None if to_client is None else ("answered" if to_client else "unanswered")
    else:  # netflow: one direction only
        packets, nbytes = _int(body, "pkts"), _int(body, "bytes")
        mask = _hex_flags(tcp.get("tcp_flags"))
        outcome = None
    state = body.get("state")
    out.add("fw.connection", ts, line, **fields,
            tcp_flags=(flag_letters(mask) or None) if mask is not None and fields["proto"] == "tcp" else None,
            action="log", outcome=outcome, format=FORMAT, duration=duration, packets=packets,
            bytes=nbytes, conn_state=state if isinstance(state, str) else None)


def _alert(rec: Mapping[str, Any], line: str, out: EventBatchBuilder) -> None:
    fields = _endpoints(rec)
    fields.pop("icmp_type", None)  # not fields of ids.alert
    fields.pop("icmp_code", None)
    alert = rec.get("alert")
    if not isinstance(alert, dict):
        raise RecordError("alert record without an 'alert' object")
    raw_action = str(alert.get("action", "allowed")).lower()
    try:
        act = _ALERT_ACTIONS[raw_action]
    except KeyError:
        raise RecordError(f"unknown alert action: {raw_action[:32]!r}") from None
    sig, cat = alert.get("signature"), alert.get("category")
    out.add("ids.alert", _micros(rec.get("timestamp"), "timestamp"), line, **fields, action=act,
            format=FORMAT, signature=sig if isinstance(sig, str) else None,
            signature_id=_int(alert, "signature_id"),
            category=cat if isinstance(cat, str) and cat else None, severity=_int(alert, "severity"))
